import Logging
import NIOCore
import NIOPosix
import ScoutFormat
import ScoutProtocol

/// The server's side of client messaging: greetings, requests, and connection life events.
public protocol NetServerHandler: Sendable {
    /// Decides on a client's greeting (fsid and format checks, the mounted-client item on first
    /// contact). Success carries the response greeting, whose `serverTerm` must be this server's
    /// term; failure is sent as the response's error and the connection is closed.
    ///
    /// Runs before anything else from that socket is processed.
    func greeting(_ greeting: NetGreeting, from address: SocketAddress?) async -> Result<NetGreeting, NetErrno>

    /// The client's messaging is enabled (its greeting response and resends are on their way).
    /// The client's requests are processed only after this returns, so lock recovery can be set
    /// up here; responses to requests sent to the client are delivered meanwhile, so this may
    /// await them. `firstContact` is true when the client's term was not ours.
    func clientGreeted(rid: UInt64, greeting: NetGreeting, firstContact: Bool) async

    /// Processes one client request; the result is sent as the response. Requests run
    /// concurrently (unless `Configuration.orderingKey` gives them a key), and may take as long
    /// as they need (a LOCK grant waits for invalidations, a FAREWELL for reclaim).
    func handle(rid: UInt64, cmd: NetCommand, payload: [UInt8]) async -> Result<[UInt8], NetErrno>

    /// The client's socket closed; its state waits `reconnectTimeout` for it to come back.
    func clientDisconnected(rid: UInt64) async

    /// The client's state is gone: after its farewell, or because it did not reconnect in time
    /// (the original fences it then).
    func clientGone(rid: UInt64, reason: NetServer.GoneReason) async
}

extension NetServerHandler {
    public func clientGreeted(rid: UInt64, greeting: NetGreeting, firstContact: Bool) async {}
    public func clientDisconnected(rid: UInt64) async {}
    public func clientGone(rid: UInt64, reason: NetServer.GoneReason) async {}
}

/// The listening server of the client/server connection (the accepting half of `net.c`).
///
/// Each client is known by its rid once it greets. Its messaging state (seqs, resend queue)
/// belongs to the rid, not the socket: a reconnecting client's state moves to its new socket,
/// and responses produced while it was away are sent when it is back. A client that stays away
/// longer than `reconnectTimeout` is forgotten and reported gone (to be fenced).
///
/// Design notes (deviations from the original):
/// * All server connection state lives on one event loop (accepted sockets included); handler
///   calls run as tasks and hop back to it to answer. A handler answers by returning.
/// * A greeting with term 0 from a rid whose state exists migrates that state (see
///   `GreetingRules.attach`); the original starts fresh and lets the old state time out.
/// * A client's requests received after its greeting wait until `clientGreeted` returned (the
///   original processes the greeting inline in its receive worker, which holds up later messages
///   the same way); responses to the server's own requests are not held, so `clientGreeted` can
///   await lock recovery answers.
/// * Connection events (`clientGreeted`, `clientDisconnected`, `clientGone`) are delivered one
///   at a time per rid, in order.
/// * Every request goes to `handle`, whatever its command; the original shuts the connection
///   down on a command the server has no handler for (a handler should answer EINVAL).
/// * A greeting the rules reject (reconnect without state, or a stale racing greeting) is
///   closed without an answer; the original queues the answer first, then shuts down.
public final class NetServer: Sendable {
    /// Server settings.
    public struct Configuration: Sendable {
        /// Address to listen on.
        public var host: String
        /// Port to listen on; 0 picks a free one (see `port`).
        public var port: Int
        /// How long a disconnected client's state waits for it (the original: 20 s).
        public var reconnectTimeout: Duration = .seconds(20)
        /// TCP keepalive and user timeout; nil leaves the kernel defaults.
        public var keepaliveTimeout: Duration? = .seconds(24)
        /// Number of ordered lanes for keyed requests.
        public var orderedLanes: Int = System.coreCount
        /// Requests that must be processed in order, by key; nil (the original) runs all concurrently.
        public var orderingKey: (@Sendable (NetCommand, [UInt8]) -> UInt64?)?

        public init(host: String, port: Int = 0) {
            self.host = host
            self.port = port
        }
    }

    /// Why a client's state was dropped.
    public enum GoneReason: Sendable, Equatable {
        /// The FAREWELL response went out and the socket closed.
        case farewell
        /// The client did not reconnect within `reconnectTimeout`.
        case reconnectTimedOut
    }

    let core: Core

    /// The address the server listens on.
    public let localAddress: SocketAddress
    /// The port the server listens on.
    public var port: Int { localAddress.port ?? 0 }
    /// Event counts.
    public var counters: NetCounters { core.counters }

