import CFuseKernel
import Glibc
import ScoutFUSE
import Synchronization

/// Plays the kernel's side of a FUSE connection over a SOCK_SEQPACKET socket pair (message boundaries like
/// /dev/fuse), so the protocol can be tested without mounting: crafted and malformed requests, exact replies.
final class FakeKernel<FS: FileSystemOperations> {
    let fd: Int32
    let session: FUSESession<FS>
    private var nextUnique: UInt64 = 2

    struct Reply {
        var unique: UInt64
        var error: Int32
        var payload: [UInt8]

        func load<T>(_ type: T.Type) -> T? {
            guard self.payload.count >= MemoryLayout<T>.size else { return nil }
            return self.payload.withUnsafeBytes { $0.loadUnaligned(as: T.self) }
        }
    }

    init(_ fs: FS, configuration: FUSEConfiguration = FUSEConfiguration()) throws {
        var fds: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
            throw FUSEError(errno)
        }
        self.fd = fds[0]
        self.session = FUSESession(deviceFD: fds[1], filesystem: fs, configuration: configuration)
        try self.session.start()
    }

    deinit {
        self.close()
    }

    /// Closing our end makes the session's reads return 0 (treated as ENODEV).
    func close() {
        shutdown(self.fd, Int32(SHUT_RDWR))
    }

    func makeUnique() -> UInt64 {
        defer { self.nextUnique += 2 }
        return self.nextUnique
    }

    /// Sends raw bytes as one request.
    func sendRaw(_ bytes: [UInt8]) {
        _ = bytes.withUnsafeBytes { Glibc.send(self.fd, $0.baseAddress, $0.count, 0) }
    }

    /// Sends a request with a correct header; returns its unique.
    @discardableResult
    func request(
        _ opcode: FUSEOpcode, node: UInt64 = 1, args: [UInt8] = [], unique: UInt64? = nil, uid: UInt32 = 0,
        lengthDelta: Int = 0
    ) -> UInt64 {
        let u = unique ?? self.makeUnique()
        var h = fuse_in_header()
        h.len = UInt32(MemoryLayout<fuse_in_header>.size + args.count + lengthDelta)
        h.opcode = opcode.rawValue
        h.unique = u
        h.nodeid = node
        h.uid = uid
        h.gid = 0
        h.pid = UInt32(getpid())
        self.sendRaw(bytesOf(h) + args)
        return u
    }

    /// Receives one reply, waiting up to `timeout`.
    func receive(timeout: Duration = .seconds(5)) -> Reply? {
        let (s, atto) = timeout.components
        var p = pollfd(fd: self.fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, Int32(s * 1000 + atto / 1_000_000_000_000_000)) == 1 else { return nil }
        var buf = [UInt8](repeating: 0, count: 1 << 21)
        let n = buf.withUnsafeMutableBytes { recv(self.fd, $0.baseAddress, $0.count, 0) }
        guard n >= MemoryLayout<fuse_out_header>.size else { return nil }
        let h = buf.withUnsafeBytes { $0.loadUnaligned(as: fuse_out_header.self) }
        guard Int(h.len) == n else { return Reply(unique: h.unique, error: -9999, payload: []) }
        return Reply(unique: h.unique, error: -h.error, payload: Array(buf[MemoryLayout<fuse_out_header>.size..<n]))
    }

    /// Sends a request and waits for its reply.
    func call(_ opcode: FUSEOpcode, node: UInt64 = 1, args: [UInt8] = []) -> Reply? {
        let u = self.request(opcode, node: node, args: args)
        let r = self.receive()
        if let r, r.unique != u { return Reply(unique: r.unique, error: -8888, payload: r.payload) }
        return r
    }

    /// Performs INIT as a kernel offering `flags` at protocol 7.`minor`.
    func initialize(minor: UInt32 = 38, flags: UInt64 = 0xFFFF_FFFF, major: UInt32 = 7) -> Reply? {
        var a = fuse_init_in()
        a.major = major
        a.minor = minor
        a.max_readahead = 128 << 10
        a.flags = UInt32(truncatingIfNeeded: flags)
        a.flags2 = UInt32(truncatingIfNeeded: flags >> 32)
        return self.call(.initialize, args: bytesOf(a))
    }
}

