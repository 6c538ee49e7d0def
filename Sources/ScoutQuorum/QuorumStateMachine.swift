import ScoutFormat

/// The election of one quorum member: a pure state machine (no I/O, no clock, no globals).
///
/// Each ``handle(_:now:)`` takes one ``QuorumInput`` with the current ``MonotonicInstant`` and
/// returns the ``QuorumAction``s to carry out in order. The service (or the simulation) owns the
/// socket, the quorum blocks, the timer and the server, and feeds the results back.
///
/// Design note: what it does, after `kmod/src/quorum.c` (scoutfs-design §3).
///
/// - Roles follower, candidate and leader, raft-style, with only leadership elected (no log).
///   Votes needed: a majority of the configured slots, or 1 with one or two slots.
/// - Start: the term is the greatest term of any event in any slot's block (4495dbdc); write
///   BEGIN; wait the heartbeat timeout when the blocks show a running server, else an election
///   timeout (250 ms + random 0..<100 ms from a SplitMix64 seeded through the configuration).
/// - A message of an older term is ignored. A greater term makes us a follower of that term
///   with no vote, written as a TERM event before anything else happens (a leader stepping down
///   stops its server). A heartbeat pushes the deadline to now + heartbeat timeout
///   (`quorum_heartbeat_timeout_ms`, 2000...60000, default 10000, changeable while running).
///   A resignation of the leader of our term makes us wait only an election timeout.
/// - An election starts only from ``QuorumInput/receiveTimedOut`` at or after the deadline
///   (never from a message, a896984f) and only when our own server is fully down. The
///   candidate writes TERM, broadcasts REQUEST_VOTE and counts votes; with enough it leads.
/// - The leader writes ELECT, heartbeats every 100 ms, and starts its server asynchronously
///   (bb3db7e2); the server reports ``QuorumServerStatus`` back. When it reports up the leader
///   writes FENCE. A server that is running while we no longer lead its term is asked to stop.
///   When it is down we write STOP, and if we still led that term we resign (RESIGNATION) and
///   become a follower. A failed server start therefore resigns but never stops the machine
///   (e4dca8dd).
/// - Shutdown stops the server and waits for it (the leader keeps heartbeating meanwhile),
///   resigns if leading, writes STOP and END. Forced shutdown sends and writes nothing (15de0c21).
///
/// Deviations from the original, each closing a hole it leaves open:
///
/// 1. **Persist before send.** TERM is written before REQUEST_VOTE goes out, ELECT before the
///    first heartbeat, STOP before RESIGNATION (the original sends first). Every message we send
///    carries a term already in our block, so a crash can never make a member reuse a term.
/// 2. **No second vote in a term, even across restarts.** The block format has no vote field.
///    After a restart the member does not know whether it voted in its starting term, so it
///    votes in no term it starts in (``Vote/unknown``); every later term is entered through a
///    TERM write before any vote in it. The original clears its vote at start and can vote twice.
/// 3. **A resigning leader keeps its vote.** The original clears `vote_for` when the server
///    stops and could then vote for another candidate of the term it already voted in.
/// 4. **Two slots: one term, one leader.** With one vote needed both members can elect
///    themselves. A candidate then takes the next term `t` with `t % 15 == slot`, so two
///    self-elected leaders never share a term and the newer one fences the older one (the
///    original lets both lead one term and fence each other).
/// 5. **Fencing decided here, against a fresh read.** After writing ELECT the leader asks for
///    every block (``QuorumAction/readQuorumBlocks``). A newer ELECT there means a later
///    leader exists: write STOP, adopt its term, start nothing. Otherwise the earlier leaders
///    to fence (``QuorumBlockSet/fenceTargets(term:rid:)``) become ``QuorumAction/requestFence(_:)``
///    before ``QuorumAction/startServer(term:)``, and the server's start waits for them. Since
///    both leaders write ELECT before they read, at least one of two racing leaders sees the
///    other: the older steps down or the newer fences it. In the original the server reads the
///    blocks during its start and can miss an ELECT written later by an older leader (the
///    simulation finds two servers running together within a few thousand seeds when this check
///    is removed). If any block cannot be read the leader resigns instead of starting unfenced.
///    A leader deposed before it started its server writes STOP too, so that nobody fences it.
/// 6. A candidate that hears a heartbeat of its own term becomes a follower (raft); granting a
///    vote pushes our deadline to at least a new election timeout (raft), so a voter does not
///    start a competing election just after voting.
/// 7. A resignation is honoured only from the leader of our term (or when we know none); only
///    leaders send one, for the term they led. The original also resigns at shutdown for a
///    server that was not leading, which can restart an election against a healthy leader.
/// 8. **A restarted member does not depose the live leader.** It starts in the greatest term on
///    disk (lesson 3), but a member cut off from the others keeps standing and raises that term
///    far above the live leader's. Raft rules would then make every restarted member ignore the
///    leader's heartbeats, stand, depose it and, as the new leader, fence it; the fenced mount
///    restarts and does the same (seen in the simulation as an endless chain of fences). So the
///    running server the blocks show at start (slot and ELECT term) is honoured until our term
///    changes: its heartbeats of that term push our deadline and its resignation starts an
///    election. A running server recorded in our own slot is our own previous mount, which is
///    gone: it does not make us wait the heartbeat timeout (the new leader still fences it).
/// 9. A changed heartbeat timeout applies to the wait already under way.
/// 10. Impossible inputs (unknown or own slot, stale or foreign server reports, blocks nobody
///     asked for, a term at the u64 limit) are ignored with a ``QuorumIgnoredReason`` or a
///     ``QuorumNote``, never a trap.
///
/// Kept from the original: there is no pre-vote, so a member that was cut off and kept standing
/// deposes the leader with its greater term when it reconnects (a new message type would break
/// wire compatibility).
public struct QuorumStateMachine: Sendable {
    /// Where the member is in its life.
    public enum Lifecycle: Sendable, Hashable {
        /// Waiting for ``QuorumInput/start(_:)``.
        case notStarted
        /// Taking part in elections.
        case running
        /// Leaving: no votes, no candidacy; waiting for the server to stop.
        case shuttingDown
        /// Done; every input is ignored.
        case stopped
    }

