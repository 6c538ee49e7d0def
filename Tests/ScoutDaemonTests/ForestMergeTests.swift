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
    static func totl(_ total: Int64, _ count: Int64) -> [UInt8] {
        XattrTotlValue(total: UInt64(bitPattern: total), count: UInt64(bitPattern: count)).encoded()
    }

    /// Totals resolve as the original's totl merging: merge-input deltas count unless the fs
    /// root's item is as new (already merged into it), other log trees always count.
    @Test func deltaItemsResolveByMergeState() {
        let k = Key(zone: KeyZone.xattrTotl, first: 1, second: 2, third: 3)
        func read(_ fs: BTreeItem?, _ inputs: [BTreeItem], _ logs: [BTreeItem]) -> [UInt8]? {
            let leaves = [fs.map { [$0] } ?? []] + inputs.map { [$0] } + logs.map { [$0] }
            let sources: [TotlMerging.Source] = [.fsRoot] + inputs.map { _ in .mergeInput } + logs.map { _ in .log }
            return Forest.merge(leaves, from: k, through: k, sources: sources).first?.1
        }
        let input = BTreeItem(key: k, seq: 10, value: Self.totl(5, 1))
        let log = BTreeItem(key: k, seq: 12, value: Self.totl(1, 1))
        // not merged yet: fs item older than the input
        #expect(read(BTreeItem(key: k, seq: 4, value: Self.totl(100, 3)), [input], [log]) == Self.totl(106, 5))
        // merged (partially spliced): the fs item carries the input's seq, the input is not counted again
        #expect(read(BTreeItem(key: k, seq: 10, value: Self.totl(105, 4)), [input], [log]) == Self.totl(106, 5))
        // no fs item: a creating input counts; one whose merge removed the item does not
        #expect(read(nil, [input], []) == Self.totl(5, 1))
        #expect(read(nil, [BTreeItem(key: k, seq: 10, value: Self.totl(-5, -1))], []) == nil)
        // a log tree's delta always counts; a sum of nothing is no item
        #expect(read(nil, [], [BTreeItem(key: k, seq: 12, value: Self.totl(-5, -1))]) == Self.totl(-5, -1))
        #expect(read(BTreeItem(key: k, seq: 4, value: Self.totl(5, 1)), [], [BTreeItem(key: k, seq: 12, value: Self.totl(-5, -1))]) == nil)
    }

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
