/// Who sent a request, and whether it has been interrupted.
///
/// Passed to every ``FileSystemOperations`` method. It may be copied to another thread (for example to
/// a lock waiter) but only means something until the method returns.
public struct RequestContext: Sendable {
    /// The kernel's request id.
    public let unique: UInt64
    /// The node the request is about (the header's `nodeid`).
    public let nodeID: UInt64
    /// The caller's filesystem uid.
    public let uid: UInt32
    /// The caller's filesystem gid.
    public let gid: UInt32
    /// The caller's thread-group id (0 for requests the kernel makes on its own, such as background writeback).
    public let pid: UInt32
    /// The request's opcode.
    public let opcode: FUSEOpcode
    let core: SessionCore?

    init(unique: UInt64, nodeID: UInt64, uid: UInt32, gid: UInt32, pid: UInt32, opcode: FUSEOpcode, core: SessionCore?) {
        self.unique = unique
        self.nodeID = nodeID
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.opcode = opcode
        self.core = core
    }

    /// A context for calling filesystem methods outside a session (tests, internal callers): never interrupted.
    public init(uid: UInt32 = 0, gid: UInt32 = 0, pid: UInt32 = 0, nodeID: UInt64 = 0, opcode: FUSEOpcode = FUSEOpcode(rawValue: 0)) {
        self.init(unique: 0, nodeID: nodeID, uid: uid, gid: gid, pid: pid, opcode: opcode, core: nil)
    }

    /// Whether the kernel sent FUSE_INTERRUPT for this request (the caller got a signal), or the session ended.
    /// A blocking operation should then give up with ``FUSEError/interrupted`` (`EINTR`).
    public var isInterrupted: Bool {
        self.core?.interrupts.isInterrupted(self.unique) ?? false
    }

    /// Blocks until the request is interrupted (returns `true`) or `timeout` passes (returns `false`).
    public func waitForInterrupt(timeout: Duration) -> Bool {
        guard let core = self.core else { return false }
        core.willBlock()
        return core.interrupts.wait(self.unique, timeout: timeout)
    }

    /// Runs `handler` once when this request is interrupted (at once if it already is), on the thread that
    /// handles the interrupt. Use it to wake a wait on the filesystem's own condition; keep it short and
    /// non-blocking. It is dropped, not run, when the request finishes uninterrupted.
    public func onInterrupt(_ handler: @escaping @Sendable () -> Void) {
        guard let core = self.core else { return }
        core.willBlock()
        core.interrupts.setHandler(self.unique, handler)
    }

    /// Declares that this request is about to wait for a long time (a lock, offline data, a slow device):
    /// if no other reader thread is idle, the session starts a spare one (up to
    /// ``FUSEConfiguration/maxReaderThreads``) so that INTERRUPT and other requests are still read.
    /// ``waitForInterrupt(timeout:)`` and ``onInterrupt(_:)`` call it themselves.
    public func willBlock() {
        self.core?.willBlock()
    }
}

