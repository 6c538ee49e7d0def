import CPassthrough
import Glibc
import ScoutFUSE
import Synchronization

/// A FUSE filesystem forwarding every operation to a backing directory, libfuse `passthrough_ll` style: each node the
/// kernel knows holds an `O_PATH` descriptor of the backing inode (closed on FORGET), operations use the `*at` calls
/// or `/proc/self/fd/N`, and open files are real descriptors. It is the baseline the real filesystem is measured
/// against, so it runs on the same ``FUSESession`` with the same INIT choices.
///
/// Deviation to keep in mind when comparing: one descriptor per cached inode (the fd limit bounds the number of
/// inodes the kernel may cache), which the real filesystem must not do.
final class Passthrough: FileSystemOperations {
    struct InodeKey: Hashable {
        var dev: UInt64
        var ino: UInt64
    }

    struct Node {
        var fd: Int32
        var key: InodeKey
        var lookups: UInt64
    }

    struct Table {
        var nodes: [UInt64: Node] = [:]
        var byInode: [InodeKey: UInt64] = [:]
        var next: UInt64 = 2
    }

    /// An open directory stream. `@unchecked Sendable`: the kernel serializes READDIR on one open directory, and
    /// the table only moves the pointer around under its mutex.
    struct DirectoryHandle: @unchecked Sendable {
        var dir: OpaquePointer
        var offset: Int
    }

    let table = Mutex(Table())
    let directories = Mutex([UInt64: DirectoryHandle]())
    let nextHandle = Atomic<UInt64>(1)
    let timeout: Duration
    let openFlags: OpenReplyFlags

