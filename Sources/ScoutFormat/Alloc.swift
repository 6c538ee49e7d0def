/// `struct scoutfs_alloc_list_head` (32 bytes): a list of alloc list blocks.
public struct AllocListHead: FixedCodable, Hashable {
    public static let encodedSize = 32
    public var ref: BlockRef
    /// Sum of `nr` over every block in the list.
    public var totalNr: UInt64
    /// `nr` of the first block.
    public var firstNr: UInt32
    public var flags: UInt32

    public init(ref: BlockRef = BlockRef(), totalNr: UInt64 = 0, firstNr: UInt32 = 0, flags: UInt32 = 0) {
        self.ref = ref
        self.totalNr = totalNr
        self.firstNr = firstNr
        self.flags = flags
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        ref = try r.read()
        totalNr = try r.u64()
        firstNr = try r.u32()
        flags = try r.u32()
    }

    public func encode(to w: inout ByteWriter) {
        w.write(ref)
        w.u64(totalNr)
        w.u32(firstNr)
        w.u32(flags)
    }
}

/// `struct scoutfs_alloc_root` (40 bytes): a free-extent btree and the blocks it holds.
public struct AllocRoot: FixedCodable, Hashable {
    public static let encodedSize = 40
    public var totalLen: UInt64
    public var flags: UInt32
    public var root: BTreeRoot

    public init(totalLen: UInt64 = 0, flags: UInt32 = 0, root: BTreeRoot = BTreeRoot()) {
        self.totalLen = totalLen
        self.flags = flags
        self.root = root
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        totalLen = try r.u64()
        flags = try r.u32()
        try r.skip(4)
        root = try r.read()
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(totalLen)
        w.u32(flags)
        w.pad(4)
        w.write(root)
    }
}

/// Header of `struct scoutfs_alloc_list_block` (56 bytes); the blkno array follows.
public struct AllocListBlockHeader: FixedCodable {
    public static let encodedSize = 56
    /// blknos that fit in one 64 KiB list block (8185).
    public static let maxBlknos = (Format.largeBlockSize - encodedSize) / 8

    public var hdr: BlockHeader
    public var next: BlockRef
    /// Index of the first used blkno in the array.
    public var start: UInt32
    /// Number of used blknos from `start`.
    public var nr: UInt32

    public init(hdr: BlockHeader, next: BlockRef = BlockRef(), start: UInt32 = 0, nr: UInt32 = 0) {
        self.hdr = hdr
        self.next = next
        self.start = start
        self.nr = nr
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        hdr = try r.read()
        next = try r.read()
        start = try r.u32()
        nr = try r.u32()
    }

    public func encode(to w: inout ByteWriter) {
        w.write(hdr)
        w.write(next)
        w.u32(start)
        w.u32(nr)
    }

    /// start and nr lie inside the array.
    public var isValid: Bool {
        UInt64(start) + UInt64(nr) <= UInt64(Self.maxBlknos)
    }
}

/// Free extent keys: each free extent is stored once by end blkno and once by order of length.
public enum FreeExtentKey {
    /// floor(log8(len)): the order zone groups extents by this.
    public static func order(of len: UInt64) -> UInt64 {
        precondition(len > 0)
        return UInt64((63 - len.leadingZeroBitCount) / 3)
    }

    /// `FREE_EXTENT_BLKNO` key: first = end blkno, second = len.
    public static func blkno(end: UInt64, len: UInt64) -> Key {
        Key(zone: KeyZone.freeExtentBlkno, first: end, second: len)
    }

    /// `FREE_EXTENT_ORDER` key: first = ~order, second = end, third = len.
    public static func order(end: UInt64, len: UInt64) -> Key {
        Key(zone: KeyZone.freeExtentOrder, first: ~order(of: len), second: end, third: len)
    }
}
