import ScoutBTree
import ScoutFormat
import ScoutTestSupport
import Testing

@Suite struct BTreePathCounterTests {
    /// A committed tree of `n` items with 100-byte values (several leaves, a parent level).
    static func tree(_ n: Int) throws -> (MemoryBlockStore, BTreeRoot) {
        let store = MemoryBlockStore()
        var root = BTreeRoot()
        for i in 0..<n { try BTree(store: store).insert(&root, testKey(i * 2), testValue(i, 100)) }
        store.commit()
        return (store, root)
    }

    static func count(_ store: MemoryBlockStore, _ root: BTreeRoot, _ keys: [Key]) throws -> Int {
        var c = BTreePathCounter(tree: BTree(store: store), root: root)
        for k in keys { try c.add(k) }
        return c.blocks
    }

    @Test func countsTheBlocksAnUpdateCopies() throws {
        var (store, root) = try Self.tree(20000)
        #expect(root.height >= 2)
        var rng = SplitMix64(seed: 7)
        // scattered keys, clustered keys, one key, every key
        let scattered = (0..<300).map { _ in Int(rng.next() % 20000) * 2 }
        let clustered = Array(stride(from: 5000, to: 5600, by: 2))
        for picks in [scattered, clustered, [7776], Array(stride(from: 0, to: 40000, by: 2))] {
            let keys = Set(picks).sorted().map(testKey)
            let blocks = try Self.count(store, root, keys)
            // rewriting the same keys with same-sized values splits nothing: exactly the
            // counted blocks are copied
            var r = root
            let before = store.dirtiedCount
            for k in keys { try BTree(store: store).force(&r, k, testValue(1, 100)) }
            #expect(store.dirtiedCount - before == blocks, "\(keys.count) keys")
            store.commit()
            // the old blocks were freed by the commit: go on with the new tree
            root = r
        }
        // clustered keys share their leaves
        #expect(try Self.count(store, root, clustered.map(testKey)) < 20)
        #expect(try Self.count(store, root, []) == 0)
        #expect(try Self.count(MemoryBlockStore(), BTreeRoot(), [testKey(1)]) == 0)
    }

    @Test func boundsTheBlocksInsertsTake() throws {
        let (store, root) = try Self.tree(20000)
        // new keys between the existing ones, 200 bytes each: copies plus splits stay within
        // twice the counted paths plus a block per quarter block of new bytes (the mount's bound)
        let keys = stride(from: 10001, to: 14001, by: 2).map(testKey)
        let blocks = try Self.count(store, root, keys)
        var r = root
        let before = store.dirtiedCount
        for k in keys { try BTree(store: store).force(&r, k, testValue(3, 200)) }
        let bytes = keys.count * (200 + BTreeBlock.itemSize)
        #expect(store.dirtiedCount - before <= 2 * blocks + bytes / (Format.largeBlockSize / 4) + 2)
        #expect(store.dirtiedCount - before > blocks)
    }
}
