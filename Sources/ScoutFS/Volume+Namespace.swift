import Glibc
public import ScoutFormat
import ScoutStorage

/// Who asks: the credentials the kernel passes with each request.
public struct Caller: Sendable {
    public var uid: UInt32
    public var gid: UInt32
    public var pid: UInt32

    public init(uid: UInt32, gid: UInt32, pid: UInt32) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
    }
}

/// The attributes a setattr changes (nil: unchanged). Times are already resolved (UTIME_NOW
/// turned into the current time by the caller or by `now`).
public struct SetAttr: Sendable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: Timespec?
    public var mtime: Timespec?
    public var atimeNow = false
    public var mtimeNow = false
    public var ctime: Timespec?

    public init() {}
}

/// rename(2) flags.
public struct RenameFlags: OptionSet, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let noReplace = RenameFlags(rawValue: 1)
    public static let exchange = RenameFlags(rawValue: 2)
    public static let whiteout = RenameFlags(rawValue: 4)
}

extension Volume {
    static func direntKey(_ dir: UInt64, _ hash: UInt64, _ pos: UInt64) -> Key {
        Key(zone: KeyZone.fs, first: dir, type: KeyType.dirent, second: hash, third: pos)
    }

    static func readdirKey(_ dir: UInt64, _ pos: UInt64) -> Key {
        Key(zone: KeyZone.fs, first: dir, type: KeyType.readdir, second: pos)
    }

    static func backrefKey(_ ino: UInt64, _ dir: UInt64, _ pos: UInt64) -> Key {
        Key(zone: KeyZone.fs, first: ino, type: KeyType.linkBackref, second: dir, third: pos)
    }

    static func checkName(_ name: [UInt8]) throws(FSError) {
        if name.isEmpty { throw FSError(FSError.ENOENT) }
        if name.count > Format.nameLength { throw FSError(FSError.ENAMETOOLONG) }
    }

    /// The entry `name` in `dir`, or nil.
    func findEntry(_ dir: UInt64, _ name: [UInt8]) throws(FSError) -> Dirent? {
        let hash = Dirent.nameHash(name)
        var pos = Self.direntKey(dir, hash, 0)
        let end = Self.direntKey(dir, hash, .max)
        // a seek to the name's hash, not a read of the directory's leaf range
        while let it = try cache.first(from: pos, through: end) {
            let d: Dirent
            do {
                d = try Dirent.decode(it.value)
            } catch {
                throw FSError(FSError.EIO, "dirent \(it.key): \(error)")
            }
            if d.name == name { return d }
            if it.key == end { break }
            pos = it.key.incremented()
        }
        return nil
    }

    /// Adds `name` → `ino` to `dir` (dirent, readdir and backref items).
    func addEntry(_ dirIno: UInt64, _ dir: inout Inode, _ name: [UInt8], _ ino: UInt64, mode: UInt32) {
        let pos = dir.nextReaddirPos
        dir.nextReaddirPos += 1
        let hash = Dirent.nameHash(name)
        let d = Dirent(ino: ino, hash: hash, pos: pos, type: Self.dtype(mode), name: name).encoded()
        cache.put(Self.direntKey(dirIno, hash, pos), d)
        cache.put(Self.readdirKey(dirIno, pos), d)
        cache.put(Self.backrefKey(ino, dirIno, pos), d)
        dir.size += UInt64(name.count)
        let now = Self.now()
        dir.mtime = now
        dir.ctime = now
    }

    func removeEntry(_ dirIno: UInt64, _ dir: inout Inode, _ d: Dirent) {
        cache.delete(Self.direntKey(dirIno, d.hash, d.pos))
        cache.delete(Self.readdirKey(dirIno, d.pos))
        cache.delete(Self.backrefKey(d.ino, dirIno, d.pos))
        dir.size -= min(dir.size, UInt64(d.name.count))
        let now = Self.now()
        dir.mtime = now
        dir.ctime = now
    }

