import CFuseKernel
import Glibc
import Logging
import Synchronization

/// How a FUSE session ended.
public struct FUSESessionEnd: Hashable, Sendable, CustomStringConvertible {
    /// Why the readers stopped.
    public enum Reason: Hashable, Sendable {
        /// DESTROY was answered, then the connection closed: a clean unmount (fuseblk).
        case destroyed
        /// The device read `ENODEV` without a DESTROY: `umount -f`, a plain-`fuse` unmount, or an abort without
        /// ABORT_ERROR. Treat as a crash.
        case disconnected
        /// The device read `ECONNABORTED`: the connection was aborted through fusectl.
        case aborted
        /// Reading the device failed with this errno.
        case failed(Int32)
    }

    /// Why the session ended.
    public var reason: Reason
    /// Whether DESTROY was received and answered.
    public var destroySeen: Bool
    /// Requests read from the device.
    public var requests: UInt64

    /// A clean end: DESTROY was seen (the unmount waited for the filesystem's farewell).
    public var isClean: Bool { self.destroySeen }

    public var description: String {
        "FUSE session end: \(self.reason), destroy \(self.destroySeen ? "seen" : "not seen"), \(self.requests) requests"
    }
}

/// The state of a session that does not depend on the filesystem type: the device, reader-thread accounting,
/// interrupts, INIT result and the end.
///
/// `@unchecked Sendable`: fields marked "guarded" are accessed only with `lock` held; the rest are immutable,
/// atomic, or (`spawnReader`) written once before any reader starts.
final class SessionCore: @unchecked Sendable {
    let fd: Int32
    let configuration: FUSEConfiguration
    let logger: Logger
    let interrupts = InterruptTable()
    let idleReaders = Atomic<Int>(0)
    let requests = Atomic<UInt64>(0)
    /// Set once INIT was answered successfully.
    let initialized = Atomic<Bool>(false)
    /// Set once the connection ended (or INIT failed for good): readers leave after their current request.
    let ending = Atomic<Bool>(false)
    let lock = ConditionLock()

    // guarded by lock
    private var threadCount = 0
    private var started = false
    private var finished = false
    private var endErrno: Int32?
    private var destroySeen = false
    private var connection: FUSEConnectionInfo?
    private var fdClosed = false
    /// Notifications being written now; the device is closed only when none is (its number could be reused).
    private var notifying = 0
    private var closePending = false

    /// Starts one reader thread; set by the session before `start`.
    var spawnReader: (@Sendable () -> Int32)?

    init(fd: Int32, configuration: FUSEConfiguration, logger: Logger) {
        self.fd = fd
        self.configuration = configuration
        self.logger = logger
    }

    deinit {
        if !self.fdClosed { close(self.fd) }
    }

    func markStarted() -> Bool {
        self.lock.locked {
            if self.started { return false }
            self.started = true
            return true
        }
    }

    /// Reserves a thread slot and starts a reader in it. Returns 0 or the pthread error.
    func addReader() -> Int32 {
        let ok: Bool = self.lock.locked {
            guard !self.finished, self.endErrno == nil else { return false }
            self.threadCount += 1
            return true
        }
        guard ok, let spawn = self.spawnReader else { return EINVAL }
        let rc = spawn()
        if rc != 0 { self.readerExited() }
        return rc
    }

    /// A reader thread left its loop.
    func readerExited() {
        let last: Bool = self.lock.locked {
            self.threadCount -= 1
            return self.threadCount == 0 && self.endErrno != nil && !self.fdClosed
        }
        guard last else { return }
        self.interrupts.endAll()
        self.lock.locked {
            if self.notifying > 0 {
                self.closePending = true
            } else if !self.fdClosed {
                close(self.fd)
                self.fdClosed = true
            }
            self.finished = true
            self.lock.broadcast()
        }
    }

    /// Runs `body` with the device descriptor for a notification, or returns nil once the session is over.
    func withDeviceForNotification<R>(_ body: (Int32) -> R) -> R? {
        let ok: Bool = self.lock.locked {
            guard !self.fdClosed, !self.closePending, self.endErrno == nil else { return false }
            self.notifying += 1
            return true
        }
        guard ok else { return nil }
        let r = body(self.fd)
        self.lock.locked {
            self.notifying -= 1
            if self.notifying == 0 && self.closePending && !self.fdClosed {
                close(self.fd)
                self.fdClosed = true
            }
        }
        return r
    }

    /// A request is about to block: make sure another reader is waiting on the device.
    func willBlock() {
        if self.idleReaders.load(ordering: .relaxed) > 0 { return }
        let spawn: Bool = self.lock.locked {
            guard !self.finished, self.endErrno == nil,
                self.threadCount < self.configuration.maxReaderThreads
            else { return false }
            self.threadCount += 1
            return true
        }
        guard spawn, let spawnReader = self.spawnReader else { return }
        let rc = spawnReader()
        if rc != 0 {
            self.logger.warning("cannot start a spare FUSE reader thread", metadata: ["errno": "\(rc)"])
            self.readerExited()
        }
    }

    /// Whether the calling reader, having just finished a request, should exit because it is a surplus spare.
    /// If so its thread slot is released here (the reader must then not call ``readerExited()``).
    func shouldRetire() -> Bool {
        guard self.idleReaders.load(ordering: .relaxed) > 0 else { return false }
        return self.lock.locked {
            if self.threadCount > max(1, self.configuration.readerThreads) {
                self.threadCount -= 1
                return true
            }
            return false
        }
    }

    /// The device reported the end of the connection (`ENODEV`, `ECONNABORTED`, or another errno).
    func connectionEnded(_ errno: Int32) {
        let first: Bool = self.lock.locked {
            if self.endErrno != nil { return false }
            self.endErrno = errno
            self.lock.broadcast()
            return true
        }
        self.ending.store(true, ordering: .releasing)
        if first {
            self.logger.debug("FUSE connection ended", metadata: ["errno": "\(errno)"])
            self.interrupts.endAll()
        }
    }

    func markDestroyed() {
        self.lock.locked { self.destroySeen = true }
    }

    func setConnection(_ info: FUSEConnectionInfo) {
        self.lock.locked {
            self.connection = info
            self.lock.broadcast()
        }
        self.initialized.store(true, ordering: .releasing)
    }

    var connectionInfo: FUSEConnectionInfo? { self.lock.locked { self.connection } }

    var readerCount: Int { self.lock.locked { self.threadCount } }

    func waitForConnection(timeout: Duration) -> FUSEConnectionInfo? {
        let deadline = ConditionLock.deadline(after: timeout)
        return self.lock.locked {
            _ = self.lock.wait(until: deadline) { self.connection != nil || self.endErrno != nil }
            return self.connection
        }
    }

    private func endValue() -> FUSESessionEnd {
        let reason: FUSESessionEnd.Reason
        switch self.endErrno ?? ENODEV {
        case ENODEV: reason = self.destroySeen ? .destroyed : .disconnected
        case ECONNABORTED: reason = .aborted
        case let e: reason = .failed(e)
        }
        return FUSESessionEnd(reason: reason, destroySeen: self.destroySeen, requests: self.requests.load(ordering: .relaxed))
    }

    /// Waits until every reader has exited, or the timeout passes (nil = forever).
    func waitForEnd(timeout: Duration?) -> FUSESessionEnd? {
        let deadline = timeout.map { ConditionLock.deadline(after: $0) }
        return self.lock.locked {
            guard self.lock.wait(until: deadline, { self.finished }) else { return nil }
            return self.endValue()
        }
    }
}
