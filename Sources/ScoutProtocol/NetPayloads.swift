import ScoutFormat

extension FixedCodable {
    /// Decodes a message payload that must be exactly `encodedSize` bytes, as the original checks
    /// `arg_len != sizeof(...)` before using a payload.
    ///
    /// - Throws: `FormatError.invalid` for a wrong length, or the structure's own decode error.
    public static func decodePayload(_ bytes: [UInt8]) throws(FormatError) -> Self {
        guard bytes.count == encodedSize else {
            throw .invalid(
                structure: String(describing: Self.self),
                reason: "payload length \(bytes.count), expected \(encodedSize)")
        }
        return try decode(bytes)
    }
}

/// `struct scoutfs_net_greeting` (40 bytes): fsid @0, fmt_vers @8, server_term @16, rid @24, flags @32.
public struct NetGreeting: FixedCodable, Hashable {
    public static let encodedSize = 40
    /// `SCOUTFS_NET_GREETING_FLAG_FAREWELL`: the client is trying to say farewell.
    public static let flagFarewell: UInt64 = 1 << 0
    /// `SCOUTFS_NET_GREETING_FLAG_QUORUM`: the client is a quorum member.
    public static let flagQuorum: UInt64 = 1 << 1
    /// Flag bits the original considers invalid.
    public static let flagsInvalid: UInt64 = ~UInt64(0) << 2

    public var fsid: UInt64
    public var fmtVers: UInt64
    /// 0 from a client that never got a greeting response; otherwise the term of the server that
    /// last answered it. The server answers with its own term.
    public var serverTerm: UInt64
    /// The mount's random id.
    public var rid: UInt64
    public var flags: UInt64

    public init(fsid: UInt64, fmtVers: UInt64, serverTerm: UInt64 = 0, rid: UInt64, flags: UInt64 = 0) {
        self.fsid = fsid
        self.fmtVers = fmtVers
        self.serverTerm = serverTerm
        self.rid = rid
        self.flags = flags
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        fsid = try r.u64()
        fmtVers = try r.u64()
        serverTerm = try r.u64()
        rid = try r.u64()
        flags = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(fsid)
        w.u64(fmtVers)
        w.u64(serverTerm)
        w.u64(rid)
        w.u64(flags)
    }

    public var isFarewell: Bool { flags & Self.flagFarewell != 0 }
    public var isQuorum: Bool { flags & Self.flagQuorum != 0 }
}

/// A single `__le64` payload: the ALLOC_INODES request count and the GET_LAST_SEQ response.
public struct NetU64: FixedCodable, Hashable {
    public static let encodedSize = 8
    public var value: UInt64

    public init(_ value: UInt64) { self.value = value }
    public init(from r: inout ByteReader) throws(FormatError) { value = try r.u64() }
    public func encode(to w: inout ByteWriter) { w.u64(value) }
}

/// `struct scoutfs_net_inode_alloc` (16 bytes): ino @0, nr @8. No inodes left: ino ~0, nr 0.
public struct NetInodeAlloc: FixedCodable, Hashable {
    public static let encodedSize = 16
    public var ino: UInt64
    public var nr: UInt64

    public init(ino: UInt64, nr: UInt64) {
        self.ino = ino
        self.nr = nr
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        ino = try r.u64()
        nr = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(ino)
        w.u64(nr)
    }
}

/// `struct scoutfs_net_roots` (72 bytes): fs_root @0, logs_root @24, srch_root @48.
public struct NetRoots: FixedCodable, Hashable {
    public static let encodedSize = 3 * BTreeRoot.encodedSize
    public var fsRoot: BTreeRoot
    public var logsRoot: BTreeRoot
    public var srchRoot: BTreeRoot

    public init(fsRoot: BTreeRoot = BTreeRoot(), logsRoot: BTreeRoot = BTreeRoot(), srchRoot: BTreeRoot = BTreeRoot()) {
        self.fsRoot = fsRoot
        self.logsRoot = logsRoot
        self.srchRoot = srchRoot
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        fsRoot = try r.read()
        logsRoot = try r.read()
        srchRoot = try r.read()
    }

    public func encode(to w: inout ByteWriter) {
        w.write(fsRoot)
        w.write(logsRoot)
        w.write(srchRoot)
    }
}

