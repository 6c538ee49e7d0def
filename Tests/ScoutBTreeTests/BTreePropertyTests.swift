// Randomized model tests of the btree.
//
// Every run replays random insert/update/force/delete/lookup/next/prev/iterate operations against
// a sorted model, runs the invariant checker after EVERY mutation and commits the copy-on-write
// transaction at random points. Value sizes range over 0...896 so blocks split, compact, join
// and the tree grows and shrinks all the time.
//
// Knobs (environment):
//   SCOUT_PROPERTY_OPS=N    operations per seed (default 6000)
//   SCOUT_PROPERTY_SEED=S   run only this seed (decimal or 0x-hex), e.g. to replay a failure
//
// Millions of operations, for example:
//   SCOUT_PROPERTY_OPS=1000000 swift test -c release --filter BTreePropertyTests
// A failure prints "seed S op N"; replay it with SCOUT_PROPERTY_SEED=S.

import ScoutBTree
import ScoutFormat
import ScoutTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

enum PropertyEnv {
    static func value(_ name: String) -> String? {
        guard let p = getenv(name) else { return nil }
        return String(cString: p)
    }
    static var ops: Int { value("SCOUT_PROPERTY_OPS").flatMap { Int($0) } ?? 6000 }
    static var seeds: [UInt64] {
        if let s = value("SCOUT_PROPERTY_SEED") {
            let v = s.hasPrefix("0x") ? UInt64(s.dropFirst(2), radix: 16) : UInt64(s)
            if let v { return [v] }
        }
        return [0x5c0f_0001, 0x5c0f_0002, 0x5c0f_0003, 0x5c0f_0004]
    }
}

/// A sorted model of the tree's contents.
struct Model {
    var keys: [Key] = []
    var items: [Key: BTreeItem] = [:]

    func index(_ k: Key) -> Int {
        var lo = 0, hi = keys.count
        while lo < hi {
            let m = (lo + hi) / 2
            if keys[m] < k { lo = m + 1 } else { hi = m }
        }
        return lo
    }
    mutating func set(_ it: BTreeItem) {
        if items[it.key] == nil { keys.insert(it.key, at: index(it.key)) }
        items[it.key] = it
    }
    mutating func remove(_ k: Key) {
        items[k] = nil
        keys.remove(at: index(k))
    }
    func next(_ k: Key) -> Key? {
        let i = index(k)
        return i < keys.count ? keys[i] : nil
    }
    func prev(_ k: Key) -> Key? {
        let i = index(k)
        if i < keys.count && keys[i] == k { return k }
        return i > 0 ? keys[i - 1] : nil
    }
}

struct PropertyFailure: Error, CustomStringConvertible {
    var description: String
}

