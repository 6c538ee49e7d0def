// Leaf fill of the btree under sequential and random workloads (issue 12: metadata per file).
//
// Sequential keys (inode numbers, readdir positions, index seqs) used to leave every leaf half
// full behind them, since each split moved half of a full leaf. A split for an insertion that
// appends to a run now moves everything below the key, so the leaves behind a run are full.
// Each workload here is replayed against a model, with the checker's invariants verified at
// every commit and the live blocks compared with the blocks the tree references.

import ScoutBTree
import ScoutFormat
import ScoutTestSupport
import Testing

@Suite struct BTreeFillTests {
    let store = MemoryBlockStore()
    var tree: BTree<MemoryBlockStore> { BTree(store: store) }
    var checker: BTreeChecker<MemoryBlockStore> { BTreeChecker(store: store) }

    /// The leaf fill that runs of sequential keys must reach (the last leaf of each run and
    /// the blocks that hold what lies past it excepted, by counting enough items).
    static let sequentialFillTarget = 0.9

    /// Inode-like keys: `first` is the number, as in the fs zone.
    static func inodeKey(_ ino: UInt64, type: UInt8 = KeyType.inode) -> Key {
        Key(zone: KeyZone.fs, first: ino, type: type)
    }

    static func value(_ i: UInt64, _ len: Int) -> [UInt8] {
        (0..<len).map { UInt8(truncatingIfNeeded: i &* 37 &+ UInt64($0)) }
    }

    /// Checks the tree and that it holds exactly `model`; returns the checker's summary.
    @discardableResult
    func verify(_ root: BTreeRoot, _ model: [Key: [UInt8]], _ what: String) throws -> BTreeChecker<MemoryBlockStore>.Summary {
        let sum = try checker.check(root)
        #expect(sum.items == model.count, "\(what): \(sum.items) items, model \(model.count)")
        #expect(sum.blknos == store.liveBlknos, "\(what): live blocks differ from the tree's")
        var seen = 0
        var ok = true
        try tree.forEach(root) { b, off in
            seen += 1
            if model[b.key(at: off)] != b.value(at: off) { ok = false }
            return ok
        }
        #expect(ok && seen == model.count, "\(what): contents differ from the model")
        return sum
    }

    /// Ascending inserts of fs-sized values (an inode's 168 bytes): the leaves are full, where
    /// halving splits leave them at about 50%.
    @Test func sequentialInsertsFillLeaves() throws {
        let sum = try insertAll(60_000, "ascending inserts") { Self.inodeKey(1000 + $0) }
        #expect(sum.leafFill >= Self.sequentialFillTarget, "leaf fill \(sum.leafFill) over \(sum.leaves) leaves")
    }

    /// Inserts `count` items of 168 bytes with the keys `key` gives, committing now and then,
    /// and verifies the tree against them.
    func insertAll(_ count: UInt64, _ what: String, key: (UInt64) -> Key) throws -> BTreeChecker<MemoryBlockStore>.Summary {
        var root = BTreeRoot()
        var model: [Key: [UInt8]] = [:]
        for i in UInt64(0)..<count {
            let k = key(i)
            let v = Self.value(i, 168)
            try tree.force(&root, k, v, seq: 1)
            model[k] = v
            if i % 7_000 == 0 { store.commit() }
        }
        store.commit()
        return try verify(root, model, what)
    }

