/// An ordered map kept as a list of sorted chunks: point lookups and ordered walks in
/// O(log n), inserts and removals that move at most one chunk's elements.
///
/// The item cache holds up to millions of items (a directory of 10⁶ entries); one flat sorted
/// array would move half of them on every insert.
struct SortedMap<K: Comparable, V> {
    private var chunks: [[(key: K, value: V)]] = []
    private(set) var count = 0
    private static var maxChunk: Int { 512 }

    init() {}

    var isEmpty: Bool { count == 0 }

    /// The chunk that holds `key` or would receive it.
    private func chunkIndex(_ key: K) -> Int {
        var lo = 0
        var hi = chunks.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if chunks[mid].last!.key < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private static func position(_ chunk: [(key: K, value: V)], _ key: K) -> Int {
        var lo = 0
        var hi = chunk.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if chunk[mid].key < key { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    subscript(key: K) -> V? {
        get {
            guard !chunks.isEmpty else { return nil }
            let c = chunkIndex(key)
            let p = Self.position(chunks[c], key)
            guard p < chunks[c].count, chunks[c][p].key == key else { return nil }
            return chunks[c][p].value
        }
        set {
            if let newValue { insert(key, newValue) } else { remove(key) }
        }
    }

    mutating func insert(_ key: K, _ value: V) {
        if chunks.isEmpty {
            chunks = [[(key, value)]]
            count = 1
            return
        }
        let c = chunkIndex(key)
        let p = Self.position(chunks[c], key)
        if p < chunks[c].count, chunks[c][p].key == key {
            chunks[c][p].value = value
            return
        }
        chunks[c].insert((key, value), at: p)
        count += 1
        if chunks[c].count > Self.maxChunk {
            let half = chunks[c].count / 2
            let upper = Array(chunks[c][half...])
            chunks[c].removeSubrange(half...)
            chunks.insert(upper, at: c + 1)
        }
    }

    @discardableResult
    mutating func remove(_ key: K) -> V? {
        guard !chunks.isEmpty else { return nil }
        let c = chunkIndex(key)
        let p = Self.position(chunks[c], key)
        guard p < chunks[c].count, chunks[c][p].key == key else { return nil }
        let v = chunks[c].remove(at: p).value
        count -= 1
        if chunks[c].isEmpty { chunks.remove(at: c) }
        return v
    }

    /// The first element with a key >= `key` (> when `after`).
    func first(from key: K, after: Bool = false) -> (key: K, value: V)? {
        guard !chunks.isEmpty else { return nil }
        var c = chunkIndex(key)
        var p = Self.position(chunks[c], key)
        if after, p < chunks[c].count, chunks[c][p].key == key { p += 1 }
        while c < chunks.count {
            if p < chunks[c].count { return chunks[c][p] }
            c += 1
            p = 0
        }
        return nil
    }

    /// The last element with a key <= `key`.
    func last(through key: K) -> (key: K, value: V)? {
        guard !chunks.isEmpty else { return nil }
        var c = chunkIndex(key)
        var p = Self.position(chunks[c], key)
        if p < chunks[c].count, chunks[c][p].key == key { return chunks[c][p] }
        while true {
            if p > 0 { return chunks[c][p - 1] }
            if c == 0 { return nil }
            c -= 1
            p = chunks[c].count
        }
    }

    /// Removes every element with a key in `lo...hi`, calling `removed` with each.
    mutating func removeRange(_ lo: K, _ hi: K, _ removed: (V) -> Void = { _ in }) {
        while let e = first(from: lo), e.key <= hi {
            remove(e.key)
            removed(e.value)
        }
    }

    /// Changes the value of `key` in place (one search); nil when it is absent.
    mutating func modify<R>(_ key: K, _ body: (inout V) -> R) -> R? {
        guard !chunks.isEmpty else { return nil }
        let c = chunkIndex(key)
        let p = Self.position(chunks[c], key)
        guard p < chunks[c].count, chunks[c][p].key == key else { return nil }
        return body(&chunks[c][p].value)
    }

    /// Every element in key order.
    func forEach(_ body: (K, V) -> Void) {
        for c in chunks { for e in c { body(e.key, e.value) } }
    }

    mutating func removeAll() {
        chunks = []
        count = 0
    }
}
