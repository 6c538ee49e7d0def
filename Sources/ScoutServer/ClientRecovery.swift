/// Which mounts a new server still waits for (the original's `recov.c`), as a pure value.
///
/// Design note. A server that starts on a volume whose `mounted_clients` lists mounts prepares
/// every one of them as pending in both parts: its greeting and its lock recovery. A part is
/// finished when the mount greets (`.greeting`) and when it has sent all its locks (`.locks`);
/// both are finished at once when the mount was fenced and reclaimed (`.all`). The server's
/// lock and farewell processing wait on it; the timer that fences mounts still pending after
/// the recovery timeout lives with the caller (no clock here).
///
/// Deviation from the original: recovery is "begun" when the value is made (the original
/// prepares every rid and then arms the timer with `scoutfs_recov_begin`, so a finish before
/// the begin cannot end recovery early); here the caller prepares from one snapshot of
/// `mounted_clients` before it listens, so there is no window to guard.
public struct ClientRecovery: Sendable, Equatable {
    /// The parts of a mount's state a new server recovers.
    public struct Parts: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// `SCOUTFS_RECOV_GREETING`: the mount has not greeted this server yet.
        public static let greeting = Parts(rawValue: 1)
        /// `SCOUTFS_RECOV_LOCKS`: the mount has not sent all its locks yet.
        public static let locks = Parts(rawValue: 2)
        /// Both (`SCOUTFS_RECOV_ALL`).
        public static let all: Parts = [.greeting, .locks]
    }

    private var pending: [UInt64: Parts] = [:]

    /// No mount pending.
    public init() {}

    /// Every rid in `rids` pending in every part.
    public init(pendingRids rids: some Sequence<UInt64>) {
        for rid in rids { pending[rid] = .all }
    }

    /// Adds `parts` to what `rid` still has to recover.
    public mutating func prepare(rid: UInt64, _ parts: Parts = .all) {
        pending[rid, default: []].formUnion(parts)
    }

    /// `rid` recovered `parts`. Returns true when this call finished the recovery of every
    /// mount (it was pending before and nothing is now), so the caller resumes waiting work
    /// exactly once.
    @discardableResult
    public mutating func finish(rid: UInt64, _ parts: Parts) -> Bool {
        guard var p = pending[rid], !p.isDisjoint(with: parts) else { return false }
        p.subtract(parts)
        if p.isEmpty {
            pending[rid] = nil
            return pending.isEmpty
        }
        pending[rid] = p
        return false
    }

    /// Whether `rid` still has any of `parts` to recover.
    public func isPending(rid: UInt64, _ parts: Parts = .all) -> Bool {
        guard let p = pending[rid] else { return false }
        return !p.isDisjoint(with: parts)
    }

    /// The rids still pending in any of `parts`, ascending.
    public func pendingRids(_ parts: Parts = .all) -> [UInt64] {
        pending.filter { !$0.value.isDisjoint(with: parts) }.keys.sorted()
    }

    /// Nothing is pending: requests that wait for recovery may proceed.
    public var isFinished: Bool { pending.isEmpty }
}