    private init(core: Core, localAddress: SocketAddress) {
        self.core = core
        self.localAddress = localAddress
    }

    /// Binds and starts listening.
    ///
    /// - Parameter group: one of its loops owns the server's state and all its sockets.
    /// - Throws: the bind error.
    public static func start(
        configuration: Configuration,
        handler: any NetServerHandler,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger
    ) async throws -> NetServer {
        let loop = group.next()
        let core = Core(loop: loop, configuration: configuration, handler: handler, logger: logger)
        let keepalive = configuration.keepaliveTimeout
        let channel = try await ServerBootstrap(group: loop)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(ChannelOptions.backlog, value: 255)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try SocketSetup.apply(to: ch, keepaliveTimeout: keepalive)
                    try ch.pipeline.syncOperations.addHandlers([
                        ByteToMessageHandler(NetFrameDecoder()),
                        MessageToByteHandler(NetFrameEncoder()),
                        ServerChannelHandler(core: core),
                    ])
                }
            }
            .bind(host: configuration.host, port: configuration.port)
            .get()
        try await loop.submit { core.listener = channel }.get()
        guard let address = channel.localAddress else {
            channel.close(promise: nil)
            throw NetError.badAddress("\(configuration.host):\(configuration.port)")
        }
        logger.info("server listening", metadata: ["address": "\(address)"])
        return NetServer(core: core, localAddress: address)
    }

    /// Sends a request to the client `rid` and waits for its answer (lock invalidations, lock
    /// recovery, SYNC_LOG_TREES, OPEN_INO_MAP). A client that is away gets it when it comes back.
    ///
    /// - Throws: `.notConnected` for an unknown rid, or when the client's state is dropped
    ///   before it answered; `.remote` with the client's error; `.shutdown`.
    public func request(rid: UInt64, _ cmd: NetCommand, _ payload: [UInt8]) async throws(NetError) -> [UInt8] {
        let core = self.core
        let result: Result<[UInt8], NetError> = await withUnsafeContinuation { cont in
            core.loop.execute { core.submit(rid: rid, cmd, payload, cont) }
        }
        return try result.get()
    }

    /// The rids with messaging state: connected, or disconnected and still awaited.
    public func clients() async -> [UInt64] {
        let core = self.core
        return (try? await core.loop.submit { core.peers.keys.sorted() }.get()) ?? []
    }

    /// Whether the client `rid` currently has an established socket.
    public func isConnected(rid: UInt64) async -> Bool {
        let core = self.core
        return (try? await core.loop.submit { core.peers[rid]?.conn != nil }.get()) ?? false
    }

    /// Drops the client's state at once (after fencing it, for example), closing its socket;
    /// its pending requests fail with `.notConnected`. No `clientGone` is reported.
    public func forget(rid: UInt64) async {
        let core = self.core
        try? await core.loop.submit {
            if let p = core.peers[rid] { core.destroy(p, reason: nil) }
        }.get()
    }

    /// Test hook: closes client `rid`'s socket as if the network broke (its state stays).
    func dropConnectionForTesting(rid: UInt64) async {
        let core = self.core
        try? await core.loop.submit { core.peers[rid]?.conn?.channel.close(promise: nil) }.get()
    }

    /// Closes the listener and every connection; pending requests fail with `.shutdown`.
    /// Handlers still running finish, but their answers are dropped.
    public func shutdown() async {
        let core = self.core
        let closed = core.loop.flatSubmit { core.shutdown() }
        try? await closed.get()
    }
}

extension NetServer {
    /// One accepted socket.
    ///
    /// `@unchecked Sendable`: only touched on the server's loop (see `Core`); handler tasks carry
    /// it back there without reading it.
    final class Conn: @unchecked Sendable {
        let channel: any Channel
        /// The client state this socket carries, once its greeting attached it.
        var peer: Peer?
        var sawGreeting = false
        /// Frames that arrived before the greeting attached this socket to a client's state.
        var early: [NetFrame] = []
        var closed = false

        init(channel: any Channel) { self.channel = channel }
    }

    /// One client's state, by rid; it outlives sockets.
    ///
    /// `@unchecked Sendable`: only touched on the server's loop (see `Core`); handler tasks carry
    /// it back there without reading it.
    final class Peer: @unchecked Sendable {
        let rid: UInt64
        var state = MessagingState(role: .acceptor)
        var conn: Conn?
        var greetingID: UInt64 = 0
        var waiters: [UInt64: UnsafeContinuation<Result<[UInt8], NetError>, Never>] = [:]
        var reconnectTimer: Scheduled<Void>?
        var destroyed = false
        /// Greetings whose `clientGreeted` has not returned yet; requests wait while it is > 0.
        var gates = 0
        /// Requests received while gated, in order.
        var gated: [NetFrame] = []

