import ScoutFormat
import ScoutQuorum
import Testing

/// One machine driven by hand, with helpers that walk it into each role.
struct Harness {
    var machine: QuorumStateMachine
    var now = MonotonicInstant.milliseconds(1000)
    let rid: UInt64

    init(slot: Int = 0, members: [Int] = [0, 1, 2], rid: UInt64 = 0xa0, heartbeatTimeoutMs: Int = 10_000, seed: UInt64 = 7) throws {
        let configuration = try QuorumMachineConfiguration(
            slot: slot, members: SlotSet(members), rid: rid, heartbeatTimeoutMs: heartbeatTimeoutMs, seed: seed)
        machine = QuorumStateMachine(configuration: configuration)
        self.rid = rid
    }

    var slot: Int { machine.slot }

    /// Applies an input `afterMs` milliseconds after the previous one.
    @discardableResult
    mutating func step(_ input: QuorumInput, afterMs: UInt64 = 0) -> QuorumTransition {
        now = now.advanced(byMilliseconds: afterMs)
        return machine.handle(input, now: now)
    }

    /// Moves the clock to the machine's deadline and gives it the timeout.
    @discardableResult
    mutating func timeout() -> QuorumTransition {
        now = max(now, machine.deadline)
        return machine.handle(.receiveTimedOut, now: now)
    }

    /// A message from another slot.
    @discardableResult
    mutating func receive(_ type: QuorumMessageType, term: UInt64, from: Int, afterMs: UInt64 = 0) -> QuorumTransition {
        step(.received(QuorumMessage(fsid: 1, term: term, type: type, from: UInt8(from))), afterMs: afterMs)
    }

    /// Blocks of every configured slot, empty unless given.
    func blocks(_ given: [Int: QuorumBlock] = [:]) -> QuorumBlockSet {
        var set = QuorumBlockSet()
        for s in machine.configuration.members { set[s] = given[s] ?? quorumBlock(s) }
        return set
    }

    @discardableResult
    mutating func start(_ given: [Int: QuorumBlock] = [:]) -> QuorumTransition {
        step(.start(blocks(given)))
    }

    /// Started, then a candidate in the next term.
    mutating func candidate() {
        if machine.lifecycle == .notStarted { start() }
        timeout()
    }

    /// Started, elected, blocks checked, server requested.
    mutating func leader() {
        candidate()
        for other in machine.configuration.members where other != slot {
            if case .candidate = machine.role { receive(.vote, term: machine.term, from: other) }
        }
        step(.quorumBlocksRead(blocks([slot: ownBlock()])))
    }

    /// Our block as it would be after our writes (ELECT in the current term).
    func ownBlock() -> QuorumBlock {
        quorumBlock(slot, [.begin: (rid, 0), .term: (rid, machine.term), .elect: (rid, machine.term)])
    }
}

/// The actions without the final wake-up.
func core(_ t: QuorumTransition) -> [QuorumAction] {
    if case .wakeAt = t.actions.last { return Array(t.actions.dropLast()) }
    return t.actions
}

func notes(_ t: QuorumTransition) -> [QuorumNote] {
    t.actions.compactMap { if case .note(let n) = $0 { n } else { nil } }
}

func withoutNotes(_ t: QuorumTransition) -> [QuorumAction] {
    core(t).filter { if case .note = $0 { false } else { true } }
}

