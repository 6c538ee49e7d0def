public import ScoutFormat
import Synchronization

/// A cache of verified, clean metadata blocks, bounded in bytes, evicting least recently used.
///
/// Entries are keyed by blkno and remember the seq they were verified with, so a lookup for a
/// reference with another seq misses (the block was rewritten since).
public final class BlockCache: Sendable {
    /// Bytes the cache may hold.
    public let capacity: Int

    private struct Entry {
        var buffer: BlockBuffer
        var seq: UInt64
        var prev: UInt64?
        var next: UInt64?
    }

    private struct State {
        var entries: [UInt64: Entry] = [:]
        var head: UInt64?  // most recent
        var tail: UInt64?  // least recent
        var bytes = 0
        var hits = 0
        var misses = 0
    }

    private let state = Mutex(State())

    public init(capacity: Int) {
        self.capacity = capacity
    }

    /// The cached block for (blkno, seq), or nil.
    public func get(blkno: UInt64, seq: UInt64) -> BlockBuffer? {
        state.withLock { s in
            guard let e = s.entries[blkno], e.seq == seq else {
                s.misses += 1
                return nil
            }
            s.hits += 1
            Self.unlink(&s, blkno)
            Self.pushFront(&s, blkno)
            return e.buffer
        }
    }

    /// Caches a verified clean block, evicting the least recently used past `capacity`.
    public func insert(blkno: UInt64, seq: UInt64, buffer: BlockBuffer) {
        if buffer.size > capacity { return }
        state.withLock { s in
            if s.entries[blkno] != nil {
                Self.unlink(&s, blkno)
                s.bytes -= s.entries[blkno]!.buffer.size
            }
            s.entries[blkno] = Entry(buffer: buffer, seq: seq)
            s.bytes += buffer.size
            Self.pushFront(&s, blkno)
            while s.bytes > capacity, let t = s.tail {
                Self.unlink(&s, t)
                s.bytes -= s.entries.removeValue(forKey: t)!.buffer.size
            }
        }
    }

    /// Forgets a block (it was freed, rewritten or found stale).
    public func remove(blkno: UInt64) {
        state.withLock { s in
            guard let e = s.entries[blkno] else { return }
            Self.unlink(&s, blkno)
            s.bytes -= e.buffer.size
            s.entries[blkno] = nil
        }
    }

    /// Bytes currently held.
    public var bytes: Int { state.withLock { $0.bytes } }
    /// Blocks currently held.
    public var count: Int { state.withLock { $0.entries.count } }
    /// Lookups that found their block, and those that did not.
    public var stats: (hits: Int, misses: Int) { state.withLock { ($0.hits, $0.misses) } }

    private static func unlink(_ s: inout State, _ b: UInt64) {
        let e = s.entries[b]!
        if let p = e.prev { s.entries[p]!.next = e.next } else { s.head = e.next }
        if let n = e.next { s.entries[n]!.prev = e.prev } else { s.tail = e.prev }
        s.entries[b]!.prev = nil
        s.entries[b]!.next = nil
    }

    private static func pushFront(_ s: inout State, _ b: UInt64) {
        s.entries[b]!.next = s.head
        s.entries[b]!.prev = nil
        if let h = s.head { s.entries[h]!.prev = b }
        s.head = b
        if s.tail == nil { s.tail = b }
    }
}
