public import ScoutFormat

/// A mount's cluster locks (the original's lock.c, client side).
///
/// Design note. Each lock, named by its range's start key, has a granted mode, a count of
/// local users and a write seq. `acquire` returns at once when the granted mode covers the
/// request, else sends one request to the server and waits for the grant (only one
/// request per lock is outstanding). An invalidation from the server waits until no user
/// holds an incompatible mode, runs the `onInvalidate` hook (commit the lock's dirty items,
/// drop its cached items and the kernel's caches), then lowers the mode. Callers acquire
/// every lock before they take the filesystem's state lock and never while a transaction
/// is held, so a lock wait can never block an invalidation the server needs first.
final class LockClient: @unchecked Sendable {
    // Invariant: `table` and `highestWriteSeq` are only touched with `lock` held.
    struct State {
        var mode: LockMode = .null
        var users: [LockMode: Int] = [:]
        var requesting = false
        /// The mode asked for while `requesting`.
        var requestedMode: LockMode = .null
        var invalidating = false
        var writeSeq: UInt64 = 0
    }

    private let lock = PThreadLock()
    private var table: [Key: State] = [:]
    private(set) var highestWriteSeq: UInt64 = 0
    let link: any ServerLink
    /// Called when `range` is being invalidated to `to`, with no incompatible local users.
    var onInvalidate: (@Sendable (LockRange, LockMode) -> Void)?

    init(link: any ServerLink) {
        self.link = link
    }

    static func covers(_ held: LockMode, _ want: LockMode) -> Bool {
        switch (held, want) {
        case (.write, _): return true
        case (.read, .read), (.writeOnly, .writeOnly): return true
        case (_, .null): return true
        default: return false
        }
    }

    /// Blocks until this mount holds `mode` on `range`, and counts one user.
    func acquire(_ range: LockRange, _ mode: LockMode) throws(FSError) {
        lock.lock()
        defer { lock.unlock() }
        let deadline = monotonicSeconds() + 600
        while true {
            var st = table[range.start] ?? State()
            if st.invalidating {
                lock.wait(seconds: 1)
                continue
            }
            if Self.covers(st.mode, mode) {
                st.users[mode, default: 0] += 1
                table[range.start] = st
                return
            }
            if st.requesting {
                if monotonicSeconds() > deadline { throw FSError(FSError.EIO, "lock \(range.start) not granted in 600 s") }
                lock.wait(seconds: 1)
                continue
            }
            let want: LockMode = (st.mode == .read && mode == .writeOnly) ? .write : mode
            st.requesting = true
            st.requestedMode = want
            table[range.start] = st
            lock.unlock()
            let result: Result<UInt64, FSError>
            do {
                result = .success(try link.lock(key: range.start, old: st.mode, new: want))
            } catch {
                result = .failure(error)
            }
            lock.lock()
            var now = table[range.start] ?? State()
            now.requesting = false
            switch result {
            case .success(let seq):
                now.mode = want
                now.writeSeq = seq
                if seq > highestWriteSeq { highestWriteSeq = seq }
                table[range.start] = now
                lock.broadcast()
            case .failure(let e):
                table[range.start] = now
                lock.broadcast()
                throw e
            }
        }
    }

    /// Drops one user of `mode` on `range`.
    func release(_ range: LockRange, _ mode: LockMode) {
        lock.withLock {
            guard var st = table[range.start] else { return }
            st.users[mode, default: 0] -= 1
            if st.users[mode] == 0 { st.users[mode] = nil }
            table[range.start] = st
            lock.broadcast()
        }
    }

    /// The server asks this mount to drop `range` to `to`. Returns when done.
    ///
    /// Invalidations of one lock run one after the other: a duplicate, or an old server's
    /// invalidation still running when a new server sends its own after lock recovery, waits
    /// for the one in progress (lesson 8). An invalidation only ever lowers the mode: one to
    /// READ of a lock already at NULL (a stale duplicate) leaves it at NULL.
    ///
    /// `from` is the mode the server believes this mount holds. When it is the mode of a
    /// request still outstanding here, the server granted it before sending this
    /// invalidation, and the grant's answer is being applied by the requesting thread: the
    /// invalidation waits for that (bounded), so it lowers the granted mode and the grant can
    /// never land after it.
    func invalidate(_ range: LockRange, from: LockMode? = nil, to: LockMode) {
        lock.lock()
        let grantDeadline = monotonicSeconds() + 30
        while let st = table[range.start] {
            if st.invalidating {
                lock.wait(seconds: 1)
            } else if let from, st.requesting, st.requestedMode == from, st.mode != from,
                monotonicSeconds() < grantDeadline
            {
                lock.wait(seconds: 1)
            } else {
                break
            }
        }
        var mark = table[range.start] ?? State()
        mark.invalidating = true
        table[range.start] = mark
        // wait for local users whose mode `to` does not cover
        while let st = table[range.start], st.users.contains(where: { $0.value > 0 && !Self.covers(to, $0.key) }) {
            lock.wait(seconds: 1)
        }
        lock.unlock()
        onInvalidate?(range, to)
        lock.withLock {
            var st = table[range.start] ?? State()
            st.mode = Self.lowered(st.mode, to: to)
            st.invalidating = false
            table[range.start] = st
            lock.broadcast()
        }
    }

    /// The mode an invalidation to `to` leaves a lock held in `held` in: NULL, or READ from
    /// WRITE; never a mode the mount did not hold.
    static func lowered(_ held: LockMode, to: LockMode) -> LockMode {
        to == .read && held != .write && held != .read ? .null : to
    }

    /// Whether an invalidation of `range` is under way.
    func isInvalidating(_ range: LockRange) -> Bool {
        lock.withLock { table[range.start]?.invalidating ?? false }
    }

    /// The write seq of the WRITE grant this mount holds on `range`; nil when it holds less.
    func writeSeq(ofWriteLock range: LockRange) -> UInt64? {
        lock.withLock {
            guard let st = table[range.start], st.mode == .write else { return nil }
            return st.writeSeq
        }
    }

    /// The mode held on `range`.
    func mode(_ range: LockRange) -> LockMode {
        lock.withLock { table[range.start]?.mode ?? .null }
    }

    /// Up to `limit` locks this mount holds in a mode other than NULL, from `key` on in key
    /// order, with their write seqs: a batch of the answer to a new server's LOCK_RECOVER.
    ///
    /// A lock being invalidated keeps its old mode in the table until the invalidation is
    /// done, so it is reported in the old mode (the original's ca526e2b: a new server must
    /// not believe this mount already gave up what it may still be using). Its request, if
    /// any, is resent to the new server and processed after recovery. NULL locks are left out.
    func recoveryBatch(from key: Key, limit: Int) -> [RecoveredLock] {
        lock.withLock {
            table.lazy.filter { $0.key >= key && $0.value.mode != .null }
                .map { RecoveredLock(key: $0.key, mode: $0.value.mode, writeSeq: $0.value.writeSeq) }
                .sorted { $0.key < $1.key }
                .prefix(limit)
                .map { $0 }
        }
    }
}

/// One lock as a mount reports it to a new server during lock recovery.
public struct RecoveredLock: Equatable, Sendable {
    /// The lock's name (the start of its range).
    public var key: Key
    /// The mode the mount holds (the old mode while it is being invalidated).
    public var mode: LockMode
    /// The write seq of its last WRITE or WRITE_ONLY grant.
    public var writeSeq: UInt64

    public init(key: Key, mode: LockMode, writeSeq: UInt64) {
        self.key = key
        self.mode = mode
        self.writeSeq = writeSeq
    }
}
