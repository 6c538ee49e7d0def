import Dispatch
#if canImport(Glibc)
import Glibc
#endif
public import Logging
import NIOCore
import NIOPosix
public import ScoutBlockIO
import ScoutFormat
public import ScoutQuorum
import Synchronization

/// One quorum member at work: the shell around ``QuorumStateMachine``.
///
/// An actor pinned to its own single-thread NIO event loop (its `unownedExecutor` is the loop's
/// executor), so heartbeats never wait for a busy cooperative pool (lesson 5). It owns the UDP
/// socket bound to our slot's address, the one timer, and the quorum blocks: it reads every
/// slot's block and writes only its own. It feeds the machine datagrams, timer expiries and
/// server reports, and carries out the machine's actions in order; block writes are synced
/// before the next action, so terms and elections are on disk before any message needing them
/// goes out. The server is started and stopped through a ``QuorumServerDelegate`` whose calls
/// only request the work and return, so heartbeats go on while a server starts (bb3db7e2).
/// Nothing in the election depends on the cooperative thread pool.
///
/// Design note, what the shell adds to the machine:
/// - Datagrams arrive on the loop before the timer runs in the same loop iteration (NIO
///   handles I/O events before due tasks, and reads up to 256 datagrams a time), so a
///   heartbeat that arrived while the thread was slow is handled before the timeout that would
///   start an election (e18ea245, a896984f).
/// - Invalid datagrams are counted and dropped (`quorum_recv_invalid`); sends are best effort.
/// - Block writes happen on the loop thread, as the original's worker did its block I/O.
/// - A block read or write error, or a BEGIN event that is not ours (two mounts on one slot),
///   stops the service with ``QuorumStatus/failure`` set; a running server is asked to stop.
///   A failed server start does not stop it (e4dca8dd).
/// - Heartbeat gaps are measured and reported in ``QuorumCounters`` (7b657678).
public actor ScoutQuorumService {
    struct Shared: Sendable {
        var status: QuorumStatus
        var counters = QuorumCounters()
        var error: QuorumServiceError?
    }

    /// The configuration the service was made with.
    public nonisolated let configuration: QuorumServiceConfiguration
    /// Reads and writes the quorum blocks.
    public nonisolated let store: QuorumBlockStore
    nonisolated let group: MultiThreadedEventLoopGroup
    nonisolated let loop: any EventLoop
    nonisolated let delegate: any QuorumServerDelegate
    nonisolated let logger: Logger
    nonisolated let shared: Mutex<Shared>
    nonisolated let members: SlotSet

    private var machine: QuorumStateMachine
    private var channel: (any Channel)?
    private var timer: Scheduled<Void>?
    private var timerGeneration = 0
    private var pendingFences: [QuorumFenceRequest] = []
    private var addresses: [Int: SocketAddress] = [:]
    private var started = false
    private var finished = false
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    private var endWaiters: [CheckedContinuation<Void, Never>] = []
    private var lastHeartbeat: (slot: Int, at: MonotonicInstant)?
    private var pendingHeartbeatTimeoutMs: Int?

    // The event loop lives as long as the actor, so that calls made after the election stopped
    // still find an executor; it is released (asynchronously) when the service is.
    deinit {
        group.shutdownGracefully(queue: .global()) { _ in }
    }

    /// Runs every method of the actor on the service's own event-loop thread.
    public nonisolated var unownedExecutor: UnownedSerialExecutor {
        loop.executor.asUnownedSerialExecutor()
    }

    /// A member that has not started yet; ``run()`` starts it.
    ///
    /// - Parameters:
    ///   - device: the metadata device, shared with the other members.
    ///   - delegate: starts and stops this mount's server.
    ///   - logger: where notes and errors go (metadata: slot, rid).
    /// - Throws: ``QuorumServiceError/Code/configuration`` for invalid slots or options.
    public init(
        configuration: QuorumServiceConfiguration, device: any BlockDevice, delegate: any QuorumServerDelegate, logger: Logger
    ) throws(QuorumServiceError) {
        let machineConfiguration = try configuration.validated()
        self.configuration = configuration
        self.store = QuorumBlockStore(device: device, fsid: configuration.fsid)
        self.delegate = delegate
        var logger = logger
        logger[metadataKey: "quorum_slot"] = "\(configuration.slot)"
        logger[metadataKey: "rid"] = "\(String(configuration.rid, radix: 16))"
        self.logger = logger
        self.members = machineConfiguration.members
        self.machine = QuorumStateMachine(configuration: machineConfiguration)
        self.group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        self.loop = group.next()
        let m = machine
        self.shared = Mutex(
            Shared(
                status: QuorumStatus(
                    slot: configuration.slot, rid: configuration.rid, lifecycle: m.lifecycle, role: m.role, term: m.term,
                    leader: m.leader, vote: m.vote, server: m.server, heartbeatTimeoutMs: m.heartbeatTimeoutMs,
                    deadline: m.deadline, roleSince: Self.now(), electedAt: nil, lastSent: [:], lastReceived: [:], failure: nil)))
    }

    // MARK: - public interface

    /// The election's current state, from any thread.
    public nonisolated var status: QuorumStatus { shared.withLock { $0.status } }

    /// The error that stopped the service, if one did, from any thread.
    public nonisolated var error: QuorumServiceError? { shared.withLock { $0.error } }

    /// The counters, from any thread.
    public nonisolated var counters: QuorumCounters { shared.withLock { $0.counters } }

    /// Starts the member on its own thread: binds the slot's UDP address, reads every quorum
    /// block and starts the election. Returns at once; a failure to start stops the service
    /// (see ``QuorumStatus/failure``, and ``run()`` throws it). Calling it again does nothing.
    public nonisolated func start() {
        loop.execute { [self] in
            self.assumeIsolated { $0.begin() }
        }
    }

    /// Starts the member (if ``start()`` was not called) and returns when it has stopped, after
    /// ``shutdown()``, ``forceShutdown()`` or a fatal error.
    ///
    /// - Throws: the error that stopped the service, if any.
    public nonisolated func run() async throws(QuorumServiceError) {
        start()
        await waitUntilStopped()
        if let error = shared.withLock({ $0.error }) {
            throw error
        }
    }

    private func waitUntilStopped() async {
        guard !finished else { return }
        await withCheckedContinuation { endWaiters.append($0) }
    }

    /// Leaves the quorum: stops our server and waits for it (heartbeats go on meanwhile),
    /// resigns if leading, writes STOP and END. Returns when the election has stopped.
    public func shutdown() async {
        await stop(.shutdown)
    }

    /// Forced unmount: stops at once, sending and writing nothing (15de0c21); a running server
    /// is asked to stop.
    public func forceShutdown() async {
        await stop(.forcedShutdown)
    }

    /// Changes `quorum_heartbeat_timeout_ms` while running (before the start it is applied as
    /// the election starts; after the stop it is ignored).
    public func setHeartbeatTimeout(milliseconds: Int) throws(QuorumServiceError) {
        do {
            try QuorumMachineConfiguration.validateHeartbeatTimeout(milliseconds)
        } catch {
            throw QuorumServiceError(.configuration, error.description)
        }
        if machine.lifecycle == .notStarted {
            pendingHeartbeatTimeoutMs = milliseconds
        } else {
            apply(.setHeartbeatTimeout(milliseconds: milliseconds))
        }
    }

    // MARK: - inputs

    /// Now on the clock of the service's timers and status times (`CLOCK_MONOTONIC`, as NIO's
    /// deadlines).
    public static func now() -> MonotonicInstant {
        MonotonicInstant(nanoseconds: NIODeadline.now().uptimeNanoseconds)
    }

    private func begin() {
        guard !started, !finished else { return }
        started = true
        for slot in members {
            let addr = configuration.quorumConfig.slots[slot]
            do {
                addresses[slot] = try SocketAddress(ipAddress: addr.ipv4String, port: Int(addr.port))
            } catch {
                fail(QuorumServiceError(.configuration, "quorum slot #\(slot) address \(addr): \(error)"))
                return
            }
        }
        // our own block must be readable before anything else
        do {
            _ = try store.read(slot: configuration.slot)
        } catch {
            fail(error)
            return
        }
        DatagramBootstrap(group: loop)
            // no SO_REUSEADDR: a second live mount on this slot must fail to bind
            .channelOption(.maxMessagesPerRead, value: 256)
            .channelOption(.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 2048))
            .channelInitializer { [self] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(QuorumDatagramHandler(service: self))
                }
            }
            .bind(to: addresses[configuration.slot]!)
            .whenComplete { [self] result in
                self.assumeIsolated { $0.bound(result) }
            }
    }

    private func bound(_ result: Result<any Channel, any Error>) {
        let ours = configuration.quorumConfig.slots[configuration.slot]
        switch result {
        case .failure(let error):
            fail(QuorumServiceError(.bind, "quorum failed to bind udp socket to \(ours): \(error)"))
        case .success(let bound):
            guard !finished else {
                // shut down while binding
                bound.close(promise: nil)
                return
            }
            channel = bound
            logger.info("quorum service starting", metadata: ["address": "\(ours)"])
            apply(.start(store.readAll(members)))
            if let ms = pendingHeartbeatTimeoutMs {
                pendingHeartbeatTimeoutMs = nil
                apply(.setHeartbeatTimeout(milliseconds: ms))
            }
        }
    }

    /// A datagram arrived (on the loop thread).
    func datagram(_ buffer: ByteBuffer) {
        guard !finished else { return }
        let decoded: Result<QuorumMessage, QuorumMessageError> = buffer.withUnsafeReadableBytes { raw in
            Result { () throws(QuorumMessageError) -> QuorumMessage in
                try QuorumMessage.decode(raw, fsid: configuration.fsid, members: members)
            }
        }
        let message: QuorumMessage
        switch decoded {
        case .success(let m): message = m
        case .failure(let error):
            shared.withLock { $0.counters.receivedInvalid += 1 }
            logger.debug("dropped invalid quorum datagram", metadata: ["error": "\(error)"])
            return
        }
        let now = Self.now()
        shared.withLock { s in
            s.counters.received += 1
            switch message.type {
            case .heartbeat: s.counters.receivedHeartbeats += 1
            case .vote: s.counters.receivedVotes += 1
            case .resignation: s.counters.receivedResignations += 1
            case .requestVote: break
            }
            s.status.lastReceived[message.fromSlot] = QuorumMessageRecord(type: message.type, term: message.term, at: now)
        }
        if message.type == .heartbeat { heartbeatSeen(slot: message.fromSlot, at: now) }
        apply(.received(message), now: now)
    }

    private func timerFired(_ generation: Int) {
        guard generation == timerGeneration, !finished else { return }
        timer = nil
        apply(.receiveTimedOut)
    }

    /// A report from the server (any thread): queued on the loop in call order.
    nonisolated func serverReported(_ status: QuorumServerStatus, term: UInt64) {
        loop.execute { [self] in
            self.assumeIsolated { $0.apply(.serverStatus(status, term: term)) }
        }
    }

    private func stop(_ input: QuorumInput) async {
        if !finished {
            apply(input)
        }
        if !finished {
            await withCheckedContinuation { stopWaiters.append($0) }
        }
    }

    // MARK: - actions

    private func apply(_ input: QuorumInput, now: MonotonicInstant = ScoutQuorumService.now()) {
        guard !finished else { return }
        let before = (machine.role, machine.term)
        let transition = machine.handle(input, now: now)
        if transition.ignored != nil { shared.withLock { $0.counters.ignoredInputs += 1 } }
        var queue = transition.actions[...]
        while let action = queue.popFirst() {
            guard !finished else { return }
            switch action {
            case .writeEvent(let event, let term):
                do {
                    try store.update(
                        slot: configuration.slot, event: event, term: term, rid: configuration.rid, checkRid: event != .begin,
                        time: Self.wallClock())
                    shared.withLock { $0.counters.blockWrites += 1 }
                } catch {
                    fail(error)
                    return
                }
            case .send(let type, let term, let to):
                send(type, term: term, to: [to])
            case .broadcast(let type, let term):
                send(type, term: term, to: Array(members).filter { $0 != configuration.slot })
            case .readQuorumBlocks:
                let answer = machine.handle(.quorumBlocksRead(store.readAll(members)), now: Self.now())
                queue.append(contentsOf: answer.actions)
            case .requestFence(let request):
                shared.withLock { $0.counters.fenceRequests += 1 }
                logger.info("fencing previous leader", metadata: ["fence_rid": "\(String(request.rid, radix: 16))", "fence_slot": "\(request.slot)", "fence_term": "\(request.term)"])
                pendingFences.append(request)
            case .startServer(let term):
                logger.info("starting server", metadata: ["term": "\(term)"])
                let fencing = pendingFences
                pendingFences = []
                delegate.startServer(term: term, fencing: fencing, reporter: QuorumServerReporter(term: term, service: self))
            case .stopServer(let term):
                logger.info("stopping server", metadata: ["term": "\(term)"])
                delegate.stopServer(term: term)
            case .note(let note):
                noted(note, now: now)
            case .wakeAt(let deadline):
                arm(deadline)
            case .stopped:
                finish()
            }
        }
        publish(roleChanged: before != (machine.role, machine.term), now: now)
    }

    private func send(_ type: QuorumMessageType, term: UInt64, to slots: [Int]) {
        guard let channel, !slots.isEmpty else { return }
        let bytes = QuorumMessage(fsid: configuration.fsid, term: term, type: type, from: UInt8(configuration.slot)).encoded()
        let now = Self.now()
        for slot in slots {
            guard let address = addresses[slot] else { continue }
            let envelope = AddressedEnvelope(remoteAddress: address, data: channel.allocator.buffer(bytes: bytes))
            channel.write(envelope).whenFailure { [self] _ in
                self.shared.withLock { $0.counters.sendFailed += 1 }
            }
        }
        channel.flush()
        shared.withLock { s in
            s.counters.sent += slots.count
            switch type {
            case .heartbeat: s.counters.sentHeartbeats += 1
            case .requestVote: s.counters.sentVoteRequests += 1
            case .vote: s.counters.sentVotes += 1
            case .resignation: s.counters.sentResignations += 1
            }
            for slot in slots { s.status.lastSent[slot] = QuorumMessageRecord(type: type, term: term, at: now) }
        }
        if type == .heartbeat && machine.isLeader { heartbeatSeen(slot: configuration.slot, at: now) }
    }

    private func arm(_ deadline: MonotonicInstant) {
        timer?.cancel()
        timerGeneration += 1
        let generation = timerGeneration
        timer = loop.scheduleTask(deadline: .uptimeNanoseconds(deadline.nanoseconds)) { [self] in
            self.assumeIsolated { $0.timerFired(generation) }
        }
    }

    private func noted(_ note: QuorumNote, now: MonotonicInstant) {
        switch note {
        case .candidate(let term):
            shared.withLock { $0.counters.candidacies += 1 }
            logger.debug("standing for election", metadata: ["term": "\(term)"])
        case .elected(let term):
            shared.withLock {
                $0.counters.elected += 1
                $0.status.electedAt = now
            }
            logger.info("elected leader", metadata: ["term": "\(term)"])
        case .resigned(let term):
            shared.withLock { $0.counters.resignations += 1 }
            logger.info("server stopped, resigned leadership", metadata: ["term": "\(term)"])
        case .electionDeferredServerRunning:
            shared.withLock { $0.counters.electionsDeferred += 1 }
        case .duplicateVote:
            shared.withLock { $0.counters.duplicateVotes += 1 }
            logger.debug("\(note)")
        case .leaderSawGreaterTerm, .newerLeaderOnDisk:
            logger.warning("\(note)")
        case .messageFromOwnSlot, .sameTermLeader, .fenceCheckFailed, .termExhausted:
            logger.error("\(note)")
        }
    }

    /// Heartbeat gaps: between heartbeats from one leader, or between our own sends.
    private func heartbeatSeen(slot: Int, at now: MonotonicInstant) {
        defer { lastHeartbeat = (slot, now) }
        guard let last = lastHeartbeat, last.slot == slot else { return }
        let gapMs = now.nanoseconds(since: last.at) / 1_000_000
        let seconds = Int(gapMs / 1000)
        shared.withLock { s in
            s.counters.heartbeatDelayMaxMs = max(s.counters.heartbeatDelayMaxMs, gapMs)
            if seconds >= 1 && seconds < 60 { s.counters.heartbeatDelaySeconds[seconds] += 1 }
        }
        if seconds >= 3 {
            logger.info("long quorum heartbeat delay", metadata: ["seconds": "\(seconds)", "from": "\(slot)"])
        }
    }

    private func publish(roleChanged: Bool, now: MonotonicInstant) {
        let m = machine
        shared.withLock { s in
            s.status.lifecycle = m.lifecycle
            s.status.role = m.role
            s.status.term = m.term
            s.status.leader = m.leader
            s.status.vote = m.vote
            s.status.server = m.server
            s.status.heartbeatTimeoutMs = m.heartbeatTimeoutMs
            s.status.deadline = m.deadline
            if roleChanged { s.status.roleSince = now }
        }
    }

    private func fail(_ error: QuorumServiceError) {
        logger.error(
            "quorum service saw an error and stops; this mount no longer takes part in quorum and should be remounted",
            metadata: ["error": "\(error)"])
        shared.withLock {
            $0.status.failure = error.description
            $0.error = error
        }
        if case .running(let term, _, false) = machine.server {
            delegate.stopServer(term: term)
        }
        finish()
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        timer?.cancel()
        timer = nil
        channel?.close(promise: nil)
        channel = nil
        publish(roleChanged: false, now: Self.now())
        shared.withLock { $0.status.lifecycle = .stopped }
        for waiter in stopWaiters + endWaiters { waiter.resume() }
        stopWaiters = []
        endWaiters = []
        logger.info("quorum service stopped")
    }

    private static func wallClock() -> Timespec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timespec(sec: UInt64(ts.tv_sec), nsec: UInt32(ts.tv_nsec))
    }
}

/// Hands every datagram to the service on the loop thread.
final class QuorumDatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    let service: ScoutQuorumService

    init(service: ScoutQuorumService) {
        self.service = service
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data).data
        service.assumeIsolated { $0.datagram(buffer) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // UDP errors (an ICMP unreachable reported on the socket) do not stop the election
    }
}