    /// What a directory of new files does to a log tree: every commit appends to several runs
    /// at once (the meta_seq and data_seq index items, readdir positions, inodes and their
    /// backrefs past the directory) and scatters dirents by name hash. The runs' leaves fill,
    /// the random dirents' leaves fill as well as halving splits leave them.
    @Test func interleavedRunsAndHashedNamesFill() throws {
        var root = BTreeRoot()
        var model: [Key: [UInt8]] = [:]
        var rng = SplitMix64(seed: 12)
        let dir: UInt64 = 100
        var ino: UInt64 = 1000
        var runItems = 0
        var hashed = 0
        for commit in UInt64(1)...60 {
            var batch: [(Key, [UInt8])] = []
            for _ in 0..<500 {
                ino += 1
                let pos = ino
                batch.append((Key(zone: KeyZone.inodeIndex, type: KeyType.inodeIndexMetaSeq, second: commit, third: ino), []))
                batch.append((Key(zone: KeyZone.inodeIndex, type: KeyType.inodeIndexDataSeq, second: commit, third: ino), []))
                batch.append((Key(zone: KeyZone.fs, first: dir, type: KeyType.dirent, second: rng.next(), third: pos), Self.value(ino, 40)))
                batch.append((Key(zone: KeyZone.fs, first: dir, type: KeyType.readdir, second: pos), Self.value(ino, 40)))
                batch.append((Self.inodeKey(ino), Self.value(ino, 168)))
                batch.append((Self.inodeKey(ino, type: KeyType.linkBackref), Self.value(ino, 40)))
                runItems += 5
                hashed += 1
            }
            // a commit writes its dirty items in key order
            batch.sort { $0.0 < $1.0 }
            for (k, v) in batch {
                try tree.force(&root, k, v, seq: commit)
                model[k] = v
            }
            store.commit()
        }
        let sum = try verify(root, model, "interleaved runs")
        // 5/6 of the items (528 of 624 bytes a file) are in runs; the dirents alone (random
        // keys, halving splits) fill about 65-70%: about 88% in all, where halving gives 51%
        #expect(sum.leafFill >= 0.8, "leaf fill \(sum.leafFill) over \(sum.leaves) leaves")
        #expect(runItems + hashed == model.count)
    }

    /// Random keys keep halving splits: an append is only taken for a key that sits far closer
    /// to the item below it than to the one above, which random keys almost never do.
    @Test func randomInsertsKeepHalvingSplits() throws {
        var rng = SplitMix64(seed: 7)
        let sum = try insertAll(40_000, "random inserts") { _ in Key(zone: KeyZone.fs, first: rng.next(), type: KeyType.inode) }
        #expect(sum.leafFill > 0.6 && sum.leafFill < 0.8, "random fill \(sum.leafFill)")
    }

    /// A queue: ascending inserts while the oldest keys are deleted, and random deletes of a
    /// sequentially built tree down to nothing. Joins refill what appends and deletes leave.
    @Test func sequentialAndRandomDeletesAgainstModel() throws {
        var root = BTreeRoot()
        var model: [Key: [UInt8]] = [:]
        var rng = SplitMix64(seed: 99)
        var next: UInt64 = 0
        var oldest: UInt64 = 0
        for round in 0..<40 {
            for _ in 0..<(round < 20 ? 1_500 : 500) {
                let k = Self.inodeKey(next)
                let v = Self.value(next, Int(rng.next() % 300))
                try tree.insert(&root, k, v, seq: UInt64(round))
                model[k] = v
                next += 1
            }
            for _ in 0..<1_000 where oldest < next {
                try tree.delete(&root, Self.inodeKey(oldest))
                model[Self.inodeKey(oldest)] = nil
                oldest += 1
            }
            store.commit()
            try verify(root, model, "queue round \(round)")
        }
        var keys = Array(model.keys)
        keys.shuffle(using: &rng)
        for (j, k) in keys.enumerated() {
            try tree.delete(&root, k)
            model[k] = nil
            if j % 997 == 0 {
                store.commit()
                try verify(root, model, "random delete \(j)")
            }
        }
        store.commit()
        #expect(root == BTreeRoot())
        #expect(store.liveBlknos.isEmpty)
    }

