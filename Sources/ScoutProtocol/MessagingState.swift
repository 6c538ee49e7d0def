import DequeModule

/// The reliable-delivery state of one logical connection to one peer, across any number of sockets.
///
/// This is the pure core of the original's `net.c`: sequence numbers, request ids, the resend
/// queue, duplicate dropping and piggy-backed acknowledgements. The shell feeds it events
/// (a socket opened or closed, a message submitted or received, a greeting completed) and writes
/// the frames it returns, **in the order returned**, to the current socket.
///
/// Rules (from the original):
/// * Every submitted message takes the next `seq` (from 1); a request also takes the next `id`
///   (from 1); a response reuses its request's id.
/// * Requests stay queued until their response arrives; responses stay queued until the peer's
///   `recv_seq` reaches their seq. Everything queued is sent again, in seq order, on the next
///   socket once its greeting completes.
/// * Greetings are out of band: they take a seq but never update `recv_seq`, are not acknowledged
///   and are never resent on another socket. Each socket sees one greeting, a request at the
///   acceptor and a response at the connector.
/// * A received message with `seq <= recv_seq` is a duplicate from a resend and is dropped.
/// * Outgoing frames carry the current `recv_seq`, set when they are handed out for sending.
/// * When a connector greets a *new* server, it forgets what it received from the old one
///   (`recv_seq` 0) and drops its queued responses: the new server never asked for them.
///
/// Design notes (deviations from the original):
/// * The connector counts server generations (`peerEpoch`). A request delivered under one epoch
///   whose response is submitted after a new server greeted is dropped here. The original sends
///   it, and the new server could match it to one of its own requests with the same cmd and id.
/// * Messages are kept in a dictionary by seq and sorted only when a socket is (re)established;
///   the original keeps send and resend lists plus two rbtrees.
/// * The greeting reconnect rules live in `GreetingRules`, as a pure function.
public struct MessagingState: Sendable {
    /// Which end of the connection this is.
    public enum Role: Sendable, Equatable {
        /// The client: it connects, sends the greeting request and receives the response.
        case connector
        /// The server's accepted side: it receives the greeting request and answers it.
        case acceptor
    }

    /// Where the current socket is in its life.
    public enum Phase: Sendable, Equatable {
        /// No socket: messages are queued.
        case disconnected
        /// A socket is up and only the greeting may go out.
        case greeting
        /// The greeting completed: messages go out as they are submitted.
        case established
    }

    /// What to do with a received message.
    public enum Delivery: Sendable, Equatable {
        /// Acceptor: a greeting request; answer with `submitResponse(.greeting, ...)` then
        /// `enableMessaging`, or close the socket.
        case greetingRequest
        /// Connector: the response to this socket's greeting.
        case greetingResponse
        /// A request for the local handler; its response must be submitted with this epoch.
        case request(epoch: UInt64)
        /// The response to our pending request `header.id`, which is now removed from the queue.
        case response
        /// A response to no pending request (cancelled, or answered already); drop it.
        case unmatchedResponse
        /// A message received before (resent across a new socket); drop it.
        case duplicate
    }

    /// A submitted request: its id, and the frame to write now if the socket can take it.
    public struct SubmittedRequest: Sendable, Equatable {
        public var id: UInt64
        public var send: NetFrame?
    }

    public let role: Role
    public private(set) var phase: Phase = .disconnected
    /// The seq of the next submitted message.
    public private(set) var nextSendSeq: UInt64 = 1
    /// The id of the next submitted request.
    public private(set) var nextSendID: UInt64 = 1
    /// The last seq received from the peer (sent back as `recv_seq`).
    public private(set) var recvSeq: UInt64 = 0
    /// Connector: how many times a new server greeted. Responses to older epochs' requests are dropped.
    public private(set) var peerEpoch: UInt64 = 0
    /// True once a FAREWELL response was handed out for sending.
    public private(set) var sentFarewellResponse = false

    /// A greeting arrived on the current socket.
    private var sawGreeting = false
    /// The id of the greeting request sent on the current socket (connector).
    private var greetingRequestID: UInt64?
    /// Requests awaiting their response and responses awaiting their ack, by seq. No greetings.
    private var queued: [UInt64: NetFrame] = [:]
    /// The seq of each pending request, by id.
    private var requestSeqs: [UInt64: UInt64] = [:]
    /// The seqs of queued responses, ascending (acks free them from the front).
    private var responseSeqs: Deque<UInt64> = []

    public init(role: Role) {
        self.role = role
    }

    /// Messages kept for (re)sending: pending requests and unacknowledged responses.
    public var queuedCount: Int { queued.count }
    /// Requests still waiting for a response (greeting excluded).
    public var pendingRequestCount: Int { requestSeqs.count }
    /// Whether request `id` still waits for its response.
    public func isPending(id: UInt64) -> Bool { requestSeqs[id] != nil || id == greetingRequestID }

