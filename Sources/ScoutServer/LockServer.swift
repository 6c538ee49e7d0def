public import ScoutFormat

/// The lock server's state: grants per lock and the queue of requests, as a pure state machine.
///
/// Design note. A lock is named by its start key. Requests for one lock are handled in arrival
/// order. Before the head request is granted, every other mount holding an incompatible mode
/// is sent one invalidation (to READ when it holds WRITE and the request is READ, else to
/// NULL), and the grant waits for all of their replies. A grant of WRITE or WRITE_ONLY carries
/// a new write seq from the caller's core seq. A mount that disappears loses its grants and
/// its queued requests, which may let others proceed. Matches the original's lock_server.c in
/// behaviour; recovery (replaying grants to a new server) is not built yet.
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

    private var locks: [Key: Lock] = [:]

    public init() {}

    /// A mount asks for `new` on `key` (it believes it holds `old`).
    public mutating func request(rid: UInt64, key: Key, old: LockMode, new: LockMode, nextSeq: () -> UInt64) -> [Action] {
        var lock = locks[key] ?? Lock()
        lock.waiting.append(Request(rid: rid, old: old, new: new))
        locks[key] = lock
        return process(key, nextSeq: nextSeq)
    }

    /// `rid` answered an invalidation: it now holds `mode`.
    public mutating func invalidated(rid: UInt64, key: Key, mode: LockMode, nextSeq: () -> UInt64) -> [Action] {
        guard var lock = locks[key] else { return [] }
        lock.invalidating[rid] = nil
        if mode == .null { lock.granted[rid] = nil } else { lock.granted[rid] = mode }
        locks[key] = lock
        return process(key, nextSeq: nextSeq)
    }

    /// `rid` is gone (farewell or fenced): its grants and requests are dropped.
    public mutating func removeClient(rid: UInt64, nextSeq: () -> UInt64) -> [Action] {
        var out: [Action] = []
        for key in Array(locks.keys) {
            guard var lock = locks[key] else { continue }
            lock.granted[rid] = nil
            lock.invalidating[rid] = nil
            lock.waiting.removeAll { $0.rid == rid }
            locks[key] = lock
            out += process(key, nextSeq: nextSeq)
        }
        return out
    }

    private mutating func process(_ key: Key, nextSeq: () -> UInt64) -> [Action] {
        var out: [Action] = []
        while var lock = locks[key], let req = lock.waiting.first {
            var blocked = false
            for (holder, held) in lock.granted where holder != req.rid && !held.compatible(with: req.new) {
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
