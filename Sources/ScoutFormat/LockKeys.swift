/// The cluster lock that covers an item key, named by its start key, and the range it covers
/// (the original's `scoutfs_lock_ino`, `_orphan`, `_inode_index` ranges). Pure key arithmetic,
/// here so the client (locks, bloom keys) and `scoutfs check` share one definition.
public struct LockRange: Hashable, Sendable, Comparable {
    public var start: Key
    public var end: Key

    public static func < (a: LockRange, b: LockRange) -> Bool { a.start < b.start }

    /// The inode group lock of `ino`: every FS-zone item of the 1024 inodes in its group.
    public static func inode(_ ino: UInt64) -> LockRange {
        let mask = Format.lockInodeGroupNr - 1
        return LockRange(
            start: Key(zone: KeyZone.fs, first: ino & ~mask),
            end: Key(zone: KeyZone.fs, first: ino | mask, type: .max, second: .max, third: .max, fourth: .max))
    }

    /// The orphan zone lock.
    public static let orphan = LockRange(
        start: Key(zone: KeyZone.orphan, type: KeyType.orphan),
        end: Key(zone: KeyZone.orphan, type: KeyType.orphan, second: .max))

    /// The `.totl.` zone lock (the original's `scoutfs_lock_xattr_totl`): the whole zone,
    /// taken WRITE_ONLY by every mount that adds deltas.
    public static let xattrTotl = LockRange(
        start: Key(zone: KeyZone.xattrTotl),
        end: Key(zone: KeyZone.xattrTotl, first: .max, type: .max, second: .max, third: .max, fourth: .max))

    /// The `.indx.` zone lock (the original's `scoutfs_lock_xattr_indx`): the whole zone.
    public static let xattrIndx = LockRange(
        start: Key(zone: KeyZone.xattrIndx),
        end: Key(zone: KeyZone.xattrIndx, first: .max, type: .max, second: .max, third: .max, fourth: .max))

    /// The quota zone lock (the original's `scoutfs_lock_quota`): the whole zone. Rules are
    /// read under READ and changed under WRITE, so every change invalidates every mount's rules.
    public static let quota = LockRange(
        start: Key(zone: KeyZone.quota),
        end: Key(zone: KeyZone.quota, first: .max, type: .max, second: .max, third: .max, fourth: .max))

    /// The seq index lock covering index `type` at `major`.
    public static func index(type: UInt8, major: UInt64) -> LockRange {
        let mask: UInt64 = (1 << 10) - 1
        return LockRange(
            start: Key(zone: KeyZone.inodeIndex, type: type, second: major & ~mask),
            end: Key(zone: KeyZone.inodeIndex, first: 0, type: type, second: major | mask, third: .max))
    }

    /// The lock whose range holds `key`.
    public static func covering(_ key: Key) -> LockRange {
        switch key.zone {
        case KeyZone.fs: return inode(key.first)
        case KeyZone.orphan: return orphan
        case KeyZone.inodeIndex: return index(type: key.type, major: key.second)
        case KeyZone.xattrTotl: return xattrTotl
        case KeyZone.xattrIndx: return xattrIndx
        case KeyZone.quota: return quota
        default: return LockRange(start: key, end: key)
        }
    }

    public func contains(_ key: Key) -> Bool { start <= key && key <= end }
}

/// The forest's bloom filter (`struct scoutfs_bloom_block`): three bit positions per lock start
/// key, from FNV-1a-64 of the encoded key, in one 64 KiB block.
public enum Bloom {
    public static let headerBytes = BloomBlockHeader.encodedSize
    public static let bits = Format.forestBloomBits
    static let funcBits = UInt64(Format.forestBloomFuncBits)

    /// The bit numbers for `key`.
    public static func bitNumbers(_ key: Key) -> [Int] {
        var hash = FNV1a.hash64(key.encoded())
        var out: [Int] = []
        for _ in 0..<Format.forestBloomNrs {
            out.append(Int(UInt32(truncatingIfNeeded: hash) % UInt32(bits)))
            hash >>= funcBits
        }
        return out
    }

    /// Whether every bit of `key` is set in `block`.
    public static func test(_ block: BlockBuffer, _ key: Key) -> Bool {
        bitNumbers(key).allSatisfy { n in block.u8(headerBytes + n / 8) & (1 << UInt8(n % 8)) != 0 }
    }

    /// Sets `key`'s bits in `block` and keeps `total_set` up to date.
    public static func set(_ block: BlockBuffer, _ key: Key) {
        var total = block.u64(32)
        for n in bitNumbers(key) {
            let off = headerBytes + n / 8
            let bit: UInt8 = 1 << UInt8(n % 8)
            if block.u8(off) & bit == 0 {
                block.setU8(off, block.u8(off) | bit)
                total += 1
            }
        }
        block.setU64(32, total)
    }
}
