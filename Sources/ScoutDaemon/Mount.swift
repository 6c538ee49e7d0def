import Glibc
import Logging
import NIOCore
import NIOPosix
import ScoutBlockIO
public import ScoutFS
import ScoutFUSE
import ScoutFormat
import ScoutNet
import ScoutProtocol
import ScoutQuorum
public import ScoutQuorumService
import ScoutServer
import ScoutStorage
import Synchronization
import SystemPackage

/// A failed mount: message and errno.
public struct MountError: Error, CustomStringConvertible, Sendable {
    public var errno: Int32
    public var message: String
    public init(_ errno: Int32, _ message: String) {
        self.errno = errno
        self.message = message
    }
    public var description: String { message }
}

/// One mount of a volume: the server (when this mount holds the quorum slot), the client,
/// the FUSE session, the commit timer and the control socket.
///
/// Lifecycle. `run` returns when the FUSE session ends. A clean unmount (fuseblk's DESTROY)
/// commits and says farewell before the kernel's umount returns; SIGTERM and SIGINT unmount
/// the mountpoint, which is the same path. Anything else (`umount -f`, a killed daemon, an
/// aborted connection) ends without committing, like a crash.
///
/// Cluster. A mount given `quorum_slot_nr` runs a quorum member (``ScoutQuorumService``, on
/// its own thread) whose elected leader runs the server (``ServerRunner``). Every mount's
/// client finds the server in the quorum blocks at each (re)connect and re-sends its requests
/// to a new server. A clean unmount says farewell, then leaves the quorum; a forced one leaves
/// it without a word.
public final class Mount: @unchecked Sendable {
    public let options: MountOptions
    public let dataPath: String
    public let mountpoint: String
    let logger: Logger
    public private(set) var volume: Volume?
    /// This mount's random id (its greeting, quorum block, registry entry and log file carry it).
    public let rid: UInt64
    /// The quorum member, when `quorum_slot_nr` is set.
    public private(set) var quorum: ScoutQuorumService?
    var runner: ServerRunner?
    var control: ControlServer?
    /// The options as changed while mounted.
    let liveOptionValues: Mutex<MountOptions>

    public init(
        options: MountOptions, dataPath: String, mountpoint: String, logger: Logger,
        rid: UInt64 = .random(in: 1...UInt64.max)
    ) {
        self.rid = rid
        self.options = options
        self.dataPath = dataPath
        self.mountpoint = mountpoint
        self.logger = logger
        self.liveOptionValues = Mutex(options)
    }

    /// glibc's allocator, left to its defaults, kept most of a busy mount's resident memory:
    /// every transaction copies and frees thousands of 64 KiB metadata blocks, and the heap
    /// they were carved from stayed fragmented at its high-water mark (a create run of 2·10⁵
    /// files: 803 MiB resident, where massif counted 80 MiB of live heap at 2·10⁴). Blocks of
    /// 64 KiB and up are now mapped and unmapped on their own: 307 MiB for the same run, at
    /// about the same CPU time, but each block read pays its page faults. The arenas are
    /// capped at two as well (alone that changed nothing: 807 MiB). docs/performance.md.
    static func boundMallocRetention() {
        // mallopt(3) is not in the Glibc module (malloc.h): found by name; its parameters
        // M_MMAP_THRESHOLD (-3) and M_ARENA_MAX (-8) are glibc's ABI
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
        let mallopt = unsafeBitCast(sym, to: Mallopt.self)
        _ = mallopt(-3, 64 << 10)
        _ = mallopt(-8, 2)
    }

