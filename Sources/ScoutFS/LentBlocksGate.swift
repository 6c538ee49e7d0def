/// Guards the writes a mount makes into metadata blocks the server lent it for background
/// work (a log merge request's pool, a srch compaction's pool).
///
/// Design note. A clean unmount's FAREWELL makes the server take those pools back: the
/// blocks become the server's to hand out again at once. A merge or compaction still writing
/// after that would overwrite blocks the server or another mount now owns (seen as a super
/// block whose roots pointed at alloc-list and foreign btree blocks after members left
/// together). So every such write runs inside ``write(_:)``, and ``close()`` (called before
/// the farewell) waits for a write in progress and refuses every later one with ESHUTDOWN.
/// A write that finished before the farewell is harmless: its blocks are unreferenced until
/// the server accepts the completion, which it ignores once the request is cancelled.
public final class LentBlocksGate: @unchecked Sendable {
    private let lock = PThreadLock()
    // Invariant: only read or written with `lock` held.
    private var closed = false

    public init() {}

    /// Runs `body` (a write into lent blocks) unless the gate is closed.
    public func write<R>(_ what: String, _ body: () throws(FSError) -> R) throws(FSError) -> R {
        lock.lock()
        defer { lock.unlock() }
        if closed { throw FSError(FSError.ESHUTDOWN, "the mount is leaving: \(what) not written") }
        return try body()
    }

    /// Refuses every later write, once a write in progress has finished.
    public func close() {
        lock.withLock { closed = true }
    }

    /// Whether ``close()`` was called.
    public var isClosed: Bool { lock.withLock { closed } }
}
