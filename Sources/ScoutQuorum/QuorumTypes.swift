public import ScoutFormat

/// The server's life cycle as the server reports it (`DOWN → STARTING → UP → STOPPING → DOWN`).
public enum QuorumServerStatus: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Not running: never started, or fully stopped.
    case down
    /// Starting: waiting for fences, reading the super, recovering.
    case starting
    /// Running: it has fenced every earlier leader.
    case up
    /// Shutting down, asked to or on its own errors.
    case stopping

    public var description: String {
        switch self {
        case .down: "down"
        case .starting: "starting"
        case .up: "up"
        case .stopping: "stopping"
        }
    }
}

/// What the state machine is given. Every input comes with the current monotonic instant.
public enum QuorumInput: Sendable, Equatable {
    /// The member starts: the blocks of every configured slot were just read.
    case start(QuorumBlockSet)
    /// A valid message arrived (decoded with ``QuorumMessage/decode(_:fsid:members:)-(UnsafeRawBufferPointer,_,_)``).
    case received(QuorumMessage)
    /// The wait for a message reached the deadline of the last ``QuorumAction/wakeAt(_:)``
    /// without a message. Only this input starts elections, and the service gives it only after
    /// handling every message that arrived before the timer fired (a896984f, e18ea245).
    case receiveTimedOut
    /// The server reports a status change for the term it was started in.
    case serverStatus(QuorumServerStatus, term: UInt64)
    /// Answer to ``QuorumAction/readQuorumBlocks``: every configured slot's block, read after
    /// our ELECT event was written.
    case quorumBlocksRead(QuorumBlockSet)
    /// The `quorum_heartbeat_timeout_ms` option changed at run time.
    case setHeartbeatTimeout(milliseconds: Int)
    /// Unmount: stop the server and wait for it, resign if leader, write STOP and END.
    case shutdown
    /// Forced unmount: stop at once; nothing is sent or written (15de0c21).
    case forcedShutdown
}

/// What the service must do, in order. Durability actions must complete (written and synced)
/// before the next action runs: that order is how a term or an election is always on disk
/// before any message that depends on it is sent.
public enum QuorumAction: Sendable, Hashable, CustomStringConvertible {
    /// Set this event in our own slot's quorum block (and only ours: 38a4a567) to `term`, with
    /// our rid and the wall-clock time, increment the block's write_nr, write and sync it.
    /// Every write but BEGIN first checks that the block's BEGIN rid is still ours.
    case writeEvent(QuorumBlock.Event, term: UInt64)
    /// Send one message to one slot's address.
    case send(QuorumMessageType, term: UInt64, to: Int)
    /// Send one message to every other configured slot, best effort.
    case broadcast(QuorumMessageType, term: UInt64)
    /// Read every configured slot's block and give them back as ``QuorumInput/quorumBlocksRead(_:)``.
    case readQuorumBlocks
    /// Ask the fencing agent to fence an earlier leader; the server's start waits for it.
    case requestFence(QuorumFenceRequest)
    /// Start the server for `term`, asynchronously: it reports back with
    /// ``QuorumInput/serverStatus(_:term:)``, and heartbeats go on meanwhile (bb3db7e2).
    case startServer(term: UInt64)
    /// Stop the server of `term`, asynchronously; it reports `.down` when stopped.
    case stopServer(term: UInt64)
    /// Something worth a counter or a log line; nothing to do.
    case note(QuorumNote)
    /// Wait for a message until this instant, then give ``QuorumInput/receiveTimedOut``.
    /// Replaces any earlier deadline. The last action of every transition while running.
    case wakeAt(MonotonicInstant)
    /// The machine has stopped; close the socket. The last action it ever returns.
    case stopped

    public var description: String {
        switch self {
        case .writeEvent(let e, let t): "write \(e.name) term \(t)"
        case .send(let type, let t, let to): "send \(type) term \(t) to \(to)"
        case .broadcast(let type, let t): "broadcast \(type) term \(t)"
        case .readQuorumBlocks: "read quorum blocks"
        case .requestFence(let r): "request \(r)"
        case .startServer(let t): "start server term \(t)"
        case .stopServer(let t): "stop server term \(t)"
        case .note(let n): "note \(n)"
        case .wakeAt(let i): "wake at \(i)"
        case .stopped: "stopped"
        }
    }
}

