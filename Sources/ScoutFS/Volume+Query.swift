import Glibc
import ScoutBTree
import ScoutBlockIO
import ScoutFormat

/// One entry of ALLOC_DETAIL: an allocator's free blocks (the original's alloc_foreach).
public struct AllocatorDetail: Equatable, Sendable {
    public var id: UInt64
    public var blocks: UInt64
    public var meta: Bool
    public var avail: Bool
}

/// One extent of GET_FIEMAP, in bytes.
public struct FiemapEntry: Equatable, Sendable {
    public var logical: UInt64
    public var physical: UInt64
    public var length: UInt64
    public var offline: Bool
    public var unwritten: Bool
    public var last: Bool
}

/// A directory entry that refers to an inode (from its link backref).
public struct ReferringDirent: Equatable, Sendable {
    public var dirIno: UInt64
    public var dirPos: UInt64
    public var ino: UInt64
    /// DT_* as readdir reports it.
    public var dType: UInt8
    public var name: [UInt8]
}

extension Volume {
    /// The change-index walk (WALK_INODES): `(major, ino)` of the items of index `type`
    /// (`KeyType.inodeIndexMetaSeq` or `...DataSeq`) from `first` through `last`, at most `max`.
    ///
    /// `last.major` is clamped to the last committed seq, read before the roots are sampled,
    /// so every item of a seq up to it is in those roots: an agent that resumes after the last
    /// entry returned never misses a change. The items are read from the committed forest
    /// without cluster locks (a newer version of an inode may also show an older entry that
    /// its open transaction has deleted: a false positive the caller re-checks, never a miss),
    /// and ranges with nothing in them are skipped through the trees' next keys, so a walk
    /// costs what it returns, not the span of seqs.
    public func walkInodes(type: UInt8, first: (major: UInt64, ino: UInt64), last: (major: UInt64, ino: UInt64), max: Int)
        throws(FSError) -> [(major: UInt64, ino: UInt64)]
    {
        guard max > 0 else { return [] }
        let committed = try link.lastSeq()
        var lastKey = Self.indexKey(type, last.major, last.ino)
        if committed < last.major { lastKey = Self.indexKey(type, committed, .max) }
        var pos = Self.indexKey(type, first.major, first.ino)
        guard pos <= lastKey else { return [] }
        return try state.withLock { () throws(FSError) -> [(major: UInt64, ino: UInt64)] in
            // roots sampled after a GET_LAST_SEQ of at least `committed` hold every item up to
            // it (roots only get newer), so a walk reloads them only when the seq moved on
            if committed > walkRootsSeq {
                forest.invalidateRoots()
                walkRootsSeq = committed
            }
            var out: [(major: UInt64, ino: UInt64)] = []
            while pos <= lastKey && out.count < max {
                let lock = LockRange.covering(pos)
                let (_, end, items) = try forest.read(pos, lock: lock)
                // in key order (the forest merges the trees' sorted leaves)
                let sorted = items.map(\.0).filter { $0 >= pos && $0 <= lastKey }
                for k in sorted.prefix(max - out.count) { out.append((k.second, k.third)) }
                if out.count >= max || end >= lastKey || end == .max { break }
                pos = end.incremented()
                if sorted.isEmpty {
                    // nothing here: jump to the next key any tree holds
                    guard let next = try forest.nextKey(after: pos, through: lastKey) else { break }
                    pos = next
                }
            }
            return out
        }
    }

