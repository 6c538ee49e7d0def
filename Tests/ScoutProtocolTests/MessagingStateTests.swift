import ScoutFormat
import ScoutTestSupport
import Testing

@testable import ScoutProtocol

@Suite struct MessagingStateTests {
    static let greeting = NetGreeting(fsid: 1, fmtVers: 2, rid: 3).encoded()

    /// A connector and acceptor joined by one socket and greeted, as a starting point.
    static func greetedPair() throws -> (c: MessagingState, s: MessagingState) {
        var c = MessagingState(role: .connector)
        var s = MessagingState(role: .acceptor)
        c.socketOpened()
        s.socketOpened()
        let g = try #require(try c.submitRequest(.greeting, payload: greeting).send)
        #expect(try s.receive(g.header) == .greetingRequest)
        let resp = try #require(try s.submitResponse(.greeting, id: g.header.id, payload: greeting))
        #expect(s.enableMessaging().isEmpty)
        #expect(try c.receive(resp.header) == .greetingResponse)
        #expect(c.enableMessaging(newPeer: true).isEmpty)
        return (c, s)
    }

    @Test func seqsAndIDs() throws {
        var (c, s) = try Self.greetedPair()
        // the greeting took seq 1 and id 1 on both sides' counters
        let a = try c.submitRequest(.statfs, payload: [])
        let b = try c.submitRequest(.getRoots, payload: [])
        #expect(a.id == 2 && b.id == 3)
        #expect(a.send?.header.seq == 2 && b.send?.header.seq == 3)
        #expect(try s.receive(a.send!.header) == .request(epoch: 0))
        let r = try #require(try s.submitResponse(.statfs, id: a.id, payload: [9]))
        #expect(r.header.seq == 2 && r.header.id == 2 && r.header.isResponse)
        // recv_seq is stamped at send time: the acceptor has received seq 2
        #expect(r.header.recvSeq == 2)
        #expect(try c.receive(r.header) == .response)
        #expect(!c.isPending(id: a.id) && c.isPending(id: b.id))
        #expect(c.pendingRequestCount == 1)
    }

    @Test func duplicatesAreDropped() throws {
        var (c, s) = try Self.greetedPair()
        let a = try #require(try c.submitRequest(.statfs, payload: []).send)
        #expect(try s.receive(a.header) == .request(epoch: 0))
        #expect(try s.receive(a.header) == .duplicate)
        var older = a.header
        older.seq -= 1
        #expect(try s.receive(older) == .duplicate)
        #expect(s.recvSeq == a.header.seq)
    }

    @Test func greetingRules() throws {
        var (c, s) = try Self.greetedPair()
        // a second greeting on a socket, in either direction
        let g = NetHeader(seq: 50, id: 50, dataLen: 40, cmd: .greeting, isResponse: false)
        #expect(throws: NetProtocolError.secondGreeting) { try s.receive(g) }
        var gr = g
        gr.isResponse = true
        #expect(throws: NetProtocolError.secondGreeting) { try c.receive(gr) }
        // wrong directions on fresh sockets
        var c2 = MessagingState(role: .connector)
        c2.socketOpened()
        #expect(throws: NetProtocolError.greetingWrongDirection) { try c2.receive(g) }
        var s2 = MessagingState(role: .acceptor)
        s2.socketOpened()
        #expect(throws: NetProtocolError.greetingWrongDirection) { try s2.receive(gr) }
        // greetings may only be submitted by the right side, on a socket waiting for one
        #expect(throws: NetProtocolError.greetingNotAllowed) { try c.submitRequest(.greeting, payload: []) }
        #expect(throws: NetProtocolError.greetingNotAllowed) { try s2.submitRequest(.greeting, payload: []) }
        #expect(throws: NetProtocolError.greetingNotAllowed) { try c2.submitResponse(.greeting, id: 1, payload: []) }
        _ = try c2.submitRequest(.greeting, payload: [])
        #expect(throws: NetProtocolError.greetingNotAllowed) { try c2.submitRequest(.greeting, payload: []) }
        // and messages carry at most 1100 bytes
        let big = [UInt8](repeating: 0, count: 1101)
        #expect(throws: NetProtocolError.dataTooLong(1101)) { try c.submitRequest(.lock, payload: big) }
        #expect(throws: NetProtocolError.dataTooLong(1101)) { try s.submitResponse(.lock, id: 4, payload: big) }
    }