    func dirIsEmpty(_ dir: UInt64) throws(FSError) -> Bool {
        try cache.next(from: Self.readdirKey(dir, 0), through: Self.readdirKey(dir, .max)) == nil
    }

    func loadDir(_ ino: UInt64) throws(FSError) -> Inode {
        let i = try loadInode(ino)
        guard Self.isDir(i.mode) else { throw FSError(FSError.ENOTDIR) }
        return i
    }

    // MARK: operations

    public func lookup(parent: UInt64, name: [UInt8]) throws(FSError) -> FileAttr {
        try Self.checkName(name)
        return try withLocks([parent], write: false) { () throws -> FileAttr in
            _ = try loadDir(parent)
            guard let d = try findEntry(parent, name) else { throw FSError(FSError.ENOENT) }
            try requireLock(d.ino, write: false)
            let a = attr(d.ino, try loadInode(d.ino))
            addLookup(d.ino)
            return a
        }
    }

    /// The kernel dropped `n` references to `ino`.
    public func forget(_ ino: UInt64, _ n: UInt64) {
        let maybe = state.withLock { () -> Bool in
            let c = (lookupCounts[ino] ?? 0)
            if c <= n { lookupCounts[ino] = nil } else { lookupCounts[ino] = c - n }
            return pendingDelete.contains(ino)
        }
        if maybe { deleteIfUnused(ino) }
    }

    /// Whether the kernel holds a lookup of `ino` (the root always).
    public func isKnownToKernel(_ ino: UInt64) -> Bool {
        ino == Format.rootIno || state.withLock { lookupCounts[ino] != nil }
    }

    public func getattr(_ ino: UInt64) throws(FSError) -> FileAttr {
        try withLocks([ino], write: false) { () throws -> FileAttr in attr(ino, try loadInode(ino)) }
    }

    /// A size change waits (op `changeSize`) while a block below the new size is offline
    /// (data_version is per inode; truncating to 0 or to the same size never waits).
    public func setattr(_ ino: UInt64, _ s: SetAttr, hooks: DataWaitHooks? = nil) throws(FSError) -> FileAttr {
        try withDataWait([ino], write: true, hooks: hooks) { () throws -> FileAttr in
            var i = try loadInode(ino)
            try Self.checkRetention(i)
            let now = Self.now()
            var dataChanged = false
            if let size = s.size {
                guard !Self.isDir(i.mode) else { throw FSError(FSError.EISDIR) }
                guard Self.isReg(i.mode) else { throw FSError(FSError.EINVAL) }
                if size > 0 && size != i.size {
                    try waitIfOffline(ino, i, first: 0, last: (size - 1) / Self.bs, op: .changeSize)
                }
                if size != i.size {
                    try truncate(ino, &i, to: size)
                    dataChanged = true
                }
                i.mtime = now
                i.ctime = now
            }
            if let m = s.mode {
                i.mode = (i.mode & UInt32(S_IFMT)) | (m & ~UInt32(S_IFMT))
                try chmodACL(ino, &i)
            }
            if let u = s.uid { i.uid = u }
            if let g = s.gid { i.gid = g }
            if s.atimeNow { i.atime = now } else if let a = s.atime { i.atime = a }
            if s.mtimeNow { i.mtime = now } else if let m = s.mtime { i.mtime = m }
            i.ctime = s.ctime ?? now
            storeInode(ino, &i, dataChanged: dataChanged)
            return attr(ino, i)
        }
    }

