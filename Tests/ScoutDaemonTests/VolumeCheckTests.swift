import Glibc
import ScoutBTree
import ScoutBlockIO
import ScoutFS
import ScoutFormat
import ScoutServer
import ScoutStorage
import ScoutTestSupport
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// `scoutfs check` (VolumeChecker): clean on volumes our code writes, after a clean unmount and
/// after a crash, and on the original's mkfs volumes; each kind of deliberate damage is found.
@Suite("Volume check")
struct VolumeCheckTests {
    /// What the populated volume holds, for the damage tests.
    struct Populated {
        let tv: TestVolume
        var dir: UInt64 = 0
        var file: UInt64 = 0
        var other: UInt64 = 0
        var sub: UInt64 = 0
    }

    /// A volume with directories, files with data, a hard link, a symlink, xattrs, renames and
    /// removals; unmounted cleanly, or left as a crash (committed, no farewell).
    static func populated(crash: Bool = false, open orphan: Bool = false) throws -> Populated {
        let tv = try TestVolume.make(metaSize: 1 << 30, dataSize: 1 << 30)
        var p = Populated(tv: tv)
        let root = Format.rootIno
        let (vol, _) = try tv.mount()
        let d = try vol.makeNode(parent: root, name: b("dir"), mode: UInt32(S_IFDIR) | 0o755, caller: me)
        p.dir = d.ino
        p.sub = try vol.makeNode(parent: d.ino, name: b("sub"), mode: UInt32(S_IFDIR) | 0o755, caller: me).ino
        let f = try vol.makeNode(parent: d.ino, name: b("file"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        p.file = f.ino
        _ = try vol.open(f.ino, truncate: false)
        _ = try [UInt8](repeating: 7, count: 200_000).withUnsafeBytes { try vol.write(f.ino, offset: 0, $0) }
        vol.release(f.ino)
        let g = try vol.makeNode(parent: root, name: b("other"), mode: UInt32(S_IFREG) | 0o600, caller: me)
        p.other = g.ino
        _ = try vol.open(g.ino, truncate: false)
        _ = try [UInt8](repeating: 9, count: 50_000).withUnsafeBytes { try vol.write(g.ino, offset: 8192, $0) }
        vol.release(g.ino)
        try vol.sync()
        _ = try vol.link(f.ino, newParent: root, newName: b("hard"))
        _ = try vol.makeNode(parent: root, name: b("link"), mode: UInt32(S_IFLNK) | 0o777, caller: me, symlink: b("dir/file"))
        try vol.setxattr(f.ino, name: b("user.small"), value: b("v"), flags: 0)
        try vol.setxattr(f.ino, name: b("user.big"), value: [UInt8](repeating: 3, count: 3000), flags: 0)
        for i in 0..<300 {
            _ = try vol.makeNode(parent: p.sub, name: b("entry-\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me)
            if i % 100 == 0 { try vol.sync() }
        }
        for i in stride(from: 0, to: 300, by: 4) { try vol.remove(parent: p.sub, name: b("entry-\(i)"), dir: false) }
        try vol.rename(parent: root, name: b("hard"), newParent: p.sub, newName: b("moved"), flags: [])
        _ = try vol.makeNode(parent: root, name: b("gone"), mode: UInt32(S_IFDIR) | 0o755, caller: me)
        try vol.remove(parent: root, name: b("gone"), dir: true)
        try vol.unmount()

        // a second mount, whose log tree holds newer versions and deletions of the first one's items
        let (vol2, _) = try tv.mount(rid: 0x5678)
        try vol2.remove(parent: p.sub, name: b("entry-1"), dir: false)
        try vol2.rename(parent: p.sub, name: b("entry-2"), newParent: root, newName: b("entry-2-moved"), flags: [])
        _ = try vol2.open(p.other, truncate: false)
        _ = try [UInt8](repeating: 1, count: 9000).withUnsafeBytes { try vol2.write(p.other, offset: 100_000, $0) }
        var s = SetAttr()
        s.size = 20_000
        _ = try vol2.setattr(p.other, s)
        vol2.release(p.other)
        _ = try vol2.makeNode(parent: p.sub, name: b("late"), mode: UInt32(S_IFDIR) | 0o700, caller: me)
        try vol2.removexattr(p.file, name: b("user.small"))
        try finish(vol2, crash: crash, orphan: orphan)
        return p
    }

    static func finish(_ vol: Volume, crash: Bool, orphan: Bool) throws {
        let root = Format.rootIno
        if orphan {
            let o = try vol.makeNode(parent: root, name: b("orphan"), mode: UInt32(S_IFREG) | 0o644, caller: me)
            _ = try vol.open(o.ino, truncate: false)
            _ = try b("held open").withUnsafeBytes { try vol.write(o.ino, offset: 0, $0) }
            try vol.remove(parent: root, name: b("orphan"), dir: false)
        }
        if crash {
            try vol.sync()
        } else {
            try vol.unmount()
        }
    }

    /// Runs the checker on the volume's files, opened read-only.
    static func check(_ tv: TestVolume) throws -> (CheckSummary, [CheckProblem]) {
        let meta = try FileBlockDevice(path: tv.meta, writable: false)
        let data = try FileBlockDevice(path: tv.data, writable: false)
        let c = VolumeChecker(meta: meta, data: data)
        let s = c.run()
        return (s, c.problems)
    }

    static func expectClean(_ tv: TestVolume, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let (s, problems) = try check(tv)
        #expect(problems.isEmpty, "\(problems.map(\.message).joined(separator: "\n"))", sourceLocation: sourceLocation)
        #expect(s.problems == 0, sourceLocation: sourceLocation)
        #expect(s.metaLost == 0 && s.dataLost == 0, sourceLocation: sourceLocation)
        #expect(s.metaReferenced + s.metaFree == s.metaBlocks, sourceLocation: sourceLocation)
        #expect(s.dataInFiles + s.dataFree == s.dataBlocks, sourceLocation: sourceLocation)
    }

    /// Checks the damaged volume and expects a problem of `kind` whose message holds `text`.
    static func expectFound(
        _ tv: TestVolume, _ kind: CheckProblem.Kind, _ text: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let (s, problems) = try check(tv)
        #expect(s.problems > 0, sourceLocation: sourceLocation)
        #expect(
            problems.contains { $0.kind == kind && $0.message.contains(text) },
            "no \(kind) problem with '\(text)' in:\n\(problems.map { "\($0.kind): \($0.message)" }.joined(separator: "\n"))",
            sourceLocation: sourceLocation)
    }

    // MARK: - damage, made offline through a server transaction

    /// Opens the volume's server transaction, lets `body` change it, and commits.
    static func damage(_ tv: TestVolume, _ body: (MetaTransaction) throws -> Void) throws {
        let dev = try FileBlockDevice(path: tv.meta, writable: true)
        let txn = try MetaTransaction(device: MetaDevice(device: dev, fsid: tv.fsid, cacheBytes: 0))
        try body(txn)
        try txn.commit()
    }

    /// A seq newer than any item the mounts wrote, so an item written with it wins the merge.
    static let newest: UInt64 = 1 << 40

    /// Writes an fs item (or, with `deletion`, hides one) in the fs root, newer than the log trees.
    static func putFS(_ tv: TestVolume, _ key: Key, _ value: [UInt8], deletion: Bool = false) throws {
        try damage(tv) { txn in
            try BTree(store: txn).force(&txn.superBlock.fsRoot, key, value, seq: newest, flags: deletion ? Format.itemFlagDeletion : 0)
            // the super's seq stays at or above every item's, as a server keeps it
            txn.superBlock.seq = max(txn.superBlock.seq, newest)
        }
    }

    /// The newest version of an fs item across the fs root and the log trees.
    static func readFS(_ tv: TestVolume, from key: Key, type: UInt8? = nil) throws -> BTreeItem? {
        let dev = try FileBlockDevice(path: tv.meta, writable: false)
        let txn = try MetaTransaction(device: MetaDevice(device: dev, fsid: tv.fsid, cacheBytes: 0))
        let tree = BTree(store: txn)
        var roots = [txn.superBlock.fsRoot]
        try tree.forEach(txn.superBlock.logsRoot) { blk, off in
            if let lt = try? LogTrees.decode(blk.value(at: off)) { roots.append(lt.itemRoot) }
            return true
        }
        var best: BTreeItem? = nil
        for r in roots {
            guard let it = try tree.next(r, key), it.key.zone == key.zone, it.key.first == key.first, it.key.type == (type ?? key.type) else { continue }
            if best == nil || it.key < best!.key || (it.key == best!.key && it.seq > best!.seq) { best = it }
        }
        return best
    }

    static func inodeKey(_ ino: UInt64) -> Key { Key(zone: KeyZone.fs, first: ino, type: KeyType.inode) }

    static func inode(_ tv: TestVolume, _ ino: UInt64) throws -> Inode {
        try Inode.decode(try #require(try readFS(tv, from: inodeKey(ino))).value)
    }

    // MARK: - clean volumes

    @Test func cleanAfterUnmount() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        try Self.expectClean(p.tv)
        // progress is reported through each phase
        let c = VolumeChecker(meta: try FileBlockDevice(path: p.tv.meta, writable: false), data: nil)
        var phases: [String] = []
        c.onProgress = { if phases.last != $0.phase { phases.append($0.phase) } }
        c.run()
        #expect(phases == ["allocators", "server trees", "log trees", "fs items", "accounting"])
        let (s, _) = try Self.check(p.tv)
        #expect(s.inodes > 200 && s.logTrees == 2 && s.dataInFiles > 0)
    }

    @Test func cleanAfterCrashWithAnOpenOrphan() throws {
        let p = try Self.populated(crash: true, open: true)
        defer { TempDir.remove(p.tv.dir) }
        try Self.expectClean(p.tv)
    }

    /// Offline, unwritten and moved extents, as the archive operations leave them.
    @Test func cleanAfterArchiveOperations() throws {
        let tv = try TestVolume.make(metaSize: 1 << 30, dataSize: 1 << 30)
        defer { TempDir.remove(tv.dir) }
        let bs = 4096
        let root = Format.rootIno
        let (vol, _) = try tv.mount()
        func file(_ name: String, blocks: Int) throws -> UInt64 {
            let ino = try vol.makeNode(parent: root, name: b(name), mode: UInt32(S_IFREG) | 0o644, caller: me).ino
            if blocks > 0 {
                _ = try [UInt8](repeating: 5, count: blocks * bs).withUnsafeBytes { try vol.write(ino, offset: 0, $0) }
            }
            return ino
        }
        let a = try file("a", blocks: 16)
        try vol.fallocate(a, mode: FallocMode.keepSize, offset: UInt64(16 * bs), length: UInt64(4 * bs))
        try vol.fallocate(a, mode: FallocMode.punchHole | FallocMode.keepSize, offset: UInt64(6 * bs), length: UInt64(2 * bs))
        var v = try vol.getAttrX(a).dataVersion
        try vol.release(a, offset: UInt64(2 * bs), length: UInt64(4 * bs), dataVersion: v)
        _ = try [UInt8](repeating: 6, count: bs).withUnsafeBytes { try vol.stage(a, dataVersion: v, offset: UInt64(3 * bs), $0) }
        try vol.punchOffline(a, offset: UInt64(4 * bs), length: UInt64(bs), dataVersion: v, flags: 0)
        try vol.sync(force: true)
        let src = try file("src", blocks: 3)
        let dst = try file("dst", blocks: 0)
        try vol.moveBlocks(from: src, fromOffset: 0, length: UInt64(3 * bs), to: dst, toOffset: UInt64(2 * bs), dataVersion: 0, stage: false)
        let off = try file("off", blocks: 0)
        var x = AttrX()
        x.mask = [.dataVersion, .size]
        x.dataVersion = 1
        x.size = UInt64(10 * bs)
        x.flags = AttrX.flagSizeOffline
        try vol.setAttrX(off, x)
        v = try vol.getAttrX(off).dataVersion
        _ = try [UInt8](repeating: 7, count: 2 * bs).withUnsafeBytes { try vol.stage(off, dataVersion: v, offset: UInt64(4 * bs), $0) }
        try vol.fallocate(src, mode: 0, offset: 0, length: UInt64(8 * bs))
        try vol.unmount()
        try Self.expectClean(tv)
        let (s, _) = try Self.check(tv)
        #expect(s.dataInFiles > 0)
    }

    /// Enough items for btrees of several levels in the log trees and the allocators.
    @Test func cleanWithTallTrees() throws {
        let tv = try TestVolume.make(metaSize: 1 << 30, dataSize: 1 << 30)
        defer { TempDir.remove(tv.dir) }
        let root = Format.rootIno
        var dirs: [UInt64] = []
        do {
            let (vol, _) = try tv.mount()
            for d in 0..<4 { dirs.append(try vol.makeNode(parent: root, name: b("d\(d)"), mode: UInt32(S_IFDIR) | 0o755, caller: me).ino) }
            for i in 0..<4000 {
                let f = try vol.makeNode(parent: dirs[i % 4], name: b("file-with-a-longer-name-\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me)
                if i % 3 == 0 {
                    _ = try vol.open(f.ino, truncate: false)
                    // every other block, so the data allocators fragment
                    for blk in stride(from: 0, to: 6, by: 2) {
                        _ = try [UInt8](repeating: UInt8(i & 0xff), count: 4096).withUnsafeBytes { try vol.write(f.ino, offset: UInt64(blk * 4096), $0) }
                    }
                    vol.release(f.ino)
                }
                if i % 1000 == 999 { try vol.sync() }
            }
            for i in stride(from: 0, to: 4000, by: 6) { try vol.remove(parent: dirs[i % 4], name: b("file-with-a-longer-name-\(i)"), dir: false) }
            try vol.unmount()
        }
        let (s, problems) = try Self.check(tv)
        #expect(problems.isEmpty, "\(problems.map(\.message).joined(separator: "\n"))")
        #expect(s.btreeBlocks > s.trees + 20, "\(s)")
        // the removed files were still known to the "kernel" (no forget): orphans, kept
        #expect(s.inodes == 5 + 4000)
    }

    @Test(arguments: Golden.names)
    func cleanOnTheOriginalsMkfs(_ name: String) throws {
        let dir = try Golden.unpack(name)
        defer { TempDir.remove(String(dir[..<(dir.lastIndex(of: "/") ?? dir.endIndex)])) }
        let meta = try FileBlockDevice(path: dir + "/meta.img", writable: false)
        let data = try FileBlockDevice(path: dir + "/data.img", writable: false)
        let c = VolumeChecker(meta: meta, data: data)
        let s = c.run()
        #expect(c.problems.isEmpty, "\(c.problems.map(\.message))")
        #expect(s.inodes == 1 && s.metaLost == 0 && s.dataLost == 0)
    }

    // MARK: - damage

    /// Random damage to the written metadata blocks, resealed so that the damage reaches the
    /// structure checks: the checker never traps, and finds something for most of it.
    /// `SCOUT_CHECK_FUZZ_SEED=N` picks the seed, `SCOUT_CHECK_FUZZ_ROUNDS=N` the rounds.
    @Test func randomDamageNeverTraps() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        let seed = getenv("SCOUT_CHECK_FUZZ_SEED").flatMap { UInt64(String(cString: $0)) } ?? 1
        var rng = SplitMix64(seed: seed)
        let dev = try FileBlockDevice(path: p.tv.meta, writable: true)
        let sb = try MetaDevice.readSuper(from: dev)
        // the referenced blocks (damage to a free one is rightly not seen)
        let clean = VolumeChecker(meta: try FileBlockDevice(path: p.tv.meta, writable: false), data: nil)
        clean.run()
        let written = (Format.metaDevStartBlkno..<sb.totalMetaBlocks).filter { clean.isReferenced($0) }
        try #require(written.count > 10)
        var found = 0
        let rounds = getenv("SCOUT_CHECK_FUZZ_ROUNDS").flatMap { Int(String(cString: $0)) } ?? 150
        for round in 0..<rounds {
            let blkno = written[Int(rng.next() % UInt64(written.count))]
            let at = blkno << UInt64(Format.largeShift)
            let original = BlockBuffer(size: Format.largeBlockSize)
            try dev.read(into: original, at: at)
            let damaged = BlockBuffer(copying: original)
            // a few bytes, mostly in the header and item array where the structure is
            for _ in 0..<(1 + rng.next() % 4) {
                let off = rng.next() % 2 == 0 ? Int(32 + rng.next() % 2048) : Int(32 + rng.next() % UInt64(Format.largeBlockSize - 32))
                damaged.setU8(off, UInt8(truncatingIfNeeded: rng.next()))
            }
            if rng.next() % 8 != 0 { damaged.seal() }
            try dev.write(damaged, at: at)
            let (s, problems) = try Self.check(p.tv)
            if !problems.isEmpty { found += 1 }
            #expect(s.problems == problems.count, "seed \(seed) round \(round)")
            try dev.write(original, at: at)
        }
        try dev.sync()
        // most damage is seen (some lands in unused bytes: free space, padding past the values)
        #expect(found > rounds / 2, "seed \(seed): only \(found) of \(rounds) damaged volumes had problems")
        try Self.expectClean(p.tv)
    }

    @Test func freedBlockStillReferenced() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        var blkno: UInt64 = 0
        try Self.damage(p.tv) { txn in
            blkno = txn.superBlock.logsRoot.ref.blkno
            txn.addFreed([blkno])
        }
        try Self.expectFound(p.tv, .referencedAndFree, "meta block \(blkno): referenced by logs_root")
    }

    @Test func lostBlock() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        var lost: [UInt64] = []
        try Self.damage(p.tv) { txn in lost = txn.takeAvail(1) }
        try Self.expectFound(p.tv, .lost, "meta block \(lost[0]): lost")
    }

    @Test func blockReferencedTwice() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        var blkno: UInt64 = 0
        try Self.damage(p.tv) { txn in
            txn.superBlock.srchRoot = txn.superBlock.mountedClients.height > 0 ? txn.superBlock.mountedClients : txn.superBlock.logsRoot
            blkno = txn.superBlock.srchRoot.ref.blkno
        }
        try Self.expectFound(p.tv, .referencedTwice, "meta block \(blkno): referenced twice")
        // the shared tree is walked for both owners, so nothing under it looks lost
        let (_, problems) = try Self.check(p.tv)
        #expect(Set(problems.map(\.kind)).isSubset(of: [.referencedTwice, .item]), "\(problems.map(\.message))")
        #expect(problems.filter { $0.kind == .referencedTwice }.count == 1, "\(problems.map(\.message))")
    }

    @Test func badChecksum() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        let dev = try FileBlockDevice(path: p.tv.meta, writable: true)
        let sb = try MetaDevice.readSuper(from: dev)
        let blkno = sb.logsRoot.ref.blkno
        let buf = BlockBuffer(size: Format.largeBlockSize)
        try dev.read(into: buf, at: blkno << UInt64(Format.largeShift))
        buf.setU8(Format.largeBlockSize - 1, buf.u8(Format.largeBlockSize - 1) ^ 0xff)
        try dev.write(buf, at: blkno << UInt64(Format.largeShift))
        try dev.sync()
        try Self.expectFound(p.tv, .badBlock, "meta block \(blkno): bad checksum")
    }

