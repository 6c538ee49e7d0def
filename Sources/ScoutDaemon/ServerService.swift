import Glibc
public import Logging
public import NIOCore
import NIOPosix
import ScoutFS
public import ScoutFormat
public import ScoutNet
import ScoutBlockIO
import ScoutProtocol
import ScoutStorage
import SystemPackage
public import ScoutServer

/// The server of one elected term: the network face of `ServerCore` and the lock server, with
/// the recovery of the mounts the last server left behind and the reclaim of fenced mounts.
///
/// Lifecycle (the Mount's part): `init` (reads the volume: core seq, mounted clients), then
/// `start(configuration:)` (listens, arms the recovery timer, starts the reclaim worker), and
/// `stop()` when the term ends. `onFatal` reports that the server stopped itself (an errored
/// fence request, a failed reclaim): another member has to take over.
///
/// Requests run on `ServerCore` one at a time (every request ends in a commit). Lock requests
/// wait for their grant, which may need invalidation round trips to other mounts first.
///
/// Recovery (the original's `start_recovery`, `recov.c`, `lock_server.c`):
/// * Every rid in `mounted_clients` at start is pending in its greeting and its locks, and the
///   lock server grants nothing until none is pending. A pending mount's greeting finishes
///   the first part; if it greets with another server's term, it is sent LOCK_RECOVER from the
///   zero key and answers batches of at most 22 locks {key, mode, write_seq}, each next request
///   from after the last key, until an empty batch. The grants are recorded and the core seq
///   raised above every write seq. Farewell for a rid waits until its locks are recovered.
/// * Mounts still pending when `recoveryTimeout` (30 s) fires get a `.clientRecovery` fence
///   request, with their greeting's address or the one stored in their mounted_client item.
/// * A mount whose connection broke and did not come back within the NetServer's
///   `reconnectTimeout` gets a `.clientReconnect` fence request. Its grants stay (it may still
///   be writing) and conflicting requests wait until it is reclaimed. A rid without a
///   mounted_client item by then (its farewell was processed while it was away) is not fenced.
/// * The reclaim worker, every `reclaimInterval` (1 s) and again at once while it makes
///   progress, takes answered fence requests: an errored one stops the server (`onFatal`);
///   a fenced mount is forgotten by the network, its locks are dropped (waiters proceed), its
///   resources reclaimed (`ServerCore.reclaim`), its request removed, and its recovery ended.
///   That includes requests made by others in the same table (the quorum's
///   `.quorumBlockLeader` fences of earlier leaders): their rids are reclaimed the same way.
///
/// Deviations from the original:
/// * The greeting's mounted_client insert keeps an existing item (EEXIST) without a commit.
/// * A greeting that carries another server's term for a rid that has no mounted_client item
///   (reclaimed: it was fenced, or said farewell) is refused with ENOLINK unless it says
///   farewell; the original lets it in without an item. Rids reclaimed after fencing are
///   refused by this server whatever they send.
/// * The lock recovery runs as its own task after the greeting, not from response callbacks.
/// * Farewell: the original's farewell worker runs inline (`processFarewells`) whenever what
///   it decides on changes, instead of on a work queue; a disconnected client's queued
///   farewell stays queued (its answer waits in the rid's resend queue) where the original
///   drops it and relies on the client to send it again.
/// * OPEN_INO_MAP is answered with EIO when a mount does not answer in time (the original
///   waits until it is fenced); srch does not exist yet.
public final class ServerService: NetServerHandler, @unchecked Sendable {
    // Invariant: every `var` below is only touched with `mutex` held; `core` only with
    // `mutex` held.
    let mutex = PThreadLock()
    let core: ServerCore
    var locks: LockServerState
    var recovery: ClientRecovery
    var pendingGrants: [GrantKey: CheckedContinuation<Result<[UInt8], NetErrno>, Never>] = [:]
    /// FAREWELL requests waiting for their answer, in arrival order.
    var farewells: [(rid: UInt64, cont: CheckedContinuation<Result<[UInt8], NetErrno>, Never>)] = []
    /// The last peer address each rid greeted from.
    var peerAddresses: [UInt64: InetAddr] = [:]
    /// When mounts were last asked to commit for a mount short of data space.
    var lastDataSync: ContinuousClock.Instant?
    /// Rids this server fenced and reclaimed: refused from now on.
    var reclaimed: Set<UInt64> = []
    var stopping = false
    /// Requests that arrived while stopping, answered once the sockets are closed: only a
    /// few errnos cross the wire (ESHUTDOWN would reach the client as EINVAL and fail its
    /// unmount or operation), and an unanswered request is resent to the next server.
    var lateRequests: [CheckedContinuation<Result<[UInt8], NetErrno>, Never>] = []
    var socketsClosed = false
    var fatalReported = false
    /// Why the volume could not be read at init (the service never starts then).
    var openError: ServerError?
    var netServer: NetServer?
    var recoveryTimer: Task<Void, Never>?
    var reclaimWorker: Task<Void, Never>?
    /// A task is freeing merged log trees.
    var freeingMerged = false
    /// The next finalization decision finalizes every tree however small (the
    /// `log_merge_force_finalize_ours` trigger); cleared once a merge starts.
    public var forceFinalize: Bool {
        get { mutex.withLock { forceFinalizeFlag } }
        set { mutex.withLock { forceFinalizeFlag = newValue } }
    }
    var forceFinalizeFlag = false
    /// The next COMMIT_LOG_TREES rotates the mount's srch log file whatever its size (the
    /// `srch_force_log_rotate` trigger).
    public var srchForceRotate: Bool {
        get { mutex.withLock { core.srchForceRotate } }
        set { mutex.withLock { core.srchForceRotate = newValue } }
    }
    /// How long a GET_LOG_TREES that needs a merge waits for other mounts to finalize.
    public var logMergeWaitTimeout: Duration = .milliseconds(500)
    /// The data device's size in bytes now (RESIZE_DEVICES measures it for each request);
    /// nil when it cannot be measured. Set before `start`.
    public var measureDataDevice: @Sendable () -> UInt64? = { nil }
    /// How long an OPEN_INO_MAP fan-out waits for every other mount's map.
    public var omapTimeout: Duration = .seconds(10)
    var nextOmapRequestID: UInt64 = 0
    var omapCountersValue = OpenInoMapCounters()