@Suite("Quorum configuration")
struct QuorumConfigurationTests {
    @Test("bad parameters are typed errors")
    func rejected() {
        #expect(throws: QuorumConfigurationError.slotOutOfRange(15)) {
            try QuorumMachineConfiguration(slot: 15, members: SlotSet([0]), rid: 1, seed: 0)
        }
        #expect(throws: QuorumConfigurationError.slotOutOfRange(-1)) {
            try QuorumMachineConfiguration(slot: -1, members: SlotSet([0]), rid: 1, seed: 0)
        }
        #expect(throws: QuorumConfigurationError.noConfiguredSlots) {
            try QuorumMachineConfiguration(slot: 0, members: SlotSet(), rid: 1, seed: 0)
        }
        #expect(throws: QuorumConfigurationError.slotNotConfigured(slot: 2, configured: SlotSet([0, 1]))) {
            try QuorumMachineConfiguration(slot: 2, members: SlotSet([0, 1]), rid: 1, seed: 0)
        }
        for ms in [0, 1999, 60_001, -1] {
            #expect(throws: QuorumConfigurationError.heartbeatTimeoutOutOfRange(ms)) {
                try QuorumMachineConfiguration(slot: 0, members: SlotSet([0]), rid: 1, heartbeatTimeoutMs: ms, seed: 0)
            }
        }
        #expect(throws: QuorumConfigurationError.invalidRid) {
            try QuorumMachineConfiguration(slot: 0, members: SlotSet([0]), rid: 0, seed: 0)
        }
        #expect(QuorumConfigurationError.slotNotConfigured(slot: 2, configured: SlotSet([0, 1])).description.contains("must be one of"))
    }

    @Test("votes needed: majority, but 1 with one or two slots", arguments: [(1, 1), (2, 1), (3, 2), (4, 3), (5, 3), (6, 4), (15, 8)])
    func votesNeeded(count: Int, needed: Int) throws {
        let c = try QuorumMachineConfiguration(slot: 0, members: SlotSet(0..<count), rid: 1, seed: 0)
        #expect(c.votesNeeded == needed)
    }

    @Test("the heartbeat timeout limits are 2000 and 60000 ms")
    func heartbeatLimits() throws {
        try QuorumMachineConfiguration.validateHeartbeatTimeout(2000)
        try QuorumMachineConfiguration.validateHeartbeatTimeout(60_000)
        #expect(Format.quorumDefaultHeartbeatTimeoutMs == 10_000)
    }
}

@Suite("Quorum state machine")
struct QuorumStateMachineTests {
    // MARK: start

    @Test("start: term from every block, BEGIN, election timeout of 250..<350 ms")
    func start() throws {
        var h = try Harness()
        let t = h.start([1: quorumBlock(1, [.term: (5, 12)]), 2: quorumBlock(2, [.begin: (6, 3)])])
        #expect(core(t) == [.writeEvent(.begin, term: 12)])
        #expect(h.machine.term == 12)
        #expect(h.machine.vote == .unknown)
        #expect(h.machine.role == .follower)
        let wait = h.machine.deadline.nanoseconds(since: h.now)
        #expect(wait >= 250_000_000 && wait < 350_000_000)
        #expect(t.actions.last == .wakeAt(h.machine.deadline))
    }

    @Test("start: a running server on disk makes us wait the heartbeat timeout")
    func startWithLeader() throws {
        var h = try Harness(heartbeatTimeoutMs: 4000)
        h.start([2: quorumBlock(2, [.elect: (9, 4)])])
        #expect(h.machine.deadline == h.now.advanced(byMilliseconds: 4000))
        #expect(h.machine.startLeader?.slot == 2)
    }

    @Test("start: a running server in our own slot is our previous mount, gone")
    func startWithOwnOldLeader() throws {
        var h = try Harness(heartbeatTimeoutMs: 4000)
        h.start([0: quorumBlock(0, [.elect: (9, 4)])])
        #expect(h.machine.deadline.nanoseconds(since: h.now) < 350_000_000)
        #expect(h.machine.term == 4)
    }

