import CFuseKernel
import Glibc

/// A pthread mutex with one condition variable (waits use `CLOCK_MONOTONIC`).
///
/// `@unchecked Sendable`: the pthread objects live in their own allocations (they never move) and are used
/// only through the pthread functions, which are thread-safe.
final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    init() {
        self.mutex = .allocate(capacity: 1)
        self.cond = .allocate(capacity: 1)
        pthread_mutex_init(self.mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(self.cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(self.cond)
        pthread_mutex_destroy(self.mutex)
        self.mutex.deallocate()
        self.cond.deallocate()
    }

    /// Runs `body` with the mutex held.
    @inline(__always)
    func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return try body()
    }

    /// Wakes all waiters (call with the mutex held).
    func broadcast() {
        pthread_cond_broadcast(self.cond)
    }

    /// Waits (mutex held) until `done()` or the deadline; returns `done()`.
    func wait(until deadline: timespec?, _ done: () -> Bool) -> Bool {
        while !done() {
            if var d = deadline {
                if pthread_cond_timedwait(self.cond, self.mutex, &d) == ETIMEDOUT { return done() }
            } else {
                pthread_cond_wait(self.cond, self.mutex)
            }
        }
        return true
    }

    /// A `CLOCK_MONOTONIC` deadline `timeout` from now.
    static func deadline(after timeout: Duration) -> timespec {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let (s, atto) = timeout.components
        var sec = Int64(now.tv_sec) + max(0, min(s, Int64(Int32.max)))
        var nsec = Int64(now.tv_nsec) + max(0, atto / 1_000_000_000)
        if nsec >= 1_000_000_000 {
            sec += 1
            nsec -= 1_000_000_000
        }
        var out = timespec()
        out.tv_sec = Int(sec)
        out.tv_nsec = Int(nsec)
        return out
    }
}

/// Starts detached pthreads running Swift closures.
public enum Threads {
    private final class Box {
        let body: @Sendable () -> Void
        let name: String
        init(_ body: @escaping @Sendable () -> Void, name: String) {
            self.body = body
            self.name = String(name.utf8.prefix(15))!
        }
    }

    /// Starts a detached thread; returns the pthread error code (0 on success).
    public static func spawn(name: String, _ body: @escaping @Sendable () -> Void) -> Int32 {
        let box = Unmanaged.passRetained(Box(body, name: name)).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let box = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
            _ = cfk_set_thread_name(box.name)
            box.body()
            return nil
        }, box)
        if rc != 0 {
            Unmanaged<Box>.fromOpaque(box).release()
            return rc
        }
        pthread_detach(tid)
        return 0
    }

    /// Runs blocking work on a new detached thread, off the event loops and the cooperative
    /// pool; when no thread can be started it runs on the caller's.
    public static func detached(name: String, _ body: @escaping @Sendable () -> Void) {
        if spawn(name: name, body) != 0 { body() }
    }
}
