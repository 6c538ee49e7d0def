public import ScoutFormat

/// A copy-on-write btree of 64 KiB blocks, as the original's `kmod/src/btree.c`.
///
/// Design note.
///
/// - Leaves hold items; parents hold one item per child whose key is the largest key that may be
///   found in that child and whose value is the child's `BlockRef`. The right spine of parents
///   uses `Key.max`, so inserting past every key never updates a parent key. Deleting the
///   largest key of a leaf does not lower its parent key either: a child's keys lie in
///   (previous parent key, parent key].
/// - Writers descend from the root making every block on the path dirty (`store.dirty`, which
///   copies on write and updates the reference held by the parent or the root). On the way down
///   an insertion (and, as in the original, a deletion) splits a block that lacks room for the
///   new item (parents: for one more child reference), after first compacting its values when it
///   is under 80% full. A split moves the lower half of the items into a new left sibling, so the
///   block's own parent key never changes; a full root grows a new root above it. A leaf split
///   for an insertion that appends to a run of ascending keys moves every item below the key
///   instead (`trySplit`), so runs of sequential keys leave full leaves rather than half-full
///   ones (the original always splits in half). A deletion
///   also refills a non-root block under 25% full (`BTreeBlock.joinLowWatermark`) from its left
///   sibling (else its right one): all of the sibling's items when they total at most 50% of a
///   block, else a quarter of a block; an emptied sibling is freed, and a root parent left with
///   one child is freed so that child becomes the root. After any split or join the descent
///   restarts from the root.
/// - Items keep their `seq` and `flags` (`Format.itemFlagDeletion`); callers choose them.
///
/// Deviations from the original, all in cases the original treats as impossible: a block with no
/// sibling is not joined (the original would dereference a missing sibling), the tree only
/// shrinks when the parent left with one child is the root, and a block that absorbs all of its
/// right sibling takes over that sibling's parent key (the original gives it the key of its new
/// last item, which can leave a parent's last key below the key its own parent holds for it, so
/// later descents for keys in between would find no child). With that, a parent block's last
/// key always equals the key its own parent holds for it (`Key.max` on the right spine).
///
/// The btree keeps no state: every call takes the root (inout when it may change) and works
/// through `store`. A tree must not be modified while a `BTreeCursor` walks it.
public struct BTree<Store: MetaBlockStore> {
    /// Where blocks are read, dirtied and freed.
    public let store: Store
    /// The root is a parent block handed out for merging (a subtree of a larger tree): a
    /// modifying walk throws `.range` instead of splitting it or letting it fall under the
    /// join watermark, so the subtree keeps its height and still fits its parent's key range.
    public var subtree = false

    /// A btree working through `store`.
    public init(store: Store) { self.store = store }

    /// A btree whose root is a merge subtree when `subtree` is set.
    public init(store: Store, subtree: Bool) {
        self.store = store
        self.subtree = subtree
    }

    // MARK: store access

    @inline(__always)
    func read(_ ref: BlockRef) throws(BTreeError) -> BTreeBlock {
        do {
            return BTreeBlock(try store.read(ref, magic: .btree))
        } catch {
            throw .store(error)
        }
    }

    @inline(__always)
    func dirty(_ ref: inout BlockRef) throws(BTreeError) -> BTreeBlock {
        let before = ref
        let b: BTreeBlock
        do {
            b = BTreeBlock(try store.dirty(&ref, magic: .btree))
        } catch {
            throw .store(error)
        }
        // a fresh copy of a block mkfs wrote carries the utils' shifted heights: fix them once
        if ref != before && !before.isNull && !b.avlIsBalanced() { b.rebuildAVL() }
        return b
    }

    @inline(__always)
    func free(_ ref: BlockRef) throws(BTreeError) {
        do {
            try store.free(ref)
        } catch {
            throw .store(error)
        }
    }

    @inline(__always)
    static func ref(of b: BTreeBlock) -> BlockRef {
        BlockRef(blkno: b.buffer.u64(24), seq: b.buffer.u64(16))
    }

