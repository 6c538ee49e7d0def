import CFuseKernel
import Glibc
import ScoutFUSE
import Synchronization

/// An in-memory filesystem for the FUSE tests: directories, files, symlinks, device nodes, xattrs, rename flags,
/// O_TMPFILE, lookup counting. It also offers "backdoor" changes made behind the kernel's back, to test invalidation.
final class MemoryFileSystem: FileSystemOperations {
    struct Node {
        var attr: FileAttributes
        var data: [UInt8] = []
        var target: [UInt8] = []
        /// Names in creation order; removed names leave a nil (tombstone). Entry i has readdir cookie i + 3.
        var entries: [[UInt8]?] = []
        var index: [[UInt8]: UInt64] = [:]
        var slot: [[UInt8]: Int] = [:]
        var parent: UInt64 = FUSEProtocol.rootNodeID
        var xattrs: [[UInt8]: [UInt8]] = [:]
        var lookups: UInt64 = 0

        var isDirectory: Bool { self.attr.mode & S_IFMT == S_IFDIR }
    }

    struct State {
        var nodes: [UInt64: Node] = [:]
        var nextIno: UInt64 = 2
        var nextHandle: UInt64 = 1
        var counts: [FUSEOpcode: Int] = [:]
        var destroyedAt: FileTime?
        var writeSizes: [Int] = []
        var blockingCalls = 0
        var forgotten: UInt64 = 0
    }

    let state = Mutex(State())
    let entryTimeout: Duration
    let attributeTimeout: Duration
    /// DESTROY sleeps this long (to show that umount waits for it).
    let destroyDelay: Duration
    /// How long the blocking xattr waits for an interrupt before giving up with ETIMEDOUT.
    let blockingTimeout: Duration
    /// FOPEN flags for opened files.
    let openFlags: OpenReplyFlags
    /// Reading this xattr blocks until the request is interrupted.
    static let blockingXattr = "user.block"

    init(
        entryTimeout: Duration = .seconds(1), attributeTimeout: Duration = .seconds(1), destroyDelay: Duration = .zero,
        blockingTimeout: Duration = .seconds(20), openFlags: OpenReplyFlags = []
    ) {
        self.entryTimeout = entryTimeout
        self.attributeTimeout = attributeTimeout
        self.destroyDelay = destroyDelay
        self.blockingTimeout = blockingTimeout
        self.openFlags = openFlags
        let now = FileTime.now()
        let root = Node(
            attr: FileAttributes(
                ino: FUSEProtocol.rootNodeID, atime: now, mtime: now, ctime: now, mode: S_IFDIR | 0o755, nlink: 2,
                blockSize: 4096))
        self.state.withLock { $0.nodes[FUSEProtocol.rootNodeID] = root }
    }

    // MARK: test inspection and backdoors

    func count(_ op: FUSEOpcode) -> Int { self.state.withLock { $0.counts[op] ?? 0 } }
    var destroyedAt: FileTime? { self.state.withLock { $0.destroyedAt } }
    var writeSizes: [Int] { self.state.withLock { $0.writeSizes } }
    var blockingCalls: Int { self.state.withLock { $0.blockingCalls } }
    var forgotten: UInt64 { self.state.withLock { $0.forgotten } }

    /// The node id of `name` in `parent`, without any kernel involvement.
    func child(_ parent: UInt64, _ name: String) -> UInt64? {
        self.state.withLock { $0.nodes[parent]?.index[Array(name.utf8)] }
    }

    /// Changes a file's size behind the kernel's back.
    func backdoorResize(_ ino: UInt64, to size: Int) {
        self.state.withLock { s in
            s.nodes[ino]?.data = [UInt8](repeating: 7, count: size)
            s.nodes[ino]?.attr.size = UInt64(size)
        }
    }

    /// Removes a name behind the kernel's back.
    func backdoorUnlink(_ parent: UInt64, _ name: String) {
        self.state.withLock { s in
            let n = Array(name.utf8)
            guard let ino = s.nodes[parent]?.index.removeValue(forKey: n) else { return }
            if let i = s.nodes[parent]?.slot.removeValue(forKey: n) { s.nodes[parent]?.entries[i] = nil }
            s.nodes[ino]?.attr.nlink -= 1
        }
    }

    // MARK: helpers

    private func tick(_ s: inout State, _ op: FUSEOpcode) {
        s.counts[op, default: 0] += 1
    }

