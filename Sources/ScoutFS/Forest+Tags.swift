import ScoutBTree
import ScoutBlockIO
import ScoutFormat

/// The original's totl merging (`totl.c`): how a reader resolves the versions of one `.totl.`
/// delta item found in the fs root and the log trees into one total.
///
/// Design note. Log merging writes partial results into the fs root while its input log trees
/// are still in the forest, so an input tree's delta may or may not be in the fs root's item
/// already. The fs item's seq says which: merging gives it the newest seq of the inputs it
/// summed. Input deltas are added when they are newer than the fs item, or when there is no
/// fs item and they create one (a positive count; a merge that summed them to nothing removed
/// the item). Log trees that are not inputs of the merge in flight were never merged, so
/// they are always added (the original's 2026 fixes: the merge seq per input, and the seq
/// update on combining).
struct TotlMerging {
    /// Where a version was found.
    enum Source: Sendable {
        case fsRoot
        /// A finalized log tree that the merge in flight takes as an input.
        case mergeInput
        /// Any other log tree (open, or finalized after the merge began).
        case log
    }

    private var fsSeq: UInt64 = 0
    private var fs = (total: UInt64(0), count: UInt64(0))
    private var inpSeq: UInt64 = 0
    private var inp = (total: UInt64(0), count: UInt64(0))
    private var logSeq: UInt64 = 0
    private var log = (total: UInt64(0), count: UInt64(0))

    mutating func contribute(_ seq: UInt64, _ value: [UInt8], _ source: Source) {
        guard let v = try? XattrTotlValue.decode(value), value.count == XattrTotlValue.encodedSize else { return }
        switch source {
        case .fsRoot:
            fsSeq = seq
            fs = (v.total, v.count)
        case .mergeInput:
            inpSeq = max(inpSeq, seq)
            inp = (inp.total &+ v.total, inp.count &+ v.count)
        case .log:
            logSeq = max(logSeq, seq)
            log = (log.total &+ v.total, log.count &+ v.count)
        }
    }

    /// The resolved total, or nil when it is nothing (total and count zero).
    func resolved() -> XattrTotlValue? {
        var t = (total: UInt64(0), count: UInt64(0))
        if fsSeq != 0 { t = fs }
        if (fsSeq != 0 && inpSeq > fsSeq) || (fsSeq == 0 && Int64(bitPattern: inp.count) > 0) {
            t = (t.total &+ inp.total, t.count &+ inp.count)
        }
        if logSeq > 0 { t = (t.total &+ log.total, t.count &+ log.count) }
        return t.total == 0 && t.count == 0 ? nil : XattrTotlValue(total: t.total, count: t.count)
    }
}

extension Forest {
    /// Up to `limit` items of the committed forest in `from...through`, in key order, read
    /// from the super block's roots (not the server's GET_ROOTS answer: the merge status that
    /// says which log trees are merge inputs must come from the same super block as the
    /// trees, as in the original's 2026 fix). Newest version wins; delta items are resolved
    /// with `TotlMerging`. Every log tree is read (no bloom filter: these zones are read whole).
    func scanCommitted(from: Key, through: Key, limit: Int) throws(FSError) -> [(key: Key, value: [UInt8])] {
        do {
            return try scanCommittedOnce(from: from, through: through, limit: limit)
        } catch where error.errno == FSError.ESTALE {
            return try scanCommittedOnce(from: from, through: through, limit: limit)
        }
    }

    private func scanCommittedOnce(from: Key, through: Key, limit: Int) throws(FSError) -> [(key: Key, value: [UInt8])] {
        let sb: SuperBlock
        do {
            sb = try MetaDevice.readSuper(from: device.device)
        } catch {
            throw FSError(FSError.EIO, "read super block: \(error)")
        }
        let store = ReadOnlyStore(device: device)
        let tree = BTree(store: store)
        do {
            var mergeSeq: UInt64 = 0
            if sb.logMerge.height > 0, let st = try tree.lookup(sb.logMerge, Key(zone: KeyZone.logMergeStatus)),
                let s = try? LogMergeStatus.decode(st.value)
            {
                mergeSeq = s.seq
            }
            var roots: [(BTreeRoot, TotlMerging.Source)] = [(sb.fsRoot, .fsRoot)]
            try tree.forEach(sb.logsRoot) { b, off in
                if let lt = try? LogTrees.decode(b.value(at: off)), lt.itemRoot.height > 0 {
                    let input = lt.flags & LogTrees.flagFinalized != 0 && (mergeSeq == 0 || lt.finalizeSeq < mergeSeq)
                    roots.append((lt.itemRoot, input ? .mergeInput : .log))
                }
                return true
            }
            var cursors: [(BTreeCursor<ReadOnlyStore>, TotlMerging.Source)] = []
            for (r, src) in roots where r.height > 0 {
                let c = try tree.cursor(r, seek: from)
                if c.isValid && c.key <= through { cursors.append((c, src)) }
            }
            var out: [(key: Key, value: [UInt8])] = []
            while out.count < limit {
                var least: Key? = nil
                for (c, _) in cursors where c.isValid && c.key <= through {
                    if least == nil || c.key < least! { least = c.key }
                }
                guard let k = least else { break }
                if DeltaItems.isDelta(k) {
                    var m = TotlMerging()
                    for (c, src) in cursors where c.isValid && c.key == k && c.flags & Format.itemFlagDeletion == 0 {
                        m.contribute(c.seq, c.value, src)
                    }
                    if let v = m.resolved() { out.append((k, v.encoded())) }
                } else {
                    var best: (seq: UInt64, flags: UInt8, value: [UInt8])? = nil
                    for (c, _) in cursors where c.isValid && c.key == k {
                        if best == nil || c.seq > best!.seq { best = (c.seq, c.flags, c.value) }
                    }
                    if let best, best.flags & Format.itemFlagDeletion == 0 { out.append((k, best.value)) }
                }
                for i in cursors.indices where cursors[i].0.isValid && cursors[i].0.key == k { try cursors[i].0.advance() }
            }
            return out
        } catch {
            throw .btree(error)
        }
    }
}