    // MARK: - Sockets

    /// A new socket is up; only a greeting may be sent on it until `enableMessaging`.
    ///
    /// - Parameter greetingReceived: the acceptor already read this socket's greeting request
    ///   (it is attached to the rid's state only after that).
    public mutating func socketOpened(greetingReceived: Bool = false) {
        phase = .greeting
        sawGreeting = greetingReceived
        greetingRequestID = nil
    }

    /// The socket is gone. Everything queued stays for the next socket, except greetings.
    ///
    /// - Returns: the id of this socket's unanswered greeting request, whose waiter should fail.
    @discardableResult
    public mutating func socketClosed() -> UInt64? {
        phase = .disconnected
        sawGreeting = false
        defer { greetingRequestID = nil }
        return greetingRequestID
    }

    /// The greeting completed: from now on messages go out as submitted.
    ///
    /// - Parameter newPeer: connector only, the server's term differs from the last one seen:
    ///   forget received seqs and drop queued responses, and start a new epoch.
    /// - Returns: everything queued, in seq order, to write now (after the greeting response).
    ///   Empty when no socket waits for its greeting.
    public mutating func enableMessaging(newPeer: Bool = false) -> [NetFrame] {
        guard phase == .greeting else { return [] }
        if newPeer {
            recvSeq = 0
            for seq in responseSeqs { queued[seq] = nil }
            responseSeqs.removeAll()
            peerEpoch &+= 1
        }
        phase = .established
        var frames = Array(queued.values)
        frames.sort { $0.header.seq < $1.header.seq }
        for i in frames.indices {
            frames[i].header.recvSeq = recvSeq
            if frames[i].header.isResponse && frames[i].header.cmd == .farewell { sentFarewellResponse = true }
        }
        return frames
    }

    // MARK: - Sending

    /// Queues a request, assigning its seq and id.
    ///
    /// A greeting request (connector only, while the socket waits for its greeting) is sent at
    /// once and never resent; other requests go out now if the socket is established, else later.
    ///
    /// - Throws: `.dataTooLong` for a payload over 1100 bytes, `.greetingNotAllowed` for a
    ///   greeting anywhere else.
    public mutating func submitRequest(_ cmd: NetCommand, payload: [UInt8]) throws(NetProtocolError) -> SubmittedRequest {
        guard payload.count <= NetHeader.maxDataLength else { throw .dataTooLong(payload.count) }
        if cmd == .greeting {
            guard role == .connector, phase == .greeting, greetingRequestID == nil else { throw .greetingNotAllowed }
        }
        let seq = nextSendSeq
        let id = nextSendID
        nextSendSeq += 1
        nextSendID += 1
        let frame = NetFrame(
            header: NetHeader(seq: seq, id: id, dataLen: UInt16(payload.count), cmd: cmd, isResponse: false),
            payload: payload)
        if cmd == .greeting {
            greetingRequestID = id
            return SubmittedRequest(id: id, send: stamped(frame))
        }
        queued[seq] = frame
        requestSeqs[id] = seq
        return SubmittedRequest(id: id, send: phase == .established ? stamped(frame) : nil)
    }

    /// Queues the response to request `id`, assigning its seq.
    ///
    /// An error response carries no payload (the payload is dropped, as in the original). A
    /// greeting response (acceptor only, while the socket waits for its greeting) is sent at once
    /// and never kept.
    ///
    /// - Parameter epoch: the epoch the request was delivered in; a response to an older epoch's
    ///   request is dropped (nil is returned and nothing is queued).
    /// - Returns: the frame to write now, if any.
    /// - Throws: `.dataTooLong`, `.zeroID`, `.greetingNotAllowed`.
    public mutating func submitResponse(
        _ cmd: NetCommand, id: UInt64, error: NetWireError = .none, payload: [UInt8], epoch: UInt64? = nil
    ) throws(NetProtocolError) -> NetFrame? {
        guard id != 0 else { throw .zeroID }
        let payload = error == .none ? payload : []
        guard payload.count <= NetHeader.maxDataLength else { throw .dataTooLong(payload.count) }
        if cmd == .greeting {
            guard role == .acceptor, phase == .greeting else { throw .greetingNotAllowed }
        }
        if let epoch, epoch != peerEpoch { return nil }
        let seq = nextSendSeq
        nextSendSeq += 1
        let frame = NetFrame(
            header: NetHeader(
                seq: seq, id: id, dataLen: UInt16(payload.count), cmd: cmd, isResponse: true, error: error),
            payload: payload)
        if cmd == .greeting { return stamped(frame) }
        queued[seq] = frame
        responseSeqs.append(seq)
        guard phase == .established else { return nil }
        if cmd == .farewell { sentFarewellResponse = true }
        return stamped(frame)
    }