    static func corrupt(_ b: BTreeBlock, _ what: String) -> BTreeError {
        .corrupt("blkno \(b.buffer.u64(24)): \(what)")
    }

    /// The item of parent block `b` whose child holds `key`.
    @inline(__always)
    static func childItem(_ b: BTreeBlock, _ key: Key) throws(BTreeError) -> Int {
        let s = b.search(key)
        let it = s.found != 0 ? s.found : s.next
        guard it != 0 else { throw corrupt(b, "no child reference for key \(key)") }
        return it
    }

    /// Makes the block at `level` under `parent`'s item `parItem` (the root's block when
    /// `parent` is nil) dirty, pointing the reference at the copy.
    func dirtyChild(_ root: inout BTreeRoot, _ parent: BTreeBlock?, _ parItem: Int, level: Int) throws(BTreeError) -> BTreeBlock {
        var ref = parent.map { $0.childRef(at: parItem) } ?? root.ref
        let old = ref
        let b = try dirty(&ref)
        if ref != old {
            if let p = parent { p.setChildRef(at: parItem, ref) } else { root.ref = ref }
        }
        guard Int(b.level) == level else { throw Self.corrupt(b, "level \(b.level), expected \(level)") }
        return b
    }

    // MARK: reading

    /// Descends to the leaf that would hold `key`, reading (not dirtying) blocks.
    func readLeaf(_ root: BTreeRoot, _ key: Key) throws(BTreeError) -> BTreeBlock? {
        if root.height == 0 { return nil }
        var ref = root.ref
        var level = Int(root.height)
        while true {
            level -= 1
            let b = try read(ref)
            guard Int(b.level) == level else { throw Self.corrupt(b, "level \(b.level), expected \(level)") }
            if level == 0 { return b }
            ref = b.childRef(at: try Self.childItem(b, key))
        }
    }

    /// The item with `key`, or nil.
    public func lookup(_ root: BTreeRoot, _ key: Key) throws(BTreeError) -> BTreeItem? {
        guard let leaf = try readLeaf(root, key) else { return nil }
        let off = leaf.hashSearch(key)
        if off == 0 { return nil }
        return Self.copyItem(leaf, off)
    }

    /// Calls `body` with the value of the item with `key` without copying it; nil if absent.
    public func withValue<R>(_ root: BTreeRoot, _ key: Key, _ body: (UnsafeRawBufferPointer) -> R) throws(BTreeError) -> R? {
        guard let leaf = try readLeaf(root, key) else { return nil }
        let off = leaf.hashSearch(key)
        if off == 0 { return nil }
        return leaf.withValue(at: off, body)
    }

    static func copyItem(_ b: BTreeBlock, _ off: Int) -> BTreeItem {
        BTreeItem(key: b.key(at: off), seq: b.seq(at: off), flags: b.flags(at: off), value: b.value(at: off))
    }

    /// The first item with a key >= `key`, or nil.
    public func next(_ root: BTreeRoot, _ key: Key) throws(BTreeError) -> BTreeItem? {
        let c = try cursor(root, seek: key, forward: true)
        return c.isValid ? c.item : nil
    }

    /// The last item with a key <= `key`, or nil.
    public func prev(_ root: BTreeRoot, _ key: Key) throws(BTreeError) -> BTreeItem? {
        let c = try cursor(root, seek: key, forward: false)
        return c.isValid ? c.item : nil
    }

    /// A cursor on the first item >= `key` (`forward`) or the last item <= `key`.
    public func cursor(_ root: BTreeRoot, seek key: Key, forward: Bool = true) throws(BTreeError) -> BTreeCursor<Store> {
        var c = BTreeCursor(tree: self)
        try c.seek(root, key, forward: forward)
        return c
    }

