import ScoutBTree
import ScoutFormat
import ScoutStorage

extension ServerCore {
    static func srchKey(_ type: UInt8, _ major: UInt64, _ minor: UInt64 = 0) -> Key {
        Key(zone: KeyZone.srch, type: type, second: major, third: minor)
    }

    /// Moves a mount's srch log file into the srch root once it reached
    /// `Format.srchLogBlockLimit` blocks (always with `force`, for a tree being finalized):
    /// it is keyed by its root blkno, and the mount starts a new file. Left uncommitted.
    func rotateSrchLog(_ lt: inout LogTrees, force: Bool) throws(ServerError) {
        let f = lt.srchFile
        guard !f.ref.isNull, force || f.blocks >= UInt64(Format.srchLogBlockLimit) else { return }
        var root = txn.superBlock.srchRoot
        do {
            try BTree(store: txn).force(&root, Self.srchKey(KeyType.srchLog, f.ref.blkno), f.encoded())
        } catch {
            throw .btree(error)
        }
        txn.superBlock.srchRoot = root
        lt.srchFile = SrchFile()
        srchForceRotate = false
        counters.srchRotateLog += 1
    }
}

// MARK: compaction

extension ServerCore {
    private func srchItems(_ type: UInt8) throws(ServerError) -> [(Key, [UInt8])] {
        var out: [(Key, [UInt8])] = []
        do {
            try BTree(store: txn).forEach(txn.superBlock.srchRoot, from: Self.srchKey(type, 0), through: Self.srchKey(type, .max, .max)) { b, off in
                out.append((b.key(at: off), b.value(at: off)))
                return true
            }
        } catch {
            throw .btree(error)
        }
        return out
    }

    private func srchPut(_ key: Key, _ value: [UInt8]?) throws(ServerError) {
        var root = txn.superBlock.srchRoot
        do {
            if let value {
                try BTree(store: txn).force(&root, key, value)
            } else {
                try BTree(store: txn).delete(&root, key)
            }
        } catch {
            throw .btree(error)
        }
        txn.superBlock.srchRoot = root
    }

    /// The key of a srch file item: log files by their root blkno, sorted files by their size
    /// then root blkno.
    static func srchFileKey(_ f: SrchFile, sorted: Bool) -> Key {
        sorted ? srchKey(KeyType.srchBlocks, f.blocks, f.ref.blkno) : srchKey(KeyType.srchLog, f.ref.blkno)
    }

    /// SRCH_GET_COMPACT: a pending compaction moves to busy for `rid`, or four log files (else
    /// four sorted files of one size order) not in a busy compaction start a new one; `nr` 0
    /// when there is no work. The compaction's `meta_avail` holds blocks for its output.
    /// Commits.
    public func getSrchCompact(rid: UInt64) throws(ServerError) -> SrchCompact {
        var busy: Set<UInt64> = []
        for (_, v) in try srchItems(KeyType.srchBusy) {
            guard let sc = try? SrchCompact.decode(v) else { throw ServerError(errno: 5, "srch busy item does not decode") }
            for i in 0..<Int(sc.nr) { busy.insert(sc.inputs[i].sfl.ref.blkno) }
        }
        if let (k, v) = try srchItems(KeyType.srchPending).first {
            guard let sc = try? SrchCompact.decode(v) else { throw ServerError(errno: 5, "srch pending item does not decode") }
            try srchPut(k, nil)
            try srchPut(Self.srchKey(KeyType.srchBusy, rid, sc.id), v)
            try commit()
            return sc
        }
        var sc = SrchCompact()
        var picked: [SrchFile] = []
        for (k, v) in try srchItems(KeyType.srchLog) where !busy.contains(k.second) {
            if let f = try? SrchFile.decode(v) { picked.append(f) }
            if picked.count == Format.srchCompactNr { break }
        }
        sc.flags = SrchCompact.flagLog
        if picked.count < Format.srchCompactNr {
            picked = []
            sc.flags = SrchCompact.flagSorted
            var order = -1
            for (k, v) in try srchItems(KeyType.srchBlocks) where !busy.contains(k.third) {
                guard let f = try? SrchFile.decode(v) else { continue }
                let o = (64 - f.blocks.leadingZeroBitCount) / Format.srchCompactOrder
                if o != order {
                    order = o
                    picked = []
                }
                picked.append(f)
                if picked.count == Format.srchCompactNr { break }
            }
        }
        guard picked.count == Format.srchCompactNr else { return SrchCompact() }
        sc.nr = UInt8(picked.count)
        for (i, f) in picked.enumerated() { sc.inputs[i].sfl = f }
        sc.id = picked[0].ref.blkno
        // the output is no larger than the inputs, plus parents and list blocks
        let need = picked.reduce(0) { $0 + Int($1.blocks) } + 16
        sc.metaAvail = try buildMetaList(try takeMetaBlocks(need))
        try srchPut(Self.srchKey(KeyType.srchBusy, rid, sc.id), sc.encoded())
        try commit()
        return sc
    }

    /// SRCH_COMMIT_COMPACT: an error puts the busy compaction back as pending; a result not
    /// done is kept as pending to resume from its positions; a finished merge replaces the
    /// input files' items with the output's and goes on (pending) to delete the inputs; a
    /// finished deletion returns the compaction's allocators. Commits.
    public func commitSrchCompact(rid: UInt64, _ res: SrchCompact) throws(ServerError) {
        let busyKey = Self.srchKey(KeyType.srchBusy, rid, res.id)
        guard let v = try srchItems(KeyType.srchBusy).first(where: { $0.0 == busyKey })?.1, let busy = try? SrchCompact.decode(v) else {
            throw ServerError(errno: 2, "no busy srch compaction \(res.id) for rid \(rid)")
        }
        var pending: SrchCompact? = nil
        if res.flags & SrchCompact.flagError != 0 {
            pending = busy
        } else if res.flags & SrchCompact.flagDone == 0 {
            pending = res
        } else if res.flags & SrchCompact.flagDelete == 0 {
            let sorted = res.flags & SrchCompact.flagLog == 0
            if res.out.blocks != 0 { try srchPut(Self.srchFileKey(res.out, sorted: true), res.out.encoded()) }
            for i in 0..<Int(res.nr) { try srchPut(Self.srchFileKey(res.inputs[i].sfl, sorted: sorted), nil) }
            var next = res
            for i in 0..<Int(next.nr) {
                next.inputs[i].blk = 0
                next.inputs[i].pos = 0
            }
            next.flags &= ~(SrchCompact.flagDone | SrchCompact.flagLog | SrchCompact.flagSorted)
            next.flags |= SrchCompact.flagDelete
            pending = next
            counters.srchCompactCommit += 1
        } else {
            try freeMetaList(res.metaAvail)
            try freeMetaList(res.metaFreed)
        }
        if let pending { try srchPut(Self.srchKey(KeyType.srchPending, pending.id), pending.encoded()) }
        try srchPut(busyKey, nil)
        try commit()
    }

    /// A departed mount's busy compactions go back to pending, to be finished by another.
    func cancelSrchCompacts(rid: UInt64) throws(ServerError) {
        for (k, v) in try srchItems(KeyType.srchBusy) where k.second == rid {
            try srchPut(Self.srchKey(KeyType.srchPending, k.third), v)
            try srchPut(k, nil)
        }
    }
}