    private func entry(_ s: inout State, _ ino: UInt64) -> EntryReply {
        s.nodes[ino]!.lookups += 1
        return EntryReply(
            nodeID: ino, generation: 1, attributes: s.nodes[ino]!.attr, entryTimeout: self.entryTimeout,
            attributeTimeout: self.attributeTimeout)
    }

    /// Checks that `ino` is a directory. (Returns nothing on purpose: a local copy of a node would make every
    /// later in-place change copy its name tables.)
    private func directory(_ s: inout State, _ ino: UInt64) throws {
        guard let node = s.nodes[ino] else { throw FUSEError.noEntry }
        guard node.isDirectory else { throw FUSEError.notDirectory }
    }

    private func addName(_ s: inout State, _ parent: UInt64, _ name: [UInt8], _ ino: UInt64) {
        s.nodes[parent]!.slot[name] = s.nodes[parent]!.entries.count
        s.nodes[parent]!.entries.append(name)
        s.nodes[parent]!.index[name] = ino
        let now = FileTime.now()
        s.nodes[parent]!.attr.mtime = now
        s.nodes[parent]!.attr.ctime = now
    }

    private func removeName(_ s: inout State, _ parent: UInt64, _ name: [UInt8]) {
        s.nodes[parent]!.index[name] = nil
        if let i = s.nodes[parent]!.slot.removeValue(forKey: name) { s.nodes[parent]!.entries[i] = nil }
        let now = FileTime.now()
        s.nodes[parent]!.attr.mtime = now
        s.nodes[parent]!.attr.ctime = now
    }

    private func dropIfUnused(_ s: inout State, _ ino: UInt64) {
        if let n = s.nodes[ino], n.attr.nlink == 0, n.lookups == 0 { s.nodes[ino] = nil }
    }

    private func makeNode(
        _ s: inout State, _ ctx: RequestContext, parent: UInt64?, name: [UInt8], mode: UInt32, rdev: UInt32 = 0
    ) throws -> UInt64 {
        if let parent {
            try self.directory(&s, parent)
            guard s.nodes[parent]!.index[name] == nil else { throw FUSEError.exists }
            guard name.count <= 255 else { throw FUSEError(ENAMETOOLONG) }
        }
        let ino = s.nextIno
        s.nextIno += 1
        let now = FileTime.now()
        let isDir = mode & S_IFMT == S_IFDIR
        var node = Node(
            attr: FileAttributes(
                ino: ino, atime: now, mtime: now, ctime: now, mode: mode, nlink: parent == nil ? 0 : (isDir ? 2 : 1),
                uid: ctx.uid, gid: ctx.gid, rdev: rdev, blockSize: 4096))
        node.parent = parent ?? FUSEProtocol.rootNodeID
        s.nodes[ino] = node
        if let parent {
            self.addName(&s, parent, name, ino)
            if isDir { s.nodes[parent]!.attr.nlink += 1 }
        }
        return ino
    }

    private func setSize(_ node: inout Node, _ size: UInt64) {
        let n = Int(size)
        if n < node.data.count {
            node.data.removeSubrange(n...)
        } else if n > node.data.count {
            node.data.append(contentsOf: repeatElement(0, count: n - node.data.count))
        }
        node.attr.size = size
        node.attr.blocks = (size + 511) / 512
    }

    // MARK: FileSystemOperations

    func destroy() {
        if self.destroyDelay > .zero {
            let (s, atto) = self.destroyDelay.components
            usleep(UInt32(s) * 1_000_000 + UInt32(atto / 1_000_000_000_000))
        }
        self.state.withLock { $0.destroyedAt = FileTime.now() }
    }

