import ScoutAlloc
public import ScoutBTree
public import ScoutBlockIO
public import ScoutFormat

/// One mount's transaction on its own log trees (the original's client transaction).
///
/// Metadata blocks come only from the `meta_avail` list the server gave this mount, and every
/// block this transaction frees (copied-over blocks, old list blocks) goes to its `meta_freed`
/// list, which the server takes back only after the commit is durable. So two mounts committing
/// at once never write the same block, and a committed block is never overwritten.
///
/// `write()` lays the remaining avail and the freed blknos out in new list blocks (taken from
/// avail), writes every dirty block, syncs, and returns the `LogTrees` to send in
/// COMMIT_LOG_TREES. The transaction is finished after that; the next one starts from the
/// server's GET_LOG_TREES reply.
public final class LogTransaction: MetaBlockStore {
    public let device: MetaDevice
    /// The working log trees: callers update `itemRoot`, `bloomRef`, the data allocators and
    /// the seqs; `write()` fills in the meta lists.
    public var logTrees: LogTrees
    public private(set) var avail: [UInt64]
    public private(set) var freed: [UInt64]
    private var committedListBlocks: [UInt64]
    private let dirtyBlocks: DirtyBlocks

    /// Opens a transaction on `logTrees` (as the server returned it): reads both meta lists.
    public init(device: MetaDevice, logTrees: LogTrees, seqs: any RandomNumberGenerator = SystemRandomNumberGenerator()) throws(BlockStoreError) {
        self.device = device
        self.logTrees = logTrees
        self.dirtyBlocks = DirtyBlocks(device: device, seqs: seqs)
        self.avail = []
        self.freed = []
        self.committedListBlocks = []
        let (a, ab) = try AllocList.read(logTrees.metaAvail, from: self)
        let (f, fb) = try AllocList.read(logTrees.metaFreed, from: self)
        avail = a
        freed = f
        committedListBlocks = ab + fb
    }

    /// Blocks dirtied so far.
    public var dirtyCount: Int { dirtyBlocks.count }

    public func read(_ ref: BlockRef, magic: BlockMagic) throws(BlockStoreError) -> BlockBuffer {
        try dirtyBlocks.read(ref, magic: magic)
    }

    public func dirty(_ ref: inout BlockRef, magic: BlockMagic) throws(BlockStoreError) -> BlockBuffer {
        let (b, old) = try dirtyBlocks.cow(&ref, magic: magic, allocate: allocate)
        if let old { freed.append(old) }
        return b
    }

    public func free(_ ref: BlockRef) throws(BlockStoreError) {
        if dirtyBlocks.discard(ref.blkno) {
            avail.append(ref.blkno)
        } else {
            freed.append(ref.blkno)
        }
    }

    public func allocate() throws(BlockStoreError) -> UInt64 {
        guard let b = avail.popLast() else { throw .noSpace }
        return b
    }

    /// Writes the lists and every dirty block, then syncs the device. Returns the log trees
    /// that reference them.
    public func write() throws(BlockStoreError) -> LogTrees {
        let lists = try dirtyBlocks.layOutLists(avail: avail, freed: freed + committedListBlocks)
        try dirtyBlocks.writeAll(extra: lists.blocks)
        do {
            try device.sync()
        } catch {
            throw storeError(error)
        }
        var lt = logTrees
        lt.metaAvail = lists.availHead
        lt.metaFreed = lists.freedHead
        return lt
    }
}
