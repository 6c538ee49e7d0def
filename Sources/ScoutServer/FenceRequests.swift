#if canImport(Glibc)
import Glibc
#endif
import ScoutFormat
import Synchronization

/// Why a mount is to be fenced (the original's reason strings).
public enum FenceReason: String, Sendable, Hashable, CaseIterable {
    /// It did not recover its locks with a new server in time.
    case clientRecovery = "client_recovery"
    /// Its connection broke and it did not reconnect in time.
    case clientReconnect = "client_reconnect"
    /// It led an earlier term and the quorum blocks do not show it stopped.
    case quorumBlockLeader = "quorum_block_leader"
}

/// One request to fence a mount, as a fencing agent sees it.
public struct FenceRequest: Sendable, Hashable {
    /// The mount to fence.
    public var rid: UInt64
    /// Its last known IPv4 address, host byte order (0 when unknown).
    public var ipv4: UInt32
    public var reason: FenceReason
    /// When the request was made, on the table's clock (nanoseconds).
    public var createdNs: UInt64
    /// The agent reported the mount fenced.
    public var fenced = false
    /// The agent reported a failure, or the request expired unanswered.
    public var error = false
    /// The request errored because nothing answered it within ``FenceRequests/expiryNs``.
    public var expired = false
    /// Why the server fenced it itself, without an agent (its daemon ran on this host and is
    /// provably gone); nil when an agent answered or nothing has yet.
    public var localReason: String?

    /// The address as a dotted quad.
    public var ipv4String: String { InetAddr(ipv4: ipv4, port: 0).ipv4String }

    /// The rid as the original prints it (`%016llx`).
    public var ridString: String { rid.paddedHex }

    /// Whole seconds since the request was made.
    public func elapsedSeconds(now: UInt64) -> UInt64 { now >= createdNs ? (now - createdNs) / 1_000_000_000 : 0 }

    /// Neither fenced nor errored yet.
    public var isPending: Bool { !fenced && !error }

    /// The one message for an operator when this request errored: the rid, its address, the
    /// reason, and what to run.
    public var failureMessage: String {
        let who = "rid \(ridString) at \(ipv4String) (\(reason.rawValue))"
        if expired {
            return "no fencing agent answered the request to fence \(who) within \(FenceRequests.expiryNs / 1_000_000_000) s: "
                + FenceRequest.whatToRun
        }
        return "the fencing agent failed to fence \(who): see its log; " + FenceRequest.whatToRun
    }

    /// What an operator runs when a fence cannot complete.
    public static let whatToRun =
        "start `scoutfs fenced` on every quorum member (docs/cluster.md, Fencing) and mount again; "
        + "if that mount is certainly stopped (its host powered off or cut from the devices), "
        + "fence it by hand with a `scoutfs fenced` whose SCOUTFS_FENCED_RUN is /bin/true while mounting"
}

/// The fence requests of one server instance (the original's `fence.c`): the leader's server
/// creates them for lost mounts and earlier leaders, an agent lists and answers them, and the
/// server's reclaim worker consumes the answered ones.
///
/// Rules kept from the original: one request per rid (a second one is ignored); a request not
/// answered within ``expiryNs`` (30 s) is marked errored; answering sets a flag and cannot be
/// undone. Safe to use from any thread.
public final class FenceRequests: Sendable {
    /// How long an agent has to answer (the original's 30 s).
    public static let expiryNs: UInt64 = 30_000_000_000

    /// Fences a request on this host without an agent, when that is provably safe: returns
    /// why (logged by the caller's closure), or nil to leave the request to an agent. It must
    /// return within a few seconds and never wait for a mount.
    public typealias LocalFencer = @Sendable (FenceRequest) -> String?

    private let clock: @Sendable () -> UInt64
    private let requests = Mutex<[UInt64: FenceRequest]>([:])
    private let localFencer: LocalFencer?

    /// - Parameters:
    ///   - clock: monotonic nanoseconds; `CLOCK_MONOTONIC` by default.
    ///   - localFencer: tried on every new request before an agent sees it (see ``LocalFencer``).
    public init(clock: @escaping @Sendable () -> UInt64 = FenceRequests.monotonicNow, localFencer: LocalFencer? = nil) {
        self.clock = clock
        self.localFencer = localFencer
    }

    /// `CLOCK_MONOTONIC` in nanoseconds.
    public static func monotonicNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// The table's clock, now.
    public var now: UInt64 { clock() }