    /// mknod, mkdir, create and symlink. `mode` is the mode asked for: the directory's default
    /// ACL restricts it, or else `umask` does.
    public func makeNode(
        parent: UInt64, name: [UInt8], mode: UInt32, umask: UInt32 = 0, rdev: UInt32 = 0, caller: Caller, symlink: [UInt8]? = nil
    ) throws(FSError) -> FileAttr {
        try Self.checkName(name)
        if let t = symlink, t.count + 1 > Format.symlinkMaxSize || t.isEmpty { throw FSError(t.isEmpty ? FSError.ENOENT : FSError.ENAMETOOLONG) }
        let ino = try reserveInode()
        return try withLocks([parent, ino], write: true) { () throws -> FileAttr in
            var dir = try loadDir(parent)
            if dir.nlink == 0 { throw FSError(FSError.ENOENT) }
            if try findEntry(parent, name) != nil { throw FSError(FSError.EEXIST) }
            let acls = try inheritedACLs(dir: parent, mode: mode, umask: umask)
            var m = acls.mode
            var gid = caller.gid
            if dir.mode & UInt32(S_ISGID) != 0 {
                gid = dir.gid
                if Self.isDir(m) { m |= UInt32(S_ISGID) }
            }
            try checkInodeQuota(dir: dir, uid: caller.uid, gid: gid)
            var i = newInode(ino, mode: m, uid: caller.uid, gid: gid, rdev: rdev, proj: dir.proj)
            if acls.access != nil || acls.defaults != nil {
                storeInheritedACLs(ino, &i, acls)
                storeInode(ino, &i)
            }
            if let t = symlink {
                let bytes = t + [0]
                var nr: UInt64 = 0
                var off = 0
                while off < bytes.count {
                    let n = min(Format.btreeMaxValueLength, bytes.count - off)
                    cache.put(Key(zone: KeyZone.fs, first: ino, type: KeyType.symlink, second: nr), Array(bytes[off..<(off + n)]))
                    off += n
                    nr += 1
                }
                i.size = UInt64(t.count)
                storeInode(ino, &i)
            }
            addEntry(parent, &dir, name, ino, mode: m)
            if Self.isDir(m) { dir.nlink += 1 }
            storeInode(parent, &dir)
            addLookup(ino)
            return attr(ino, i)
        }
    }

    /// What `create` did: made a new regular file, or opened the one another mount had just
    /// created under the name.
    public enum CreateOutcome: Equatable, Sendable {
        case created
        case opened
    }

    /// open(O_CREAT) of `name` in `parent` (FUSE CREATE, sent after a negative lookup): a new
    /// regular file, opened. When the name exists by now (another mount created it after
    /// this mount's lookup), that file is opened instead, unless `exclusive` (O_EXCL:
    /// EEXIST). The kernel checks no permission for a file it believes it created, so opening
    /// an existing one here needs what a positive open would need: a regular file and the
    /// caller's access for `accessMode` (O_ACCMODE) by the mode bits and no access ACL, else
    /// ESTALE, which makes the kernel look the name up again and do the open itself.
    /// `truncate` (O_TRUNC) empties it.
    public func create(
        parent: UInt64, name: [UInt8], mode: UInt32, umask: UInt32 = 0, caller: Caller, exclusive: Bool, accessMode: Int32,
        truncate: Bool
    ) throws(FSError) -> (FileAttr, CreateOutcome) {
        do {
            let a = try makeNode(parent: parent, name: name, mode: mode, umask: umask, caller: caller)
            try open(a.ino, truncate: false)
            return (a, .created)
        } catch where error.errno == FSError.EEXIST && !exclusive {
            return (try openExisting(parent: parent, name: name, caller: caller, accessMode: accessMode, truncate: truncate), .opened)
        }
    }

    private func openExisting(parent: UInt64, name: [UInt8], caller: Caller, accessMode: Int32, truncate: Bool) throws(FSError) -> FileAttr {
        try withLocks([parent], write: truncate) { () throws -> FileAttr in
            _ = try loadDir(parent)
            guard let d = try findEntry(parent, name) else { throw FSError(FSError.ESTALE, "the name went away again") }
            try requireLock(d.ino, write: truncate)
            var i = try loadInode(d.ino)
            // an access ACL decides with entries the mode bits do not show: the kernel checks
            guard Self.isReg(i.mode), Self.permits(i, caller, accessMode: accessMode, truncate: truncate),
                try storedACL(d.ino, PosixACL.accessName) == nil
            else {
                throw FSError(FSError.ESTALE)
            }
            if truncate { try Self.checkRetention(i) }
            if truncate && i.size > 0 {
                try self.truncate(d.ino, &i, to: 0)
                let now = Self.now()
                i.mtime = now
                i.ctime = now
                storeInode(d.ino, &i, dataChanged: true)
            }
            openCounts[d.ino, default: 0] += 1
            addLookup(d.ino)
            return attr(d.ino, i)
        }
    }

