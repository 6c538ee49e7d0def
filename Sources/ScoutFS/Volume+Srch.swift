import ScoutBTree
import ScoutFormat
import ScoutStorage

/// The `srch.` tag of xattr names.
public enum SrchNames {
    static let scoutfsPrefix = Array("scoutfs.".utf8)
    static let tagLen = 5

    /// Whether `name` is a `scoutfs.` name whose leading tags include `srch.` (only as much of
    /// the original's tag parsing as srch needs; malformed names are refused elsewhere).
    public static func isSrch(_ name: [UInt8]) -> Bool {
        guard name.count >= scoutfsPrefix.count + tagLen + 1, name.starts(with: scoutfsPrefix) else { return false }
        let tags = ["hide.", "indx.", "srch.", "totl."].map { Array($0.utf8) }
        var pos = scoutfsPrefix.count
        while pos + tagLen <= name.count, let t = tags.first(where: { name[pos..<(pos + tagLen)].elementsEqual($0) }) {
            if t == tags[2] { return true }
            pos += tagLen
        }
        return false
    }
}

extension Volume {
    static func isSrchName(_ name: [UInt8]) -> Bool { SrchNames.isSrch(name) }

    /// Records the srch entries of an xattr change of `ino`: the xattr `removing` (its id) is
    /// gone and `adding` exists. Nothing for names without the `srch.` tag. The entries go to
    /// this mount's srch log file at the next commit.
    ///
    /// A replaced value gets a new xattr id here (the original keeps the id and logs nothing),
    /// so a replacement logs the old id's removal and the new id's creation.
    func srchNote(_ ino: UInt64, name: [UInt8], removing: UInt64?, adding: UInt64?) {
        guard Self.isSrchName(name) else { return }
        let hash = FNV1a.hash64(name)
        for id in [removing, adding].compactMap({ $0 }) {
            srchPending.append(SrchEntry(hash: hash, ino: ino, id: id))
        }
    }

    /// The srch entry of an xattr deleted with its inode: `key`/`value` is any item of the
    /// inode; only the first part of a `srch.` xattr logs its removal.
    func srchNoteDropped(_ ino: UInt64, _ key: Key, _ value: [UInt8]) {
        guard key.type == KeyType.xattr, key.fourth == 0, value.count >= XattrHeader.encodedSize,
            let h = try? XattrHeader.decode(Array(value[0..<XattrHeader.encodedSize])),
            value.count >= XattrHeader.encodedSize + Int(h.nameLen)
        else { return }
        let name = Array(value[XattrHeader.encodedSize..<(XattrHeader.encodedSize + Int(h.nameLen))])
        srchNote(ino, name: name, removing: key.third, adding: nil)
    }

    /// One SEARCH_XATTRS pass: the inodes from `fromIno` through `lastIno` that may hold the
    /// xattr `name` (at most `limit` of its (ino, id) entries), read from the committed srch
    /// files of the server's stable roots; `done` when the pass reached `lastIno`.
    public func searchXattrs(name: [UInt8], fromIno: UInt64, lastIno: UInt64, limit: Int = 1_000_000) throws(FSError) -> (inodes: [UInt64], done: Bool) {
        if lastIno < fromIno { return ([], true) }
        let hash = FNV1a.hash64(name)
        var lastError: FSError? = nil
        // a block reused after the roots were read (stale) makes the pass start again
        for _ in 0..<3 {
            let roots = try link.getRoots()
            let r: (inodes: [UInt64], done: Bool)
            do throws(BlockStoreError) {
                r = try SrchSearch.pass(ReadOnlyStore(device: meta), srchRoot: roots.srchRoot, logsRoot: roots.logsRoot,
                                        hash: hash, fromIno: fromIno, lastIno: lastIno, limit: limit)
            } catch {
                lastError = .store(error)
                if case .format(let f) = error, f.isStale { continue }
                throw .store(error)
            }
            state.withLock { counters.srchSearches += 1 }
            return r
        }
        throw lastError ?? FSError(FSError.EIO)
    }

    /// Does one piece of srch compaction work from the server (SRCH_GET_COMPACT); false when
    /// it had none. A merge reads the input files' entries, sorts them, drops the pairs that
    /// cancel (a create and its delete) and writes one sorted file with blocks from the
    /// compaction's own `meta_avail`; the deletion step that follows frees the inputs' blocks
    /// into its `meta_freed`. Each step is written and synced before SRCH_COMMIT_COMPACT hands
    /// it back, so a crash leaves the server's busy item to be redone from the start.
    ///
    /// Deviation: the original stops and commits every 32 MiB of dirty blocks with resume
    /// positions (`blk`, `pos`) in each input; this writes a step whole (the inputs are at
    /// most four 1 MiB log files, or four sorted files of one size order).
    public func srchCompactOnce() throws(FSError) -> Bool {
        var sc = try link.srchGetCompact()
        guard sc.nr > 0 else { return false }
        var lt = LogTrees()
        lt.metaAvail = sc.metaAvail
        lt.metaFreed = sc.metaFreed
        let inputs = (0..<Int(sc.nr)).map { sc.inputs[$0].sfl }
        do throws(BlockStoreError) {
            let t = try LogTransaction(device: meta, logTrees: lt)
            if sc.flags & SrchCompact.flagDelete != 0 {
                for f in inputs {
                    for ref in try SrchFiles.allBlocks(t, f) { try t.free(ref) }
                }
            } else {
                var all: [SrchEntry] = []
                all.reserveCapacity(inputs.reduce(0) { $0 + Int($1.entries) })
                for f in inputs {
                    try SrchFiles.forEachEntry(t, f) { e in
                        all.append(e)
                        return true
                    }
                }
                all.sort()
                var out = SrchFile()
                var i = 0
                while i < all.count {
                    var j = i + 1
                    while j < all.count && all[j] == all[i] { j += 1 }
                    if (j - i) % 2 == 1 { try SrchFiles.append(t, &out, all[i]) }
                    i = j
                }
                sc.out = out
                for k in 0..<Int(sc.nr) {
                    sc.inputs[k].blk = sc.inputs[k].sfl.blocks
                    sc.inputs[k].pos = 0
                }
            }
            let written = try t.write()
            sc.metaAvail = written.metaAvail
            sc.metaFreed = written.metaFreed
        } catch {
            sc.flags |= SrchCompact.flagError
            try? link.srchCommitCompact(sc)
            throw .store(error)
        }
        sc.flags |= SrchCompact.flagDone
        try link.srchCommitCompact(sc)
        state.withLock { counters.srchCompactions += 1 }
        return true
    }
}
