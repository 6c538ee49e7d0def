import ScoutAlloc
import ScoutBTree
import ScoutBlockIO
public import ScoutFormat
public import ScoutStorage

/// Why the server refused or failed a request; carries the errno the wire reply uses.
public struct ServerError: Error, Equatable, Sendable, CustomStringConvertible {
    public var errno: Int32
    public var message: String

    public init(errno: Int32, _ message: String) {
        self.errno = errno
        self.message = message
    }

    public var description: String { "\(message) (errno \(errno))" }

    static func store(_ e: BlockStoreError) -> ServerError {
        switch e {
        case .noSpace: return ServerError(errno: 28, "metadata device full")
        case .io(let errno, let blkno): return ServerError(errno: errno, "I/O error at meta blkno \(blkno)")
        case .format(let f): return ServerError(errno: 5, "corrupt metadata: \(f)")
        }
    }

    static func btree(_ e: BTreeError) -> ServerError {
        switch e {
        case .store(let s): return store(s)
        default: return ServerError(errno: 5, "corrupt metadata: \(e)")
        }
    }

    static func alloc(_ e: AllocError) -> ServerError {
        switch e {
        case .btree(let b): return btree(b)
        default: return ServerError(errno: 5, "allocator: \(e)")
        }
    }
}

/// What a mount sees of the server's persistent state when it opens a transaction or reads.
public struct StableRoots: Equatable, Sendable {
    public var fsRoot: BTreeRoot
    public var logsRoot: BTreeRoot
    public var srchRoot: BTreeRoot

    public init(fsRoot: BTreeRoot, logsRoot: BTreeRoot, srchRoot: BTreeRoot) {
        self.fsRoot = fsRoot
        self.logsRoot = logsRoot
        self.srchRoot = srchRoot
    }
}

/// Totals for statfs.
public struct ServerStatfs: Equatable, Sendable {
    public var uuid: [UInt8]
    public var totalMetaBlocks: UInt64
    public var freeMetaBlocks: UInt64
    public var totalDataBlocks: UInt64
    public var freeDataBlocks: UInt64
    public var inodeCount: UInt64
}

/// The server's shared persistent state and its request handlers, without any networking.
///
/// Design note. Every handler that changes persistent state ends in a server commit (the super
/// block is written) before it returns, as in the original: a client that got a reply can rely
/// on it after any crash. The state lives in one `MetaTransaction`.
///
/// - Sequence numbers all come from `super.seq` (the core seq): transaction seqs, lock
///   write seqs. A commit persists the counter, and a committed log tree's `max_item_seq`
///   pushes it up, so a new server never hands out a seq below a logged item.
/// - Mount allocators: GET_LOG_TREES moves the mount's committed `meta_freed` blknos into the
///   server's freed list (allocatable after this commit), its `data_freed` extents back into
///   `data_alloc`, and tops `meta_avail` up from the server's avail (refilled from
///   `meta_alloc`) and `data_avail` from `data_alloc`.
///
/// - Recovery: `startSeq` raises the core seq above every logged item when a server starts;
///   `reclaim` (farewell, or a fenced mount) finalizes the mount's open log tree after
///   returning its allocators, then deletes its mounted_client item, over as many commits as
///   it takes.
///
/// Deviations from the original: the server's own metadata allocator is the single avail list
/// of `MetaTransaction` (refilled from `meta_alloc[0]`, then `[1]`); freed meta blocks do not go
/// back into the `meta_alloc` extent trees, and a reclaimed mount's `meta_avail`/`meta_freed`
/// blocks join that list (the original splices them into its other freed list). Log trees
/// are merged into the fs root as `ServerCore+LogMerge.swift` describes.
public final class ServerCore {
    public let txn: MetaTransaction
    /// Fill targets for a mount's allocators (blocks).
    public var metaAvailTarget = 8192
    public var metaAvailLow = 4096
    public var dataAvailTarget: UInt64 = 262_144  // 1 GiB of 4 KiB blocks
    public var dataAvailLow: UInt64 = 65_536
    /// The server keeps at least this many blocks in its own avail list.
    public var serverAvailLow = 512
    /// ... and at most this many after a commit: every block a mount frees comes to the
    /// server's freed list and then its avail list, and each commit lays those lists out
    /// whole, so past this mark the excess goes back into `meta_alloc`. A commit then costs
    /// the same however much the mounts have freed since mkfs.
    public var serverAvailHigh = 8192
    /// Mounts whose data_avail the last GET_LOG_TREES could not fill to the low mark: the
    /// free data space is elsewhere (other mounts' data_avail, or freed in their open
    /// transactions). While any mount is short, the others give their unused data_avail
    /// back at their next GET_LOG_TREES, and the service asks them to commit (SYNC_LOG_TREES)
    /// so that happens soon. Kept in memory: a new server starts with none.
    public private(set) var dataShort: Set<UInt64> = []
    /// What log merging counted (kept in memory, per server).
    public var counters = LogMergeCounters()
    /// The next COMMIT_LOG_TREES rotates the committing mount's srch log file whatever its
    /// size (the original's `srch_force_log_rotate` trigger); cleared by a rotation.
    public var srchForceRotate = false
    /// The core seq when the last SYNC_LOG_TREES for finalization went out: open transactions
    /// that began before it were already asked to commit.
    public var finalizeSentSeq: UInt64 = 0

