/// Why a structure could not be decoded, or a block failed verification.
///
/// Decoding never traps on bad bytes: every short buffer, bad magic or impossible field comes
/// back as one of these.
public enum FormatError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The buffer holds fewer bytes than the structure needs.
    case short(structure: String, need: Int, have: Int)
    /// A header's magic did not match the expected block type.
    case badMagic(blkno: UInt64, expected: UInt32, found: UInt32)
    /// The stored crc32c differs from the one computed over the block.
    case badCRC(blkno: UInt64, stored: UInt32, computed: UInt32)
    /// The header's fsid is another filesystem's.
    case badFSID(blkno: UInt64, expected: UInt64, found: UInt64)
    /// The header's blkno is not where the block was read from.
    case badBlkno(expected: UInt64, found: UInt64)
    /// The header's seq does not match the reference: the block was reused after the ref was read.
    case stale(blkno: UInt64, expectedSeq: UInt64, foundSeq: UInt64)
    /// A field holds a value the format does not allow.
    case invalid(structure: String, reason: String)

    public var description: String {
        switch self {
        case .short(let s, let need, let have):
            return "\(s): need \(need) bytes, have \(have)"
        case .badMagic(let b, let e, let f):
            return "blkno \(b): bad magic \(hex32(f)), expected \(hex32(e))"
        case .badCRC(let b, let s, let c):
            return "blkno \(b): bad crc \(hex32(s)), computed \(hex32(c))"
        case .badFSID(let b, let e, let f):
            return "blkno \(b): fsid \(hex64(f)) is not \(hex64(e))"
        case .badBlkno(let e, let f):
            return "blkno \(e): header says blkno \(f)"
        case .stale(let b, let e, let f):
            return "blkno \(b): stale reference, seq \(f) != \(e)"
        case .invalid(let s, let r):
            return "\(s): \(r)"
        }
    }

    /// True for every failed check of a block read through a reference: the block may have
    /// been freed and rewritten since the reference was read, as another kind of block (bad
    /// magic), by another writer still writing it (bad crc) or with a new seq. Readers retry
    /// with new references, and only the same references failing twice is corruption (the
    /// original's ESTALE from `scoutfs_block_read_ref`).
    public var isStale: Bool {
        switch self {
        case .badMagic, .badCRC, .badFSID, .badBlkno, .stale: return true
        case .short, .invalid: return false
        }
    }
}

@usableFromInline
func hex32(_ v: UInt32) -> String { v.paddedHex }

extension FixedWidthInteger where Self: UnsignedInteger {
    /// Lowercase hex padded to the type's full width: the original's `%016llx` for a
    /// `UInt64` (rids, fsids), `%08x` for a `UInt32`, `%02x` for a byte.
    public var paddedHex: String {
        let s = String(self, radix: 16)
        return String(repeating: "0", count: Swift.max(0, bitWidth / 4 - s.count)) + s
    }
}

@usableFromInline
func hex64(_ v: UInt64) -> String {
    String(v, radix: 16)
}