        init(rid: UInt64) { self.rid = rid }
    }

    /// The server's state, confined to `loop`.
    ///
    /// `@unchecked Sendable`: every mutable property (and every `Conn` and `Peer`) is read and
    /// written only on `loop`: the listener and all accepted channels use that loop, and public
    /// entry points and handler tasks hop there with `execute`/`submit`.
    final class Core: @unchecked Sendable {
        static let maxHeldFrames = 4096

        let loop: any EventLoop
        let configuration: Configuration
        let handler: any NetServerHandler
        let logger: Logger
        let counters = NetCounters()
        let lanes: OrderedLanes
        /// Connection events, in order per rid.
        let events = OrderedLanes(count: 8)

        var listener: (any Channel)?
        var conns: [ObjectIdentifier: Conn] = [:]
        var peers: [UInt64: Peer] = [:]
        var stopped = false

        init(loop: any EventLoop, configuration: Configuration, handler: any NetServerHandler, logger: Logger) {
            self.loop = loop
            self.configuration = configuration
            self.handler = handler
            self.logger = logger
            self.lanes = OrderedLanes(count: configuration.orderedLanes)
        }

        // MARK: Sockets (on loop)

        func accepted(_ ch: any Channel) -> Conn {
            let c = Conn(channel: ch)
            if stopped {
                ch.close(promise: nil)
            } else {
                conns[ObjectIdentifier(c)] = c
                counters.bump(counters.connections)
                logger.debug("server accepted", metadata: ["peer": "\(ch.remoteAddress.map { "\($0)" } ?? "?")"])
            }
            return c
        }

        func closed(_ c: Conn) {
            guard !c.closed else { return }
            c.closed = true
            conns[ObjectIdentifier(c)] = nil
            counters.bump(counters.disconnections)
            guard let peer = c.peer, peer.conn === c else { return }
            c.peer = nil
            peer.conn = nil
            peer.state.socketClosed()
            guard !stopped else { return }
            if peer.state.sentFarewellResponse {
                logger.debug("client left after farewell", metadata: ["rid": "\(hex(peer.rid))"])
                destroy(peer, reason: .farewell)
                return
            }
            logger.info("client disconnected, awaiting reconnect", metadata: ["rid": "\(hex(peer.rid))"])
            peer.reconnectTimer = loop.scheduleTask(in: TimeAmount(configuration.reconnectTimeout)) { [self] in
                guard !peer.destroyed, peer.conn == nil else { return }
                logger.warning("client reconnect timed out", metadata: ["rid": "\(hex(peer.rid))"])
                destroy(peer, reason: .reconnectTimedOut)
            }
            let rid = peer.rid
            let handler = self.handler
            events.enqueue(key: rid) { await handler.clientDisconnected(rid: rid) }
        }

        func invalid(_ c: Conn, _ error: any Error) {
            counters.bump(counters.invalidMessages)
            logger.warning(
                "server closing connection on invalid message: \(error)",
                metadata: ["rid": "\(c.peer.map { hex($0.rid) } ?? "-")"])
            c.channel.close(promise: nil)
        }

        func received(_ frame: NetFrame, on c: Conn) {
            guard !c.closed, !stopped else { return }
            counters.bump(counters.messagesReceived)
            if c.peer == nil && frame.header.cmd == .greeting {
                // the per-socket greeting checks; the peer's state takes over once attached
                if c.sawGreeting || frame.header.isResponse {
                    invalid(c, c.sawGreeting ? NetProtocolError.secondGreeting : NetProtocolError.greetingWrongDirection)
                    return
                }
                c.sawGreeting = true
                startGreeting(frame, on: c)
                return
            }
            guard let peer = c.peer else {
                // nothing but the greeting should come first; keep it for after the greeting
                guard c.early.count < Self.maxHeldFrames else {
                    invalid(c, NetProtocolError.dataTooLong(c.early.count))
                    return
                }
                c.early.append(frame)
                return
            }
            process(frame, peer: peer, on: c)
        }

