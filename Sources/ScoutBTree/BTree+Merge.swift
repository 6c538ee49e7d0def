public import ScoutFormat

/// Log merging's btree operations (the original's `scoutfs_btree_merge` and the parent
/// helpers the server uses to hand out and splice subtrees of the fs root).
///
/// Design note. The server hands a client the subtree under the last parent on the path to a
/// key (a level-1 block when the tree is 3 or more levels tall, else the whole tree) with the
/// key range that parent covers. The client merges items into a copy-on-write copy of that
/// subtree with `subtree` set, so the subtree root never splits or joins, and the server puts
/// the copy's root in place of the parent's reference (`setParent`). Subtrees of distinct
/// parents share no blocks, so several clients merge at once.
extension BTree {
    /// The subtree under the last parent on the path to `key`: a height-2 root for a tree of
    /// 3 or more levels, the whole tree otherwise.
    public func parentRoot(_ root: BTreeRoot, _ key: Key) throws(BTreeError) -> BTreeRoot {
        try parentWalk(root, key).sub
    }

    /// The keys that reach `parentRoot(root, key)` from the root: everything for a tree of 2
    /// levels or fewer.
    public func parentRange(_ root: BTreeRoot, _ key: Key) throws(BTreeError) -> (start: Key, end: Key) {
        let w = try parentWalk(root, key)
        return (w.start, w.end)
    }

    private func parentWalk(_ root: BTreeRoot, _ key: Key) throws(BTreeError) -> (sub: BTreeRoot, start: Key, end: Key) {
        var start = Key.zero
        var end = Key.max
        if root.height <= 2 { return (root, start, end) }
        var ref = root.ref
        var level = Int(root.height)
        while true {
            level -= 1
            if level < 2 { return (BTreeRoot(ref: ref, height: UInt8(level + 1)), start, end) }
            let b = try read(ref)
            guard Int(b.level) == level else { throw Self.corrupt(b, "level \(b.level), expected \(level)") }
            let it = try Self.childItem(b, key)
            end = b.key(at: it)
            let prev = b.prevItem(it)
            if prev != 0 { start = b.key(at: prev).incremented() }
            ref = b.childRef(at: it)
        }
    }

    /// Puts `sub` in place of `parentRoot(root, key)`, dirtying the path to it. The caller
    /// accounts for the blocks `sub` references and those the old subtree referenced.
    public func setParent(_ root: inout BTreeRoot, _ key: Key, _ sub: BTreeRoot) throws(BTreeError) {
        if root.height <= 2 {
            root = sub
            return
        }
        guard sub.height == 2 else { throw .corrupt("subtree of height \(sub.height) spliced under a level-2 parent") }
        var level = Int(root.height)
        var parent: BTreeBlock? = nil
        var parItem = 0
        while level > 2 {
            level -= 1
            let b = try dirtyChild(&root, parent, parItem, level: level)
            parent = b
            parItem = try Self.childItem(b, key)
        }
        guard let parent else { throw .corrupt("no parent above the subtree for key \(key)") }
        parent.setChildRef(at: parItem, sub.ref)
    }

    /// Splits or joins every block on the path to `key` that needs it (after a splice left a
    /// subtree root under the join watermark or without room).
    public func rebalance(_ root: inout BTreeRoot, _ key: Key) throws(BTreeError) {
        _ = try walkDirty(&root, key, .rebalance)
    }