    @Test("inputs before start are ignored; shutdown before start just stops")
    func beforeStart() throws {
        var h = try Harness()
        for input: QuorumInput in [.receiveTimedOut, .serverStatus(.up, term: 1), .setHeartbeatTimeout(milliseconds: 3000), .quorumBlocksRead(h.blocks())] {
            let t = h.step(input)
            #expect(t.actions.isEmpty)
            #expect(t.ignored == .notStarted)
        }
        let r1 = h.receive(.heartbeat, term: 3, from: 1)
        #expect(r1.ignored == .notStarted)
        let r2 = h.step(.shutdown)
        #expect(r2.actions == [.stopped])
        let r3 = h.step(.start(h.blocks()))
        #expect(r3.ignored == .stopped)
    }

    @Test("a second start is ignored")
    func startTwice() throws {
        var h = try Harness()
        h.start()
        let t = h.step(.start(h.blocks([1: quorumBlock(1, [.term: (3, 50)])])))
        #expect(t.ignored == .alreadyStarted)
        #expect(core(t).isEmpty)
        #expect(h.machine.term == 0)
    }

    // MARK: elections

    @Test("a timer that fires early starts nothing")
    func early() throws {
        var h = try Harness()
        h.start()
        let t = h.step(.receiveTimedOut, afterMs: 100)
        #expect(t.ignored == .early)
        #expect(t.actions == [.wakeAt(h.machine.deadline)])
        #expect(h.machine.role == .follower)
    }

    @Test("timeout: TERM is written before REQUEST_VOTE is sent")
    func candidacy() throws {
        var h = try Harness()
        h.start()
        let t = h.timeout()
        #expect(core(t) == [.writeEvent(.term, term: 1), .broadcast(.requestVote, term: 1), .note(.candidate(term: 1))])
        #expect(h.machine.role == .candidate(votes: SlotSet([0])))
        #expect(h.machine.vote == .slot(0))
    }