/// `struct scoutfs_net_resize_devices` (16 bytes): new_total_meta_blocks @0, new_total_data_blocks @8.
public struct NetResizeDevices: FixedCodable, Hashable {
    public static let encodedSize = 16
    public var newTotalMetaBlocks: UInt64
    public var newTotalDataBlocks: UInt64

    public init(newTotalMetaBlocks: UInt64, newTotalDataBlocks: UInt64) {
        self.newTotalMetaBlocks = newTotalMetaBlocks
        self.newTotalDataBlocks = newTotalDataBlocks
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        newTotalMetaBlocks = try r.u64()
        newTotalDataBlocks = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(newTotalMetaBlocks)
        w.u64(newTotalDataBlocks)
    }
}

/// `struct scoutfs_net_statfs` (56 bytes): uuid @0 (16), free_meta_blocks @16, total_meta_blocks @24,
/// free_data_blocks @32, total_data_blocks @40, inode_count @48.
public struct NetStatfs: FixedCodable, Hashable {
    public static let encodedSize = Format.uuidBytes + 5 * 8
    public var uuid: [UInt8]
    public var freeMetaBlocks: UInt64
    public var totalMetaBlocks: UInt64
    public var freeDataBlocks: UInt64
    public var totalDataBlocks: UInt64
    public var inodeCount: UInt64

    /// - Precondition: `uuid` is 16 bytes.
    public init(
        uuid: [UInt8], freeMetaBlocks: UInt64, totalMetaBlocks: UInt64, freeDataBlocks: UInt64,
        totalDataBlocks: UInt64, inodeCount: UInt64
    ) {
        precondition(uuid.count == Format.uuidBytes, "uuid must be \(Format.uuidBytes) bytes")
        self.uuid = uuid
        self.freeMetaBlocks = freeMetaBlocks
        self.totalMetaBlocks = totalMetaBlocks
        self.freeDataBlocks = freeDataBlocks
        self.totalDataBlocks = totalDataBlocks
        self.inodeCount = inodeCount
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        uuid = try r.bytes(Format.uuidBytes)
        freeMetaBlocks = try r.u64()
        totalMetaBlocks = try r.u64()
        freeDataBlocks = try r.u64()
        totalDataBlocks = try r.u64()
        inodeCount = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.bytes(uuid)
        w.u64(freeMetaBlocks)
        w.u64(totalMetaBlocks)
        w.u64(freeDataBlocks)
        w.u64(totalDataBlocks)
        w.u64(inodeCount)
    }
}

/// `struct scoutfs_net_lock` (48 bytes): key @0 (32), write_seq @32, old_mode @40, new_mode @41,
/// 6 bytes of padding.
public struct NetLock: FixedCodable, Hashable {
    public static let encodedSize = Key.encodedSize + 16
    /// The lock's name: the start of its key range.
    public var key: Key
    public var writeSeq: UInt64
    public var oldMode: LockMode
    public var newMode: LockMode

    public init(key: Key, writeSeq: UInt64 = 0, oldMode: LockMode, newMode: LockMode) {
        self.key = key
        self.writeSeq = writeSeq
        self.oldMode = oldMode
        self.newMode = newMode
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        key = try r.read()
        writeSeq = try r.u64()
        let o = try r.u8()
        let n = try r.u8()
        try r.skip(6)
        guard let old = LockMode(rawValue: o) else { throw .invalid(structure: "NetLock", reason: "old_mode \(o)") }
        guard let new = LockMode(rawValue: n) else { throw .invalid(structure: "NetLock", reason: "new_mode \(n)") }
        oldMode = old
        newMode = new
    }

    public func encode(to w: inout ByteWriter) {
        w.write(key)
        w.u64(writeSeq)
        w.u8(oldMode.rawValue)
        w.u8(newMode.rawValue)
        w.pad(6)
    }
}

/// `struct scoutfs_net_lock_recover`: nr @0 (le16), 6 bytes of padding, then `nr` `NetLock`s.
///
/// Variable length: `8 + nr * 48` bytes, at most `maxLocks` (22) locks so it fits one message.
public struct NetLockRecover: Hashable, Sendable {
    /// Bytes before the locks.
    public static let headerSize = 8
    /// `SCOUTFS_NET_LOCK_MAX_RECOVER_NR`: (1100 - 8) / 48 = 22.
    public static let maxLocks = (NetHeader.maxDataLength - headerSize) / NetLock.encodedSize

