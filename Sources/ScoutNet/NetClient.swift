import Logging
import NIOCore
import NIOPosix
import ScoutFormat
import ScoutProtocol
import Synchronization

/// Handles what the server sends unasked: LOCK invalidations, SYNC_LOG_TREES, OPEN_INO_MAP and
/// LOCK_RECOVER requests, plus connection events.
public protocol NetClientHandler: Sendable {
    /// A request from the server. Answer it exactly once through `request.respond`, now or later.
    ///
    /// Requests with an ordering key (LOCK by default) are delivered one at a time per key, in
    /// arrival order: the next one for the same key waits until this call returns. Everything else
    /// runs concurrently.
    func handleRequest(_ request: NetIncomingRequest) async

    /// A connection event; the default does nothing.
    func connectionEvent(_ event: NetClient.Event) async
}

extension NetClientHandler {
    public func connectionEvent(_ event: NetClient.Event) async {}
}

/// A request that the server sent to this client.
public struct NetIncomingRequest: Sendable {
    public let cmd: NetCommand
    /// The request id (the original's `net_id`), for logs.
    public let id: UInt64
    public let payload: [UInt8]
    let epoch: UInt64
    let core: NetClient.Core

    /// Sends the answer: a payload (at most 1100 bytes), or an errno carried as a `NetWireError`.
    ///
    /// Answers to a server that has since been replaced by a new one are dropped. A payload that
    /// is too large is answered with EINVAL instead (and logged).
    public func respond(_ result: Result<[UInt8], NetErrno>) {
        let core = self.core
        let (cmd, id, epoch) = (self.cmd, self.id, self.epoch)
        core.loop.execute { core.respond(cmd, id: id, result: result, epoch: epoch) }
    }
}

/// The client end of the client/server connection (the original's `client.c` plus the connecting
/// half of `net.c`).
///
/// It connects to whatever address `serverAddress` returns (the server can move), greets, then
/// carries requests both ways. Requests survive reconnects: they are resent on the next socket
/// after its greeting, and only completed by their response. When the connection drops it
/// reconnects with a bounded back-off and greets with the last server term it saw, so the
/// server can find its state; a new term means a new server (queued responses are dropped then).
///
/// Design notes (deviations from the original):
/// * All connection state lives on one event loop; public calls hop onto it. Reliable-delivery
///   rules are `ScoutProtocol.MessagingState`'s.
/// * Reconnect back-off doubles from `reconnectDelayMin` to `reconnectDelayMax` while attempts
///   fail (the original retries every 100 ms); after a successful greeting the first retry is
///   immediate, as in the original.
/// * LOCK ordering: only `submit(_:_:onResponse:)` callbacks and handler calls are ordered per
///   lock key. `request(.lock, ...)` returns through an async continuation and is not ordered
///   against invalidations; the lock client should use `submit` for LOCK.
/// * Answers to requests of a server that has since been replaced are dropped (see
///   `MessagingState.peerEpoch`).
/// * The farewell's "has the server already processed it" check reads the metadata device in
///   the original; here the owner supplies it as `Configuration.farewellProcessed`.
/// * Every server request goes to the handler, whatever its command; the original shuts the
///   connection down on a command it has no handler for (a handler should answer EINVAL).
public final class NetClient: Sendable {
    /// Client settings.
    public struct Configuration: Sendable {
        /// fsid, fmt_vers, rid and flags (QUORUM) of this mount. The client fills in server_term
        /// and the FAREWELL flag itself.
        public var greeting: NetGreeting
        /// How long one connect attempt may take (the original: 1 s).
        public var connectTimeout: Duration = .seconds(1)
        /// First delay before reconnecting after a failed attempt (the original: 100 ms).
        public var reconnectDelayMin: Duration = .milliseconds(100)
        /// Longest delay between attempts.
        public var reconnectDelayMax: Duration = .seconds(2)
        /// TCP keepalive and user timeout (the original's `tcp_keepalive_timeout_ms`, 24 s);
        /// nil leaves the kernel defaults.
        public var keepaliveTimeout: Duration? = .seconds(24)
        /// Number of ordered lanes (the original: one per CPU).
        public var orderedLanes: Int = System.coreCount
        /// Which received messages must be processed in order, by key (LOCK by lock key).
        public var orderingKey: @Sendable (NetCommand, [UInt8]) -> UInt64? = NetOrdering.lockKey
        /// Consulted before each reconnect while a farewell is pending: true when the server has
        /// already processed it (our mounted-client item is gone), which completes the farewell.
        public var farewellProcessed: (@Sendable () async -> Bool)?

