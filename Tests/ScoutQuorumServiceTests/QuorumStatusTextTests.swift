import ScoutQuorum
import Testing

@testable import ScoutQuorumService

/// The quorum status text: the original's sysfs lines, ours, the counters and the histogram.
@Suite struct QuorumStatusTextTests {
    static func at(_ secs: UInt64, _ ns: UInt64 = 0) -> MonotonicInstant {
        MonotonicInstant(nanoseconds: secs * 1_000_000_000 + ns)
    }

    static func status(
        role: QuorumStateMachine.Role = .follower, vote: QuorumStateMachine.Vote = .none,
        server: QuorumStateMachine.ServerState = .down, deadline: MonotonicInstant = at(102, 250_000_000)
    ) -> QuorumStatus {
        QuorumStatus(
            slot: 2, rid: 0xbeef, lifecycle: .running, role: role, term: 41, leader: 0, vote: vote,
            server: server, heartbeatTimeoutMs: 10_000, deadline: deadline, roleSince: at(50),
            electedAt: nil,
            lastSent: [4: QuorumMessageRecord(type: .vote, term: 41, at: at(99, 500_000_000))],
            lastReceived: [
                0: QuorumMessageRecord(type: .heartbeat, term: 41, at: at(99, 900_000_000)),
                4: QuorumMessageRecord(type: .requestVote, term: 41, at: at(60)),
            ],
            failure: nil)
    }

    @Test func followerWithHistogram() {
        var c = QuorumCounters()
        c.sentVotes = 1
        c.receivedHeartbeats = 123
        c.heartbeatDelayMaxMs = 3_400
        c.heartbeatDelaySeconds[1] = 5
        c.heartbeatDelaySeconds[3] = 1
        let text = QuorumStatusText.format(status: Self.status(vote: .slot(4)), counters: c, now: Self.at(100))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(Array(lines.prefix(11)) == [
            "quorum_slot_nr 2",
            "term 41",
            "server_start_term 0",
            "server_event 0",
            "role 0 (follower)",
            "vote_for 4",
            "vote_bits 0x0 (count 0)",
            "timeout_in_secs 2.250000000",
            "last_send to 4 term 41 type 1 secs_since 0.500000000",
            "last_recv from 0 term 41 type 2 secs_since 0.100000000",
            "last_recv from 4 term 41 type 0 secs_since 40.000000000",
        ])
        #expect(lines.contains("lifecycle running"))
        #expect(lines.contains("leader 0"))
        #expect(lines.contains("vote slot 4"))
        #expect(lines.contains("server down"))
        #expect(lines.contains("heartbeat_timeout_ms 10000"))
        #expect(lines.contains("rid 000000000000beef"))
        #expect(lines.contains("quorum_send_vote 1"))
        #expect(lines.contains("quorum_recv_heartbeat 123"))
        #expect(lines.contains("quorum_hb_delay_max_ms 3400"))
        #expect(!lines.contains { $0.hasPrefix("failure") })
        // the histogram comes last
        #expect(Array(lines.suffix(4)) == [
            "HB Delay(s)      Count",
            "          1          5",
            "          3          1",
            "",
        ])
        #expect(text.hasSuffix("\n"))
    }

    @Test func candidateAndLeader() {
        let candidate = QuorumStatusText.format(
            status: Self.status(role: .candidate(votes: SlotSet([2, 4])), vote: .slot(2)),
            counters: QuorumCounters(), now: Self.at(100))
        #expect(candidate.contains("role 1 (candidate)\nvote_for 2\nvote_bits 0x14 (count 2)\n"))
        #expect(!candidate.contains("HB Delay"))

        let starting = QuorumStatusText.format(
            status: Self.status(
                role: .leader(.serverRequested), vote: .slot(2),
                server: .running(term: 41, status: .starting, stopRequested: false)),
            counters: QuorumCounters(), now: Self.at(100))
        #expect(starting.contains("server_start_term 41\nserver_event 2\nrole 2 (leader)\n"))
        #expect(starting.contains("\nserver 41 starting\n"))

        let fenced = QuorumStatusText.format(
            status: Self.status(
                role: .leader(.fenceRecorded), vote: .slot(2),
                server: .running(term: 41, status: .up, stopRequested: true)),
            counters: QuorumCounters(), now: Self.at(100))
        #expect(fenced.contains("server_start_term 41\nserver_event 3\n"))
        #expect(fenced.contains("\nserver 41 up stop_requested\n"))
    }

    @Test func unknownVoteFailureAndPassedDeadline() {
        var s = Self.status(vote: .unknown, deadline: Self.at(99, 500_000_000))
        s.failure = "quorum block write failed:\nEIO"
        s.leader = nil
        s.lastSent = [3: QuorumMessageRecord(type: .heartbeat, term: 0, at: Self.at(1))]
        let text = QuorumStatusText.format(status: s, counters: QuorumCounters(), now: Self.at(100))
        #expect(text.contains("vote_for -1\n"))
        #expect(text.contains("\nvote unknown\n"))
        #expect(text.contains("timeout_in_secs -1.500000000\n"))
        #expect(text.contains("\nleader -1\n"))
        #expect(text.contains("\nfailure quorum block write failed: EIO\n"))
        // records of term 0 are not shown, as in the original
        #expect(!text.contains("last_send"))
    }

    @Test func secondsFormat() {
        #expect(QuorumStatusText.seconds(from: Self.at(5), to: Self.at(5)) == "0.000000000")
        #expect(QuorumStatusText.seconds(from: Self.at(5), to: Self.at(3)) == "-2.000000000")
        #expect(QuorumStatusText.seconds(from: Self.at(5), to: Self.at(4, 999_999_999)) == "-1.999999999")
        #expect(QuorumStatusText.seconds(from: Self.at(0), to: Self.at(12, 34)) == "12.000000034")
    }
}