    /// Whether the mode bits let `caller` open `i` for `accessMode` (root always may; the
    /// caller's supplementary groups are unknown here, so a group it may only have through
    /// them is refused).
    static func permits(_ i: Inode, _ caller: Caller, accessMode: Int32, truncate: Bool) -> Bool {
        if caller.uid == 0 { return true }
        var need: UInt32 = 0
        let acc = accessMode & O_ACCMODE
        if acc == O_RDONLY || acc == O_RDWR { need |= 4 }
        if acc == O_WRONLY || acc == O_RDWR || truncate { need |= 2 }
        let bits: UInt32
        if caller.uid == i.uid {
            bits = (i.mode >> 6) & 7
        } else if caller.gid == i.gid {
            bits = (i.mode >> 3) & 7
        } else {
            bits = i.mode & 7
        }
        return bits & need == need
    }

    public func readlink(_ ino: UInt64) throws(FSError) -> [UInt8] {
        try withLocks([ino], write: false) { () throws -> [UInt8] in
            let i = try loadInode(ino)
            guard Self.isLnk(i.mode) else { throw FSError(FSError.EINVAL) }
            var out: [UInt8] = []
            var pos = Key(zone: KeyZone.fs, first: ino, type: KeyType.symlink)
            let end = Key(zone: KeyZone.fs, first: ino, type: KeyType.symlink, second: .max)
            while let it = try cache.next(from: pos, through: end) {
                out += it.value
                pos = it.key.incremented()
            }
            if out.last == 0 { out.removeLast() }
            return out
        }
    }

    /// unlink and rmdir.
    public func remove(parent: UInt64, name: [UInt8], dir wantDir: Bool) throws(FSError) {
        try Self.checkName(name)
        try withLocks([parent], write: true, orphans: true) { () throws -> Void in
            var dir = try loadDir(parent)
            guard let d = try findEntry(parent, name) else { throw FSError(FSError.ENOENT) }
            try requireLock(d.ino, write: true)
            var i = try loadInode(d.ino)
            if wantDir {
                guard Self.isDir(i.mode) else { throw FSError(FSError.ENOTDIR) }
                guard try dirIsEmpty(d.ino) else { throw FSError(FSError.ENOTEMPTY) }
            } else if Self.isDir(i.mode) {
                throw FSError(FSError.EISDIR)
            }
            try Self.checkRetention(i)
            removeEntry(parent, &dir, d)
            if Self.isDir(i.mode) {
                dir.nlink -= 1
                i.nlink = 0
            } else {
                i.nlink -= 1
            }
            i.ctime = Self.now()
            storeInode(d.ino, &i)
            storeInode(parent, &dir)
            if i.nlink == 0 { orphan(d.ino) }
        }
    }

    public func link(_ ino: UInt64, newParent: UInt64, newName: [UInt8]) throws(FSError) -> FileAttr {
        try Self.checkName(newName)
        return try withLocks([ino, newParent], write: true, orphans: true) { () throws -> FileAttr in
            var dir = try loadDir(newParent)
            if dir.nlink == 0 { throw FSError(FSError.ENOENT) }
            var i = try loadInode(ino)
            if Self.isDir(i.mode) { throw FSError(FSError.EPERM) }
            if i.nlink >= UInt32(Int32.max) { throw FSError(FSError.EMLINK) }
            if try findEntry(newParent, newName) != nil { throw FSError(FSError.EEXIST) }
            let wasOrphan = i.nlink == 0
            addEntry(newParent, &dir, newName, ino, mode: i.mode)
            i.nlink += 1
            i.ctime = Self.now()
            storeInode(ino, &i)
            storeInode(newParent, &dir)
            if wasOrphan {
                // an O_TMPFILE linked into the namespace
                cache.delete(Self.orphanKey(ino))
                pendingDelete.remove(ino)
            }
            addLookup(ino)
            return attr(ino, i)
        }
    }