    /// Requests that `rid` be fenced. Returns false, changing nothing, when a request for it
    /// already exists.
    ///
    /// A new request is first offered to the local fencer: when it fences the mount, the
    /// request is answered `fenced` at once, with its reason in ``FenceRequest/localReason``.
    @discardableResult
    public func start(rid: UInt64, ipv4: UInt32, reason: FenceReason) -> Bool {
        let now = clock()
        let request = FenceRequest(rid: rid, ipv4: ipv4, reason: reason, createdNs: now)
        let added = requests.withLock { table in
            guard table[rid] == nil else { return false }
            table[rid] = request
            return true
        }
        if added, let localFencer, let why = localFencer(request) {
            requests.withLock { table in
                guard table[rid]?.isPending == true else { return }
                table[rid]!.fenced = true
                table[rid]!.localReason = why
            }
        }
        return added
    }

    /// Fences `rid` only if the local fencer can do it now (its daemon ran on this host and is
    /// provably gone): then a request answered `fenced` is recorded, as ``start(rid:ipv4:reason:)``
    /// would, and true is returned. Otherwise nothing is recorded (an agent is not asked yet).
    @discardableResult
    public func startIfFencedLocally(rid: UInt64, ipv4: UInt32, reason: FenceReason) -> Bool {
        guard let localFencer else { return false }
        var request = FenceRequest(rid: rid, ipv4: ipv4, reason: reason, createdNs: clock())
        guard requests.withLock({ $0[rid] == nil }), let why = localFencer(request) else { return false }
        request.fenced = true
        request.localReason = why
        return requests.withLock { table in
            guard table[rid] == nil else { return false }
            table[rid] = request
            return true
        }
    }

    /// Every request, by rid, with expiry applied.
    public func list() -> [FenceRequest] {
        let now = clock()
        return requests.withLock { table in
            Self.expire(&table, now: now)
            return table.values.sorted { $0.rid < $1.rid }
        }
    }

    /// One request, with expiry applied; nil when there is none for `rid`.
    public func request(rid: UInt64) -> FenceRequest? {
        let now = clock()
        return requests.withLock { table in
            Self.expire(&table, now: now)
            return table[rid]
        }
    }

    /// An agent's answer: the mount is fenced, or fencing it failed. Returns false when there is
    /// no request for `rid` (it may have been reclaimed already).
    @discardableResult
    public func answer(rid: UInt64, fenced: Bool) -> Bool {
        requests.withLock { table in
            guard table[rid] != nil else { return false }
            if fenced { table[rid]!.fenced = true } else { table[rid]!.error = true }
            return true
        }
    }

    /// Deletes a request (after its rid was reclaimed).
    public func remove(rid: UInt64) {
        _ = requests.withLock { $0.removeValue(forKey: rid) }
    }

    /// The answered requests (fenced or errored), by rid, with expiry applied.
    public func answered() -> [FenceRequest] {
        list().filter { !$0.isPending }
    }

    /// How a wait for fences ended.
    public enum WaitResult: Sendable, Equatable {
        /// Every request was answered fenced (or reclaimed and removed).
        case fenced
        /// A request errored (answered so, or expired).
        case failed(rid: UInt64)
        /// Some were still pending when the time ran out.
        case timedOut(pending: [UInt64])
    }

    /// Waits until every request of `rids` is fenced, one errors, or `timeoutNs` passes
    /// (polling every `pollNs`). A request that no longer exists counts as fenced. A cancelled
    /// task stops waiting at once (the result is then `.timedOut`).
    public func wait(rids: [UInt64], timeoutNs: UInt64, pollNs: UInt64 = 50_000_000) async -> WaitResult {
        let deadline = clock() &+ timeoutNs
        while true {
            let now = clock()
            let state = requests.withLock { table -> WaitResult in
                Self.expire(&table, now: now)
                var pending: [UInt64] = []
                for rid in rids {
                    guard let r = table[rid] else { continue }
                    if r.error { return .failed(rid: rid) }
                    if !r.fenced { pending.append(rid) }
                }
                return pending.isEmpty ? .fenced : .timedOut(pending: pending)
            }
            if case .timedOut = state, now < deadline, !Task.isCancelled {
                try? await Task.sleep(nanoseconds: min(pollNs, deadline - now))
                continue
            }
            return state
        }
    }

    private static func expire(_ table: inout [UInt64: FenceRequest], now: UInt64) {
        for (rid, r) in table where r.isPending && now &- r.createdNs >= expiryNs && now >= r.createdNs {
            table[rid]!.error = true
            table[rid]!.expired = true
        }
    }
}
