// The AVL tree that orders the items of a btree block.
//
// Design note. The original indexes the dense item array of a btree block with an AVL tree
// whose links live inside each item (`struct scoutfs_avl_node`: parent, left, right as u16
// offsets relative to the block's `item_root` field at byte 32, then a height byte and a pad
// byte). Every node stores its full height (not a 2-bit balance), which the checker uses to
// verify the tree. Insertion walks up from the new node's parent recomputing heights and
// rotating any node whose children's heights differ by more than one; deletion of a node with
// two children first swaps it with its in-order successor and then does the same walk. We
// reproduce those steps exactly (same rotations in the same order) so that a sequence of
// operations leaves the same links and heights in the block as the original would.
//
// Internally every function here works with absolute item offsets (`Int`, 0 meaning none) and
// converts at the boundary to the stored relative form.

extension BTreeBlock {
    // Field offsets inside an item.
    @usableFromInline static let fParent = 0
    @usableFromInline static let fLeft = 2
    @usableFromInline static let fRight = 4
    @usableFromInline static let fHeight = 6

    /// Reads an AVL link of the node at `off` as an absolute item offset (0 for none).
    @inlinable
    func link(_ off: Int, _ field: Int) -> Int {
        let r = Int(buffer.u16(off + field))
        return r == 0 ? 0 : r + Self.avlRootOffset
    }

    @inlinable
    func setLink(_ off: Int, _ field: Int, _ to: Int) {
        buffer.setU16(off + field, to == 0 ? 0 : UInt16(truncatingIfNeeded: to - Self.avlRootOffset))
    }

    /// The root item's absolute offset, 0 when the block is empty.
    @inlinable
    public var rootItem: Int {
        let r = Int(buffer.u16(Self.avlRootOffset))
        return r == 0 ? 0 : r + Self.avlRootOffset
    }

    @inlinable
    func setRootItem(_ off: Int) {
        buffer.setU16(Self.avlRootOffset, off == 0 ? 0 : UInt16(truncatingIfNeeded: off - Self.avlRootOffset))
    }

    /// The AVL parent of the item at `off` (absolute offset, 0 for none).
    @inlinable public func avlParent(_ off: Int) -> Int { link(off, Self.fParent) }
    /// The AVL left child of the item at `off` (absolute offset, 0 for none).
    @inlinable public func avlLeft(_ off: Int) -> Int { link(off, Self.fLeft) }
    /// The AVL right child of the item at `off` (absolute offset, 0 for none).
    @inlinable public func avlRight(_ off: Int) -> Int { link(off, Self.fRight) }
    /// The stored AVL height of the item at `off` (0 for `off == 0`).
    @inlinable public func avlHeight(_ off: Int) -> Int { off == 0 ? 0 : Int(buffer.u8(off + Self.fHeight)) }

    // MARK: ordered navigation

    /// The item with the smallest key, 0 when empty.
    public func firstItem() -> Int {
        var n = rootItem
        if n == 0 { return 0 }
        while case let l = avlLeft(n), l != 0 { n = l }
        return n
    }

    /// The item with the largest key, 0 when empty.
    public func lastItem() -> Int {
        var n = rootItem
        if n == 0 { return 0 }
        while case let r = avlRight(n), r != 0 { n = r }
        return n
    }

    /// The item after `off` in key order, 0 at the end.
    public func nextItem(_ off: Int) -> Int {
        var n = avlRight(off)
        if n != 0 {
            while case let l = avlLeft(n), l != 0 { n = l }
            return n
        }
        n = off
        var p = avlParent(n)
        while p != 0 && avlRight(p) == n {
            n = p
            p = avlParent(n)
        }
        return p
    }

    /// The item before `off` in key order, 0 at the start.
    public func prevItem(_ off: Int) -> Int {
        var n = avlLeft(off)
        if n != 0 {
            while case let r = avlRight(n), r != 0 { n = r }
            return n
        }
        n = off
        var p = avlParent(n)
        while p != 0 && avlLeft(p) == n {
            n = p
            p = avlParent(n)
        }
        return p
    }

    /// The outcome of a search down the AVL tree (`scoutfs_avl_search`).
    public struct AVLSearch: Sendable {
        /// The item with the key, 0 when absent.
        public var found: Int
        /// The last node visited: where a new item would be linked, 0 in an empty block.
        public var parent: Int
        /// The comparison of the key with `parent`'s key (-1 for an empty block).
        public var cmp: Int
        /// The smallest visited item greater than the key (0 for none).
        public var next: Int
        /// The largest visited item less than the key (0 for none).
        public var prev: Int

