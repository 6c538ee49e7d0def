import ScoutAlloc
import ScoutBTree
import ScoutBlockIO
import ScoutStorage
public import ScoutFormat

/// What the server counted of log merging (the original's counter names).
public struct LogMergeCounters: Equatable, Sendable {
    public var logMergeStart: UInt64 = 0
    public var logMergeComplete: UInt64 = 0
    public var logMergeNoFinalized: UInt64 = 0
    public var logMergeWaitTimeout: UInt64 = 0
    public var logMergeRequests: UInt64 = 0
    public var logMergeCommits: UInt64 = 0
    public var logMergeErrors: UInt64 = 0
    public var logMergeSplices: UInt64 = 0
    public var logMergeFreedBlocks: UInt64 = 0
    public var logTreesFinalized: UInt64 = 0
    public var orphanLogTreesReclaimed: UInt64 = 0
    public var srchRotateLog: UInt64 = 0
    public var srchCompactCommit: UInt64 = 0
    /// Blocks the server's avail list gave back to `meta_alloc` past its high mark.
    public var metaAvailTrimmed: UInt64 = 0

    public init() {}

    /// Name and value of each, as `scoutfs counters` prints them.
    public var named: [(String, UInt64)] {
        [
            ("log_merge_start", logMergeStart), ("log_merge_complete", logMergeComplete),
            ("log_merge_no_finalized", logMergeNoFinalized), ("log_merge_wait_timeout", logMergeWaitTimeout),
            ("log_merge_get_request", logMergeRequests), ("log_merge_commit", logMergeCommits),
            ("log_merge_error", logMergeErrors), ("log_merge_splice", logMergeSplices),
            ("log_merge_freed_blocks", logMergeFreedBlocks), ("log_trees_finalized", logTreesFinalized),
            ("orphan_log_trees_reclaimed", orphanLogTreesReclaimed),
            ("srch_rotate_log", srchRotateLog), ("srch_compact_commit", srchCompactCommit),
            ("server_meta_avail_trimmed", metaAvailTrimmed),
        ]
    }
}

/// What `prepareFinalize` decided.
public struct FinalizeDecision: Equatable, Sendable {
    /// Open log trees of these rids must be committed before the merge can start: they were
    /// sent no SYNC_LOG_TREES yet for their open transaction.
    public var sync: [UInt64] = []
    /// Some mounts still have open transactions: wait for them and decide again.
    public var wait = false
    /// A merge was created.
    public var started = false
    /// Log trees of rids with no mounted_client item, reclaimed first: (rid, nr).
    public var orphans: [(UInt64, UInt64)] = []

    public static func == (a: Self, b: Self) -> Bool {
        a.sync == b.sync && a.wait == b.wait && a.started == b.started
            && a.orphans.map(\.0) == b.orphans.map(\.0) && a.orphans.map(\.1) == b.orphans.map(\.1)
    }
}

/// Log merging on the server (the original's server.c merge half).
///
/// Design note.
/// - **Finalization** is coordinated: once any tree needs merging (taller than 2 levels, or
///   forced, or already finalized by a reclaim), every log tree is finalized before a merge
///   starts, so every item written afterwards has a seq above every merge input (an older
///   version in an active tree can never beat a newer one merged into the fs root). A tree
///   whose transaction is not open is finalized by the server itself: its mount holds nothing
///   of it between transactions (a transaction opens with GET_LOG_TREES). A mount with an open
///   transaction is sent SYNC_LOG_TREES once for it (`finalizeSentSeq`), and the caller waits
///   a bounded time for it to commit.
/// - **Merging**: the merge status item holds the merge's seq; inputs are the finalized trees
///   with a smaller `finalize_seq`. GET_LOG_MERGE hands out the fs-root subtree under the last
///   parent covering the next logged key in the next range, with a metadata pool, and records
///   the request. COMMIT_LOG_MERGE stores the completion; completions are spliced into the fs
///   root in batches when no request is out, a partial one's rest goes back as a range, and
///   when no range is left the inputs become freeing items, freed by `freeMergedStep`.
/// - Deviations: the whole splice runs in one server commit (a batch dirties at most a few
///   blocks per completion, well inside the server's pool).
extension ServerCore {
    /// Completions spliced together (the original's LOG_MERGE_SPLICE_BATCH).
    public static let mergeSpliceBatch: UInt64 = 8
    /// Blocks in a merge request's pool: twice the client's dirty limit.
    public static let mergePoolBlocks = 2048

    static func mergeKey(_ zone: UInt8, _ first: UInt64 = 0, _ second: UInt64 = 0) -> Key {
        Key(zone: zone, first: first, second: second)
    }