    /// This server's term (from the election); greetings carry it back.
    public let term: UInt64
    /// Where this server asks for mounts to be fenced, and finds the answers.
    public let fences: FenceRequests
    /// How long mounts of the last server have to recover before they are fenced.
    public let recoveryTimeout: Duration
    /// How often the reclaim worker looks for answered fence requests when idle.
    public let reclaimInterval: Duration
    let logger: Logger
    let onFatal: @Sendable (String) -> Void

    struct GrantKey: Hashable {
        var rid: UInt64
        var key: Key
    }

    /// Prepares the server of `term` on an opened volume: raises the core seq above every
    /// logged item and marks every mounted client recovery-pending. Nothing runs until
    /// `start`; when the volume could not be read, `start` throws that error.
    ///
    /// - Parameters:
    ///   - fences: where fence requests go; a fencing agent answers them. Requests already in
    ///     it (earlier leaders) are reclaimed like the service's own once answered.
    ///   - recoveryTimeout: mounts of the last server still pending after this are fenced.
    ///   - reclaimInterval: how often the reclaim worker looks at the fence requests.
    ///   - onFatal: called once, with the reason, when the server stops itself.
    public init(
        core: ServerCore, term: UInt64, fences: FenceRequests,
        recoveryTimeout: Duration = .seconds(30), reclaimInterval: Duration = .seconds(1),
        logger: Logger, onFatal: @escaping @Sendable (String) -> Void = { _ in }
    ) {
        self.core = core
        self.term = term
        self.fences = fences
        self.recoveryTimeout = recoveryTimeout
        self.reclaimInterval = reclaimInterval
        self.logger = logger
        self.onFatal = onFatal
        var rids: [UInt64] = []
        do throws(ServerError) {
            try core.startSeq()
            rids = try core.mountedClients().keys.sorted()
        } catch {
            openError = error
            stopping = true
            socketsClosed = true  // it never listens
        }
        recovery = ClientRecovery(pendingRids: rids)
        locks = LockServerState(recovering: !rids.isEmpty)
        if !rids.isEmpty { logger.info("server waiting for \(rids.count) clients to recover") }
    }

