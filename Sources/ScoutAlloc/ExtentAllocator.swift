public import ScoutBTree
public import ScoutFormat

/// Why an extent allocator operation failed.
public enum AllocError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The btree beneath failed.
    case btree(BTreeError)
    /// Freeing blocks that are already free: the allocator and its caller disagree.
    case doubleFree(start: UInt64, len: UInt64)
    /// An extent item that cannot be (zero length, or ending before it starts).
    case corrupt(String)

    public var description: String {
        switch self {
        case .btree(let e): return e.description
        case .doubleFree(let s, let l): return "freeing \(s)+\(l), which overlaps free space"
        case .corrupt(let s): return "corrupt free extent: \(s)"
        }
    }
}

/// A free extent: `len` blocks from `start`.
public struct Extent: Equatable, Hashable, Sendable {
    public var start: UInt64
    public var len: UInt64
    public var end: UInt64 { start + len - 1 }

    public init(start: UInt64, len: UInt64) {
        self.start = start
        self.len = len
    }
}

/// The free-extent allocator of an `AllocRoot`: each free extent is stored twice in its btree,
/// once keyed by end blkno (to find neighbours when freeing) and once by order of length, largest
/// first (to allocate). Allocation takes blocks from the front of the first extent of the largest
/// order, which leaves the end in place so adjacent frees can merge back.
public struct ExtentAllocator<Store: MetaBlockStore> {
    public let tree: BTree<Store>

    public init(store: Store) {
        self.tree = BTree(store: store)
    }

    /// Allocates up to `count` contiguous blocks; nil when the allocator is empty.
    public func allocate(_ root: inout AllocRoot, count: UInt64) throws(AllocError) -> Extent? {
        precondition(count > 0)
        let first: BTreeItem?
        do {
            first = try tree.next(root.root, Key(zone: KeyZone.freeExtentOrder))
        } catch {
            throw .btree(error)
        }
        guard let item = first, item.key.zone == KeyZone.freeExtentOrder else { return nil }
        let ext = try extent(orderKey: item.key)
        let n = min(count, ext.len)
        try remove(&root, ext)
        if n < ext.len {
            try add(&root, Extent(start: ext.start + n, len: ext.len - n))
        }
        return Extent(start: ext.start, len: n)
    }

    /// Returns blocks to the allocator, merging with free neighbours.
    public func free(_ root: inout AllocRoot, _ ext: Extent) throws(AllocError) {
        precondition(ext.len > 0)
        var merged = ext
        // the extent ending at or after our start: overlapping means a double free
        if let after = try blknoItem(root.root, atOrAfterEnd: ext.start) {
            let a = try extent(blknoKey: after.key)
            if a.start <= ext.end { throw .doubleFree(start: ext.start, len: ext.len) }
            if a.start == ext.end + 1 {
                try remove(&root, a)
                merged.len += a.len
            }
        }
        if ext.start > 0, let before = try blknoItem(root.root, atOrAfterEnd: ext.start - 1), before.key.first == ext.start - 1 {
            let b = try extent(blknoKey: before.key)
            try remove(&root, b)
            merged = Extent(start: b.start, len: b.len + merged.len)
        }
        try add(&root, merged)
    }

    /// Every free extent in block order.
    public func extents(_ root: AllocRoot) throws(AllocError) -> [Extent] {
        var out: [Extent] = []
        var key = Key(zone: KeyZone.freeExtentBlkno)
        while true {
            let item: BTreeItem?
            do {
                item = try tree.next(root.root, key)
            } catch {
                throw .btree(error)
            }
            guard let it = item, it.key.zone == KeyZone.freeExtentBlkno else { break }
            out.append(try extent(blknoKey: it.key))
            key = it.key.incremented()
        }
        return out
    }

    // MARK: items

    private func blknoItem(_ root: BTreeRoot, atOrAfterEnd end: UInt64) throws(AllocError) -> BTreeItem? {
        do {
            guard let it = try tree.next(root, Key(zone: KeyZone.freeExtentBlkno, first: end)),
                it.key.zone == KeyZone.freeExtentBlkno
            else { return nil }
            return it
        } catch {
            throw .btree(error)
        }
    }

    private func extent(blknoKey k: Key) throws(AllocError) -> Extent {
        guard k.second > 0, k.second <= k.first + 1 else { throw .corrupt("blkno key \(k)") }
        return Extent(start: k.first - k.second + 1, len: k.second)
    }

    private func extent(orderKey k: Key) throws(AllocError) -> Extent {
        guard k.third > 0, k.third <= k.second + 1, ~k.first == FreeExtentKey.order(of: k.third) else {
            throw .corrupt("order key \(k)")
        }
        return Extent(start: k.second - k.third + 1, len: k.third)
    }

    private func add(_ root: inout AllocRoot, _ e: Extent) throws(AllocError) {
        do {
            try tree.insert(&root.root, FreeExtentKey.blkno(end: e.end, len: e.len), [])
            try tree.insert(&root.root, FreeExtentKey.order(end: e.end, len: e.len), [])
        } catch {
            throw .btree(error)
        }
        root.totalLen += e.len
    }

    private func remove(_ root: inout AllocRoot, _ e: Extent) throws(AllocError) {
        do {
            try tree.delete(&root.root, FreeExtentKey.blkno(end: e.end, len: e.len))
            try tree.delete(&root.root, FreeExtentKey.order(end: e.end, len: e.len))
        } catch {
            throw .btree(error)
        }
        root.totalLen -= e.len
    }

}
