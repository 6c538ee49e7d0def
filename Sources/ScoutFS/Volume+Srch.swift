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
        // a block reused after the roots were read (stale) makes the pass start again
        let r = try FSError.retryingStale("searching srch files") { () throws(FSError) in
            let roots = try link.getRoots()
            do throws(BlockStoreError) {
                return try SrchSearch.pass(ReadOnlyStore(device: meta), srchRoot: roots.srchRoot, logsRoot: roots.logsRoot,
                                           hash: hash, fromIno: fromIno, lastIno: lastIno, limit: limit)
            } catch {
                throw .store(error)
            }
        }
        state.withLock { counters.srchSearches += 1 }
        return r
    }

    /// Does one piece of srch compaction work from the server (SRCH_GET_COMPACT); false when
    /// it had none. A merge of log files reads their entries, sorts them, drops the pairs
    /// that cancel (an entry seen an even number of times: a create and its delete) and
    /// writes one sorted file with blocks from the compaction's own `meta_avail`. A merge of
    /// sorted files streams them in order from each input's resume position (`blk`, `pos`:
    /// the srch block and the byte offset of its next entry) and stops, between runs of equal
    /// entries, once `dirtyLimit` output blocks are dirty: it hands back its progress without
    /// DONE and the server keeps it pending for the next SRCH_GET_COMPACT (the original's
    /// safe-resume positions). The deletion step that follows a merge frees the inputs'
    /// blocks into the compaction's `meta_freed`. Every step is written and synced before
    /// SRCH_COMMIT_COMPACT, so a crash leaves the server's last copy to be redone.
    public func srchCompactOnce(dirtyLimit: Int = 32 << 20 / Format.largeBlockSize) throws(FSError) -> Bool {
        if lentBlocks.isClosed { return false }
        var sc = try link.srchGetCompact()
        guard sc.nr > 0 else { return false }
        var lt = LogTrees()
        lt.metaAvail = sc.metaAvail
        lt.metaFreed = sc.metaFreed
        let inputs = (0..<Int(sc.nr)).map { sc.inputs[$0].sfl }
        var finished = true
        let txn: LogTransaction
        do throws(BlockStoreError) {
            let t = try LogTransaction(device: meta, logTrees: lt)
            if sc.flags & SrchCompact.flagDelete != 0 {
                for f in inputs {
                    for ref in try SrchFiles.allBlocks(t, f) { try t.free(ref) }
                }
            } else if sc.flags & SrchCompact.flagLog != 0 {
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
            } else {
                var readers = (0..<Int(sc.nr)).map { SrchReader(file: sc.inputs[$0].sfl, blk: sc.inputs[$0].blk, pos: Int(sc.inputs[$0].pos)) }
                var out = sc.out
                while true {
                    var least: SrchEntry? = nil
                    for i in readers.indices {
                        if let e = try readers[i].entry(t), least.map({ e < $0 }) ?? true { least = e }
                    }
                    guard let m = least else { break }
                    if t.dirtyCount > dirtyLimit {
                        finished = false
                        break
                    }
                    var count = 0
                    for i in readers.indices {
                        while let e = try readers[i].entry(t), e == m {
                            readers[i].advance()
                            count += 1
                        }
                    }
                    if count % 2 == 1 { try SrchFiles.append(t, &out, m) }
                }
                sc.out = out
                for (k, r) in readers.enumerated() {
                    sc.inputs[k].blk = r.blk
                    sc.inputs[k].pos = UInt64(r.pos)
                }
            }
            txn = t
        } catch {
            sc.flags |= SrchCompact.flagError
            try? link.srchCommitCompact(sc)
            throw .store(error)
        }
        do throws(FSError) {
            let written = try lentBlocks.write("a srch compaction") { () throws(FSError) -> LogTrees in
                do throws(BlockStoreError) {
                    return try txn.write()
                } catch {
                    throw .store(error)
                }
            }
            sc.metaAvail = written.metaAvail
            sc.metaFreed = written.metaFreed
        } catch {
            sc.flags |= SrchCompact.flagError
            try? link.srchCommitCompact(sc)
            throw error
        }
        if finished { sc.flags |= SrchCompact.flagDone }
        try link.srchCommitCompact(sc)
        state.withLock { counters.srchCompactions += 1 }
        return true
    }
}

/// Reads a sorted srch file's entries from a resume position: block `blk`, byte `pos` of its
/// entries (the entries before it are decoded again for the differences).
struct SrchReader {
    let file: SrchFile
    private(set) var blk: UInt64
    private(set) var pos: Int
    private var block: BlockBuffer?
    private var entryBytes = 0
    private var prev = SrchEntry()
    private var current: (SrchEntry, Int)?

    init(file: SrchFile, blk: UInt64, pos: Int) {
        self.file = file
        self.blk = blk
        self.pos = pos
    }

    /// The entry at the position, nil past the end.
    mutating func entry(_ store: any MetaBlockStore) throws(BlockStoreError) -> SrchEntry? {
        if let current { return current.0 }
        while blk < file.blocks {
            if block == nil {
                let b = try SrchFiles.block(store, file, blk)
                let h: SrchBlockHeader
                do { h = try b.decode(SrchBlockHeader.self) } catch { throw .format(error) }
                block = b
                entryBytes = Int(h.entryBytes)
                prev = SrchEntry()
                var p = 0
                while p < pos && p < entryBytes {
                    guard let (e, n) = decodeAt(b, p) else { throw corrupt() }
                    prev = e
                    p += n
                }
            }
            if pos >= entryBytes {
                block = nil
                blk += 1
                pos = 0
                continue
            }
            guard let b = block, let d = decodeAt(b, pos) else { throw corrupt() }
            current = d
            return d.0
        }
        return nil
    }

    /// Moves past the entry `entry` returned.
    mutating func advance() {
        guard let (e, n) = current else { return }
        prev = e
        pos += n
        current = nil
    }

    private func decodeAt(_ b: BlockBuffer, _ p: Int) -> (SrchEntry, Int)? {
        guard p <= SrchBlockHeader.safeBytes else { return nil }
        return SrchCodec.decode(UnsafeRawBufferPointer(b.bytes), at: SrchCodec.entriesOffset + p, after: prev)
    }

    private func corrupt() -> BlockStoreError {
        .format(.invalid(structure: "srch block", reason: "entry at \(pos) of block \(blk) does not decode"))
    }
}