    /// Mounts, calls `ready` once the filesystem is usable, and serves until unmounted.
    /// Returns the exit status: 0 after a clean unmount.
    public func run(ready: () -> Void) throws(MountError) -> Int32 {
        guard let metaPath = options.metadevPath else { throw MountError(22, "metadev_path is required") }
        Self.boundMallocRetention()
        // devices and supers
        let metaDev: FileBlockDevice
        do {
            metaDev = try FileBlockDevice(path: metaPath, writable: true)
        } catch {
            throw MountError(error.rawValue, "cannot open metadev_path \(metaPath): \(error)")
        }
        let sb: SuperBlock
        do {
            sb = try MetaDevice.readSuper(from: metaDev)
        } catch {
            throw MountError(22, "\(metaPath) does not hold a scoutfs meta super block: \(error)")
        }
        let dataSB: SuperBlock
        do {
            let dataDev = try FileBlockDevice(path: dataPath, writable: false)
            dataSB = try MetaDevice.readSuper(from: dataDev)
        } catch {
            throw MountError(22, "\(dataPath) does not hold a scoutfs data super block: \(error)")
        }
        guard dataSB.uuid == sb.uuid, dataSB.hdr.fsid == sb.hdr.fsid else {
            throw MountError(22, "data device \(dataPath) belongs to another filesystem than meta device \(metaPath)")
        }
        guard sb.fmtVers >= Format.versionMin && sb.fmtVers <= Format.versionMax else {
            throw MountError(22, "unsupported format version \(sb.fmtVers)")
        }
        let configured = SlotSet(configuredIn: sb.qconf)
        guard !configured.isEmpty else { throw MountError(22, "the volume has no quorum slots") }
        if let slot = options.quorumSlotNr, !configured.contains(slot) {
            throw MountError(22, "quorum_slot_nr=\(slot) is not a configured quorum slot (configured: \(configured.map(String.init).joined(separator: ", ")))")
        }
        let md = MetaDevice(device: metaDev, fsid: sb.hdr.fsid, cacheBytes: options.blockCacheMiB << 20)
        let rid = self.rid
        var logM = logger
        logM[metadataKey: "rid"] = "\(String(rid, radix: 16))"
        logM[metadataKey: "fsid"] = "\(String(sb.hdr.fsid, radix: 16))"
        let log = logM

        // This daemon is on record from the start (pid and start time; the device once it
        // is mounted), so that if it dies at any point the next server on this host can fence
        // its rid without an agent (LocalFence).
        let registry = MountRegistry()
        let localFence = LocalFence(registry: registry)
        let earlySocket = "\(ControlSocket.directory)/rid-\(rid.paddedHex).sock"
        try? registry.register(MountRegistry.Entry(
            rid: rid, pid: getpid(), pidStart: MountRegistry.startTime(pid: getpid()) ?? 0,
            mountpoint: MountRegistry.canonical(mountpoint), dataDevice: MountRegistry.canonical(dataPath),
            controlSocket: earlySocket))
        let startup = StartupGate()
        var mountedOK = false
        defer { if !mountedOK { registry.unregister(rid: rid) } }

        // the quorum member and its server, when this mount holds a slot
        if let slot = options.quorumSlotNr {
            let r = ServerRunner(
                device: metaDev, fsid: sb.hdr.fsid, config: sb.qconf, slot: slot,
                keepalive: .milliseconds(options.tcpKeepaliveTimeoutMs),
                logMergeWaitTimeout: .milliseconds(options.logMergeWaitTimeoutMs), logger: log,
                localFence: Self.localFenceEnabled ? localFence : nil, dataPath: dataPath,
                onFenceFailure: { message in startup.fail(MountError(ETIMEDOUT, message)) })
            let q = try Self.startQuorum(
                QuorumServiceConfiguration(
                    fsid: sb.hdr.fsid, slot: slot, rid: rid, quorumConfig: sb.qconf,
                    heartbeatTimeoutMs: options.quorumHeartbeatTimeoutMs),
                device: metaDev, runner: r, logger: log)
            runner = r
            quorum = q
        }
        let quorum = self.quorum

        // The control socket serves from the start, under a name of its own until the mount
        // exists: a member elected while mounting must show its fence requests to the agent
        // before the mount can finish (its own client waits for its server).
        let runner = self.runner
        let sources = ControlSources(
            rid: rid,
            fences: { runner?.fences },
            quorumStatus: {
                quorum.map { QuorumStatusText.format(status: $0.status, counters: $0.counters, now: ScoutQuorumService.now()) }
            },
            mountOptions: { [unowned self] in self.liveOptions() },
            setMountOption: { [unowned self] (name: String, value: String) throws(MountError) in
                try self.setLiveOption(name, value)
            },
            serverCounters: { (runner?.service?.mergeCounters.named ?? []) + (runner?.service?.omapCounters.named ?? []) },
            trigger: { name in
                guard let service = runner?.service else { return false }
                if name == "srch_force_log_rotate" {
                    service.srchForceRotate = true
                } else {
                    service.forceFinalize = true
                }
                return true
            })
        let early = try? ControlServer.start(path: earlySocket, volume: nil, sources: sources, logger: log)
        defer {
            if !mountedOK {
                early?.stop()
                // leaving is bounded as for an unmount; past that the member stops at once
                if let quorum,
                    (try? Self.blocking(seconds: Self.quorumLeaveSeconds, { await quorum.shutdown() })) == nil
                {
                    log.error("leaving the quorum took over \(Int(Self.quorumLeaveSeconds)) s: stopping it at once")
                    Self.blockingVoid { await quorum.forceShutdown() }
                }
            }
        }

        // the client: it finds the server in the quorum blocks, at every (re)connect
        var greeting = NetGreeting(fsid: sb.hdr.fsid, fmtVers: sb.fmtVers, rid: rid)
        if options.quorumSlotNr != nil { greeting.flags |= NetGreeting.flagQuorum }
        var ccfg = NetClient.Configuration(greeting: greeting)
        ccfg.keepaliveTimeout = .milliseconds(options.tcpKeepaliveTimeoutMs)
        let store = QuorumBlockStore(device: metaDev, fsid: sb.hdr.fsid)
        let qconf = sb.qconf
        ccfg.farewellProcessed = { !Self.isMountedClient(rid: rid, device: md) }
        let client = NetClient(configuration: ccfg, logger: log) {
            guard let found = try? store.currentServer(config: qconf) else { return nil }
            return try? SocketAddress(found.address)
        }
        let link = ClientLink(client: client)
        client.start(handler: link)
        // a failed start (an unanswered fence) ends the wait for the server below
        startup.onFailure { Task { await client.shutdown() } }
        Self.watchStartup(
            startup, rid: rid, store: store, config: qconf, client: client, localFence: localFence, logger: log)
        let vol: Volume
        do {
            vol = try Volume(meta: md, dataPath: dataPath, fmtVers: sb.fmtVers, link: link)
            link.volume = vol
            try vol.deleteOrphans()
        } catch {
            if let failure = startup.failure { throw failure }
            throw MountError(error.errno, "cannot open the volume: \(error)")
        }
        // from here on the mount goes ahead: a later fence failure is the server's to report
        guard startup.beginMounting() else { throw startup.failure ?? MountError(EIO, "mount failed") }
        volume = vol
        for (what, direct) in [("metadata", metaDev.direct), ("data", vol.dataDeviceIsDirect)] where !direct {
            log.warning("the \(what) device's filesystem refused O_DIRECT: it is read through this host's page cache, so only mounts on this host see its writes coherently")
        }

        // FUSE
        var mopts = FUSEMountOptions()
        mopts.subtype = "scoutfs"
        mopts.readOnly = options.readOnly
        // The device number comes from the source block device, never from a stat of the
        // mountpoint: a system call into our own mount can wait for this very process, and a
        // thread of a killed daemon stuck in one keeps the daemon (and its mount) alive for ever.
        var device: dev_t = 0
        let (source, mounted, fd) = try FuseblkSource.mount(
            dataPath: dataPath, fsid: sb.hdr.fsid, at: mountpoint, options: mopts, logger: log
        ) { dev in
            device = dev
            do {
                try registry.register(
                    rid: rid, mountpoint: mountpoint, device: dev, dataDevice: dataPath,
                    controlSocket: ControlSocket.path(device: dev))
            } catch {
                log.error("mount registry: \(error)")
            }
        }
        defer { source.finished() }
        // Ends this mount when nothing serves it: abort the connection first, so that the
        // detach (whose last reference may send DESTROY from this thread) never waits for us.
        let abandon = {
            if device != 0 {
                try? FUSEMount.abortConnection(
                    id: FUSEMount.connectionID(major: ControlSocket.major(device), minor: ControlSocket.minor(device)))
            }
            try? mounted.unmount(.detach)
        }
        vol.itemCacheLimit = options.itemCacheMiB << 20
        let fs = ScoutFileSystem(volume: vol, logger: log)
        fs.setMaxKernelNames(options.kernelDentries)
        fs.rid = rid
        var fcfg = FUSEConfiguration()
        fcfg.readerThreads = 2
        // readers of offline data each hold a thread while they wait (files with offline
        // blocks are opened for direct I/O, so every reader is a request of its own)
        fcfg.maxReaderThreads = 1024
        fcfg.readdirPlus = .off
        fcfg.posixACL = true
        // a read() after a lost lock asks GETATTR and drops pages whose mtime or size changed
        // (see ScoutFileSystem.NotifierBox.invalidate)
        fcfg.dataInvalidation = .automatic
        // setuid, setgid and security.capability are cleared here on write, truncate and
        // chown: the kernel then asks for no security.capability before every write (one
        // request per write(2) instead of two)
        fcfg.handleKillPrivV2 = true
        let session = FUSESession(deviceFD: fd, filesystem: fs, configuration: fcfg, logger: log)
        fs.attach(notifier: session.notifier)
        if let v = getenv("SCOUTFS_TEST_PAGE_INVAL_DELAY_MS").flatMap({ Int(String(cString: $0)) }), v > 0 {
            log.notice("page invalidations after a lost lock are delayed by \(v) ms (SCOUTFS_TEST_PAGE_INVAL_DELAY_MS)")
            fs.delayPageInvalidation(ms: min(v, 60_000))
        }
        let cleanUnmount = CleanFlag()
        let stop = CleanFlag()
        // Gives back everything another mount could need: the commit timer, the control socket
        // and registry entry, the quorum slot's UDP port and the server's listener. A clean
        // unmount does it before answering DESTROY, so `umount` returns only once a new mount
        // can take the slot; every other end does it when the session ends. Idempotent.
        let release: @Sendable (_ clean: Bool) -> Void = { [unowned self] clean in
            stop.set()
            self.control?.stop()
            registry.unregister(rid: rid)
            if let quorum {
                // a clean unmount leaves the quorum (stopping our server, resigning); anything
                // else is a forced unmount: quorum sends and writes nothing more (15de0c21)
                let left = clean && (try? Self.blocking(seconds: Self.quorumLeaveSeconds) { await quorum.shutdown() }) != nil
                if !left {
                    if clean { log.error("leaving the quorum took over \(Int(Self.quorumLeaveSeconds)) s: stopping it at once") }
                    Self.blockingVoid { await quorum.forceShutdown() }
                }
            }
        }
        fs.onDestroy = {
            do {
                try vol.unmount()
                cleanUnmount.set()
            } catch {
                log.error("final commit or farewell failed: \(error)")
            }
            release(cleanUnmount.isSet)
        }
        do {
            try session.start()
        } catch {
            abandon()
            throw MountError(error.errno, "FUSE session: \(error)")
        }
        guard session.waitForInitialization(timeout: .seconds(30)) != nil else {
            abandon()
            throw MountError(5, "the kernel did not initialise the FUSE connection")
        }
        // The root inode read in this process (its lock taken), as the first stat of the
        // mountpoint would: mounts then answer a stat of their root from the lock they hold,
        // also while a new server is still starting. Never a stat of our own mountpoint.
        _ = try? vol.getattr(Format.rootIno)
        if device != 0 {
            fs.deviceNumber = UInt64(device)
            var withNames = sources
            withNames.kernelNames = { [fs] in fs.kernelNameStats }
            do {
                control = try ControlServer.start(device: device, volume: vol, sources: withNames, logger: log)
            } catch {
                log.error("control socket: \(error)")
            }
        } else {
            log.error("the fuseblk source's device number is unknown: no control socket")
        }
        early?.stop()
        Self.startCommitTimer(vol, stop: stop)
        Self.startOrphanScan(vol, stop: stop, delayMs: options.orphanScanDelayMs)
        Self.startLogMerger(vol, stop: stop, logger: log)
        Self.watchSignals(mountpoint)
        log.info("mounted \(dataPath) on \(mountpoint)")
        mountedOK = true
        ready()

        let end = session.wait()
        release(cleanUnmount.isSet)
        if cleanUnmount.isSet {
            log.info("unmounted cleanly")
            return 0
        }
        log.error("session ended without a clean unmount (\(end)): nothing after the last commit was written")
        return 1
    }