    /// INO_PATH: the next path to `ino` from the cursor (`dirIno`, `dirPos`): the backref it
    /// took and the path from the root through it, components joined with `/`, no leading
    /// slash. ENOENT when no link is left at or after the cursor.
    public func inoPath(_ ino: UInt64, dirIno: UInt64, dirPos: UInt64) throws(FSError) -> (dirIno: UInt64, dirPos: UInt64, path: [UInt8]) {
        let found = try withLocks([ino], write: false) { () throws -> Dirent? in
            _ = try loadInode(ino)
            guard let it = try cache.next(from: Self.backrefKey(ino, dirIno, dirPos), through: Self.backrefKey(ino, .max, .max)) else { return nil }
            guard var d = try? Dirent.decode(it.value) else { throw FSError(FSError.EIO, "backref \(it.key)") }
            d.ino = it.key.second
            d.pos = it.key.third
            return d
        }
        guard let found else { throw FSError(FSError.ENOENT) }
        var components: [[UInt8]] = [found.name]
        var dir = found.ino
        var seen: Set<UInt64> = [ino]
        while dir != Format.rootIno {
            // a concurrent rename can make the walk meet a loop or a vanished parent
            guard seen.insert(dir).inserted, components.count < 2048 else { throw FSError(Glibc.ELOOP, "inode \(ino): path to the root loops") }
            let up = try withLocks([dir], write: false) { () throws -> (UInt64, [UInt8])? in
                guard let it = try cache.next(from: Self.backrefKey(dir, 0, 0), through: Self.backrefKey(dir, .max, .max)) else { return nil }
                guard let d = try? Dirent.decode(it.value) else { throw FSError(FSError.EIO, "backref \(it.key)") }
                return (it.key.second, d.name)
            }
            guard let up else { throw FSError(FSError.ENOENT, "directory \(dir) has no link") }
            components.append(up.1)
            dir = up.0
        }
        var path: [UInt8] = []
        for c in components.reversed() {
            if !path.isEmpty { path.append(UInt8(ascii: "/")) }
            path += c
        }
        return (found.ino, found.pos, path)
    }

    /// GET_REFERRING_ENTRIES: the entries that name `ino`, from the cursor on, in backref
    /// (dir, pos) order; `more` when `max` cut the list.
    public func referringEntries(_ ino: UInt64, dirIno: UInt64, dirPos: UInt64, max: Int) throws(FSError) -> (entries: [ReferringDirent], more: Bool) {
        try withLocks([ino], write: false) { () throws -> ([ReferringDirent], Bool) in
            _ = try loadInode(ino)
            var out: [ReferringDirent] = []
            var at = Self.backrefKey(ino, dirIno, dirPos)
            let end = Self.backrefKey(ino, .max, .max)
            while let it = try cache.next(from: at, through: end) {
                if out.count == max { return (out, true) }
                guard let d = try? Dirent.decode(it.value) else { throw FSError(FSError.EIO, "backref \(it.key)") }
                out.append(ReferringDirent(dirIno: it.key.second, dirPos: it.key.third, ino: ino, dType: Self.dt(d.type), name: d.name))
                if it.key == end { break }
                at = it.key.incremented()
            }
            return (out, false)
        }
    }

    /// DT_* of a scoutfs dentry type.
    static func dt(_ t: UInt8) -> UInt8 {
        switch Dirent.DType(rawValue: t) {
        case .fifo: UInt8(DT_FIFO)
        case .chr: UInt8(DT_CHR)
        case .dir: UInt8(DT_DIR)
        case .blk: UInt8(DT_BLK)
        case .reg: UInt8(DT_REG)
        case .lnk: UInt8(DT_LNK)
        case .sock: UInt8(DT_SOCK)
        case .wht: UInt8(DT_WHT)
        case nil: UInt8(DT_UNKNOWN)
        }
    }

    /// GET_ALLOCATED_INOS: inode numbers with an inode item from `start` to the end of its
    /// 1024-inode lock group, at most `max`.
    public func allocatedInos(start: UInt64, max: Int) throws(FSError) -> [UInt64] {
        try withLocks([start], write: false) { () throws -> [UInt64] in
            var out: [UInt64] = []
            let groupEnd = start | (Format.lockInodeGroupNr - 1)
            var ino = start
            while out.count < max {
                let from = Key(zone: KeyZone.fs, first: ino, type: KeyType.inode)
                let through = Key(zone: KeyZone.fs, first: groupEnd, type: KeyType.inode)
                guard let it = try cache.next(from: from, through: through) else { break }
                if it.key.type == KeyType.inode { out.append(it.key.first) }
                if it.key.first == groupEnd { break }
                ino = it.key.first + 1
            }
            return out
        }
    }

    /// The super block as the server last committed it.
    func committedSuper() throws(FSError) -> SuperBlock {
        do {
            return try MetaDevice.readSuper(from: meta.device)
        } catch {
            throw FSError(FSError.EIO, "reading the super block: \(error)")
        }
    }

