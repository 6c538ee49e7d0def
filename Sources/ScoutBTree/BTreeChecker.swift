public import ScoutFormat

/// Walks a whole btree and verifies every rule the btree code relies on, reporting the first
/// violation as `BTreeError.corrupt` naming the block number.
///
/// Checked in every block: the level matches the depth; `nr_items` fits; every AVL link is an
/// item offset in the array; parent links agree with child links; every stored height is
/// `1 + max(children)` and balances differ by at most one; the in-order walk visits exactly
/// `nr_items` items with strictly increasing keys inside the range the parent gives the block
/// (previous parent key, parent key]; the last item of a root-to-right-spine parent is
/// `Key.max`; item padding is zero; values are at most 896 bytes, 8-byte aligned, inside the
/// value area, above the middle free space and not overlapping each other; `total_item_bytes`
/// is the sum of `56 + round_up(val_len, 8)` and `mid_free_len` lies within the gap between the
/// item array and the lowest value. Parents: every value is a 16-byte block reference to a
/// block one level down. Leaves: every item is found through the hash table and exactly
/// `nr_items` buckets are in use, each holding an item offset. Non-root blocks hold at least
/// one item, and at least `minimumNonRootBytes` of items when that is given.
///
/// The original only refills a block when a later deletion walks through it, and an update can
/// shrink values without any refill, so the 25% fill is not an invariant after every operation;
/// nor after a split for an appended run of keys (`BTree.trySplit`), which may leave the block
/// above the run with a few items. Pass `BTreeBlock.joinLowWatermark` as `minimumNonRootBytes`
/// for trees built by insertions that append no runs (random or descending keys).
public struct BTreeChecker<Store: MetaBlockStore> {
    /// Where the tree's blocks are read.
    public let store: Store
    /// When set, non-root blocks must hold at least this many `total_item_bytes`.
    public var minimumNonRootBytes: Int?
    /// Accept the shifted AVL heights of blocks mkfs wrote and nothing has copied since (links,
    /// order and everything else are still checked). Off for trees that `BTree` built.
    public var acceptMkfsHeights = false

    /// What a successful check saw.
    public struct Summary: Equatable, Sendable {
        /// Leaf items in the tree.
        public var items = 0
        /// Blocks of every level.
        public var blocks = 0
        /// The block numbers of all of the tree's blocks.
        public var blknos: Set<UInt64> = []
        /// Leaf blocks.
        public var leaves = 0
        /// The sum of the leaves' `total_item_bytes`.
        public var leafItemBytes = 0

        /// The fraction of the leaves' item space (a block less its header and hash table)
        /// that items use.
        public var leafFill: Double {
            let space = Format.largeBlockSize - BTreeBlock.headerSize - BTreeBlock.hashBytes
            return leaves == 0 ? 0 : Double(leafItemBytes) / Double(leaves * space)
        }
    }

    /// A checker reading through `store`.
    public init(store: Store, minimumNonRootBytes: Int? = nil) {
        self.store = store
        self.minimumNonRootBytes = minimumNonRootBytes
    }

    /// Checks the tree under `root`.
    @discardableResult
    public func check(_ root: BTreeRoot) throws(BTreeError) -> Summary {
        var sum = Summary()
        if root.height == 0 {
            if !root.ref.isNull { throw .corrupt("root: height 0 with blkno \(root.ref.blkno)") }
            return sum
        }
        if root.ref.isNull { throw .corrupt("root: height \(root.height) with a null ref") }
        if Int(root.height) > Format.btreeMaxHeight { throw .corrupt("root: height \(root.height) > \(Format.btreeMaxHeight)") }
        try checkBlock(root.ref, level: Int(root.height) - 1, isRoot: true, low: nil, high: .max, rightSpine: true, &sum)
        return sum
    }

