/// `struct scoutfs_inode`: 168 bytes in v2, 160 in v1 (no `proj`).
public struct Inode: Equatable, Sendable {
    public static let sizeV2 = 168
    public static let sizeV1 = 160

    public var size: UInt64 = 0
    public var metaSeq: UInt64 = 0
    public var dataSeq: UInt64 = 0
    public var dataVersion: UInt64 = 0
    public var onlineBlocks: UInt64 = 0
    public var offlineBlocks: UInt64 = 0
    public var nextReaddirPos: UInt64 = 0
    public var nextXattrId: UInt64 = 0
    public var version: UInt64 = 0
    public var nlink: UInt32 = 0
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    public var mode: UInt32 = 0
    public var rdev: UInt32 = 0
    public var flags: UInt32 = 0
    public var atime = Timespec()
    public var ctime = Timespec()
    public var mtime = Timespec()
    public var crtime = Timespec()
    public var proj: UInt64 = 0

    public static let flagTruncate: UInt32 = 0x1
    public static let flagRetention: UInt32 = 0x2

    public init() {}

    /// The size the given format version writes.
    public static func size(forVersion v: UInt64) -> Int { v == 1 ? sizeV1 : sizeV2 }

    /// Whether `bytes` is an inode size that a volume of version `v` may hold.
    public static func isValidSize(_ bytes: Int, version v: UInt64) -> Bool {
        (bytes == sizeV2 && v == Format.versionMax) || bytes == sizeV1
    }

    /// Decodes either size; a v1 value has `proj` 0.
    public static func decode(_ bytes: [UInt8]) throws(FormatError) -> Inode {
        guard bytes.count == sizeV1 || bytes.count == sizeV2 else {
            throw .invalid(structure: "Inode", reason: "value length \(bytes.count) is neither \(sizeV1) nor \(sizeV2)")
        }
        let res: Result<Inode, FormatError> = bytes.withUnsafeBytes { raw in
            Result { () throws(FormatError) -> Inode in
                var r = ByteReader(raw, structure: "Inode")
                var i = Inode()
                i.size = try r.u64()
                i.metaSeq = try r.u64()
                i.dataSeq = try r.u64()
                i.dataVersion = try r.u64()
                i.onlineBlocks = try r.u64()
                i.offlineBlocks = try r.u64()
                i.nextReaddirPos = try r.u64()
                i.nextXattrId = try r.u64()
                i.version = try r.u64()
                i.nlink = try r.u32()
                i.uid = try r.u32()
                i.gid = try r.u32()
                i.mode = try r.u32()
                i.rdev = try r.u32()
                i.flags = try r.u32()
                i.atime = try r.read()
                i.ctime = try r.read()
                i.mtime = try r.read()
                i.crtime = try r.read()
                if r.remaining >= 8 { i.proj = try r.u64() }
                return i
            }
        }
        return try res.get()
    }

    /// Encodes at the size of format version `version`.
    public func encoded(version: UInt64) -> [UInt8] {
        var w = ByteWriter(capacity: Self.sizeV2)
        w.u64(size)
        w.u64(metaSeq)
        w.u64(dataSeq)
        w.u64(dataVersion)
        w.u64(onlineBlocks)
        w.u64(offlineBlocks)
        w.u64(nextReaddirPos)
        w.u64(nextXattrId)
        w.u64(self.version)
        w.u32(nlink)
        w.u32(uid)
        w.u32(gid)
        w.u32(mode)
        w.u32(rdev)
        w.u32(flags)
        w.write(atime)
        w.write(ctime)
        w.write(mtime)
        w.write(crtime)
        if version != 1 { w.u64(proj) }
        return w.bytes
    }
}

/// `struct scoutfs_dirent`: 32 bytes of header, then the name (not terminated).
public struct Dirent: Equatable, Sendable {
    public static let headerSize = 32
    public var ino: UInt64
    public var hash: UInt64
    public var pos: UInt64
    public var type: UInt8
    public var name: [UInt8]

    /// `enum scoutfs_dentry_type`.
    public enum DType: UInt8, Sendable {
        case fifo = 0, chr, dir, blk, reg, lnk, sock, wht
    }

    public init(ino: UInt64, hash: UInt64, pos: UInt64, type: UInt8, name: [UInt8]) {
        self.ino = ino
        self.hash = hash
        self.pos = pos
        self.type = type
        self.name = name
    }

    public static func decode(_ bytes: [UInt8]) throws(FormatError) -> Dirent {
        guard bytes.count > headerSize, bytes.count - headerSize <= Format.nameLength else {
            throw .invalid(structure: "Dirent", reason: "value length \(bytes.count) leaves a name of \(bytes.count - headerSize) bytes")
        }
        let res: Result<Dirent, FormatError> = bytes.withUnsafeBytes { raw in
            Result { () throws(FormatError) -> Dirent in
                var r = ByteReader(raw, structure: "Dirent")
                let ino = try r.u64()
                let hash = try r.u64()
                let pos = try r.u64()
                let type = try r.u8()
                try r.skip(7)
                return Dirent(ino: ino, hash: hash, pos: pos, type: type, name: try r.bytes(r.remaining))
            }
        }
        return try res.get()
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: Self.headerSize + name.count)
        w.u64(ino)
        w.u64(hash)
        w.u64(pos)
        w.u8(type)
        w.pad(7)
        w.bytes(name)
        return w.bytes
    }

    /// The dirent name hash: FNV-1a-32 of the name in the low half and a 32-bit fingerprint of
    /// bits sampled across the name in the high half, so hashed order keeps rough name order.
    public static func nameHash(_ name: [UInt8]) -> UInt64 {
        let low = UInt64(FNV1a.hash32(name))
        return (UInt64(fingerprint(name)) << 32) | low
    }

    /// 32 bits sampled evenly from the name, most significant bit first, so that the
    /// fingerprints sort roughly like the names; short names fill the high bits.
    static func fingerprint(_ name: [UInt8]) -> UInt32 {
        let nameBits = name.count * 8
        let skip = max(nameBits / 32, 1)
        var fp: UInt32 = 0
        var f = 31
        var n = nameBits - 1
        while f >= 0 && n >= 0 {
            // bit n counts from the least significant bit of the last byte
            let byte = name[(nameBits - 1 - n) >> 3]
            if byte & UInt8(1 << (n & 7)) != 0 { fp |= 1 << UInt32(f) }
            f -= 1
            n -= skip
        }
        return fp
    }
}