        public init(greeting: NetGreeting) {
            self.greeting = greeting
        }
    }

    /// Connection events, in order.
    public enum Event: Sendable, Equatable {
        /// A greeting completed; `newServer` when the term changed (0 → first contact included).
        case connected(serverTerm: UInt64, newServer: Bool)
        /// The socket closed; the client will reconnect unless it is shut down.
        case disconnected
        /// The server refused the greeting or answered with another fsid or format version.
        case greetingFailed(NetError)
    }

    let core: Core

    /// Creates a client; nothing happens until `start(handler:)`.
    ///
    /// - Parameters:
    ///   - group: where the socket lives; one of its loops owns all the client's state.
    ///   - serverAddress: the current server's address, or nil while none is known (the client
    ///     then backs off and asks again).
    public init(
        configuration: Configuration,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger,
        serverAddress: @escaping @Sendable () async -> SocketAddress?
    ) {
        core = Core(
            loop: group.next(), configuration: configuration, logger: logger, serverAddress: serverAddress)
    }

    /// Starts connecting. `handler` receives the server's requests and connection events.
    public func start(handler: any NetClientHandler) {
        let core = self.core
        core.loop.execute { core.start(handler: handler) }
    }

    /// The term of the server that answered the last greeting; 0 before the first.
    public var serverTerm: UInt64 { core.serverTermMirror.load(ordering: .relaxed) }

    /// Event counts.
    public var counters: NetCounters { core.counters }

    /// Sends a request and waits for its response, across reconnects if need be.
    ///
    /// - Throws: `NetError.remote` with the server's error, `.shutdown` if the client shuts down
    ///   first, `.invalid` for a payload over 1100 bytes or a GREETING.
    public func request(_ cmd: NetCommand, _ payload: [UInt8]) async throws(NetError) -> [UInt8] {
        let core = self.core
        let result: Result<[UInt8], NetError> = await withUnsafeContinuation { cont in
            core.loop.execute { core.submit(cmd, payload, waiter: .continuation(cont)) }
        }
        return try result.get()
    }

    /// Sends a request and blocks the calling thread until its response (for FUSE worker threads).
    ///
    /// - Parameter timeout: give up after this long: the request is withdrawn (not resent) and
    ///   `.timedOut` thrown, but the server may have processed it. nil waits for ever.
    /// - Throws: as `request`, plus `.timedOut`, and `.calledOnEventLoop` when called on an
    ///   event-loop thread (it would deadlock).
    @available(*, noasync, message: "blocks the thread; use request(_:_:) from async code")
    public func requestSync(_ cmd: NetCommand, _ payload: [UInt8], timeout: Duration? = nil) throws(NetError) -> [UInt8] {
        // waiting here would block the loop that has to deliver the answer
        guard MultiThreadedEventLoopGroup.currentEventLoop == nil else { throw .calledOnEventLoop }
        let core = self.core
        let promise = core.loop.makePromise(of: [UInt8].self)
        core.loop.execute {
            guard let id = core.submit(cmd, payload, waiter: .promise(promise)), let timeout else { return }
            let timer = core.loop.scheduleTask(in: TimeAmount(timeout)) {
                if core.cancel(id: id) { promise.fail(NetError.timedOut) }
            }
            promise.futureResult.whenComplete { _ in timer.cancel() }
        }
        do {
            return try promise.futureResult.wait()
        } catch let e as NetError {
            throw e
        } catch {
            throw .shutdown
        }
    }

