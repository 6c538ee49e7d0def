public import ScoutFormat

/// The items of one leaf and the key range the leaf is responsible for.
///
/// Readers that merge several trees (the forest) cache a leaf's items together with its range:
/// a key inside `start...end` that is not among `items` is known to be absent from this tree.
public struct BTreeLeafRange: Sendable {
    /// The first key this leaf can hold (one past the previous sibling's parent key).
    public var start: Key
    /// The last key this leaf can hold (its parent key; `Key.max` on the right spine).
    public var end: Key
    /// The leaf's items in key order.
    public var items: [BTreeItem]

    public init(start: Key, end: Key, items: [BTreeItem]) {
        self.start = start
        self.end = end
        self.items = items
    }
}

extension BTree {
    /// The leaf that would hold `key`, with the range of keys it covers. An empty tree gives an
    /// empty range over every key.
    public func leafRange(_ root: BTreeRoot, _ key: Key) throws(BTreeError) -> BTreeLeafRange {
        var start = Key.zero
        var end = Key.max
        if root.height == 0 { return BTreeLeafRange(start: start, end: end, items: []) }
        var ref = root.ref
        var level = Int(root.height)
        while true {
            level -= 1
            let b = try read(ref)
            guard Int(b.level) == level else { throw Self.corrupt(b, "level \(b.level), expected \(level)") }
            if level == 0 {
                var items: [BTreeItem] = []
                items.reserveCapacity(b.nrItems)
                var off = b.firstItem()
                while off != 0 {
                    items.append(Self.copyItem(b, off))
                    off = b.nextItem(off)
                }
                return BTreeLeafRange(start: start, end: end, items: items)
            }
            let it = try Self.childItem(b, key)
            let itKey = b.key(at: it)
            if itKey < end { end = itKey }
            let prev = b.prevItem(it)
            if prev != 0 {
                let lo = b.key(at: prev).incremented()
                if start < lo { start = lo }
            }
            ref = b.childRef(at: it)
        }
    }
}