    /// What a mount's data_avail is filled to: `dataAvailTarget`, or an eighth of the data
    /// device when that is less, so a few mounts of a small device never hold all its space.
    public var dataFillTarget: UInt64 { max(1, min(dataAvailTarget, txn.superBlock.totalDataBlocks / 8)) }
    /// Below this a mount's data_avail is refilled: `dataAvailLow`, at most a quarter of the target.
    public var dataFillLow: UInt64 { max(1, min(dataAvailLow, dataFillTarget / 4)) }

    public init(txn: MetaTransaction) {
        self.txn = txn
    }

    public var superBlock: SuperBlock { txn.superBlock }

    // MARK: seqs and commits

    /// The next core seq.
    public func nextSeq() -> UInt64 {
        txn.superBlock.seq += 1
        return txn.superBlock.seq
    }

    /// Raises the core seq to `seq` when it is below (a recovered lock's write seq).
    public func setSeqIfGreater(_ seq: UInt64) {
        if seq > txn.superBlock.seq { txn.superBlock.seq = seq }
    }

    /// The largest `max_item_seq` of every log tree (the original's `scoutfs_forest_get_max_seq`).
    public func maxLoggedItemSeq() throws(ServerError) -> UInt64 {
        try allLogTrees().map(\.maxItemSeq).max() ?? 0
    }

    /// What a server does once as it starts: the core seq becomes at least every logged
    /// item's seq, so no new transaction or lock write seq sorts below an item already written
    /// (lesson 14). Not committed by itself: the next commit persists it, and a server that
    /// dies first leaves the next one to compute the same.
    public func startSeq() throws(ServerError) {
        setSeqIfGreater(try maxLoggedItemSeq())
    }

    /// Writes the server's changes and the super block.
    public func commit() throws(ServerError) {
        do {
            try refillServerAvail()
            try trimServerAvail()
            try txn.commit()
        } catch let e as ServerError {
            throw e
        } catch let e as BlockStoreError {
            throw .store(e)
        } catch {
            throw ServerError(errno: 5, "\(error)")
        }
    }

    private func refillServerAvail() throws(ServerError) {
        guard txn.avail.count < serverAvailLow else { return }
        txn.addAvail(try takeFromMetaAlloc(serverAvailLow * 4 - txn.avail.count))
    }

    /// Returns the avail list's excess over `serverAvailHigh` to `meta_alloc[0]`, in runs of
    /// consecutive blknos. Only avail blocks move: they are free in the committed super, where
    /// this transaction's own frees (the freed list) are not yet.
    private func trimServerAvail() throws(ServerError) {
        // keep enough for the extent tree's own copies and the lists
        let keep = max(serverAvailLow * 2, serverAvailHigh / 2)
        guard txn.avail.count > max(serverAvailHigh, keep) else { return }
        let excess = txn.takeAvail(txn.avail.count - keep).sorted()
        counters.metaAvailTrimmed += UInt64(excess.count)
        let alloc = ExtentAllocator(store: txn)
        var root = txn.superBlock.metaAlloc[0]
        defer { txn.superBlock.metaAlloc[0] = root }
        var i = 0
        while i < excess.count {
            var j = i
            while j + 1 < excess.count && excess[j + 1] == excess[j] + 1 { j += 1 }
            do {
                try alloc.free(&root, Extent(start: excess[i], len: UInt64(j - i + 1)))
            } catch {
                throw .alloc(error)
            }
            i = j + 1
        }
    }

