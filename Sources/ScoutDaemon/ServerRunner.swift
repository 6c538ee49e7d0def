import Logging
import NIOCore
import ScoutBlockIO
import ScoutFS
import ScoutFormat
import ScoutNet
import ScoutQuorum
import ScoutQuorumService
import ScoutServer
import ScoutStorage
import Synchronization

/// Runs this member's server for each term the election hands it (the original's server
/// start/stop work, decoupled from the quorum loop, §3.5).
///
/// The quorum service calls ``startServer(term:fencing:reporter:)`` and ``stopServer(term:)`` on
/// its own thread; both only queue a command and return, so heartbeats never wait for a server
/// (bb3db7e2). One task takes the commands in order. A start runs as a child task:
/// 1. report `starting`; ask for every earlier leader the quorum blocks name to be fenced
///    (reason `quorum_block_leader`, addressed to its slot's IP) and wait for all of them at
///    most 15 s (`SCOUTFS_QUORUM_FENCE_TO_MS`); an errored or timed-out fence fails the start;
/// 2. open the volume as it is on disk now, build the server core, listen on the slot's address;
/// 3. report `up`.
/// Every instance's fence requests are first offered to ``LocalFence`` (a rid whose daemon
/// ran on this host and is provably gone is fenced at once, with the reason logged); a fence
/// that fails or goes unanswered is reported through `onFenceFailure` with the one message for
/// the operator, which fails the mount while it is still starting (docs/cluster.md, "Crash
/// recovery without an agent").
/// A failed start reports `down` (quorum goes on, e4dca8dd). A stop cancels a start still in
/// progress, shuts the listener down and reports `stopping` then `down`. A server that must
/// stop on its own (an errored fence request) does the same through the same queue.
///
/// The fence requests of the running instance are readable through ``fences`` (for the control
/// socket's agent interface); they belong to that instance and go with it.
final class ServerRunner: QuorumServerDelegate, Sendable {
    enum Command: Sendable {
        case start(term: UInt64, fencing: [QuorumFenceRequest], reporter: QuorumServerReporter)
        case stop(term: UInt64)
        case failed(term: UInt64, why: String)
    }

    /// One server instance, for one term.
    final class Instance: Sendable {
        let term: UInt64
        let reporter: QuorumServerReporter
        let fences: FenceRequests
        // Invariant: `task` is only touched by the runner's command loop.
        nonisolated(unsafe) var task: Task<Void, Never>?
        let service = Mutex<ServerService?>(nil)

        init(term: UInt64, reporter: QuorumServerReporter, localFencer: FenceRequests.LocalFencer?) {
            self.term = term
            self.reporter = reporter
            self.fences = FenceRequests(localFencer: localFencer)
        }
    }

    let device: any BlockDevice
    let fsid: UInt64
    let config: QuorumConfig
    let slot: Int
    let keepalive: Duration
    let logger: Logger
    /// Fences, without an agent, mounts of this host whose daemon is provably gone.
    let localFence: LocalFence?
    /// Told, with the one message for the operator, when a fence request failed or went
    /// unanswered (the mount fails with it while it is still starting).
    let onFenceFailure: @Sendable (String) -> Void
    private let commands: AsyncStream<Command>.Continuation
    private let current = Mutex<Instance?>(nil)

    /// How long a GET_LOG_TREES waits for other mounts to finalize (`log_merge_wait_timeout_ms`).
    let logMergeWaitTimeout: Duration
    /// The data device this mount uses (RESIZE_DEVICES measures it).
    let dataPath: String?

    init(
        device: any BlockDevice, fsid: UInt64, config: QuorumConfig, slot: Int, keepalive: Duration,
        logMergeWaitTimeout: Duration = .milliseconds(500), logger: Logger,
        localFence: LocalFence? = nil, dataPath: String? = nil, onFenceFailure: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.logMergeWaitTimeout = logMergeWaitTimeout
        self.dataPath = dataPath
        self.device = device
        self.fsid = fsid
        self.config = config
        self.slot = slot
        self.keepalive = keepalive
        self.logger = logger
        self.localFence = localFence
        self.onFenceFailure = onFenceFailure
        let (stream, continuation) = AsyncStream.makeStream(of: Command.self)
        self.commands = continuation
        Task { [self] in
            for await command in stream { await self.handle(command) }
        }
    }

    deinit { commands.finish() }

    /// The local fencer handed to every instance's fence requests: it logs what it fenced.
    private var localFencer: FenceRequests.LocalFencer? {
        guard let localFence else { return nil }
        let logger = self.logger
        return { request in
            guard let why = localFence.fence(rid: request.rid) else { return nil }
            logger.notice(
                "fenced rid \(request.ridString) at \(request.ipv4String) (\(request.reason.rawValue)) on this host without an agent: \(why)")
            return why
        }
    }

    /// The fence requests of the server running now (nil when none is).
    var fences: FenceRequests? { current.withLock { $0?.fences } }