    /// Checks the structure of one block on its own (no parent range, no children).
    public static func checkBlockStructure(_ b: BTreeBlock, blkno: UInt64, acceptMkfsHeights: Bool = false) throws(BTreeError) -> [Int] {
        func fail(_ s: String) -> BTreeError { .corrupt("blkno \(blkno): \(s)") }
        let nr = b.nrItems
        let level = b.level
        let valuesEnd = b.valuesEnd
        let arrayEnd = BTreeBlock.itemOffset(nr)
        if arrayEnd > valuesEnd { throw fail("nr_items \(nr) overruns the block") }

        func validItem(_ off: Int) -> Bool {
            off >= BTreeBlock.headerSize && off < arrayEnd && (off - BTreeBlock.headerSize) % BTreeBlock.itemSize == 0
        }
        let rootOff = b.rootItem
        if nr == 0 {
            if rootOff != 0 { throw fail("empty block with an AVL root") }
        } else if !validItem(rootOff) {
            throw fail("bad AVL root offset \(b.itemRoot)")
        }

        var total = 0
        var values: [(Int, Int)] = []
        values.reserveCapacity(nr)
        for i in 0..<nr {
            let off = BTreeBlock.itemOffset(i)
            for l in [b.avlParent(off), b.avlLeft(off), b.avlRight(off)] where l != 0 && !validItem(l) {
                throw fail("item \(i) has a bad AVL link \(l)")
            }
            if b.buffer.u8(off + 7) != 0 || b.buffer.u8(off + 53) != 0 || b.buffer.u16(off + 54) != 0 {
                throw fail("item \(i) padding is not zero")
            }
            for p in 0..<5 where b.buffer.u8(off + 35 + p) != 0 {
                throw fail("item \(i) key padding is not zero")
            }
            let vl = b.valueLength(at: off), vo = b.valueOffset(at: off)
            if vl > Format.btreeMaxValueLength { throw fail("item \(i) value length \(vl)") }
            if level > 0 && vl != BlockRef.encodedSize { throw fail("parent item \(i) value length \(vl)") }
            if vl > 0 {
                if vo % Format.btreeValueAlign != 0 { throw fail("item \(i) value offset \(vo) not aligned") }
                if vo < arrayEnd + b.midFreeLen || vo + vl > valuesEnd {
                    throw fail("item \(i) value \(vo)+\(vl) outside the value area")
                }
                values.append((vo, BTreeBlock.valueBytes(vl)))
            } else if vo != 0 {
                throw fail("item \(i) has an empty value at offset \(vo)")
            }
            total += b.itemBytes(at: off)
        }
        values.sort { $0.0 < $1.0 }
        for j in values.indices.dropFirst() where values[j - 1].0 + values[j - 1].1 > values[j].0 {
            throw fail("values at \(values[j - 1].0) and \(values[j].0) overlap")
        }
        if total != b.totalItemBytes { throw fail("total_item_bytes \(b.totalItemBytes), items sum to \(total)") }
        let firstValue = values.first?.0 ?? valuesEnd
        if b.midFreeLen > firstValue - arrayEnd {
            throw fail("mid_free_len \(b.midFreeLen) larger than the gap \(firstValue - arrayEnd)")
        }

        // AVL: links, heights, balance, in-order
        var order: [Int] = []
        order.reserveCapacity(nr)
        var overflow = false
        func walk(_ n: Int, _ parent: Int) throws(BTreeError) -> Int {
            if n == 0 { return 0 }
            if order.count > nr || overflow {
                overflow = true
                throw fail("AVL tree has a cycle")
            }
            if b.avlParent(n) != parent { throw fail("item at \(n) has parent \(b.avlParent(n)), expected \(parent)") }
            let lh = try walk(b.avlLeft(n), n)
            order.append(n)
            let rh = try walk(b.avlRight(n), n)
            let h = 1 + Swift.max(lh, rh)
            if acceptMkfsHeights { return h }
            if abs(lh - rh) > 1 { throw fail("AVL item at \(n) unbalanced: heights \(lh) and \(rh)") }
            if b.avlHeight(n) != h { throw fail("AVL item at \(n) height \(b.avlHeight(n)), expected \(h)") }
            return h
        }
        _ = try walk(rootOff, 0)
        if order.count != nr { throw fail("AVL tree holds \(order.count) of \(nr) items") }
        for j in order.indices.dropFirst() where !(b.key(at: order[j - 1]) < b.key(at: order[j])) {
            throw fail("keys out of order: \(b.key(at: order[j - 1])) before \(b.key(at: order[j]))")
        }

        if level == 0 {
            var used = 0
            for i in 0..<BTreeBlock.hashNr {
                let o = Int(b.buffer.u16(BTreeBlock.hashOffset + i * 2))
                if o == 0 { continue }
                if !validItem(o) { throw fail("hash bucket \(i) holds bad offset \(o)") }
                used += 1
            }
            if used != nr { throw fail("\(used) hash buckets used for \(nr) items") }
            for o in order where b.hashSearch(b.key(at: o)) != o {
                throw fail("item \(b.key(at: o)) not found through the hash table")
            }
        }
        return order
    }

    func checkBlock(
        _ ref: BlockRef, level: Int, isRoot: Bool, low: Key?, high: Key, rightSpine: Bool, _ sum: inout Summary
    ) throws(BTreeError) {
        let buf: BlockBuffer
        do {
            buf = try store.read(ref, magic: .btree)
        } catch {
            throw .store(error)
        }
        let b = BTreeBlock(buf)
        let blkno = ref.blkno
        func fail(_ s: String) -> BTreeError { .corrupt("blkno \(blkno): \(s)") }
        if !sum.blknos.insert(blkno).inserted { throw fail("block referenced twice") }
        sum.blocks += 1
        if Int(b.level) != level { throw fail("level \(b.level), expected \(level)") }
        let order = try Self.checkBlockStructure(b, blkno: blkno, acceptMkfsHeights: acceptMkfsHeights)
        if !isRoot {
            if order.isEmpty { throw fail("non-root block is empty") }
            if let m = minimumNonRootBytes, b.totalItemBytes < m {
                throw fail("non-root block holds \(b.totalItemBytes) bytes of items, under \(m)")
            }
        }
        if let first = order.first, let low, !(low < b.key(at: first)) {
            throw fail("first key \(b.key(at: first)) not above the previous parent key \(low)")
        }
        if let last = order.last, b.key(at: last) > high {
            throw fail("last key \(b.key(at: last)) above the parent key \(high)")
        }
        if level == 0 {
            sum.items += order.count
            sum.leaves += 1
            sum.leafItemBytes += b.totalItemBytes
            return
        }
        if rightSpine, let last = order.last, b.key(at: last) != .max {
            throw fail("last parent key \(b.key(at: last)) on the right spine is not all ones")
        }
        if !rightSpine, let last = order.last, b.key(at: last) != high {
            // a parent's last key bounds the same keys as its own parent key
            throw fail("last parent key \(b.key(at: last)) differs from its parent key \(high)")
        }
        var prev = low
        for (j, o) in order.enumerated() {
            let k = b.key(at: o)
            try checkBlock(
                b.childRef(at: o), level: level - 1, isRoot: false, low: prev, high: k,
                rightSpine: rightSpine && j == order.count - 1, &sum)
            prev = k
        }
    }
}
