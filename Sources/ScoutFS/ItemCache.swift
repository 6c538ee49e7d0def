import ScoutFormat

/// What the item cache holds and has done (the `counters` of the control socket).
public struct ItemCacheStats: Sendable, Equatable {
    /// Clean items held, and their accounted bytes (values plus `ItemCache.itemOverhead` each,
    /// plus `ItemCache.rangeOverhead` per cached range).
    public var cleanItems = 0
    public var cleanBytes = 0
    public var ranges = 0
    public var dirtyItems = 0
    public var dirtyBytes = 0
    /// The bound on `cleanBytes`.
    public var limit = 0
    /// Clean items dropped to stay under the bound.
    public var evicted: UInt64 = 0
    /// Forest reads of a whole leaf's range, and of one key (a hashed leaf search, or a seek).
    public var rangeReads: UInt64 = 0
    public var pointReads: UInt64 = 0
}

/// A mount's cache of items (the original's item.c), in front of the forest.
///
/// Design note.
/// - `dirty` holds this transaction's changes: a value, or nil for a deletion. They win over
///   everything else and are written to the log tree at commit. They are never dropped.
/// - `clean` holds committed items read from the forest (or written by this mount's commits).
///   Each is valid on its own while its lock is held, whatever ranges are cached.
/// - `ranges` are the key ranges known to be complete: a key inside a cached range that is not
///   in `clean` does not exist. Ranges come from forest reads, so they never reach beyond the
///   lock that covers them, and a lock invalidation drops exactly its range.
/// - A point read (`get`) outside every cached range searches one leaf per tree by hash
///   (`Forest.lookup`) and caches that item alone; a narrow search (`first`) seeks each tree
///   and caches the span it proved; only walks (`next`) read whole leaves.
/// - The clean part is bounded in bytes (`limit`): past it, clean items are dropped in CLOCK
///   order (a referenced bit set by `get`, cleared by the sweeping hand). Dropping an item
///   forgets the cached range around it, so its key is read again; ranges beyond a quarter of
///   the bound are all forgotten (the items stay). Clean items can be re-read at any time, so
///   dropping them is always safe under a held lock.
final class ItemCache {
    private struct Clean {
        var value: [UInt8]
        var referenced: Bool
    }

    /// Accounted bytes per clean item beyond its value: the key and array reference in the
    /// map's chunk, the array's header and the allocator's rounding.
    static let itemOverhead = 112
    /// Accounted bytes per cached range (two keys in the map).
    static let rangeOverhead = 80

    private(set) var dirty = SortedMap<Key, [UInt8]?>()
    private var clean = SortedMap<Key, Clean>()
    /// Cached ranges: start → end, disjoint.
    private var ranges = SortedMap<Key, Key>()
    private(set) var dirtyBytes = 0
    /// This transaction's delta items (`DeltaItems`): combined here, never read back, and
    /// combined again with the log tree's version at commit. A delta that sums to nothing
    /// is dropped.
    private(set) var deltas = SortedMap<Key, [UInt8]>()
    let forest: Forest
    /// Bytes the clean items (and cached ranges) may hold.
    var limit = 256 << 20 {
        didSet { evict(protecting: nil) }
    }
    private var itemBytes = 0
    /// Where the CLOCK hand stands (the key it looked at last).
    private var hand: Key?
    private var evicted: UInt64 = 0
    private var rangeReads: UInt64 = 0
    private var pointReads: UInt64 = 0

    init(forest: Forest) {
        self.forest = forest
    }

    var dirtyCount: Int { dirty.count + deltas.count }

    /// Accounted bytes of the clean items and cached ranges.
    var cleanBytes: Int { itemBytes + ranges.count * Self.rangeOverhead }

    var stats: ItemCacheStats {
        ItemCacheStats(
            cleanItems: clean.count, cleanBytes: cleanBytes, ranges: ranges.count, dirtyItems: dirtyCount,
            dirtyBytes: dirtyBytes, limit: limit, evicted: evicted, rangeReads: rangeReads, pointReads: pointReads)
    }

    // MARK: clean items

    private static func size(_ v: [UInt8]) -> Int { v.count + itemOverhead }

    private func insertClean(_ k: Key, _ v: [UInt8]) {
        if let old = clean[k] { itemBytes -= Self.size(old.value) }
        clean.insert(k, Clean(value: v, referenced: false))
        itemBytes += Self.size(v)
    }

    private func removeClean(_ k: Key) {
        if let old = clean.remove(k) { itemBytes -= Self.size(old.value) }
    }