    /// Starts the quorum member and waits (at most 10 s) until it has bound its slot's address
    /// and read the quorum blocks, so a slot already used by a live mount on this host, or an
    /// unreadable quorum block, fails the mount with a clear error.
    static func startQuorum(
        _ configuration: QuorumServiceConfiguration, device: any BlockDevice, runner: ServerRunner, logger: Logger
    ) throws(MountError) -> ScoutQuorumService {
        let slot = configuration.slot
        let addr = configuration.quorumConfig.slots[slot]
        let q: ScoutQuorumService
        do {
            q = try ScoutQuorumService(configuration: configuration, device: device, delegate: runner, logger: logger)
        } catch {
            throw MountError(EINVAL, "quorum_slot_nr=\(slot): \(error.message)")
        }
        q.start()
        for _ in 0..<500 {
            let status = q.status
            if let error = q.error {
                let inUse = error.code == .bind || error.code == .slotInUse
                throw MountError(
                    inUse ? EADDRINUSE : EIO,
                    inUse
                        ? "quorum_slot_nr=\(slot) is in use: cannot take \(addr) (\(error.message)); is another mount using this slot?"
                        : "quorum_slot_nr=\(slot): \(error.message)")
            }
            if status.lifecycle != .notStarted { return q }
            usleep(20_000)
        }
        Self.blockingVoid { await q.forceShutdown() }
        throw MountError(ETIMEDOUT, "quorum_slot_nr=\(slot): the quorum service did not start")
    }

