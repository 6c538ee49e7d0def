import ScoutBTree
import ScoutFormat
import ScoutTestSupport
import Testing

@testable import ScoutFS

@Suite("The forest's merge of leaves from several trees")
struct ForestMergeTests {
    /// Random sorted leaves (shared keys, equal and different seqs, deletions) against a
    /// dictionary model: the newest version of each key wins, the first tree on a tie, and a
    /// deletion hides the key.
    @Test func mergeMatchesAModel() {
        var rng = SplitMix64(seed: 42)
        for round in 0..<300 {
            let trees = Int(rng.next() % 5) + 1
            var leaves: [[BTreeItem]] = []
            var model: [Key: BTreeItem] = [:]
            for _ in 0..<trees {
                var keys = Set<UInt64>()
                for _ in 0..<Int(rng.next() % 40) { keys.insert(rng.next() % 60) }
                let items = keys.sorted().map { k in
                    BTreeItem(
                        key: Key(zone: 4, type: 1, second: k), seq: rng.next() % 4,
                        flags: rng.next() % 5 == 0 ? Format.itemFlagDeletion : 0, value: [UInt8(truncatingIfNeeded: rng.next())])
                }
                for it in items where model[it.key].map({ $0.seq < it.seq }) ?? true { model[it.key] = it }
                leaves.append(items)
            }
            let from = Key(zone: 4, type: 1, second: rng.next() % 20)
            let through = Key(zone: 4, type: 1, second: 20 + rng.next() % 50)
            let want = model.values.filter { $0.key >= from && $0.key <= through && $0.flags & Format.itemFlagDeletion == 0 }
                .sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            let got = Forest.merge(leaves, from: from, through: through)
            #expect(got.map(\.0) == want.map(\.0), "round \(round)")
            #expect(got.map(\.1) == want.map(\.1), "round \(round)")
        }
    }
}
