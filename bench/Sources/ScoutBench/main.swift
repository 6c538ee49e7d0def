// Btree benchmarks: insert, lookup and ordered iteration of N items, with peak RSS.
//
// Each figure is also given as a ratio to a baseline measured in the same run: the same
// operations on a Swift `Dictionary` (inserts and lookups) and a sorted `Array` walk
// (iteration), so machine noise cancels out. Usage: ScoutBench [N ...] (default 1000000 10000000).
import ScoutBTree
import ScoutFormat
import ScoutTestSupport

#if canImport(Glibc)
import Glibc
#endif

func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func peakRSSMiB() -> Double {
    var ru = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &ru)
    return Double(ru.ru_maxrss) / 1024
}


func fmtRate(_ n: Int, _ secs: Double) -> String {
    let r = Double(n) / secs
    return r >= 1e6 ? "\(Int(r / 1e4) / 100).\(Int(r / 1e4) % 100 < 10 ? "0" : "")\(Int(r / 1e4) % 100) M/s" : "\(Int(r / 1e3)) k/s"
}

func ratio(_ a: Double, _ b: Double) -> String {
    let r = Int((a / b) * 1000)
    return "\(r / 1000).\(String(repeating: "0", count: 3 - String(r % 1000).count))\(r % 1000)"
}

let counts = CommandLine.arguments.dropFirst().compactMap { Int($0) }
let sizes = counts.isEmpty ? [1_000_000, 10_000_000] : counts
let valueLen = 16

print("| items | op | btree | baseline (Dictionary / sorted Array) | btree / baseline | peak RSS MiB |")
print("|---|---|---|---|---|---|")
for n in sizes {
    var rng = SplitMix64(seed: UInt64(n))
    let keys = (0..<n).map { _ in Key(zone: KeyZone.fs, first: rng.next(), type: KeyType.inode) }
    let value = [UInt8](repeating: 7, count: valueLen)

    // baseline
    var t = now()
    var dict: [Key: [UInt8]] = [:]
    dict.reserveCapacity(n)
    for k in keys { dict[k] = value }
    let baseInsert = now() - t
    t = now()
    var found = 0
    for k in keys where dict[k] != nil { found += 1 }
    let baseLookup = now() - t
    let sortedKeys = keys.sorted()
    t = now()
    var last = Key.zero
    for k in sortedKeys { if k < last { found -= 1 }; last = k }
    let baseIter = now() - t
    dict = [:]

    // btree, in an in-memory block store, committed every 100k inserts like transactions
    let store = MemoryBlockStore()
    let tree = BTree(store: store)
    var root = BTreeRoot()
    t = now()
    for (i, k) in keys.enumerated() {
        try tree.insert(&root, k, value, seq: 1)
        if i % 100_000 == 99_999 { store.commit() }
    }
    store.commit()
    let insert = now() - t
    t = now()
    var hits = 0
    for k in keys where try tree.lookup(root, k) != nil { hits += 1 }
    let lookup = now() - t
    precondition(hits == n, "lookups found \(hits) of \(n)")
    t = now()
    var walked = 0
    try tree.forEach(root) { _, _ in
        walked += 1
        return true
    }
    let iter = now() - t
    precondition(walked == n, "iteration saw \(walked) of \(n)")
    let rss = Int(peakRSSMiB())
    print("| \(n) | insert | \(fmtRate(n, insert)) | \(fmtRate(n, baseInsert)) | \(ratio(baseInsert, insert)) | \(rss) |")
    print("| \(n) | lookup | \(fmtRate(n, lookup)) | \(fmtRate(n, baseLookup)) | \(ratio(baseLookup, lookup)) | \(rss) |")
    print("| \(n) | ordered iteration | \(fmtRate(n, iter)) | \(fmtRate(n, baseIter)) | \(ratio(baseIter, iter)) | \(rss) |")
    _ = found
}