    /// Stops waiting for request `id`: it will not be resent, and its response will be unmatched.
    ///
    /// - Returns: whether the request was pending.
    @discardableResult
    public mutating func cancelRequest(id: UInt64) -> Bool {
        if id == greetingRequestID {
            greetingRequestID = nil
            return true
        }
        guard let seq = requestSeqs.removeValue(forKey: id) else { return false }
        queued[seq] = nil
        return true
    }

    /// Drops everything (the connection is being destroyed).
    ///
    /// - Returns: the ids of the requests that were still waiting, whose waiters should fail.
    public mutating func removeAll() -> [UInt64] {
        var ids = Array(requestSeqs.keys)
        if let g = greetingRequestID { ids.append(g) }
        ids.sort()
        queued.removeAll()
        requestSeqs.removeAll()
        responseSeqs.removeAll()
        greetingRequestID = nil
        return ids
    }

    // MARK: - Receiving

    /// Classifies a received message (whose header already passed `NetHeader.decode`), updating
    /// `recv_seq`, freeing acknowledged responses and removing an answered request.
    ///
    /// - Throws: `.secondGreeting` or `.greetingWrongDirection`; the socket must then be closed.
    public mutating func receive(_ header: NetHeader) throws(NetProtocolError) -> Delivery {
        if header.cmd == .greeting {
            if sawGreeting { throw .secondGreeting }
            // servers receive greeting requests, clients receive responses
            if (role == .acceptor) == header.isResponse { throw .greetingWrongDirection }
            sawGreeting = true
            if role == .acceptor { return .greetingRequest }
            guard let g = greetingRequestID, g == header.id else { return .unmatchedResponse }
            greetingRequestID = nil
            return .greetingResponse
        }
        if header.seq <= recvSeq { return .duplicate }
        recvSeq = header.seq
        while let first = responseSeqs.first, first <= header.recvSeq {
            responseSeqs.removeFirst()
            queued[first] = nil
        }
        guard header.isResponse else { return .request(epoch: peerEpoch) }
        guard let seq = requestSeqs[header.id], queued[seq]?.header.cmd == header.cmd else {
            return .unmatchedResponse
        }
        requestSeqs[header.id] = nil
        queued[seq] = nil
        return .response
    }

    private func stamped(_ frame: NetFrame) -> NetFrame {
        var f = frame
        f.header.recvSeq = recvSeq
        return f
    }
}

/// The original's rules for attaching a greeting to a client's messaging state.
public enum GreetingRules {
    /// What the acceptor does with a valid, accepted greeting.
    public enum Attach: Sendable, Equatable {
        /// Move the rid's existing state (seqs, queues) to this socket, closing its old socket.
        case migrate
        /// Start new state for the rid.
        case fresh
        /// Close this socket: it lost a race with a newer greeting, or the rid's state is gone and
        /// it may not start over.
        case reject
    }

    /// Decides how a greeting attaches.
    ///
    /// - Parameters:
    ///   - greeting: the client's greeting request.
    ///   - greetingID: the greeting request's message id (a client's ids increase, so the newest
    ///     of several racing greetings wins).
    ///   - serverTerm: this server's term.
    ///   - existingGreetingID: the greeting id of the rid's current state, if the server has one.
    ///
    /// Rules: existing state with an older greeting is migrated; existing state from a newer or
    /// the same greeting wins, and this socket is rejected. Without state, a client that
    /// reconnects (term ≠ 0) to this same server (term = ours) without the FAREWELL flag lost its
    /// state and is rejected; everyone else starts fresh.
    ///
    /// Deviation: the original only looks for old state when term ≠ 0. A client that dropped
    /// before it saw its first greeting response greets again with term 0; the original gives it
    /// new state and leaves the old one to time out, which fences the client. Here it migrates.
    public static func attach(
        greeting: NetGreeting, greetingID: UInt64, serverTerm: UInt64, existingGreetingID: UInt64?
    ) -> Attach {
        if let existing = existingGreetingID {
            return existing >= greetingID ? .reject : .migrate
        }
        let reconnecting = greeting.serverTerm != 0
        let firstContact = greeting.serverTerm != serverTerm
        if reconnecting && !firstContact && !greeting.isFarewell { return .reject }
        return .fresh
    }

    /// Whether a server's term is a new server for a client that last saw `knownTerm` (0: none).
    public static func isNewServer(knownTerm: UInt64, responseTerm: UInt64) -> Bool {
        responseTerm != knownTerm
    }

    /// Whether the server sees this greeting as the client's first contact with it.
    public static func isFirstContact(greeting: NetGreeting, serverTerm: UInt64) -> Bool {
        greeting.serverTerm != serverTerm
    }
}