    /// Up to `count` blknos out of the `meta_alloc` extent trees (`[0]`, then `[1]`).
    private func takeFromMetaAlloc(_ count: Int) throws(ServerError) -> [UInt64] {
        var out: [UInt64] = []
        let alloc = ExtentAllocator(store: txn)
        var roots = txn.superBlock.metaAlloc
        defer { txn.superBlock.metaAlloc = roots }
        for i in 0..<roots.count where out.count < count {
            while out.count < count {
                let ext: Extent?
                do {
                    ext = try alloc.allocate(&roots[i], count: UInt64(count - out.count))
                } catch {
                    throw .alloc(error)
                }
                guard let ext else { break }
                out.append(contentsOf: ext.start..<(ext.start + ext.len))
            }
        }
        return out
    }

    /// Takes `count` metadata blknos for a mount's list, from `meta_alloc`, then from the
    /// server's spare avail; fewer when the device is full.
    func takeMetaBlocks(_ count: Int) throws(ServerError) -> [UInt64] {
        var out = try takeFromMetaAlloc(count)
        if out.count < count {
            // leave the server enough blocks for its own commits
            let spare = max(0, txn.avail.count - serverAvailLow)
            out.append(contentsOf: txn.takeAvail(min(spare, count - out.count)))
        }
        return out
    }

    // MARK: mounted clients

    static func mountedClientKey(_ rid: UInt64) -> Key { Key(zone: KeyZone.mountedClient, first: rid) }

    /// Records a mount on its first greeting, with its address. Idempotent: a greeting resent
    /// to a new server after the last one inserted the item (the original accepts EEXIST)
    /// leaves the existing item, and nothing is committed then.
    public func addMountedClient(rid: UInt64, addr: InetAddr, quorum: Bool) throws(ServerError) {
        let tree = BTree(store: txn)
        var root = txn.superBlock.mountedClients
        let val = MountedClientValue(addr: addr, flags: quorum ? MountedClientValue.flagQuorum : 0)
        do {
            if try tree.lookup(root, Self.mountedClientKey(rid)) != nil { return }
            try tree.force(&root, Self.mountedClientKey(rid), val.encoded())
        } catch {
            throw .btree(error)
        }
        txn.superBlock.mountedClients = root
        try commit()
    }

    /// The mounted_client item of `rid`, nil when there is none.
    public func mountedClient(rid: UInt64) throws(ServerError) -> MountedClientValue? {
        let item: BTreeItem?
        do {
            item = try BTree(store: txn).lookup(txn.superBlock.mountedClients, Self.mountedClientKey(rid))
        } catch {
            throw .btree(error)
        }
        guard let item else { return nil }
        do {
            return try MountedClientValue.decode(item.value)
        } catch {
            throw ServerError(errno: 5, "corrupt mounted_client item for rid \(rid): \(error)")
        }
    }

    /// The rids of every mount the volume records as mounted.
    public func mountedClients() throws(ServerError) -> [UInt64: MountedClientValue] {
        var out: [UInt64: MountedClientValue] = [:]
        let tree = BTree(store: txn)
        do {
            try tree.forEach(txn.superBlock.mountedClients, from: Key(zone: KeyZone.mountedClient), through: Key(zone: KeyZone.mountedClient, first: .max, type: .max, second: .max, third: .max, fourth: .max)) { b, off in
                if let v = try? MountedClientValue.decode(b.value(at: off)) { out[b.key(at: off).first] = v }
                return true
            }
        } catch {
            throw .btree(error)
        }
        return out
    }

    /// A clean unmount (FAREWELL): the mount's resources are reclaimed as for a fenced mount.
    public func farewell(rid: UInt64) throws(ServerError) {
        try reclaim(rid: rid)
    }

    /// Whether `rid`'s data_avail came back short from its last GET_LOG_TREES.
    public func isDataShort(rid: UInt64) -> Bool { dataShort.contains(rid) }

    /// How many allocator extents one reclaim commit moves at most (the original bounds the
    /// blocks a commit may dirty; a fragmented allocator takes several commits).
    public var reclaimExtentsPerCommit = 256

