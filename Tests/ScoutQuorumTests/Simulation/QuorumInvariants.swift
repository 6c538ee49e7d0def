import ScoutQuorum

/// The safety rules every simulation step is checked against. Each violation is recorded with
/// the virtual time at which it was seen.
struct QuorumInvariants {
    struct Violation: CustomStringConvertible {
        var time: MonotonicInstant
        var message: String
        var description: String { "t=\(time)s: \(message)" }
    }

    struct Identity: Hashable, CustomStringConvertible {
        var slot: Int
        var rid: UInt64
        var description: String { "slot \(slot) rid \(String(rid, radix: 16))" }
    }

    struct VoteKey: Hashable {
        var slot: Int
        var term: UInt64
    }

    let votesNeeded: Int
    private(set) var violations: [Violation] = []
    /// The leader of each term (from its persisted ELECT): one slot and one mount per term.
    private(set) var leaderOfTerm: [UInt64: Identity] = [:]
    /// Whom each slot voted for in each term (its own slot when it stood).
    private(set) var votes: [VoteKey: Int] = [:]
    /// Who started a server in each term.
    private(set) var serverOfTerm: [UInt64: Identity] = [:]
    /// Servers past their fences, until down: they may touch the metadata device.
    private(set) var activeServers: [Identity: UInt64] = [:]
    /// Mounts that were fenced.
    private(set) var fenced: Set<UInt64> = []
    /// The greatest term each slot ever sent in a message.
    private(set) var greatestSentTerm: [Int: UInt64] = [:]
    /// The last term seen for each mount.
    private var lastTerm: [Identity: UInt64] = [:]

    init(votesNeeded: Int) {
        self.votesNeeded = votesNeeded
    }

    mutating func fail(_ now: MonotonicInstant, _ message: String) {
        if violations.count < 20 { violations.append(Violation(time: now, message: message)) }
    }

    /// After every input a member's machine handled: terms never go down.
    mutating func afterStep(_ id: Identity, machine: QuorumStateMachine, now: MonotonicInstant) {
        let previous = lastTerm[id] ?? 0
        if machine.term < previous {
            fail(now, "\(id): term went down from \(previous) to \(machine.term)")
        }
        lastTerm[id] = machine.term
    }

    /// A mount's ELECT event reached its block: it now leads `term`. Only persisted elections
    /// count; a decision lost in a crash before it was written (or acted on) does not.
    mutating func elected(_ id: Identity, term: UInt64, now: MonotonicInstant) {
        if let other = leaderOfTerm[term] {
            if other != id { fail(now, "two leaders in term \(term): \(other) and \(id)") }
            return
        }
        leaderOfTerm[term] = id
        let supporters = votes.filter { $0.key.term == term && $0.value == id.slot }.count
        if supporters < votesNeeded {
            fail(now, "\(id) leads term \(term) with \(supporters) votes sent for it, needs \(votesNeeded)")
        }
    }

    /// A new mount's first term must not be below anything its slot ever said.
    mutating func started(_ id: Identity, machine: QuorumStateMachine, now: MonotonicInstant) {
        let sent = greatestSentTerm[id.slot] ?? 0
        if machine.term < sent {
            fail(now, "\(id) restarted in term \(machine.term) below term \(sent) its slot already sent")
        }
        afterStep(id, machine: machine, now: now)
    }

    /// A message leaves a member; `persistedTerm` is the greatest term in its own block now.
    /// Votes count from the moment they are sent: a candidate's own vote with its REQUEST_VOTE.
    mutating func sent(
        _ id: Identity, type: QuorumMessageType, term: UInt64, to: Int?, persistedTerm: UInt64, now: MonotonicInstant
    ) {
        if term > persistedTerm {
            fail(now, "\(id) sent \(type) of term \(term) before persisting it (block has \(persistedTerm))")
        }
        greatestSentTerm[id.slot] = max(greatestSentTerm[id.slot] ?? 0, term)
        let target: Int
        switch type {
        case .vote: target = to ?? -1
        case .requestVote: target = id.slot
        case .heartbeat, .resignation: return
        }
        recordVote(id, term: term, for: target, now: now)
    }

    mutating func recordVote(_ id: Identity, term: UInt64, for target: Int, now: MonotonicInstant) {
        let key = VoteKey(slot: id.slot, term: term)
        if let earlier = votes[key], earlier != target {
            fail(now, "\(id) voted twice in term \(term): for \(earlier) and for \(target)")
        }
        votes[key] = target
    }

    mutating func serverStarted(_ id: Identity, term: UInt64, now: MonotonicInstant) {
        if let other = serverOfTerm[term] {
            fail(now, "server of term \(term) started twice: \(other) and \(id)")
        }
        serverOfTerm[term] = id
        if leaderOfTerm[term] != id {
            fail(now, "\(id) started a server in term \(term) without leading it")
        }
    }

    /// A server finished waiting for its fences and may now touch the metadata device.
    mutating func serverActive(_ id: Identity, term: UInt64, now: MonotonicInstant) {
        for (other, otherTerm) in activeServers where other != id {
            if otherTerm == term {
                fail(now, "servers of \(id) and \(other) both run in term \(term)")
                continue
            }
            let older = otherTerm < term ? other : id
            if !fenced.contains(older.rid) {
                fail(now, "servers of \(id) (term \(term)) and \(other) (term \(otherTerm)) run together, older \(older) not fenced")
            }
        }
        activeServers[id] = term
    }

    mutating func serverInactive(_ id: Identity) {
        activeServers[id] = nil
    }

    mutating func fence(rid: UInt64) {
        fenced.insert(rid)
    }
}