    /// Calls `body` on each item with a key in `start...end` in key order (or reverse order
    /// when `reverse`), until it returns false. Offsets are only valid during the call.
    public func forEach(
        _ root: BTreeRoot, from start: Key = .zero, through end: Key = .max, reverse: Bool = false,
        _ body: (BTreeBlock, Int) -> Bool
    ) throws(BTreeError) {
        var c = try cursor(root, seek: reverse ? end : start, forward: !reverse)
        while c.isValid {
            let leaf = c.leaf
            var off = c.itemOffset
            // walk the rest of this leaf without going through the cursor
            while off != 0 {
                if reverse {
                    if leaf.compare(start, itemAt: off) > 0 { return }
                } else if leaf.compare(end, itemAt: off) < 0 {
                    return
                }
                if !body(leaf, off) { return }
                let n = reverse ? leaf.prevItem(off) : leaf.nextItem(off)
                if n == 0 { break }
                off = n
            }
            c.itemOffset = off
            if reverse { try c.retreat() } else { try c.advance() }
        }
    }

    // MARK: writing

    enum Intent {
        case insert(valueLength: Int)
        case delete
        case dirtyOnly
        /// Splits and joins every block on the path as needed (a spliced subtree's edges).
        case rebalance
    }

    /// Descends to the leaf for `key`, dirtying every block, splitting or joining on the way
    /// as `intent` asks. Returns nil for an empty tree unless inserting.
    func walkDirty(_ root: inout BTreeRoot, _ key: Key, _ intent: Intent) throws(BTreeError) -> BTreeBlock? {
        var valueLength = 0
        var splitting = true
        var joining = false
        switch intent {
        case .insert(let len): valueLength = len
        case .delete: joining = true
        case .dirtyOnly: splitting = false
        case .rebalance:
            valueLength = Format.btreeMaxValueLength
            joining = true
        }

        restart: while true {
            if root.height == 0 {
                guard case .insert = intent else { return nil }
                var ref = BlockRef()
                let b = try dirty(&ref)
                b.initialize(level: 0)
                root = BTreeRoot(ref: ref, height: 1)
                return b
            }

            var level = Int(root.height)
            var parent: BTreeBlock? = nil
            var parItem = 0
            while level > 0 {
                level -= 1
                let b = try dirtyChild(&root, parent, parItem, level: level)

                if subtree && parent == nil && level == 1, splitting || joining,
                    b.totalItemBytes < BTreeBlock.joinLowWatermark || !b.hasRoom(forValueLength: BlockRef.encodedSize)
                {
                    throw .range
                }

                var changed = false
                if splitting {
                    let insertKey: Key?
                    if case .insert = intent { insertKey = key } else { insertKey = nil }
                    changed = try trySplit(&root, valueLength, insertKey, parent, parItem, b)
                }
                if !changed && joining, let p = parent {
                    changed = try tryJoin(&root, p, parItem, b)
                }
                if changed { continue restart }

                if level == 0 { return b }

                parent = b
                parItem = try Self.childItem(b, key)
            }
            return nil
        }
    }

    /// Adds a parent item for `child`, with `key`.
    func createParentItem(_ parent: BTreeBlock, _ child: BTreeBlock, _ key: Key) {
        let r = Self.ref(of: child)
        let s = parent.search(key)
        withUnsafeTemporaryAllocation(byteCount: BlockRef.encodedSize, alignment: 8) { buf in
            buf.storeBytes(of: r.blkno.littleEndian, toByteOffset: 0, as: UInt64.self)
            buf.storeBytes(of: r.seq.littleEndian, toByteOffset: 8, as: UInt64.self)
            parent.createItem(key: key, seq: 0, flags: 0, value: UnsafeRawBufferPointer(buf), parent: s.parent, cmp: s.cmp)
        }
    }

    /// Points a parent item at `child` and gives it the key of `child`'s last item.
    func updateParentItem(_ parent: BTreeBlock, _ item: Int, _ child: BTreeBlock) {
        parent.setKey(at: item, child.key(at: child.lastItem()))
        parent.setChildRef(at: item, Self.ref(of: child))
    }

