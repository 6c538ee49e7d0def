import Glibc
import ScoutFormat
import ScoutStorage

extension Volume {
    static func inodeKey(_ ino: UInt64) -> Key { Key(zone: KeyZone.fs, first: ino, type: KeyType.inode) }

    static func indexKey(_ type: UInt8, _ seq: UInt64, _ ino: UInt64) -> Key {
        Key(zone: KeyZone.inodeIndex, type: type, second: seq, third: ino)
    }

    static func orphanKey(_ ino: UInt64) -> Key { Key(zone: KeyZone.orphan, type: KeyType.orphan, second: ino) }

    /// The inode item of `ino`; ENOENT when it does not exist, EIO when it does not decode.
    /// Called with the state lock held.
    func loadInode(_ ino: UInt64) throws(FSError) -> Inode {
        guard let v = try cache.get(Self.inodeKey(ino)) else { throw FSError(FSError.ENOENT, "inode \(ino)") }
        let inode: Inode
        do {
            inode = try Inode.decode(v)
        } catch {
            throw FSError(FSError.EIO, "inode \(ino): \(error)")
        }
        // unlinked, perhaps by another mount: this mount tries deletion as it lets go
        if inode.nlink == 0 { pendingDelete.insert(ino) }
        return inode
    }

    /// Writes `inode` back, moving its meta_seq index item to this transaction's seq.
    func storeInode(_ ino: UInt64, _ inode: inout Inode, dataChanged: Bool = false) {
        let seq = txn.logTrees.getTransSeq
        if inode.metaSeq != seq {
            // mkfs indexes the root at meta_seq 0; other inodes have no item before their first store
            if inode.metaSeq != 0 || ino == Format.rootIno {
                cache.delete(Self.indexKey(KeyType.inodeIndexMetaSeq, inode.metaSeq, ino))
            }
            inode.metaSeq = seq
            cache.put(Self.indexKey(KeyType.inodeIndexMetaSeq, seq, ino), [])
        }
        if dataChanged && inode.dataSeq != seq {
            if inode.dataSeq != 0 { cache.delete(Self.indexKey(KeyType.inodeIndexDataSeq, inode.dataSeq, ino)) }
            inode.dataSeq = seq
            cache.put(Self.indexKey(KeyType.inodeIndexDataSeq, seq, ino), [])
        }
        inode.version &+= 1
        cache.put(Self.inodeKey(ino), inode.encoded(version: fmtVers))
    }

    func attr(_ ino: UInt64, _ i: Inode) -> FileAttr {
        FileAttr(
            ino: ino, size: i.size, blocks: (i.onlineBlocks + i.offlineBlocks) * UInt64(Format.smallBlockSize / 512),
            atime: i.atime, mtime: i.mtime, ctime: i.ctime, crtime: i.crtime,
            mode: i.mode, nlink: i.nlink, uid: i.uid, gid: i.gid, rdev: i.rdev,
            dataVersion: i.dataVersion, metaSeq: i.metaSeq, dataSeq: i.dataSeq)
    }

    static func isDir(_ mode: UInt32) -> Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
    static func isReg(_ mode: UInt32) -> Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
    static func isLnk(_ mode: UInt32) -> Bool { mode & UInt32(S_IFMT) == UInt32(S_IFLNK) }

    static func dtype(_ mode: UInt32) -> UInt8 {
        switch mode & UInt32(S_IFMT) {
        case UInt32(S_IFIFO): return Dirent.DType.fifo.rawValue
        case UInt32(S_IFCHR): return Dirent.DType.chr.rawValue
        case UInt32(S_IFDIR): return Dirent.DType.dir.rawValue
        case UInt32(S_IFBLK): return Dirent.DType.blk.rawValue
        case UInt32(S_IFLNK): return Dirent.DType.lnk.rawValue
        case UInt32(S_IFSOCK): return Dirent.DType.sock.rawValue
        default: return Dirent.DType.reg.rawValue
        }
    }

    /// A number for a new inode, taken before its operation locks anything: the operation
    /// must hold the WRITE lock of the number's group too (`withLocks`), or a mount that
    /// holds that group's lock, cached, would never see the new inode.
    func reserveInode() throws(FSError) -> UInt64 {
        try state.withLock { () throws(FSError) -> UInt64 in try allocInode() }
    }