    @Test func queuedWhileDisconnectedThenSentInOrderAfterGreeting() throws {
        var c = MessagingState(role: .connector)
        let a = try c.submitRequest(.statfs, payload: [1])
        let b = try c.submitRequest(.lock, payload: [2])
        #expect(a.send == nil && b.send == nil)
        c.socketOpened()
        let c3 = try c.submitRequest(.getRoots, payload: [3])
        #expect(c3.send == nil)  // only the greeting goes out before the greeting completes
        let g = try c.submitRequest(.greeting, payload: Self.greeting)
        #expect(g.send?.header.seq == 4)
        #expect(c.enableMessaging(newPeer: true).map(\.payload) == [[1], [2], [3]])
        #expect(c.phase == .established)
    }

    @Test func errorResponsesCarryNoPayload() throws {
        var (_, s) = try Self.greetedPair()
        let r = try #require(try s.submitResponse(.getLogMerge, id: 7, error: .enoent, payload: [1, 2]))
        #expect(r.payload.isEmpty && r.header.dataLen == 0 && r.header.error == .enoent)
        #expect(throws: NetProtocolError.zeroID) { try s.submitResponse(.statfs, id: 0, payload: []) }
    }

    @Test func acksFreeResponsesAndReconnectResendsTheRest() throws {
        var (c, s) = try Self.greetedPair()
        let reqs = try (0..<3).map { i in try #require(try c.submitRequest(.statfs, payload: [UInt8(i)]).send) }
        for r in reqs { #expect(try s.receive(r.header) == .request(epoch: 0)) }
        let resps = try reqs.map { r in try #require(try s.submitResponse(.statfs, id: r.header.id, payload: r.payload)) }
        #expect(s.queuedCount == 3)
        // the client got the first response only; a later client message acks it
        #expect(try c.receive(resps[0].header) == .response)
        let ack = try #require(try c.submitRequest(.getRoots, payload: []).send)
        #expect(ack.header.recvSeq == resps[0].header.seq)
        #expect(try s.receive(ack.header) == .request(epoch: 0))
        #expect(s.queuedCount == 2)
        // the socket breaks: the two unacked responses go out again, in order, on the same peer
        c.socketClosed()
        s.socketClosed()
        c.socketOpened()
        s.socketOpened(greetingReceived: true)
        let again = s.enableMessaging()
        #expect(again.map(\.header.seq) == [resps[1].header.seq, resps[2].header.seq])
        #expect(again.allSatisfy { $0.header.recvSeq == ack.header.seq })
        // the client had received nothing else, so its getRoots request is resent too
        let g = try #require(try c.submitRequest(.greeting, payload: Self.greeting).send)
        _ = g
        let cAgain = c.enableMessaging(newPeer: false)
        #expect(cAgain.map(\.header.id) == [reqs[1].header.id, reqs[2].header.id, ack.header.id])
        for f in cAgain.prefix(2) { #expect(try s.receive(f.header) == .duplicate) }
        #expect(try s.receive(cAgain[2].header) == .duplicate)
        for r in again { #expect(try c.receive(r.header) == .response) }
        #expect(c.pendingRequestCount == 1)  // getRoots is still unanswered
    }

    @Test func newServerDropsResponsesAndOldEpochAnswers() throws {
        var (c, s) = try Self.greetedPair()
        // the server asks the client something, and the client owes it an answer
        let srvReq = try #require(try s.submitRequest(.lock, payload: [1]).send)
        guard case .request(let epoch) = try c.receive(srvReq.header) else { Issue.record("not a request"); return }
        // and the client answered an earlier one that the server never acknowledged
        let srvReq2 = try #require(try s.submitRequest(.syncLogTrees, payload: []).send)
        #expect(try c.receive(srvReq2.header) == .request(epoch: epoch))
        #expect(try c.submitResponse(.syncLogTrees, id: srvReq2.header.id, payload: [], epoch: epoch) != nil)
        let pending = try c.submitRequest(.statfs, payload: [])
        _ = pending
        // failover: a new server greets
        c.socketClosed()
        c.socketOpened()
        _ = try c.submitRequest(.greeting, payload: Self.greeting)
        let resend = c.enableMessaging(newPeer: true)
        #expect(resend.map(\.header.cmd) == [.statfs])  // the response is gone, the request stays
        #expect(c.recvSeq == 0 && c.peerEpoch == epoch + 1)
        // the late answer to the old server's request is dropped
        #expect(try c.submitResponse(.lock, id: srvReq.header.id, payload: [1], epoch: epoch) == nil)
        #expect(c.queuedCount == 1)
        // a new server's first message (seq 1) is accepted again
        #expect(try c.receive(NetHeader(seq: 1, id: 1, dataLen: 0, cmd: .syncLogTrees, isResponse: false)) == .request(epoch: epoch + 1))
    }

    @Test func cancelAndRemoveAll() throws {
        var (c, _) = try Self.greetedPair()
        let a = try c.submitRequest(.statfs, payload: [])
        let b = try c.submitRequest(.statfs, payload: [])
        let first = c.cancelRequest(id: a.id)
        let second = c.cancelRequest(id: a.id)
        #expect(first && !second)
        // the answer to a cancelled request no longer matches
        #expect(try c.receive(NetHeader(seq: 9, id: a.id, dataLen: 0, cmd: .statfs, isResponse: true)) == .unmatchedResponse)
        // an answer with the wrong command doesn't match either
        #expect(try c.receive(NetHeader(seq: 10, id: b.id, dataLen: 0, cmd: .lock, isResponse: true)) == .unmatchedResponse)
        #expect(c.removeAll() == [b.id])
        #expect(c.queuedCount == 0)
    }

    @Test func farewellResponseIsNotedWhenSent() throws {
        var (c, s) = try Self.greetedPair()
        let f = try #require(try c.submitRequest(.farewell, payload: []).send)
        #expect(try s.receive(f.header) == .request(epoch: 0))
        s.socketClosed()
        #expect(try s.submitResponse(.farewell, id: f.header.id, payload: []) == nil)
        #expect(!s.sentFarewellResponse)
        s.socketOpened(greetingReceived: true)
        #expect(s.enableMessaging().count == 1)
        #expect(s.sentFarewellResponse)
    }

    @Test(arguments: [
        // (client term, farewell, existing greeting id, expected)
        (UInt64(0), false, UInt64?.none, GreetingRules.Attach.fresh),
        (0, false, 3, .migrate),
        (0, false, 10, .reject),
        (7, false, nil, .reject),  // reconnect to this server, state gone
        (7, true, nil, .fresh),  // ... unless it is saying farewell
        (7, false, 4, .migrate),
        (7, false, 12, .reject),  // a newer greeting already won
        (5, false, nil, .fresh),  // first contact after failover
    ])
    func greetingAttach(term: UInt64, farewell: Bool, existing: UInt64?, expected: GreetingRules.Attach) {
        let g = NetGreeting(
            fsid: 1, fmtVers: 2, serverTerm: term, rid: 9, flags: farewell ? NetGreeting.flagFarewell : 0)
        #expect(GreetingRules.attach(greeting: g, greetingID: 10, serverTerm: 7, existingGreetingID: existing) == expected)
    }
}

/// A seeded simulation of one client and one server over a socket that breaks at random: every
/// request in both directions is processed exactly once and answered exactly once.
@Suite struct MessagingSimulationTests {
    struct Sim {
        var rng: SplitMix64
        var c = MessagingState(role: .connector)
        var s = MessagingState(role: .acceptor)
        var toS: [NetFrame] = []
        var toC: [NetFrame] = []
        var connected = false
        var clientTerm: UInt64 = 0
        let serverTerm: UInt64 = 7
        // per direction: submitted ids, processed counts, answered counts, unanswered work
        var cSubmitted: Set<UInt64> = []
        var sProcessed: [UInt64: Int] = [:]
        var cAnswered: [UInt64: Int] = [:]
        var sWork: [(id: UInt64, epoch: UInt64, payload: [UInt8])] = []
        var sSubmitted: Set<UInt64> = []
        var cProcessed: [UInt64: Int] = [:]
        var sAnswered: [UInt64: Int] = [:]
        var cWork: [(id: UInt64, epoch: UInt64, payload: [UInt8])] = []
        var duplicates = 0
        var breaks = 0

        init(seed: UInt64) { rng = SplitMix64(seed: seed) }

        mutating func connect() throws {
            connected = true
            c.socketOpened()
            s.socketOpened()
            let g = NetGreeting(fsid: 1, fmtVers: 2, serverTerm: clientTerm, rid: 5)
            let sent = try c.submitRequest(.greeting, payload: g.encoded())
            toS.append(try #require(sent.send))
        }

        mutating func breakSocket() {
            connected = false
            breaks += 1
            toS.removeAll()
            toC.removeAll()
            c.socketClosed()
            s.socketClosed()
        }

        mutating func deliverToServer() throws {
            let f = toS.removeFirst()
            switch try s.receive(f.header) {
            case .greetingRequest:
                let g = try NetGreeting.decodePayload(f.payload)
                var resp = g
                resp.serverTerm = serverTerm
                toC.append(try #require(try s.submitResponse(.greeting, id: f.header.id, payload: resp.encoded())))
                toC += s.enableMessaging()
            case .request(let epoch):
                // identify the request by its payload (its id) so a re-delivery would be seen
                sProcessed[f.header.id, default: 0] += 1
                sWork.append((f.header.id, epoch, f.payload))
            case .response:
                sAnswered[f.header.id, default: 0] += 1
            case .duplicate:
                duplicates += 1
            case .unmatchedResponse:
                break
            case .greetingResponse:
                Issue.record("server got a greeting response")
            }
        }

        mutating func deliverToClient() throws {
            let f = toC.removeFirst()
            switch try c.receive(f.header) {
            case .greetingResponse:
                let g = try NetGreeting.decodePayload(f.payload)
                let newServer = GreetingRules.isNewServer(knownTerm: clientTerm, responseTerm: g.serverTerm)
                clientTerm = g.serverTerm
                toS += c.enableMessaging(newPeer: newServer)
            case .request(let epoch):
                cProcessed[f.header.id, default: 0] += 1
                cWork.append((f.header.id, epoch, f.payload))
            case .response:
                cAnswered[f.header.id, default: 0] += 1
                #expect(f.payload == Array(f.header.id.littleEndianBytes))
            case .duplicate:
                duplicates += 1
            case .unmatchedResponse:
                break
            case .greetingRequest:
                Issue.record("client got a greeting request")
            }
        }

        mutating func step() throws {
            switch rng.below(100) {
            case 0..<15:
                let r = try c.submitRequest(.statfs, payload: Array(c.nextSendID.littleEndianBytes))
                cSubmitted.insert(r.id)
                if let f = r.send { toS.append(f) }
            case 15..<22:
                let r = try s.submitRequest(.lock, payload: [])
                sSubmitted.insert(r.id)
                if let f = r.send { toC.append(f) }
            case 22..<45 where !toS.isEmpty:
                try deliverToServer()
            case 45..<68 where !toC.isEmpty:
                try deliverToClient()
            case 68..<80 where !sWork.isEmpty:
                let w = sWork.remove(at: rng.below(sWork.count))
                if let f = try s.submitResponse(.statfs, id: w.id, payload: Array(w.id.littleEndianBytes), epoch: w.epoch) {
                    toC.append(f)
                }
            case 80..<88 where !cWork.isEmpty:
                let w = cWork.remove(at: rng.below(cWork.count))
                if let f = try c.submitResponse(.lock, id: w.id, payload: [], epoch: w.epoch) { toS.append(f) }
            case 88..<93 where connected:
                breakSocket()
            case 93..<100 where !connected:
                try connect()
            default:
                break
            }
        }

        /// Runs to quiescence on a socket that stays up.
        mutating func drain() throws {
            if !connected { try connect() }
            for _ in 0..<100_000 {
                if !toS.isEmpty {
                    try deliverToServer()
                } else if !toC.isEmpty {
                    try deliverToClient()
                } else if let w = sWork.popLast() {
                    if let f = try s.submitResponse(.statfs, id: w.id, payload: Array(w.id.littleEndianBytes), epoch: w.epoch) {
                        toC.append(f)
                    }
                } else if let w = cWork.popLast() {
                    if let f = try c.submitResponse(.lock, id: w.id, payload: [], epoch: w.epoch) { toS.append(f) }
                } else {
                    return
                }
            }
            Issue.record("did not quiesce")
        }
    }

    @Test(arguments: 0..<40)
    func exactlyOnceAcrossBrokenSockets(seed: Int) throws {
        var sim = Sim(seed: UInt64(seed) &* 0x9e37_79b9 &+ 1)
        for _ in 0..<3000 { try sim.step() }
        try sim.drain()
        #expect(sim.cSubmitted.count > 0 && sim.sSubmitted.count > 0)
        // the run must have broken sockets and resent what the peer already had
        #expect(sim.breaks > 10 && sim.duplicates > 0)
        for id in sim.cSubmitted {
            #expect(sim.sProcessed[id] == 1, "client request \(id) processed \(sim.sProcessed[id] ?? 0) times, seed \(seed)")
            #expect(sim.cAnswered[id] == 1, "client request \(id) answered \(sim.cAnswered[id] ?? 0) times, seed \(seed)")
        }
        for id in sim.sSubmitted {
            #expect(sim.cProcessed[id] == 1, "server request \(id) processed \(sim.cProcessed[id] ?? 0) times, seed \(seed)")
            #expect(sim.sAnswered[id] == 1, "server request \(id) answered \(sim.sAnswered[id] ?? 0) times, seed \(seed)")
        }
        #expect(sim.c.pendingRequestCount == 0 && sim.s.pendingRequestCount == 0)
    }
}

extension UInt64 {
    var littleEndianBytes: [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: self >> (8 * UInt64($0))) } }
}