    static func rangeKey(_ start: Key) -> Key {
        var k = start
        k.zone = KeyZone.logMergeRange
        return k
    }

    // MARK: log_merge items

    private func mergeItem<T: FixedCodable>(_ zone: UInt8, _ first: UInt64 = 0, _ second: UInt64 = 0, as: T.Type) throws(ServerError) -> (Key, T)? {
        let item: BTreeItem?
        do {
            item = try BTree(store: txn).next(txn.superBlock.logMerge, Self.mergeKey(zone, first, second))
        } catch {
            throw .btree(error)
        }
        guard let item, item.key.zone == zone else { return nil }
        do {
            return (item.key, try T.decode(item.value))
        } catch {
            throw ServerError(errno: 5, "corrupt log_merge item \(item.key): \(error)")
        }
    }

    private func putMergeItem(_ key: Key, _ value: [UInt8]) throws(ServerError) {
        var root = txn.superBlock.logMerge
        do {
            try BTree(store: txn).force(&root, key, value)
        } catch {
            throw .btree(error)
        }
        txn.superBlock.logMerge = root
    }

    private func deleteMergeItem(_ key: Key) throws(ServerError) {
        var root = txn.superBlock.logMerge
        do {
            try BTree(store: txn).delete(&root, key)
        } catch {
            throw .btree(error)
        }
        txn.superBlock.logMerge = root
    }

    /// The merge in progress, if any.
    public func mergeStatus() throws(ServerError) -> LogMergeStatus? {
        try mergeItem(KeyZone.logMergeStatus, as: LogMergeStatus.self)?.1
    }

    private func putStatus(_ s: LogMergeStatus) throws(ServerError) {
        try putMergeItem(Self.mergeKey(KeyZone.logMergeStatus), s.encoded())
    }

    /// Every range item, in log_merge key order.
    private func ranges() throws(ServerError) -> [LogMergeRange] {
        var out: [LogMergeRange] = []
        var bad: ServerError?
        do {
            try BTree(store: txn).forEach(
                txn.superBlock.logMerge, from: Self.mergeKey(KeyZone.logMergeRange),
                through: Key(zone: KeyZone.logMergeRange, first: .max, type: .max, second: .max, third: .max, fourth: .max)
            ) { b, off in
                do {
                    out.append(try LogMergeRange.decode(b.value(at: off)))
                    return true
                } catch {
                    bad = ServerError(errno: 5, "corrupt log_merge range \(b.key(at: off)): \(error)")
                    return false
                }
            }
        } catch {
            throw .btree(error)
        }
        if let bad { throw bad }
        return out
    }

    /// The range with the least start at or after `from` (range items are keyed by their start
    /// with the zone replaced, so their key order is not their start order).
    private func nextRange(from: Key) throws(ServerError) -> LogMergeRange? {
        var best: LogMergeRange?
        for r in try ranges() where r.start >= from {
            if best == nil || r.start < best!.start { best = r }
        }
        return best
    }

    // MARK: log trees

    /// Every log_trees item (all rids, all nrs), in key order.
    public func allLogTrees() throws(ServerError) -> [LogTrees] {
        var out: [LogTrees] = []
        var bad: ServerError?
        do {
            try BTree(store: txn).forEach(txn.superBlock.logsRoot) { b, off in
                do {
                    out.append(try LogTrees.decode(b.value(at: off)))
                    return true
                } catch {
                    bad = ServerError(errno: 5, "corrupt log_trees item \(b.key(at: off)): \(error)")
                    return false
                }
            }
        } catch {
            throw .btree(error)
        }
        if let bad { throw bad }
        return out
    }

    /// The last log_trees item of every rid.
    public func lastLogTrees() throws(ServerError) -> [LogTrees] {
        var out: [LogTrees] = []
        for lt in try allLogTrees() {
            if out.last?.rid == lt.rid { out.removeLast() }
            out.append(lt)
        }
        return out
    }

    static func isOpen(_ lt: LogTrees) -> Bool { lt.getTransSeq > lt.commitTransSeq }
    static func isFinalized(_ lt: LogTrees) -> Bool { lt.flags & LogTrees.flagFinalized != 0 }

    /// Finalizes `rid`'s current log tree, whose transaction is not open: its allocators go
    /// back to the server, over as many commits as that takes.
    func finalizeIdle(rid: UInt64) throws(ServerError) {
        while true {
            guard let lt = try currentLogTrees(rid: rid), !Self.isFinalized(lt) else { return }
            if try finalizeStep(lt) { break }
            try commit()
        }
        counters.logTreesFinalized += 1
    }