    /// Progress of a leader towards a running, fenced server.
    public enum LeaderPhase: Sendable, Hashable {
        /// ELECT written; waiting for the blocks to check for newer leaders and find fences.
        case checkingBlocks
        /// Fences requested and server start requested.
        case serverRequested
        /// The server reported up and FENCE was written.
        case fenceRecorded
    }

    /// The member's role in the current term.
    public enum Role: Sendable, Hashable {
        case follower
        /// Standing for election with the votes received so far (our own included).
        case candidate(votes: SlotSet)
        case leader(LeaderPhase)
    }

    /// Our vote in the current term.
    public enum Vote: Sendable, Hashable {
        /// Not voted yet: the first vote request of the term gets our vote.
        case none
        /// Voted for this slot (our own when we stood).
        case slot(Int)
        /// Started in this term after a restart: we may have voted before, so we do not vote.
        case unknown
    }

    /// The server as far as we know: requested, reported, and whether a stop was asked.
    public enum ServerState: Sendable, Hashable {
        case down
        case running(term: UInt64, status: QuorumServerStatus, stopRequested: Bool)

        /// True when no server is running or starting or stopping.
        public var isDown: Bool { self == .down }
    }

    enum DeadlineKind: Sendable, Hashable {
        case election
        case heartbeatTimeout(since: MonotonicInstant)
        case heartbeatSend
    }

    /// The fixed parameters.
    public let configuration: QuorumMachineConfiguration
    /// The heartbeat timeout in force.
    public private(set) var heartbeatTimeoutMs: Int
    public private(set) var lifecycle: Lifecycle = .notStarted
    public private(set) var role: Role = .follower
    /// The current term; it never decreases.
    public private(set) var term: UInt64 = 0
    public private(set) var vote: Vote = .unknown
    /// The slot known to lead the current term (from its heartbeats, or us).
    public private(set) var leader: Int?
    public private(set) var server: ServerState = .down
    /// When the machine wants ``QuorumInput/receiveTimedOut``.
    public private(set) var deadline: MonotonicInstant = .zero
    private(set) var deadlineKind: DeadlineKind = .election
    /// The running server the blocks showed at start (slot and ELECT term), honoured until our
    /// term changes (deviation 8).
    public private(set) var startLeader: (slot: Int, term: UInt64)?
    private var random: QuorumRandom

    /// A member that has not started; give it ``QuorumInput/start(_:)`` first.
    public init(configuration: QuorumMachineConfiguration) {
        self.configuration = configuration
        self.heartbeatTimeoutMs = configuration.heartbeatTimeoutMs
        self.random = QuorumRandom(seed: configuration.seed)
    }

    /// Our slot.
    public var slot: Int { configuration.slot }

