import ScoutFormat
public import ScoutQuorum

/// The text of a member's quorum status, as `scoutfs quorum-status` prints it: the lines of the
/// original's sysfs `quorum/status` file, then lines of ours, then the counters, then the
/// heartbeat delay histogram (last, as in the original).
///
/// Design note, the lines kept from the original (`kmod/src/quorum.c`, the `status` file),
/// in its order and formats:
///
///     quorum_slot_nr N
///     term T
///     server_start_term S
///     server_event E
///     role R (follower|candidate|leader)
///     vote_for V
///     vote_bits 0xB (count C)
///     timeout_in_secs S.NNNNNNNNN
///     last_send to SLOT term T type Y secs_since S.NNNNNNNNN     (one per slot sent to)
///     last_recv from SLOT term T type Y secs_since S.NNNNNNNNN   (one per slot heard from)
///
/// Where the values differ, because ``QuorumStatus`` keeps its state differently:
/// - `server_start_term` is the term of the server we run (starting, up or stopping), else 0.
/// - `server_event` is 3 (FENCE) once the leader recorded its fences, 2 (ELECT) while our
///   server runs before that, and 0 when no server runs. The original keeps the last event
///   after its server stops.
/// - `vote_for` is -1 both when we have not voted and when we started in this term after a
///   restart and so refuse to vote (``QuorumStateMachine/Vote/unknown``, deviation 2 of the
///   machine); the line `vote unknown` below tells them apart.
/// - `vote_bits` are the votes of a running candidacy; 0 in any other role (the original
///   keeps a leader's votes until it steps down).
/// - Times are differences on the monotonic clock; a passed deadline is negative, printed
///   as the original's timespec is (`-1.500000000` is half a second ago).
///
/// Lines of ours, `name value`: `lifecycle`, `leader` (slot or -1), `vote`, `server`
/// (down, or `TERM STATUS` with ` stop_requested`), `heartbeat_timeout_ms`, `rid` (%016llx)
/// and `failure` (only when the service stopped on an error).
///
/// Counters, `name value`: the original's `quorum_*` counter names where one matches
/// (`quorum_send_heartbeat`, `quorum_send_request`, `quorum_send_vote`,
/// `quorum_send_resignation`, `quorum_recv_heartbeat`, `quorum_recv_vote`,
/// `quorum_recv_resignation`, `quorum_recv_invalid`, `quorum_elected`,
/// `quorum_server_shutdown`, `quorum_candidate_server_stopping`, `quorum_fence_leader`),
/// and `quorum_send`, `quorum_send_error`, `quorum_recv`, `quorum_candidacies`,
/// `quorum_duplicate_votes`, `quorum_ignored_inputs`, `quorum_write_block` and
/// `quorum_hb_delay_max_ms` for ours.
///
/// The histogram: when any heartbeat gap of at least one second was seen, the header
/// `HB Delay(s)      Count` and one row `%11u  %9llu` per whole second with a nonzero
/// count. The original has a third column, the time since the latest gap of that length;
/// ``QuorumCounters`` does not keep it.
public enum QuorumStatusText {
    /// The status text at `now` (on the clock of the status' instants). Every line ends in a
    /// newline.
    public static func format(status: QuorumStatus, counters: QuorumCounters, now: MonotonicInstant) -> String {
        var out = ""
        func line(_ s: String) { out += s + "\n" }

        let serverTerm: UInt64
        let serverEvent: Int
        switch status.server {
        case .down:
            serverTerm = 0
            serverEvent = 0
        case .running(let term, _, _):
            serverTerm = term
            if case .leader(.fenceRecorded) = status.role {
                serverEvent = 3
            } else {
                serverEvent = 2
            }
        }
        let roleNumber: Int
        let roleName: String
        var voteBits: UInt16 = 0
        switch status.role {
        case .follower:
            (roleNumber, roleName) = (0, "follower")
        case .candidate(let votes):
            (roleNumber, roleName) = (1, "candidate")
            voteBits = votes.bits
        case .leader:
            (roleNumber, roleName) = (2, "leader")
        }
        let voteFor: Int
        let voteText: String
        switch status.vote {
        case .none:
            (voteFor, voteText) = (-1, "none")
        case .slot(let s):
            (voteFor, voteText) = (s, "slot \(s)")
        case .unknown:
            (voteFor, voteText) = (-1, "unknown")
        }

        line("quorum_slot_nr \(status.slot)")
        line("term \(status.term)")
        line("server_start_term \(serverTerm)")
        line("server_event \(serverEvent)")
        line("role \(roleNumber) (\(roleName))")
        line("vote_for \(voteFor)")
        line("vote_bits 0x\(String(voteBits, radix: 16)) (count \(voteBits.nonzeroBitCount))")
        line("timeout_in_secs \(seconds(from: now, to: status.deadline))")
        for slot in status.lastSent.keys.sorted() {
            let r = status.lastSent[slot]!
            guard r.term != 0 else { continue }
            line("last_send to \(slot) term \(r.term) type \(r.type.rawValue) secs_since \(seconds(from: r.at, to: now))")
        }
        for slot in status.lastReceived.keys.sorted() {
            let r = status.lastReceived[slot]!
            guard r.term != 0 else { continue }
            line("last_recv from \(slot) term \(r.term) type \(r.type.rawValue) secs_since \(seconds(from: r.at, to: now))")
        }

        // ours
        let lifecycle: String
        switch status.lifecycle {
        case .notStarted: lifecycle = "not_started"
        case .running: lifecycle = "running"
        case .shuttingDown: lifecycle = "shutting_down"
        case .stopped: lifecycle = "stopped"
        }
        line("lifecycle \(lifecycle)")
        line("leader \(status.leader ?? -1)")
        line("vote \(voteText)")
        switch status.server {
        case .down:
            line("server down")
        case .running(let term, let serverStatus, let stopRequested):
            line("server \(term) \(serverStatus)\(stopRequested ? " stop_requested" : "")")
        }
        line("heartbeat_timeout_ms \(status.heartbeatTimeoutMs)")
        line("rid \(hex16(status.rid))")
        if let failure = status.failure {
            line("failure \(failure.replacing("\n", with: " "))")
        }

        // counters
        let c = counters
        let named: [(String, Int)] = [
            ("quorum_send", c.sent),
            ("quorum_send_error", c.sendFailed),
            ("quorum_send_heartbeat", c.sentHeartbeats),
            ("quorum_send_request", c.sentVoteRequests),
            ("quorum_send_vote", c.sentVotes),
            ("quorum_send_resignation", c.sentResignations),
            ("quorum_recv", c.received),
            ("quorum_recv_invalid", c.receivedInvalid),
            ("quorum_recv_heartbeat", c.receivedHeartbeats),
            ("quorum_recv_vote", c.receivedVotes),
            ("quorum_recv_resignation", c.receivedResignations),
            ("quorum_candidacies", c.candidacies),
            ("quorum_elected", c.elected),
            ("quorum_server_shutdown", c.resignations),
            ("quorum_candidate_server_stopping", c.electionsDeferred),
            ("quorum_duplicate_votes", c.duplicateVotes),
            ("quorum_fence_leader", c.fenceRequests),
            ("quorum_ignored_inputs", c.ignoredInputs),
            ("quorum_write_block", c.blockWrites),
        ]
        for (name, value) in named { line("\(name) \(value)") }
        line("quorum_hb_delay_max_ms \(c.heartbeatDelayMaxMs)")

        // histogram
        let rows = c.heartbeatDelaySeconds.enumerated().filter { $0.offset >= 1 && $0.element > 0 }
        if !rows.isEmpty {
            line("HB Delay(s)      Count")
            for (secs, count) in rows {
                line(pad(String(secs), 11) + "  " + pad(String(count), 9))
            }
        }
        return out
    }

    /// `to - from` as the original prints a timespec: `%lld.%09u`, whole seconds rounded
    /// down (so negative differences show e.g. `-1.500000000` for -0.5 s).
    static func seconds(from: MonotonicInstant, to: MonotonicInstant) -> String {
        let (sec, nsec): (Int64, UInt64)
        if to >= from {
            let d = to.nanoseconds - from.nanoseconds
            sec = Int64(clamping: d / 1_000_000_000)
            nsec = d % 1_000_000_000
        } else {
            let d = from.nanoseconds - to.nanoseconds
            let whole = d / 1_000_000_000
            let frac = d % 1_000_000_000
            if frac == 0 {
                sec = -Int64(clamping: whole)
                nsec = 0
            } else {
                sec = -Int64(clamping: whole) - 1
                nsec = 1_000_000_000 - frac
            }
        }
        let n = String(nsec)
        return "\(sec)." + String(repeating: "0", count: 9 - n.count) + n
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }

    static func hex16(_ v: UInt64) -> String { v.paddedHex }
}