/// Events worth counting or logging. None requires an action.
public enum QuorumNote: Sendable, Hashable, CustomStringConvertible {
    /// We became a candidate in this term (counter `quorum_send_request`).
    case candidate(term: UInt64)
    /// We won the election of this term (counter `quorum_elected`).
    case elected(term: UInt64)
    /// A leader saw a greater term and stepped down; its server will be stopped.
    case leaderSawGreaterTerm(from: Int, term: UInt64)
    /// Our server stopped while we led this term; we resigned (counter `quorum_server_shutdown`).
    case resigned(term: UInt64)
    /// An election was due but our own server has not fully stopped yet
    /// (counter `quorum_candidate_server_stopping`).
    case electionDeferredServerRunning
    /// A second vote from the same slot in one term: a duplicated datagram, or two mounts using
    /// that slot.
    case duplicateVote(from: Int, term: UInt64)
    /// A message claiming to come from our own slot: another mount is using our slot.
    case messageFromOwnSlot(term: UInt64)
    /// A heartbeat or resignation of our own term from another slot while we lead it: impossible
    /// with one vote per member and term, so another mount is using a slot.
    case sameTermLeader(from: Int, term: UInt64)
    /// After our ELECT write the blocks showed a newer election: we stepped down without
    /// starting a server.
    case newerLeaderOnDisk(term: UInt64)
    /// Some configured slot's block could not be read when checking for leaders to fence; the
    /// server is not started and we resign.
    case fenceCheckFailed(term: UInt64, unreadable: SlotSet)
    /// The term cannot grow any more (a peer sent the greatest u64): no election is possible.
    case termExhausted

    public var description: String {
        switch self {
        case .candidate(let t): "candidate in term \(t)"
        case .elected(let t): "elected leader in term \(t)"
        case .leaderSawGreaterTerm(let f, let t): "leader saw term \(t) from slot \(f), stepping down"
        case .resigned(let t): "server stopped, resigned leadership of term \(t)"
        case .electionDeferredServerRunning: "election deferred until our server has stopped"
        case .duplicateVote(let f, let t): "second vote from slot \(f) in term \(t): duplicate datagram, or two mounts use that slot"
        case .messageFromOwnSlot(let t): "message of term \(t) from our own slot: another mount uses this slot"
        case .sameTermLeader(let f, let t): "slot \(f) acts as leader of our term \(t): another mount uses a slot"
        case .newerLeaderOnDisk(let t): "a newer leader (term \(t)) is on disk; not starting the server"
        case .fenceCheckFailed(let t, let u): "could not read quorum blocks \(u) to fence earlier leaders; resigning term \(t)"
        case .termExhausted: "term cannot grow further"
        }
    }
}

/// Why an input changed nothing. Inputs the machine cannot act on are never a trap: they are
/// reported here and the machine stays as it was (the wake deadline is repeated while running).
public enum QuorumIgnoredReason: Sendable, Hashable {
    /// Only `.start` (or `.shutdown`) is accepted before the machine starts.
    case notStarted
    /// `.start` was given twice.
    case alreadyStarted
    /// The machine has stopped; nothing is accepted.
    case stopped
    /// A message from an older term (normal after elections).
    case staleTerm
    /// A message from a slot that is not configured, or not a slot number.
    case unknownSlot
    /// A message from our own slot (see ``QuorumNote/messageFromOwnSlot(term:)``).
    case ownSlot
    /// A message that means nothing in our role (a vote while not a candidate, a vote request
    /// after voting, a heartbeat of our own term while leader...).
    case notApplicable
    /// The timer fired before the deadline (a stale timer): nothing is due yet.
    case early
    /// A server status for a term that is not the server's, or while no server runs.
    case unexpectedServerStatus
    /// Blocks read while we are not a new leader waiting for them.
    case unexpectedBlocks
    /// A heartbeat timeout outside 2000...60000 ms; the old one stays.
    case invalidHeartbeatTimeout
}