    /// Splits `right` if it has no room for an item with `valueLength` bytes (parents: for a
    /// child reference). Returns true if the tree changed shape.
    ///
    /// The lower half of the items moves to a new left sibling, except in a leaf that an
    /// insertion of `key` fills while it appends to a run of ascending keys
    /// (`appendSplitPoint`): then every item below `key` moves left, and the left block's
    /// parent key reaches up to just below the first item that stays, so that `key` and the
    /// keys that follow it go on filling the left block, or, when `key` lies past every item,
    /// all but the last item move left. Sequential keys (inode numbers, readdir positions,
    /// index seqs) then leave full leaves behind them instead of half-full ones; the block
    /// that keeps the items above the run may be left under the join watermark, as deletions
    /// leave blocks in the original, until a deletion walks through it and joins it.
    func trySplit(
        _ root: inout BTreeRoot, _ valueLength: Int, _ key: Key?, _ parentIn: BTreeBlock?, _ parItem: Int, _ right: BTreeBlock
    ) throws(BTreeError) -> Bool {
        let len = right.level > 0 ? BlockRef.encodedSize : valueLength
        if right.hasRoom(forValueLength: len) { return false }
        if right.fullPercent < 80 {
            right.compactValues()
            return false
        }

        // where the split falls: (bytes to move, parent key for the left block) for an append
        let append: (bytes: Int, leftKey: Key?)?
        if right.level == 0, let key {
            let upper = parentIn.map { $0.key(at: parItem) } ?? .max
            append = Self.appendSplitPoint(right, key, upper: upper)
        } else {
            append = nil
        }

        var leftRef = BlockRef()
        let left = try dirty(&leftRef)
        left.initialize(level: right.level)

        var parent: BTreeBlock
        if let p = parentIn {
            parent = p
        } else {
            var parRef = BlockRef()
            do {
                parent = try dirty(&parRef)
            } catch {
                try? free(leftRef)
                throw error
            }
            parent.initialize(level: root.height)
            root.height += 1
            root.ref = parRef
            createParentItem(parent, right, .max)
        }

        Self.moveItems(dst: left, src: right, moveRight: false, toMove: append?.bytes ?? right.totalItemBytes / 2)
        createParentItem(parent, left, append?.leftKey ?? left.key(at: left.lastItem()))
        return true
    }

    /// Where a full leaf splits for an insertion of `key` that continues a run of ascending
    /// keys, nil when it does not: the bytes of the items that move to the new left block, and
    /// the left block's parent key (nil: its last item's key).
    ///
    /// `key` continues a run when it lies far closer above the item before it than below the
    /// item after it (or `upper`, the leaf's parent key, when it is past every item): the
    /// differences, read as 216-bit numbers in key order, differ in length by at least
    /// `KeyDistance.appendGapBits`; and its step from the item below is at most
    /// `KeyDistance.runStepSlackBits` longer than that item's step from the one before. A
    /// random insertion lands that unevenly between its neighbours about once in 2^16, and
    /// then only costs an uneven split.
    static func appendSplitPoint(_ b: BTreeBlock, _ key: Key, upper: Key) -> (bytes: Int, leftKey: Key?)? {
        let s = b.search(key)
        guard s.found == 0, s.prev != 0 else { return nil }
        let below = b.key(at: s.prev)
        let above = s.next != 0 ? b.key(at: s.next) : upper
        let step = KeyDistance.bitLength(below, key)
        guard above > key, step + KeyDistance.appendGapBits < KeyDistance.bitLength(key, above) else { return nil }
        // and the step is not much longer than the one before it: random keys past the last
        // leaf of a tree (whose bound is all ones) land far beyond its items' spacing
        let before = b.prevItem(s.prev)
        if before != 0, step > KeyDistance.bitLength(b.key(at: before), below) + KeyDistance.runStepSlackBits { return nil }
        // the items up to and including the one before `key`
        var bytes = 0
        var it = b.firstItem()
        while it != 0 {
            bytes += b.itemBytes(at: it)
            if it == s.prev { break }
            it = b.nextItem(it)
        }
        if s.next != 0 {
            return (bytes, b.key(at: s.next).decremented())
        }
        // past every item: the last one stays, the block must not be left empty
        let rest = bytes - b.itemBytes(at: s.prev)
        return rest > 0 ? (rest, nil) : nil
    }