func bytesOf<T>(_ value: T) -> [UInt8] {
    withUnsafeBytes(of: value) { Array($0) }
}

func cString(_ s: String) -> [UInt8] {
    Array(s.utf8) + [0]
}

/// A filesystem recording what reached it, for protocol tests.
final class ProbeFileSystem: FileSystemOperations {
    struct State {
        var forgets: [(UInt64, UInt64)] = []
        var names: [String] = []
        var interruptedAtStart: [Bool] = []
        var destroyed = false
        var writes: [(offset: UInt64, data: [UInt8], aligned: Bool)] = []
        var changes: [SetAttributes] = []
        var renames: [(String, String, RenameFlags)] = []
        var connection: FUSEConnectionInfo?
    }

    let state = Mutex(State())
    /// What lookup throws (nil = succeed).
    let lookupError: (any Error & Sendable)?

    init(lookupError: (any Error & Sendable)? = nil) {
        self.lookupError = lookupError
    }

    func initialize(_ connection: FUSEConnectionInfo) throws {
        self.state.withLock { $0.connection = connection }
    }

    func destroy() {
        self.state.withLock { $0.destroyed = true }
    }

    func forget(nodeID: UInt64, lookups: UInt64) {
        self.state.withLock { $0.forgets.append((nodeID, lookups)) }
    }

    func lookup(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws -> EntryReply {
        let n = name.string
        let interrupted = context.isInterrupted
        self.state.withLock {
            $0.names.append(n)
            $0.interruptedAtStart.append(interrupted)
        }
        if let e = self.lookupError { throw e }
        return EntryReply(
            nodeID: 77, generation: 3, attributes: FileAttributes(ino: 77, size: 5, mode: S_IFREG | 0o644),
            entryTimeout: .milliseconds(1500), attributeTimeout: .seconds(2))
    }

    func setattr(_ context: RequestContext, nodeID: UInt64, changes: SetAttributes) throws -> AttributeReply {
        self.state.withLock { $0.changes.append(changes) }
        return AttributeReply(attributes: FileAttributes(ino: nodeID, mode: S_IFREG), timeout: .zero)
    }

    func write(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, data: RawSpan,
        writeFlags: WriteFlags, flags: Int32
    ) throws -> Int {
        let (bytes, aligned) = data.withUnsafeBytes { (Array($0), Int(bitPattern: $0.baseAddress) % 4096 == 0) }
        self.state.withLock { $0.writes.append((offset, bytes, aligned)) }
        return bytes.count
    }

    func rename(
        _ context: RequestContext, parent: UInt64, name: borrowing FileName, newParent: UInt64,
        newName: borrowing FileName, flags: RenameFlags
    ) throws {
        let a = name.string
        let b = newName.string
        self.state.withLock { $0.renames.append((a, b, flags)) }
    }

    func getxattr(_ context: RequestContext, nodeID: UInt64, name: borrowing FileName) throws -> [UInt8] {
        Array("0123456789".utf8)
    }

    func readdir(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64,
        into buffer: inout DirectoryReplyBuffer
    ) throws {
        var i = offset
        while i < 100 {
            let entry = EntryReply(
                nodeID: 1000 + i, attributes: FileAttributes(ino: 1000 + i, mode: S_IFREG), entryTimeout: .seconds(1),
                attributeTimeout: .seconds(1))
            guard buffer.append(name: "n\(i)", ino: 1000 + i, mode: S_IFREG, nextOffset: i + 1, entry: entry) else { return }
            i += 1
        }
    }
}