    public func rename(parent: UInt64, name: [UInt8], newParent: UInt64, newName: [UInt8], flags: RenameFlags) throws(FSError) {
        try Self.checkName(name)
        try Self.checkName(newName)
        if flags.contains(.whiteout) || (flags.contains(.exchange) && flags.contains(.noReplace)) { throw FSError(FSError.EINVAL) }
        try withLocks([parent, newParent], write: true, orphans: true) { () throws -> Void in
            var src = try loadDir(parent)
            var dst = parent == newParent ? src : try loadDir(newParent)
            guard let sd = try findEntry(parent, name) else { throw FSError(FSError.ENOENT) }
            let td = try findEntry(newParent, newName)
            try requireLock(sd.ino, write: true)
            if let td { try requireLock(td.ino, write: true) }
            var si = try loadInode(sd.ino)
            let now = Self.now()
            if flags.contains(.exchange) {
                guard let td else { throw FSError(FSError.ENOENT) }
                if td.ino == sd.ino { return }
                var ti = try loadInode(td.ino)
                try Self.checkRetention(si)
                try Self.checkRetention(ti)
                try swapEntries(parent: parent, &src, sd, si, newParent: newParent, &dst, td, ti)
                si.ctime = now
                ti.ctime = now
                storeInode(sd.ino, &si)
                storeInode(td.ino, &ti)
                return
            }
            if let td {
                if flags.contains(.noReplace) { throw FSError(FSError.EEXIST) }
                if td.ino == sd.ino { return }
                var ti = try loadInode(td.ino)
                if Self.isDir(si.mode) {
                    guard Self.isDir(ti.mode) else { throw FSError(FSError.ENOTDIR) }
                    guard try dirIsEmpty(td.ino) else { throw FSError(FSError.ENOTEMPTY) }
                } else if Self.isDir(ti.mode) {
                    throw FSError(FSError.EISDIR)
                }
                try Self.checkRetention(si)
                try Self.checkRetention(ti)
                if parent == newParent { removeEntry(newParent, &src, td) } else { removeEntry(newParent, &dst, td) }
                if Self.isDir(ti.mode) {
                    ti.nlink = 0
                    if parent == newParent { src.nlink -= 1 } else { dst.nlink -= 1 }
                } else {
                    ti.nlink -= 1
                }
                ti.ctime = now
                storeInode(td.ino, &ti)
                if ti.nlink == 0 { orphan(td.ino) }
            } else {
                try Self.checkRetention(si)
            }
            if parent == newParent {
                removeEntry(parent, &src, sd)
                addEntry(parent, &src, newName, sd.ino, mode: si.mode)
                storeInode(parent, &src)
            } else {
                removeEntry(parent, &src, sd)
                addEntry(newParent, &dst, newName, sd.ino, mode: si.mode)
                if Self.isDir(si.mode) {
                    src.nlink -= 1
                    dst.nlink += 1
                }
                storeInode(parent, &src)
                storeInode(newParent, &dst)
            }
            si.ctime = now
            storeInode(sd.ino, &si)
        }
    }