@Suite struct BTreePropertyTests {
    static func run(seed: UInt64, ops: Int) throws {
        var rng = SplitMix64(seed: seed)
        let store = MemoryBlockStore()
        let tree = BTree(store: store)
        let checker = BTreeChecker(store: store)
        var root = BTreeRoot()
        var model = Model()
        // the key space breathes: sometimes dense, sometimes sparse, so the tree grows and shrinks
        var keySpace = 200
        var insertBias = 50
        var nextCommit = 1 + rng.below(60)
        var maxHeight: UInt8 = 0

        func fail(_ op: Int, _ what: String) -> PropertyFailure {
            PropertyFailure(description: "seed \(seed) op \(op): \(what) (replay with SCOUT_PROPERTY_SEED=\(seed))")
        }
        func randomLength() -> Int {
            switch rng.below(10) {
            case 0: return 0
            case 1...3: return rng.below(64)
            case 4: return Format.btreeMaxValueLength
            default: return rng.below(Format.btreeMaxValueLength + 1)
            }
        }
        func randomValue(_ op: Int) -> [UInt8] {
            let len = randomLength()
            let b = UInt8(truncatingIfNeeded: op)
            return (0..<len).map { UInt8(truncatingIfNeeded: $0) &+ b }
        }

        for op in 0..<ops {
            if op % 500 == 0 {
                keySpace = [60, 200, 800, 1500][rng.below(4)]
                insertBias = [20, 50, 80][rng.below(3)]
            }
            let k = testKey(rng.below(keySpace))
            let roll = rng.below(100)
            var mutated = true
            do {
                if roll < insertBias / 2 {
                    let v = randomValue(op)
                    let seq = rng.next() % 1000
                    do {
                        try tree.insert(&root, k, v, seq: seq, flags: UInt8(seq & 1))
                        if model.items[k] != nil { throw fail(op, "insert of existing \(k) succeeded") }
                        model.set(BTreeItem(key: k, seq: seq, flags: UInt8(seq & 1), value: v))
                    } catch BTreeError.exists {
                        if model.items[k] == nil { throw fail(op, "insert of new \(k) said exists") }
                    }
                } else if roll < insertBias {
                    let v = randomValue(op)
                    try tree.force(&root, k, v, seq: 5, flags: 0)
                    model.set(BTreeItem(key: k, seq: 5, flags: 0, value: v))
                } else if roll < insertBias + 15 {
                    let v = randomValue(op)
                    do {
                        try tree.update(&root, k, v)
                        guard var it = model.items[k] else { throw fail(op, "update of missing \(k) succeeded") }
                        it.value = v
                        model.set(it)
                    } catch BTreeError.notFound {
                        if model.items[k] != nil { throw fail(op, "update of present \(k) said not found") }
                    }
                } else if roll < 90 {
                    // delete, preferring present keys so the tree really shrinks
                    let dk = (!model.keys.isEmpty && rng.below(4) != 0) ? model.keys[rng.below(model.keys.count)] : k
                    do {
                        try tree.delete(&root, dk)
                        if model.items[dk] == nil { throw fail(op, "delete of missing \(dk) succeeded") }
                        model.remove(dk)
                    } catch BTreeError.notFound {
                        if model.items[dk] != nil { throw fail(op, "delete of present \(dk) said not found") }
                    }
                } else {
                    mutated = false
                    let got = try tree.lookup(root, k)
                    if got != model.items[k] { throw fail(op, "lookup \(k): \(String(describing: got?.key))") }
                    let q = rng.below(2) == 0 ? k.incremented() : k
                    if try tree.next(root, q)?.key != model.next(q) { throw fail(op, "next \(q)") }
                    if try tree.prev(root, q)?.key != model.prev(q) { throw fail(op, "prev \(q)") }
                    if rng.below(10) == 0 {
                        // a full ordered walk through the cursor, both ways
                        var c = try tree.cursor(root, seek: .zero)
                        var i = 0
                        while c.isValid {
                            if i >= model.keys.count || c.item != model.items[model.keys[i]] {
                                throw fail(op, "cursor item \(i)")
                            }
                            i += 1
                            try c.advance()
                        }
                        if i != model.keys.count { throw fail(op, "cursor saw \(i) of \(model.keys.count)") }
                        c = try tree.cursor(root, seek: .max, forward: false)
                        while c.isValid {
                            i -= 1
                            if c.key != model.keys[i] { throw fail(op, "reverse cursor item \(i)") }
                            try c.retreat()
                        }
                        if i != 0 { throw fail(op, "reverse cursor stopped at \(i)") }
                    }
                }
            } catch let e as PropertyFailure {
                throw e
            } catch {
                throw fail(op, "unexpected error \(error)")
            }

            maxHeight = max(maxHeight, root.height)
            if mutated {
                do {
                    let sum = try checker.check(root)
                    if sum.items != model.keys.count { throw fail(op, "tree has \(sum.items) items, model \(model.keys.count)") }
                    if sum.blknos != store.liveBlknos {
                        throw fail(op, "live blocks \(store.liveBlknos.count) != tree blocks \(sum.blocks)")
                    }
                } catch let e as BTreeError {
                    throw fail(op, "checker: \(e)")
                }
            }
            nextCommit -= 1
            if nextCommit == 0 {
                store.commit()
                nextCommit = 1 + rng.below(60)
            }
        }
        if ops >= 2000 && maxHeight < 2 { throw PropertyFailure(description: "seed \(seed): tree never split") }
    }

    @Test(arguments: PropertyEnv.seeds)
    func randomOperationsMatchModel(seed: UInt64) throws {
        do {
            try Self.run(seed: seed, ops: PropertyEnv.ops)
        } catch {
            Issue.record("\(error)")
        }
    }
}
