public import ScoutFormat

/// Why a block could not be read, made writable or freed.
public enum BlockStoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The block failed verification: corrupt, or stale (see `FormatError.isStale`).
    case format(FormatError)
    /// No free metadata block was left to copy a block into.
    case noSpace
    /// The device returned an errno.
    case io(errno: Int32, blkno: UInt64)

    public var description: String {
        switch self {
        case .format(let f): return f.description
        case .noSpace: return "no free metadata blocks"
        case .io(let e, let b): return "blkno \(b): I/O error (errno \(e))"
        }
    }
}

/// The metadata blocks a btree reads and copies on write, seen from inside one transaction.
///
/// Implemented by the storage layer over the block cache and the transaction's allocators, and
/// by an in-memory store in tests. The btree itself does no I/O and keeps no state between calls
/// other than through this protocol.
public protocol MetaBlockStore: AnyObject {
    /// Reads the block `ref` points to and verifies magic, crc, fsid, blkno and seq. A block
    /// dirtied in the current transaction is returned as it is in memory.
    func read(_ ref: BlockRef, magic: BlockMagic) throws(BlockStoreError) -> BlockBuffer

    /// Makes `ref`'s block writable in this transaction and returns it.
    ///
    /// A block already dirty in this transaction is returned as is. Otherwise a new blkno is
    /// allocated, the contents are copied (a null `ref` gives a zeroed block), the header gets
    /// `magic`, the fsid, the new blkno and a new seq, the old blkno is freed (reusable only
    /// after this transaction commits), and `ref` is updated to the new (blkno, seq).
    func dirty(_ ref: inout BlockRef, magic: BlockMagic) throws(BlockStoreError) -> BlockBuffer

    /// Frees a block the caller no longer references (for example after a join).
    func free(_ ref: BlockRef) throws(BlockStoreError)
}
