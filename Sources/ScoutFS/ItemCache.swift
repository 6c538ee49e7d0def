import ScoutFormat

/// A mount's cache of items (the original's item.c), in front of the forest.
///
/// Design note.
/// - `dirty` holds this transaction's changes: a value, or nil for a deletion. They win over
///   everything else and are written to the log tree at commit.
/// - `clean` holds committed items read from the forest, and `ranges` the key ranges known to
///   be complete: a key inside a cached range that is not in `clean` does not exist. Ranges
///   come from `Forest.read`, so they never reach beyond the lock that covers them, and a
///   lock invalidation drops exactly its range.
/// - A read outside every cached range goes to the forest. After a commit, the written items
///   move to `clean` (deletions are dropped) as single-key ranges, so they stay valid.
/// - The clean part is bounded: past `cleanLimit` items it is dropped at the next commit.
final class ItemCache {
    private(set) var dirty = SortedMap<Key, [UInt8]?>()
    private var clean = SortedMap<Key, [UInt8]>()
    /// Cached ranges: start → end, disjoint.
    private var ranges = SortedMap<Key, Key>()
    private(set) var dirtyBytes = 0
    /// This transaction's delta items (`DeltaItems`): combined here, never read back, and
    /// combined again with the log tree's version at commit. A delta that sums to nothing
    /// is dropped.
    private(set) var deltas = SortedMap<Key, [UInt8]>()
    let forest: Forest
    var cleanLimit = 4_000_000

    init(forest: Forest) {
        self.forest = forest
    }

    var dirtyCount: Int { dirty.count + deltas.count }

    // MARK: ranges

    /// The end of the cached range holding `key`, or nil.
    private func coveredEnd(_ key: Key) -> Key? {
        guard let r = ranges.last(through: key), r.value >= key else { return nil }
        return r.value
    }

    private func addRange(_ s: Key, _ e: Key) {
        var start = s
        var end = e
        // merge with ranges that overlap or touch
        if let prev = ranges.last(through: start), prev.value >= start || (prev.value != .max && prev.value.incremented() == start) {
            start = prev.key
            if prev.value > end { end = prev.value }
            ranges.remove(prev.key)
        }
        while let next = ranges.first(from: start), next.key <= end || (end != .max && end.incremented() == next.key) {
            if next.value > end { end = next.value }
            ranges.remove(next.key)
        }
        ranges.insert(start, end)
    }

    /// Whether the operation reading holds the cluster lock of a range (set by the volume).
    /// Items of a range read without its lock are returned but never cached: no invalidation
    /// would ever drop them, so a cached copy would stay stale once another mount changed them.
    var isHeld: (LockRange) -> Bool = { _ in true }

    /// Reads the range around `key` from the forest: cached when its lock is held (returns
    /// nil items), else returned as a sorted transient view.
    private func load(_ key: Key) throws(FSError) -> (end: Key, transient: [(key: Key, value: [UInt8])]?) {
        let lock = LockRange.covering(key)
        let held = isHeld(lock)
        let (start, end, items) = try forest.read(key, lock: lock)
        guard held else { return (end, items.map { (key: $0.0, value: $0.1) }.sorted { $0.key < $1.key }) }
        clean.removeRange(start, end)
        for (k, v) in items { clean.insert(k, v) }
        addRange(start, end)
        return (end, nil)
    }

    // MARK: reads

    /// The value of `key`, or nil when it does not exist.
    func get(_ key: Key) throws(FSError) -> [UInt8]? {
        if let d = dirty[key] { return d }
        if coveredEnd(key) == nil, let transient = try load(key).transient {
            return transient.first { $0.key == key }?.value
        }
        return clean[key]
    }