    @Test("a majority of votes elects: ELECT before the heartbeat, then the block check")
    func elected() throws {
        var h = try Harness(members: [0, 1, 2, 3, 4])
        h.candidate()
        let r4 = h.receive(.vote, term: 1, from: 3)
        #expect(core(r4).isEmpty)
        let t = h.receive(.vote, term: 1, from: 4)
        #expect(
            core(t) == [
                .writeEvent(.elect, term: 1), .broadcast(.heartbeat, term: 1), .note(.elected(term: 1)), .readQuorumBlocks,
            ])
        #expect(h.machine.role == .leader(.checkingBlocks))
        #expect(h.machine.deadline == h.now.advanced(byMilliseconds: 100))
    }

    @Test("a duplicated vote counts once")
    func duplicateVote() throws {
        var h = try Harness(members: [0, 1, 2, 3, 4])
        h.candidate()
        h.receive(.vote, term: 1, from: 3)
        let t = h.receive(.vote, term: 1, from: 3)
        #expect(notes(t) == [.duplicateVote(from: 3, term: 1)])
        #expect(h.machine.role == .candidate(votes: SlotSet([0, 3])))
    }

    @Test("one slot elects itself at once")
    func single() throws {
        var h = try Harness(slot: 4, members: [4])
        h.start()
        let t = h.timeout()
        #expect(
            withoutNotes(t) == [
                .writeEvent(.term, term: 1), .broadcast(.requestVote, term: 1), .writeEvent(.elect, term: 1), .broadcast(.heartbeat, term: 1),
                .readQuorumBlocks,
            ])
        #expect(h.machine.isLeader)
    }

    @Test("two slots: candidates take terms their slot owns", arguments: [(3, 0, 3), (3, 3, 18), (3, 17, 18), (0, 0, 15), (0, 15, 30), (14, 20, 29)])
    func ownedTerms(slot: Int, from term: UInt64, to next: UInt64) throws {
        let other = slot == 0 ? 1 : 0
        var h = try Harness(slot: slot, members: [slot, other])
        h.start([other: quorumBlock(other, [.term: (5, term)])])
        #expect(h.machine.term == term)
        h.timeout()
        #expect(h.machine.term == next)
        #expect(h.machine.isLeader)
    }

    @Test("the election waits while our own server has not stopped")
    func deferred() throws {
        var h = try Harness()
        h.leader()
        h.receive(.heartbeat, term: 5, from: 1)  // deposed: stop requested
        #expect(h.machine.server == .running(term: 1, status: .starting, stopRequested: true))
        h.step(.receiveTimedOut, afterMs: 10_001)
        let t = h.timeout()
        #expect(notes(t) == [.electionDeferredServerRunning])
        #expect(h.machine.role == .follower)
        #expect(h.machine.term == 5)
    }

    @Test("a candidate whose election times out stands again in the next term")
    func splitVote() throws {
        var h = try Harness()
        h.candidate()
        h.timeout()
        #expect(h.machine.term == 2)
        #expect(h.machine.role == .candidate(votes: SlotSet([0])))
    }

    // MARK: messages

    @Test("messages of older terms are ignored", arguments: QuorumMessageType.allCases)
    func stale(type: QuorumMessageType) throws {
        var h = try Harness()
        h.start([1: quorumBlock(1, [.term: (5, 9)])])
        let t = h.receive(type, term: 8, from: 1)
        #expect(t.ignored == .staleTerm)
        #expect(core(t).isEmpty)
    }

    @Test("unknown and own slots are ignored")
    func badSenders() throws {
        var h = try Harness(members: [0, 1, 2])
        h.start()
        let r5 = h.receive(.heartbeat, term: 3, from: 7)
        #expect(r5.ignored == .unknownSlot)
        let own = h.receive(.heartbeat, term: 3, from: 0)
        #expect(own.ignored == .ownSlot)
        #expect(notes(own) == [.messageFromOwnSlot(term: 3)])
        #expect(h.machine.term == 0)
    }

    @Test("a greater term is written before anything else; a heartbeat then sets the heartbeat timeout")
    func greaterHeartbeat() throws {
        var h = try Harness(heartbeatTimeoutMs: 3000)
        h.start()
        let t = h.receive(.heartbeat, term: 4, from: 2, afterMs: 10)
        #expect(core(t) == [.writeEvent(.term, term: 4)])
        #expect(h.machine.term == 4)
        #expect(h.machine.leader == 2)
        #expect(h.machine.vote == QuorumStateMachine.Vote.none)
        #expect(h.machine.deadline == h.now.advanced(byMilliseconds: 3000))
    }

    @Test("vote requests: TERM before VOTE, one vote per term, the deadline pushed")
    func voting() throws {
        var h = try Harness()
        h.start()
        let t = h.receive(.requestVote, term: 3, from: 1)
        #expect(core(t) == [.writeEvent(.term, term: 3), .send(.vote, term: 3, to: 1)])
        #expect(h.machine.vote == .slot(1))
        let second = h.receive(.requestVote, term: 3, from: 2)
        #expect(second.ignored == .notApplicable)
        #expect(core(second).isEmpty)
        #expect(h.machine.vote == .slot(1))
    }

    @Test("granting a vote in our term pushes an imminent deadline")
    func votePushesDeadline() throws {
        var h = try Harness()
        h.start()
        h.receive(.heartbeat, term: 2, from: 1)  // term 2, no vote yet
        h.receive(.resignation, term: 2, from: 1)  // election timeout now
        let before = h.machine.deadline
        h.step(.receiveTimedOut, afterMs: 240)  // early
        h.receive(.requestVote, term: 2, from: 2)
        #expect(h.machine.vote == .slot(2))
        #expect(h.machine.deadline > before)
    }

    @Test("after a restart we do not vote in the term we started in")
    func noVoteInStartTerm() throws {
        var h = try Harness()
        h.start([1: quorumBlock(1, [.term: (5, 6)])])
        let t = h.receive(.requestVote, term: 6, from: 2)
        #expect(t.ignored == .notApplicable)
        #expect(h.machine.vote == .unknown)
        let r6 = h.receive(.requestVote, term: 7, from: 2)
        #expect(core(r6) == [.writeEvent(.term, term: 7), .send(.vote, term: 7, to: 2)])
    }

    @Test("candidates and leaders do not vote")
    func noVoteWhenStanding() throws {
        var h = try Harness()
        h.candidate()
        let r7 = h.receive(.requestVote, term: 1, from: 2)
        #expect(r7.ignored == .notApplicable)
        h.receive(.vote, term: 1, from: 1)
        #expect(h.machine.isLeader)
        let r8 = h.receive(.requestVote, term: 1, from: 2)
        #expect(r8.ignored == .notApplicable)
    }

    @Test("votes mean nothing to followers")
    func lateVote() throws {
        var h = try Harness()
        h.start()
        let r9 = h.receive(.vote, term: 0, from: 1)
        #expect(r9.ignored == .notApplicable)
    }

    @Test("a candidate that hears the leader of its term follows it, keeping its vote")
    func candidateFollows() throws {
        var h = try Harness()
        h.candidate()
        h.receive(.heartbeat, term: 1, from: 2)
        #expect(h.machine.role == .follower)
        #expect(h.machine.leader == 2)
        #expect(h.machine.vote == .slot(0))
        let r10 = h.receive(.requestVote, term: 1, from: 1)
        #expect(r10.ignored == .notApplicable)
    }

    @Test("a resignation of our leader starts an election soon; others' are ignored")
    func resignation() throws {
        var h = try Harness()
        h.start()
        h.receive(.heartbeat, term: 2, from: 1)
        let r11 = h.receive(.resignation, term: 2, from: 2)
        #expect(r11.ignored == .notApplicable)
        #expect(h.machine.deadline.nanoseconds(since: h.now) > 1_000_000_000)
        h.receive(.resignation, term: 2, from: 1)
        #expect(h.machine.deadline.nanoseconds(since: h.now) < 350_000_000)
        #expect(h.machine.leader == nil)
    }

    @Test("our own term's heartbeat or resignation from another slot while we lead is noted, not obeyed")
    func sameTermLeader() throws {
        var h = try Harness()
        h.leader()
        let t = h.receive(.heartbeat, term: 1, from: 2)
        #expect(notes(t) == [.sameTermLeader(from: 2, term: 1)])
        #expect(t.ignored == .notApplicable)
        #expect(h.machine.isLeader)
        let r12 = h.receive(.resignation, term: 1, from: 2)
        #expect(notes(r12) == [.sameTermLeader(from: 2, term: 1)])
    }

    @Test("the live leader found at start is followed below our term until our term changes")
    func startLeaderFollowed() throws {
        var h = try Harness(heartbeatTimeoutMs: 2000)
        h.start([1: quorumBlock(1, [.elect: (5, 9)]), 2: quorumBlock(2, [.term: (6, 20)])])
        #expect(h.machine.term == 20)
        h.step(.receiveTimedOut, afterMs: 1900)
        let t = h.receive(.heartbeat, term: 9, from: 1)
        #expect(t.ignored == nil)
        #expect(h.machine.leader == 1)
        #expect(h.machine.deadline == h.now.advanced(byMilliseconds: 2000))
        // another slot's heartbeat of that term, or the leader's in another term, are stale
        let r13 = h.receive(.heartbeat, term: 9, from: 2)
        #expect(r13.ignored == .staleTerm)
        let r14 = h.receive(.heartbeat, term: 8, from: 1)
        #expect(r14.ignored == .staleTerm)
        // its resignation starts an election, and ends the exception
        h.receive(.resignation, term: 9, from: 1)
        #expect(h.machine.deadline.nanoseconds(since: h.now) < 350_000_000)
        let r15 = h.receive(.heartbeat, term: 9, from: 1)
        #expect(r15.ignored == .staleTerm)
    }

    // MARK: leader and server

    @Test("leaders heartbeat every 100 ms")
    func heartbeats() throws {
        var h = try Harness()
        h.leader()
        let t = h.timeout()
        #expect(core(t) == [.broadcast(.heartbeat, term: 1)])
        #expect(h.machine.deadline == h.now.advanced(byMilliseconds: 100))
    }

    @Test("the block check requests fences, then starts the server")
    func fenceAndStart() throws {
        var h = try Harness()
        h.candidate()
        h.receive(.vote, term: 1, from: 1)
        var own = h.ownBlock()
        own[.begin] = QuorumEvent(writeNr: 1, rid: h.rid, term: 0)
        let t = h.step(.quorumBlocksRead(h.blocks([0: own, 2: quorumBlock(2, [.elect: (0x77, 0)])])))
        #expect(core(t) == [.startServer(term: 1)])
        h.step(.serverStatus(.down, term: 1))  // resigns
        h.timeout()
        h.receive(.vote, term: 2, from: 1)
        let old = quorumBlock(1, [.elect: (0x55, 1)])
        let t2 = h.step(.quorumBlocksRead(h.blocks([0: h.ownBlock(), 1: old])))
        #expect(core(t2) == [.requestFence(QuorumFenceRequest(slot: 1, rid: 0x55, term: 1)), .startServer(term: 2)])
        #expect(h.machine.role == .leader(.serverRequested))
    }

    @Test("a newer election on disk: STOP, adopt its term, start nothing")
    func newerOnDisk() throws {
        var h = try Harness()
        h.candidate()
        h.receive(.vote, term: 1, from: 1)
        let t = h.step(.quorumBlocksRead(h.blocks([0: h.ownBlock(), 2: quorumBlock(2, [.elect: (0x99, 3)])])))
        #expect(core(t) == [.note(.newerLeaderOnDisk(term: 3)), .writeEvent(.stop, term: 1), .writeEvent(.term, term: 3)])
        #expect(h.machine.role == .follower)
        #expect(h.machine.term == 3)
        #expect(h.machine.server == .down)
    }

    @Test("an unreadable block: no server, resign (STOP before RESIGNATION)")
    func unreadable() throws {
        var h = try Harness()
        h.candidate()
        h.receive(.vote, term: 1, from: 1)
        var set = h.blocks([0: h.ownBlock()])
        set[2] = nil
        let t = h.step(.quorumBlocksRead(set))
        #expect(
            core(t) == [
                .note(.fenceCheckFailed(term: 1, unreadable: SlotSet([2]))), .writeEvent(.stop, term: 1),
                .broadcast(.resignation, term: 1), .note(.resigned(term: 1)),
            ])
        #expect(h.machine.role == .follower)
        #expect(h.machine.vote == .slot(0))
    }

    @Test("blocks nobody asked for are ignored")
    func unexpectedBlocks() throws {
        var h = try Harness()
        h.start()
        let r16 = h.step(.quorumBlocksRead(h.blocks()))
        #expect(r16.ignored == .unexpectedBlocks)
        h.leader()
        let r17 = h.step(.quorumBlocksRead(h.blocks()))
        #expect(r17.ignored == .unexpectedBlocks)
    }

    @Test("server up: FENCE is written once")
    func fenceEvent() throws {
        var h = try Harness()
        h.leader()
        let r18 = h.step(.serverStatus(.starting, term: 1))
        #expect(core(r18).isEmpty)
        let r19 = h.step(.serverStatus(.up, term: 1))
        #expect(core(r19) == [.writeEvent(.fence, term: 1)])
        #expect(h.machine.role == .leader(.fenceRecorded))
        let r20 = h.step(.serverStatus(.up, term: 1))
        #expect(r20.ignored == .unexpectedServerStatus)
    }

    /// Reports that make no sense for the server we track.
    @Test(
        "impossible server reports are ignored",
        arguments: [
            (QuorumServerStatus.up, UInt64(2)), (.down, 7), (.starting, 0), (.stopping, 3),
        ])
    func impossibleReports(status: QuorumServerStatus, term: UInt64) throws {
        var h = try Harness()
        h.leader()
        let t = h.step(.serverStatus(status, term: term))
        #expect(t.ignored == .unexpectedServerStatus)
        #expect(core(t).isEmpty)
    }

    @Test("reports with no server running are ignored", arguments: QuorumServerStatus.allCases)
    func reportsWithoutServer(status: QuorumServerStatus) throws {
        var h = try Harness()
        h.start()
        let r21 = h.step(.serverStatus(status, term: 0))
        #expect(r21.ignored == .unexpectedServerStatus)
    }

    @Test("status may not go backwards", arguments: [(QuorumServerStatus.up, QuorumServerStatus.starting), (.stopping, .up), (.stopping, .starting)])
    func backwards(first: QuorumServerStatus, then: QuorumServerStatus) throws {
        var h = try Harness()
        h.leader()
        h.step(.serverStatus(first, term: 1))
        let r22 = h.step(.serverStatus(then, term: 1))
        #expect(r22.ignored == .unexpectedServerStatus)
    }

    @Test("the leader's server stops: STOP, then RESIGNATION, follower; quorum goes on (e4dca8dd)")
    func serverStopsUnderLeader() throws {
        var h = try Harness()
        h.leader()
        h.step(.serverStatus(.starting, term: 1))
        let t = h.step(.serverStatus(.down, term: 1))  // a failed start
        #expect(core(t) == [.writeEvent(.stop, term: 1), .broadcast(.resignation, term: 1), .note(.resigned(term: 1))])
        #expect(h.machine.role == .follower)
        #expect(h.machine.lifecycle == .running)
        #expect(h.machine.server == .down)
        // the vote of term 1 (our own) is kept: no second vote in the term
        let r23 = h.receive(.requestVote, term: 1, from: 2)
        #expect(r23.ignored == .notApplicable)
        h.timeout()
        #expect(h.machine.term == 2)
    }

    @Test("a deposed leader stops its server and writes STOP when it is down, without resigning")
    func deposed() throws {
        var h = try Harness()
        h.leader()
        h.step(.serverStatus(.up, term: 1))
        let t = h.receive(.requestVote, term: 4, from: 2)
        #expect(
            core(t) == [
                .note(.leaderSawGreaterTerm(from: 2, term: 4)), .writeEvent(.term, term: 4), .send(.vote, term: 4, to: 2),
                .stopServer(term: 1),
            ])
        let r24 = h.step(.serverStatus(.stopping, term: 1))
        #expect(core(r24).isEmpty)
        let r25 = h.step(.serverStatus(.down, term: 1))
        #expect(core(r25) == [.writeEvent(.stop, term: 1)])
    }

    @Test("elected but deposed before the block check: STOP so nobody fences us")
    func deposedWhileChecking() throws {
        var h = try Harness()
        h.candidate()
        h.receive(.vote, term: 1, from: 1)
        let t = h.receive(.heartbeat, term: 2, from: 2)
        #expect(withoutNotes(t) == [.writeEvent(.stop, term: 1), .writeEvent(.term, term: 2)])
        let r26 = h.step(.quorumBlocksRead(h.blocks()))
        #expect(r26.ignored == .unexpectedBlocks)
    }

    // MARK: options and shutdown

    @Test("the heartbeat timeout changes at run time, also for the wait under way")
    func heartbeatTimeoutChange() throws {
        var h = try Harness(heartbeatTimeoutMs: 10_000)
        h.start()
        h.receive(.heartbeat, term: 1, from: 1)
        let since = h.now
        for bad in [1999, 60_001, 0, -3] {
            let r27 = h.step(.setHeartbeatTimeout(milliseconds: bad), afterMs: 10)
            #expect(r27.ignored == .invalidHeartbeatTimeout)
        }
        #expect(h.machine.heartbeatTimeoutMs == 10_000)
        let t = h.step(.setHeartbeatTimeout(milliseconds: 2000))
        #expect(t.actions == [.wakeAt(since.advanced(byMilliseconds: 2000))])
        h.receive(.heartbeat, term: 1, from: 1, afterMs: 5)
        #expect(h.machine.deadline == h.now.advanced(byMilliseconds: 2000))
    }

    @Test("shutdown of a leader: stop the server, keep heartbeating, then STOP, RESIGNATION, END")
    func shutdownLeader() throws {
        var h = try Harness()
        h.leader()
        h.step(.serverStatus(.up, term: 1))
        let r28 = h.step(.shutdown)
        #expect(core(r28) == [.stopServer(term: 1)])
        #expect(h.machine.lifecycle == .shuttingDown)
        let r29 = h.timeout()
        #expect(core(r29) == [.broadcast(.heartbeat, term: 1)])
        let r30 = h.receive(.requestVote, term: 1, from: 2)
        #expect(r30.ignored == .notApplicable)
        let r31 = h.step(.shutdown)
        #expect(r31.ignored == .notApplicable)
        let t = h.step(.serverStatus(.down, term: 1))
        #expect(
            t.actions == [
                .writeEvent(.stop, term: 1), .broadcast(.resignation, term: 1), .note(.resigned(term: 1)), .writeEvent(.end, term: 1), .stopped,
            ])
        #expect(h.machine.lifecycle == .stopped)
        let after = h.receive(.heartbeat, term: 9, from: 1)
        #expect(after.ignored == .stopped)
        #expect(after.actions.isEmpty)
    }

    @Test("shutdown of a follower writes END and stops; it never stands while leaving")
    func shutdownFollower() throws {
        var h = try Harness()
        h.candidate()
        let t = h.step(.shutdown)
        #expect(t.actions == [.writeEvent(.end, term: 1), .stopped])
    }

    @Test("shutdown of a leader still checking blocks resigns")
    func shutdownChecking() throws {
        var h = try Harness()
        h.candidate()
        h.receive(.vote, term: 1, from: 1)
        let t = h.step(.shutdown)
        #expect(withoutNotes(t) == [.writeEvent(.stop, term: 1), .broadcast(.resignation, term: 1), .writeEvent(.end, term: 1), .stopped])
    }

    @Test("forced shutdown sends and writes nothing (15de0c21)")
    func forced() throws {
        var h = try Harness()
        h.leader()
        let r32 = h.step(.forcedShutdown)
        #expect(r32.actions == [.stopServer(term: 1), .stopped])
        var f = try Harness()
        f.start()
        let r33 = f.step(.forcedShutdown)
        #expect(r33.actions == [.stopped])
    }

    // MARK: limits and determinism

    @Test("a term at the u64 limit stops elections without a trap")
    func termLimit() throws {
        var h = try Harness()
        h.start()
        h.receive(.heartbeat, term: .max, from: 1)
        h.step(.receiveTimedOut, afterMs: 20_000)
        let t = h.timeout()
        #expect(notes(t) == [.termExhausted])
        #expect(h.machine.term == .max)
        var two = try Harness(slot: 14, members: [14, 1])
        two.start([1: quorumBlock(1, [.term: (3, .max - 1)])])
        let r34 = two.timeout()
        #expect(notes(r34) == [.termExhausted])
    }

    @Test("the same seed gives the same timeouts; another seed others")
    func determinism() throws {
        func deadlines(_ seed: UInt64) throws -> [MonotonicInstant] {
            var h = try Harness(seed: seed)
            h.start()
            var out = [h.machine.deadline]
            for _ in 0..<5 {
                h.timeout()
                out.append(h.machine.deadline)
            }
            return out
        }
        #expect(try deadlines(42) == deadlines(42))
        #expect(try deadlines(42) != deadlines(43))
    }
}