        @inlinable
        public init(found: Int, parent: Int, cmp: Int, next: Int, prev: Int) {
            self.found = found
            self.parent = parent
            self.cmp = cmp
            self.next = next
            self.prev = prev
        }
    }

    /// Searches the AVL tree for `key`, as the original does.
    @inlinable
    public func search(_ key: Key) -> AVLSearch {
        var s = AVLSearch(found: 0, parent: 0, cmp: -1, next: 0, prev: 0)
        var n = rootItem
        while n != 0 {
            let c = compare(key, itemAt: n)
            s.parent = n
            s.cmp = c
            if c < 0 {
                s.next = n
                n = avlLeft(n)
            } else if c > 0 {
                s.prev = n
                n = avlRight(n)
            } else {
                s.found = n
                return s
            }
        }
        return s
    }

    /// The first item with a key >= `key`, 0 when none.
    public func firstItem(atOrAfter key: Key) -> Int {
        let s = search(key)
        return s.found != 0 ? s.found : s.next
    }

    /// The last item with a key <= `key`, 0 when none.
    public func lastItem(atOrBefore key: Key) -> Int {
        let s = search(key)
        return s.found != 0 ? s.found : s.prev
    }

    // MARK: AVL mutation

    @usableFromInline
    func setHeight(_ n: Int) {
        let h = 1 + Swift.max(avlHeight(avlLeft(n)), avlHeight(avlRight(n)))
        buffer.setU8(n + Self.fHeight, UInt8(truncatingIfNeeded: h))
    }

    func balance(_ n: Int) -> Int {
        if n == 0 { return 0 }
        return avlHeight(avlRight(n)) - avlHeight(avlLeft(n))
    }

    /// Points `parent`'s link (or the root) that referenced `old` at `new`.
    func replaceChild(_ parent: Int, _ old: Int, _ new: Int) {
        if parent == 0 {
            setRootItem(new)
        } else if avlLeft(parent) == old {
            setLink(parent, Self.fLeft, new)
        } else {
            setLink(parent, Self.fRight, new)
        }
    }

    //      d                 b
    //     / \   right ->    / \
    //    b   e             a   d
    //   / \    <- left        / \
    //  a   c                 c   e
    func rotateRight(_ d: Int) {
        let gpa = avlParent(d)
        let b = avlLeft(d)
        let c = avlRight(b)
        replaceChild(gpa, d, b)
        setLink(b, Self.fParent, gpa)
        setLink(b, Self.fRight, d)
        setLink(d, Self.fParent, b)
        setLink(d, Self.fLeft, c)
        if c != 0 { setLink(c, Self.fParent, d) }
        setHeight(d)
        setHeight(b)
    }

    func rotateLeft(_ b: Int) {
        let gpa = avlParent(b)
        let d = avlRight(b)
        let c = avlLeft(d)
        replaceChild(gpa, b, d)
        setLink(d, Self.fParent, gpa)
        setLink(d, Self.fLeft, b)
        setLink(b, Self.fParent, d)
        setLink(b, Self.fRight, c)
        if c != 0 { setLink(c, Self.fParent, b) }
        setHeight(b)
        setHeight(d)
    }

    /// Rebalances at `n` if needed and returns the root of its (possibly rotated) subtree.
    func rebalance(_ n: Int) -> Int {
        let bal = balance(n)
        if bal >= -1 && bal <= 1 { return n }
        if bal > 0 {
            let child = avlRight(n)
            if balance(child) < 0 { rotateRight(child) }
            rotateLeft(n)
        } else {
            let child = avlLeft(n)
            if balance(child) > 0 { rotateLeft(child) }
            rotateRight(n)
        }
        return avlParent(n)
    }

    func fixUpwards(from start: Int) {
        var p = start
        while p != 0 {
            setHeight(p)
            p = rebalance(p)
            p = avlParent(p)
        }
    }

    /// Links the node at `node` below `parent` on the side given by `cmp` and rebalances.
    func avlInsert(_ node: Int, parent: Int, cmp: Int) {
        setLink(node, Self.fParent, 0)
        setLink(node, Self.fLeft, 0)
        setLink(node, Self.fRight, 0)
        setHeight(node)
        buffer.setU8(node + 7, 0)
        if parent == 0 {
            setRootItem(node)
            return
        }
        if cmp < 0 {
            setLink(parent, Self.fLeft, node)
        } else {
            setLink(parent, Self.fRight, node)
        }
        setLink(node, Self.fParent, parent)
        fixUpwards(from: parent)
    }