    /// True while we lead the current term.
    public var isLeader: Bool {
        if case .leader = role { return true }
        return false
    }

    /// Applies one input at `now` and returns what to do.
    ///
    /// While the machine runs, the last action is always ``QuorumAction/wakeAt(_:)``, also for
    /// ignored inputs; after it stops, the last action it returns is ``QuorumAction/stopped``.
    public mutating func handle(_ input: QuorumInput, now: MonotonicInstant) -> QuorumTransition {
        var out = QuorumTransition()
        switch lifecycle {
        case .stopped:
            return QuorumTransition(ignored: .stopped)
        case .notStarted:
            switch input {
            case .start(let blocks):
                start(blocks, now: now, &out)
            case .shutdown, .forcedShutdown:
                lifecycle = .stopped
                return QuorumTransition(actions: [.stopped])
            default:
                return QuorumTransition(ignored: .notStarted)
            }
        case .running, .shuttingDown:
            switch input {
            case .start:
                out.ignored = .alreadyStarted
            case .received(let message):
                receive(message, now: now, &out)
            case .receiveTimedOut:
                timedOut(now: now, &out)
            case .serverStatus(let status, let serverTerm):
                serverReported(status, term: serverTerm, now: now, &out)
            case .quorumBlocksRead(let blocks):
                blocksRead(blocks, now: now, &out)
            case .setHeartbeatTimeout(let ms):
                setHeartbeatTimeout(ms, &out)
            case .shutdown:
                shutdown(&out)
            case .forcedShutdown:
                lifecycle = .stopped
                if case .running(let serverTerm, _, _) = server {
                    out.actions.append(.stopServer(term: serverTerm))
                }
                out.actions.append(.stopped)
                return out
            }
        }
        stopServerIfNotLeading(&out)
        if lifecycle == .shuttingDown && server.isDown {
            finishShutdown(now: now, &out)
            return out
        }
        out.actions.append(.wakeAt(deadline))
        return out
    }

    // MARK: - inputs

    private mutating func start(_ blocks: QuorumBlockSet, now: MonotonicInstant, _ out: inout QuorumTransition) {
        lifecycle = .running
        role = .follower
        term = blocks.greatestTerm
        vote = .unknown
        leader = nil
        out.actions.append(.writeEvent(.begin, term: term))
        if let server = blocks.serverSlot(excluding: slot) {
            startLeader = server
            setHeartbeatDeadline(now: now)
        } else {
            setElectionDeadline(now: now)
        }
    }

    private mutating func receive(_ message: QuorumMessage, now: MonotonicInstant, _ out: inout QuorumTransition) {
        let from = message.fromSlot
        guard configuration.members.contains(from) else {
            out.ignored = .unknownSlot
            return
        }
        guard from != slot else {
            out.actions.append(.note(.messageFromOwnSlot(term: message.term)))
            out.ignored = .ownSlot
            return
        }
        guard message.term >= term else {
            if let known = startLeader, known.slot == from, known.term == message.term, lifecycle == .running {
                // the leader the blocks showed at start, still alive in its term below ours
                switch message.type {
                case .heartbeat:
                    leader = from
                    setHeartbeatDeadline(now: now)
                    return
                case .resignation:
                    leader = nil
                    startLeader = nil
                    setElectionDeadline(now: now)
                    return
                case .requestVote, .vote:
                    break
                }
            }
            out.ignored = .staleTerm
            return
        }
        var applied = false
        if message.term > term {
            if isLeader {
                out.actions.append(.note(.leaderSawGreaterTerm(from: from, term: message.term)))
            }
            if role == .leader(.checkingBlocks) {
                // elected but no server was started: record it as stopped, or the next leader
                // would fence this live mount for nothing
                out.actions.append(.writeEvent(.stop, term: term))
            }
            adopt(term: message.term, &out)
            setElectionDeadline(now: now)
            applied = true
        }
        switch message.type {
        case .heartbeat:
            switch role {
            case .leader:
                out.actions.append(.note(.sameTermLeader(from: from, term: term)))
            case .candidate:
                role = .follower
                fallthrough
            case .follower:
                leader = from
                setHeartbeatDeadline(now: now)
                applied = true
            }
        case .resignation:
            switch role {
            case .follower where leader == nil || leader == from:
                leader = nil
                setElectionDeadline(now: now)
                applied = true
            case .leader:
                out.actions.append(.note(.sameTermLeader(from: from, term: term)))
            case .follower, .candidate:
                break
            }
        case .vote:
            if case .candidate(var votes) = role {
                if votes.insert(from) {
                    role = .candidate(votes: votes)
                    applied = true
                    if votes.count >= configuration.votesNeeded {
                        becomeLeader(now: now, &out)
                    }
                } else {
                    out.actions.append(.note(.duplicateVote(from: from, term: term)))
                }
            }
        case .requestVote:
            if role == .follower && vote == .none && lifecycle == .running {
                vote = .slot(from)
                out.actions.append(.send(.vote, term: term, to: from))
                let fresh = electionTimeout(now: now)
                if fresh > deadline {
                    deadline = fresh
                    deadlineKind = .election
                }
                applied = true
            }
        }
        if !applied { out.ignored = .notApplicable }
    }

