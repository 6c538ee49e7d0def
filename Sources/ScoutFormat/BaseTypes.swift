/// `struct scoutfs_block_header` (32 bytes): the start of every metadata block, super and quorum block.
public struct BlockHeader: FixedCodable {
    public static let encodedSize = 32
    public var crc: UInt32
    public var magic: UInt32
    public var fsid: UInt64
    public var seq: UInt64
    public var blkno: UInt64

    public init(crc: UInt32 = 0, magic: UInt32, fsid: UInt64, seq: UInt64, blkno: UInt64) {
        self.crc = crc
        self.magic = magic
        self.fsid = fsid
        self.seq = seq
        self.blkno = blkno
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        crc = try r.u32()
        magic = try r.u32()
        fsid = try r.u64()
        seq = try r.u64()
        blkno = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.u32(crc)
        w.u32(magic)
        w.u64(fsid)
        w.u64(seq)
        w.u64(blkno)
    }
}

/// `struct scoutfs_block_ref` (16 bytes): a block number and the seq its header must carry.
public struct BlockRef: FixedCodable, Hashable {
    public static let encodedSize = 16
    public var blkno: UInt64
    public var seq: UInt64

    public init(blkno: UInt64 = 0, seq: UInt64 = 0) {
        self.blkno = blkno
        self.seq = seq
    }

    /// A zero ref points at nothing.
    public var isNull: Bool { blkno == 0 }

    public init(from r: inout ByteReader) throws(FormatError) {
        blkno = try r.u64()
        seq = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(blkno)
        w.u64(seq)
    }
}

/// `struct scoutfs_btree_root` (24 bytes): a ref and the tree height (0 for an empty tree).
public struct BTreeRoot: FixedCodable, Hashable {
    public static let encodedSize = 24
    public var ref: BlockRef
    public var height: UInt8

    public init(ref: BlockRef = BlockRef(), height: UInt8 = 0) {
        self.ref = ref
        self.height = height
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        ref = try r.read()
        height = try r.u8()
        try r.skip(7)
    }

    public func encode(to w: inout ByteWriter) {
        w.write(ref)
        w.u8(height)
        w.pad(7)
    }
}

/// `struct scoutfs_timespec` (16 bytes).
public struct Timespec: FixedCodable, Hashable, Comparable {
    public static let encodedSize = 16
    public var sec: UInt64
    public var nsec: UInt32

    public init(sec: UInt64 = 0, nsec: UInt32 = 0) {
        self.sec = sec
        self.nsec = nsec
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        sec = try r.u64()
        nsec = try r.u32()
        try r.skip(4)
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(sec)
        w.u32(nsec)
        w.pad(4)
    }

    public static func < (a: Timespec, b: Timespec) -> Bool {
        (a.sec, a.nsec) < (b.sec, b.nsec)
    }
}

/// `union scoutfs_inet_addr` (32 bytes): family 0 none, 1 IPv4, 2 IPv6.
public struct InetAddr: FixedCodable, Hashable, CustomStringConvertible {
    public static let encodedSize = 32
    public static let familyNone: UInt16 = 0
    public static let familyIPv4: UInt16 = 1
    public static let familyIPv6: UInt16 = 2

    public var family: UInt16
    public var port: UInt16
    /// IPv4 address in host order (a.b.c.d is `a << 24 | …`).
    public var ipv4: UInt32
    /// The remaining 24 bytes of the union, kept for IPv6 round trips.
    public var rest: [UInt8]

    public init(ipv4: UInt32, port: UInt16) {
        self.family = Self.familyIPv4
        self.port = port
        self.ipv4 = ipv4
        self.rest = [UInt8](repeating: 0, count: 24)
    }

    public init() {
        family = Self.familyNone
        port = 0
        ipv4 = 0
        rest = [UInt8](repeating: 0, count: 24)
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        family = try r.u16()
        port = try r.u16()
        ipv4 = try r.u32()
        rest = try r.bytes(24)
    }

    public func encode(to w: inout ByteWriter) {
        w.u16(family)
        w.u16(port)
        w.u32(ipv4)
        w.bytes(rest)
    }

    /// Dotted quad of the IPv4 address.
    public var ipv4String: String {
        "\(ipv4 >> 24).\((ipv4 >> 16) & 0xff).\((ipv4 >> 8) & 0xff).\(ipv4 & 0xff)"
    }

    /// `a.b.c.d:port`, as the original prints slot addresses.
    public var description: String { "\(ipv4String):\(port)" }

    /// Parses a dotted-quad IPv4 address; nil when malformed.
    public static func parseIPv4(_ s: String) -> UInt32? {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let n = UInt32(p), n <= 255 else {
                return nil
            }
            v = v << 8 | n
        }
        return v
    }
}
