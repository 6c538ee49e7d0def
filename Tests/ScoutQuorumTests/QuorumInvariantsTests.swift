import ScoutFormat
import ScoutQuorum
import Testing

/// The simulation's checker must be able to fail: feed it each kind of violation directly.
@Suite("Simulation invariant checker")
struct QuorumInvariantsTests {
    typealias ID = QuorumInvariants.Identity
    let a = ID(slot: 0, rid: 0xa)
    let b = ID(slot: 1, rid: 0xb)
    let c = ID(slot: 2, rid: 0xc)
    let t = MonotonicInstant.milliseconds(5)

    @Test func twoLeadersInOneTerm() {
        var inv = QuorumInvariants(votesNeeded: 1)
        inv.sent(a, type: .requestVote, term: 3, to: nil, persistedTerm: 3, now: t)
        inv.sent(b, type: .requestVote, term: 3, to: nil, persistedTerm: 3, now: t)
        inv.elected(a, term: 3, now: t)
        #expect(inv.violations.isEmpty)
        inv.elected(b, term: 3, now: t)
        #expect(inv.violations.count == 1)
    }

    @Test func leaderWithoutMajority() {
        var inv = QuorumInvariants(votesNeeded: 2)
        inv.sent(a, type: .requestVote, term: 3, to: nil, persistedTerm: 3, now: t)
        inv.elected(a, term: 3, now: t)
        #expect(inv.violations.count == 1)
    }

    @Test func doubleVote() {
        var inv = QuorumInvariants(votesNeeded: 2)
        inv.sent(c, type: .vote, term: 4, to: 0, persistedTerm: 4, now: t)
        inv.sent(c, type: .vote, term: 4, to: 0, persistedTerm: 4, now: t)
        #expect(inv.violations.isEmpty)
        inv.sent(c, type: .vote, term: 4, to: 1, persistedTerm: 4, now: t)
        #expect(inv.violations.count == 1)
    }

    @Test func sendBeforePersist() {
        var inv = QuorumInvariants(votesNeeded: 2)
        inv.sent(c, type: .heartbeat, term: 5, to: nil, persistedTerm: 4, now: t)
        #expect(inv.violations.count == 1)
    }

    @Test func termGoesDown() throws {
        var inv = QuorumInvariants(votesNeeded: 1)
        let configuration = try QuorumMachineConfiguration(slot: 0, members: SlotSet([0]), rid: 0xa, seed: 1)
        var m = QuorumStateMachine(configuration: configuration)
        _ = m.handle(.start(QuorumBlockSet(blocks: [0: quorumBlock(0, [.term: (9, 7)])])), now: t)
        inv.started(a, machine: m, now: t)
        #expect(inv.violations.isEmpty)
        var lower = QuorumStateMachine(configuration: configuration)
        _ = lower.handle(.start(QuorumBlockSet(blocks: [0: quorumBlock(0)])), now: t)
        inv.afterStep(a, machine: lower, now: t)
        #expect(inv.violations.count == 1)
        // a restart below a term its slot already sent
        var inv2 = QuorumInvariants(votesNeeded: 1)
        inv2.sent(a, type: .heartbeat, term: 3, to: nil, persistedTerm: 3, now: t)
        inv2.started(ID(slot: 0, rid: 0xaa), machine: lower, now: t)
        #expect(inv2.violations.count == 1)
    }

    @Test func serversTogether() {
        var inv = QuorumInvariants(votesNeeded: 1)
        for (id, term) in [(a, UInt64(1)), (b, 2), (c, 3)] {
            inv.sent(id, type: .requestVote, term: term, to: nil, persistedTerm: term, now: t)
            inv.elected(id, term: term, now: t)
            inv.serverStarted(id, term: term, now: t)
        }
        inv.serverActive(a, term: 1, now: t)
        inv.fence(rid: a.rid)
        inv.serverActive(b, term: 2, now: t)  // a fenced: allowed
        #expect(inv.violations.isEmpty)
        inv.serverActive(c, term: 3, now: t)  // b not fenced
        #expect(inv.violations.count == 1)
        inv.serverStarted(c, term: 3, now: t)  // twice in one term
        #expect(inv.violations.count == 2)
        inv.serverStarted(ID(slot: 4, rid: 1), term: 9, now: t)  // never elected
        #expect(inv.violations.count == 3)
    }
}