    private mutating func timedOut(now: MonotonicInstant, _ out: inout QuorumTransition) {
        guard now >= deadline else {
            out.ignored = .early
            return
        }
        switch role {
        case .leader:
            out.actions.append(.broadcast(.heartbeat, term: term))
            deadline = now.advanced(byMilliseconds: UInt64(Format.quorumHeartbeatIntervalMs))
            deadlineKind = .heartbeatSend
        case .follower, .candidate:
            if lifecycle == .shuttingDown {
                role = .follower
                setElectionDeadline(now: now)
                return
            }
            guard server.isDown else {
                out.actions.append(.note(.electionDeferredServerRunning))
                setElectionDeadline(now: now)
                return
            }
            guard let next = nextCandidateTerm() else {
                out.actions.append(.note(.termExhausted))
                setElectionDeadline(now: now)
                return
            }
            term = next
            startLeader = nil
            vote = .slot(slot)
            leader = nil
            let votes = SlotSet([slot])
            role = .candidate(votes: votes)
            out.actions.append(.writeEvent(.term, term: next))
            out.actions.append(.broadcast(.requestVote, term: next))
            out.actions.append(.note(.candidate(term: next)))
            setElectionDeadline(now: now)
            if votes.count >= configuration.votesNeeded {
                becomeLeader(now: now, &out)
            }
        }
    }

    private mutating func serverReported(
        _ status: QuorumServerStatus, term serverTerm: UInt64, now: MonotonicInstant, _ out: inout QuorumTransition
    ) {
        guard case .running(let runningTerm, let current, let stopRequested) = server, runningTerm == serverTerm,
            Self.serverMay(go: current, to: status)
        else {
            out.ignored = .unexpectedServerStatus
            return
        }
        switch status {
        case .starting, .stopping:
            server = .running(term: runningTerm, status: status, stopRequested: stopRequested)
        case .up:
            server = .running(term: runningTerm, status: .up, stopRequested: stopRequested)
            if role == .leader(.serverRequested) && term == serverTerm {
                out.actions.append(.writeEvent(.fence, term: serverTerm))
                role = .leader(.fenceRecorded)
            }
        case .down:
            server = .down
            if isLeader && term == serverTerm {
                resign(now: now, &out)
            } else {
                out.actions.append(.writeEvent(.stop, term: serverTerm))
            }
        }
    }

    /// The reported life cycle: starting → up → stopping → down, where starting may also go to
    /// stopping or down (a failed start) and up may go straight to down.
    static func serverMay(go from: QuorumServerStatus, to: QuorumServerStatus) -> Bool {
        switch (from, to) {
        case (.starting, .starting): true  // the first report after our request
        case (.starting, .up), (.starting, .stopping), (.starting, .down): true
        case (.up, .stopping), (.up, .down): true
        case (.stopping, .down): true
        default: false
        }
    }

    private mutating func blocksRead(_ blocks: QuorumBlockSet, now: MonotonicInstant, _ out: inout QuorumTransition) {
        guard role == .leader(.checkingBlocks) else {
            out.ignored = .unexpectedBlocks
            return
        }
        var unreadable = blocks.unreadable
        for member in configuration.members where blocks[member] == nil {
            unreadable.insert(member)
        }
        guard unreadable.isEmpty else {
            out.actions.append(.note(.fenceCheckFailed(term: term, unreadable: unreadable)))
            resign(now: now, &out)
            return
        }
        let newest = blocks.greatestElectTerm
        guard newest <= term else {
            out.actions.append(.note(.newerLeaderOnDisk(term: newest)))
            out.actions.append(.writeEvent(.stop, term: term))
            adopt(term: newest, &out)
            setElectionDeadline(now: now)
            return
        }
        for request in blocks.fenceTargets(term: term, rid: configuration.rid) {
            out.actions.append(.requestFence(request))
        }
        out.actions.append(.startServer(term: term))
        server = .running(term: term, status: .starting, stopRequested: false)
        role = .leader(.serverRequested)
    }