    /// Decides, at a mount's GET_LOG_TREES (`rid`) or GET_LOG_MERGE (`rid` nil), whether a
    /// merge can start, finalizing what it can (see the design note). `force` finalizes even
    /// small trees (the `log_merge_force_finalize_ours` trigger). Commits what it changed.
    public func prepareFinalize(rid: UInt64?, force: Bool) throws(ServerError) -> FinalizeDecision {
        var d = FinalizeDecision()
        if try mergeStatus() != nil { return d }
        let mounted = try mountedClients()
        // trees of rids that are no longer mounted would look active forever
        for lt in try lastLogTrees() where !Self.isFinalized(lt) && lt.rid != rid && mounted[lt.rid] == nil {
            d.orphans.append((lt.rid, lt.nr))
            try reclaim(rid: lt.rid)
            counters.orphanLogTreesReclaimed += 1
        }
        let trees = try lastLogTrees()
        let sawFinalized = trees.contains { Self.isFinalized($0) }
        let ours = rid.flatMap { r in trees.first { $0.rid == r && !Self.isFinalized($0) } }
        let needOurs = ours.map { $0.itemRoot.height > 2 || force } ?? false
        guard sawFinalized || needOurs || (force && rid == nil) else {
            counters.logMergeNoFinalized += 1
            return d
        }
        var open = false
        for lt in trees where !Self.isFinalized(lt) {
            if Self.isOpen(lt) {
                open = true
                // (a GET_LOG_TREES of an open tree is a resend: that mount commits by itself)
                if lt.getTransSeq > finalizeSentSeq && lt.rid != rid { d.sync.append(lt.rid) }
            } else {
                try finalizeIdle(rid: lt.rid)
            }
        }
        if !d.sync.isEmpty { finalizeSentSeq = txn.superBlock.seq }
        if open {
            d.wait = true
            try commit()
            return d
        }
        guard try lastLogTrees().contains(where: { Self.isFinalized($0) && $0.itemRoot.height > 0 }) || force else {
            // nothing but empty trees: they are freed without a merge
            try freeEmptyFinalized()
            try commit()
            return d
        }
        try putMergeItem(Self.rangeKey(.zero), LogMergeRange(start: .zero, end: .max).encoded())
        try putStatus(LogMergeStatus(nextRangeKey: .zero, nrRequests: 0, nrComplete: 0, seq: nextSeq()))
        counters.logMergeStart += 1
        d.started = true
        try commit()
        return d
    }

    /// Finalized trees without items need no merge: their items and blooms are dropped.
    private func freeEmptyFinalized() throws(ServerError) {
        for lt in try allLogTrees() where Self.isFinalized(lt) && lt.itemRoot.height == 0 {
            try dropLogTrees(lt)
        }
    }

    /// Deletes a finalized log_trees item whose items are merged or moved to a freeing item.
    private func dropLogTrees(_ lt: LogTrees) throws(ServerError) {
        if !lt.bloomRef.isNull { txn.addFreed([lt.bloomRef.blkno]) }
        var root = txn.superBlock.logsRoot
        do {
            try BTree(store: txn).delete(&root, Self.logTreesKey(rid: lt.rid, nr: lt.nr))
        } catch {
            throw .btree(error)
        }
        txn.superBlock.logsRoot = root
    }

    // MARK: requests

    /// The least key in `start...end` of any merge input (finalized before `seq`).
    private func nextLoggedKey(seq: UInt64, from start: Key, through end: Key) throws(ServerError) -> Key? {
        var best: Key?
        let tree = BTree(store: txn)
        for lt in try allLogTrees() where Self.isFinalized(lt) && lt.finalizeSeq < seq && lt.itemRoot.height > 0 {
            do {
                if let it = try tree.next(lt.itemRoot, start), it.key <= end, best == nil || it.key < best! { best = it.key }
            } catch {
                throw .btree(error)
            }
        }
        return best
    }

