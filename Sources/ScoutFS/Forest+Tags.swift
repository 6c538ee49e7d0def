import ScoutBTree
import ScoutBlockIO
import ScoutFormat

extension Forest {
    /// Up to `limit` items of the committed forest in `from...through`, in key order, read
    /// from the super block's roots (not the server's GET_ROOTS answer: the merge status that
    /// says which log trees are merge inputs must come from the same super block as the
    /// trees, as in the original's 2026 fix). Newest version wins; delta items are resolved
    /// with `TotlMerging`. Every log tree is read (no bloom filter: these zones are read whole).
    func scanCommitted(from: Key, through: Key, limit: Int) throws(FSError) -> [(key: Key, value: [UInt8])] {
        try FSError.retryingStale("reading committed items") { () throws(FSError) in
            try scanCommittedOnce(from: from, through: through, limit: limit)
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
