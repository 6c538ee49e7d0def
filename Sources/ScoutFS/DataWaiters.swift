/// Why a task waits for offline data (`SCOUTFS_IOC_DWO_*`).
public enum DataWaitOp: UInt8, Sendable {
    case read = 1
    case write = 2
    case changeSize = 4

    /// Every op bit DATA_WAIT_ERR may name.
    public static let allBits: UInt8 = 7
}

/// One entry of DATA_WAITING.
public struct DataWaiterEntry: Sendable, Equatable {
    public var ino: UInt64
    public var iblock: UInt64
    public var op: DataWaitOp

    public init(ino: UInt64, iblock: UInt64, op: DataWaitOp) {
        self.ino = ino
        self.iblock = iblock
        self.op = op
    }
}

/// How a waiting operation learns of interrupts (built by the FUSE layer from its
/// RequestContext).
public struct DataWaitHooks: Sendable {
    /// Called once, before the operation's first wait.
    public var willBlock: @Sendable () -> Void
    /// Registers a handler run when FUSE_INTERRUPT arrives (at once if it already did).
    public var onInterrupt: @Sendable (@escaping @Sendable () -> Void) -> Void
    public var isInterrupted: @Sendable () -> Bool

    public init(
        willBlock: @escaping @Sendable () -> Void,
        onInterrupt: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void,
        isInterrupted: @escaping @Sendable () -> Bool
    ) {
        self.willBlock = willBlock
        self.onInterrupt = onInterrupt
        self.isInterrupted = isInterrupted
    }
}

/// The tasks of one mount that wait for offline file data to be staged.
///
/// Design note. A waiter is registered while the operation still holds the volume's state
/// lock and the inode's cluster lock, after it found the offline block; every event that can
/// bring the data online (a stage, punch or move on this mount, the loss of the inode's
/// cluster lock to another mount, DATA_WAIT_ERR, an interrupt) marks the waiter under this
/// registry's own lock and broadcasts. So a wakeup that happens between the check and the
/// wait is never lost, and the wait itself holds no volume or cluster lock. A woken waiter
/// does not assume the data is there: its operation runs again from the start (and may wait
/// again). Lock order: the volume's state lock, then this one.
final class DataWaiters: @unchecked Sendable {
    final class Waiter: @unchecked Sendable {
        // Invariant: the vars are only touched with the registry's lock held.
        let id: UInt64
        let ino: UInt64
        let iblock: UInt64
        let op: DataWaitOp
        var woken = false
        var err: Int32 = 0
        var interrupted = false

        init(id: UInt64, ino: UInt64, iblock: UInt64, op: DataWaitOp) {
            self.id = id
            self.ino = ino
            self.iblock = iblock
            self.op = op
        }
    }

    // Invariant: `waiters` and `nextID` are only touched with `lock` held.
    private let lock = PThreadLock()
    private var waiters: [UInt64: Waiter] = [:]
    private var nextID: UInt64 = 1

    /// Adds a waiter for `iblock` of `ino`; call with the volume's state lock held.
    func register(ino: UInt64, iblock: UInt64, op: DataWaitOp) -> Waiter {
        lock.withLock {
            let w = Waiter(id: nextID, ino: ino, iblock: iblock, op: op)
            nextID += 1
            waiters[w.id] = w
            return w
        }
    }

    /// Blocks until `w` is woken (returns), failed (throws its errno) or interrupted (EINTR);
    /// the waiter is removed either way.
    func wait(_ w: Waiter, hooks: DataWaitHooks?) throws(FSError) {
        if let hooks {
            hooks.onInterrupt { [weak self] in self?.interrupt(w) }
        }
        let (err, interrupted) = lock.withLock { () -> (Int32, Bool) in
            while !w.woken && w.err == 0 && !w.interrupted && !(hooks?.isInterrupted() ?? false) {
                lock.wait()
            }
            waiters[w.id] = nil
            return (w.err, w.interrupted || (hooks?.isInterrupted() ?? false))
        }
        if err != 0 { throw FSError(err, "waiting for offline data of inode \(w.ino) block \(w.iblock)") }
        if interrupted && !w.woken { throw FSError(FSError.EINTR, "interrupted waiting for offline data") }
    }

    /// Drops a waiter that will not wait after all (its operation failed).
    func cancel(_ w: Waiter) {
        lock.withLock { waiters[w.id] = nil }
    }

    private func interrupt(_ w: Waiter) {
        lock.withLock {
            w.interrupted = true
            lock.broadcast()
        }
    }

    /// Wakes every waiter of the inodes that `matches` picks.
    func wake(where matches: (UInt64) -> Bool) {
        lock.withLock {
            var any = false
            for w in waiters.values where matches(w.ino) {
                w.woken = true
                any = true
            }
            if any { lock.broadcast() }
        }
    }

    func wake(_ ino: UInt64) { wake { $0 == ino } }

    /// DATA_WAIT_ERR: fails the waiters of `ino` on blocks `first...last` whose op is in
    /// `ops` and that were not failed yet; returns how many.
    func fail(ino: UInt64, first: UInt64, last: UInt64, ops: UInt8, err: Int32) -> Int {
        lock.withLock {
            var n = 0
            for w in waiters.values where w.ino == ino && w.iblock >= first && w.iblock <= last && w.op.rawValue & ops != 0 && w.err == 0 {
                w.err = err
                n += 1
            }
            if n > 0 { lock.broadcast() }
            return n
        }
    }

    /// DATA_WAITING: waiters strictly after (ino, iblock) in (ino, iblock, op) order, tasks
    /// waiting for the same block with the same op listed once. At most `max` entries, and
    /// never only some of one block's ops (a cursor on the last entry would skip the rest),
    /// unless one block alone has more ops than `max`.
    func list(afterIno: UInt64, afterIblock: UInt64, max: Int) -> [DataWaiterEntry] {
        guard max > 0 else { return [] }
        let all = lock.withLock { waiters.values.map { DataWaiterEntry(ino: $0.ino, iblock: $0.iblock, op: $0.op) } }
        let after = all.filter { ($0.ino, $0.iblock) > (afterIno, afterIblock) }
        let unique = Set(after.map { [$0.ino, $0.iblock, UInt64($0.op.rawValue)] }).sorted { a, b in a.lexicographicallyPrecedes(b) }
        var out: [DataWaiterEntry] = []
        var i = 0
        while i < unique.count {
            var j = i
            while j < unique.count && unique[j][0] == unique[i][0] && unique[j][1] == unique[i][1] { j += 1 }
            let block = unique[i..<j].map { DataWaiterEntry(ino: $0[0], iblock: $0[1], op: DataWaitOp(rawValue: UInt8($0[2]))!) }
            if out.count + block.count > max {
                if out.isEmpty { out = Array(block.prefix(max)) }
                break
            }
            out += block
            i = j
        }
        return out
    }

    var count: Int { lock.withLock { waiters.count } }
}