    public var locks: [NetLock]

    /// - Precondition: at most `maxLocks` locks.
    public init(locks: [NetLock]) {
        precondition(locks.count <= Self.maxLocks, "at most \(Self.maxLocks) locks in one recover batch")
        self.locks = locks
    }

    /// The encoded length for `nr` locks.
    public static func encodedSize(nr: Int) -> Int { headerSize + nr * NetLock.encodedSize }

    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: Self.encodedSize(nr: locks.count))
        w.u16(UInt16(locks.count))
        w.pad(6)
        for l in locks { w.write(l) }
        return w.bytes
    }

    /// Decodes a payload whose length must be exactly `8 + nr * 48` with `nr ≤ 22`.
    public static func decode(_ bytes: [UInt8]) throws(FormatError) -> NetLockRecover {
        let r: Result<NetLockRecover, FormatError> = bytes.withUnsafeBytes { raw in
            Result { () throws(FormatError) -> NetLockRecover in
                var r = ByteReader(raw, structure: "NetLockRecover")
                let nr = Int(try r.u16())
                try r.skip(6)
                guard nr <= maxLocks else {
                    throw .invalid(structure: "NetLockRecover", reason: "nr \(nr) > \(maxLocks)")
                }
                guard raw.count == encodedSize(nr: nr) else {
                    throw .invalid(
                        structure: "NetLockRecover",
                        reason: "payload length \(raw.count), expected \(encodedSize(nr: nr)) for nr \(nr)")
                }
                var locks: [NetLock] = []
                locks.reserveCapacity(nr)
                for _ in 0..<nr { locks.append(try r.read()) }
                return NetLockRecover(locks: locks)
            }
        }
        return try r.get()
    }
}

/// `struct scoutfs_open_ino_map_args` (16 bytes): group_nr @0, req_id @8.
public struct OpenInoMapArgs: FixedCodable, Hashable {
    public static let encodedSize = 16
    public var groupNr: UInt64
    public var reqID: UInt64

    public init(groupNr: UInt64, reqID: UInt64 = 0) {
        self.groupNr = groupNr
        self.reqID = reqID
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        groupNr = try r.u64()
        reqID = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(groupNr)
        w.u64(reqID)
    }
}

/// `struct scoutfs_open_ino_map` (144 bytes): args @0, then 16 le64 words of bits: bit `i` is inode
/// `group_nr * 1024 + i`.
public struct OpenInoMap: FixedCodable, Hashable {
    /// `SCOUTFS_OPEN_INO_MAP_SHIFT`.
    public static let shift = 10
    /// Inodes in one group (1024).
    public static let bits = 1 << shift
    /// Words of bits (16).
    public static let words = bits / 64
    public static let encodedSize = OpenInoMapArgs.encodedSize + words * 8

    public var args: OpenInoMapArgs
    /// Exactly `words` words.
    public var bits: [UInt64]

    public init(args: OpenInoMapArgs, bits: [UInt64] = Array(repeating: 0, count: OpenInoMap.words)) {
        precondition(bits.count == Self.words, "an open inode map has \(Self.words) words")
        self.args = args
        self.bits = bits
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        args = try r.read()
        var b: [UInt64] = []
        b.reserveCapacity(Self.words)
        for _ in 0..<Self.words { b.append(try r.u64()) }
        bits = b
    }

    public func encode(to w: inout ByteWriter) {
        w.write(args)
        for b in bits { w.u64(b) }
    }

    /// The group of an inode number.
    public static func group(ofIno ino: UInt64) -> UInt64 { ino >> UInt64(shift) }

    /// Whether the bit of `ino` (which must be in this map's group) is set.
    public func contains(ino: UInt64) -> Bool {
        let i = Int(ino & UInt64(Self.bits - 1))
        return bits[i / 64] & (1 << UInt64(i % 64)) != 0
    }

    /// Sets the bit of `ino`.
    public mutating func insert(ino: UInt64) {
        let i = Int(ino & UInt64(Self.bits - 1))
        bits[i / 64] |= 1 << UInt64(i % 64)
    }

    /// ORs another map's bits into this one.
    public mutating func formUnion(_ other: OpenInoMap) {
        for i in 0..<Self.words { bits[i] |= other.bits[i] }
    }
}