    private mutating func setHeartbeatTimeout(_ ms: Int, _ out: inout QuorumTransition) {
        do {
            try QuorumMachineConfiguration.validateHeartbeatTimeout(ms)
        } catch {
            out.ignored = .invalidHeartbeatTimeout
            return
        }
        heartbeatTimeoutMs = ms
        if case .heartbeatTimeout(let since) = deadlineKind {
            deadline = since.advanced(byMilliseconds: UInt64(ms))
        }
    }

    private mutating func shutdown(_ out: inout QuorumTransition) {
        guard lifecycle == .running else {
            out.ignored = .notApplicable
            return
        }
        lifecycle = .shuttingDown
        if case .candidate = role { role = .follower }
        if case .running(let serverTerm, let status, false) = server {
            out.actions.append(.stopServer(term: serverTerm))
            server = .running(term: serverTerm, status: status, stopRequested: true)
        }
    }

    // MARK: - steps shared by inputs

    /// Rule 7 of the original: a server runs only for the term we lead.
    private mutating func stopServerIfNotLeading(_ out: inout QuorumTransition) {
        guard case .running(let serverTerm, let status, false) = server, !(isLeader && term == serverTerm) else { return }
        out.actions.append(.stopServer(term: serverTerm))
        server = .running(term: serverTerm, status: status, stopRequested: true)
    }

    private mutating func finishShutdown(now: MonotonicInstant, _ out: inout QuorumTransition) {
        if isLeader { resign(now: now, &out) }
        out.actions.append(.writeEvent(.end, term: term))
        out.actions.append(.stopped)
        lifecycle = .stopped
    }

    private mutating func adopt(term newTerm: UInt64, _ out: inout QuorumTransition) {
        term = newTerm
        startLeader = nil
        role = .follower
        vote = .none
        leader = nil
        out.actions.append(.writeEvent(.term, term: newTerm))
    }

    private mutating func becomeLeader(now: MonotonicInstant, _ out: inout QuorumTransition) {
        role = .leader(.checkingBlocks)
        leader = slot
        out.actions.append(.writeEvent(.elect, term: term))
        out.actions.append(.broadcast(.heartbeat, term: term))
        out.actions.append(.note(.elected(term: term)))
        out.actions.append(.readQuorumBlocks)
        deadline = now.advanced(byMilliseconds: UInt64(Format.quorumHeartbeatIntervalMs))
        deadlineKind = .heartbeatSend
    }

    /// Leaves the leadership of the current term: STOP is on disk before RESIGNATION is sent.
    private mutating func resign(now: MonotonicInstant, _ out: inout QuorumTransition) {
        role = .follower
        leader = nil
        out.actions.append(.writeEvent(.stop, term: term))
        out.actions.append(.broadcast(.resignation, term: term))
        out.actions.append(.note(.resigned(term: term)))
        setElectionDeadline(now: now)
    }

    /// The term a new candidacy uses, nil at the u64 limit. Two-slot configurations take the
    /// next term owned by our slot (deviation 4).
    func nextCandidateTerm() -> UInt64? {
        let members = configuration.members.count
        guard members >= 2 && configuration.votesNeeded == 1 else {
            let (next, overflow) = term.addingReportingOverflow(1)
            return overflow ? nil : next
        }
        let modulus = UInt64(Format.quorumMaxSlots)
        let (base, o1) = (term - term % modulus).addingReportingOverflow(UInt64(slot))
        if o1 { return nil }
        if base > term { return base }
        let (next, o2) = base.addingReportingOverflow(modulus)
        return o2 ? nil : next
    }

    private mutating func electionTimeout(now: MonotonicInstant) -> MonotonicInstant {
        let variable = random.below(UInt64(Format.quorumElectVarMs) * 1_000_000)
        return now.advanced(byMilliseconds: UInt64(Format.quorumElectMinMs)).advanced(byNanoseconds: variable)
    }

    private mutating func setElectionDeadline(now: MonotonicInstant) {
        deadline = electionTimeout(now: now)
        deadlineKind = .election
    }

    private mutating func setHeartbeatDeadline(now: MonotonicInstant) {
        deadline = now.advanced(byMilliseconds: UInt64(heartbeatTimeoutMs))
        deadlineKind = .heartbeatTimeout(since: now)
    }
}
