public import ScoutProtocol

/// One OPEN_INO_MAP request as the server fans it out (the original's `omap_request`): the
/// mounts still to answer and the OR of the maps so far.
///
/// Every mounted client other than the asking one is asked for its map of the group; the
/// request is answered once the last one has. A mount that fails to answer (its connection
/// state dropped, an error, a map for another request) or the time limit running out ends the
/// request as `.unknown`: the asker must then treat the whole group as held. That is where
/// this differs from the original, which waits for a missing mount until it is fenced.
public struct OpenInoMapGather: Sendable {
    public enum Outcome: Equatable, Sendable {
        /// Every asked mount answered: the OR of their maps.
        case answered(OpenInoMap)
        /// Not every mount answered; the rid named is one that did not.
        case unknown(rid: UInt64)
    }

    public private(set) var map: OpenInoMap
    /// The rids still to answer.
    public private(set) var waiting: Set<UInt64>
    /// Set once the request is over; later events change nothing.
    public private(set) var outcome: Outcome?

    /// A request for `groupNr` from `asking`, sent to every other rid of `mounted`. With no
    /// other mount the outcome is an empty map at once.
    public init(groupNr: UInt64, reqID: UInt64, asking: UInt64, mounted: some Sequence<UInt64>) {
        map = OpenInoMap(args: OpenInoMapArgs(groupNr: groupNr, reqID: reqID))
        waiting = Set(mounted).subtracting([asking])
        if waiting.isEmpty { outcome = .answered(map) }
    }

    /// The rids to send the request to.
    public var targets: [UInt64] { waiting.sorted() }

    /// `rid` answered with `reply`. Returns the outcome when this ended the request.
    public mutating func reply(rid: UInt64, _ reply: OpenInoMap) -> Outcome? {
        guard outcome == nil, waiting.contains(rid) else { return nil }
        guard reply.args == map.args else { return failed(rid: rid) }
        map.formUnion(reply)
        waiting.remove(rid)
        if waiting.isEmpty {
            outcome = .answered(map)
            return outcome
        }
        return nil
    }

    /// `rid` could not answer. Returns the outcome when this ended the request.
    public mutating func failed(rid: UInt64) -> Outcome? {
        guard outcome == nil, waiting.contains(rid) else { return nil }
        outcome = .unknown(rid: rid)
        return outcome
    }

    /// The time limit ran out. Returns the outcome when this ended the request.
    public mutating func timedOut() -> Outcome? {
        guard outcome == nil, let rid = waiting.min() else { return nil }
        outcome = .unknown(rid: rid)
        return outcome
    }
}

/// The server's OPEN_INO_MAP counters, in the original's names where it has them.
public struct OpenInoMapCounters: Equatable, Sendable {
    /// Requests from mounts, and requests sent on to mounts.
    public var omapRequest: UInt64 = 0
    public var omapRequestSent: UInt64 = 0
    /// Requests answered with a map, and ones that failed because a mount did not answer.
    public var omapResponse: UInt64 = 0
    public var omapResponseUnknown: UInt64 = 0

    public init() {}

    /// Name and value of each, as `scoutfs counters` prints them.
    public var named: [(String, UInt64)] {
        [
            ("server_omap_request", omapRequest), ("server_omap_request_sent", omapRequestSent),
            ("server_omap_response", omapResponse), ("server_omap_response_unknown", omapResponseUnknown),
        ]
    }
}
