import Glibc
import Logging
public import ScoutFUSE
import ScoutFormat

/// The FUSE face of a mounted volume: maps each FUSE operation onto `Volume`.
///
/// Design note. Operations run synchronously on the FUSE reader threads. Entry and attribute
/// replies carry long timeouts (`cacheTimeout`), so the kernel answers repeated lookups and
/// stats itself; open files keep their page cache (FOPEN_KEEP_CACHE). What makes this safe in
/// a cluster is the invalidation hook: when this mount loses an inode group's lock, the volume
/// reports the group's cached inodes and `invalidate(_:)` sends NOTIFY_INVAL_INODE for each
/// (attributes before the lock is given up, pages right after; `NotifierBox` says how reads
/// in between are kept from old pages).
/// Node ids are inode numbers (so export handles work), generation 0.
public final class ScoutFileSystem: FileSystemOperations {
    public let volume: Volume
    public let cacheTimeout: Duration
    /// Set once the session is up: where kernel cache invalidations go.
    let notifier = NotifierBox()
    /// Open handles whose writes append at the cluster-wide end of file.
    let handles = OpenHandles()
    /// The mount's st_dev (a descriptor MOVE_BLOCKS names must be on it) and rid, set by the mount.
    nonisolated(unsafe) public var deviceNumber: UInt64 = 0
    nonisolated(unsafe) public var rid: UInt64 = 0

    let logger: Logger

    public init(volume: Volume, cacheTimeout: Duration = .seconds(3600), logger: Logger = Logger(label: "scoutfs.fs")) {
        self.volume = volume
        self.logger = logger
        self.cacheTimeout = cacheTimeout
        let box = notifier
        volume.kernelInvalidate = { inos in box.invalidate(inos) }
    }

    /// Where kernel cache invalidations are sent.
    public func attach(notifier: FUSENotifier) {
        self.notifier.set(notifier)
    }

    /// The most names the kernel may keep as dentries from this mount (`kernel_dentries`):
    /// past it the oldest are invalidated, so that the kernel forgets their inodes.
    public func setMaxKernelNames(_ n: Int) { notifier.setMaxNames(n) }

    /// Names the kernel may hold as dentries now, the bound, and names given back so far.
    public var kernelNameStats: (names: Int, max: Int, pruned: UInt64, failed: UInt64, lastErrno: Int32) { notifier.nameStats }

    /// Delays every page invalidation after a lost lock by `ms` (a test knob: it widens the
    /// window in which reads must not be served from the old pages).
    public func delayPageInvalidation(ms: Int) {
        notifier.setPageInvalidationDelay(ms: ms)
    }

    private static func ft(_ t: Timespec) -> FileTime { FileTime(seconds: Int64(t.sec), nanoseconds: t.nsec) }
    private static func ts(_ t: FileTime) -> Timespec { Timespec(sec: UInt64(max(0, t.seconds)), nsec: t.nanoseconds) }

    private static func attrs(_ a: FileAttr) -> FileAttributes {
        FileAttributes(
            ino: a.ino, size: a.size, blocks: a.blocks, atime: ft(a.atime), mtime: ft(a.mtime), ctime: ft(a.ctime),
            mode: a.mode, nlink: a.nlink, uid: a.uid, gid: a.gid, rdev: a.rdev, blockSize: 4096)
    }

    /// An entry the kernel will cache as the dentry `name` in `parent`: remembered, so that
    /// losing the parent's lock can drop it.
    private func entry(_ a: FileAttr, parent: UInt64, name: [UInt8]) -> EntryReply {
        notifier.remember(parent: parent, name: name)
        return entry(a)
    }

    private func entry(_ a: FileAttr) -> EntryReply {
        EntryReply(nodeID: a.ino, generation: 0, attributes: Self.attrs(a), entryTimeout: cacheTimeout, attributeTimeout: cacheTimeout)
    }

    private static func caller(_ c: RequestContext) -> Caller { Caller(uid: c.uid, gid: c.gid, pid: c.pid) }