    /// Sends a request; `onResponse` gets its outcome. When the command has an ordering key
    /// (LOCK), the callback runs in that key's lane, in order with the server's requests for the
    /// same key, and the lane waits for it to return.
    public func submit(
        _ cmd: NetCommand, _ payload: [UInt8],
        onResponse: @escaping @Sendable (Result<[UInt8], NetError>) async -> Void
    ) {
        let core = self.core
        core.loop.execute {
            let lane = core.configuration.orderingKey(cmd, payload)
            core.submit(cmd, payload, waiter: .callback(lane: lane, onResponse))
        }
    }

    /// Says farewell (clean unmount) and shuts the client down.
    ///
    /// Greetings from now on carry the FAREWELL flag. Returns once the server answered the
    /// FAREWELL request (or `farewellProcessed` reports it done); without any greeting ever
    /// completed there is no server to tell, and it returns at once.
    ///
    /// - Throws: the server's error; the client is shut down either way.
    public func farewell() async throws(NetError) {
        let core = self.core
        let result: Result<[UInt8], NetError> = await withUnsafeContinuation { cont in
            core.loop.execute { core.startFarewell(cont) }
        }
        await shutdown()
        _ = try result.get()
    }

    /// Test hook: closes the socket as if the network broke; the client reconnects.
    func dropConnectionForTesting() async {
        let core = self.core
        try? await core.loop.submit { core.dropConnectionForTesting() }.get()
    }

    /// Closes the connection and stops reconnecting; pending requests fail with `.shutdown`.
    public func shutdown() async {
        let core = self.core
        let closed = core.loop.flatSubmit { core.shutdown() }
        try? await closed.get()
    }
}

extension NetClient {
    /// How a pending request is completed.
    enum Waiter {
        case continuation(UnsafeContinuation<Result<[UInt8], NetError>, Never>)
        case promise(EventLoopPromise<[UInt8]>)
        case callback(lane: UInt64?, @Sendable (Result<[UInt8], NetError>) async -> Void)
    }

    /// The client's state, confined to `loop`.
    ///
    /// `@unchecked Sendable`: every mutable property is read and written only on `loop` (public
    /// entry points hop there with `execute`), so no two threads ever touch it at once.
    final class Core: @unchecked Sendable {
        enum Lifecycle { case idle, running, stopped }

        let loop: any EventLoop
        let configuration: Configuration
        let logger: Logger
        let counters = NetCounters()
        let lanes: OrderedLanes
        let events = OrderedLanes(count: 1)
        let serverAddress: @Sendable () async -> SocketAddress?
        let serverTermMirror = Atomic<UInt64>(0)

        var handler: (any NetClientHandler)?
        var lifecycle = Lifecycle.idle
        var state = MessagingState(role: .connector)
        var waiters: [UInt64: Waiter] = [:]
        var channel: (any Channel)?
        var connecting = false
        var reconnectTimer: Scheduled<Void>?
        /// Delay before the next connect attempt.
        var delay = TimeAmount.zero
        var serverTerm: UInt64 = 0
        var farewellID: UInt64?

        init(
            loop: any EventLoop, configuration: Configuration, logger: Logger,
            serverAddress: @escaping @Sendable () async -> SocketAddress?
        ) {
            self.loop = loop
            self.configuration = configuration
            self.logger = logger
            self.serverAddress = serverAddress
            self.lanes = OrderedLanes(count: configuration.orderedLanes)
        }

        // MARK: Lifecycle

        func start(handler: any NetClientHandler) {
            guard lifecycle == .idle else { return }
            self.handler = handler
            lifecycle = .running
            // until a greeting succeeds, failed attempts back off from the minimum
            delay = TimeAmount(configuration.reconnectDelayMin)
            connect()
        }