    /// Creates the inode item of `ino` (from `reserveInode`, not yet linked anywhere). Every
    /// new inode takes its directory's project id `proj` (the original's rule for files,
    /// directories, symlinks, device nodes and O_TMPFILE alike; 0 on a format v1 volume).
    func newInode(_ ino: UInt64, mode: UInt32, uid: UInt32, gid: UInt32, rdev: UInt32 = 0, proj: UInt64) -> Inode {
        var i = Inode()
        let now = Self.now()
        i.mode = mode
        i.proj = proj
        i.uid = uid
        i.gid = gid
        i.rdev = rdev
        i.nlink = Self.isDir(mode) ? 2 : 1
        i.atime = now
        i.mtime = now
        i.ctime = now
        i.crtime = now
        i.nextReaddirPos = 2
        i.nextXattrId = 1
        txn.logTrees.inodeCountDelta &+= 1
        storeInode(ino, &i)
        return i
    }

    /// Notes one more kernel reference to `ino` (a lookup or create reply).
    func addLookup(_ ino: UInt64) {
        lookupCounts[ino, default: 0] += 1
    }

    /// nlink reached 0: the inode is an orphan (its ORPHAN item, under the orphan zone's
    /// WRITE_ONLY lock) until the last mount lets go of it, then it is deleted.
    func orphan(_ ino: UInt64) {
        assert(opOrphanLock, "orphan item of \(ino) written without the orphan lock")
        cache.put(Self.orphanKey(ino), [])
        pendingDelete.insert(ino)
    }

    /// Whether this mount's kernel still holds `ino` (a lookup reference or an open handle):
    /// its bit in this mount's open inode map.
    func heldLocally(_ ino: UInt64) -> Bool {
        lookupCounts[ino] != nil || openCounts[ino] != nil
    }

    /// Deletes every item of an unlinked inode: extents (blocks freed), xattrs, symlink
    /// parts, index items, then the inode and orphan items. Caller holds the inode group's
    /// WRITE lock and the orphan lock, and made sure no mount holds the inode
    /// (`tryDeleteOrphan`). An inode that is gone already, or linked again, is left alone
    /// (the original's `try_delete_inode_items`).
    func deleteInode(_ ino: UInt64) throws(FSError) {
        guard let v = try cache.get(Self.inodeKey(ino)), let inode = try? Inode.decode(v), inode.nlink == 0 else {
            pendingDelete.remove(ino)
            return
        }
        try truncateBlocks(ino, from: 0)
        let lo = Key(zone: KeyZone.fs, first: ino, type: KeyType.xattr)
        let hi = Key(zone: KeyZone.fs, first: ino, type: .max, second: .max, third: .max, fourth: .max)
        var pos = lo
        while let it = try cache.next(from: pos, through: hi) {
            if it.key.type == KeyType.xattr && it.key.fourth == 0 { try dropTagItems(ino, id: it.key.third, first: it.value) }
            srchNoteDropped(ino, it.key, it.value)
            cache.delete(it.key)
            if it.key == hi { break }
            pos = it.key.incremented()
        }
        if inode.metaSeq != 0 { cache.delete(Self.indexKey(KeyType.inodeIndexMetaSeq, inode.metaSeq, ino)) }
        if inode.dataSeq != 0 { cache.delete(Self.indexKey(KeyType.inodeIndexDataSeq, inode.dataSeq, ino)) }
        cache.delete(Self.inodeKey(ino))
        assert(opOrphanLock, "orphan item of \(ino) deleted without the orphan lock")
        cache.delete(Self.orphanKey(ino))
        txn.logTrees.inodeCountDelta &-= 1
        pendingDelete.remove(ino)
        counters.orphansDeleted += 1
        counters.inodeDeleted += 1
    }

    /// Tries to delete `ino` if it is an orphan this mount no longer uses (after forget or
    /// release): the same attempt as the orphan scan's, open inode map included.
    func deleteIfUnused(_ ino: UInt64) {
        let candidate = state.withLock { pendingDelete.contains(ino) && !heldLocally(ino) }
        guard candidate else { return }
        _ = tryDeleteOrphan(ino)
    }

    /// Tries to delete the orphans a crash or another mount left behind, as found in the
    /// forest (log trees included) at mount: each only if no mount holds it (`tryDeleteOrphan`).
    /// Returns how many were deleted.
    @discardableResult
    public func deleteOrphans() throws(FSError) -> Int {
        var pos = LockRange.orphan.start
        var found: [UInt64] = []
        while pos <= LockRange.orphan.end {
            let (_, end, items) = try state.withLock { () throws(FSError) in try forest.read(pos, lock: .orphan) }
            for (k, _) in items where k.type == KeyType.orphan { found.append(k.second) }
            if end >= LockRange.orphan.end { break }
            pos = end.incremented()
        }
        var deleted = 0
        for ino in found {
            switch tryDeleteOrphan(ino) {
            case .deleted: deleted += 1
            // the server cannot ask every mount now (recovering, a mount away): the orphan
            // scan tries again later, without holding up the mount
            case .failed: return deleted
            default: continue
            }
        }
        return deleted
    }
}