    /// GET_LOG_MERGE: the next piece of merge work for `rid`, nil when there is none now.
    /// Splices completions first when a batch is ready or no range is left.
    public func getLogMerge(rid: UInt64) throws(ServerError) -> LogMergeRequest? {
        // a mount works on one request at a time: one it still has was answered by a server
        // that died before the reply arrived, and its range goes back
        try cancelLogMerges(rid: rid)
        while true {
            guard var stat = try mergeStatus() else { return nil }
            let rng = try nextRange(from: stat.nextRangeKey)
            let noRanges = stat.nextRangeKey == .zero && rng == nil
            if stat.nrRequests == 0 && (rng == nil || stat.nrComplete >= Self.mergeSpliceBatch) {
                try splice(&stat, noRanges: noRanges)
                try commit()
                continue
            }
            guard let rng else { return nil }
            if stat.nrRequests + stat.nrComplete >= Self.mergeSpliceBatch { return nil }
            guard let next = try nextLoggedKey(seq: stat.seq, from: rng.start, through: rng.end) else {
                try deleteMergeItem(Self.rangeKey(rng.start))
                continue
            }
            let fs = txn.superBlock.fsRoot
            let tree = BTree(store: txn)
            let sub: BTreeRoot
            let par: (start: Key, end: Key)
            do {
                sub = try tree.parentRoot(fs, next)
                par = try tree.parentRange(fs, next)
            } catch {
                throw .btree(error)
            }
            var req = LogMergeRequest(
                metaAvail: AllocListHead(), metaFreed: AllocListHead(), logsRoot: txn.superBlock.logsRoot, root: sub,
                start: next, end: min(rng.end, par.end), inputSeq: stat.seq, rid: rid, seq: nextSeq(),
                flags: fs.height > 2 ? LogMergeRequest.flagSubtree : 0)
            try deleteMergeItem(Self.rangeKey(rng.start))
            if rng.end > req.end {
                let rest = LogMergeRange(start: req.end.incremented(), end: rng.end)
                try putMergeItem(Self.rangeKey(rest.start), rest.encoded())
            }
            req.metaAvail = try buildMetaList(try takeMetaBlocks(Self.mergePoolBlocks))
            try putMergeItem(Self.mergeKey(KeyZone.logMergeRequest, rid, req.seq), req.encoded())
            stat.nextRangeKey = par.end == .max ? .max : par.end.incremented()
            stat.nrRequests += 1
            try putStatus(stat)
            counters.logMergeRequests += 1
            try commit()
            return req
        }
    }

    /// A metadata list holding `blknos`, in new list blocks.
    func buildMetaList(_ blknos: [UInt64]) throws(ServerError) -> AllocListHead {
        var listBlknos: [UInt64] = []
        for _ in 0..<AllocList.blocksNeeded(blknos.count) {
            do {
                listBlknos.append(try txn.allocate())
            } catch {
                throw .store(error)
            }
        }
        let seqs = listBlknos.map { _ in txn.newBlockSeq() }
        let (head, blocks) = AllocList.build(blknos, at: listBlknos, fsid: txn.device.fsid, seqs: seqs)
        txn.adopt(blocks)
        return head
    }

    /// Every block of a list (and its list blocks) becomes free after this commit.
    func freeMetaList(_ head: AllocListHead) throws(ServerError) {
        guard !head.ref.isNull else { return }
        do {
            let (blknos, listBlocks) = try AllocList.read(head, from: txn)
            txn.addFreed(blknos)
            txn.addFreed(listBlocks)
        } catch {
            throw .store(error)
        }
    }

    /// COMMIT_LOG_MERGE: stores a completion (spliced later), or on an error flag puts the
    /// request's range back and takes its pool. A resent completion already processed is
    /// ignored.
    public func commitLogMerge(rid: UInt64, _ comp: LogMergeComplete) throws(ServerError) {
        guard var stat = try mergeStatus() else { return }
        let key = Self.mergeKey(KeyZone.logMergeRequest, rid, comp.seq)
        guard let (k, req) = try mergeItem(KeyZone.logMergeRequest, rid, comp.seq, as: LogMergeRequest.self), k == key,
            req.rid == comp.rid
        else { return }
        try deleteMergeItem(key)
        stat.nrRequests -= 1
        counters.logMergeCommits += 1
        if comp.flags & LogMergeComplete.flagError != 0 {
            counters.logMergeErrors += 1
            try putMergeItem(Self.rangeKey(req.start), LogMergeRange(start: req.start, end: req.end).encoded())
            try freeMetaList(comp.metaAvail)
            try freeMetaList(comp.metaFreed)
            stat.nextRangeKey = .zero
        } else {
            try putMergeItem(Self.mergeKey(KeyZone.logMergeComplete, comp.seq), comp.encoded())
            stat.nrComplete += 1
        }
        try putStatus(stat)
        try commit()
    }

    /// A departed mount's merge requests (or a mount's stale one): their ranges go back and
    /// their pools are taken.
    func cancelLogMerges(rid: UInt64) throws(ServerError) {
        guard var stat = try mergeStatus() else { return }
        var cancelled = false
        while let (key, req) = try mergeItem(KeyZone.logMergeRequest, rid, 0, as: LogMergeRequest.self), key.first == rid {
            try deleteMergeItem(key)
            try putMergeItem(Self.rangeKey(req.start), LogMergeRange(start: req.start, end: req.end).encoded())
            try freeMetaList(req.metaAvail)
            stat.nrRequests -= 1
            stat.nextRangeKey = .zero
            cancelled = true
        }
        if cancelled { try putStatus(stat) }
    }