    init(rootFD: Int32, timeout: Duration, openFlags: OpenReplyFlags = []) throws {
        self.timeout = timeout
        self.openFlags = openFlags
        var st = Glibc.stat()
        guard fstatat(rootFD, "", &st, cpt_at_empty_path() | AT_SYMLINK_NOFOLLOW) == 0 else { throw FUSEError(errno) }
        let key = InodeKey(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
        self.table.withLock {
            $0.nodes[FUSEProtocol.rootNodeID] = Node(fd: rootFD, key: key, lookups: 1)
            $0.byInode[key] = FUSEProtocol.rootNodeID
        }
    }

    // MARK: helpers

    private func fd(_ nodeID: UInt64) throws -> Int32 {
        guard let fd = self.table.withLock({ $0.nodes[nodeID]?.fd }) else { throw FUSEError(ESTALE) }
        return fd
    }

    private static func check(_ rc: Int32) throws {
        if rc < 0 { throw FUSEError(errno) }
    }

    private static func procPath(_ fd: Int32) -> String { "/proc/self/fd/\(fd)" }

    /// Calls `body` with `name` as a NUL-terminated C string (no heap allocation).
    private static func withCName<R>(_ name: borrowing FileName, _ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        try name.withUnsafeBytes { bytes in
            try withUnsafeTemporaryAllocation(of: CChar.self, capacity: bytes.count + 1) { buf in
                let raw = UnsafeMutableRawBufferPointer(buf)
                raw.copyMemory(from: bytes)
                raw[bytes.count] = 0
                return try body(buf.baseAddress!)
            }
        }
    }

    private func attributes(_ st: Glibc.stat) -> FileAttributes {
        FileAttributes(
            ino: UInt64(st.st_ino), size: UInt64(st.st_size), blocks: UInt64(st.st_blocks),
            atime: FileTime(seconds: Int64(st.st_atim.tv_sec), nanoseconds: UInt32(st.st_atim.tv_nsec)),
            mtime: FileTime(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(st.st_mtim.tv_nsec)),
            ctime: FileTime(seconds: Int64(st.st_ctim.tv_sec), nanoseconds: UInt32(st.st_ctim.tv_nsec)),
            mode: st.st_mode, nlink: UInt32(clamping: st.st_nlink), uid: st.st_uid, gid: st.st_gid,
            rdev: UInt32(truncatingIfNeeded: st.st_rdev), blockSize: UInt32(clamping: st.st_blksize))
    }

    /// Looks `name` up under the parent descriptor and returns an entry, counting one lookup.
    private func lookup(parentFD: Int32, name: UnsafePointer<CChar>) throws -> EntryReply {
        let fd = openat(parentFD, name, cpt_o_path() | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw FUSEError(errno) }
        var st = Glibc.stat()
        guard fstatat(fd, "", &st, cpt_at_empty_path() | AT_SYMLINK_NOFOLLOW) == 0 else {
            let e = errno
            close(fd)
            throw FUSEError(e)
        }
        return self.entry(adopting: fd, st)
    }

    /// Registers (or finds) the node for `fd`'s inode and counts a lookup; closes `fd` if the node existed.
    private func entry(adopting fd: Int32, _ st: Glibc.stat) -> EntryReply {
        let key = InodeKey(dev: UInt64(st.st_dev), ino: UInt64(st.st_ino))
        let (nodeID, duplicate): (UInt64, Bool) = self.table.withLock { t in
            if let id = t.byInode[key] {
                t.nodes[id]!.lookups += 1
                return (id, true)
            }
            let id = t.next
            t.next += 1
            t.nodes[id] = Node(fd: fd, key: key, lookups: 1)
            t.byInode[key] = id
            return (id, false)
        }
        if duplicate { close(fd) }
        return EntryReply(
            nodeID: nodeID, attributes: self.attributes(st), entryTimeout: self.timeout, attributeTimeout: self.timeout)
    }

    // MARK: FileSystemOperations

    func lookup(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws -> EntryReply {
        let pfd = try self.fd(parent)
        if parent == FUSEProtocol.rootNodeID && name.isDotDot {
            return try self.lookup(parentFD: pfd, name: ".")
        }
        return try Self.withCName(name) { try self.lookup(parentFD: pfd, name: $0) }
    }

    func forget(nodeID: UInt64, lookups: UInt64) {
        let fd: Int32? = self.table.withLock { t in
            guard nodeID != FUSEProtocol.rootNodeID, var node = t.nodes[nodeID] else { return nil }
            node.lookups -= min(lookups, node.lookups)
            if node.lookups > 0 {
                t.nodes[nodeID] = node
                return nil
            }
            t.nodes[nodeID] = nil
            t.byInode[node.key] = nil
            return node.fd
        }
        if let fd { close(fd) }
    }

    func getattr(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64?) throws -> AttributeReply {
        var st = Glibc.stat()
        if let fh = fileHandle {
            try Self.check(fstat(Int32(truncatingIfNeeded: fh), &st))
        } else {
            try Self.check(fstatat(try self.fd(nodeID), "", &st, cpt_at_empty_path() | AT_SYMLINK_NOFOLLOW))
        }
        return AttributeReply(attributes: self.attributes(st), timeout: self.timeout)
    }

    func setattr(_ context: RequestContext, nodeID: UInt64, changes: SetAttributes) throws -> AttributeReply {
        let fd = try self.fd(nodeID)
        let fh = changes.fileHandle.map { Int32(truncatingIfNeeded: $0) }
        let path = Self.procPath(fd)
        if let mode = changes.mode {
            try Self.check(fh.map { fchmod($0, mode & 0o7777) } ?? chmod(path, mode & 0o7777))
        }
        if changes.uid != nil || changes.gid != nil {
            let uid = changes.uid ?? UInt32.max
            let gid = changes.gid ?? UInt32.max
            try Self.check(fchownat(fd, "", uid, gid, cpt_at_empty_path() | AT_SYMLINK_NOFOLLOW))
        }
        if let size = changes.size {
            try Self.check(fh.map { ftruncate($0, off_t(size)) } ?? truncate(path, off_t(size)))
        }
        if changes.atime != nil || changes.mtime != nil {
            func spec(_ c: TimeChange?) -> timespec {
                switch c {
                case nil: timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2)  // UTIME_OMIT
                case .now?: timespec(tv_sec: 0, tv_nsec: (1 << 30) - 1)  // UTIME_NOW
                case .set(let t)?: timespec(tv_sec: Int(t.seconds), tv_nsec: Int(t.nanoseconds))
                }
            }
            var times = [spec(changes.atime), spec(changes.mtime)]
            try Self.check(fh.map { futimens($0, &times) } ?? utimensat(AT_FDCWD, path, &times, 0))
        }
        return try self.getattr(context, nodeID: nodeID, fileHandle: changes.fileHandle)
    }

    func readlink(_ context: RequestContext, nodeID: UInt64) throws -> [UInt8] {
        let fd = try self.fd(nodeID)
        var buf = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = buf.withUnsafeMutableBytes { readlinkat(fd, "", $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
        guard n >= 0 else { throw FUSEError(errno) }
        return Array(buf[0..<n])
    }

    func symlink(_ context: RequestContext, parent: UInt64, name: borrowing FileName, target: borrowing FileName) throws -> EntryReply {
        let pfd = try self.fd(parent)
        return try Self.withCName(name) { n in
            try Self.withCName(target) { t in try Self.check(symlinkat(t, pfd, n)) }
            return try self.lookup(parentFD: pfd, name: n)
        }
    }

    func mknod(_ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, rdev: UInt32, umask: UInt32) throws -> EntryReply {
        let pfd = try self.fd(parent)
        let major = (rdev >> 8) & 0xfff
        let minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00)
        let dev = dev_t(major) << 8 | dev_t(minor & 0xff) | (dev_t(minor & ~0xff) << 12)
        return try Self.withCName(name) { n in
            try Self.check(mknodat(pfd, n, mode & ~umask, dev))
            return try self.lookup(parentFD: pfd, name: n)
        }
    }

    func mkdir(_ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, umask: UInt32) throws -> EntryReply {
        let pfd = try self.fd(parent)
        return try Self.withCName(name) { n in
            try Self.check(mkdirat(pfd, n, mode & ~umask))
            return try self.lookup(parentFD: pfd, name: n)
        }
    }

    func unlink(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws {
        let pfd = try self.fd(parent)
        try Self.withCName(name) { try Self.check(unlinkat(pfd, $0, 0)) }
    }

    func rmdir(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws {
        let pfd = try self.fd(parent)
        try Self.withCName(name) { try Self.check(unlinkat(pfd, $0, AT_REMOVEDIR)) }
    }

    func rename(
        _ context: RequestContext, parent: UInt64, name: borrowing FileName, newParent: UInt64,
        newName: borrowing FileName, flags: RenameFlags
    ) throws {
        let a = try self.fd(parent)
        let b = try self.fd(newParent)
        try Self.withCName(name) { n in
            try Self.withCName(newName) { nn in try Self.check(cpt_renameat2(a, n, b, nn, flags.rawValue)) }
        }
    }

    func link(_ context: RequestContext, nodeID: UInt64, newParent: UInt64, newName: borrowing FileName) throws -> EntryReply {
        let fd = try self.fd(nodeID)
        let pfd = try self.fd(newParent)
        return try Self.withCName(newName) { n in
            try Self.check(linkat(fd, "", pfd, n, cpt_at_empty_path()))
            return try self.lookup(parentFD: pfd, name: n)
        }
    }

    func open(_ context: RequestContext, nodeID: UInt64, flags: Int32, killSUIDGID: Bool) throws -> OpenReply {
        let fd = try self.fd(nodeID)
        let f = cpt_open3(Self.procPath(fd), (flags & ~(O_NOFOLLOW | O_CREAT | O_EXCL)) | O_CLOEXEC, 0)
        guard f >= 0 else { throw FUSEError(errno) }
        return OpenReply(fileHandle: UInt64(f), flags: self.openFlags)
    }

    func read(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64,
        into buffer: UnsafeMutableRawBufferPointer, flags: Int32
    ) throws -> Int {
        let n = pread(Int32(truncatingIfNeeded: fileHandle), buffer.baseAddress, buffer.count, off_t(offset))
        guard n >= 0 else { throw FUSEError(errno) }
        return n
    }

    func write(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, data: RawSpan,
        writeFlags: WriteFlags, flags: Int32
    ) throws -> Int {
        let n = data.withUnsafeBytes { pwrite(Int32(truncatingIfNeeded: fileHandle), $0.baseAddress, $0.count, off_t(offset)) }
        guard n >= 0 else { throw FUSEError(errno) }
        return n
    }

    func statfs(_ context: RequestContext, nodeID: UInt64) throws -> FileSystemStatistics {
        var s = statvfs()
        try Self.check(fstatvfs(try self.fd(nodeID), &s))
        return FileSystemStatistics(
            blocks: UInt64(s.f_blocks), freeBlocks: UInt64(s.f_bfree), availableBlocks: UInt64(s.f_bavail),
            files: UInt64(s.f_files), freeFiles: UInt64(s.f_ffree), blockSize: UInt32(clamping: s.f_bsize),
            nameLength: UInt32(clamping: s.f_namemax), fragmentSize: UInt32(clamping: s.f_frsize))
    }

    func release(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, flags: Int32, flush: Bool) throws {
        close(Int32(truncatingIfNeeded: fileHandle))
    }

    func flush(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, lockOwner: UInt64) throws {
        // closing a duplicate releases POSIX locks and reports delayed errors, as close(2) would
        let d = dup(Int32(truncatingIfNeeded: fileHandle))
        guard d >= 0 else { throw FUSEError(errno) }
        try Self.check(close(d))
    }

    func fsync(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, dataOnly: Bool) throws {
        let fd = Int32(truncatingIfNeeded: fileHandle)
        try Self.check(dataOnly ? fdatasync(fd) : Glibc.fsync(fd))
    }

    func setxattr(
        _ context: RequestContext, nodeID: UInt64, name: borrowing FileName, value: RawSpan, flags: Int32, killSGID: Bool
    ) throws {
        let path = Self.procPath(try self.fd(nodeID))
        try Self.withCName(name) { n in
            try value.withUnsafeBytes { v in try Self.check(CPassthrough.setxattr(path, n, v.baseAddress, v.count, flags)) }
        }
    }

    func getxattr(_ context: RequestContext, nodeID: UInt64, name: borrowing FileName) throws -> [UInt8] {
        let path = Self.procPath(try self.fd(nodeID))
        return try Self.withCName(name) { n in
            while true {
                let size = CPassthrough.getxattr(path, n, nil, 0)
                guard size >= 0 else { throw FUSEError(errno) }
                var buf = [UInt8](repeating: 0, count: size)
                let got = buf.withUnsafeMutableBytes { CPassthrough.getxattr(path, n, $0.baseAddress, $0.count) }
                if got >= 0 { return Array(buf[0..<got]) }
                if errno != ERANGE { throw FUSEError(errno) }  // grew in between: ask again
            }
        }
    }

    func listxattr(_ context: RequestContext, nodeID: UInt64) throws -> [[UInt8]] {
        let path = Self.procPath(try self.fd(nodeID))
        while true {
            let size = CPassthrough.listxattr(path, nil, 0)
            guard size >= 0 else { throw FUSEError(errno) }
            var buf = [CChar](repeating: 0, count: size)
            let got = CPassthrough.listxattr(path, &buf, buf.count)
            if got >= 0 {
                return buf[0..<got].split(separator: 0).map { $0.map { UInt8(bitPattern: $0) } }
            }
            if errno != ERANGE { throw FUSEError(errno) }
        }
    }

    func removexattr(_ context: RequestContext, nodeID: UInt64, name: borrowing FileName) throws {
        let path = Self.procPath(try self.fd(nodeID))
        try Self.withCName(name) { try Self.check(CPassthrough.removexattr(path, $0)) }
    }

    func opendir(_ context: RequestContext, nodeID: UInt64, flags: Int32) throws -> OpenReply {
        let fd = try self.fd(nodeID)
        let d = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard d >= 0 else { throw FUSEError(errno) }
        guard let dir = fdopendir(d) else {
            let e = errno
            close(d)
            throw FUSEError(e)
        }
        let fh = self.nextHandle.wrappingAdd(1, ordering: .relaxed).oldValue
        self.directories.withLock { $0[fh] = DirectoryHandle(dir: dir, offset: 0) }
        return OpenReply(fileHandle: fh)
    }

    func readdir(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64,
        into buffer: inout DirectoryReplyBuffer
    ) throws {
        guard var handle = self.directories.withLock({ $0[fileHandle] }) else { throw FUSEError(EBADF) }
        defer { self.directories.withLock { $0[fileHandle]?.offset = handle.offset } }
        if Int(offset) != handle.offset {
            seekdir(handle.dir, Int(offset))
            handle.offset = Int(offset)
        }
        let parentFD = try self.fd(nodeID)
        while true {
            errno = 0
            guard let e = Glibc.readdir(handle.dir) else {
                if errno != 0 { throw FUSEError(errno) }
                return
            }
            let next = telldir(handle.dir)
            let ino = UInt64(e.pointee.d_ino)
            let mode = UInt32(e.pointee.d_type) << 12
            let appended: Bool = try withUnsafeBytes(of: e.pointee.d_name) { raw in
                let len = raw.firstIndex(of: 0) ?? raw.count
                let name = UnsafeRawBufferPointer(rebasing: raw[0..<len])
                let isDots = (len == 1 && raw[0] == 0x2E) || (len == 2 && raw[0] == 0x2E && raw[1] == 0x2E)
                var entry: EntryReply?
                if buffer.isPlus && !isDots {
                    entry = try raw.withMemoryRebound(to: CChar.self) { try self.lookup(parentFD: parentFD, name: $0.baseAddress!) }
                }
                let ok = buffer.append(name: name, ino: ino, mode: mode, nextOffset: UInt64(next), entry: entry)
                if !ok, let entry { self.forget(nodeID: entry.nodeID, lookups: 1) }
                return ok
            }
            if !appended {
                seekdir(handle.dir, handle.offset)  // this entry is sent again next time
                return
            }
            handle.offset = next
        }
    }

    func releasedir(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, flags: Int32) throws {
        if let h = self.directories.withLock({ $0.removeValue(forKey: fileHandle) }) { closedir(h.dir) }
    }

    func fsyncdir(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, dataOnly: Bool) throws {
        guard let h = self.directories.withLock({ $0[fileHandle] }) else { throw FUSEError(EBADF) }
        let fd = dirfd(h.dir)
        try Self.check(dataOnly ? fdatasync(fd) : Glibc.fsync(fd))
    }

    func access(_ context: RequestContext, nodeID: UInt64, mask: Int32) throws {
        try Self.check(faccessat(AT_FDCWD, Self.procPath(try self.fd(nodeID)), mask, 0))
    }

    func create(
        _ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, umask: UInt32, flags: Int32
    ) throws -> CreateReply {
        let pfd = try self.fd(parent)
        return try Self.withCName(name) { n in
            let f = cpt_openat3(pfd, n, (flags | O_CREAT | O_CLOEXEC) & ~O_NOFOLLOW, mode & ~umask)
            guard f >= 0 else { throw FUSEError(errno) }
            do {
                let entry = try self.lookup(parentFD: pfd, name: n)
                return CreateReply(entry: entry, open: OpenReply(fileHandle: UInt64(f), flags: self.openFlags))
            } catch {
                close(f)
                throw error
            }
        }
    }

    func tmpfile(_ context: RequestContext, parent: UInt64, mode: UInt32, umask: UInt32, flags: Int32) throws -> CreateReply {
        let pfd = try self.fd(parent)
        let f = cpt_openat3(pfd, ".", (flags & O_ACCMODE) | cpt_o_tmpfile() | O_CLOEXEC, mode & ~umask)
        guard f >= 0 else { throw FUSEError(errno) }
        let pathFD = cpt_open3(Self.procPath(f), cpt_o_path() | O_CLOEXEC, 0)
        var st = Glibc.stat()
        guard pathFD >= 0, fstat(f, &st) == 0 else {
            let e = errno
            close(f)
            if pathFD >= 0 { close(pathFD) }
            throw FUSEError(e)
        }
        return CreateReply(entry: self.entry(adopting: pathFD, st), open: OpenReply(fileHandle: UInt64(f), flags: self.openFlags))
    }

    func fallocate(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, length: UInt64, mode: Int32
    ) throws {
        try Self.check(cpt_fallocate(Int32(truncatingIfNeeded: fileHandle), mode, Int64(offset), Int64(length)))
    }

    func lseek(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, whence: Int32) throws -> UInt64 {
        let r = Glibc.lseek(Int32(truncatingIfNeeded: fileHandle), off_t(offset), whence)
        guard r >= 0 else { throw FUSEError(errno) }
        return UInt64(r)
    }
}