    @Test func blockFreeTwice() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        var blkno: UInt64 = 0
        try Self.damage(p.tv) { txn in
            // a block the server may allocate, also listed as freed by this transaction
            blkno = try #require(txn.avail.first)
            txn.addFreed([blkno])
        }
        try Self.expectFound(p.tv, .freeTwice, "meta block \(blkno): free twice (server_meta_avail[0], server_meta_freed[0])")
    }

    @Test func btreeKeysOutOfOrder() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        let dev = try FileBlockDevice(path: p.tv.meta, writable: true)
        let sb = try MetaDevice.readSuper(from: dev)
        let blkno = sb.logsRoot.ref.blkno
        let buf = BlockBuffer(size: Format.largeBlockSize)
        try dev.read(into: buf, at: blkno << UInt64(Format.largeShift))
        let blk = BTreeBlock(buf)
        let order = try BTreeChecker<MetaTransaction>.checkBlockStructure(blk, blkno: blkno)
        try #require(order.count == 2)
        // the second log tree's item gets the first one's key, and the block a valid checksum
        blk.setKey(at: order[1], blk.key(at: order[0]))
        buf.seal()
        try dev.write(buf, at: blkno << UInt64(Format.largeShift))
        try dev.sync()
        try Self.expectFound(p.tv, .btree, "meta block \(blkno): logs_root: ")
    }

    @Test func itemMissingFromItsBloomFilter() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        let dev = try FileBlockDevice(path: p.tv.meta, writable: true)
        let txn = try MetaTransaction(device: MetaDevice(device: dev, fsid: p.tv.fsid, cacheBytes: 0))
        var bloom = BlockRef()
        var rid: UInt64 = 0
        try BTree(store: txn).forEach(txn.superBlock.logsRoot) { blk, off in
            let lt = try! LogTrees.decode(blk.value(at: off))
            if bloom.isNull && !lt.bloomRef.isNull {
                bloom = lt.bloomRef
                rid = lt.rid
            }
            return true
        }
        try #require(!bloom.isNull)
        // every bit cleared, the block otherwise valid
        let buf = BlockBuffer(size: Format.largeBlockSize)
        try dev.read(into: buf, at: bloom.blkno << UInt64(Format.largeShift))
        buf.zero(BloomBlockHeader.encodedSize, Format.largeBlockSize - BloomBlockHeader.encodedSize)
        buf.setU64(32, 0)
        buf.seal()
        try dev.write(buf, at: bloom.blkno << UInt64(Format.largeShift))
        try dev.sync()
        try Self.expectFound(p.tv, .item, "log tree rid \(String(rid, radix: 16)) nr 1: item ")
        try Self.expectFound(p.tv, .item, "is not in its bloom filter (mounts never read it)")
    }

    @Test func allocatorTotalOff() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        try Self.damage(p.tv) { txn in txn.superBlock.dataAlloc.totalLen += 5 }
        try Self.expectFound(p.tv, .allocator, "data_alloc: total_len")
    }

    @Test func direntWithoutItsInode() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        try Self.putFS(p.tv, Self.inodeKey(p.other), [], deletion: true)
        try Self.expectFound(p.tv, .dirent, "points at ino \(p.other), which has no inode")
    }

    @Test func missingReaddirPartner() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        let name = b("ghost")
        let hash = Dirent.nameHash(name)
        let pos: UInt64 = 1 << 30
        let d = Dirent(ino: p.other, hash: hash, pos: pos, type: Dirent.DType.reg.rawValue, name: name).encoded()
        try Self.damage(p.tv) { txn in
            let tree = BTree(store: txn)
            try tree.force(&txn.superBlock.fsRoot, Key(zone: KeyZone.fs, first: p.dir, type: KeyType.dirent, second: hash, third: pos), d, seq: Self.newest)
            try tree.force(&txn.superBlock.fsRoot, Key(zone: KeyZone.fs, first: p.other, type: KeyType.linkBackref, second: p.dir, third: pos), d, seq: Self.newest)
            txn.superBlock.seq = max(txn.superBlock.seq, Self.newest)
        }
        try Self.expectFound(p.tv, .dirent, "dir \(p.dir): dirent 'ghost' (pos \(pos)) has no readdir item")
    }

    @Test func missingBackrefPartner() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        let name = b("ghost")
        let hash = Dirent.nameHash(name)
        let pos: UInt64 = 1 << 30
        let d = Dirent(ino: p.other, hash: hash, pos: pos, type: Dirent.DType.reg.rawValue, name: name).encoded()
        try Self.damage(p.tv) { txn in
            let tree = BTree(store: txn)
            try tree.force(&txn.superBlock.fsRoot, Key(zone: KeyZone.fs, first: p.dir, type: KeyType.dirent, second: hash, third: pos), d, seq: Self.newest)
            try tree.force(&txn.superBlock.fsRoot, Key(zone: KeyZone.fs, first: p.dir, type: KeyType.readdir, second: pos), d, seq: Self.newest)
            txn.superBlock.seq = max(txn.superBlock.seq, Self.newest)
        }
        try Self.expectFound(p.tv, .dirent, "ino \(p.other): no link backref for its dirent in dir \(p.dir) at pos \(pos)")
    }

    @Test func badLinkCount() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        var i = try Self.inode(p.tv, p.file)
        #expect(i.nlink == 2)
        i.nlink = 3
        try Self.putFS(p.tv, Self.inodeKey(p.file), i.encoded(version: 2))
        try Self.expectFound(p.tv, .linkCount, "inode \(p.file): nlink 3 but 2 backrefs")
    }

    @Test func badDirectoryLinkCount() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        var i = try Self.inode(p.tv, p.dir)
        i.nlink = 2
        try Self.putFS(p.tv, Self.inodeKey(p.dir), i.encoded(version: 2))
        try Self.expectFound(p.tv, .linkCount, "inode \(p.dir): nlink 2 but 1 subdirectories")
    }

    /// The first data extent item of `ino`.
    static func firstExtent(_ tv: TestVolume, _ ino: UInt64) throws -> (Key, DataExtentValue) {
        let it = try #require(try readFS(tv, from: Key(zone: KeyZone.fs, first: ino, type: KeyType.dataExtent)))
        return (it.key, try DataExtentValue.decode(it.value))
    }

    @Test func extentPastTheDataDevice() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        let (key, v) = try Self.firstExtent(p.tv, p.other)
        let sb = try MetaDevice.readSuper(from: try FileBlockDevice(path: p.tv.meta, writable: false))
        try Self.putFS(p.tv, key, DataExtentValue(blkno: sb.totalDataBlocks - 1, flags: v.flags).encoded())
        try Self.expectFound(p.tv, .extent, "(ino \(p.other) iblock \(key.second - (key.third - 1))): outside the data blocks")
    }

    @Test func overlappingExtents() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        let (_, fileExtent) = try Self.firstExtent(p.tv, p.file)
        let (key, v) = try Self.firstExtent(p.tv, p.other)
        try Self.putFS(p.tv, key, DataExtentValue(blkno: fileExtent.blkno, flags: v.flags).encoded())
        try Self.expectFound(p.tv, .extent, "overlap data blocks")
        // the blocks other's extent held are now in no file and not free
        try Self.expectFound(p.tv, .dataAccounting, "lost")
    }

    @Test func extentOverlappingFreeSpace() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        let (key, v) = try Self.firstExtent(p.tv, p.other)
        let sb = try MetaDevice.readSuper(from: try FileBlockDevice(path: p.tv.meta, writable: false))
        // the last data blocks are free in data_alloc
        try Self.putFS(p.tv, key, DataExtentValue(blkno: sb.totalDataBlocks - key.third, flags: v.flags).encoded())
        try Self.expectFound(p.tv, .extent, "free in data_alloc")
    }

    @Test func orphanWithLinks() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        try Self.putFS(p.tv, Key(zone: KeyZone.orphan, type: KeyType.orphan, second: p.other), [])
        try Self.expectFound(p.tv, .orphan, "orphan item for ino \(p.other): its inode has nlink 1")
    }

    @Test func seqIndexMismatch() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        let i = try Self.inode(p.tv, p.other)
        try Self.putFS(p.tv, Key(zone: KeyZone.inodeIndex, type: KeyType.inodeIndexMetaSeq, second: i.metaSeq, third: p.other), [], deletion: true)
        try Self.putFS(p.tv, Key(zone: KeyZone.inodeIndex, type: KeyType.inodeIndexMetaSeq, second: i.metaSeq + 1000, third: p.other), [])
        try Self.expectFound(p.tv, .seqIndex, "inode \(p.other): no meta_seq index item for its meta_seq \(i.metaSeq)")
        try Self.expectFound(p.tv, .seqIndex, "meta_seq index item seq \(i.metaSeq + 1000) ino \(p.other): the inode's meta_seq is \(i.metaSeq)")
    }

    @Test func directorySizeOff() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        var i = try Self.inode(p.tv, p.dir)
        i.size += 3
        try Self.putFS(p.tv, Self.inodeKey(p.dir), i.encoded(version: 2))
        try Self.expectFound(p.tv, .inode, "dir \(p.dir): size")
    }

    @Test func xattrPartMissing() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        // user.big: 3000 bytes in 4 parts; hide the second
        let hash = UInt64(FNV1a.hash32(b("user.big")))
        let first = try #require(try Self.readFS(p.tv, from: Key(zone: KeyZone.fs, first: p.file, type: KeyType.xattr, second: hash)))
        try #require(first.key.second == hash && first.flags == 0)
        var k = first.key
        k.fourth = 1
        try Self.putFS(p.tv, k, [], deletion: true)
        try Self.expectFound(p.tv, .item, "xattr item \(Key(zone: KeyZone.fs, first: p.file, type: KeyType.xattr, second: k.second, third: k.third, fourth: 2)): part 2 after 1 parts")
    }

    @Test func onlineBlocksOff() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        var i = try Self.inode(p.tv, p.other)
        i.onlineBlocks += 1
        try Self.putFS(p.tv, Self.inodeKey(p.other), i.encoded(version: 2))
        try Self.expectFound(p.tv, .inode, "inode \(p.other): online_blocks \(i.onlineBlocks) offline_blocks 0 but its extents hold \(i.onlineBlocks - 1) online")
    }

    @Test func itemNewerThanTheSuperBlock() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        let i = try Self.inode(p.tv, p.other)
        try Self.damage(p.tv) { txn in
            try BTree(store: txn).force(&txn.superBlock.fsRoot, Self.inodeKey(p.other), i.encoded(version: 2), seq: txn.superBlock.seq + 100)
        }
        try Self.expectFound(p.tv, .item, "item \(Self.inodeKey(p.other)): seq ")
    }

    @Test func undecodableItem() throws {
        let p = try Self.populated()
        defer { TempDir.remove(p.tv.dir) }
        try Self.putFS(p.tv, Self.inodeKey(p.other), [1, 2, 3])
        try Self.expectFound(p.tv, .item, "inode \(p.other): 3-byte inode value")
    }
}