        func shutdown() -> EventLoopFuture<Void> {
            lifecycle = .stopped
            reconnectTimer?.cancel()
            reconnectTimer = nil
            let ch = channel
            channel = nil
            state.socketClosed()
            _ = state.removeAll()
            let all = waiters
            waiters.removeAll()
            for (_, w) in all { complete(w, .failure(.shutdown)) }
            guard let ch else { return loop.makeSucceededVoidFuture() }
            ch.close(promise: nil)
            return ch.closeFuture
        }

        private func nextDelay() -> TimeAmount {
            let d = delay
            let lo = TimeAmount(configuration.reconnectDelayMin)
            let hi = TimeAmount(configuration.reconnectDelayMax)
            delay = d == .zero ? lo : min(hi, d * 2)
            return d
        }

        private func scheduleConnect() {
            guard lifecycle == .running, channel == nil, !connecting, reconnectTimer == nil else { return }
            let d = nextDelay()
            reconnectTimer = loop.scheduleTask(in: d) { [self] in
                reconnectTimer = nil
                connect()
            }
        }

        private func connect() {
            guard lifecycle == .running, channel == nil, !connecting else { return }
            connecting = true
            let farewellCheck = farewellID != nil ? configuration.farewellProcessed : nil
            Task { [self] in
                if let farewellCheck, await farewellCheck() {
                    loop.execute { [self] in
                        connecting = false
                        logger.debug("farewell already processed by the server")
                        finishFarewell(.success([]))
                    }
                    return
                }
                guard let address = await serverAddress() else {
                    loop.execute { [self] in connectFailed("no server address") }
                    return
                }
                let keepalive = configuration.keepaliveTimeout
                let bootstrap = ClientBootstrap(group: loop)
                    .connectTimeout(TimeAmount(configuration.connectTimeout))
                    .channelInitializer { [self] ch in
                        ch.eventLoop.makeCompletedFuture {
                            try SocketSetup.apply(to: ch, keepaliveTimeout: keepalive)
                            try ch.pipeline.syncOperations.addHandlers([
                                ByteToMessageHandler(NetFrameDecoder()),
                                MessageToByteHandler(NetFrameEncoder()),
                                ClientChannelHandler(core: self),
                            ])
                        }
                    }
                bootstrap.connect(to: address).whenComplete { [self] result in
                    switch result {
                    case .success(let ch): connected(ch)
                    case .failure(let e): connectFailed("connect to \(address): \(e)")
                    }
                }
            }
        }

        /// Test hook: closes the current socket as if the network broke.
        func dropConnectionForTesting() {
            channel?.close(promise: nil)
        }

        private func connectFailed(_ why: String) {
            connecting = false
            logger.debug("client connect failed", metadata: ["reason": "\(why)"])
            scheduleConnect()
        }

        private func connected(_ ch: any Channel) {
            connecting = false
            guard lifecycle == .running, ch.isActive else {
                ch.close(promise: nil)
                if lifecycle == .running { scheduleConnect() }
                return
            }
            counters.bump(counters.connections)
            logger.debug("client connected", metadata: ["peer": "\(ch.remoteAddress.map { "\($0)" } ?? "?")"])
            channel = ch
            state.socketOpened()
            var g = configuration.greeting
            g.serverTerm = serverTerm
            g.flags &= ~NetGreeting.flagFarewell
            if farewellID != nil { g.flags |= NetGreeting.flagFarewell }
            do {
                let sent = try state.submitRequest(.greeting, payload: g.encoded())
                if let f = sent.send { write(f, flush: true) }
            } catch {
                logger.error("client greeting not sent: \(error)")
                ch.close(promise: nil)
            }
        }

        // MARK: Channel events (on loop)