/// The result of one input: the actions to carry out in order, and whether the input was ignored.
public struct QuorumTransition: Sendable, Equatable {
    /// What to do, in order; durability actions complete before the next action.
    public var actions: [QuorumAction]
    /// Set when the input changed nothing.
    public var ignored: QuorumIgnoredReason?

    public init(actions: [QuorumAction] = [], ignored: QuorumIgnoredReason? = nil) {
        self.actions = actions
        self.ignored = ignored
    }
}

/// Why a quorum configuration cannot be used.
public enum QuorumConfigurationError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The slot number is not 0..<15.
    case slotOutOfRange(Int)
    /// `quorum_slot_nr` names a slot that has no address.
    case slotNotConfigured(slot: Int, configured: SlotSet)
    /// No slot has an address.
    case noConfiguredSlots
    /// `quorum_heartbeat_timeout_ms` outside 2000...60000.
    case heartbeatTimeoutOutOfRange(Int)
    /// A mount id must not be 0 (0 marks an event that was never set).
    case invalidRid

    public var description: String {
        switch self {
        case .slotOutOfRange(let s): "quorum slot \(s) is not between 0 and \(Format.quorumMaxSlots - 1)"
        case .slotNotConfigured(let s, let c):
            "quorum_slot_nr=\(s) option references unused slot, must be one of the following configured slots: \(c.map(String.init).joined(separator: ","))"
        case .noConfiguredSlots: "no populated quorum slots in superblock"
        case .heartbeatTimeoutOutOfRange(let ms):
            "quorum_heartbeat_timeout_ms=\(ms) must be between \(Format.quorumMinHeartbeatTimeoutMs) and \(Format.quorumMaxHeartbeatTimeoutMs)"
        case .invalidRid: "mount rid must not be 0"
        }
    }
}

/// The fixed parameters of one member's election.
public struct QuorumMachineConfiguration: Sendable, Hashable {
    /// Our slot number.
    public let slot: Int
    /// Every configured slot, ours included.
    public let members: SlotSet
    /// This mount's id; events we write carry it, and we never fence it.
    public let rid: UInt64
    /// `quorum_heartbeat_timeout_ms` at start (it can change later by input).
    public let heartbeatTimeoutMs: Int
    /// Seed of the election-timeout generator.
    public let seed: UInt64

    /// Validates the parameters.
    /// - Throws: ``QuorumConfigurationError`` for a bad slot, an empty configuration, an
    ///   out-of-range heartbeat timeout or a zero rid.
    public init(
        slot: Int, members: SlotSet, rid: UInt64,
        heartbeatTimeoutMs: Int = Format.quorumDefaultHeartbeatTimeoutMs, seed: UInt64
    ) throws(QuorumConfigurationError) {
        guard SlotSet.isValid(slot) else { throw .slotOutOfRange(slot) }
        guard !members.isEmpty else { throw .noConfiguredSlots }
        guard members.contains(slot) else { throw .slotNotConfigured(slot: slot, configured: members) }
        try Self.validateHeartbeatTimeout(heartbeatTimeoutMs)
        guard rid != 0 else { throw .invalidRid }
        self.slot = slot
        self.members = members
        self.rid = rid
        self.heartbeatTimeoutMs = heartbeatTimeoutMs
        self.seed = seed
    }

    /// Checks a `quorum_heartbeat_timeout_ms` value (2000...60000).
    public static func validateHeartbeatTimeout(_ ms: Int) throws(QuorumConfigurationError) {
        guard ms >= Format.quorumMinHeartbeatTimeoutMs && ms <= Format.quorumMaxHeartbeatTimeoutMs else {
            throw .heartbeatTimeoutOutOfRange(ms)
        }
    }

    /// Votes a candidate needs: a majority of the configured slots, except 1 when only one or
    /// two slots are configured (as the original).
    public var votesNeeded: Int {
        members.count < 3 ? 1 : members.count / 2 + 1
    }
}
