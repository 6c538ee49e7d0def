// Log merging's btree operations on trees tall enough for subtrees: random input trees merged
// into a 3-level tree the way the server and clients split the work (parent subtrees, partial
// merges, splices, rebalances), checked against a model after every splice.
//
//   SCOUT_MERGE_SEED=S   run only this seed (a failure prints "seed S")

import ScoutBTree
import ScoutFormat
import ScoutTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct BTreeMergeTests {
    static func key(_ i: UInt64) -> Key { Key(zone: KeyZone.fs, first: i, type: 4) }

    static func value(_ i: UInt64, _ gen: UInt64, len: Int) -> [UInt8] {
        (0..<len).map { UInt8(truncatingIfNeeded: i &* 31 &+ gen &+ UInt64($0)) }
    }

    static var seeds: [UInt64] {
        if let p = getenv("SCOUT_MERGE_SEED"), let s = UInt64(String(cString: p)) { return [s] }
        return [1]
    }

    static func totl(_ total: Int64, _ count: Int64) -> [UInt8] {
        XattrTotlValue(total: UInt64(bitPattern: total), count: UInt64(bitPattern: count)).encoded()
    }

    /// `.totl.` items are deltas: merging sums every input's version into the root's item
    /// (newest seq kept), and a sum of nothing removes the item; other keys stay newest-wins.
    @Test func deltaItemsAreSummedAndNullSumsDropped() throws {
        let store = MemoryBlockStore()
        let tree = BTree(store: store)
        let a = Key(zone: KeyZone.xattrTotl, first: 1, second: 2, third: 3)
        let b = Key(zone: KeyZone.xattrTotl, first: 4, second: 5, third: 6)
        let c = Key(zone: KeyZone.xattrTotl, first: 7, second: 8, third: 9)
        let d = Key(zone: KeyZone.xattrTotl, first: 9, second: 9, third: 9)
        var fs = BTreeRoot()
        try tree.force(&fs, a, Self.totl(100, 2), seq: 5)
        try tree.force(&fs, b, Self.totl(7, 1), seq: 5)
        var in1 = BTreeRoot()
        var in2 = BTreeRoot()
        try tree.force(&in1, a, Self.totl(10, 1), seq: 8)
        try tree.force(&in2, a, Self.totl(-30, -1), seq: 9)
        try tree.force(&in1, b, Self.totl(-7, -1), seq: 8)  // b goes to nothing
        try tree.force(&in1, c, Self.totl(3, 1), seq: 8)  // inputs cancel: nothing written
        try tree.force(&in2, c, Self.totl(-3, -1), seq: 9)
        try tree.force(&in2, d, Self.totl(4, 1), seq: 9)  // created
        let e = Key(zone: KeyZone.xattrTotl, first: 10, second: 0, third: 0)
        try tree.force(&in1, e, Self.totl(0, 0), seq: 8)  // a null item a commit left: nothing
        store.commit()
        let r = try tree.merge(&fs, from: .zero, through: .max, inputs: [in1, in2])
        #expect(r.resume == nil)
        let ia = try #require(try tree.lookup(fs, a))
        #expect(ia.value == Self.totl(80, 2) && ia.seq == 9)
        #expect(try tree.lookup(fs, b) == nil)
        #expect(try tree.lookup(fs, c) == nil)
        #expect(try tree.lookup(fs, d)?.value == Self.totl(4, 1))
        #expect(try tree.lookup(fs, e) == nil)
    }

    @Test(arguments: seeds) func subtreeMergesMatchTheModel(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let store = MemoryBlockStore()
        let tree = BTree(store: store)
        var fs = BTreeRoot()
        var model: [Key: BTreeItem] = [:]
        // a base tree of 3 levels: ~40k items of 700 bytes
        let base: UInt64 = 40_000
        // descending, so that the leaves are half full and the tree has 3 levels
        for i in (0..<base).reversed() {
            let it = BTreeItem(key: Self.key(i * 2), seq: 1, value: Self.value(i, 0, len: 700))
            try tree.insert(&fs, it.key, it.value, seq: 1)
            model[it.key] = it
        }
        store.commit()
        #expect(fs.height >= 3, "seed \(seed): base tree of height \(fs.height)")

        // three finalized input trees: updates, new keys, deletions (some of absent keys)
        var inputs: [BTreeRoot] = []
        var newest: [Key: BTreeItem] = [:]
        for t in 0..<3 {
            var r = BTreeRoot()
            for _ in 0..<6000 {
                let k = Self.key(rng.next() % (base * 2 + 500))
                let seq = UInt64(10 + t)
                let del = rng.next() % 3 == 0
                let it = BTreeItem(
                    key: k, seq: seq, flags: del ? Format.itemFlagDeletion : 0,
                    value: del ? [] : Self.value(k.first, seq, len: Int(rng.next() % 800)))
                try tree.force(&r, it.key, it.value, seq: it.seq, flags: it.flags)
                if let cur = newest[k], cur.seq > seq { continue }
                newest[k] = it
            }
            inputs.append(r)
        }
        store.commit()
        for (k, it) in newest {
            if it.flags & Format.itemFlagDeletion != 0 { model[k] = nil } else { model[k] = it }
        }

        // the server's loop: ranges of keys, each request one parent's subtree
        var ranges: [(Key, Key)] = [(.zero, .max)]
        var requests = 0
        var subtreeRequests = 0
        var partials = 0
        while let (start, end) = ranges.popLast() {
            requests += 1
            #expect(requests < 100_000, "seed \(seed): merge does not converge")
            if requests >= 100_000 { break }
            // the next logged key in the range
            var next: Key?
            for r in inputs {
                if let it = try tree.next(r, start), it.key <= end, next == nil || it.key < next! { next = it.key }
            }
            guard let next else { continue }
            let sub = try tree.parentRoot(fs, next)
            let par = try tree.parentRange(fs, next)
            let reqEnd = min(end, par.end)
            if end > reqEnd { ranges.append((reqEnd.incremented(), end)) }
            let isSub = fs.height > 2
            if isSub { subtreeRequests += 1 }
            // the client: a copy-on-write copy of the subtree, stopped early at random
            var copy = sub
            let budget = Int(rng.next() % 400) + 1
            var done = 0
            let result = try BTree(store: store, subtree: isSub).merge(&copy, from: next, through: reqEnd, inputs: inputs) {
                done += 1
                return done > budget
            }
            // the server: splice, and for a partial merge rebalance and put the rest back
            try tree.setParent(&fs, next, copy)
            if let resume = result.resume {
                partials += 1
                try tree.rebalance(&fs, next)
                ranges.append((resume, reqEnd))
            }
            store.commit()
        }
        #expect(subtreeRequests > 0 && partials > 0, "seed \(seed): \(subtreeRequests) subtree requests, \(partials) partial")

        // the tree is valid and holds exactly the model
        let summary = try BTreeChecker(store: store).check(fs)
        #expect(summary.items == model.count, "seed \(seed)")
        var seen = 0
        try tree.forEach(fs) { b, off in
            let k = b.key(at: off)
            if let m = model[k], m.value == b.value(at: off), m.seq == b.seq(at: off) { seen += 1 }
            return true
        }
        #expect(seen == model.count, "seed \(seed)")

        // freeing the inputs frees every block they hold, in bounded steps
        let before = store.liveBlknos.count
        var expected = 0
        for r in inputs { expected += try BTreeChecker(store: store).check(r).blocks }
        for r in inputs {
            var k: Key? = .zero
            var steps = 0
            while let from = k {
                k = try tree.freeBlocks(r, from: from, budget: 16)
                steps += 1
                #expect(steps < 10_000)
                if steps >= 10_000 { break }
            }
        }
        store.commit()
        #expect(before - store.liveBlknos.count == expected, "seed \(seed)")
    }
}