/// A FUSE opcode (`enum fuse_opcode`).
public struct FUSEOpcode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let lookup = FUSEOpcode(rawValue: 1)
    public static let forget = FUSEOpcode(rawValue: 2)
    public static let getattr = FUSEOpcode(rawValue: 3)
    public static let setattr = FUSEOpcode(rawValue: 4)
    public static let readlink = FUSEOpcode(rawValue: 5)
    public static let symlink = FUSEOpcode(rawValue: 6)
    public static let mknod = FUSEOpcode(rawValue: 8)
    public static let mkdir = FUSEOpcode(rawValue: 9)
    public static let unlink = FUSEOpcode(rawValue: 10)
    public static let rmdir = FUSEOpcode(rawValue: 11)
    public static let rename = FUSEOpcode(rawValue: 12)
    public static let link = FUSEOpcode(rawValue: 13)
    public static let open = FUSEOpcode(rawValue: 14)
    public static let read = FUSEOpcode(rawValue: 15)
    public static let write = FUSEOpcode(rawValue: 16)
    public static let statfs = FUSEOpcode(rawValue: 17)
    public static let release = FUSEOpcode(rawValue: 18)
    public static let fsync = FUSEOpcode(rawValue: 20)
    public static let setxattr = FUSEOpcode(rawValue: 21)
    public static let getxattr = FUSEOpcode(rawValue: 22)
    public static let listxattr = FUSEOpcode(rawValue: 23)
    public static let removexattr = FUSEOpcode(rawValue: 24)
    public static let flush = FUSEOpcode(rawValue: 25)
    public static let initialize = FUSEOpcode(rawValue: 26)
    public static let opendir = FUSEOpcode(rawValue: 27)
    public static let readdir = FUSEOpcode(rawValue: 28)
    public static let releasedir = FUSEOpcode(rawValue: 29)
    public static let fsyncdir = FUSEOpcode(rawValue: 30)
    public static let getlk = FUSEOpcode(rawValue: 31)
    public static let setlk = FUSEOpcode(rawValue: 32)
    public static let setlkw = FUSEOpcode(rawValue: 33)
    public static let access = FUSEOpcode(rawValue: 34)
    public static let create = FUSEOpcode(rawValue: 35)
    public static let interrupt = FUSEOpcode(rawValue: 36)
    public static let bmap = FUSEOpcode(rawValue: 37)
    public static let destroy = FUSEOpcode(rawValue: 38)
    public static let ioctl = FUSEOpcode(rawValue: 39)
    public static let poll = FUSEOpcode(rawValue: 40)
    public static let notifyReply = FUSEOpcode(rawValue: 41)
    public static let batchForget = FUSEOpcode(rawValue: 42)
    public static let fallocate = FUSEOpcode(rawValue: 43)
    public static let readdirplus = FUSEOpcode(rawValue: 44)
    public static let rename2 = FUSEOpcode(rawValue: 45)
    public static let lseek = FUSEOpcode(rawValue: 46)
    public static let copyFileRange = FUSEOpcode(rawValue: 47)
    public static let setupMapping = FUSEOpcode(rawValue: 48)
    public static let removeMapping = FUSEOpcode(rawValue: 49)
    public static let syncfs = FUSEOpcode(rawValue: 50)
    public static let tmpfile = FUSEOpcode(rawValue: 51)

    private static let names: [UInt32: String] = [
        1: "LOOKUP", 2: "FORGET", 3: "GETATTR", 4: "SETATTR", 5: "READLINK", 6: "SYMLINK", 8: "MKNOD",
        9: "MKDIR", 10: "UNLINK", 11: "RMDIR", 12: "RENAME", 13: "LINK", 14: "OPEN", 15: "READ", 16: "WRITE",
        17: "STATFS", 18: "RELEASE", 20: "FSYNC", 21: "SETXATTR", 22: "GETXATTR", 23: "LISTXATTR",
        24: "REMOVEXATTR", 25: "FLUSH", 26: "INIT", 27: "OPENDIR", 28: "READDIR", 29: "RELEASEDIR",
        30: "FSYNCDIR", 31: "GETLK", 32: "SETLK", 33: "SETLKW", 34: "ACCESS", 35: "CREATE", 36: "INTERRUPT",
        37: "BMAP", 38: "DESTROY", 39: "IOCTL", 40: "POLL", 41: "NOTIFY_REPLY", 42: "BATCH_FORGET",
        43: "FALLOCATE", 44: "READDIRPLUS", 45: "RENAME2", 46: "LSEEK", 47: "COPY_FILE_RANGE",
        48: "SETUPMAPPING", 49: "REMOVEMAPPING", 50: "SYNCFS", 51: "TMPFILE",
    ]

    public var description: String { Self.names[self.rawValue] ?? "OPCODE(\(self.rawValue))" }
}