    /// Reclaims everything a departed mount (farewell, or fenced) held: its open log tree is
    /// finalized once its unused allocators are back in the server's pools (`meta_avail` and
    /// `meta_freed` blocks become the server's after the commit, `data_avail` and `data_freed`
    /// extents go back to `data_alloc`), and its mounted_client item is deleted last. The log
    /// tree's items stay for a later merge. Runs as many commits as it needs, each one a
    /// consistent state, and is idempotent: after a crash at any point, or when a second
    /// server repeats it, it finishes what is left (the original's `reclaim_rid`).
    ///
    /// The mount's outstanding log merge requests are cancelled first (their ranges go back).
    /// Its srch log file is rotated into the srch root as the tree is finalized.
    public func reclaim(rid: UInt64) throws(ServerError) {
        dataShort.remove(rid)
        while try !reclaimStep(rid: rid) {
            try commit()
        }
        try commit()
    }

    /// One bounded step of `reclaim`, left uncommitted: true when the mount is fully
    /// reclaimed. Every step leaves a consistent state to commit.
    public func reclaimStep(rid: UInt64) throws(ServerError) -> Bool {
        try cancelLogMerges(rid: rid)
        try cancelSrchCompacts(rid: rid)
        if let lt = try currentLogTrees(rid: rid), lt.flags & LogTrees.flagFinalized == 0 {
            if try !finalizeStep(lt) { return false }
        }
        let tree = BTree(store: txn)
        var root = txn.superBlock.mountedClients
        do {
            if try tree.lookup(root, Self.mountedClientKey(rid)) != nil {
                try tree.delete(&root, Self.mountedClientKey(rid))
            }
        } catch {
            throw .btree(error)
        }
        txn.superBlock.mountedClients = root
        return true
    }

    /// One bounded step of finalizing `lt`, a log tree whose transaction is not open (or whose
    /// mount is gone): its allocators go back to the server's pools, then it is flagged
    /// finalized with a new `finalize_seq`. Left uncommitted; true once it is finalized.
    func finalizeStep(_ lt: LogTrees) throws(ServerError) -> Bool {
        var lt = lt
        try rotateSrchLog(&lt, force: true)
        for head in [lt.metaFreed, lt.metaAvail] where !head.ref.isNull {
            do {
                let (blknos, listBlocks) = try AllocList.read(head, from: txn)
                txn.addFreed(blknos)
                txn.addFreed(listBlocks)
            } catch {
                throw .store(error)
            }
        }
        lt.metaFreed = AllocListHead()
        lt.metaAvail = AllocListHead()
        var budget = reclaimExtentsPerCommit
        let alloc = ExtentAllocator(store: txn)
        var core = txn.superBlock.dataAlloc
        do {
            while budget > 0, let ext = try alloc.allocate(&lt.dataAvail, count: .max) {
                try alloc.free(&core, ext)
                budget -= 1
            }
            while budget > 0, let ext = try alloc.allocate(&lt.dataFreed, count: .max) {
                try alloc.free(&core, ext)
                budget -= 1
            }
        } catch {
            throw .alloc(error)
        }
        txn.superBlock.dataAlloc = core
        let drained = lt.dataAvail.totalLen == 0 && lt.dataFreed.totalLen == 0
        if drained {
            // the transaction is no longer open and the mount writes no more
            lt.commitTransSeq = lt.getTransSeq
            lt.dataAllocZoneBlocks = 0
            lt.dataAllocZones = Array(repeating: 0, count: Format.dataAllocZoneLE64s)
            lt.flags |= LogTrees.flagFinalized
            lt.finalizeSeq = nextSeq()
        }
        try storeLogTrees(lt)
        return drained
    }

    // MARK: inode numbers

    /// A run of up to `count` inode numbers; nr 0 when they are exhausted.
    public func allocInodes(count: UInt64) throws(ServerError) -> (ino: UInt64, nr: UInt64) {
        let ino = txn.superBlock.nextIno
        let nr = min(count, UInt64.max - ino)
        txn.superBlock.nextIno = ino + nr
        try commit()
        return (ino, nr)
    }

    // MARK: log trees

    static func logTreesKey(rid: UInt64, nr: UInt64) -> Key { Key(zone: KeyZone.logTrees, first: rid, second: nr) }