    /// STATFS_MORE's reserve: what the server keeps back for its own lists and for each
    /// mounted client's allocators and log tree (the original's reserved_meta_blocks).
    public func reservedMetaBlocks() throws(FSError) -> UInt64 {
        let clients = try FSError.retryingStale("counting mounted clients") { () throws(FSError) in
            let sb = try committedSuper()
            var clients: UInt64 = 0
            do throws(BTreeError) {
                try BTree(store: ReadOnlyStore(device: meta)).forEach(sb.mountedClients) { _, _ in
                    clients += 1
                    return true
                }
            } catch {
                throw .btree(error)
            }
            return clients
        }
        let listMax: UInt64 = UInt64(Format.largeBlockSize - 56) / 8
        let mergeFill: UInt64 = (64 << 20) / UInt64(Format.largeBlockSize) + 4
        let logBlocks: UInt64 = 3 + UInt64(Format.largeBlockSize) / (56 + 16)
        return listMax * 2 + Swift.max(1, clients) * (listMax * 2 + mergeFill + logBlocks)
    }

    /// ALLOC_DETAIL: every allocator of the committed super block (the server's, then each
    /// mount's log trees'), as the original lists them.
    public func allocDetail() throws(FSError) -> [AllocatorDetail] {
        try FSError.retryingStale("reading the allocators") { () throws(FSError) in try allocDetailOnce() }
    }

    private func allocDetailOnce() throws(FSError) -> [AllocatorDetail] {
        let sb = try committedSuper()
        var out: [AllocatorDetail] = [
            AllocatorDetail(id: 0, blocks: sb.metaAlloc[0].totalLen, meta: true, avail: true),
            AllocatorDetail(id: 0, blocks: sb.metaAlloc[1].totalLen, meta: true, avail: true),
            AllocatorDetail(id: 0, blocks: sb.dataAlloc.totalLen, meta: false, avail: true),
            AllocatorDetail(id: 1, blocks: sb.serverMetaAvail[0].totalNr, meta: true, avail: true),
            AllocatorDetail(id: 1, blocks: sb.serverMetaAvail[1].totalNr, meta: true, avail: true),
            AllocatorDetail(id: 1, blocks: sb.serverMetaFreed[0].totalNr, meta: true, avail: false),
            AllocatorDetail(id: 1, blocks: sb.serverMetaFreed[1].totalNr, meta: true, avail: false),
        ]
        do {
            try BTree(store: ReadOnlyStore(device: meta)).forEach(sb.logsRoot) { b, off in
                guard let lt = try? LogTrees.decode(b.value(at: off)) else { return true }
                out.append(AllocatorDetail(id: lt.rid, blocks: lt.metaAvail.totalNr, meta: true, avail: true))
                out.append(AllocatorDetail(id: lt.rid, blocks: lt.metaFreed.totalNr, meta: true, avail: false))
                out.append(AllocatorDetail(id: lt.rid, blocks: lt.dataAvail.totalLen, meta: false, avail: true))
                out.append(AllocatorDetail(id: lt.rid, blocks: lt.dataFreed.totalLen, meta: false, avail: false))
                return true
            }
        } catch {
            throw .btree(error)
        }
        return out
    }

    /// GET_FIEMAP: the extents of `ino` overlapping bytes `start..<start+length`, at most `max`
    /// (offline extents have no physical address; the last extent of the file is flagged).
    public func fiemap(_ ino: UInt64, start: UInt64, length: UInt64, max: Int) throws(FSError) -> [FiemapEntry] {
        try withLocks([ino], write: false) { () throws -> [FiemapEntry] in
            let i = try loadInode(ino)
            guard Self.isReg(i.mode) || Self.isDir(i.mode) else { throw FSError(FSError.EINVAL) }
            guard length > 0 else { return [] }
            let (endByte, overflow) = start.addingReportingOverflow(length)
            let lastBlock = overflow ? UInt64.max / Self.bs : (endByte - 1) / Self.bs
            let all = try extents(ino, from: start / Self.bs, through: .max)
            var out: [FiemapEntry] = []
            for (n, e) in all.enumerated() where e.start <= lastBlock {
                if out.count == max { break }
                out.append(FiemapEntry(
                    logical: e.start * Self.bs, physical: e.offline ? 0 : e.blkno * Self.bs, length: e.len * Self.bs,
                    offline: e.offline, unwritten: e.unwritten, last: n == all.count - 1))
            }
            return out
        }
    }
}