        func channelClosed(_ ch: any Channel) {
            guard let current = channel, current === ch else { return }
            channel = nil
            state.socketClosed()
            counters.bump(counters.disconnections)
            logger.debug("client disconnected")
            emit(.disconnected)
            scheduleConnect()
        }

        func invalid(_ ch: any Channel, _ error: any Error) {
            counters.bump(counters.invalidMessages)
            logger.warning("client closing connection on invalid message: \(error)")
            ch.close(promise: nil)
        }

        func received(_ frame: NetFrame, on ch: any Channel) {
            guard let current = channel, current === ch else { return }
            counters.bump(counters.messagesReceived)
            let delivery: MessagingState.Delivery
            do {
                delivery = try state.receive(frame.header)
            } catch {
                invalid(ch, error)
                return
            }
            switch delivery {
            case .greetingResponse:
                greetingAnswered(frame, on: ch)
            case .request(let epoch):
                guard let handler else { return }
                let req = NetIncomingRequest(
                    cmd: frame.header.cmd, id: frame.header.id, payload: frame.payload, epoch: epoch, core: self)
                if let key = configuration.orderingKey(frame.header.cmd, frame.payload) {
                    lanes.enqueue(key: key) { await handler.handleRequest(req) }
                } else {
                    Task { await handler.handleRequest(req) }
                }
            case .response:
                guard let w = waiters.removeValue(forKey: frame.header.id) else { return }
                if frame.header.id == farewellID { farewellID = nil }
                let e = frame.header.error
                complete(w, e == .none ? .success(frame.payload) : .failure(.remote(e)))
            case .unmatchedResponse:
                counters.bump(counters.unmatchedResponses)
            case .duplicate:
                counters.bump(counters.duplicatesDropped)
            case .greetingRequest:
                break  // a connector never classifies a message this way
            }
        }

        private func greetingAnswered(_ frame: NetFrame, on ch: any Channel) {
            let mine = configuration.greeting
            let failure: NetError?
            var answer: NetGreeting?
            if frame.header.error != .none {
                failure = .remote(frame.header.error)
            } else if let g = try? NetGreeting.decodePayload(frame.payload) {
                answer = g
                failure = (g.fsid != mine.fsid || g.fmtVers != mine.fmtVers) ? .remote(.einval) : nil
            } else {
                failure = .invalid(.dataTooLong(frame.payload.count))
            }
            guard failure == nil, let answer else {
                counters.bump(counters.greetingFailures)
                logger.warning(
                    "server greeting response refused",
                    metadata: ["error": "\(failure!)", "fsid": "\(answer?.fsid ?? 0)", "fmt_vers": "\(answer?.fmtVers ?? 0)"])
                emit(.greetingFailed(failure!))
                ch.close(promise: nil)
                return
            }
            let newServer = GreetingRules.isNewServer(knownTerm: serverTerm, responseTerm: answer.serverTerm)
            serverTerm = answer.serverTerm
            serverTermMirror.store(answer.serverTerm, ordering: .relaxed)
            delay = .zero
            let frames = state.enableMessaging(newPeer: newServer)
            for f in frames { write(f, flush: false) }
            ch.flush()
            logger.debug(
                "client greeted", metadata: ["term": "\(answer.serverTerm)", "new_server": "\(newServer)", "resent": "\(frames.count)"])
            emit(.connected(serverTerm: answer.serverTerm, newServer: newServer))
        }

        // MARK: Sending (on loop)

        /// Queues a request; returns its id, or nil when it failed at once.
        @discardableResult
        func submit(_ cmd: NetCommand, _ payload: [UInt8], waiter: Waiter) -> UInt64? {
            guard lifecycle != .stopped else {
                complete(waiter, .failure(.shutdown))
                return nil
            }
            guard cmd != .greeting else {
                complete(waiter, .failure(.invalid(.greetingNotAllowed)))
                return nil
            }
            do {
                let sent = try state.submitRequest(cmd, payload: payload)
                waiters[sent.id] = waiter
                if let f = sent.send { write(f, flush: true) }
                return sent.id
            } catch {
                complete(waiter, .failure(.invalid(error)))
                return nil
            }
        }