    /// Exchanges the tree positions of `node` (which has two children) and its successor.
    func swapWithSuccessor(_ node: Int) {
        var succ = avlRight(node)
        while case let l = avlLeft(succ), l != 0 { succ = l }
        let succPar = avlParent(succ)
        let succRight = avlRight(succ)

        let parent = avlParent(node)
        setLink(succ, Self.fParent, parent)
        replaceChild(parent, node, succ)
        let left = avlLeft(node)
        setLink(succ, Self.fLeft, left)
        if left != 0 { setLink(left, Self.fParent, succ) }

        if succPar == node {
            setLink(succ, Self.fRight, node)
            setLink(node, Self.fParent, succ)
        } else {
            let right = avlRight(node)
            setLink(succ, Self.fRight, right)
            if right != 0 { setLink(right, Self.fParent, succ) }
            replaceChild(succPar, succ, node)
            setLink(node, Self.fParent, succPar)
        }

        setLink(node, Self.fRight, succRight)
        if succRight != 0 { setLink(succRight, Self.fParent, node) }
        setLink(node, Self.fLeft, 0)

        let hn = buffer.u8(node + Self.fHeight)
        buffer.setU8(node + Self.fHeight, buffer.u8(succ + Self.fHeight))
        buffer.setU8(succ + Self.fHeight, hn)
    }

    /// Unlinks `node` from the tree and rebalances.
    func avlDelete(_ node: Int) {
        if avlLeft(node) != 0 && avlRight(node) != 0 {
            swapWithSuccessor(node)
        }
        let parent = avlParent(node)
        let l = avlLeft(node)
        let child = l != 0 ? l : avlRight(node)
        replaceChild(parent, node, child)
        if child != 0 { setLink(child, Self.fParent, parent) }
        fixUpwards(from: parent)
    }

    /// Moves the node at `from` to `to` without changing its place in the tree.
    func avlRelocate(to: Int, from: Int) {
        let parent = avlParent(from)
        let left = avlLeft(from)
        let right = avlRight(from)
        replaceChild(parent, from, to)
        setLink(to, Self.fParent, parent)
        setLink(to, Self.fLeft, left)
        if left != 0 { setLink(left, Self.fParent, to) }
        setLink(to, Self.fRight, right)
        if right != 0 { setLink(right, Self.fParent, to) }
        buffer.setU8(to + Self.fHeight, buffer.u8(from + Self.fHeight))
    }
}

// MARK: normalizing blocks written by mkfs

extension BTreeBlock {
    /// Whether every stored height is the true height and every node is balanced.
    ///
    /// Blocks written by mkfs (the original's and ours, which copies it) link their few items as
    /// a chain with shifted heights; the original heals them lazily as later inserts recompute
    /// heights along their paths. `BTree` instead rebuilds such a block's AVL tree the first time
    /// it copies the block, so every block it writes passes the strict checks.
    public func avlIsBalanced() -> Bool {
        var ok = true
        var visited = 0
        func height(_ n: Int) -> Int {
            if n == 0 || !ok { return 0 }
            visited += 1
            if visited > nrItems {
                ok = false
                return 0
            }
            let lh = height(avlLeft(n))
            let rh = height(avlRight(n))
            if abs(lh - rh) > 1 { ok = false }
            let h = 1 + Swift.max(lh, rh)
            if avlHeight(n) != h { ok = false }
            return h
        }
        _ = height(rootItem)
        return ok && visited == nrItems
    }

    /// Relinks the items as a balanced AVL tree in the same key order, with true heights.
    public func rebuildAVL() {
        var order: [Int] = []
        order.reserveCapacity(nrItems)
        var n = firstItem()
        while n != 0 && order.count < nrItems {
            order.append(n)
            n = nextItem(n)
        }
        func build(_ lo: Int, _ hi: Int, parent: Int) -> (Int, Int) {
            if lo >= hi { return (0, 0) }
            let mid = (lo + hi) / 2
            let node = order[mid]
            let (l, lh) = build(lo, mid, parent: node)
            let (r, rh) = build(mid + 1, hi, parent: node)
            setLink(node, Self.fParent, parent)
            setLink(node, Self.fLeft, l)
            setLink(node, Self.fRight, r)
            let h = 1 + Swift.max(lh, rh)
            buffer.setU8(node + Self.fHeight, UInt8(h))
            return (node, h)
        }
        setRootItem(build(0, order.count, parent: 0).0)
    }
}
