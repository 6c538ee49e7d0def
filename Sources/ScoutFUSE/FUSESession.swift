import CFuseKernel
import Glibc
import Logging
import Synchronization

/// Protocol constants.
public enum FUSEProtocol {
    /// The node id of the root directory.
    public static let rootNodeID: UInt64 = 1
    /// The protocol major version spoken (7).
    public static let major: UInt32 = 7
    /// The highest protocol minor version spoken (the headers' 38).
    public static let minor: UInt32 = 38
    /// The oldest kernel protocol minor version accepted.
    public static let oldestMinor: UInt32 = 23
}

/// A FUSE session: reader threads that serve a filesystem over a `/dev/fuse` connection, speaking the kernel's
/// protocol directly (no libfuse).
///
/// Design note (not in the original, which is a kernel module; choices vs libfuse and `fuser`):
/// - Requests are read by a small number of threads (``FUSEConfiguration/readerThreads``, default 1) into one
///   reusable page-aligned buffer per thread and served synchronously on that thread; replies are written with one
///   `write`/`writev`. No task, no allocation and no copy per request on the common paths (names and write data are
///   views into the buffer; READ data is produced in place in the reply buffer). fuse-notes measured libfuse's
///   thread-per-request loop at 7–35× slower on two cores.
/// - A request that will block declares it (``RequestContext/willBlock()``, implied by `waitForInterrupt` and
///   `onInterrupt`); the session then starts a spare reader if none is idle, so FUSE_INTERRUPT keeps being read.
///   Spares exit once another reader is idle. This is libfuse's "start a worker when none is idle", limited to
///   requests that say they block.
/// - FUSE_INTERRUPT is tracked per request (see `InterruptTable`); interrupts that arrive before their target is
///   registered are kept pending, then answered `EAGAIN` so the kernel resends them (as libfuse does).
/// - DESTROY (sent by fuseblk on a clean unmount, which waits for the reply) calls
///   ``FileSystemOperations/destroy()`` and marks the end clean. `ENODEV` without DESTROY, or `ECONNABORTED`, is an
///   unclean end (forced unmount, abort, plain-fuse unmount).
/// - POSIX/BSD locks are not negotiated (the kernel keeps them locally); GETLK/SETLK/SETLKW, BMAP, POLL, SYNCFS
///   and DAX mapping opcodes get `ENOSYS`, as do unknown opcodes. RENAME_WHITEOUT gets `EINVAL`.
///
/// The session owns the device descriptor and closes it after the last reader exits.
public final class FUSESession<FS: FileSystemOperations>: Sendable {
    /// The filesystem served.
    public let filesystem: FS
    let core: SessionCore

    /// Makes a session over an open `/dev/fuse` descriptor (already mounted, see ``FUSEMount``). Takes ownership
    /// of `deviceFD`.
    public init(
        deviceFD: Int32, filesystem: FS, configuration: FUSEConfiguration = FUSEConfiguration(),
        logger: Logger = Logger(label: "scoutfs.fuse")
    ) {
        var configuration = configuration
        configuration.readerThreads = max(1, configuration.readerThreads)
        configuration.maxReaderThreads = max(configuration.readerThreads, configuration.maxReaderThreads)
        configuration.maxWrite = max(4096, configuration.maxWrite)
        configuration.maxPages = max(1, configuration.maxPages)
        self.filesystem = filesystem
        self.core = SessionCore(fd: deviceFD, configuration: configuration, logger: logger)
    }

    /// The notifier: invalidations the filesystem may send from any thread.
    public var notifier: FUSENotifier { FUSENotifier(core: self.core) }

    /// The negotiated connection, once INIT was answered.
    public var connection: FUSEConnectionInfo? { self.core.connectionInfo }

    /// Requests read so far.
    public var requestCount: UInt64 { self.core.requests.load(ordering: .relaxed) }

    /// Reader threads running now.
    public var readerThreadCount: Int { self.core.readerCount }

    /// Starts the reader threads and returns. The first request the kernel sends is INIT.
    public func start() throws(FUSEError) {
        guard self.core.markStarted() else { throw FUSEError(EALREADY) }
        let core = self.core
        // weak: the core must not keep the session alive; a running reader thread does.
        core.spawnReader = { [weak self] in
            guard let self else { return EINVAL }
            return Threads.spawn(name: "fuse-reader") { self.readerLoop() }
        }
        for _ in 0..<core.configuration.readerThreads {
            let rc = core.addReader()
            if rc != 0 { throw FUSEError(rc) }
        }
    }

    /// Waits until INIT was answered (returns the connection), the session ended, or `timeout` passed (nil).
    public func waitForInitialization(timeout: Duration) -> FUSEConnectionInfo? {
        self.core.waitForConnection(timeout: timeout)
    }

    /// Waits until every reader has exited (after an unmount or abort) and returns how the session ended.
    public func wait() -> FUSESessionEnd {
        self.core.waitForEnd(timeout: nil)!
    }

    /// Like ``wait()``, giving up after `timeout` (nil = still running).
    public func wait(timeout: Duration) -> FUSESessionEnd? {
        self.core.waitForEnd(timeout: timeout)
    }

    /// ``start()`` then ``wait()``.
    public func run() throws(FUSEError) -> FUSESessionEnd {
        try self.start()
        return self.wait()
    }

    private func readerLoop() {
        let core = self.core
        let config = core.configuration
        let buffers = ThreadBuffers(
            maxWrite: Int(config.maxWrite), maxData: max(Int(config.maxWrite), Int(config.maxPages) * 4096))
        let reply = ReplyWriter(fd: core.fd, buffers: buffers, core: core)
        while true {
            core.idleReaders.add(1, ordering: .relaxed)
            let n = Glibc.read(core.fd, buffers.readStart, buffers.readLength)
            let e = errno
            core.idleReaders.subtract(1, ordering: .relaxed)
            if n <= 0 {
                if n < 0 && (e == EINTR || e == EAGAIN || e == ENOENT) { continue }
                core.connectionEnded(n == 0 ? ENODEV : e)
                core.readerExited()
                return
            }
            core.requests.add(1, ordering: .relaxed)
            self.handle(UnsafeRawBufferPointer(start: buffers.readStart, count: n), reply: reply)
            if core.ending.load(ordering: .acquiring) {
                core.readerExited()
                return
            }
            // A surplus spare leaves (shouldRetire already gave up its thread slot).
            if core.shouldRetire() { return }
        }
    }
}
