import ScoutAlloc
import ScoutBTree
import ScoutBlockIO
import ScoutFormat
import ScoutTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import ScoutStorage

/// A crash at any write of a real workload leaves the last committed state intact: the super
/// reads, the tree passes the invariant checker and holds exactly the items of the last commit
/// that reached the super (the one before the crash, or the one in flight if its super landed),
/// and no block is both referenced and free.
@Suite struct CrashTests {
    static let fsid: UInt64 = 0xfeed_f00d
    static let metaSize: UInt64 = 128 << 20

    /// A fresh volume on an in-memory device.
    static func freshVolume() throws -> MemoryDevice {
        let meta = MemoryDevice(size: metaSize)
        let data = MemoryDevice(size: 256 << 20)
        var o = MkfsOptions(metaPath: "meta", dataPath: "data", slots: [0: InetAddr(ipv4: 0x7f00_0001, port: 42000)])
        o.allowSmallSize = true
        try Mkfs.format(meta: meta, data: data, o, now: Timespec(sec: 1), fsid: fsid, uuid: Array(repeating: 1, count: 16), out: { _ in }, err: { _ in })
        return meta
    }

    /// The workload: transactions that insert, update and delete items in the fs root and move
    /// metadata blocks through the meta extent allocator. Returns the model after each commit.
    static func workload(_ dev: any BlockDevice, transactions: Int, seed: UInt64) throws -> [[Key: [UInt8]]] {
        var rng = SplitMix64(seed: seed)
        let txn = try MetaTransaction(device: MetaDevice(device: dev, fsid: fsid, cacheBytes: 1 << 20), seqs: SplitMix64(seed: seed ^ 0x55))
        let tree = BTree(store: txn)
        let extents = ExtentAllocator(store: txn)
        // the model starts with what mkfs put in the fs root
        var model: [Key: [UInt8]] = [:]
        try tree.forEach(txn.superBlock.fsRoot) { leaf, off in
            model[leaf.key(at: off)] = leaf.value(at: off)
            return true
        }
        var models: [[Key: [UInt8]]] = [model]
        for t in 0..<transactions {
            for _ in 0..<(40 + Int(rng.next() % 80)) {
                let key = Key(zone: KeyZone.fs, first: 100 + rng.next() % 300, type: KeyType.xattr, second: rng.next() % 4)
                let len = Int(rng.next() % 200)
                let value = (0..<len).map { UInt8(truncatingIfNeeded: $0 &+ t) }
                if model[key] != nil && rng.next() % 3 == 0 {
                    try tree.delete(&txn.superBlock.fsRoot, key)
                    model[key] = nil
                } else {
                    try tree.force(&txn.superBlock.fsRoot, key, value, seq: UInt64(t + 1))
                    model[key] = value
                }
            }
            // exercise the extent allocator: move a few blocks from meta_alloc into avail and back
            if let e = try extents.allocate(&txn.superBlock.metaAlloc[0], count: 1 + rng.next() % 16) {
                txn.addAvail(e.start...e.end)
            }
            for b in txn.takeAvail(Int(rng.next() % 8)) {
                try extents.free(&txn.superBlock.metaAlloc[0], Extent(start: b, len: 1))
            }
            try txn.commit()
            models.append(model)
        }
        return models
    }

    /// Checks a volume after a crash and returns its fs root's items.
    static func check(_ dev: MemoryDevice) throws -> [Key: [UInt8]] {
        let txn = try MetaTransaction(device: MetaDevice(device: dev, fsid: fsid, cacheBytes: 1 << 20))
        let sb = txn.committed
        var checker = BTreeChecker(store: txn)
        checker.acceptMkfsHeights = true
        try checker.check(sb.fsRoot)
        var items: [Key: [UInt8]] = [:]
        let tree = BTree(store: txn)
        try tree.forEach(sb.fsRoot) { leaf, off in
            items[leaf.key(at: off)] = leaf.value(at: off)
            return true
        }
        // no block is both in use and free
        var used = Set<UInt64>()
        func claim(_ b: UInt64, _ what: String) {
            #expect(used.insert(b).inserted, "blkno \(b) (\(what)) is claimed twice")
        }
        for root in [sb.fsRoot, sb.metaAlloc[0].root, sb.metaAlloc[1].root, sb.dataAlloc.root] {
            for b in try checker.check(root).blknos { claim(b, "btree block") }
        }
        for head in sb.serverMetaAvail + sb.serverMetaFreed where !head.ref.isNull {
            let (blknos, blocks) = try AllocList.read(head, from: txn)
            for b in blocks { claim(b, "list block") }
            for b in blknos { claim(b, "listed free") }
        }
        let extents = ExtentAllocator(store: txn)
        for i in 0..<2 {
            for e in try extents.extents(sb.metaAlloc[i]) {
                for b in e.start...e.end { claim(b, "free extent") }
            }
        }
        // and `scoutfs check` agrees, lost blocks included (the fs root holds test items, not
        // a file system, so only blocks, btrees and allocators are checked)
        let volumeChecker = VolumeChecker(meta: dev, data: nil)
        volumeChecker.checkFileSystem = false
        let summary = volumeChecker.run()
        #expect(volumeChecker.problems.isEmpty, "check: \(volumeChecker.problems.map(\.message).joined(separator: "\n"))")
        #expect(summary.metaReferenced + summary.metaFree == summary.metaBlocks)
        return items
    }