    /// Listens, arms the recovery timer and starts the reclaim worker.
    ///
    /// - Throws: the volume could not be read at `init` (`ServerError`), the bind error, or
    ///   `ServerError` (ESHUTDOWN) when the service was stopped first.
    public func start(
        configuration: NetServer.Configuration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) async throws -> NetServer {
        if let openError = mutex.withLock({ openError }) { throw openError }
        let server = try await NetServer.start(configuration: configuration, handler: self, group: group, logger: logger)
        guard attach(server) else {
            await server.shutdown()
            throw ServerError(errno: LinuxErrno.ESHUTDOWN, "server stopped before it started")
        }
        return server
    }

    /// Uses `server` (listening with this service as its handler) from now on: arms the
    /// recovery timer and starts the reclaim worker. False when the service is stopped.
    func attach(_ server: NetServer) -> Bool {
        mutex.withLock { () -> Bool in
            guard !stopping, netServer == nil else { return false }
            netServer = server
            if !recovery.isFinished {
                let timeout = recoveryTimeout
                recoveryTimer = Task { [weak self] in
                    try? await Task.sleep(for: timeout)
                    guard !Task.isCancelled else { return }
                    self?.recoveryTimedOut()
                }
            }
            reclaimWorker = Task { [weak self] in
                self?.fencePendingGoneLocally()
                await self?.reclaimLoop()
            }
            return true
        }
    }

    /// Mounts still to recover whose daemon ran on this host and is provably gone are fenced
    /// at once (``FenceRequests/startIfFencedLocally(rid:ipv4:reason:)``), not after the
    /// recovery timeout: a one-node volume remounts after a crash without waiting.
    func fencePendingGoneLocally() {
        let pending = mutex.withLock { () -> [(UInt64, UInt32)] in
            guard !stopping else { return [] }
            return recovery.pendingRids().compactMap { rid in (try? fenceAddressLocked(rid: rid)).map { (rid, $0) } }
        }
        for (rid, ipv4) in pending {
            fences.startIfFencedLocally(rid: rid, ipv4: ipv4, reason: .clientRecovery)
        }
    }

    /// Stops: no more requests are processed or commits made once this returns; the listener
    /// and every connection are closed. Idempotent.
    public func stop() async {
        let (server, timer, worker, grants) = mutex.withLock {
            stopping = true
            let g = Array(pendingGrants.values) + farewells.map(\.cont)
            pendingGrants.removeAll()
            farewells.removeAll()
            defer {
                recoveryTimer = nil
                reclaimWorker = nil
            }
            return (netServer, recoveryTimer, reclaimWorker, g)
        }
        timer?.cancel()
        worker?.cancel()
        // close the sockets before ending the waiting requests: their answers must never reach
        // a client, which re-sends them to the next server (an answer would fail its call)
        await server?.shutdown()
        let late = mutex.withLock {
            socketsClosed = true
            defer { lateRequests.removeAll() }
            return lateRequests
        }
        for g in grants + late { g.resume(returning: .failure(NetErrno(LinuxErrno.ESHUTDOWN))) }
        await worker?.value
    }

    /// Answers a request that came in while stopping once no answer can reach the client
    /// any more (at once if the sockets are already closed). Called with `mutex` held.
    private func answerAfterClosingLocked(_ cont: CheckedContinuation<Result<[UInt8], NetErrno>, Never>) {
        if socketsClosed {
            cont.resume(returning: .failure(NetErrno(LinuxErrno.ESHUTDOWN)))
        } else {
            lateRequests.append(cont)
        }
    }

    /// Whether the service stopped (asked to, or on a fatal error).
    public var isStopped: Bool { mutex.withLock { stopping } }

    /// The rids still recovering (greeting or locks).
    public func recoveryPending() -> [UInt64] { mutex.withLock { recovery.pendingRids() } }

    /// The rids with a mounted_client item.
    public func mountedClientRids() throws(ServerError) -> [UInt64] {
        try mutex.withLock { () throws(ServerError) in try core.mountedClients().keys.sorted() }
    }

    /// The current core seq.
    public var coreSeq: UInt64 { mutex.withLock { core.superBlock.seq } }