    private func swapEntries(
        parent: UInt64, _ src: inout Inode, _ sd: Dirent, _ si: Inode,
        newParent: UInt64, _ dst: inout Inode, _ td: Dirent, _ ti: Inode
    ) throws(FSError) {
        if parent == newParent {
            removeEntry(parent, &src, sd)
            removeEntry(parent, &src, td)
            addEntry(parent, &src, sd.name, td.ino, mode: ti.mode)
            addEntry(parent, &src, td.name, sd.ino, mode: si.mode)
            storeInode(parent, &src)
            return
        }
        removeEntry(parent, &src, sd)
        removeEntry(newParent, &dst, td)
        addEntry(parent, &src, sd.name, td.ino, mode: ti.mode)
        addEntry(newParent, &dst, td.name, sd.ino, mode: si.mode)
        let sDir = Self.isDir(si.mode)
        let tDir = Self.isDir(ti.mode)
        if sDir && !tDir {
            src.nlink -= 1
            dst.nlink += 1
        } else if tDir && !sDir {
            src.nlink += 1
            dst.nlink -= 1
        }
        storeInode(parent, &src)
        storeInode(newParent, &dst)
    }

    /// The parent directory of `dir` (from its backref), itself for the root.
    func parentOf(_ dir: UInt64) throws(FSError) -> UInt64 {
        if dir == Format.rootIno { return dir }
        let lo = Self.backrefKey(dir, 0, 0)
        let hi = Self.backrefKey(dir, .max, .max)
        return try cache.next(from: lo, through: hi)?.key.second ?? dir
    }

    /// Calls `emit(name, ino, dtype, nextOffset)` for entries from `offset` until it returns false.
    /// Offsets are readdir positions, as the original's: "." is at 0, ".." at 1, an entry at its
    /// dirent pos (2 and up, never reused). An entry's `nextOffset` (its `d_off`) is the position
    /// of the entry after it, so past a deleted entry it is the next live one's position, not
    /// its own + 1; the last entry's is its own + 1.
    public func readdir(_ ino: UInt64, offset: UInt64, _ emit: ([UInt8], UInt64, UInt8, UInt64) -> Bool) throws(FSError) {
        try withLocks([ino], write: false) { () throws -> Void in
            _ = try loadDir(ino)
            // each entry is emitted once the position after it is known
            var held: (name: [UInt8], ino: UInt64, type: UInt8, pos: UInt64)?
            if offset < 1 { if !emit([0x2e], ino, Dirent.DType.dir.rawValue, 1) { return } }
            if offset < 2 { held = ([0x2e, 0x2e], try parentOf(ino), Dirent.DType.dir.rawValue, 1) }
            var at = Self.readdirKey(ino, max(offset, Format.direntFirstPos))
            let end = Self.readdirKey(ino, Format.direntLastPos)
            while let it = try cache.next(from: at, through: end) {
                guard let d = try? Dirent.decode(it.value) else { throw FSError(FSError.EIO, "dirent \(it.key)") }
                if let h = held, !emit(h.name, h.ino, h.type, it.key.second) { return }
                held = (d.name, d.ino, d.type, it.key.second)
                if it.key == end { break }
                at = it.key.incremented()
            }
            if let h = held { _ = emit(h.name, h.ino, h.type, h.pos + 1) }
        }
    }

    /// An unnamed regular file (O_TMPFILE): an orphan from the start, linkable later.
    public func tmpfile(parent: UInt64, mode: UInt32, umask: UInt32 = 0, caller: Caller) throws(FSError) -> FileAttr {
        let ino = try reserveInode()
        return try withLocks([parent, ino], write: true, orphans: true) { () throws -> FileAttr in
            let dir = try loadDir(parent)
            var gid = caller.gid
            if dir.mode & UInt32(S_ISGID) != 0 { gid = dir.gid }
            try checkInodeQuota(dir: dir, uid: caller.uid, gid: gid)
            let acls = try inheritedACLs(dir: parent, mode: mode, umask: umask)
            var i = newInode(ino, mode: acls.mode, uid: caller.uid, gid: gid, proj: dir.proj)
            storeInheritedACLs(ino, &i, acls)
            i.nlink = 0
            storeInode(ino, &i)
            orphan(ino)
            addLookup(ino)
            return attr(ino, i)
        }
    }
}