/// `struct scoutfs_xattr` (8 bytes): the header of the first xattr part.
public struct XattrHeader: FixedCodable {
    public static let encodedSize = 8
    public var valLen: UInt16
    public var nameLen: UInt8

    public init(valLen: UInt16, nameLen: UInt8) {
        self.valLen = valLen
        self.nameLen = nameLen
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        valLen = try r.u16()
        nameLen = try r.u8()
        try r.skip(5)
    }

    public func encode(to w: inout ByteWriter) {
        w.u16(valLen)
        w.u8(nameLen)
        w.pad(5)
    }

    /// Parts needed for a name and value: every part holds up to 896 bytes.
    public static func partCount(nameLen: Int, valLen: Int) -> Int {
        (encodedSize + nameLen + valLen + Format.btreeMaxValueLength - 1) / Format.btreeMaxValueLength
    }
}

/// `struct scoutfs_data_extent_val` (16 bytes).
public struct DataExtentValue: FixedCodable {
    public static let encodedSize = 16
    public static let flagOffline: UInt8 = 1
    public static let flagUnwritten: UInt8 = 2
    public var blkno: UInt64
    public var flags: UInt8

    public init(blkno: UInt64, flags: UInt8 = 0) {
        self.blkno = blkno
        self.flags = flags
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        blkno = try r.u64()
        flags = try r.u8()
        try r.skip(7)
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(blkno)
        w.u8(flags)
        w.pad(7)
    }
}

/// `struct scoutfs_xattr_totl_val` (16 bytes): summed as deltas.
public struct XattrTotlValue: FixedCodable {
    public static let encodedSize = 16
    public var total: UInt64
    public var count: UInt64

    public init(total: UInt64, count: UInt64) {
        self.total = total
        self.count = count
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        total = try r.u64()
        count = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(total)
        w.u64(count)
    }
}

/// `struct scoutfs_quota_rule_val` (48 bytes).
public struct QuotaRuleValue: FixedCodable {
    public static let encodedSize = 48
    public var nameVal: [UInt64]
    public var limit: UInt64
    public var prio: UInt8
    public var op: UInt8
    public var ruleFlags: UInt8
    public var nameSource: [UInt8]
    public var nameFlags: [UInt8]

    public init(nameVal: [UInt64], limit: UInt64, prio: UInt8, op: UInt8, ruleFlags: UInt8, nameSource: [UInt8], nameFlags: [UInt8]) {
        self.nameVal = nameVal
        self.limit = limit
        self.prio = prio
        self.op = op
        self.ruleFlags = ruleFlags
        self.nameSource = nameSource
        self.nameFlags = nameFlags
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        nameVal = [try r.u64(), try r.u64(), try r.u64()]
        limit = try r.u64()
        prio = try r.u8()
        op = try r.u8()
        ruleFlags = try r.u8()
        nameSource = try r.bytes(3)
        nameFlags = try r.bytes(3)
        try r.skip(7)
    }

    public func encode(to w: inout ByteWriter) {
        for v in nameVal { w.u64(v) }
        w.u64(limit)
        w.u8(prio)
        w.u8(op)
        w.u8(ruleFlags)
        w.bytes(nameSource)
        w.bytes(nameFlags)
        w.pad(7)
    }
}

/// `struct scoutfs_mounted_client_btree_val` (40 bytes).
public struct MountedClientValue: FixedCodable {
    public static let encodedSize = 40
    public static let flagQuorum: UInt8 = 1
    public var addr: InetAddr
    public var flags: UInt8

    public init(addr: InetAddr, flags: UInt8) {
        self.addr = addr
        self.flags = flags
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        addr = try r.read()
        flags = try r.u8()
        try r.skip(7)
    }

    public func encode(to w: inout ByteWriter) {
        w.write(addr)
        w.u8(flags)
        w.pad(7)
    }
}

/// FNV-1a, the original's `scoutfs_hash32`/`scoutfs_hash64`.
public enum FNV1a {
    @inlinable
    public static func hash32(_ bytes: some Sequence<UInt8>) -> UInt32 {
        var h: UInt32 = 0x811c_9dc5
        for b in bytes {
            h ^= UInt32(b)
            h &*= 0x0100_0193
        }
        return h
    }

    @inlinable
    public static func hash64(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in bytes {
            h ^= UInt64(b)
            h &*= 0x100_0000_01b3
        }
        return h
    }
}
