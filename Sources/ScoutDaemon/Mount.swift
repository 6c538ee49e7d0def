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

    /// Mounts, calls `ready` once the filesystem is usable, and serves until unmounted.
    /// Returns the exit status: 0 after a clean unmount.
    public func run(ready: () -> Void) throws(MountError) -> Int32 {
        guard let metaPath = options.metadevPath else { throw MountError(22, "metadev_path is required") }
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
        let md = MetaDevice(device: metaDev, fsid: sb.hdr.fsid)
        let rid = self.rid
        var logM = logger
        logM[metadataKey: "rid"] = "\(String(rid, radix: 16))"
        logM[metadataKey: "fsid"] = "\(String(sb.hdr.fsid, radix: 16))"
        let log = logM

        // the quorum member and its server, when this mount holds a slot
        if let slot = options.quorumSlotNr {
            let r = ServerRunner(
                device: metaDev, fsid: sb.hdr.fsid, config: sb.qconf, slot: slot,
                keepalive: .milliseconds(options.tcpKeepaliveTimeoutMs),
                logMergeWaitTimeout: .milliseconds(options.logMergeWaitTimeoutMs), logger: log)
            let q = try Self.startQuorum(
                QuorumServiceConfiguration(
                    fsid: sb.hdr.fsid, slot: slot, rid: rid, quorumConfig: sb.qconf,
                    heartbeatTimeoutMs: options.quorumHeartbeatTimeoutMs),
                device: metaDev, runner: r, logger: log)
            runner = r
            quorum = q
        }
        let quorum = self.quorum
        var mountedOK = false

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
                guard name == "log_merge_force_finalize_ours", let service = runner?.service else { return false }
                service.forceFinalize = true
                return true
            })
        let registry = MountRegistry()
        let early = try? ControlServer.start(
            path: "\(ControlSocket.directory)/rid-\(rid.paddedHex).sock", volume: nil, sources: sources, logger: log)
        defer {
            if !mountedOK {
                early?.stop()
                if let quorum { Self.blockingVoid { await quorum.shutdown() } }
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
        let vol: Volume
        do {
            vol = try Volume(meta: md, dataPath: dataPath, fmtVers: sb.fmtVers, link: link)
            link.volume = vol
            try vol.deleteOrphans()
        } catch {
            throw MountError(error.errno, "cannot open the volume: \(error)")
        }
        volume = vol
        for (what, direct) in [("metadata", metaDev.direct), ("data", vol.dataDeviceIsDirect)] where !direct {
            log.warning("the \(what) device's filesystem refused O_DIRECT: it is read through this host's page cache, so only mounts on this host see its writes coherently")
        }

        // FUSE
        var mopts = FUSEMountOptions()
        mopts.subtype = "scoutfs"
        mopts.readOnly = options.readOnly
        let (source, mounted, fd) = try FuseblkSource.mount(
            dataPath: dataPath, fsid: sb.hdr.fsid, at: mountpoint, options: mopts, logger: log)
        defer { source.finished() }
        let fs = ScoutFileSystem(volume: vol, logger: log)
        fs.rid = rid
        var fcfg = FUSEConfiguration()
        fcfg.readerThreads = 2
        // readers of offline data each hold a thread while they wait (files with offline
        // blocks are opened for direct I/O, so every reader is a request of its own)
        fcfg.maxReaderThreads = 1024
        fcfg.readdirPlus = .off
        fcfg.posixACL = true
        let session = FUSESession(deviceFD: fd, filesystem: fs, configuration: fcfg, logger: log)
        fs.attach(notifier: session.notifier)
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
            try? mounted.unmount(.detach)
            throw MountError(error.errno, "FUSE session: \(error)")
        }
        guard session.waitForInitialization(timeout: .seconds(30)) != nil else {
            try? mounted.unmount(.detach)
            throw MountError(5, "the kernel did not initialise the FUSE connection")
        }
        var st = stat()
        if stat(mountpoint, &st) == 0 {
            fs.deviceNumber = UInt64(st.st_dev)
            do {
                let c = try ControlServer.start(device: st.st_dev, volume: vol, sources: sources, logger: log)
                control = c
                try registry.register(
                    rid: rid, mountpoint: mountpoint, device: st.st_dev, dataDevice: dataPath, controlSocket: c.path)
            } catch {
                log.error("control socket: \(error)")
            }
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
    /// doing some (the original's merge worker polls every 5 s).
    static func startLogMerger(_ vol: Volume, stop: CleanFlag, interval: Double = 5, logger: Logger) {
        ClientLink.onThread {
            var busy = false
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
            }
        }
    }

    /// SIGTERM and SIGINT unmount the mountpoint (the clean path).
    static func watchSignals(_ mountpoint: String) {
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_BLOCK, &set, nil)
        let blocked = set
        ClientLink.onThread {
            var s = blocked
            var sig: Int32 = 0
            while sigwait(&s, &sig) == 0 {
                for _ in 0..<50 {
                    if umount2(mountpoint, 0) == 0 || errno != EBUSY { break }
                    usleep(100_000)
                }
                return
            }
        }
    }

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

/// A flag set once, read from any thread.
final class CleanFlag: @unchecked Sendable {
    // Invariant: `value` is only touched with `lock` held.
    private let lock = PThreadLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}