    /// The newest log trees item of `rid`.
    public func currentLogTrees(rid: UInt64) throws(ServerError) -> LogTrees? {
        let tree = BTree(store: txn)
        let item: BTreeItem?
        do {
            item = try tree.prev(txn.superBlock.logsRoot, Self.logTreesKey(rid: rid, nr: .max))
        } catch {
            throw .btree(error)
        }
        guard let item, item.key.zone == KeyZone.logTrees, item.key.first == rid else { return nil }
        do {
            return try LogTrees.decode(item.value)
        } catch {
            throw ServerError(errno: 5, "corrupt log_trees item for rid \(rid): \(error)")
        }
    }

    func storeLogTrees(_ lt: LogTrees) throws(ServerError) {
        let tree = BTree(store: txn)
        var root = txn.superBlock.logsRoot
        do {
            try tree.force(&root, Self.logTreesKey(rid: lt.rid, nr: lt.nr), lt.encoded())
        } catch {
            throw .btree(error)
        }
        txn.superBlock.logsRoot = root
    }

    /// GET_LOG_TREES: opens the mount's next transaction with filled allocators.
    public func getLogTrees(rid: UInt64) throws(ServerError) -> LogTrees {
        var lt: LogTrees
        if let cur = try currentLogTrees(rid: rid), cur.flags & LogTrees.flagFinalized == 0 {
            lt = cur
        } else {
            lt = LogTrees()
            lt.rid = rid
            lt.nr = (try currentLogTrees(rid: rid)?.nr ?? 0) + 1
        }
        try reclaimFreed(&lt)
        try refillMetaAvail(&lt)
        try refillDataAvail(&lt)
        lt.getTransSeq = nextSeq()
        try storeLogTrees(lt)
        try commit()
        return lt
    }

    /// COMMIT_LOG_TREES: makes a mount's written trees durable. A repeat of a commit that
    /// already landed (the reply was lost) succeeds again.
    public func commitLogTrees(_ lt: LogTrees) throws(ServerError) {
        guard let cur = try currentLogTrees(rid: lt.rid), cur.nr == lt.nr else {
            throw ServerError(errno: 22, "commit for rid \(lt.rid) nr \(lt.nr) that has no open log trees")
        }
        if cur.commitTransSeq == lt.getTransSeq && cur.getTransSeq == lt.getTransSeq { return }
        guard cur.getTransSeq == lt.getTransSeq else {
            throw ServerError(errno: 22, "commit of transaction seq \(lt.getTransSeq) for rid \(lt.rid), open is \(cur.getTransSeq)")
        }
        var next = lt
        next.commitTransSeq = lt.getTransSeq
        try rotateSrchLog(&next, force: srchForceRotate)
        if next.maxItemSeq >= txn.superBlock.seq { txn.superBlock.seq = next.maxItemSeq }
        txn.superBlock.inodeCount = UInt64(bitPattern: Int64(bitPattern: txn.superBlock.inodeCount) &+ Int64(bitPattern: lt.inodeCountDelta &- cur.inodeCountDelta))
        try storeLogTrees(next)
        try commit()
    }

    private func reclaimFreed(_ lt: inout LogTrees) throws(ServerError) {
        if !lt.metaFreed.ref.isNull {
            do {
                let (blknos, listBlocks) = try AllocList.read(lt.metaFreed, from: txn)
                txn.addFreed(blknos)
                txn.addFreed(listBlocks)
            } catch {
                throw .store(error)
            }
            lt.metaFreed = AllocListHead()
        }
        if lt.dataFreed.totalLen > 0 || !lt.dataFreed.root.ref.isNull {
            let alloc = ExtentAllocator(store: txn)
            var core = txn.superBlock.dataAlloc
            do {
                while let ext = try alloc.allocate(&lt.dataFreed, count: .max) {
                    try alloc.free(&core, ext)
                }
            } catch {
                throw .alloc(error)
            }
            txn.superBlock.dataAlloc = core
        }
    }