    /// Random mixes of appends at several run ends, random inserts, updates that grow and
    /// shrink values, and deletes, checked after every commit.
    @Test(arguments: [UInt64(1), 2, 3]) func mixedWorkloadsMatchTheModel(seed: UInt64) throws {
        var root = BTreeRoot()
        var model: [Key: [UInt8]] = [:]
        var rng = SplitMix64(seed: seed)
        var runEnds: [UInt64] = [0, 1 << 20, 1 << 40]
        for op in 0..<30_000 {
            let r = rng.next() % 100
            let len = Int(rng.next() % 400)
            if r < 50 {
                let run = Int(rng.next() % UInt64(runEnds.count))
                runEnds[run] += 1
                let k = Self.inodeKey(runEnds[run])
                try tree.force(&root, k, Self.value(UInt64(op), len))
                model[k] = Self.value(UInt64(op), len)
            } else if r < 65 {
                let k = Self.inodeKey(rng.next() % (1 << 41))
                try tree.force(&root, k, Self.value(UInt64(op), len))
                model[k] = Self.value(UInt64(op), len)
            } else if r < 80, !model.isEmpty {
                let k = try #require(try tree.next(root, Self.inodeKey(rng.next() % (1 << 41))) ?? tree.next(root, .zero))
                try tree.update(&root, k.key, Self.value(UInt64(op), len))
                model[k.key] = Self.value(UInt64(op), len)
            } else if !model.isEmpty {
                let k = try #require(try tree.next(root, Self.inodeKey(rng.next() % (1 << 41))) ?? tree.next(root, .zero))
                try tree.delete(&root, k.key)
                model[k.key] = nil
            }
            if rng.next() % 500 == 0 {
                store.commit()
                try verify(root, model, "seed \(seed) op \(op)")
            }
        }
        store.commit()
        try verify(root, model, "seed \(seed) end")
    }

    /// Log merging writes a finalized log tree's items into the fs root in key order: new
    /// inodes past every existing one fill the fs root's leaves too.
    @Test func mergeOfAscendingItemsFillsTheRoot() throws {
        var fs = BTreeRoot()
        var model: [Key: [UInt8]] = [:]
        for i in UInt64(0)..<5_000 {
            try tree.insert(&fs, Self.inodeKey(i), Self.value(i, 168), seq: 1)
            model[Self.inodeKey(i)] = Self.value(i, 168)
        }
        store.commit()
        var next: UInt64 = 5_000
        for gen in UInt64(2)...6 {
            var log = BTreeRoot()
            for _ in 0..<10_000 {
                try tree.insert(&log, Self.inodeKey(next), Self.value(next &+ gen, 168), seq: gen)
                model[Self.inodeKey(next)] = Self.value(next &+ gen, 168)
                next += 1
            }
            store.commit()
            let r = try tree.merge(&fs, from: .zero, through: .max, inputs: [log])
            #expect(r.resume == nil && r.merged == 10_000)
            _ = try tree.freeBlocks(log, from: .zero, budget: .max)
            store.commit()
        }
        let sum = try verify(fs, model, "merged")
        #expect(sum.leafFill >= Self.sequentialFillTarget, "fs root leaf fill \(sum.leafFill) over \(sum.leaves) leaves")
    }

    @Test func keyDistanceBits() {
        let a = Key(zone: 16, first: 5, type: 4)
        #expect(KeyDistance.bitLength(a, a) == 0)
        #expect(KeyDistance.bitLength(a, Key(zone: 16, first: 5, type: 4, fourth: 1)) == 1)
        #expect(KeyDistance.bitLength(a, Key(zone: 16, first: 5, type: 4, third: 1)) == 9)
        #expect(KeyDistance.bitLength(a, Key(zone: 16, first: 5, type: 4, second: 1)) == 73)
        #expect(KeyDistance.bitLength(a, Key(zone: 16, first: 5, type: 5)) == 137)
        #expect(KeyDistance.bitLength(a, Key(zone: 16, first: 6, type: 4)) == 145)
        #expect(KeyDistance.bitLength(a, Key(zone: 17, first: 5, type: 4)) == 209)
        #expect(KeyDistance.bitLength(.zero, .max) == 216)
        // borrows across limbs: (6, type 0) - (5, type 20, max...) is small
        let b = Key(zone: 16, first: 5, type: 255, second: .max, third: .max, fourth: .max)
        #expect(KeyDistance.bitLength(b, Key(zone: 16, first: 6)) == 1)
    }
}