    /// Whether the volume on disk still lists `rid` as a mounted client (false once the server
    /// has processed its farewell; read straight from the device, as the original does).
    static func isMountedClient(rid: UInt64, device: MetaDevice) -> Bool {
        (try? MountedClients.contains(rid: rid, device: device)) ?? true
    }

    // MARK: threads

    static func startCommitTimer(_ vol: Volume, stop: CleanFlag) {
        ClientLink.onThread {
            while !stop.isSet {
                usleep(500_000)
                if !stop.isSet { vol.commitIfDue() }
            }
        }
    }

    /// Polls the server for log merge work every `interval` seconds, and at once again after
    /// doing some (the original's merge worker polls every 5 s); the first poll is at once, so
    /// a mount finds the trees finalized by earlier unmounts. `SCOUTFS_LOG_MERGE=off` in the
    /// daemon's environment holds this mount's worker off (benchmarks compare with and without).
    static func startLogMerger(_ vol: Volume, stop: CleanFlag, interval: Double = 5, logger: Logger) {
        if let v = getenv("SCOUTFS_LOG_MERGE"), String(cString: v) == "off" {
            logger.notice("log merge worker held off (SCOUTFS_LOG_MERGE=off)")
            return
        }
        ClientLink.onThread {
            var busy = true
            while !stop.isSet {
                if !busy {
                    var waited = 0.0
                    while waited < interval && !stop.isSet {
                        usleep(250_000)
                        waited += 0.25
                    }
                }
                if stop.isSet { break }
                do throws(FSError) {
                    busy = try vol.mergeLogsOnce()
                } catch {
                    logger.warning("log merge: \(error)")
                    busy = false
                }
                // srch compaction shares the worker (the original's runs every 10 s by itself)
                if stop.isSet { break }
                do throws(FSError) {
                    if try vol.srchCompactOnce() { busy = true }
                } catch {
                    logger.warning("srch compaction: \(error)")
                }
            }
        }
    }