    /// Lock requests waiting for a grant (for recovery, or behind conflicting grants).
    public var waitingLockRequests: Int { mutex.withLock { locks.waitingCount } }

    /// The lock modes `rid` holds, as this server knows them.
    public func grants(rid: UInt64) -> [Key: LockMode] { mutex.withLock { locks.grants(rid: rid) } }

    // MARK: helpers (mutex held unless said otherwise)

    private func locked<R>(_ body: () throws(ServerError) -> R) -> Result<R, NetErrno> {
        mutex.withLock {
            guard !stopping else { return .failure(NetErrno(LinuxErrno.ESHUTDOWN)) }
            do throws(ServerError) {
                return .success(try body())
            } catch {
                logger.warning("server request failed: \(error)")
                return .failure(NetErrno(error.errno))
            }
        }
    }

    /// `rid` recovered `parts`; when that was the last, requests waiting for recovery proceed.
    private func finishRecoveryLocked(rid: UInt64, _ parts: ClientRecovery.Parts) -> [LockServerState.Action] {
        guard recovery.finish(rid: rid, parts) else { return [] }
        logger.info("all clients recovered")
        recoveryTimer?.cancel()
        recoveryTimer = nil
        return locks.finishRecovery(nextSeq: { core.nextSeq() })
    }

    /// Drops `rid`'s lock state; its waiting lock requests fail.
    private func dropLocksLocked(rid: UInt64) -> [LockServerState.Action] {
        let actions = locks.removeClient(rid: rid, nextSeq: { core.nextSeq() })
        for k in pendingGrants.keys where k.rid == rid {
            pendingGrants.removeValue(forKey: k)?.resume(returning: .failure(.enolink))
        }
        return actions
    }

    /// The address to put in a fence request for `rid`: its greeting's, else its
    /// mounted_client item's (0 when neither is known).
    private func fenceAddressLocked(rid: UInt64) throws(ServerError) -> UInt32 {
        var addr = peerAddresses[rid]
        if addr == nil { addr = try core.mountedClient(rid: rid)?.addr }
        guard let addr, addr.family == InetAddr.familyIPv4 else { return 0 }
        return addr.ipv4
    }

    static func inetAddr(_ address: SocketAddress?) -> InetAddr? {
        guard let address, address.protocol == .inet, let ip = address.ipAddress, let port = address.port else { return nil }
        let parts = ip.split(separator: ".").compactMap { UInt32($0) }
        guard parts.count == 4, parts.allSatisfy({ $0 < 256 }), let p = UInt16(exactly: port) else { return nil }
        return InetAddr(ipv4: parts[0] << 24 | parts[1] << 16 | parts[2] << 8 | parts[3], port: p)
    }

    /// The server is done for: stop it, and tell the owner once.
    private func fatal(_ why: String) {
        let first = mutex.withLock { () -> Bool in
            defer { fatalReported = true }
            return !fatalReported
        }
        guard first else { return }
        logger.error("server stopping: \(why)")
        Task { await self.stop() }
        onFatal(why)
    }

