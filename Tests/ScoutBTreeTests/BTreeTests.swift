import ScoutBTree
import ScoutFormat
import ScoutTestSupport
import Testing


func testKey(_ i: Int) -> Key { Key(zone: KeyZone.fs, first: UInt64(i / 16), type: KeyType.inode, second: UInt64(i % 16)) }
func testValue(_ i: Int, _ len: Int) -> [UInt8] { (0..<len).map { UInt8(truncatingIfNeeded: i &* 31 &+ $0) } }

@Suite struct BTreeTests {
    let store = MemoryBlockStore()
    var tree: BTree<MemoryBlockStore> { BTree(store: store) }
    var checker: BTreeChecker<MemoryBlockStore> { BTreeChecker(store: store) }

    @Test func emptyTree() throws {
        var root = BTreeRoot()
        #expect(try tree.lookup(root, testKey(1)) == nil)
        #expect(try tree.next(root, .zero) == nil)
        #expect(try tree.prev(root, .max) == nil)
        #expect(throws: BTreeError.notFound) { try tree.delete(&root, testKey(1)) }
        #expect(throws: BTreeError.notFound) { try tree.update(&root, testKey(1), [1]) }
        try checker.check(root)
    }

    @Test func insertLookupUpdateDelete() throws {
        var root = BTreeRoot()
        try tree.insert(&root, testKey(5), [1, 2, 3], seq: 7, flags: Format.itemFlagDeletion)
        #expect(root.height == 1)
        #expect(try tree.lookup(root, testKey(5)) == BTreeItem(key: testKey(5), seq: 7, flags: 1, value: [1, 2, 3]))
        #expect(throws: BTreeError.exists) { try tree.insert(&root, testKey(5), []) }
        #expect(throws: BTreeError.valueTooLarge) { try tree.insert(&root, testKey(6), [UInt8](repeating: 0, count: 897)) }
        try tree.insert(&root, testKey(6), [UInt8](repeating: 9, count: 896))
        try tree.update(&root, testKey(5), [4])
        #expect(try tree.lookup(root, testKey(5)) == BTreeItem(key: testKey(5), seq: 7, flags: 1, value: [4]))
        try tree.update(&root, testKey(5), [5], seq: 8, flags: 0)
        #expect(try tree.lookup(root, testKey(5)) == BTreeItem(key: testKey(5), seq: 8, flags: 0, value: [5]))
        try tree.force(&root, testKey(7), [7], seq: 3)
        try tree.force(&root, testKey(5), [], seq: 4)
        #expect(try tree.lookup(root, testKey(5))?.value == [])
        #expect(try tree.next(root, testKey(5).incremented())?.key == testKey(6))
        #expect(try tree.prev(root, testKey(6).decremented())?.key == testKey(5))
        try checker.check(root)
        for i in [5, 6, 7] { try tree.delete(&root, testKey(i)) }
        #expect(root == BTreeRoot())
        #expect(store.liveBlknos.isEmpty)
    }

    /// Grows a tree to height 3 (descending inserts of maximal values leave half-full leaves;
    /// ascending ones would fill them), iterates it both ways, then deletes everything in
    /// random order so it shrinks back to empty without leaking a block.
    @Test func growToHeightThreeAndShrink() throws {
        var root = BTreeRoot()
        var rng = SplitMix64(seed: 42)
        let n = 32_000
        var val = [UInt8](repeating: 0xa5, count: Format.btreeMaxValueLength)
        func value(_ i: Int) -> [UInt8] {
            for b in 0..<4 { val[b] = UInt8(truncatingIfNeeded: i >> (8 * b)) }
            return val
        }
        for i in (0..<n).reversed() {
            try tree.insert(&root, testKey(i), value(i))
            if i % 5000 == 0 { store.commit() }
        }
        store.commit()
        #expect(root.height == 3)
        let c = BTreeChecker(store: store, minimumNonRootBytes: BTreeBlock.joinLowWatermark)
        let sum = try c.check(root)
        #expect(sum.items == n)
        #expect(sum.blknos == store.liveBlknos)

        var cur = try tree.cursor(root, seek: .zero)
        var i = 0
        while cur.isValid {
            #expect(cur.key == testKey(i))
            if i % 1000 == 0 { #expect(cur.value == value(i)) }
            i += 1
            try cur.advance()
        }
        #expect(i == n)
        cur = try tree.cursor(root, seek: .max, forward: false)
        i = n
        while cur.isValid {
            i -= 1
            #expect(cur.key == testKey(i))
            try cur.retreat()
        }
        #expect(i == 0)
        var count = 0
        try tree.forEach(root, from: testKey(100), through: testKey(30_000)) { b, off in
            count += 1
            return b.key(at: off) != testKey(20_000)
        }
        #expect(count == 19_901)
        count = 0
        try tree.forEach(root, from: testKey(100), through: testKey(30_000), reverse: true) { _, _ in
            count += 1
            return true
        }
        #expect(count == 29_901)

        var order = Array(0..<n)
        order.shuffle(using: &rng)
        for (j, i) in order.enumerated() {
            try tree.delete(&root, testKey(i))
            if j % 4000 == 0 {
                store.commit()
                let s = try checker.check(root)
                #expect(s.items == n - j - 1)
                #expect(s.blknos == store.liveBlknos)
            }
        }
        store.commit()
        #expect(root == BTreeRoot())
        #expect(store.liveBlknos.isEmpty)
    }

    /// Writes copy on write: a root saved before a transaction still reads its old items.
    @Test func copyOnWriteKeepsOldRoot() throws {
        var root = BTreeRoot()
        for i in 0..<2000 { try tree.insert(&root, testKey(i), testValue(i, 100)) }
        store.commit()
        let old = root
        let dirtied = store.dirtiedCount
        try tree.update(&root, testKey(10), [1])
        #expect(store.dirtiedCount == dirtied + Int(root.height))
        try tree.update(&root, testKey(11), [1])
        #expect(store.dirtiedCount == dirtied + Int(root.height))  // same leaf: already dirty
        #expect(root != old)
        #expect(try tree.lookup(old, testKey(10))?.value == testValue(10, 100))
        #expect(try tree.lookup(root, testKey(10))?.value == [1])
        try checker.check(old)
        try checker.check(root)
    }

    @Test func storeErrorsPropagate() throws {
        var root = BTreeRoot()
        store.blockLimit = 1
        try tree.insert(&root, testKey(1), [])
        store.commit()
        store.blockLimit = 1
        #expect(throws: BTreeError.store(.noSpace)) { try tree.insert(&root, testKey(2), []) }
    }
}