    /// Refills `b` from a sibling when it is under the join watermark. Returns true if the tree
    /// changed shape.
    func tryJoin(_ root: inout BTreeRoot, _ parent: BTreeBlock, _ parItem: Int, _ b: BTreeBlock) throws(BTreeError) -> Bool {
        let lwm = BTreeBlock.joinLowWatermark
        if b.totalItemBytes >= lwm { return false }

        var sibItem = parent.prevItem(parItem)
        let moveRight: Bool
        if sibItem != 0 {
            moveRight = true
        } else {
            sibItem = parent.nextItem(parItem)
            moveRight = false
        }
        if sibItem == 0 { return false }

        var sibRef = parent.childRef(at: sibItem)
        let old = sibRef
        let sib = try dirty(&sibRef)
        if sibRef != old { parent.setChildRef(at: sibItem, sibRef) }
        guard sib.level == b.level else { throw Self.corrupt(sib, "sibling level \(sib.level), expected \(b.level)") }

        let sibTotal = sib.totalItemBytes
        let toMove = sibTotal <= lwm * 2 ? sibTotal : lwm
        if b.midFreeLen < toMove + BTreeBlock.itemBytes(valueLength: Format.btreeMaxValueLength) {
            b.compactValues()
        }

        Self.moveItems(dst: b, src: sib, moveRight: moveRight, toMove: toMove)

        if !moveRight { updateParentItem(parent, parItem, b) }

        if sib.nrItems == 0 {
            if !moveRight {
                // we now hold everything the emptied right sibling bounded
                parent.setKey(at: parItem, parent.key(at: sibItem))
            }
            parent.deleteItem(at: sibItem)
            try free(sibRef)
        } else if moveRight {
            updateParentItem(parent, sibItem, sib)
        }

        if parent.nrItems == 1 && Self.ref(of: parent).blkno == root.ref.blkno {
            let parRef = root.ref
            root.height -= 1
            root.ref = Self.ref(of: b)
            try free(parRef)
        }
        return true
    }

    /// Moves items from the tail of `src` to the head of `dst` (`moveRight`) or from the head of
    /// `src` to the tail of `dst`, until at least `toMove` bytes of items have moved.
    static func moveItems(dst: BTreeBlock, src: BTreeBlock, moveRight: Bool, toMove: Int) {
        var toMove = toMove
        var par = moveRight ? dst.firstItem() : dst.lastItem()
        let cmp = moveRight ? -1 : 1
        var from = moveRight ? src.lastItem() : src.firstItem()
        while toMove > 0 && from != 0 {
            toMove -= src.itemBytes(at: from)
            var next = moveRight ? src.prevItem(from) : src.nextItem(from)
            src.withValue(at: from) { v in
                _ = dst.createItem(
                    key: src.key(at: from), seq: src.seq(at: from), flags: src.flags(at: from), value: v,
                    parent: par, cmp: cmp)
            }
            if moveRight {
                par = par != 0 ? dst.prevItem(par) : dst.firstItem()
            } else {
                par = par != 0 ? dst.nextItem(par) : dst.lastItem()
            }
            next = src.deleteItem(at: from, tracking: next)
            from = next
        }
    }

    @inline(__always)
    static func withBytes(_ a: [UInt8], _ body: (UnsafeRawBufferPointer) throws(BTreeError) -> Void) throws(BTreeError) {
        let r: Result<Void, BTreeError> = a.withUnsafeBytes { v in Result { () throws(BTreeError) in try body(v) } }
        try r.get()
    }

    static func checkValue(_ len: Int) throws(BTreeError) {
        if len > Format.btreeMaxValueLength { throw .valueTooLarge }
    }

    /// Inserts a new item; throws `.exists` if the key is present.
    public func insert(
        _ root: inout BTreeRoot, _ key: Key, _ value: UnsafeRawBufferPointer, seq: UInt64 = 0, flags: UInt8 = 0
    ) throws(BTreeError) {
        try Self.checkValue(value.count)
        guard let leaf = try walkDirty(&root, key, .insert(valueLength: value.count)) else { throw .notFound }
        if leaf.hashSearch(key) != 0 { throw .exists }
        let s = leaf.search(key)
        if s.found != 0 { throw Self.corrupt(leaf, "key \(key) in the AVL tree but not the hash table") }
        leaf.createItem(key: key, seq: seq, flags: flags, value: value, parent: s.parent, cmp: s.cmp)
    }

