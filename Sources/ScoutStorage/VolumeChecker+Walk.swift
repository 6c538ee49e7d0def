import ScoutBTree
import ScoutFormat

/// One leaf item met by a `TreeCursor`.
struct LeafItem {
    var key: Key
    var seq: UInt64
    var flags: UInt8
    var value: [UInt8]
}

/// Walks one btree's leaf items in key order, reading each block once through the checker
/// (which marks it referenced and verifies it) and checking it as it goes: the block's own
/// structure (`BTreeChecker.checkBlockStructure`), its level, the key range its parent gives
/// it, and the parent keys. A block that fails is reported and its subtree skipped, and the
/// walk carries on with its siblings. Holds one block per level.
struct TreeCursor {
    unowned let checker: VolumeChecker
    let name: String
    let owner: UInt16

    struct Frame {
        let block: BTreeBlock
        let order: [Int]
        var index: Int
        let low: Key?
        let rightSpine: Bool
        /// The block, or one above it, was referenced before: it was checked and reported
        /// then, and is walked again only to account for what this tree holds.
        let duplicate: Bool
    }

    var stack: [Frame] = []
    /// Children whose parent key is below this were freed already (a freeing item's progress).
    var floor: Key?
    /// Blocks another tree referenced first are shared with it (a merge completion's copy of
    /// an fs-root subtree shares what it did not change): neither walked nor counted again.
    var stopAtReferenced = false
    /// The root is a subtree of a larger tree (a merge completion's copy of an fs-root parent):
    /// its last parent key is its parent's key in that tree, not all ones.
    var subtreeRoot = false

    init(
        checker: VolumeChecker, root: BTreeRoot, name: String, owner: UInt16, floor: Key? = nil, stopAtReferenced: Bool = false,
        subtreeRoot: Bool = false
    ) {
        self.checker = checker
        self.name = name
        self.owner = owner
        self.floor = floor
        self.stopAtReferenced = stopAtReferenced
        self.subtreeRoot = subtreeRoot
        if stopAtReferenced && checker.isReferenced(root.ref.blkno) { return }
        if root.height == 0 {
            if !root.ref.isNull { checker.report(.btree, "\(name): root of height 0 references meta block \(root.ref.blkno)") }
            return
        }
        if root.ref.isNull {
            checker.report(.btree, "\(name): root of height \(root.height) has a null reference")
            return
        }
        if Int(root.height) > Format.btreeMaxHeight {
            checker.report(.btree, "\(name): root height \(root.height) above \(Format.btreeMaxHeight)")
            return
        }
        checker.summary.trees += 1
        descend(root.ref, level: Int(root.height) - 1, isRoot: true, low: nil, high: .max, rightSpine: !subtreeRoot, duplicate: false)
    }

    mutating func descend(_ ref: BlockRef, level: Int, isRoot: Bool, low: Key?, high: Key, rightSpine: Bool, duplicate: Bool) {
        guard let buf = checker.readBlock(ref, magic: .btree, owner, followDuplicate: true, quiet: duplicate) else { return }
        let duplicate = duplicate || checker.lastReadWasDuplicate
        if !duplicate { checker.summary.btreeBlocks += 1 }
        let b = BTreeBlock(buf)
        let blkno = ref.blkno
        let checker = self.checker
        let name = self.name
        func fail(_ s: String) {
            if !duplicate { checker.report(.btree, "meta block \(blkno): \(name): \(s)") }
        }
        if Int(b.level) != level {
            fail("level \(b.level), expected \(level)")
            if !duplicate { checker.unreadable += 1 }
            return
        }
        let order: [Int]
        do {
            // blocks that mkfs wrote (seq 1, never copied since) have the original's AVL heights
            order = try BTreeChecker<MetaTransaction>.checkBlockStructure(b, blkno: blkno, acceptMkfsHeights: buf.header.seq == 1)
        } catch {
            var text = error.description
            if case .corrupt(let s) = error {
                let prefix = "blkno \(blkno): "
                text = s.hasPrefix(prefix) ? String(s.dropFirst(prefix.count)) : s
            }
            fail(text)
            // its items and children are unknown, as for an unreadable block
            if !duplicate { checker.unreadable += 1 }
            return
        }
        if !duplicate && checker.accountUsage && !checker.silent {
            checker.usage.addBTreeBlock(checker.usageClass(owner), b, order: order)
        }
        if !isRoot && order.isEmpty { fail("non-root block is empty") }
        if let first = order.first, let low, !(low < b.key(at: first)) {
            fail("first key \(b.key(at: first)) not above the previous parent key \(low)")
        }
        if let last = order.last, b.key(at: last) > high {
            fail("last key \(b.key(at: last)) above the parent key \(high)")
        }
        if level > 0, let last = order.last, !(isRoot && subtreeRoot) {
            let k = b.key(at: last)
            if rightSpine && k != .max { fail("last parent key \(k) on the right spine is not all ones") }
            if !rightSpine && k != high { fail("last parent key \(k) differs from its parent's key \(high)") }
        }
        stack.append(Frame(block: b, order: order, index: 0, low: low, rightSpine: rightSpine, duplicate: duplicate))
    }

    /// The next leaf item, nil at the end of the tree.
    mutating func next() -> LeafItem? {
        while let t = stack.indices.last {
            let f = stack[t]
            if f.index >= f.order.count {
                stack.removeLast()
                continue
            }
            let off = f.order[f.index]
            stack[t].index += 1
            let b = f.block
            if b.level == 0 {
                return LeafItem(key: b.key(at: off), seq: b.seq(at: off), flags: b.flags(at: off), value: b.value(at: off))
            }
            if let floor, b.key(at: off) < floor { continue }
            if stopAtReferenced && checker.isReferenced(b.childRef(at: off).blkno) { continue }
            let low = f.index == 0 ? f.low : b.key(at: f.order[f.index - 1])
            descend(
                b.childRef(at: off), level: Int(b.level) - 1, isRoot: false, low: low, high: b.key(at: off),
                rightSpine: f.rightSpine && f.index == f.order.count - 1, duplicate: f.duplicate)
        }
        return nil
    }
}

extension VolumeChecker {
    /// Walks a whole btree, passing each leaf item to `body`.
    func walkTree(
        _ root: BTreeRoot, name: String, _ o: UInt16, floor: Key? = nil, stopAtReferenced: Bool = false,
        subtreeRoot: Bool = false, _ body: (LeafItem) -> Void
    ) {
        var c = TreeCursor(
            checker: self, root: root, name: name, owner: o, floor: floor, stopAtReferenced: stopAtReferenced,
            subtreeRoot: subtreeRoot)
        while let it = c.next() { body(it) }
    }

}
