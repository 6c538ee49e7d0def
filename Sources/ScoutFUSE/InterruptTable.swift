import CFuseKernel
import Glibc

/// The requests being served, and which of them the kernel asked to interrupt (FUSE_INTERRUPT).
///
/// The kernel sends INTERRUPT only after the target request was read, but with several reader threads the
/// INTERRUPT can be handled before the thread that read the target has registered it. Such an interrupt is
/// kept as pending: the target's registration consumes it; otherwise the next registration hands it back
/// to be answered with `EAGAIN`, which makes the kernel queue it again if the target is still waiting
/// (libfuse does the same). When the session ends, every request counts as interrupted, so that nothing
/// waits on a dead connection.
///
/// `@unchecked Sendable`: every mutable field is read and written only with `lock` held.
final class InterruptTable: @unchecked Sendable {
    private struct Slot {
        var interrupted = false
        var handler: (@Sendable () -> Void)?
    }

    private let lock = ConditionLock()
    private var inflight: [UInt64: Slot] = [:]
    private var pending: [(target: UInt64, interrupt: UInt64)] = []
    private var ended = false
    private static let maxPending = 256

    init() {
        self.inflight.reserveCapacity(64)
    }

    @inline(__always)
    private func locked<R>(_ body: () -> R) -> R {
        self.lock.locked(body)
    }

    /// Registers a request. Returns a pending interrupt (the INTERRUPT request's own unique) that should now
    /// be answered with `EAGAIN`, if any.
    func begin(_ unique: UInt64) -> UInt64? {
        self.locked {
            var slot = Slot()
            if self.ended { slot.interrupted = true }
            var requeue: UInt64?
            if !self.pending.isEmpty {
                if let i = self.pending.firstIndex(where: { $0.target == unique }) {
                    self.pending.remove(at: i)
                    slot.interrupted = true
                } else {
                    requeue = self.pending.removeFirst().interrupt
                }
            }
            self.inflight[unique] = slot
            return requeue
        }
    }

    /// Unregisters a finished request.
    func end(_ unique: UInt64) {
        self.locked { _ = self.inflight.removeValue(forKey: unique) }
    }

    /// Marks `target` interrupted (`interrupt` is the INTERRUPT request's own unique). Returns whether the target
    /// was in flight; if not, the interrupt is kept as pending.
    @discardableResult
    func interrupt(_ target: UInt64, by interrupt: UInt64) -> Bool {
        var handler: (@Sendable () -> Void)?
        let found: Bool = self.locked {
            if var slot = self.inflight[target] {
                if !slot.interrupted {
                    slot.interrupted = true
                    handler = slot.handler
                    slot.handler = nil
                    self.inflight[target] = slot
                    self.lock.broadcast()
                }
                return true
            }
            if !self.pending.contains(where: { $0.target == target }) {
                if self.pending.count >= Self.maxPending { self.pending.removeFirst() }
                self.pending.append((target, interrupt))
            }
            return false
        }
        handler?()
        return found
    }

    func isInterrupted(_ unique: UInt64) -> Bool {
        self.locked { self.ended || (self.inflight[unique]?.interrupted ?? false) }
    }

    /// Blocks until `unique` is interrupted or `timeout` passes. Returns whether it was interrupted.
    func wait(_ unique: UInt64, timeout: Duration) -> Bool {
        let deadline = ConditionLock.deadline(after: timeout)
        return self.locked {
            self.lock.wait(until: deadline) { self.ended || (self.inflight[unique]?.interrupted ?? false) }
        }
    }

    /// Sets the handler run once when `unique` is interrupted; runs it at once if it already was.
    func setHandler(_ unique: UInt64, _ handler: @escaping @Sendable () -> Void) {
        let runNow: Bool = self.locked {
            if self.ended { return true }
            guard var slot = self.inflight[unique] else { return false }
            if slot.interrupted { return true }
            slot.handler = handler
            self.inflight[unique] = slot
            return false
        }
        if runNow { handler() }
    }

    /// The session is over: interrupt everything in flight, now and later.
    func endAll() {
        var handlers: [@Sendable () -> Void] = []
        self.locked {
            self.ended = true
            for (k, var slot) in self.inflight where !slot.interrupted {
                slot.interrupted = true
                if let h = slot.handler { handlers.append(h) }
                slot.handler = nil
                self.inflight[k] = slot
            }
            self.lock.broadcast()
        }
        for h in handlers { h() }
    }

    var inflightCount: Int { self.locked { self.inflight.count } }
}