    /// Inserts a new item; throws `.exists` if the key is present.
    public func insert(_ root: inout BTreeRoot, _ key: Key, _ value: [UInt8], seq: UInt64 = 0, flags: UInt8 = 0) throws(BTreeError) {
        try Self.withBytes(value) { (v) throws(BTreeError) in try insert(&root, key, v, seq: seq, flags: flags) }
    }

    /// Replaces the value of an existing item (and its seq and flags when given); throws
    /// `.notFound` if the key is absent.
    public func update(
        _ root: inout BTreeRoot, _ key: Key, _ value: UnsafeRawBufferPointer, seq: UInt64? = nil, flags: UInt8? = nil
    ) throws(BTreeError) {
        try Self.checkValue(value.count)
        guard let leaf = try walkDirty(&root, key, .insert(valueLength: value.count)) else { throw .notFound }
        let off = leaf.hashSearch(key)
        if off == 0 { throw .notFound }
        leaf.updateValue(at: off, value)
        if let seq { leaf.setSeq(at: off, seq) }
        if let flags { leaf.setFlags(at: off, flags) }
    }

    /// Replaces the value of an existing item; throws `.notFound` if the key is absent.
    public func update(_ root: inout BTreeRoot, _ key: Key, _ value: [UInt8], seq: UInt64? = nil, flags: UInt8? = nil) throws(BTreeError) {
        try Self.withBytes(value) { (v) throws(BTreeError) in try update(&root, key, v, seq: seq, flags: flags) }
    }

    /// Inserts the item, or replaces the value, seq and flags of the existing one.
    public func force(
        _ root: inout BTreeRoot, _ key: Key, _ value: UnsafeRawBufferPointer, seq: UInt64 = 0, flags: UInt8 = 0
    ) throws(BTreeError) {
        try Self.checkValue(value.count)
        guard let leaf = try walkDirty(&root, key, .insert(valueLength: value.count)) else { throw .notFound }
        let off = leaf.hashSearch(key)
        if off != 0 {
            leaf.updateValue(at: off, value)
            leaf.setSeq(at: off, seq)
            leaf.setFlags(at: off, flags)
        } else {
            let s = leaf.search(key)
            leaf.createItem(key: key, seq: seq, flags: flags, value: value, parent: s.parent, cmp: s.cmp)
        }
    }

    /// Inserts the item, or replaces the value, seq and flags of the existing one.
    public func force(_ root: inout BTreeRoot, _ key: Key, _ value: [UInt8], seq: UInt64 = 0, flags: UInt8 = 0) throws(BTreeError) {
        try Self.withBytes(value) { (v) throws(BTreeError) in try force(&root, key, v, seq: seq, flags: flags) }
    }

    /// Deletes an item; throws `.notFound` if the key is absent. Deleting the last item frees
    /// the root leaf and leaves an empty root.
    public func delete(_ root: inout BTreeRoot, _ key: Key) throws(BTreeError) {
        guard let leaf = try walkDirty(&root, key, .delete) else { throw .notFound }
        let off = leaf.hashSearch(key)
        if off == 0 { throw .notFound }
        if leaf.nrItems == 1 && root.height == 1 {
            try free(root.ref)
            root = BTreeRoot()
        } else {
            leaf.deleteItem(at: off)
        }
    }

    /// Makes every block on the path to `key` dirty, so a later change to that item in this
    /// transaction cannot fail for lack of space to copy blocks; throws `.notFound` if absent.
    public func dirty(_ root: inout BTreeRoot, _ key: Key) throws(BTreeError) {
        guard let leaf = try walkDirty(&root, key, .dirtyOnly) else { throw .notFound }
        if leaf.hashSearch(key) == 0 { throw .notFound }
    }
}
