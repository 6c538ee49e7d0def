import ScoutBTree
public import ScoutBlockIO
import ScoutFormat
import ScoutStorage

/// A mount's half of log merging (the original's `scoutfs_forest` merge worker): it asks the
/// server for work (GET_LOG_MERGE), merges every input log tree of the request into a
/// copy-on-write copy of the fs-root subtree it was given, with blocks from the request's
/// pool only, writes the blocks and hands the new subtree back (COMMIT_LOG_MERGE).
///
/// Design note. The copy is built in a `LogTransaction` over the request's pool: blocks
/// copied over go to its freed list, which the server frees once it has spliced the subtree
/// in. The merge stops at `dirtyLimit` blocks, or where the subtree root itself would split or
/// join, and reports the key to resume from (REMAIN). Any failure is reported with the ERROR
/// flag so the server puts the range back; nothing this mount wrote is referenced then.
public final class LogMerger: @unchecked Sendable {
    let device: MetaDevice
    let link: any ServerLink
    /// Closed by the unmount before its farewell: no write into the pool after it.
    let gate: LentBlocksGate
    /// Dirty blocks after which a merge stops and hands back what it did (64 MiB).
    public var dirtyLimit = 1024

    public init(device: MetaDevice, link: any ServerLink, gate: LentBlocksGate = LentBlocksGate()) {
        self.device = device
        self.link = link
        self.gate = gate
    }

    /// Does one request's work. Returns nil when the server had none, else how many items
    /// were merged and whether it stopped before the request's end.
    public func mergeOnce() throws(FSError) -> (items: Int, partial: Bool)? {
        if gate.isClosed { return nil }
        guard let req = try link.getLogMerge() else { return nil }
        let comp: LogMergeComplete
        var result = (items: 0, partial: false)
        do {
            (comp, result) = try merge(req)
        } catch {
            let failed = LogMergeComplete(
                metaAvail: req.metaAvail, metaFreed: AllocListHead(), root: req.root, start: req.start, end: req.end,
                remain: req.start, rid: req.rid, seq: req.seq, flags: LogMergeComplete.flagError)
            try link.commitLogMerge(failed)
            throw error
        }
        try link.commitLogMerge(comp)
        return result
    }

    private func merge(_ req: LogMergeRequest) throws(FSError) -> (LogMergeComplete, (items: Int, partial: Bool)) {
        var pool = LogTrees()
        pool.metaAvail = req.metaAvail
        let txn: LogTransaction
        do {
            txn = try LogTransaction(device: device, logTrees: pool)
        } catch {
            throw .store(error)
        }
        let inputs = try Self.inputs(req, store: txn)
        var root = req.root
        let tree = BTree(store: txn, subtree: req.flags & LogMergeRequest.flagSubtree != 0)
        let limit = dirtyLimit
        let stop: (resume: Key?, merged: Int)
        do {
            stop = try tree.merge(&root, from: req.start, through: req.end, inputs: inputs) {
                txn.dirtyCount >= limit || txn.avail.count < 64
            }
        } catch {
            throw .btree(error)
        }
        let written = try gate.write("a log merge") { () throws(FSError) -> LogTrees in
            do throws(BlockStoreError) {
                return try txn.write()
            } catch {
                throw .store(error)
            }
        }
        let comp = LogMergeComplete(
            metaAvail: written.metaAvail, metaFreed: written.metaFreed, root: root, start: req.start, end: req.end,
            remain: stop.resume ?? Key(), rid: req.rid, seq: req.seq,
            flags: stop.resume == nil ? 0 : LogMergeComplete.flagRemain)
        return (comp, (stop.merged, stop.resume != nil))
    }

    /// The item roots of the request's inputs: trees finalized before the merge began.
    static func inputs(_ req: LogMergeRequest, store: some MetaBlockStore) throws(FSError) -> [BTreeRoot] {
        var out: [BTreeRoot] = []
        do {
            try BTree(store: store).forEach(req.logsRoot) { b, off in
                if let lt = try? LogTrees.decode(b.value(at: off)), lt.flags & LogTrees.flagFinalized != 0,
                    lt.finalizeSeq < req.inputSeq, lt.itemRoot.height > 0
                {
                    out.append(lt.itemRoot)
                }
                return true
            }
        } catch {
            throw .btree(error)
        }
        return out
    }
}