    /// The listener, once `start` set it (a greeting can be handled just before); nil once stopped.
    func listener() async -> NetServer? {
        for _ in 0..<1000 {
            let (s, stopped) = mutex.withLock { (netServer, stopping) }
            if stopped { return nil }
            if let s { return s }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }

    // MARK: NetServerHandler

    public func greeting(_ greeting: NetGreeting, from address: SocketAddress?) async -> Result<NetGreeting, NetErrno> {
        let rid = greeting.rid
        let addr = Self.inetAddr(address)
        let (result, actions) = mutex.withLock { () -> (Result<NetGreeting, NetErrno>, [LockServerState.Action]) in
            guard !stopping else { return (.failure(NetErrno(LinuxErrno.ESHUTDOWN)), []) }
            let sb = core.superBlock
            guard greeting.fsid == sb.hdr.fsid, greeting.fmtVers == sb.fmtVers else {
                logger.warning("greeting from rid \(hex(rid)) for fsid \(hex(greeting.fsid)) format \(greeting.fmtVers) refused")
                return (.failure(.einval), [])
            }
            guard !reclaimed.contains(rid) else {
                logger.warning("greeting from fenced rid \(hex(rid)) refused")
                return (.failure(.enolink), [])
            }
            do throws(ServerError) {
                if greeting.serverTerm == 0 {
                    try core.addMountedClient(rid: rid, addr: addr ?? InetAddr(), quorum: greeting.isQuorum)
                } else if greeting.serverTerm != term, !greeting.isFarewell, try core.mountedClient(rid: rid) == nil {
                    logger.warning("greeting from rid \(hex(rid)) of term \(greeting.serverTerm) without a mounted_client item refused")
                    return (.failure(.enolink), [])
                }
            } catch {
                logger.error("greeting from rid \(hex(rid)): \(error)")
                return (.failure(NetErrno(error.errno)), [])
            }
            if let addr { peerAddresses[rid] = addr }
            let acts = finishRecoveryLocked(rid: rid, .greeting)
            return (.success(NetGreeting(fsid: sb.hdr.fsid, fmtVers: sb.fmtVers, serverTerm: term, rid: rid, flags: 0)), acts)
        }
        perform(actions)
        processFarewells()
        return result
    }

    public func clientGreeted(rid: UInt64, greeting: NetGreeting, firstContact: Bool) async {
        guard firstContact else { return }
        let recover = mutex.withLock { !stopping && recovery.isPending(rid: rid, .locks) }
        if recover {
            Task { await self.recoverLocks(rid: rid) }
        }
    }

    /// Asks `rid` for its locks, batch by batch, until it sends an empty one. Any failure
    /// leaves the rid pending: it recovers after a reconnect, or is fenced at the timeout.
    func recoverLocks(rid: UInt64) async {
        var key = Key.zero
        while true {
            guard let server = await listener() else { return }
            let batch: NetLockRecover
            do {
                batch = try NetLockRecover.decode(try await server.request(rid: rid, .lockRecover, key.encoded()))
            } catch {
                logger.warning("lock recovery of rid \(hex(rid)) stopped: \(error)")
                return
            }
            let (next, actions) = mutex.withLock { () -> (Key?, [LockServerState.Action]) in
                guard !stopping, recovery.isPending(rid: rid, .locks) else { return (nil, []) }
                do throws(LockServerState.RecoverError) {
                    for l in batch.locks {
                        try locks.recover(rid: rid, key: l.key, mode: l.newMode)
                        core.setSeqIfGreater(l.writeSeq)
                    }
                } catch {
                    logger.error("lock recovery of rid \(hex(rid)) refused: \(error)")
                    return (nil, [])
                }
                guard let last = batch.locks.last, last.key != .max else {
                    logger.info("rid \(hex(rid)) recovered its locks")
                    return (nil, finishRecoveryLocked(rid: rid, .locks))
                }
                return (last.key.incremented(), [])
            }
            perform(actions)
            guard let next else {
                processFarewells()
                return
            }
            key = next
        }
    }

    public func handle(rid: UInt64, cmd: NetCommand, payload: [UInt8]) async -> Result<[UInt8], NetErrno> {
        let result = await handleNow(rid: rid, cmd: cmd, payload: payload)
        guard case .failure(let e) = result, e.code == LinuxErrno.ESHUTDOWN else { return result }
        // refused because the server is stopping: the answer waits until the sockets are
        // closed, so that it never reaches the client, which re-sends the request to the next
        // server (ESHUTDOWN crosses the wire as EINVAL and would fail the client's operation)
        return await withCheckedContinuation { cont in
            mutex.withLock {
                if stopping { answerAfterClosingLocked(cont) } else { cont.resume(returning: result) }
            }
        }
    }

    private func handleNow(rid: UInt64, cmd: NetCommand, payload: [UInt8]) async -> Result<[UInt8], NetErrno> {
        if mutex.withLock({ reclaimed.contains(rid) }) { return .failure(.enolink) }
        do {
            switch cmd {
            case .allocInodes:
                let n = try NetU64.decodePayload(payload).value
                return locked { () throws(ServerError) in
                    let (ino, nr) = try core.allocInodes(count: n)
                    return NetInodeAlloc(ino: ino, nr: nr).encoded()
                }
            case .getLogTrees:
                await prepareMerge(rid: rid, wait: true)
                let r = locked { () throws(ServerError) in try core.getLogTrees(rid: rid).encoded() }
                if mutex.withLock({ core.isDataShort(rid: rid) }) { syncOthersForData(short: rid) }
                return r
            case .commitLogTrees:
                var lt = try LogTrees.decodePayload(payload)
                lt.rid = rid
                return locked { () throws(ServerError) in
                    try core.commitLogTrees(lt)
                    return []
                }
            case .getRoots:
                return locked { () throws(ServerError) in
                    let r = core.stableRoots()
                    return NetRoots(fsRoot: r.fsRoot, logsRoot: r.logsRoot, srchRoot: r.srchRoot).encoded()
                }
            case .getLastSeq:
                return locked { () throws(ServerError) in NetU64(try core.lastSeq()).encoded() }
            case .statfs:
                return locked { () throws(ServerError) in
                    let s = try core.statfs()
                    return NetStatfs(
                        uuid: s.uuid, freeMetaBlocks: s.freeMetaBlocks, totalMetaBlocks: s.totalMetaBlocks,
                        freeDataBlocks: s.freeDataBlocks, totalDataBlocks: s.totalDataBlocks, inodeCount: s.inodeCount
                    ).encoded()
                }
            case .srchGetCompact:
                guard payload.isEmpty else { return .failure(.einval) }
                return locked { () throws(ServerError) in try core.getSrchCompact(rid: rid).encoded() }
            case .srchCommitCompact:
                let sc = try SrchCompact.decodePayload(payload)
                return locked { () throws(ServerError) in
                    try core.commitSrchCompact(rid: rid, sc)
                    return []
                }
            case .getLogMerge:
                guard payload.isEmpty else { return .failure(.einval) }
                return await getLogMerge(rid: rid)
            case .openInoMap:
                return await openInoMap(rid: rid, payload)
            case .commitLogMerge:
                let r = commitLogMerge(rid: rid, payload)
                startFreeingMerged()
                return r
            case .resizeDevices:
                let r = try NetResizeDevices.decodePayload(payload)
                let dataBytes = measureDataDevice()
                return locked { () throws(ServerError) in
                    let metaBytes: UInt64
                    do throws(Errno) {
                        metaBytes = try core.txn.device.device.remeasure()
                    } catch {
                        throw ServerError(errno: error.rawValue, "measuring the metadata device: \(error)")
                    }
                    guard let dataBytes else { throw ServerError(errno: 5, "the data device could not be measured") }
                    try core.resizeDevices(
                        metaBlocks: r.newTotalMetaBlocks, dataBlocks: r.newTotalDataBlocks,
                        metaDeviceBlocks: metaBytes >> UInt64(Format.largeShift),
                        dataDeviceBlocks: dataBytes >> UInt64(Format.smallShift))
                    return []
                }
            case .farewell:
                guard payload.isEmpty else { return .failure(.einval) }
                return await farewell(rid: rid)
            case .lock:
                let req = try NetLock.decodePayload(payload)
                return await withCheckedContinuation { cont in
                    let actions = mutex.withLock { () -> [LockServerState.Action] in
                        guard !stopping else {
                            answerAfterClosingLocked(cont)
                            return []
                        }
                        let gk = GrantKey(rid: rid, key: req.key)
                        // one request per lock and mount at a time; a stray older one fails
                        pendingGrants.removeValue(forKey: gk)?.resume(returning: .failure(.einval))
                        pendingGrants[gk] = cont
                        return locks.request(rid: rid, key: req.key, old: req.oldMode, new: req.newMode, nextSeq: { core.nextSeq() })
                    }
                    perform(actions)
                }
            default:
                return .failure(.einval)
            }
        } catch {
            logger.warning("bad \(cmd) request from rid \(hex(rid)): \(error)")
            return .failure(.einval)
        }
    }

    /// A mount's data_avail came back short: every other mount is asked to commit
    /// (SYNC_LOG_TREES), so its freed extents and unused data_avail return to `data_alloc`
    /// for the short mount's next GET_LOG_TREES. At most once per 250 ms: a short mount
    /// asks again as it retries.
    private func syncOthersForData(short rid: UInt64) {
        let now = ContinuousClock.now
        let others = mutex.withLock { () -> [UInt64] in
            if let last = lastDataSync, now - last < .milliseconds(250) { return [] }
            lastDataSync = now
            return peerAddresses.keys.filter { $0 != rid }
        }
        for other in others {
            Task {
                guard let server = await self.listener() else { return }
                _ = try? await server.request(rid: other, .syncLogTrees, [])
            }
        }
    }

    /// FAREWELL: queued; answered by `processFarewells` once the rid may leave.
    private func farewell(rid: UInt64) async -> Result<[UInt8], NetErrno> {
        let result = await withCheckedContinuation { (cont: CheckedContinuation<Result<[UInt8], NetErrno>, Never>) in
            let queued = mutex.withLock { () -> Bool in
                guard !stopping else {
                    answerAfterClosingLocked(cont)
                    return false
                }
                farewells.append((rid, cont))
                return true
            }
            if queued { processFarewells() }
        }
        return result
    }

    /// Votes an election needs with the volume's configured slots (the quorum's rule: a
    /// majority, or 1 with fewer than 3 slots).
    private var votesNeededLocked: Int {
        let n = core.superBlock.qconf.configured.count
        return n < 3 ? 1 : n / 2 + 1
    }

    /// The original's farewell worker: answers the queued farewells that may go now. Mounts
    /// that are not quorum members may always leave; quorum members are held while their
    /// leaving would leave too few for an election, unless they are the last mounts and all
    /// leave together (`FarewellPolicy`). A rid still recovering its locks waits for that (or
    /// to be fenced). Each released rid loses its locks and is reclaimed before the answer.
    /// Run whenever that could change: a farewell arrives, a mount greets or recovers its
    /// locks, a fenced mount is reclaimed.
    func processFarewells() {
        let (answers, actions, failure) = mutex.withLock {
            () -> ([CheckedContinuation<Result<[UInt8], NetErrno>, Never>], [LockServerState.Action], ServerError?) in
            guard !stopping, !farewells.isEmpty else { return ([], [], nil) }
            let mounted: [UInt64: Bool]
            do throws(ServerError) {
                mounted = try core.mountedClients().mapValues { $0.flags & MountedClientValue.flagQuorum != 0 }
            } catch {
                return ([], [], error)
            }
            // lock recovery finishes before the locks are destroyed (or the rid is fenced); until
            // then a member's farewell does not count, or the rest of the last majority would
            // leave without it
            let pending = farewells.map(\.rid)
            let release = FarewellPolicy.releasable(
                pending: pending, mounted: mounted, votesNeeded: votesNeededLocked,
                recovering: Set(pending.filter { recovery.isPending(rid: $0, .locks) }))
            var done = Set<UInt64>()
            var acts: [LockServerState.Action] = []
            for rid in release where !done.contains(rid) {
                acts += dropLocksLocked(rid: rid)
                do throws(ServerError) {
                    try core.farewell(rid: rid)
                } catch {
                    return ([], acts, error)
                }
                peerAddresses[rid] = nil
                done.insert(rid)
            }
            let answers = farewells.filter { done.contains($0.rid) }.map(\.cont)
            farewells.removeAll { done.contains($0.rid) }
            return (answers, acts, nil)
        }
        perform(actions)
        for c in answers { c.resume(returning: .success([])) }
        if let failure { fatal("farewell processing failed: \(failure)") }
    }

    /// Carries out lock server actions: grants answer waiting requests, invalidations are
    /// sent and their answers fed back. An invalidation that cannot be delivered (the mount's
    /// connection state is gone) stays outstanding until the mount is reclaimed.
    private func perform(_ actions: [LockServerState.Action]) {
        for a in actions {
            switch a {
            case .grant(let rid, let key, let old, let new, let seq):
                let cont = mutex.withLock { pendingGrants.removeValue(forKey: GrantKey(rid: rid, key: key)) }
                cont?.resume(returning: .success(NetLock(key: key, writeSeq: seq, oldMode: old, newMode: new).encoded()))
            case .invalidate(let rid, let key, let from, let to):
                Task {
                    guard let server = await self.listener() else { return }
                    do {
                        _ = try await server.request(rid: rid, .lock, NetLock(key: key, oldMode: from, newMode: to).encoded())
                    } catch {
                        // lost: the mount is fenced and reclaimed, which drops its grants
                        self.logger.warning("lock invalidation of rid \(hex(rid)) for \(key) not answered: \(error)")
                        return
                    }
                    let next = self.mutex.withLock { () -> [LockServerState.Action] in
                        guard !self.stopping else { return [] }
                        return self.locks.invalidated(rid: rid, key: key, mode: to, nextSeq: { self.core.nextSeq() })
                    }
                    self.perform(next)
                }
            }
        }
    }

    /// A mount that stayed away longer than the reconnect window is fenced, unless it is no
    /// longer a mounted client: its farewell was processed (the answer may wait in its resend
    /// queue for a client that then saw its item gone on the device and never came back), or it
    /// was reclaimed. Such a rid wrote its last commit before its farewell; fencing it would
    /// only hit whatever mount now stands where it stood.
    public func clientGone(rid: UInt64, reason: NetServer.GoneReason) async {
        guard reason == .reconnectTimedOut else { return }
        let outcome = mutex.withLock { () -> Result<UInt32, ServerError>? in
            guard !stopping, !reclaimed.contains(rid) else { return nil }
            do throws(ServerError) {
                guard try core.mountedClient(rid: rid) != nil else {
                    logger.info("client rid \(hex(rid)) left after its farewell was processed: nothing to fence")
                    return nil
                }
                return .success(try fenceAddressLocked(rid: rid))
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case nil:
            return
        case .success(let ipv4):
            logger.error("client rid \(hex(rid)) reconnect timed out, fencing")
            requestFence(rid: rid, ipv4: ipv4, reason: .clientReconnect)
        case .failure(let e):
            fatal("client rid \(hex(rid)) address lookup for fencing failed: \(e)")
        }
    }

    // MARK: recovery timeout and reclaim

    private func requestFence(rid: UInt64, ipv4: UInt32, reason: FenceReason) {
        fences.start(rid: rid, ipv4: ipv4, reason: reason)
    }

    /// The recovery timer fired: every mount still pending is to be fenced. It stays pending
    /// (its lock state unknown) until it is reclaimed.
    func recoveryTimedOut() {
        let outcome = mutex.withLock { () -> Result<[(UInt64, UInt32)], ServerError>? in
            guard !stopping else { return nil }
            do throws(ServerError) {
                var out: [(UInt64, UInt32)] = []
                for rid in recovery.pendingRids() { out.append((rid, try fenceAddressLocked(rid: rid))) }
                return .success(out)
            } catch {
                return .failure(error)
            }
        }
        switch outcome {
        case nil:
            return
        case .success(let pending):
            for (rid, ipv4) in pending {
                logger.error("recovery timeout of \(recoveryTimeout) expired for client rid \(hex(rid)), fencing")
                requestFence(rid: rid, ipv4: ipv4, reason: .clientRecovery)
            }
        case .failure(let e):
            fatal("client address lookup for fencing failed: \(e)")
        }
    }

    private func reclaimLoop() async {
        while !Task.isCancelled, !isStopped {
            if await reclaimNext() { continue }
            try? await Task.sleep(for: reclaimInterval)
        }
    }

    /// Handles one answered fence request; true when a mount was reclaimed.
    func reclaimNext() async -> Bool {
        guard let req = fences.answered().first else { return false }
        let rid = req.rid
        if req.error {
            fatal("fence request for rid \(hex(rid)) (\(req.reason.rawValue)) failed")
            return false
        }
        // nothing more from it: its socket and messaging state go first
        await listener()?.forget(rid: rid)
        let (error, actions) = mutex.withLock { () -> (ServerError?, [LockServerState.Action]) in
            guard !stopping else { return (nil, []) }
            reclaimed.insert(rid)
            var acts = dropLocksLocked(rid: rid)
            do throws(ServerError) {
                try core.reclaim(rid: rid)
            } catch {
                return (error, acts)
            }
            fences.remove(rid: rid)
            peerAddresses[rid] = nil
            acts += finishRecoveryLocked(rid: rid, .all)
            return (nil, acts)
        }
        perform(actions)
        if let error {
            fatal("reclaim of fenced rid \(hex(rid)) failed: \(error)")
            return false
        }
        if isStopped { return false }
        logger.info("reclaimed resources of fenced rid \(hex(rid))")
        processFarewells()
        return true
    }
}

func hex(_ v: UInt64) -> String { v.paddedHex }
