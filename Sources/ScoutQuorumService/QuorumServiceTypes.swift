public import ScoutFormat
public import ScoutQuorum

/// What one quorum member needs to run: the filesystem, our slot and mount, the slot
/// addresses from the super block, and the options.
public struct QuorumServiceConfiguration: Sendable {
    /// The filesystem's fsid (checked in every message and block).
    public var fsid: UInt64
    /// `quorum_slot_nr`.
    public var slot: Int
    /// This mount's random id (never 0).
    public var rid: UInt64
    /// The super block's quorum config: the slots' addresses.
    public var quorumConfig: QuorumConfig
    /// `quorum_heartbeat_timeout_ms` (2000...60000).
    public var heartbeatTimeoutMs: Int
    /// Seed of the election-timeout generator; nil takes one from the system's entropy mixed
    /// with the slot number.
    public var seed: UInt64?

    public init(
        fsid: UInt64, slot: Int, rid: UInt64, quorumConfig: QuorumConfig,
        heartbeatTimeoutMs: Int = Format.quorumDefaultHeartbeatTimeoutMs, seed: UInt64? = nil
    ) {
        self.fsid = fsid
        self.slot = slot
        self.rid = rid
        self.quorumConfig = quorumConfig
        self.heartbeatTimeoutMs = heartbeatTimeoutMs
        self.seed = seed
    }

    /// The configured slots.
    public var members: SlotSet { SlotSet(configuredIn: quorumConfig) }

    /// Checks the slots as the original does at mount (IPv4 unicast addresses, ports 1...65534,
    /// no two slots on one address and port, our slot configured) and the options.
    public func validated() throws(QuorumServiceError) -> QuorumMachineConfiguration {
        var seen: [InetAddr] = []
        for (nr, addr) in quorumConfig.slots.enumerated() where addr.family == InetAddr.familyIPv4 {
            let a = addr.ipv4
            let first = a >> 24
            if a == 0 || a == 0xffff_ffff || first == 0 || (first >= 224 && first <= 239) {
                throw QuorumServiceError(.configuration, "quorum slot #\(nr) has invalid ipv4 unicast address: \(addr)")
            }
            if addr.port == 0 || addr.port == UInt16.max {
                throw QuorumServiceError(.configuration, "quorum slot #\(nr) has invalid ipv4 port number: \(addr)")
            }
            if let other = seen.firstIndex(where: { $0.ipv4 == a && $0.port == addr.port }) {
                throw QuorumServiceError(.configuration, "quorum slots #\(other) and #\(nr) have the same address: \(addr)")
            }
            seen.append(addr)
        }
        do {
            return try QuorumMachineConfiguration(
                slot: slot, members: members, rid: rid, heartbeatTimeoutMs: heartbeatTimeoutMs,
                seed: seed ?? (UInt64.random(in: .min ... .max) ^ UInt64(slot)))
        } catch {
            throw QuorumServiceError(.configuration, error.description)
        }
    }
}

/// The server side of a quorum member: the service asks it to start and stop, and it reports
/// its status back through the ``QuorumServerReporter`` it was given.
///
/// The service calls these on its quorum thread, in the order the election decides, so each
/// must only request the work (start a task, queue it) and return at once; never block.
public protocol QuorumServerDelegate: Sendable {
    /// Start the server for `term`. It must first have every mount in `fencing` fenced (the
    /// earlier leaders found in the quorum blocks; give up after `Format.quorumFenceTimeoutMs`),
    /// and report ``QuorumServerStatus/starting``, then ``QuorumServerStatus/up``; a failed
    /// start reports ``QuorumServerStatus/down``. The quorum service keeps heartbeating
    /// meanwhile, and a failed start does not stop it.
    func startServer(term: UInt64, fencing: [QuorumFenceRequest], reporter: QuorumServerReporter)
    /// Stop the server of `term` (also while it is still starting); report
    /// ``QuorumServerStatus/stopping`` and then ``QuorumServerStatus/down`` through the reporter
    /// given at its start.
    func stopServer(term: UInt64)
}

/// How a server reports its status for the term it was started in. Reports are delivered to
/// the election in the order they are made. Safe to call from any thread.
public struct QuorumServerReporter: Sendable {
    /// The term the server was started for.
    public let term: UInt64
    private weak let service: ScoutQuorumService?

    init(term: UInt64, service: ScoutQuorumService) {
        self.term = term
        self.service = service
    }

    /// Tells the election the server's new status. A server that stops on its own (errors)
    /// reports `.stopping` (optionally) and `.down`.
    public func report(_ status: QuorumServerStatus) {
        service?.serverReported(status, term: term)
    }
}

/// The last message exchanged with one slot.
public struct QuorumMessageRecord: Sendable, Hashable {
    public var type: QuorumMessageType
    public var term: UInt64
    /// When, on the monotonic clock.
    public var at: MonotonicInstant
}

/// A snapshot of one member's election, readable from any thread.
public struct QuorumStatus: Sendable {
    public var slot: Int
    public var rid: UInt64
    public var lifecycle: QuorumStateMachine.Lifecycle
    public var role: QuorumStateMachine.Role
    public var term: UInt64
    /// The slot known to lead (from its heartbeats, or us).
    public var leader: Int?
    public var vote: QuorumStateMachine.Vote
    public var server: QuorumStateMachine.ServerState
    public var heartbeatTimeoutMs: Int
    /// When the election wants to wake next.
    public var deadline: MonotonicInstant
    /// When role or term last changed (an event time, for tests and diagnostics).
    public var roleSince: MonotonicInstant
    /// When we last won an election.
    public var electedAt: MonotonicInstant?
    /// The last message sent to each slot.
    public var lastSent: [Int: QuorumMessageRecord]
    /// The last valid message received from each slot.
    public var lastReceived: [Int: QuorumMessageRecord]
    /// Why the service stopped on an error; the mount must be remounted to take part again.
    public var failure: String?

    /// True while we lead the current term.
    public var isLeader: Bool {
        if case .leader = role { return true }
        return false
    }
}

/// Counters of one member (the original's `quorum_*` counters and heartbeat delays).
public struct QuorumCounters: Sendable, Hashable {
    public var sent = 0
    public var sendFailed = 0
    public var sentHeartbeats = 0
    public var sentVoteRequests = 0
    public var sentVotes = 0
    public var sentResignations = 0
    public var received = 0
    /// Datagrams dropped for size, crc, fsid, type or sender (`quorum_recv_invalid`).
    public var receivedInvalid = 0
    public var receivedHeartbeats = 0
    public var receivedVotes = 0
    public var receivedResignations = 0
    /// Times we stood for election.
    public var candidacies = 0
    /// Elections we won.
    public var elected = 0
    /// Times our server stopped while we led and we resigned.
    public var resignations = 0
    /// Elections put off because our server had not stopped.
    public var electionsDeferred = 0
    public var duplicateVotes = 0
    public var fenceRequests = 0
    /// Inputs the election ignored (stale terms are normal).
    public var ignoredInputs = 0
    /// Quorum block writes.
    public var blockWrites = 0
    /// The longest gap between two heartbeats (received as follower, sent as leader), in ms.
    public var heartbeatDelayMaxMs: UInt64 = 0
    /// Heartbeat gaps of at least one second, by whole seconds (index 1...59), as the original.
    public var heartbeatDelaySeconds: [Int] = Array(repeating: 0, count: 60)
}
