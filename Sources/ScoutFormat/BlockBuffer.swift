/// One metadata or small block in memory: an aligned, zero-filled buffer that owns its bytes.
///
/// A class so that caches, btree paths and transactions can share one block without copying
/// 64 KiB. Mutation is not synchronized: a block is either shared read-only (clean) or owned by
/// one transaction (dirty).
public final class BlockBuffer: @unchecked Sendable {
    // Invariant for @unchecked Sendable: a dirty buffer is only touched by the transaction that
    // owns it; clean buffers are never written, so sharing them across threads is safe.
    public let bytes: UnsafeMutableRawBufferPointer

    /// Allocates `size` zeroed bytes aligned to 4 KiB (so O_DIRECT can use them).
    public init(size: Int) {
        bytes = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        // zeroed a word at a time: byte by byte costs a call per byte in unoptimised builds
        let words = size / 8
        if let base = bytes.baseAddress, words > 0 { base.initializeMemory(as: UInt64.self, repeating: 0, count: words) }
        UnsafeMutableRawBufferPointer(rebasing: bytes[(words * 8)...]).initializeMemory(as: UInt8.self, repeating: 0)
    }

    /// A copy of another buffer's bytes.
    public convenience init(copying other: BlockBuffer) {
        self.init(size: other.size)
        bytes.copyMemory(from: UnsafeRawBufferPointer(other.bytes))
    }

    deinit { bytes.deallocate() }

    @inlinable public var size: Int { bytes.count }

    @inlinable public func u8(_ off: Int) -> UInt8 { bytes[off] }
    @inlinable public func u16(_ off: Int) -> UInt16 {
        UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: off, as: UInt16.self))
    }
    @inlinable public func u32(_ off: Int) -> UInt32 {
        UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: off, as: UInt32.self))
    }
    @inlinable public func u64(_ off: Int) -> UInt64 {
        UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: off, as: UInt64.self))
    }
    @inlinable public func setU8(_ off: Int, _ v: UInt8) { bytes[off] = v }
    @inlinable public func setU16(_ off: Int, _ v: UInt16) {
        bytes.storeBytes(of: v.littleEndian, toByteOffset: off, as: UInt16.self)
    }
    @inlinable public func setU32(_ off: Int, _ v: UInt32) {
        bytes.storeBytes(of: v.littleEndian, toByteOffset: off, as: UInt32.self)
    }
    @inlinable public func setU64(_ off: Int, _ v: UInt64) {
        bytes.storeBytes(of: v.littleEndian, toByteOffset: off, as: UInt64.self)
    }

    /// Zeroes `count` bytes at `off`.
    @inlinable public func zero(_ off: Int, _ count: Int) {
        UnsafeMutableRawBufferPointer(rebasing: bytes[off..<(off + count)]).initializeMemory(as: UInt8.self, repeating: 0)
    }

    /// Copies raw bytes in at `off`.
    @inlinable public func write(_ src: [UInt8], at off: Int) {
        src.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: bytes[off..<(off + src.count)]).copyMemory(from: $0) }
    }

    /// Encodes a structure at `off`.
    @inlinable public func write(_ v: some FixedCodable, at off: Int) {
        write(v.encoded(), at: off)
    }

    /// Reads raw bytes.
    @inlinable public func read(_ off: Int, _ count: Int) -> [UInt8] {
        Array(UnsafeRawBufferPointer(rebasing: bytes[off..<(off + count)]))
    }

    /// Decodes a structure at `off`, with bounds checked.
    @inlinable public func decode<T: FixedCodable>(_: T.Type = T.self, at off: Int = 0) throws(FormatError) -> T {
        var r = ByteReader(UnsafeRawBufferPointer(bytes), decoding: T.self, offset: off)
        return try T(from: &r)
    }

    /// The header at the start of the block.
    public var header: BlockHeader {
        get { BlockHeader(crc: u32(0), magic: u32(4), fsid: u64(8), seq: u64(16), blkno: u64(24)) }
        set { write(newValue, at: 0) }
    }

    /// crc32c over everything after the crc field.
    public func computeCRC() -> UInt32 {
        CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[4...]))
    }

    /// Stores the computed crc in the header: the last step before the block is written.
    public func seal() {
        setU32(0, computeCRC())
    }

    /// Checks magic, crc, fsid, blkno and (when `seq` is given) the reference's seq.
    ///
    /// Corruption (magic, crc, fsid, blkno) is reported before staleness, because a torn or
    /// foreign block must never look like a merely reused one.
    public func verify(magic: BlockMagic, fsid: UInt64, blkno: UInt64, seq: UInt64?) throws(FormatError) {
        let h = header
        if h.magic != magic.rawValue { throw .badMagic(blkno: blkno, expected: magic.rawValue, found: h.magic) }
        let c = computeCRC()
        if h.crc != c { throw .badCRC(blkno: blkno, stored: h.crc, computed: c) }
        if h.fsid != fsid { throw .badFSID(blkno: blkno, expected: fsid, found: h.fsid) }
        if h.blkno != blkno { throw .badBlkno(expected: blkno, found: h.blkno) }
        if let seq, h.seq != seq { throw .stale(blkno: blkno, expectedSeq: seq, foundSeq: h.seq) }
    }
}