    private func removeCleanRange(_ s: Key, _ e: Key) {
        clean.removeRange(s, e) { itemBytes -= Self.size($0.value) }
    }

    /// Drops clean items in CLOCK order until the bytes are under the bound (with an eighth
    /// of slack, so that sweeps come in batches), never the items of `protecting` (a range a
    /// walk is using right now).
    private func evict(protecting: (start: Key, end: Key)?) {
        guard cleanBytes > limit else { return }
        if ranges.count * Self.rangeOverhead > limit / 4 {
            // only completeness is lost: every clean item stays valid on its own
            ranges.removeAll()
            if let p = protecting { ranges.insert(p.start, p.end) }
        }
        let target = limit - limit / 8
        // every item is looked at at most twice (once to clear its bit, once to drop it)
        var steps = 2 * clean.count + 2
        while cleanBytes > target, !clean.isEmpty, steps > 0 {
            steps -= 1
            guard let e = hand.flatMap({ clean.first(from: $0, after: true) }) ?? clean.first(from: .zero) else { break }
            hand = e.key
            if let p = protecting, e.key >= p.start, e.key <= p.end { continue }
            if e.value.referenced {
                clean.modify(e.key) { $0.referenced = false }
                continue
            }
            removeClean(e.key)
            evicted += 1
            // the range around it is no longer known complete
            if let r = ranges.last(through: e.key), r.value >= e.key { ranges.remove(r.key) }
        }
    }

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
        rangeReads += 1
        guard held else { return (end, items.map { (key: $0.0, value: $0.1) }.sorted { $0.key < $1.key }) }
        removeCleanRange(start, end)
        for (k, v) in items { insertClean(k, v) }
        addRange(start, end)
        evict(protecting: (start, end))
        return (end, nil)
    }

    // MARK: reads

    /// The value of `key`, or nil when it does not exist.
    func get(_ key: Key) throws(FSError) -> [UInt8]? {
        if let d = dirty[key] { return d }
        if let v = clean.modify(key, { c -> [UInt8] in
            c.referenced = true
            return c.value
        }) {
            return v
        }
        if coveredEnd(key) != nil { return nil }
        let lock = LockRange.covering(key)
        if DeltaItems.isDelta(key) || !isHeld(lock) {
            let (_, transient) = try load(key)
            if let transient { return transient.first { $0.key == key }?.value }
            return clean[key]?.value
        }
        // one hashed leaf search per tree; the item alone is cached, an absent key as a
        // one-key range
        pointReads += 1
        guard let v = try forest.lookup(key, lock: lock) else {
            addRange(key, key)
            evict(protecting: nil)
            return nil
        }
        insertClean(key, v)
        evict(protecting: nil)
        return v
    }

    /// The first existing item with a key in `from...through`, for a narrow span such as one
    /// name hash's dirents: outside the cached ranges each tree is sought to it (the leaves on
    /// the way, no range read), and the span up to it cached as complete.
    func first(from: Key, through: Key) throws(FSError) -> (key: Key, value: [UInt8])? {
        let lock = LockRange.covering(from)
        if coveredEnd(from) != nil || DeltaItems.isDelta(from) || DeltaItems.isDelta(through)
            || !lock.contains(through) || !isHeld(lock)
        {
            return try next(from: from, through: through)
        }
        pointReads += 1
        let (found, exhausted) = try forest.first(from: from, through: through, lock: lock)
        if exhausted { return try next(from: from, through: through) }
        let spanEnd = found?.key ?? through
        if let f = found { insertClean(f.key, f.value) }
        addRange(from, spanEnd)
        evict(protecting: (from, spanEnd))
        // the cached span answers, with this transaction's dirty items over it; past the item
        // found, its deletion by this transaction sends the walk on through the cache
        return try next(from: from, through: through)
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
                candValue = c.value.value
            }
            if let d = dirty.first(from: pos), d.key <= limit, cand == nil || d.key < cand! { cand = d.key }
            if let k = cand {
                if let d = dirty[k] {
                    if let v = d { return (k, v) }
                    if k == .max { return nil }
                    pos = k.incremented()
                    continue
                }
                return (k, candValue!)
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

    /// After a commit landed: the written items are the committed state, kept as clean
    /// items (deletions dropped; a cached range around one still says it does not exist).
    func committed() {
        deltas.removeAll()
        dirty.forEach { k, v in
            if let v { insertClean(k, v) } else { removeClean(k) }
        }
        dirty.removeAll()
        dirtyBytes = 0
        evict(protecting: nil)
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
        removeCleanRange(range.start, range.end)
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