    /// The service of the server running now (nil when none is).
    var service: ServerService? { current.withLock { $0?.service.withLock { $0 } } }

    /// The term of the server running or starting now.
    var term: UInt64? { current.withLock { $0?.term } }

    func startServer(term: UInt64, fencing: [QuorumFenceRequest], reporter: QuorumServerReporter) {
        commands.yield(.start(term: term, fencing: fencing, reporter: reporter))
    }

    func stopServer(term: UInt64) {
        commands.yield(.stop(term: term))
    }

    // MARK: - the command loop

    private func handle(_ command: Command) async {
        switch command {
        case .start(let term, let fencing, let reporter):
            if let old = current.withLock({ $0 }) {
                // the election never starts a second server before the first is down; be safe
                await shutdown(old, why: "a new term \(term) started")
            }
            let instance = Instance(term: term, reporter: reporter, localFencer: localFencer)
            current.withLock { $0 = instance }
            reporter.report(.starting)
            instance.task = Task { [self] in await self.start(instance, fencing: fencing) }
        case .stop(let term):
            guard let instance = current.withLock({ $0 }), instance.term == term else { return }
            await shutdown(instance, why: "the election asked it to stop")
        case .failed(let term, let why):
            guard let instance = current.withLock({ $0 }), instance.term == term else { return }
            if let failed = instance.fences.list().first(where: { $0.error }) {
                logger.error("\(failed.failureMessage)")
                onFenceFailure(failed.failureMessage)
            }
            await shutdown(instance, why: why)
        }
    }

    private func shutdown(_ instance: Instance, why: String) async {
        instance.reporter.report(.stopping)
        instance.task?.cancel()
        await instance.task?.value
        // the service closes its listener too
        await instance.service.withLock({ $0 })?.stop()
        current.withLock { if $0 === instance { $0 = nil } }
        logger.info("server for term \(instance.term) stopped: \(why)")
        instance.reporter.report(.down)
    }

    /// Fences, opens and listens; reports `up`, or `down` (and forgets the instance) on failure.
    private func start(_ instance: Instance, fencing: [QuorumFenceRequest]) async {
        let term = instance.term
        func fail(_ why: String) {
            logger.error("server for term \(term) failed to start: \(why)")
            current.withLock { if $0 === instance { $0 = nil } }
            instance.reporter.report(.down)
        }
        if !fencing.isEmpty {
            for f in fencing {
                logger.notice("fencing earlier leader rid \(String(f.rid, radix: 16)) of slot \(f.slot) term \(f.term)")
                instance.fences.start(rid: f.rid, ipv4: config.slots[f.slot].ipv4, reason: .quorumBlockLeader)
            }
            let result = await instance.fences.wait(
                rids: fencing.map(\.rid), timeoutNs: UInt64(Format.quorumFenceTimeoutMs) * 1_000_000)
            switch result {
            case .fenced:
                break
            case .failed(let rid):
                if let r = instance.fences.request(rid: rid) { onFenceFailure(r.failureMessage) }
                return fail("fencing rid \(String(rid, radix: 16)) failed")
            case .timedOut(let pending):
                if Task.isCancelled { return }
                if let r = pending.first.flatMap({ instance.fences.request(rid: $0) }) {
                    let message = "no fencing agent answered the request to fence rid \(r.ridString) at \(r.ipv4String) "
                        + "(\(r.reason.rawValue)) within \(Format.quorumFenceTimeoutMs / 1000) s: \(FenceRequest.whatToRun)"
                    logger.error("\(message)")
                    onFenceFailure(message)
                }
                return fail("fencing \(pending.map { String($0, radix: 16) }) did not finish within \(Format.quorumFenceTimeoutMs) ms")
            }
        }
        if Task.isCancelled { return }

        let core: ServerCore
        do {
            core = ServerCore(txn: try MetaTransaction(device: MetaDevice(device: device, fsid: fsid)))
        } catch {
            return fail("cannot open the volume: \(error)")
        }
        // the service reclaims what the fences above (and its own) free, and stops itself
        // through the command queue when a fence fails
        let service = ServerService(
            core: core, term: term, fences: instance.fences, logger: logger,
            onFatal: { [weak self] why in self?.commands.yield(.failed(term: term, why: why)) })
        service.logMergeWaitTimeout = logMergeWaitTimeout
        if let dataPath {
            service.measureDataDevice = { try? FileBlockDevice.measure(path: dataPath) }
        }
        instance.service.withLock { $0 = service }
        let addr = config.slots[slot]
        var cfg = NetServer.Configuration(host: addr.ipv4String, port: Int(addr.port))
        cfg.keepaliveTimeout = keepalive
        do {
            _ = try await service.start(configuration: cfg)
        } catch {
            return fail("cannot listen on \(addr): \(error)")
        }
        if Task.isCancelled { return }  // the stop in progress shuts the listener down
        logger.notice("server for term \(term) up on \(addr)")
        instance.reporter.report(.up)
    }
}
