import ScoutAlloc
public import ScoutBTree
public import ScoutBlockIO
public import ScoutFormat
import SystemPackage

/// A metadata transaction on the meta device: copy-on-write blocks from the server's avail list,
/// frees into its freed list, and an atomic commit.
///
/// Commit order is what makes a crash at any write safe:
/// 1. the avail and freed lists are laid out in new list blocks (taken from avail);
/// 2. every dirty block and list block is written, then the device is synced;
/// 3. the super block, with the next header seq, is written and synced.
/// Until step 3 lands, the last committed super and everything it references are untouched:
/// dirty blocks only ever go to blknos that were free in the committed state, and a block freed
/// by this transaction becomes allocatable only in the next one (the committed
/// `server_meta_freed` list is moved into avail when a transaction starts).
///
/// Deviation from the original: the server double-buffers `server_meta_avail[2]`/`freed[2]` and
/// edits list blocks in place while it runs; we keep the lists in memory during the transaction
/// and always use pair 0, which gives the same on-disk structures and the same reuse rule.
public final class MetaTransaction: MetaBlockStore {
    public let device: MetaDevice
    /// The super block as last committed.
    public private(set) var committed: SuperBlock
    /// The working super: callers change its roots and counters; commit writes it.
    public var superBlock: SuperBlock

    /// Blocks that may be allocated now.
    public private(set) var avail: [UInt64]
    /// Blocks freed by this transaction: allocatable after it commits.
    public private(set) var freed: [UInt64] = []
    /// Blocks written in this transaction.
    private let dirtyBlocks: DirtyBlocks
    /// The list blocks the committed super references (freed when new ones are written).
    private var committedListBlocks: [UInt64]

    /// Opens the transaction state of a volume: reads its super and the server's alloc lists.
    public init(device: MetaDevice, seqs: any RandomNumberGenerator = SystemRandomNumberGenerator()) throws(BlockStoreError) {
        self.device = device
        self.dirtyBlocks = DirtyBlocks(device: device, seqs: seqs)
        let sb: SuperBlock
        do {
            sb = try MetaDevice.readSuper(from: device.device)
        } catch {
            throw storeError(error)
        }
        guard sb.hdr.fsid == device.fsid else {
            throw .format(.badFSID(blkno: Format.superBlkno, expected: device.fsid, found: sb.hdr.fsid))
        }
        self.committed = sb
        self.superBlock = sb
        self.avail = []
        self.committedListBlocks = []
        // both pairs: everything in avail is allocatable; freed lists were committed, so their
        // blocks are allocatable now too
        for head in sb.serverMetaAvail + sb.serverMetaFreed where !head.ref.isNull {
            let (blknos, blocks) = try AllocList.read(head, from: self)
            avail.append(contentsOf: blknos)
            committedListBlocks.append(contentsOf: blocks)
        }
    }

    // MARK: MetaBlockStore

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
            // allocated and never written in this transaction: reusable at once
            avail.append(ref.blkno)
        } else {
            freed.append(ref.blkno)
        }
    }

    /// Takes one free metadata block.
    public func allocate() throws(BlockStoreError) -> UInt64 {
        guard let b = avail.popLast() else { throw .noSpace }
        return b
    }

    /// Gives the transaction more allocatable blocks (for example from the meta extent allocator).
    public func addAvail(_ blknos: some Sequence<UInt64>) {
        avail.append(contentsOf: blknos)
    }

    /// Blocks freed elsewhere (a mount's committed `meta_freed` list) that become allocatable
    /// after this transaction commits.
    public func addFreed(_ blknos: some Sequence<UInt64>) {
        freed.append(contentsOf: blknos)
    }

    /// Writes `blocks` (built by the caller at blknos it took from `allocate()`) with this commit.
    public func adopt(_ blocks: [BlockBuffer]) {
        dirtyBlocks.adopt(blocks)
    }

    /// A new random, non-zero block header seq.
    public func newBlockSeq() -> UInt64 { dirtyBlocks.newSeq() }

    /// Takes up to `count` allocatable blocks away (for example to return them to an extent allocator).
    public func takeAvail(_ count: Int) -> [UInt64] {
        let n = min(count, avail.count)
        let out = Array(avail.suffix(n))
        avail.removeLast(n)
        return out
    }

    // MARK: commit

    /// Writes every dirty block and the alloc lists, syncs, then writes the super and syncs.
    /// On success the transaction continues as a new, empty one on top of the committed state.
    public func commit() throws(BlockStoreError) {
        // the lists being replaced are referenced by the committed super: free after this commit
        let freedNow = (freed + committedListBlocks).sorted()
        let lists = try dirtyBlocks.layOutLists(avail: avail, freed: freedNow)
        var sb = superBlock
        sb.serverMetaAvail = [lists.availHead, AllocListHead()]
        sb.serverMetaFreed = [lists.freedHead, AllocListHead()]
        sb.hdr.seq = committed.hdr.seq + 1
        do {
            try dirtyBlocks.writeAll(extra: lists.blocks)
            try device.sync()
            try device.writeSuper(sb)
            try device.sync()
        } catch let e as BlockStoreError {
            throw e
        } catch let e as BlockIOError {
            throw storeError(e)
        } catch {
            throw .io(errno: 5, blkno: 0)
        }
        // the blocks freed by this commit are allocatable from now on
        committed = sb
        superBlock = sb
        avail = lists.availLeft + freedNow
        freed = []
        committedListBlocks = lists.blknos
    }
}
