public import ScoutBTree
public import ScoutFormat

/// An in-memory `MetaBlockStore` for tests: blocks live in a dictionary, new block numbers come
/// from a free list (refilled at commit) or a counter, and a block freed in a transaction is
/// only reused after `commit()`.
///
/// `commit()` ends the transaction: nothing stays dirty, so the next write to any block copies
/// it on write again; blocks freed during the transaction are dropped and become allocatable.
/// Freeing a block twice, or a block the store never handed out, traps: tests want to see that.
public final class MemoryBlockStore: MetaBlockStore {
    /// The fsid written into every header.
    public let fsid: UInt64
    /// Blocks currently allocated (clean or dirty), including ones freed in this transaction.
    public private(set) var blocks: [UInt64: BlockBuffer] = [:]
    /// Block numbers dirtied (allocated) in the current transaction.
    public private(set) var dirtyBlknos: Set<UInt64> = []
    /// Block numbers freed in the current transaction, reusable after commit.
    public private(set) var pendingFree: Set<UInt64> = []
    /// Block numbers that may be allocated now.
    var freeList: [UInt64] = []
    var nextBlkno: UInt64
    /// The seq given to blocks dirtied in the current transaction.
    public private(set) var seq: UInt64 = 1

    /// Blocks copied or allocated by `dirty` since creation.
    public private(set) var dirtiedCount = 0
    /// Blocks freed since creation.
    public private(set) var freedCount = 0
    /// Blocks read since creation.
    public private(set) var readCount = 0
    /// Whether `commit()` computes the crc of each dirty block (off by default: reads here don't
    /// verify crcs, and sealing costs time in big tests).
    public var sealsOnCommit = false
    /// When set, `dirty` fails with `.noSpace` once this many blocks are allocated.
    public var blockLimit: Int?

    /// An empty store whose first allocated block is `firstBlkno`.
    public init(fsid: UInt64 = 0x5c0f_75ee_d000_0001, firstBlkno: UInt64 = 100) {
        self.fsid = fsid
        self.nextBlkno = firstBlkno
    }

    /// Blocks allocated and not freed: the ones live trees should account for exactly.
    public var liveBlknos: Set<UInt64> { Set(blocks.keys).subtracting(pendingFree) }

    public func read(_ ref: BlockRef, magic: BlockMagic) throws(BlockStoreError) -> BlockBuffer {
        readCount += 1
        guard let b = blocks[ref.blkno] else {
            throw .io(errno: 5, blkno: ref.blkno)
        }
        let h = b.header
        if h.magic != magic.rawValue {
            throw .format(.badMagic(blkno: ref.blkno, expected: magic.rawValue, found: h.magic))
        }
        if h.seq != ref.seq {
            throw .format(.stale(blkno: ref.blkno, expectedSeq: ref.seq, foundSeq: h.seq))
        }
        return b
    }

    public func dirty(_ ref: inout BlockRef, magic: BlockMagic) throws(BlockStoreError) -> BlockBuffer {
        if !ref.isNull, dirtyBlknos.contains(ref.blkno), let b = blocks[ref.blkno] {
            return b
        }
        if let limit = blockLimit, blocks.count >= limit { throw .noSpace }
        let source: BlockBuffer? = ref.isNull ? nil : try read(ref, magic: magic)
        let blkno: UInt64
        if let f = freeList.popLast() {
            blkno = f
        } else {
            blkno = nextBlkno
            nextBlkno += 1
        }
        let b = source.map { BlockBuffer(copying: $0) } ?? BlockBuffer(size: Format.largeBlockSize)
        b.header = BlockHeader(magic: magic.rawValue, fsid: fsid, seq: seq, blkno: blkno)
        blocks[blkno] = b
        dirtyBlknos.insert(blkno)
        dirtiedCount += 1
        if !ref.isNull { try free(ref) }
        ref = BlockRef(blkno: blkno, seq: seq)
        return b
    }

    public func free(_ ref: BlockRef) throws(BlockStoreError) {
        precondition(blocks[ref.blkno] != nil, "freeing blkno \(ref.blkno) that is not allocated")
        precondition(!pendingFree.contains(ref.blkno), "blkno \(ref.blkno) freed twice")
        pendingFree.insert(ref.blkno)
        freedCount += 1
    }

    /// Ends the transaction: seals dirty blocks (if `sealsOnCommit`), forgets which blocks are dirty, releases the
    /// blocks freed in it and moves on to the next seq.
    public func commit() {
        for blkno in dirtyBlknos where sealsOnCommit && !pendingFree.contains(blkno) {
            blocks[blkno]?.seal()
        }
        for blkno in pendingFree.sorted(by: >) {
            blocks[blkno] = nil
            freeList.append(blkno)
        }
        pendingFree.removeAll()
        dirtyBlknos.removeAll()
        seq += 1
    }
}