    /// SIGTERM and SIGINT unmount the mountpoint (the clean path).
    ///
    /// The umount2(2) runs in a child process, never in the daemon: fuseblk's unmount sends
    /// DESTROY and waits for its answer uninterruptibly, and that answer comes from this
    /// daemon. A daemon thread waiting there would, once the daemon is killed, keep the
    /// process (and so the connection's descriptor) from ever going away: the daemon would sit
    /// in state D and the mount would hang until aborted through fusectl. A child waiting
    /// there is released by the connection's end when the daemon dies.
    static func watchSignals(_ mountpoint: String) {
        let blocked = blockTerminationSignals()
        ClientLink.onThread {
            var s = blocked
            var sig: Int32 = 0
            while sigwait(&s, &sig) == 0 {
                unmountInChild(mountpoint)
                return
            }
        }
    }

    /// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts from now on
    /// (``watchSignals(_:)`` takes them with sigwait). Call it first thing in the daemon,
    /// before any thread exists: a process-directed signal goes to any thread that does not
    /// block it, and its default action would end the daemon like a crash. Returns the set.
    @discardableResult
    public static func blockTerminationSignals() -> sigset_t {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        return set
    }

    /// Unmounts `path` from a child process (retrying for 5 s while busy) and reaps it; see
    /// ``watchSignals(_:)``. Only async-signal-safe calls run in the child.
    static func unmountInChild(_ path: String) {
        let cpath = strdup(path)
        defer { free(cpath) }
        let pid = fork()
        if pid == 0 {
            for _ in 0..<50 {
                if umount2(cpath, 0) == 0 || errno != EBUSY { _exit(0) }
                var ts = timespec(tv_sec: 0, tv_nsec: 100_000_000)
                nanosleep(&ts, nil)
            }
            _exit(1)
        }
        guard pid > 0 else { return }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    }

