public import ScoutFormat

/// The lock server's state: grants per lock and the queue of requests, as a pure state machine.
///
/// Design note. A lock is named by its start key. Requests for one lock are handled in arrival
/// order. Before the head request is granted, every other mount holding an incompatible mode
/// is sent one invalidation (to READ when it holds WRITE and the request is READ, else to
/// NULL), and the grant waits for all of their replies. A grant of WRITE or WRITE_ONLY carries
/// a new write seq from the caller's core seq. A mount that disappears (farewell, or fenced and
/// reclaimed) loses its grants and its queued requests, which may let others proceed. Matches
/// the original's lock_server.c in behaviour.
///
/// Recovery. A new server knows no grants until every mount that was mounted under the last
/// server has replayed its locks. Until `finishRecovery` it queues every request and grants
/// nothing (the original's `process_waiting_requests` checks for any rid with lock recovery
/// pending); `recover` adds a replayed grant. A mount that cannot be reached keeps its grants
/// (it may still be writing) until it is fenced and `removeClient` drops them, so conflicting
/// requests wait: an invalidation that could not be delivered stays outstanding.
///
/// Deviations: a replayed NULL mode is not recorded (the original records it as a granted
/// entry, which only matters for its same-mount compatibility rule); a mount's own grant never
/// conflicts with its own request here, where the original sends the requester an
/// invalidation for some same-mount combinations (e.g. a NULL request).
public struct LockServerState: Sendable {
    public enum Action: Equatable, Sendable {
        /// Reply to `rid`'s request: it now holds `mode`.
        case grant(rid: UInt64, key: Key, old: LockMode, new: LockMode, writeSeq: UInt64)
        /// Ask `rid` to drop to `to` (it holds `from`).
        case invalidate(rid: UInt64, key: Key, from: LockMode, to: LockMode)
    }

    struct Request: Sendable {
        var rid: UInt64
        var old: LockMode
        var new: LockMode
    }

    struct Lock: Sendable {
        var granted: [UInt64: LockMode] = [:]
        var waiting: [Request] = []
        /// Mounts sent an invalidation not yet answered, with the mode asked for.
        var invalidating: [UInt64: LockMode] = [:]
    }

    /// Why a replayed lock was refused.
    public enum RecoverError: Error, Equatable, Sendable {
        /// The mount replayed a lock it already replayed (the original's EEXIST).
        case duplicate(rid: UInt64, key: Key)
    }

    private var locks: [Key: Lock] = [:]

    /// While true, requests are queued and nothing is granted (a new server waiting for every
    /// mount to replay its locks).
    public private(set) var recovering: Bool

    /// - Parameter recovering: start waiting for lock recovery (a server that found mounts in
    ///   `mounted_clients`).
    public init(recovering: Bool = false) {
        self.recovering = recovering
    }

    /// Records that `rid` holds `mode` on `key`, as it told a new server (LOCK_RECOVER).
    ///
    /// - Throws: `.duplicate` when `rid` already holds a grant of `key`.
    public mutating func recover(rid: UInt64, key: Key, mode: LockMode) throws(RecoverError) {
        var lock = locks[key] ?? Lock()
        guard lock.granted[rid] == nil else { throw .duplicate(rid: rid, key: key) }
        guard mode != .null else { return }
        lock.granted[rid] = mode
        locks[key] = lock
    }

    /// Every mount recovered (or was fenced and reclaimed): the queued requests are processed.
    public mutating func finishRecovery(nextSeq: () -> UInt64) -> [Action] {
        guard recovering else { return [] }
        recovering = false
        var out: [Action] = []
        for key in locks.keys.sorted() where !(locks[key]?.waiting.isEmpty ?? true) {
            out += process(key, nextSeq: nextSeq)
        }
        return out
    }

    /// The modes `rid` holds, by lock.
    public func grants(rid: UInt64) -> [Key: LockMode] {
        var out: [Key: LockMode] = [:]
        for (key, lock) in locks {
            if let m = lock.granted[rid] { out[key] = m }
        }
        return out
    }

    /// Number of requests waiting, over all locks.
    public var waitingCount: Int { locks.values.reduce(0) { $0 + $1.waiting.count } }

    /// A mount asks for `new` on `key` (it believes it holds `old`).
    public mutating func request(rid: UInt64, key: Key, old: LockMode, new: LockMode, nextSeq: () -> UInt64) -> [Action] {
        var lock = locks[key] ?? Lock()
        lock.waiting.append(Request(rid: rid, old: old, new: new))
        locks[key] = lock
        return process(key, nextSeq: nextSeq)
    }

    /// `rid` answered an invalidation: it now holds `mode`. An answer to no outstanding
    /// invalidation (the mount was removed meanwhile) changes nothing.
    public mutating func invalidated(rid: UInt64, key: Key, mode: LockMode, nextSeq: () -> UInt64) -> [Action] {
        guard var lock = locks[key], lock.invalidating[rid] != nil else { return [] }
        lock.invalidating[rid] = nil
        if mode == .null { lock.granted[rid] = nil } else { lock.granted[rid] = mode }
        locks[key] = lock
        return process(key, nextSeq: nextSeq)
    }

    /// `rid` is gone (farewell or fenced): its grants and requests are dropped.
    public mutating func removeClient(rid: UInt64, nextSeq: () -> UInt64) -> [Action] {
        var out: [Action] = []
        for key in locks.keys.sorted() {
            guard var lock = locks[key] else { continue }
            lock.granted[rid] = nil
            lock.invalidating[rid] = nil
            lock.waiting.removeAll { $0.rid == rid }
            if lock.granted.isEmpty && lock.waiting.isEmpty && lock.invalidating.isEmpty {
                locks[key] = nil
            } else {
                locks[key] = lock
                out += process(key, nextSeq: nextSeq)
            }
        }
        return out
    }

    private mutating func process(_ key: Key, nextSeq: () -> UInt64) -> [Action] {
        var out: [Action] = []
        guard !recovering else { return out }
        while var lock = locks[key], let req = lock.waiting.first {
            var blocked = false
            for holder in lock.granted.keys.sorted() where holder != req.rid {
                let held = lock.granted[holder]!
                guard !held.compatible(with: req.new) else { continue }
                blocked = true
                if lock.invalidating[holder] == nil {
                    let to: LockMode = (held == .write && req.new == .read) ? .read : .null
                    lock.invalidating[holder] = to
                    out.append(.invalidate(rid: holder, key: key, from: held, to: to))
                }
            }
            if blocked {
                locks[key] = lock
                return out
            }
            lock.waiting.removeFirst()
            let old = lock.granted[req.rid] ?? .null
            if req.new == .null {
                lock.granted[req.rid] = nil
            } else {
                lock.granted[req.rid] = req.new
            }
            let seq: UInt64 = (req.new == .write || req.new == .writeOnly) ? nextSeq() : 0
            out.append(.grant(rid: req.rid, key: key, old: old, new: req.new, writeSeq: seq))
            if lock.granted.isEmpty && lock.waiting.isEmpty && lock.invalidating.isEmpty {
                locks[key] = nil
            } else {
                locks[key] = lock
            }
        }
        return out
    }
}