        private func process(_ frame: NetFrame, peer: Peer, on c: Conn) {
            let delivery: MessagingState.Delivery
            do {
                delivery = try peer.state.receive(frame.header)
            } catch {
                invalid(c, error)
                return
            }
            switch delivery {
            case .request:
                if peer.gates > 0 {
                    peer.gated.append(frame)
                } else {
                    dispatch(frame, peer: peer)
                }
            case .response:
                guard let w = peer.waiters.removeValue(forKey: frame.header.id) else { return }
                let e = frame.header.error
                w.resume(returning: e == .none ? .success(frame.payload) : .failure(.remote(e)))
            case .unmatchedResponse:
                counters.bump(counters.unmatchedResponses)
            case .duplicate:
                counters.bump(counters.duplicatesDropped)
            case .greetingRequest, .greetingResponse:
                break  // the attached state saw this socket's greeting already; a second one throws
            }
        }

        private func dispatch(_ frame: NetFrame, peer: Peer) {
            let handler = self.handler
            let rid = peer.rid
            let (cmd, id, payload) = (frame.header.cmd, frame.header.id, frame.payload)
            let work: @Sendable () async -> Void = { [self] in
                let result = await handler.handle(rid: rid, cmd: cmd, payload: payload)
                loop.execute { [self] in respond(peer: peer, cmd, id: id, result) }
            }
            if let key = configuration.orderingKey?(cmd, payload) {
                lanes.enqueue(key: key, work)
            } else {
                Task(operation: work)
            }
        }

        private func respond(peer: Peer, _ cmd: NetCommand, id: UInt64, _ result: Result<[UInt8], NetErrno>) {
            guard !peer.destroyed, !stopped else { return }
            let (error, payload): (NetWireError, [UInt8])
            switch result {
            case .success(let p): (error, payload) = (.none, p)
            case .failure(let e): (error, payload) = (e.wire, [])
            }
            do {
                if let f = try peer.state.submitResponse(cmd, id: id, error: error, payload: payload) {
                    write(f, to: peer.conn, flush: true)
                }
            } catch {
                logger.error("server response to \(cmd) \(id) not sendable: \(error); answering EINVAL")
                if let f = try? peer.state.submitResponse(cmd, id: id, error: .einval, payload: []) {
                    write(f, to: peer.conn, flush: true)
                }
            }
        }

        // MARK: Greetings (on loop)

        private func startGreeting(_ frame: NetFrame, on c: Conn) {
            let id = frame.header.id
            guard let greeting = try? NetGreeting.decodePayload(frame.payload) else {
                refuseGreeting(c, id: id, error: .einval, why: "greeting payload of \(frame.payload.count) bytes")
                return
            }
            let handler = self.handler
            let address = c.channel.remoteAddress
            Task { [self] in
                let result = await handler.greeting(greeting, from: address)
                loop.execute { [self] in greetingDecided(c, id: id, greeting: greeting, result) }
            }
        }

        private func refuseGreeting(_ c: Conn, id: UInt64, error: NetWireError, why: String) {
            counters.bump(counters.greetingFailures)
            logger.warning("server refused greeting: \(why)")
            // a throwaway state gives the error response a valid seq
            var temp = MessagingState(role: .acceptor)
            temp.socketOpened(greetingReceived: true)
            if let f = try? temp.submitResponse(.greeting, id: id, error: error, payload: []) {
                counters.bump(counters.messagesSent)
                c.channel.writeAndFlush(f, promise: nil)
            }
            c.channel.close(promise: nil)
        }

        private func greetingDecided(
            _ c: Conn, id: UInt64, greeting: NetGreeting, _ result: Result<NetGreeting, NetErrno>
        ) {
            guard !c.closed, !stopped else { return }
            let answer: NetGreeting
            switch result {
            case .failure(let e):
                refuseGreeting(c, id: id, error: e.wire, why: "rid \(hex(greeting.rid)): \(e)")
                return
            case .success(let a):
                answer = a
            }
            let rid = greeting.rid
            let existing = peers[rid]
            let attach = GreetingRules.attach(
                greeting: greeting, greetingID: id, serverTerm: answer.serverTerm,
                existingGreetingID: existing?.greetingID)
            let peer: Peer
            switch attach {
            case .reject:
                counters.bump(counters.greetingFailures)
                logger.info(
                    "server dropping reconnect without state",
                    metadata: ["rid": "\(hex(rid))", "term": "\(greeting.serverTerm)"])
                c.channel.close(promise: nil)
                return
            case .migrate:
                peer = existing!
                if let old = peer.conn {
                    // the old socket of a reconnecting client: it loses its state now
                    old.peer = nil
                    peer.conn = nil
                    peer.state.socketClosed()
                    old.channel.close(promise: nil)
                }
            case .fresh:
                peer = Peer(rid: rid)
                peers[rid] = peer
            }
            peer.reconnectTimer?.cancel()
            peer.reconnectTimer = nil
            peer.greetingID = id
            peer.conn = c
            c.peer = peer
            peer.state.socketOpened(greetingReceived: true)
            // the greeting response goes first, then everything the client has not acknowledged
            if let f = try? peer.state.submitResponse(.greeting, id: id, payload: answer.encoded()) {
                write(f, to: c, flush: false)
            }
            for f in peer.state.enableMessaging() { write(f, to: c, flush: false) }
            c.channel.flush()
            let firstContact = GreetingRules.isFirstContact(greeting: greeting, serverTerm: answer.serverTerm)
            logger.debug(
                "client greeted",
                metadata: ["rid": "\(hex(rid))", "attach": "\(attach)", "first_contact": "\(firstContact)"])
            // requests wait until clientGreeted returned; responses and acks flow at once, so
            // clientGreeted may await requests it sends to this client
            peer.gates += 1
            let handler = self.handler
            events.enqueue(key: rid) { [self] in
                await handler.clientGreeted(rid: rid, greeting: greeting, firstContact: firstContact)
                loop.execute { [self] in ungate(peer) }
            }
            let early = c.early
            c.early = []
            for f in early {
                guard !c.closed, c.peer === peer else { break }
                process(f, peer: peer, on: c)
            }
        }

