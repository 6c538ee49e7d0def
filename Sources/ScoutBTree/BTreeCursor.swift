public import ScoutFormat

/// A position on one leaf item of a btree, keeping the whole path from the root so that moving
/// to the next or previous item only reads blocks when it crosses into another leaf.
///
/// The cursor reads through the tree's store and sees the tree as it was when positioned: the
/// tree must not be modified while a cursor is in use.
public struct BTreeCursor<Store: MetaBlockStore> {
    let tree: BTree<Store>
    /// Blocks from the root (index 0) to the leaf, each with the item the path goes through.
    var blocks: [BTreeBlock] = []
    var items: [Int] = []

    init(tree: BTree<Store>) {
        self.tree = tree
        blocks.reserveCapacity(Format.btreeMaxHeight)
        items.reserveCapacity(Format.btreeMaxHeight)
    }

    /// True while the cursor is on an item.
    public var isValid: Bool { !items.isEmpty && items[items.count - 1] != 0 }

    /// The leaf block of the current item.
    public var leaf: BTreeBlock { blocks[blocks.count - 1] }

    /// The byte offset of the current item in `leaf`.
    public internal(set) var itemOffset: Int {
        get { items[items.count - 1] }
        set { items[items.count - 1] = newValue }
    }

    /// The current item's key.
    public var key: Key { leaf.key(at: itemOffset) }
    /// The current item's seq.
    public var seq: UInt64 { leaf.seq(at: itemOffset) }
    /// The current item's flags.
    public var flags: UInt8 { leaf.flags(at: itemOffset) }
    /// A copy of the current item's value.
    public var value: [UInt8] { leaf.value(at: itemOffset) }
    /// A copy of the current item.
    public var item: BTreeItem { BTree<Store>.copyItem(leaf, itemOffset) }

    /// Calls `body` with the current value's bytes, without copying them.
    public func withValue<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        leaf.withValue(at: itemOffset, body)
    }

    /// Positions on the first item >= `key` (`forward`) or the last item <= `key`; invalid if
    /// there is none.
    public mutating func seek(_ root: BTreeRoot, _ key: Key, forward: Bool) throws(BTreeError) {
        blocks.removeAll(keepingCapacity: true)
        items.removeAll(keepingCapacity: true)
        if root.height == 0 { return }
        var ref = root.ref
        var level = Int(root.height)
        while true {
            level -= 1
            let b = try tree.read(ref)
            guard Int(b.level) == level else { throw BTree<Store>.corrupt(b, "level \(b.level), expected \(level)") }
            if level == 0 {
                let it = forward ? b.firstItem(atOrAfter: key) : b.lastItem(atOrBefore: key)
                blocks.append(b)
                items.append(it)
                if it == 0 { try step(forward: forward) }
                return
            }
            let s = b.search(key)
            var it = s.found != 0 ? s.found : s.next
            if it == 0 {
                // a key past a subtree's last parent key: continue from its last child
                it = b.lastItem()
                guard it != 0 else { throw BTree<Store>.corrupt(b, "empty parent block") }
            }
            blocks.append(b)
            items.append(it)
            ref = b.childRef(at: it)
        }
    }

    /// Moves to the next item in key order (invalid past the last one).
    public mutating func advance() throws(BTreeError) {
        try step(forward: true)
    }

    /// Moves to the previous item in key order (invalid before the first one).
    public mutating func retreat() throws(BTreeError) {
        try step(forward: false)
    }

    mutating func step(forward: Bool) throws(BTreeError) {
        guard !items.isEmpty else { return }
        var lvl = items.count - 1
        let cur = items[lvl]
        if cur != 0 {
            let b = blocks[lvl]
            let n = forward ? b.nextItem(cur) : b.prevItem(cur)
            if n != 0 {
                items[lvl] = n
                return
            }
        }
        while true {
            // climb to the lowest parent with another child in this direction
            var found = false
            while lvl > 0 {
                lvl -= 1
                let p = blocks[lvl]
                let n = forward ? p.nextItem(items[lvl]) : p.prevItem(items[lvl])
                if n != 0 {
                    items[lvl] = n
                    found = true
                    break
                }
            }
            if !found {
                blocks.removeAll(keepingCapacity: true)
                items.removeAll(keepingCapacity: true)
                return
            }
            blocks.removeSubrange((lvl + 1)...)
            items.removeSubrange((lvl + 1)...)
            // descend along the near edge of the new subtree
            while true {
                let p = blocks[lvl]
                let b = try tree.read(p.childRef(at: items[lvl]))
                guard Int(b.level) == Int(p.level) - 1 else {
                    throw BTree<Store>.corrupt(b, "level \(b.level), expected \(Int(p.level) - 1)")
                }
                let it = forward ? b.firstItem() : b.lastItem()
                blocks.append(b)
                items.append(it)
                lvl += 1
                if b.level == 0 || it == 0 { break }
            }
            if items[lvl] != 0 && blocks[lvl].level == 0 { return }
            // an empty block: keep going from here
        }
    }
}