    /// Fails the mount while it is still starting when, for `bound` seconds, no server has
    /// answered it and the quorum blocks name an earlier leader that is not on this host and
    /// was never stopped or fenced: no server can start until that mount is fenced, and no
    /// agent did it. The wait never ends silently: one message names the rid, its address,
    /// the reason and what to run. (A leader on this host fails its own start sooner, when
    /// its fence request goes unanswered: see ``ServerRunner``.)
    static func watchStartup(
        _ startup: StartupGate, rid: UInt64, store: QuorumBlockStore, config: QuorumConfig, client: NetClient,
        localFence: LocalFence, logger: Logger, bound: Double = startupFenceBoundSeconds
    ) {
        ClientLink.onThread {
            var since: Double?
            while startup.isStarting {
                usleep(1_000_000)
                guard startup.isStarting else { return }
                guard client.serverTerm == 0 else {
                    since = nil
                    continue
                }
                var blocks = QuorumBlockSet()
                for slot in SlotSet(configuredIn: config) { blocks[slot] = try? store.read(slot: slot) }
                // the oldest first: a leader that failed to fence it may be on record too
                let stuck = blocks.fenceTargets(term: blocks.greatestTerm &+ 1, rid: rid)
                    .sorted { $0.term < $1.term }
                    .first { localFence.verdict(rid: $0.rid) == .notHere }
                guard let stuck else {
                    since = nil
                    continue
                }
                let now = monotonicSeconds()
                let start = since ?? now
                since = start
                guard now - start >= bound else { continue }
                let address = config.slots[stuck.slot].ipv4String
                let message = "no server answered for \(Int(bound)) s and the quorum blocks show rid \(stuck.rid.paddedHex) "
                    + "at \(address) (slot \(stuck.slot), term \(stuck.term)) as a leader that was never stopped nor fenced "
                    + "(\(FenceReason.quorumBlockLeader.rawValue)); no server starts until it is fenced: \(FenceRequest.whatToRun)"
                logger.error("\(message)")
                startup.fail(MountError(ETIMEDOUT, message))
                return
            }
        }
    }