        private func ungate(_ peer: Peer) {
            peer.gates -= 1
            guard peer.gates == 0, !peer.destroyed else { return }
            let gated = peer.gated
            peer.gated = []
            for f in gated { dispatch(f, peer: peer) }
        }

        // MARK: Requests to clients (on loop)

        func submit(
            rid: UInt64, _ cmd: NetCommand, _ payload: [UInt8],
            _ cont: UnsafeContinuation<Result<[UInt8], NetError>, Never>
        ) {
            guard !stopped else { return cont.resume(returning: .failure(.shutdown)) }
            guard let peer = peers[rid] else { return cont.resume(returning: .failure(.notConnected)) }
            guard cmd != .greeting else { return cont.resume(returning: .failure(.invalid(.greetingNotAllowed))) }
            do {
                let sent = try peer.state.submitRequest(cmd, payload: payload)
                peer.waiters[sent.id] = cont
                if let f = sent.send { write(f, to: peer.conn, flush: true) }
            } catch {
                cont.resume(returning: .failure(.invalid(error)))
            }
        }

        func destroy(_ peer: Peer, reason: GoneReason?) {
            guard !peer.destroyed else { return }
            peer.destroyed = true
            if peers[peer.rid] === peer { peers[peer.rid] = nil }
            peer.reconnectTimer?.cancel()
            peer.reconnectTimer = nil
            if let c = peer.conn {
                c.peer = nil
                peer.conn = nil
                c.channel.close(promise: nil)
            }
            _ = peer.state.removeAll()
            let waiters = peer.waiters
            peer.waiters.removeAll()
            for (_, w) in waiters { w.resume(returning: .failure(stopped ? .shutdown : .notConnected)) }
            if let reason {
                let rid = peer.rid
                let handler = self.handler
                events.enqueue(key: rid) { await handler.clientGone(rid: rid, reason: reason) }
            }
        }

        func shutdown() -> EventLoopFuture<Void> {
            guard !stopped else { return listener?.closeFuture ?? loop.makeSucceededVoidFuture() }
            stopped = true
            for p in Array(peers.values) { destroy(p, reason: nil) }
            var futures: [EventLoopFuture<Void>] = []
            for c in conns.values {
                c.channel.close(promise: nil)
                futures.append(c.channel.closeFuture)
            }
            if let l = listener {
                l.close(promise: nil)
                futures.append(l.closeFuture)
            }
            return EventLoopFuture.andAllComplete(futures, on: loop)
        }

        private func write(_ frame: NetFrame, to c: Conn?, flush: Bool) {
            guard let c, !c.closed else { return }
            counters.bump(counters.messagesSent)
            if flush {
                c.channel.writeAndFlush(frame, promise: nil)
            } else {
                c.channel.write(frame, promise: nil)
            }
        }
    }
}

/// Feeds one accepted socket's frames and events to the server core.
final class ServerChannelHandler: ChannelInboundHandler {
    typealias InboundIn = NetFrame

    let core: NetServer.Core
    var conn: NetServer.Conn?

    init(core: NetServer.Core) { self.core = core }

    func channelActive(context: ChannelHandlerContext) {
        conn = core.accepted(context.channel)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard let conn else { return }
        core.received(unwrapInboundIn(data), on: conn)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let conn { core.closed(conn) }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NetProtocolError, let conn {
            core.invalid(conn, error)
        } else {
            core.logger.debug("server socket error: \(error)")
            context.close(promise: nil)
        }
    }
}

func hex(_ v: UInt64) -> String { v.paddedHex }
