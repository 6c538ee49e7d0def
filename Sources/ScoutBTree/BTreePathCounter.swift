public import ScoutFormat

/// Counts the distinct blocks on the paths from a tree's root to the leaves that hold a run of
/// keys given in ascending order: the blocks a transaction writing items at those keys copies
/// (each block is copied at most once per transaction), before any split.
///
/// A mount uses it to bound the metadata blocks its next commit needs far more tightly than
/// "a leaf and a parent for every dirty item" when the dirty items cluster (creates in one
/// directory, the extents of one file), which they usually do. It reads blocks through the
/// tree's store and changes nothing; the tree must not change while the counter is in use.
public struct BTreePathCounter<Store: MetaBlockStore> {
    let tree: BTree<Store>
    let root: BTreeRoot
    /// The current path, root first: each block with the largest key its subtree may hold
    /// (the key of the parent item that references it; `Key.max` for the root).
    var path: [(block: BTreeBlock, last: Key)] = []
    /// Distinct blocks counted so far.
    public private(set) var blocks = 0
    var lastKey: Key?

    /// A counter over the tree at `root`.
    public init(tree: BTree<Store>, root: BTreeRoot) {
        self.tree = tree
        self.root = root
        path.reserveCapacity(Format.btreeMaxHeight)
    }

    /// Counts the blocks on the path to the leaf that holds `key`, not counted before.
    /// Keys must come in ascending order.
    public mutating func add(_ key: Key) throws(BTreeError) {
        precondition(lastKey.map { $0 <= key } ?? true, "keys out of order")
        lastKey = key
        guard root.height > 0 else { return }
        // a block's subtree holds keys in (previous parent key, its parent key]: since keys
        // ascend, a block stays on the path until a key passes its parent key
        while let top = path.last, top.last < key { path.removeLast() }
        if path.isEmpty {
            path.append((try tree.read(root.ref), .max))
            blocks += 1
        }
        while let top = path.last, top.block.level > 0 {
            let item = try BTree<Store>.childItem(top.block, key)
            path.append((try tree.read(top.block.childRef(at: item)), top.block.key(at: item)))
            blocks += 1
        }
    }
}