    func lookup(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws -> EntryReply {
        let n = name.bytes
        return try self.state.withLock { s in
            self.tick(&s, .lookup)
            try self.directory(&s, parent)
            let ino: UInt64
            if n == Array(".".utf8) {
                ino = parent
            } else if n == Array("..".utf8) {
                ino = s.nodes[parent]!.parent
            } else {
                guard let i = s.nodes[parent]!.index[n] else { throw FUSEError.noEntry }
                ino = i
            }
            return self.entry(&s, ino)
        }
    }

    func forget(nodeID: UInt64, lookups: UInt64) {
        self.state.withLock { s in
            s.forgotten += lookups
            guard s.nodes[nodeID] != nil else { return }
            s.nodes[nodeID]!.lookups -= min(lookups, s.nodes[nodeID]!.lookups)
            self.dropIfUnused(&s, nodeID)
        }
    }

    func getattr(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64?) throws -> AttributeReply {
        try self.state.withLock { s in
            self.tick(&s, .getattr)
            guard let node = s.nodes[nodeID] else { throw FUSEError.noEntry }
            return AttributeReply(attributes: node.attr, timeout: self.attributeTimeout)
        }
    }

    func setattr(_ context: RequestContext, nodeID: UInt64, changes: SetAttributes) throws -> AttributeReply {
        try self.state.withLock { s in
            self.tick(&s, .setattr)
            guard var node = s.nodes[nodeID] else { throw FUSEError.noEntry }
            let now = FileTime.now()
            if let mode = changes.mode { node.attr.mode = (node.attr.mode & S_IFMT) | (mode & 0o7777) }
            if let uid = changes.uid { node.attr.uid = uid }
            if let gid = changes.gid { node.attr.gid = gid }
            if let size = changes.size {
                guard !node.isDirectory else { throw FUSEError.isDirectory }
                self.setSize(&node, size)
                node.attr.mtime = now
            }
            switch changes.atime {
            case .now?: node.attr.atime = now
            case .set(let t)?: node.attr.atime = t
            case nil: break
            }
            switch changes.mtime {
            case .now?: node.attr.mtime = now
            case .set(let t)?: node.attr.mtime = t
            case nil: break
            }
            node.attr.ctime = changes.ctime ?? now
            s.nodes[nodeID] = node
            return AttributeReply(attributes: node.attr, timeout: self.attributeTimeout)
        }
    }

    func readlink(_ context: RequestContext, nodeID: UInt64) throws -> [UInt8] {
        try self.state.withLock { s in
            self.tick(&s, .readlink)
            guard let node = s.nodes[nodeID] else { throw FUSEError.noEntry }
            guard node.attr.mode & S_IFMT == S_IFLNK else { throw FUSEError.invalid }
            return node.target
        }
    }

    func symlink(_ context: RequestContext, parent: UInt64, name: borrowing FileName, target: borrowing FileName) throws -> EntryReply {
        let n = name.bytes
        let t = target.bytes
        return try self.state.withLock { s in
            self.tick(&s, .symlink)
            let ino = try self.makeNode(&s, context, parent: parent, name: n, mode: S_IFLNK | 0o777)
            s.nodes[ino]!.target = t
            s.nodes[ino]!.attr.size = UInt64(t.count)
            return self.entry(&s, ino)
        }
    }

    func mknod(_ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, rdev: UInt32, umask: UInt32) throws -> EntryReply {
        let n = name.bytes
        return try self.state.withLock { s in
            self.tick(&s, .mknod)
            let ino = try self.makeNode(&s, context, parent: parent, name: n, mode: mode & ~umask, rdev: rdev)
            return self.entry(&s, ino)
        }
    }

    func mkdir(_ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, umask: UInt32) throws -> EntryReply {
        let n = name.bytes
        return try self.state.withLock { s in
            self.tick(&s, .mkdir)
            let ino = try self.makeNode(&s, context, parent: parent, name: n, mode: S_IFDIR | (mode & ~umask & 0o7777))
            return self.entry(&s, ino)
        }
    }

    func unlink(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws {
        let n = name.bytes
        try self.state.withLock { s in
            self.tick(&s, .unlink)
            try self.directory(&s, parent)
            guard let ino = s.nodes[parent]!.index[n] else { throw FUSEError.noEntry }
            guard !s.nodes[ino]!.isDirectory else { throw FUSEError.isDirectory }
            self.removeName(&s, parent, n)
            s.nodes[ino]!.attr.nlink -= 1
            s.nodes[ino]!.attr.ctime = FileTime.now()
            self.dropIfUnused(&s, ino)
        }
    }

    func rmdir(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws {
        let n = name.bytes
        try self.state.withLock { s in
            self.tick(&s, .rmdir)
            try self.directory(&s, parent)
            guard let ino = s.nodes[parent]!.index[n] else { throw FUSEError.noEntry }
            guard s.nodes[ino]!.isDirectory else { throw FUSEError.notDirectory }
            guard s.nodes[ino]!.index.isEmpty else { throw FUSEError.notEmpty }
            self.removeName(&s, parent, n)
            s.nodes[ino]!.attr.nlink = 0
            s.nodes[parent]!.attr.nlink -= 1
            self.dropIfUnused(&s, ino)
        }
    }

    func rename(
        _ context: RequestContext, parent: UInt64, name: borrowing FileName, newParent: UInt64,
        newName: borrowing FileName, flags: RenameFlags
    ) throws {
        let from = name.bytes
        let to = newName.bytes
        try self.state.withLock { s in
            self.tick(&s, .rename)
            try self.directory(&s, parent)
            try self.directory(&s, newParent)
            guard let ino = s.nodes[parent]!.index[from] else { throw FUSEError.noEntry }
            let target = s.nodes[newParent]!.index[to]
            let srcIsDir = s.nodes[ino]!.isDirectory
            if flags.contains(.exchange) {
                guard let other = target else { throw FUSEError.noEntry }
                let otherIsDir = s.nodes[other]!.isDirectory
                s.nodes[parent]!.index[from] = other
                s.nodes[newParent]!.index[to] = ino
                s.nodes[ino]!.parent = newParent
                s.nodes[other]!.parent = parent
                if parent != newParent {
                    if srcIsDir {
                        s.nodes[parent]!.attr.nlink -= 1
                        s.nodes[newParent]!.attr.nlink += 1
                    }
                    if otherIsDir {
                        s.nodes[newParent]!.attr.nlink -= 1
                        s.nodes[parent]!.attr.nlink += 1
                    }
                }
                return
            }
            if let other = target {
                if flags.contains(.noReplace) { throw FUSEError.exists }
                if other == ino { return }
                let otherIsDir = s.nodes[other]!.isDirectory
                if srcIsDir && !otherIsDir { throw FUSEError.notDirectory }
                if !srcIsDir && otherIsDir { throw FUSEError.isDirectory }
                if otherIsDir && !s.nodes[other]!.index.isEmpty { throw FUSEError.notEmpty }
                self.removeName(&s, newParent, to)
                if otherIsDir {
                    s.nodes[other]!.attr.nlink = 0
                    s.nodes[newParent]!.attr.nlink -= 1
                } else {
                    s.nodes[other]!.attr.nlink -= 1
                }
                self.dropIfUnused(&s, other)
            }
            self.removeName(&s, parent, from)
            self.addName(&s, newParent, to, ino)
            s.nodes[ino]!.parent = newParent
            s.nodes[ino]!.attr.ctime = FileTime.now()
            if srcIsDir && parent != newParent {
                s.nodes[parent]!.attr.nlink -= 1
                s.nodes[newParent]!.attr.nlink += 1
            }
        }
    }

    func link(_ context: RequestContext, nodeID: UInt64, newParent: UInt64, newName: borrowing FileName) throws -> EntryReply {
        let n = newName.bytes
        return try self.state.withLock { s in
            self.tick(&s, .link)
            guard let node = s.nodes[nodeID] else { throw FUSEError.noEntry }
            guard !node.isDirectory else { throw FUSEError.notPermitted }
            try self.directory(&s, newParent)
            guard s.nodes[newParent]!.index[n] == nil else { throw FUSEError.exists }
            self.addName(&s, newParent, n, nodeID)
            s.nodes[nodeID]!.attr.nlink += 1
            s.nodes[nodeID]!.attr.ctime = FileTime.now()
            return self.entry(&s, nodeID)
        }
    }

    func open(_ context: RequestContext, nodeID: UInt64, flags: Int32, killSUIDGID: Bool) throws -> OpenReply {
        try self.state.withLock { s in
            self.tick(&s, .open)
            guard s.nodes[nodeID] != nil else { throw FUSEError.noEntry }
            if flags & O_TRUNC != 0 {
                self.setSize(&s.nodes[nodeID]!, 0)
                s.nodes[nodeID]!.attr.mtime = FileTime.now()
            }
            let fh = s.nextHandle
            s.nextHandle += 1
            return OpenReply(fileHandle: fh, flags: self.openFlags)
        }
    }

    func read(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64,
        into buffer: UnsafeMutableRawBufferPointer, flags: Int32
    ) throws -> Int {
        try self.state.withLock { s in
            self.tick(&s, .read)
            guard let node = s.nodes[nodeID] else { throw FUSEError.noEntry }
            guard offset < UInt64(node.data.count) else { return 0 }
            let start = Int(offset)
            let n = min(buffer.count, node.data.count - start)
            node.data.withUnsafeBytes { src in
                buffer.baseAddress!.copyMemory(from: src.baseAddress! + start, byteCount: n)
            }
            return n
        }
    }

    func write(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, data: RawSpan,
        writeFlags: WriteFlags, flags: Int32
    ) throws -> Int {
        try data.withUnsafeBytes { bytes in
            try self.state.withLock { s in
                self.tick(&s, .write)
                s.writeSizes.append(bytes.count)
                guard var node = s.nodes[nodeID] else { throw FUSEError.noEntry }
                s.nodes[nodeID] = nil  // avoid a copy of the data while we modify it
                let end = Int(offset) + bytes.count
                if end > node.data.count { self.setSize(&node, UInt64(end)) }
                node.data.withUnsafeMutableBytes { dst in
                    if bytes.count > 0 { (dst.baseAddress! + Int(offset)).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count) }
                }
                let now = FileTime.now()
                node.attr.mtime = now
                node.attr.ctime = now
                s.nodes[nodeID] = node
                return bytes.count
            }
        }
    }

    func statfs(_ context: RequestContext, nodeID: UInt64) throws -> FileSystemStatistics {
        self.state.withLock { s in
            self.tick(&s, .statfs)
            return FileSystemStatistics(
                blocks: 1 << 20, freeBlocks: 1 << 19, availableBlocks: 1 << 18, files: 1 << 16,
                freeFiles: (1 << 16) - UInt64(s.nodes.count), blockSize: 4096, nameLength: 255, fragmentSize: 4096)
        }
    }

    func release(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, flags: Int32, flush: Bool) throws {
        self.state.withLock { self.tick(&$0, .release) }
    }

    func flush(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, lockOwner: UInt64) throws {
        self.state.withLock { self.tick(&$0, .flush) }
    }

    func fsync(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, dataOnly: Bool) throws {
        self.state.withLock { self.tick(&$0, .fsync) }
    }

    func fsyncdir(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, dataOnly: Bool) throws {
        self.state.withLock { self.tick(&$0, .fsyncdir) }
    }

    func setxattr(
        _ context: RequestContext, nodeID: UInt64, name: borrowing FileName, value: RawSpan, flags: Int32,
        killSGID: Bool
    ) throws {
        let n = name.bytes
        let v = value.withUnsafeBytes { Array($0) }
        try self.state.withLock { s in
            self.tick(&s, .setxattr)
            guard let node = s.nodes[nodeID] else { throw FUSEError.noEntry }
            let exists = node.xattrs[n] != nil
            if flags & Int32(XATTR_CREATE) != 0 && exists { throw FUSEError.exists }
            if flags & Int32(XATTR_REPLACE) != 0 && !exists { throw FUSEError.noData }
            s.nodes[nodeID]!.xattrs[n] = v
            s.nodes[nodeID]!.attr.ctime = FileTime.now()
        }
    }

    func getxattr(_ context: RequestContext, nodeID: UInt64, name: borrowing FileName) throws -> [UInt8] {
        if name.equals(Self.blockingXattr) {
            self.state.withLock {
                self.tick(&$0, .getxattr)
                $0.blockingCalls += 1
            }
            if context.waitForInterrupt(timeout: self.blockingTimeout) { throw FUSEError.interrupted }
            throw FUSEError(ETIMEDOUT)
        }
        let n = name.bytes
        return try self.state.withLock { s in
            self.tick(&s, .getxattr)
            guard let node = s.nodes[nodeID] else { throw FUSEError.noEntry }
            guard let v = node.xattrs[n] else { throw FUSEError.noData }
            return v
        }
    }

    func listxattr(_ context: RequestContext, nodeID: UInt64) throws -> [[UInt8]] {
        try self.state.withLock { s in
            self.tick(&s, .listxattr)
            guard let node = s.nodes[nodeID] else { throw FUSEError.noEntry }
            return node.xattrs.keys.sorted { $0.lexicographicallyPrecedes($1) }
        }
    }

    func removexattr(_ context: RequestContext, nodeID: UInt64, name: borrowing FileName) throws {
        let n = name.bytes
        try self.state.withLock { s in
            self.tick(&s, .removexattr)
            guard s.nodes[nodeID] != nil else { throw FUSEError.noEntry }
            guard s.nodes[nodeID]!.xattrs.removeValue(forKey: n) != nil else { throw FUSEError.noData }
        }
    }

    func opendir(_ context: RequestContext, nodeID: UInt64, flags: Int32) throws -> OpenReply {
        try self.state.withLock { s in
            self.tick(&s, .opendir)
            try self.directory(&s, nodeID)
            return OpenReply(fileHandle: 0)
        }
    }

    func readdir(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64,
        into buffer: inout DirectoryReplyBuffer
    ) throws {
        try self.state.withLock { s in
            self.tick(&s, buffer.isPlus ? .readdirplus : .readdir)
            try self.directory(&s, nodeID)
            let dir = s.nodes[nodeID]!  // read-only copy; the loop below mutates only other nodes' lookup counts
            if offset < 1 {
                guard buffer.append(name: ".", ino: nodeID, mode: S_IFDIR, nextOffset: 1) else { return }
            }
            if offset < 2 {
                guard buffer.append(name: "..", ino: dir.parent, mode: S_IFDIR, nextOffset: 2) else { return }
            }
            let first = max(0, Int(offset) - 2)
            for i in first..<dir.entries.count {
                guard let name = dir.entries[i] else { continue }
                let cookie = UInt64(i + 3)
                let ino = dir.index[name]!
                let attr = s.nodes[ino]!.attr
                let entry: EntryReply? =
                    buffer.isPlus
                    ? EntryReply(
                        nodeID: ino, generation: 1, attributes: attr, entryTimeout: self.entryTimeout,
                        attributeTimeout: self.attributeTimeout) : nil
                guard buffer.append(name: name, ino: ino, mode: attr.mode, nextOffset: cookie, entry: entry) else {
                    return
                }
                if entry != nil { s.nodes[ino]!.lookups += 1 }
            }
        }
    }

    func releasedir(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, flags: Int32) throws {
        self.state.withLock { self.tick(&$0, .releasedir) }
    }

    func access(_ context: RequestContext, nodeID: UInt64, mask: Int32) throws {
        try self.state.withLock { s in
            self.tick(&s, .access)
            guard s.nodes[nodeID] != nil else { throw FUSEError.noEntry }
        }
    }

    func create(
        _ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, umask: UInt32,
        flags: Int32
    ) throws -> CreateReply {
        let n = name.bytes
        return try self.state.withLock { s in
            self.tick(&s, .create)
            let ino = try self.makeNode(&s, context, parent: parent, name: n, mode: mode & ~umask)
            let fh = s.nextHandle
            s.nextHandle += 1
            return CreateReply(entry: self.entry(&s, ino), open: OpenReply(fileHandle: fh, flags: self.openFlags))
        }
    }

    func tmpfile(_ context: RequestContext, parent: UInt64, mode: UInt32, umask: UInt32, flags: Int32) throws -> CreateReply {
        try self.state.withLock { s in
            self.tick(&s, .tmpfile)
            try self.directory(&s, parent)
            let ino = try self.makeNode(&s, context, parent: nil, name: [], mode: mode & ~umask)
            s.nodes[ino]!.parent = parent
            let fh = s.nextHandle
            s.nextHandle += 1
            return CreateReply(entry: self.entry(&s, ino), open: OpenReply(fileHandle: fh, flags: self.openFlags))
        }
    }

    func fallocate(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, length: UInt64, mode: Int32
    ) throws {
        try self.state.withLock { s in
            self.tick(&s, .fallocate)
            guard s.nodes[nodeID] != nil else { throw FUSEError.noEntry }
            guard mode == 0 else { throw FUSEError(EOPNOTSUPP) }
            if offset + length > s.nodes[nodeID]!.attr.size { self.setSize(&s.nodes[nodeID]!, offset + length) }
        }
    }

    func lseek(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, whence: Int32) throws -> UInt64 {
        try self.state.withLock { s in
            self.tick(&s, .lseek)
            guard let node = s.nodes[nodeID] else { throw FUSEError.noEntry }
            guard offset < node.attr.size else { throw FUSEError(ENXIO) }
            switch whence {
            case cfk_seek_data(): return offset
            case cfk_seek_hole(): return node.attr.size
            default: throw FUSEError.invalid
            }
        }
    }
}