        /// Withdraws a pending request; true when it was still pending (its waiter is dropped).
        func cancel(id: UInt64) -> Bool {
            guard waiters.removeValue(forKey: id) != nil else { return false }
            state.cancelRequest(id: id)
            return true
        }

        func respond(_ cmd: NetCommand, id: UInt64, result: Result<[UInt8], NetErrno>, epoch: UInt64) {
            guard lifecycle != .stopped else { return }
            let (error, payload): (NetWireError, [UInt8])
            switch result {
            case .success(let p): (error, payload) = (.none, p)
            case .failure(let e): (error, payload) = (e.wire, [])
            }
            do {
                if let f = try state.submitResponse(cmd, id: id, error: error, payload: payload, epoch: epoch) {
                    write(f, flush: true)
                }
            } catch {
                logger.error("client response to \(cmd) \(id) not sendable: \(error); answering EINVAL")
                if let f = try? state.submitResponse(cmd, id: id, error: .einval, payload: [], epoch: epoch) {
                    write(f, flush: true)
                }
            }
        }

        func startFarewell(_ cont: UnsafeContinuation<Result<[UInt8], NetError>, Never>) {
            guard lifecycle != .stopped else {
                cont.resume(returning: .failure(.shutdown))
                return
            }
            // never greeted: no server knows us
            guard serverTerm != 0 else {
                cont.resume(returning: .success([]))
                return
            }
            farewellID = submit(.farewell, [], waiter: .continuation(cont))
        }

        private func finishFarewell(_ result: Result<[UInt8], NetError>) {
            guard let id = farewellID else { return }
            farewellID = nil
            state.cancelRequest(id: id)
            if let w = waiters.removeValue(forKey: id) { complete(w, result) }
        }

        private func write(_ frame: NetFrame, flush: Bool) {
            guard let ch = channel else { return }
            counters.bump(counters.messagesSent)
            if flush {
                ch.writeAndFlush(frame, promise: nil)
            } else {
                ch.write(frame, promise: nil)
            }
        }

        private func complete(_ waiter: Waiter, _ result: Result<[UInt8], NetError>) {
            switch waiter {
            case .continuation(let c):
                c.resume(returning: result)
            case .promise(let p):
                p.completeWith(result.mapError { $0 as any Error })
            case .callback(let lane, let cb):
                if let lane {
                    lanes.enqueue(key: lane) { await cb(result) }
                } else {
                    Task { await cb(result) }
                }
            }
        }

        private func emit(_ event: Event) {
            guard let handler else { return }
            events.enqueue(key: 0) { await handler.connectionEvent(event) }
        }
    }
}

/// Feeds a client socket's frames and events to the client core.
final class ClientChannelHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = NetFrame

    let core: NetClient.Core

    init(core: NetClient.Core) { self.core = core }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        core.received(unwrapInboundIn(data), on: context.channel)
    }

    func channelInactive(context: ChannelHandlerContext) {
        core.channelClosed(context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NetProtocolError {
            core.invalid(context.channel, error)
        } else {
            core.logger.debug("client socket error: \(error)")
            context.close(promise: nil)
        }
    }
}

extension SocketAddress {
    /// The address of a quorum slot or a mounted client (IPv4 only, as in the original).
    ///
    /// - Throws: `NetError.invalid` for a family other than IPv4.
    public init(_ addr: InetAddr) throws(NetError) {
        guard addr.family == InetAddr.familyIPv4 else { throw .badAddress("family \(addr.family)") }
        do {
            self = try SocketAddress(ipAddress: addr.ipv4String, port: Int(addr.port))
        } catch {
            throw .badAddress(addr.description)
        }
    }
}
