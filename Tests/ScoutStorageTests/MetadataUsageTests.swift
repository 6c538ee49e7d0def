import ScoutBTree
import ScoutBlockIO
import ScoutFormat
import ScoutTestSupport
import Testing

@testable import ScoutStorage

/// `scoutfs check -u`: the checker's accounting of where the metadata blocks go.
@Suite struct MetadataUsageTests {
    @Test func structureClassesDropMountsAndIndexes() {
        #expect(MetadataUsage.structureClass("log tree rid 0x1234 nr 3 meta_avail list block") == "log tree meta_avail list block")
        #expect(MetadataUsage.structureClass("log tree rid 0xab nr 12 items") == "log tree items")
        #expect(MetadataUsage.structureClass("meta_alloc[1] btree") == "meta_alloc[] btree")
        #expect(MetadataUsage.structureClass("srch file 32.4.1.0.0.0 input 2") == "srch file")
        #expect(MetadataUsage.structureClass("fs_root") == "fs_root")
    }

    /// Every referenced block is accounted to one structure, and the fs root's leaves, fill
    /// and items agree with the btree checker's walk.
    @Test func usageAccountsEveryReferencedBlock() throws {
        let dev = try CrashTests.freshVolume()
        let txn = try MetaTransaction(device: MetaDevice(device: dev, fsid: CrashTests.fsid, cacheBytes: 1 << 20))
        let tree = BTree(store: txn)
        let n: UInt64 = 3_000
        for ino in UInt64(1_000)..<(1_000 + n) {
            try tree.force(&txn.superBlock.fsRoot, Key(zone: KeyZone.fs, first: ino, type: KeyType.inode), [UInt8](repeating: 7, count: 168))
        }
        try txn.commit()
        var bc = BTreeChecker(store: txn)
        bc.acceptMkfsHeights = true
        let fs = try bc.check(txn.superBlock.fsRoot)

        let checker = VolumeChecker(meta: dev, data: nil)
        checker.checkFileSystem = false
        checker.accountUsage = true
        let summary = checker.run()
        #expect(checker.problems.isEmpty, "check: \(checker.problems.map(\.message).joined(separator: "\n"))")
        let u = checker.usage
        #expect(u.totalBlocks == Int(summary.metaReferenced))
        #expect(u.blocks["fs_root"] == fs.blocks)
        let t = try #require(u.trees["fs_root"])
        #expect(t.leaves == fs.leaves && t.leafItemBytes == fs.leafItemBytes)
        #expect(abs(t.leafFill - fs.leafFill) < 1e-9)
        let inodes = u.items[MetadataUsage.ItemClass(tree: "fs_root", zone: KeyZone.fs, type: KeyType.inode)]
        // mkfs's root inode is there too
        #expect(inodes?.count == Int(n) + 1)
        #expect(inodes?.bytes == (Int(n) + 1) * BTreeBlock.itemBytes(valueLength: 168))
        let lines = u.reportLines(perFile: Int(n))
        #expect(lines.contains { $0.hasPrefix("  fs_root: \(fs.leaves) leaves") })
        #expect(lines.contains { $0.hasPrefix("  fs_root: inode: \(n + 1) items") })
        #expect(lines.contains("  total: \(u.totalBlocks) blocks, \(MetadataUsage.fixed1(Double(u.totalBlocks * 64))) KiB, "
            + "\(MetadataUsage.fixed1(Double(u.totalBlocks * 65536) / Double(n))) bytes/file"))
    }

    @Test func oneDecimal() {
        #expect(MetadataUsage.fixed1(0) == "0.0")
        #expect(MetadataUsage.fixed1(12.34) == "12.3")
        #expect(MetadataUsage.fixed1(99.96) == "100.0")
    }
}