    /// The first existing item with a key in `from...through`.
    func next(from: Key, through: Key) throws(FSError) -> (key: Key, value: [UInt8])? {
        var pos = from
        while pos <= through {
            let rangeEnd: Key
            var transient: [(key: Key, value: [UInt8])]? = nil
            if let e = coveredEnd(pos) {
                rangeEnd = e
            } else {
                (rangeEnd, transient) = try load(pos)
            }
            let limit = min(rangeEnd, through)
            var cand: Key? = nil
            var candValue: [UInt8]? = nil
            if let transient {
                if let t = transient.first(where: { $0.key >= pos }), t.key <= limit { (cand, candValue) = (t.key, t.value) }
            } else if let c = clean.first(from: pos), c.key <= limit {
                cand = c.key
            }
            if let d = dirty.first(from: pos), d.key <= limit, cand == nil || d.key < cand! { cand = d.key }
            if let k = cand {
                if let d = dirty[k] {
                    if let v = d { return (k, v) }
                    if k == .max { return nil }
                    pos = k.incremented()
                    continue
                }
                return (k, candValue ?? clean[k]!)
            }
            if limit == through || limit == .max { return nil }
            pos = limit.incremented()
        }
        return nil
    }

    // MARK: writes

    func put(_ key: Key, _ value: [UInt8]) {
        precondition(value.count <= Format.btreeMaxValueLength)
        if let old = dirty[key] { dirtyBytes -= (old?.count ?? 0) + 32 }
        dirty.insert(key, value)
        dirtyBytes += value.count + 32
    }

    func delete(_ key: Key) {
        if let old = dirty[key] { dirtyBytes -= (old?.count ?? 0) + 32 }
        dirty.insert(key, nil)
        dirtyBytes += 32
    }

    /// Adds the delta `value` to the transaction's delta item `key` (the original's
    /// `scoutfs_item_delta`): no read, so it needs only a WRITE_ONLY lock.
    func addDelta(_ key: Key, _ value: [UInt8]) throws(FSError) {
        guard let old = deltas[key] else {
            deltas.insert(key, value)
            dirtyBytes += value.count + 32
            return
        }
        switch DeltaItems.combine(old, value) {
        case .value(let v): deltas.insert(key, v)
        case .null:
            deltas.remove(key)
            dirtyBytes -= value.count + 32
        case nil: throw FSError(FSError.EIO, "delta item \(key): \(value.count)-byte value")
        }
    }

    /// The dirty delta items in key order.
    func dirtyDeltas() -> [(Key, [UInt8])] {
        var out: [(Key, [UInt8])] = []
        deltas.forEach { k, v in out.append((k, v)) }
        return out
    }

    // MARK: commit and invalidation

    /// The dirty items in key order.
    func dirtyItems() -> [(Key, [UInt8]?)] {
        var out: [(Key, [UInt8]?)] = []
        out.reserveCapacity(dirty.count)
        dirty.forEach { k, v in out.append((k, v)) }
        return out
    }

    /// After a commit landed: the written items are the committed state.
    func committed() {
        deltas.removeAll()
        if clean.count > cleanLimit {
            clean.removeAll()
            ranges.removeAll()
            dirty.removeAll()
            dirtyBytes = 0
            return
        }
        dirty.forEach { k, v in
            if let v {
                clean.insert(k, v)
                addRange(k, k)
            } else {
                clean.remove(k)
            }
        }
        dirty.removeAll()
        dirtyBytes = 0
    }

    /// Whether any dirty item lies in `range`.
    func hasDirty(in range: LockRange) -> Bool {
        if let d = dirty.first(from: range.start), d.key <= range.end { return true }
        if let d = deltas.first(from: range.start), d.key <= range.end { return true }
        return false
    }

    /// Drops clean items and cached ranges in `range` (its lock was lost). Dirty items must
    /// have been committed first.
    func invalidate(_ range: LockRange) {
        clean.removeRange(range.start, range.end)
        // cut cached ranges to outside [start, end]
        var cut: [(Key, Key)] = []
        if let prev = ranges.last(through: range.start), prev.value >= range.start { cut.append((prev.key, prev.value)) }
        var pos = range.start
        while let r = ranges.first(from: pos), r.key <= range.end {
            cut.append((r.key, r.value))
            if r.key == .max { break }
            pos = r.key.incremented()
        }
        for (s, e) in cut {
            ranges.remove(s)
            if s < range.start { ranges.insert(s, range.start.decremented()) }
            if e > range.end { ranges.insert(range.end.incremented(), e) }
        }
    }
}
