import Glibc

/// A mutex plus condition variable on pthreads, for state shared between FUSE threads, the
/// commit timer and network threads. Blocking waits happen only on non-async threads.
public final class PThreadLock: @unchecked Sendable {
    // Invariant: the pthread objects live at stable heap addresses for the object's lifetime
    // and are only touched through pthread calls.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let cond: UnsafeMutablePointer<pthread_cond_t>

    public init() {
        mutex = .allocate(capacity: 1)
        cond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        cond.deallocate()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }

    public func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    /// Waits (the lock held) until signalled or `seconds` pass; false on timeout.
    @discardableResult
    public func wait(seconds: Double) -> Bool {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let ns = Int(seconds * 1e9) + ts.tv_nsec
        ts.tv_sec += ns / 1_000_000_000
        ts.tv_nsec = ns % 1_000_000_000
        return pthread_cond_timedwait(cond, mutex, &ts) == 0
    }

    /// Waits (the lock held) until signalled; may wake spuriously, so callers loop on their condition.
    public func wait() { pthread_cond_wait(cond, mutex) }

    public func broadcast() { pthread_cond_broadcast(cond) }
}

/// Seconds on the monotonic clock.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
