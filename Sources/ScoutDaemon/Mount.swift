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
import ScoutServer
import ScoutStorage
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
/// Deviation (until the quorum service is wired in): the mount holding a quorum slot starts
/// the server on its slot's address at once, and every mount connects to the lowest
/// configured slot's address.
public final class Mount: @unchecked Sendable {
    public let options: MountOptions
    public let dataPath: String
    public let mountpoint: String
    let logger: Logger
    public private(set) var volume: Volume?
    var control: ControlServer?

    public init(options: MountOptions, dataPath: String, mountpoint: String, logger: Logger) {
        self.options = options
        self.dataPath = dataPath
        self.mountpoint = mountpoint
        self.logger = logger
    }

    static func address(_ a: InetAddr) -> String {
        "\(a.ipv4 >> 24).\((a.ipv4 >> 16) & 255).\((a.ipv4 >> 8) & 255).\(a.ipv4 & 255)"
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
        let configured = sb.qconf.slots.enumerated().filter { $0.element.family != 0 }
        guard let serverSlot = configured.first else { throw MountError(22, "the volume has no quorum slots") }
        if let slot = options.quorumSlotNr, !configured.contains(where: { $0.offset == slot }) {
            throw MountError(22, "quorum_slot_nr=\(slot) is not a configured quorum slot")
        }
        let md = MetaDevice(device: metaDev, fsid: sb.hdr.fsid)
        let rid = UInt64.random(in: 1...UInt64.max)
        var logM = logger
        logM[metadataKey: "rid"] = "\(String(rid, radix: 16))"
        logM[metadataKey: "fsid"] = "\(String(sb.hdr.fsid, radix: 16))"
        let log = logM

        // the server, when this mount holds the slot the clients connect to
        var netServer: NetServer?
        if options.quorumSlotNr == serverSlot.offset {
            let core: ServerCore
            do {
                core = ServerCore(txn: try MetaTransaction(device: MetaDevice(device: metaDev, fsid: sb.hdr.fsid)))
            } catch {
                throw MountError(5, "server cannot open the volume: \(error)")
            }
            let service = ServerService(core: core, term: 1, logger: log)
            var cfg = NetServer.Configuration(host: Self.address(serverSlot.element), port: Int(serverSlot.element.port))
            cfg.keepaliveTimeout = .milliseconds(options.tcpKeepaliveTimeoutMs)
            let scfg = cfg
            do {
                let s = try Self.blocking { try await NetServer.start(configuration: scfg, handler: service, logger: log) }
                service.server = s
                netServer = s
            } catch {
                throw MountError(98, "server cannot listen on \(Self.address(serverSlot.element)):\(serverSlot.element.port): \(error)")
            }
        }

        // the client
        var greeting = NetGreeting(fsid: sb.hdr.fsid, fmtVers: sb.fmtVers, rid: rid)
        if options.quorumSlotNr != nil { greeting.flags |= NetGreeting.flagQuorum }
        var ccfg = NetClient.Configuration(greeting: greeting)
        ccfg.keepaliveTimeout = .milliseconds(options.tcpKeepaliveTimeoutMs)
        let serverAddr = serverSlot.element
        let client = NetClient(configuration: ccfg, logger: log) {
            try? SocketAddress(serverAddr)
        }
        let link = ClientLink(client: client)
        client.start(handler: link)
        let vol: Volume
        do {
            vol = try Volume(meta: md, dataPath: dataPath, fmtVers: sb.fmtVers, link: link)
            link.volume = vol
            try vol.deleteOrphans()
        } catch {
            throw MountError(error.errno, "mount failed: \(error)")
        }
        volume = vol

        // FUSE
        let loop: LoopDevice
        do {
            loop = try LoopDevice.attach(backingPath: dataPath)
        } catch {
            throw MountError(error.errno, "cannot attach a loop device to \(dataPath): \(error)")
        }
        var mopts = FUSEMountOptions()
        mopts.subtype = "scoutfs"
        mopts.readOnly = options.readOnly
        let mounted: FUSEMount
        let fd: Int32
        do {
            (mounted, fd) = try FUSEMount.mount(at: mountpoint, source: .block(devicePath: loop.path), options: mopts)
        } catch {
            throw MountError(error.errno, "\(error)")
        }
        loop.releaseHold()
        let fs = ScoutFileSystem(volume: vol, logger: log)
        var fcfg = FUSEConfiguration()
        fcfg.readerThreads = 2
        fcfg.readdirPlus = .off
        fcfg.posixACL = false
        let session = FUSESession(deviceFD: fd, filesystem: fs, configuration: fcfg, logger: log)
        fs.attach(notifier: session.notifier)
        let cleanUnmount = CleanFlag()
        fs.onDestroy = {
            do {
                try vol.unmount()
                cleanUnmount.set()
            } catch {
                log.error("final commit or farewell failed: \(error)")
            }
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
            control = try? ControlServer.start(device: st.st_dev, volume: vol, logger: log)
        }
        let stop = CleanFlag()
        Self.startCommitTimer(vol, stop: stop)
        Self.watchSignals(mountpoint)
        log.info("mounted \(dataPath) on \(mountpoint)")
        ready()

        let end = session.wait()
        stop.set()
        control?.stop()
        if let s = netServer { Self.blockingVoid { await s.shutdown() } }
        if cleanUnmount.isSet {
            log.info("unmounted cleanly")
            return 0
        }
        log.error("session ended without a clean unmount (\(end)): nothing after the last commit was written")
        return 1
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
        return try done.withLock {
            while result == nil { done.wait(seconds: 1) }
            return try result!.get()
        }
    }

    static func blockingVoid(_ body: @escaping @Sendable () async -> Void) {
        _ = try? blocking { await body() }
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