    /// Splices every completion into the fs root, rebalances where a partial one stopped and
    /// puts its rest back as a range; with no range left, the merge's inputs become freeing
    /// items and the status goes.
    private func splice(_ stat: inout LogMergeStatus, noRanges: Bool) throws(ServerError) {
        var comps: [LogMergeComplete] = []
        var bad: ServerError?
        do {
            try BTree(store: txn).forEach(
                txn.superBlock.logMerge, from: Self.mergeKey(KeyZone.logMergeComplete),
                through: Key(zone: KeyZone.logMergeComplete, first: .max, type: .max, second: .max, third: .max, fourth: .max)
            ) { b, off in
                do {
                    comps.append(try LogMergeComplete.decode(b.value(at: off)))
                    return true
                } catch {
                    bad = ServerError(errno: 5, "corrupt log_merge completion \(b.key(at: off)): \(error)")
                    return false
                }
            }
        } catch {
            throw .btree(error)
        }
        if let bad { throw bad }
        var fs = txn.superBlock.fsRoot
        let tree = BTree(store: txn)
        var noRanges = noRanges
        do {
            for c in comps {
                try tree.setParent(&fs, c.start, c.root)
                try freeMetaList(c.metaAvail)
                try freeMetaList(c.metaFreed)
                counters.logMergeSplices += 1
            }
            for c in comps {
                if c.flags & LogMergeComplete.flagRemain != 0 {
                    try tree.rebalance(&fs, c.start)
                    try putMergeItem(Self.rangeKey(c.remain), LogMergeRange(start: c.remain, end: c.end).encoded())
                    noRanges = false
                }
                try deleteMergeItem(Self.mergeKey(KeyZone.logMergeComplete, c.seq))
            }
        } catch let e as BTreeError {
            throw .btree(e)
        } catch let e as ServerError {
            throw e
        } catch {
            throw ServerError(errno: 5, "\(error)")
        }
        txn.superBlock.fsRoot = fs
        if !noRanges {
            stat.nextRangeKey = .zero
            stat.nrComplete = 0
            try putStatus(stat)
            return
        }
        // the merge is done: its inputs are redundant
        for lt in try allLogTrees() where Self.isFinalized(lt) && lt.finalizeSeq < stat.seq {
            if lt.itemRoot.height > 0 {
                let fr = LogMergeFreeing(root: lt.itemRoot, key: .zero, seq: nextSeq())
                try putMergeItem(Self.mergeKey(KeyZone.logMergeFreeing, fr.seq), fr.encoded())
            }
            try dropLogTrees(lt)
        }
        try deleteMergeItem(Self.mergeKey(KeyZone.logMergeStatus))
        counters.logMergeComplete += 1
    }

    /// Frees up to `budget` blocks of merged input trees; false when nothing is left to free.
    public func freeMergedStep(budget: Int = 1024) throws(ServerError) -> Bool {
        guard let (key, found) = try mergeItem(KeyZone.logMergeFreeing, as: LogMergeFreeing.self) else { return false }
        var fr = found
        let counting = CountingFrees(txn)
        let next: Key?
        do {
            next = try BTree(store: counting).freeBlocks(fr.root, from: fr.key, budget: budget)
        } catch {
            throw .btree(error)
        }
        counters.logMergeFreedBlocks += UInt64(counting.freed)
        if let next {
            fr.key = next
            try putMergeItem(key, fr.encoded())
        } else {
            try deleteMergeItem(key)
        }
        try commit()
        return true
    }
}

/// Reads through a server transaction and turns frees into its freed list (blocks of merged
/// trees: never dirty in this transaction).
private final class CountingFrees: MetaBlockStore {
    let txn: MetaTransaction
    var freed = 0

    init(_ txn: MetaTransaction) { self.txn = txn }

    func read(_ ref: BlockRef, magic: BlockMagic) throws(BlockStoreError) -> BlockBuffer { try txn.read(ref, magic: magic) }

    func dirty(_ ref: inout BlockRef, magic: BlockMagic) throws(BlockStoreError) -> BlockBuffer {
        throw .io(errno: 30, blkno: ref.blkno)
    }

    func free(_ ref: BlockRef) throws(BlockStoreError) {
        txn.addFreed([ref.blkno])
        freed += 1
    }
}