    @Test func workloadCommitsAndReopens() throws {
        let dev = try Self.freshVolume()
        let models = try Self.workload(dev, transactions: 6, seed: 1)
        #expect(models.count == 7)
        #expect(try Self.check(dev) == models.last!)
    }

    /// Every write index of the workload, dropping that write and all later ones, and tearing it.
    @Test(arguments: [CrashingDevice.Mode.drop, .tear(bytes: 4096)])
    func crashAtEveryWrite(mode: CrashingDevice.Mode) throws {
        let base = try Self.freshVolume()
        // count the writes of a clean run
        let probe = CrashingDevice(base: base.snapshot(), crashAt: Int.max, mode: .drop)
        let models = try Self.workload(probe, transactions: 4, seed: 7)
        let total = probe.writeCount
        #expect(total >= 4 * 4, "a commit writes at least a btree block, a list block, the super and the fs root")
        for n in 0..<total {
            let crashed = CrashingDevice(base: base.snapshot(), crashAt: n, mode: mode)
            _ = try? Self.workload(crashed, transactions: 4, seed: 7)
            let items = try Self.check(crashed.base)
            // the state is one of the committed ones (or the state mkfs left)
            let ok = models.contains(items)
            #expect(ok, "crash at write \(n) of \(total) left a state that was never committed")
        }
    }
}


/// After a workload of transactions on a device file, `print` walks the volume without finding
/// a bad block and lists the items. Set SCOUT_KEEP_VOLUME=DIR to keep the files (to check them
/// with the original utility's print by hand).
@Suite struct WorkloadPrintTests {
    @Test func printedCleanAfterTransactions() throws {
        let keep = getenvString("SCOUT_KEEP_VOLUME")
        let dir = try keep ?? TempDir.make(prefix: "workload")
        defer { if keep == nil { TempDir.remove(dir) } }
        try TempDir.sparseFile(dir + "/meta.img", size: CrashTests.metaSize)
        try TempDir.sparseFile(dir + "/data.img", size: 256 << 20)
        let meta = try FileBlockDevice(path: dir + "/meta.img", writable: true)
        let data = try FileBlockDevice(path: dir + "/data.img", writable: true)
        var o = MkfsOptions(metaPath: "meta", dataPath: "data", slots: [0: InetAddr(ipv4: 0x7f00_0001, port: 42000)])
        o.allowSmallSize = true
        try Mkfs.format(meta: meta, data: data, o, now: Timespec(sec: 1), fsid: CrashTests.fsid, uuid: Array(repeating: 1, count: 16), out: { _ in }, err: { _ in })
        let models = try CrashTests.workload(meta, transactions: 8, seed: 3)
        var out = ""
        var diag = ""
        var printer = Printer(device: meta, output: out, diagnostics: diag)
        let outcome = printer.printVolume()
        out = printer.output
        diag = printer.diagnostics
        #expect(outcome.isClean, "print found problems: \(diag)")
        // leaf items print their key then their value; parent items their key then "ref blkno"
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false)
        let leafXattrs = zip(lines, lines.dropFirst()).filter { $0.0.hasPrefix("    16.") && $0.1.hasPrefix("    xattr:") }
        #expect(leafXattrs.count == models.last!.keys.filter { $0.type == KeyType.xattr }.count)
    }
}

func getenvString(_ name: String) -> String? {
    guard let p = getenv(name) else { return nil }
    return String(cString: p)
}