    /// Merges the newest version (highest seq) of every item in `start...end` of `inputs` into
    /// `root`: a deletion removes the key, anything else is written with its seq and flags.
    ///
    /// Returns nil when the range is done, or the key to resume from when it stopped first:
    /// `shouldStop` returned true (the caller's dirty limit), or the subtree root would have
    /// to split or join (`.range`). What was merged before the stop is in `root`.
    public func merge(
        _ root: inout BTreeRoot, from start: Key, through end: Key, inputs: [BTreeRoot],
        shouldStop: () -> Bool = { false }
    ) throws(BTreeError) -> (resume: Key?, merged: Int) {
        var cursors: [BTreeCursor<Store>] = []
        for input in inputs where input.height > 0 {
            let c = try cursor(input, seek: start)
            if c.isValid && c.key <= end { cursors.append(c) }
        }
        var merged = 0
        while true {
            // the least key under the cursors, and the newest version of it
            var least = -1
            for i in cursors.indices where cursors[i].isValid {
                if least < 0 || cursors[i].key < cursors[least].key { least = i }
            }
            guard least >= 0 else { return (nil, merged) }
            let key = cursors[least].key
            guard key <= end else { return (nil, merged) }
            var newest = least
            for i in cursors.indices where cursors[i].isValid && cursors[i].key == key {
                if cursors[i].seq > cursors[newest].seq { newest = i }
            }
            if shouldStop() { return (key, merged) }
            if DeltaItems.isDelta(key) {
                // delta items are summed over every input, then into the root's item
                do {
                    try mergeDelta(&root, key, cursors.filter { $0.isValid && $0.key == key }.map(\.item))
                } catch .range {
                    return (key, merged)
                }
                merged += 1
                for i in cursors.indices where cursors[i].isValid && cursors[i].key == key {
                    try cursors[i].advance()
                }
                continue
            }
            let item = cursors[newest].item
            do {
                if item.flags & Format.itemFlagDeletion != 0 {
                    if try lookup(root, key) != nil { try delete(&root, key) }
                } else {
                    try force(&root, key, item.value, seq: item.seq, flags: item.flags)
                }
            } catch .range {
                return (key, merged)
            }
            merged += 1
            for i in cursors.indices where cursors[i].isValid && cursors[i].key == key {
                try cursors[i].advance()
            }
        }
    }

    /// Merges the versions of delta item `key` found in the inputs into `root` (the
    /// original's delta combining in `scoutfs_btree_merge`): the inputs are summed, their sum
    /// is added to the root's item, and the result carries the newest seq so readers know the
    /// inputs are in it. A sum of nothing (total and count zero) drops the item. Deletion
    /// items are not deltas and are ignored.
    func mergeDelta(_ root: inout BTreeRoot, _ key: Key, _ versions: [BTreeItem]) throws(BTreeError) {
        var sum: [UInt8]? = nil
        var seq: UInt64 = 0
        for v in versions where v.flags & Format.itemFlagDeletion == 0 {
            seq = Swift.max(seq, v.seq)
            guard let s = sum else {
                sum = v.value
                continue
            }
            switch DeltaItems.combine(s, v.value) {
            case .value(let b): sum = b
            case .null: sum = nil
            case nil: throw .corrupt("delta item \(key): \(v.value.count)-byte value")
            }
        }
        // nothing to add (the inputs cancel, or one carries a null item a commit left)
        guard let sum, sum.contains(where: { $0 != 0 }) else { return }
        if let existing = try lookup(root, key), existing.flags & Format.itemFlagDeletion == 0 {
            switch DeltaItems.combine(existing.value, sum) {
            case .value(let b): try force(&root, key, b, seq: Swift.max(seq, existing.seq), flags: 0)
            case .null: try delete(&root, key)
            case nil: throw .corrupt("delta item \(key) of the root: \(existing.value.count)-byte value")
            }
        } else {
            try force(&root, key, sum, seq: seq, flags: 0)
        }
    }

    /// Frees up to `budget` blocks of a tree nobody references any more, leaves first, and
    /// returns the key to continue from (nil once every block is freed). Blocks are only read
    /// (parents, never leaves), not changed: the tree is gone once the caller drops the root.
    public func freeBlocks(_ root: BTreeRoot, from key: Key, budget: Int) throws(BTreeError) -> Key? {
        if root.height == 0 { return nil }
        if root.height == 1 {
            try free(root.ref)
            return nil
        }
        var freed = 0
        var key = key
        while freed < budget {
            // descend to the last parent covering `key`, noting the parents passed through
            // their final child: once that parent's leaves are freed, so are they
            var ref = root.ref
            var level = Int(root.height)
            var lastChildParents: [BlockRef] = []
            var parent: BTreeBlock
            while true {
                level -= 1
                let b = try read(ref)
                guard Int(b.level) == level else { throw Self.corrupt(b, "level \(b.level), expected \(level)") }
                if level == 1 {
                    parent = b
                    break
                }
                let it = try Self.childItem(b, key)
                if b.nextItem(it) == 0 { lastChildParents.append(ref) } else { lastChildParents = [] }
                ref = b.childRef(at: it)
            }
            // a level-1 block is freed whole, so the key always leads to an unfreed one
            var it = parent.firstItem()
            var end = Key.max
            while it != 0 {
                try free(parent.childRef(at: it))
                freed += 1
                end = parent.key(at: it)
                it = parent.nextItem(it)
            }
            try free(ref)
            for p in lastChildParents.reversed() { try free(p) }
            if lastChildParents.count == Int(root.height) - 2 { return nil }
            key = end.incremented()
        }
        return key
    }
}