    /// Whether this daemon's servers fence provably gone mounts of this host themselves
    /// (``LocalFence``): yes unless `SCOUTFS_LOCAL_FENCE=0`, which sends every fence request to
    /// the fencing agent (for tests and demos of an agent with all members on one host).
    static var localFenceEnabled: Bool {
        getenv("SCOUTFS_LOCAL_FENCE").map { String(cString: $0) } != "0"
    }

    /// How long a starting mount waits for a server while an earlier leader that cannot be
    /// fenced here stays unfenced.
    static let startupFenceBoundSeconds = 60.0

    /// Runs async work from this synchronous thread and waits for it.
    static func blocking<R: Sendable>(_ body: @escaping @Sendable () async throws -> R) throws -> R {
        try blocking(seconds: .infinity, body)!
    }

    /// Runs async work from this synchronous thread and waits at most `seconds` for it; nil
    /// when it did not finish in time (it goes on running).
    static func blocking<R: Sendable>(seconds: Double, _ body: @escaping @Sendable () async throws -> R) throws -> R? {
        let done = PThreadLock()
        nonisolated(unsafe) var result: Result<R, any Error>?
        Task {
            let r: Result<R, any Error>
            do { r = .success(try await body()) } catch { r = .failure(error) }
            done.withLock {
                result = r
                done.broadcast()
            }
        }
        let deadline = monotonicSeconds() + seconds
        return try done.withLock {
            while result == nil && monotonicSeconds() < deadline { done.wait(seconds: 1) }
            return try result?.get()
        }
    }

    static func blockingVoid(_ body: @escaping @Sendable () async -> Void) {
        _ = try? blocking { await body() }
    }

    /// How long a clean unmount waits for the quorum member to leave (its server stopping
    /// included) before it stops it at once.
    static let quorumLeaveSeconds = 30.0
}

/// Whether a mount is still starting (waiting for its server), and why it failed if it did.
/// A failure counts only while starting; once the mount goes ahead (``beginMounting()``), a
/// failure is the server's to log and the election's to handle.
final class StartupGate: Sendable {
    private enum State { case starting, mounting, failed(MountError) }
    private let state = Mutex<State>(.starting)
    private let failureActions = Mutex<[@Sendable () -> Void]>([])

    /// Still waiting for the server.
    var isStarting: Bool { state.withLock { if case .starting = $0 { true } else { false } } }

    /// Why the start failed, if it did.
    var failure: MountError? { state.withLock { if case .failed(let e) = $0 { e } else { nil } } }

    /// Runs `action` (on the failing thread) when the start fails.
    func onFailure(_ action: @escaping @Sendable () -> Void) {
        failureActions.withLock { $0.append(action) }
        if failure != nil { action() }
    }

    /// Fails the start with `error` (the first failure wins); false once the mount goes ahead.
    @discardableResult
    func fail(_ error: MountError) -> Bool {
        let won = state.withLock { s -> Bool in
            guard case .starting = s else { return false }
            s = .failed(error)
            return true
        }
        if won { for action in failureActions.withLock({ $0 }) { action() } }
        return won
    }

    /// The mount goes ahead; false when the start failed first.
    func beginMounting() -> Bool {
        state.withLock { s in
            guard case .starting = s else { return false }
            s = .mounting
            return true
        }
    }
}

/// A flag set once, read from any thread.
final class CleanFlag: @unchecked Sendable {
    // Invariant: `value` is only touched with `lock` held.
    private let lock = PThreadLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