    private func refillMetaAvail(_ lt: inout LogTrees) throws(ServerError) {
        guard lt.metaAvail.totalNr < UInt64(metaAvailLow) else { return }
        var blknos: [UInt64] = []
        var oldBlocks: [UInt64] = []
        if !lt.metaAvail.ref.isNull {
            do {
                (blknos, oldBlocks) = try AllocList.read(lt.metaAvail, from: txn)
            } catch {
                throw .store(error)
            }
        }
        blknos.append(contentsOf: try takeMetaBlocks(metaAvailTarget - blknos.count))
        txn.addFreed(oldBlocks)
        let need = AllocList.blocksNeeded(blknos.count)
        var listBlknos: [UInt64] = []
        for _ in 0..<need {
            do {
                listBlknos.append(try txn.allocate())
            } catch {
                throw .store(error)
            }
        }
        let seqs = listBlknos.map { _ in txn.newBlockSeq() }
        let (head, blocks) = AllocList.build(blknos, at: listBlknos, fsid: txn.device.fsid, seqs: seqs)
        txn.adopt(blocks)
        lt.metaAvail = head
    }

    /// Tops the mount's data_avail up to the fill target when it is below the low mark. While
    /// another mount is short of data space, this one's unused data_avail goes back to
    /// `data_alloc` instead (it is refilled once it has run out). A refill that cannot reach
    /// the low mark marks the mount short.
    private func refillDataAvail(_ lt: inout LogTrees) throws(ServerError) {
        let alloc = ExtentAllocator(store: txn)
        var core = txn.superBlock.dataAlloc
        defer { txn.superBlock.dataAlloc = core }
        if !dataShort.isEmpty && !dataShort.contains(lt.rid) && lt.dataAvail.totalLen > 0 {
            do {
                while let ext = try alloc.allocate(&lt.dataAvail, count: .max) {
                    try alloc.free(&core, ext)
                }
            } catch {
                throw .alloc(error)
            }
            return
        }
        let target = dataFillTarget
        guard lt.dataAvail.totalLen < dataFillLow else { return }
        do {
            while lt.dataAvail.totalLen < target,
                let ext = try alloc.allocate(&core, count: target - lt.dataAvail.totalLen)
            {
                try alloc.free(&lt.dataAvail, ext)
            }
        } catch {
            throw .alloc(error)
        }
        if lt.dataAvail.totalLen < dataFillLow {
            dataShort.insert(lt.rid)
        } else {
            dataShort.remove(lt.rid)
        }
    }

    // MARK: reads

    /// GET_ROOTS: the roots of the last committed super.
    public func stableRoots() -> StableRoots {
        let sb = txn.committed
        return StableRoots(fsRoot: sb.fsRoot, logsRoot: sb.logsRoot, srchRoot: sb.srchRoot)
    }

    /// GET_LAST_SEQ: one less than the smallest open transaction seq of any mount, or the
    /// current core seq when none is open.
    public func lastSeq() throws(ServerError) -> UInt64 {
        var least = txn.superBlock.seq + 1
        let tree = BTree(store: txn)
        let clients = try mountedClients()
        do {
            for rid in clients.keys {
                if let item = try tree.prev(txn.superBlock.logsRoot, Self.logTreesKey(rid: rid, nr: .max)),
                    item.key.zone == KeyZone.logTrees, item.key.first == rid,
                    let lt = try? LogTrees.decode(item.value), lt.getTransSeq > lt.commitTransSeq
                {
                    least = min(least, lt.getTransSeq)
                }
            }
        } catch {
            throw .btree(error)
        }
        return least - 1
    }

    /// STATFS totals. Free blocks count the core allocators and every mount's pools.
    public func statfs() throws(ServerError) -> ServerStatfs {
        let sb = txn.superBlock
        var freeMeta = sb.metaAlloc.reduce(0) { $0 + $1.totalLen } + UInt64(txn.avail.count)
        var freeData = sb.dataAlloc.totalLen
        let tree = BTree(store: txn)
        do {
            try tree.forEach(sb.logsRoot) { b, off in
                if let lt = try? LogTrees.decode(b.value(at: off)) {
                    freeMeta += lt.metaAvail.totalNr
                    freeData += lt.dataAvail.totalLen + lt.dataFreed.totalLen
                }
                return true
            }
        } catch {
            throw .btree(error)
        }
        return ServerStatfs(
            uuid: sb.uuid, totalMetaBlocks: sb.totalMetaBlocks, freeMetaBlocks: freeMeta,
            totalDataBlocks: sb.totalDataBlocks, freeDataBlocks: freeData, inodeCount: sb.inodeCount)
    }
}