    /// Runs `body`, turning a volume error into the FUSE error with the same errno.
    @inline(__always)
    func run<R>(_ body: () throws(FSError) -> R) throws -> R {
        do {
            return try body()
        } catch {
            report(error)
            throw FUSEError(error.errno)
        }
    }

    /// I/O errors and corruption are logged with what failed (the block, the item); the
    /// caller gets EIO, never wrong data.
    private func report(_ e: FSError) {
        if e.errno == FSError.EIO || e.errno == FSError.ENOSPC { logger.error("\(e)") }
    }

    /// Runs when the kernel sends DESTROY (a clean unmount): the final commit and farewell
    /// happen here, before the kernel's umount returns.
    nonisolated(unsafe) public var onDestroy: (@Sendable () -> Void)?

    public func destroy() {
        onDestroy?()
    }

    public func lookup(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws -> EntryReply {
        let n = name.bytes
        do {
            return entry(try volume.lookup(parent: parent, name: n), parent: parent, name: n)
        } catch where error.errno == FSError.ENOENT {
            // not cached by the kernel: another mount may create the name at any time, and
            // lock invalidation cannot name every negative entry to drop
            return .negative(timeout: .zero)
        } catch {
            report(error)
            throw FUSEError(error.errno)
        }
    }

    public func forget(nodeID: UInt64, lookups: UInt64) {
        volume.forget(nodeID, lookups)
        // a directory the kernel forgot has no child dentries left
        if !volume.isKnownToKernel(nodeID) { notifier.forgetNames(of: nodeID) }
    }

    public func getattr(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64?) throws -> AttributeReply {
        AttributeReply(attributes: Self.attrs(try run { () throws(FSError) in try volume.getattr(nodeID) }), timeout: cacheTimeout)
    }

    public func setattr(_ context: RequestContext, nodeID: UInt64, changes: SetAttributes) throws -> AttributeReply {
        var s = SetAttr()
        s.mode = changes.mode
        s.uid = changes.uid
        s.gid = changes.gid
        s.size = changes.size
        switch changes.atime {
        case .now: s.atimeNow = true
        case .set(let t): s.atime = Self.ts(t)
        case nil: break
        }
        switch changes.mtime {
        case .now: s.mtimeNow = true
        case .set(let t): s.mtime = Self.ts(t)
        case nil: break
        }
        if let c = changes.ctime { s.ctime = Self.ts(c) }
        // FATTR_KILL_SUIDGID (HANDLE_KILLPRIV_V2): a chown, or a truncate by a caller without
        // CAP_FSETID; setgid only goes when group-executable, as the VFS does
        if changes.killSUIDGID, s.mode == nil, let cur = try? volume.getattr(nodeID), Volume.killsSUIDGID(cur.mode) {
            s.mode = Volume.killedSUIDGID(cur.mode)
        }
        let a = try run { () throws(FSError) in try volume.setattr(nodeID, s, hooks: DataWaitHooks(context)) }
        return AttributeReply(attributes: Self.attrs(a), timeout: cacheTimeout)
    }

    public func readlink(_ context: RequestContext, nodeID: UInt64) throws -> [UInt8] {
        try run { () throws(FSError) in try volume.readlink(nodeID) }
    }

    public func symlink(_ context: RequestContext, parent: UInt64, name: borrowing FileName, target: borrowing FileName) throws -> EntryReply {
        let n = name.bytes
        let t = target.bytes
        return entry(try run { () throws(FSError) in try volume.makeNode(parent: parent, name: n, mode: UInt32(S_IFLNK) | 0o777, caller: Self.caller(context), symlink: t) }, parent: parent, name: n)
    }

    public func mknod(_ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, rdev: UInt32, umask: UInt32) throws -> EntryReply {
        let n = name.bytes
        return entry(try run { () throws(FSError) in try volume.makeNode(parent: parent, name: n, mode: mode, umask: umask, rdev: rdev, caller: Self.caller(context)) }, parent: parent, name: n)
    }

    public func mkdir(_ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, umask: UInt32) throws -> EntryReply {
        let n = name.bytes
        let m = UInt32(S_IFDIR) | (mode & 0o7777)
        return entry(try run { () throws(FSError) in try volume.makeNode(parent: parent, name: n, mode: m, umask: umask, caller: Self.caller(context)) }, parent: parent, name: n)
    }

    public func unlink(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws {
        let n = name.bytes
        try run { () throws(FSError) in try volume.remove(parent: parent, name: n, dir: false) }
    }

    public func rmdir(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws {
        let n = name.bytes
        try run { () throws(FSError) in try volume.remove(parent: parent, name: n, dir: true) }
    }

    public func rename(
        _ context: RequestContext, parent: UInt64, name: borrowing FileName, newParent: UInt64,
        newName: borrowing FileName, flags: ScoutFUSE.RenameFlags
    ) throws {
        let n = name.bytes
        let nn = newName.bytes
        let f = ScoutFS.RenameFlags(rawValue: flags.rawValue)
        try run { () throws(FSError) in try volume.rename(parent: parent, name: n, newParent: newParent, newName: nn, flags: f) }
        notifier.remember(parent: newParent, name: nn)
        if f.contains(.exchange) { notifier.remember(parent: parent, name: n) }
    }

    public func link(_ context: RequestContext, nodeID: UInt64, newParent: UInt64, newName: borrowing FileName) throws -> EntryReply {
        let n = newName.bytes
        return entry(try run { () throws(FSError) in try volume.link(nodeID, newParent: newParent, newName: n) }, parent: newParent, name: n)
    }

    public func open(_ context: RequestContext, nodeID: UInt64, flags: Int32, killSUIDGID: Bool) throws -> OpenReply {
        let offline = try run { () throws(FSError) in try volume.open(nodeID, truncate: flags & O_TRUNC != 0, killSUIDGID: killSUIDGID) }
        return openReply(nodeID, flags: flags, offline: offline)
    }

    /// The handle of an open file. An O_APPEND open gets a handle of its own, remembered, and
    /// FOPEN_DIRECT_IO: its writes land at the end of file as the cluster sees it, wherever
    /// the kernel's cached size put them, so no page of this mount may hold them at the
    /// kernel's offset. After such a write the kernel marks its cached size stale and asks
    /// again before it next uses it. O_DIRECT opens bypass the page cache too, and so do
    /// opens of a file with offline blocks: each read then reaches the daemon as a request of
    /// the reader's own (not a readahead of the kernel's, which no signal interrupts), waits
    /// for exactly the blocks it asked for and can be interrupted. The rest keep the cache.
    private func openReply(_ ino: UInt64, flags: Int32, offline: Bool = false) -> OpenReply {
        let fh = handles.open(ino, flags: flags)
        if flags & O_APPEND != 0 { return OpenReply(fileHandle: fh, flags: [.directIO]) }
        // keep the cache: without FOPEN_KEEP_CACHE the kernel drops the inode's pages at open,
        // locking each, and a page fault waiting here for offline data holds its page locked
        // until a stage, which the stager's own open would then never get to send
        if offline { return OpenReply(fileHandle: fh, flags: [.directIO, .keepCache]) }
        if flags & 0o40000 != 0 { return OpenReply(fileHandle: fh, flags: [.directIO]) }
        // pages from before another mount's change may still be cached: the kernel drops them
        return OpenReply(fileHandle: fh, flags: notifier.pagesMayBeStale(ino) ? [] : [.keepCache])
    }

    public func read(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64,
        into buffer: UnsafeMutableRawBufferPointer, flags: Int32
    ) throws -> Int {
        try run { () throws(FSError) in try volume.read(nodeID, offset: offset, into: buffer, hooks: DataWaitHooks(context)) }
    }

    public func write(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, data: RawSpan,
        writeFlags: WriteFlags, flags: Int32
    ) throws -> Int {
        let append = (handles.flags(fileHandle) ?? 0) & O_APPEND != 0
        // the kernel's writeback of a shared mapping's pages is never refused for quota
        let quota = !writeFlags.contains(.cache)
        let r = data.withUnsafeBytes { raw in
            Result { () throws(FSError) -> Int in
                try volume.write(
                    nodeID, offset: offset, raw, append: append, killSUIDGID: writeFlags.contains(.killSUIDGID),
                    hooks: DataWaitHooks(context), quota: quota)
            }
        }
        do {
            return try r.get()
        } catch {
            throw FUSEError(error.errno)
        }
    }

    public func statfs(_ context: RequestContext, nodeID: UInt64) throws -> FileSystemStatistics {
        let t = try run { () throws(FSError) in try volume.totals() }
        return FileSystemStatistics(
            blocks: t.totalDataBlocks, freeBlocks: t.freeDataBlocks, availableBlocks: t.freeDataBlocks,
            files: t.inodeCount + t.freeMetaBlocks, freeFiles: t.freeMetaBlocks, blockSize: 4096, nameLength: 255, fragmentSize: 4096)
    }

    public func release(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, flags: Int32, flush: Bool) throws {
        handles.release(fileHandle)
        volume.release(nodeID)
    }

    public func fsync(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, dataOnly: Bool) throws {
        try run { () throws(FSError) in try volume.sync() }
    }

    public func setxattr(
        _ context: RequestContext, nodeID: UInt64, name: borrowing FileName, value: RawSpan, flags: Int32,
        killSGID: Bool
    ) throws {
        let n = name.bytes
        let v = value.withUnsafeBytes { Array($0) }
        let admin = callerIsAdmin(context, name: n)
        try run { () throws(FSError) in
            try volume.setxattr(nodeID, name: n, value: v, flags: UInt32(bitPattern: flags), killSGID: killSGID, admin: admin)
        }
    }

    public func getxattr(_ context: RequestContext, nodeID: UInt64, name: borrowing FileName) throws -> [UInt8] {
        let n = name.bytes
        return try run { () throws(FSError) in try volume.getxattr(nodeID, name: n) }
    }

    public func listxattr(_ context: RequestContext, nodeID: UInt64) throws -> [[UInt8]] {
        try run { () throws(FSError) in try volume.listxattr(nodeID) }
    }

    public func removexattr(_ context: RequestContext, nodeID: UInt64, name: borrowing FileName) throws {
        let n = name.bytes
        let admin = callerIsAdmin(context, name: n)
        try run { () throws(FSError) in try volume.removexattr(nodeID, name: n, admin: admin) }
    }

    /// Whether the caller may change a tagged `scoutfs.` xattr (CAP_SYS_ADMIN in its
    /// effective set); only looked up for `scoutfs.` names.
    private func callerIsAdmin(_ context: RequestContext, name: [UInt8]) -> Bool {
        guard name.starts(with: XattrTags.prefix) else { return true }
        return CallerMemory(pid: context.pid, servedDevice: deviceNumber).effectiveCapabilities().contains(.sysAdmin)
    }

    public func flush(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, lockOwner: UInt64) throws {}

    public func opendir(_ context: RequestContext, nodeID: UInt64, flags: Int32) throws -> OpenReply {
        _ = try run { () throws(FSError) in try volume.getattr(nodeID) }
        return OpenReply(fileHandle: nodeID, flags: [])
    }

    public func readdir(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64,
        into buffer: inout DirectoryReplyBuffer
    ) throws {
        do {
            try volume.readdir(nodeID, offset: offset) { name, ino, type, next in
                buffer.append(name: name, ino: ino, mode: Self.modeOf(dtype: type), nextOffset: next)
            }
        } catch {
            throw FUSEError(error.errno)
        }
    }

    static func modeOf(dtype: UInt8) -> UInt32 {
        switch dtype {
        case Dirent.DType.fifo.rawValue: return UInt32(S_IFIFO)
        case Dirent.DType.chr.rawValue: return UInt32(S_IFCHR)
        case Dirent.DType.dir.rawValue: return UInt32(S_IFDIR)
        case Dirent.DType.blk.rawValue: return UInt32(S_IFBLK)
        case Dirent.DType.lnk.rawValue: return UInt32(S_IFLNK)
        case Dirent.DType.sock.rawValue: return UInt32(S_IFSOCK)
        default: return UInt32(S_IFREG)
        }
    }

    public func releasedir(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, flags: Int32) throws {}

    public func fsyncdir(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, dataOnly: Bool) throws {
        try run { () throws(FSError) in try volume.sync() }
    }

    public func create(
        _ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, umask: UInt32,
        flags: Int32
    ) throws -> CreateReply {
        let n = name.bytes
        let (a, _) = try run { () throws(FSError) in
            try volume.create(
                parent: parent, name: n, mode: UInt32(S_IFREG) | (mode & 0o7777), umask: umask, caller: Self.caller(context),
                exclusive: flags & O_EXCL != 0, accessMode: flags & O_ACCMODE, truncate: flags & O_TRUNC != 0)
        }
        return CreateReply(entry: entry(a, parent: parent, name: n), open: openReply(a.ino, flags: flags))
    }

    public func tmpfile(_ context: RequestContext, parent: UInt64, mode: UInt32, umask: UInt32, flags: Int32) throws -> CreateReply {
        let a = try run { () throws(FSError) in try volume.tmpfile(parent: parent, mode: UInt32(S_IFREG) | (mode & 0o7777), umask: umask, caller: Self.caller(context)) }
        _ = try run { () throws(FSError) in try volume.open(a.ino, truncate: false) }
        return CreateReply(entry: entry(a), open: openReply(a.ino, flags: flags))
    }

    public func fallocate(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, length: UInt64,
        mode: Int32
    ) throws {
        try run { () throws(FSError) in try volume.fallocate(nodeID, mode: UInt32(bitPattern: mode), offset: offset, length: length, hooks: DataWaitHooks(context)) }
    }

    public func lseek(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, whence: Int32) throws -> UInt64 {
        try run { () throws(FSError) in try volume.seek(nodeID, offset: offset, whence: whence) }
    }
}

/// The notifier, set once the session exists; invalidations before that have no kernel cache
/// to drop. It also remembers the names the kernel may hold as dentries, per directory, so
/// that losing a directory's lock can drop them (NOTIFY_INVAL_ENTRY): another mount may
/// rename or remove them.
///
/// Only the attribute invalidation and the dentry epoch (NOTIFY_INC_EPOCH) run inside the lock
/// invalidation (they take no sleeping kernel lock). Page and entry invalidations run on a
/// thread of their own after the lock is given up: the kernel locks each cached page of the
/// inode to drop it (and the directory's inode lock for an entry), and a page fault or a
/// buffered write holds that page lock while its FUSE request waits for this very cluster
/// lock, which would never come.
///
/// The names are bounded (`maxNames`, the `kernel_dentries` mount option): past it, the oldest
/// remembered names are invalidated in the kernel (NOTIFY_INVAL_ENTRY, from a thread of their
/// own, never a request's), so the kernel lets go of the dentries and, once an inode has none
/// left and is not open, sends FORGET: the lookup counts shrink with them.
final class NotifierBox: @unchecked Sendable {
    // Invariant: `notifier`, `names`, `nameCount`, `order`, `orderHead`, `pruning`,
    // `pruningParents` and `pagesPending` are only touched with `lock` held.
    private let lock = PThreadLock()
    private var notifier: FUSENotifier?
    private var names: [UInt64: Set<[UInt8]>] = [:]
    /// How many names `names` holds.
    private var nameCount = 0
    /// The names in the order they were remembered (oldest from `orderHead`); entries whose
    /// name was dropped since stay until they come up.
    private var order: [(parent: UInt64, name: [UInt8])] = []
    private var orderHead = 0
    /// An entry invalidation batch is on its way, and the directories its names are in: until
    /// it is through, the kernel may still hold those names though `names` no longer does.
    private var pruning = false
    private var pruningParents = Set<UInt64>()
    /// The most names the kernel may keep as dentries from this mount.
    private var maxNames = 500_000
    /// Names given back to the kernel so far (the `kernel_dentries_pruned` counter).
    private var pruned: UInt64 = 0
    /// Invalidations the kernel refused, and the errno of the last one.
    private var pruneFailures: UInt64 = 0
    private var pruneLastErrno: Int32 = 0
    /// Inodes whose page invalidation was sent off after their lock was lost and has not
    /// finished: the kernel may still hold pages from before another mount's change.
    private var pagesPending: [UInt64: Int] = [:]
    /// How long the page invalidation waits before it starts (0; tests widen the window
    /// between giving a lock up and the pages going, through `SCOUTFS_TEST_PAGE_INVAL_DELAY_MS`).
    var pageInvalidationDelayMs = 0

    func set(_ n: FUSENotifier) { lock.withLock { notifier = n } }

    func setPageInvalidationDelay(ms: Int) { lock.withLock { pageInvalidationDelayMs = ms } }

    func setMaxNames(_ n: Int) { lock.withLock { maxNames = max(1, n) } }

    /// Names remembered now, the bound, and names given back to the kernel so far.
    var nameStats: (names: Int, max: Int, pruned: UInt64, failed: UInt64, lastErrno: Int32) {
        lock.withLock { (nameCount, maxNames, pruned, pruneFailures, pruneLastErrno) }
    }

    func remember(parent: UInt64, name: [UInt8]) {
        let batch = lock.withLock { () -> [(UInt64, [UInt8])] in
            guard names[parent, default: []].insert(name).inserted else { return [] }
            nameCount += 1
            order.append((parent, name))
            return takeOldest()
        }
        if !batch.isEmpty { sendEntryInvalidations(batch) }
    }

    /// Past the bound (and with no batch on its way): takes the oldest names out, down to
    /// seven eighths of the bound, for invalidation. Caller holds `lock`.
    private func takeOldest() -> [(UInt64, [UInt8])] {
        guard nameCount > maxNames, !pruning, notifier != nil else {
            compactOrder()
            return []
        }
        let target = maxNames - maxNames / 8
        var out: [(UInt64, [UInt8])] = []
        while nameCount > target, orderHead < order.count {
            let (parent, name) = order[orderHead]
            orderHead += 1
            guard names[parent]?.remove(name) != nil else { continue }
            if names[parent]!.isEmpty { names[parent] = nil }
            nameCount -= 1
            out.append((parent, name))
        }
        pruning = !out.isEmpty
        pruningParents = Set(out.map(\.0))
        compactOrder()
        return out
    }

    /// Drops the order's consumed head, and entries whose names are gone once they are the
    /// majority, so the order stays within twice the names it tracks.
    private func compactOrder() {
        if orderHead > 4096 && orderHead * 2 > order.count {
            order.removeFirst(orderHead)
            orderHead = 0
        }
        if order.count - orderHead > 2 * nameCount + 4096 {
            order = order[orderHead...].filter { names[$0.parent]?.contains($0.name) == true }
            orderHead = 0
        }
    }

    private func sendEntryInvalidations(_ batch: [(UInt64, [UInt8])]) {
        guard let n = lock.withLock({ notifier }) else { return }
        Threads.detached(name: "inval-names") { [self] in
            var sent: UInt64 = 0
            var failed: UInt64 = 0
            var lastError: Int32 = 0
            for (parent, name) in batch {
                do throws(FUSEError) {
                    try n.invalidateEntry(parent: parent, name: name)
                    sent += 1
                } catch {
                    failed += 1
                    lastError = error.errnoValue
                }
            }
            let more = lock.withLock { () -> [(UInt64, [UInt8])] in
                pruned += sent
                pruneFailures += failed
                if lastError != 0 { pruneLastErrno = lastError }
                pruning = false
                pruningParents = []
                return takeOldest()
            }
            if !more.isEmpty { sendEntryInvalidations(more) }
        }
    }

    func forgetNames(of dir: UInt64) {
        lock.withLock {
            if let set = names.removeValue(forKey: dir) { nameCount -= set.count }
            compactOrder()
        }
    }

    /// Whether the kernel may still hold pages of `ino` from before a lock was lost.
    func pagesMayBeStale(_ ino: UInt64) -> Bool { lock.withLock { pagesPending[ino] != nil } }

    /// Drops the kernel's attributes of `inos` now, and their pages and the dentries
    /// remembered under any of them soon after.
    ///
    /// The pages cannot go before the lock is given up: dropping a page waits for its page
    /// lock, which a read or fault holds while its request waits here for that very lock.
    /// So until they are gone, the kernel refreshes what it would serve from them: the
    /// attributes are invalid now, so the next read() asks GETATTR first (AUTO_INVAL_DATA
    /// drops the pages when the mtime or size changed), and an open replies without
    /// FOPEN_KEEP_CACHE (the kernel drops the pages at open, in the opener's context).
    func invalidate(_ inos: [UInt64]) {
        let (n, entries, inFlight) = lock.withLock { () -> (FUSENotifier?, [(UInt64, [UInt8])], Bool) in
            var out: [(UInt64, [UInt8])] = []
            let inFlight = inos.contains { pruningParents.contains($0) }
            for ino in inos {
                if let set = names.removeValue(forKey: ino) {
                    out += set.map { (ino, $0) }
                    nameCount -= set.count
                }
                if notifier != nil { pagesPending[ino, default: 0] += 1 }
            }
            return (notifier, out, inFlight)
        }
        guard let n else { return }
        for ino in inos { _ = try? n.invalidateInode(ino, offset: -1, length: 0) }
        // Before the lock is given up: every dentry is revalidated before its next use, so
        // once another mount's rename or unlink returns, no name here resolves the old way.
        // (The entry invalidations below only free the kernel's memory then.) Names of these
        // directories on their way out in a pruning batch count too.
        if !entries.isEmpty || inFlight { _ = try? n.incrementEpoch() }
        let delay = lock.withLock { pageInvalidationDelayMs }
        Threads.detached(name: "inval-pages") { [self] in
            if delay > 0 { usleep(useconds_t(delay) * 1000) }
            for ino in inos {
                _ = try? n.invalidateInode(ino, offset: 0, length: -1)
                lock.withLock {
                    if let c = pagesPending[ino] { pagesPending[ino] = c > 1 ? c - 1 : nil }
                }
            }
            for (parent, name) in entries { _ = try? n.invalidateEntry(parent: parent, name: name) }
        }
    }
}

/// The open file handles and the flags each was opened with (the ioctls check the open mode,
/// O_APPEND writes land at the end of file). Handle numbers have the top bit set, so they never
/// equal the inode numbers directory handles carry.
final class OpenHandles: @unchecked Sendable {
    // Invariant: `handles` and `next` are only touched with `lock` held.
    private let lock = PThreadLock()
    private var handles: [UInt64: Int32] = [:]
    private var next: UInt64 = 1

    func open(_ ino: UInt64, flags: Int32) -> UInt64 {
        lock.withLock {
            let fh = (1 << 63) | next
            next += 1
            handles[fh] = flags
            return fh
        }
    }

    /// The open flags of `fh`; nil for a directory's handle or one that is not open.
    func flags(_ fh: UInt64) -> Int32? {
        fh >> 63 != 0 ? lock.withLock { handles[fh] } : nil
    }

    func release(_ fh: UInt64) {
        if fh >> 63 != 0 { lock.withLock { _ = handles.removeValue(forKey: fh) } }
    }
}
