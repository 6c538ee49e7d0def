import Glibc
import ScoutAlloc
import ScoutBTree
import ScoutBlockIO
@testable import ScoutFS
import ScoutFormat
import ScoutStorage
import ScoutTestSupport
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)

/// Reads that meet blocks freed and reused since their roots were sampled.
@Suite("Forest stale reads")
struct ForestStaleTests {
    /// Roots sampled after each of many commits of one mount: the server frees the blocks of
    /// each old logs_root and hands them out again, so early samples point at reused blocks.
    static func history(_ tv: TestVolume) throws -> (MetaDevice, LocalLink, [ForestRoots], current: ForestRoots) {
        let (_, md, link, vol) = try LogMergeTests.mount(tv)
        var samples: [ForestRoots] = []
        for i in 0..<40 {
            _ = try vol.makeNode(parent: Format.rootIno, name: Array("f\(i)".utf8), mode: UInt32(S_IFREG) | 0o644, caller: me)
            try vol.sync()
            samples.append(try link.getRoots())
        }
        return (md, link, samples, try link.getRoots())
    }

    static let rootKey = Key(zone: KeyZone.fs, first: Format.rootIno, type: KeyType.inode)

    /// Whether a read under `roots` alone finds a stale block: with the same roots answered
    /// again, the retry gives up with EIO.
    static func isStale(_ roots: ForestRoots, _ md: MetaDevice, _ link: LocalLink) -> Bool {
        link.rootsQueue = [roots, roots]
        defer { link.rootsQueue = [] }
        do {
            _ = try Forest(device: md, link: link).read(rootKey, lock: LockRange.covering(rootKey))
            return false
        } catch {
            return error.errno == FSError.EIO && error.message.contains("stale")
        }
    }

    /// A loaded reader may get stale roots from two or more samples in a row, while other
    /// mounts keep committing: it retries while the roots change (the original's
    /// `scoutfs_block_check_stale`), where it used to give up after the second (lstat EIO on
    /// two mounts at once in the fuzzer). The same stale roots twice are still EIO.
    @Test func aReadRetriesWhileTheRootsChangeAndFailsOnlyWhenTheyRepeat() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (md, link, samples, current) = try Self.history(tv)
        let stale = samples.dropLast(4).filter { Self.isStale($0, md, link) }
        try #require(stale.count >= 3, "the history left too few stale samples (\(stale.count) of \(samples.count))")
        #expect(!Self.isStale(current, md, link))

        // three different stale samples, then the server's own roots: the read succeeds
        link.rootsQueue = Array(stale.prefix(3))
        let forest = Forest(device: md, link: link)
        let got = try forest.read(Self.rootKey, lock: LockRange.covering(Self.rootKey))
        #expect(got.items.contains { $0.0 == Self.rootKey })
        #expect(link.rootsQueue.isEmpty)

        // the same stale roots twice in a row: corruption
        link.rootsQueue = [stale[0], stale[0]]
        #expect(throws: FSError.self) { try Forest(device: md, link: link).read(Self.rootKey, lock: LockRange.covering(Self.rootKey)) }
        link.rootsQueue = []
    }
    /// A block freed and reused as another kind of block (the server lays its alloc lists out
    /// in blocks freed by its last commit) fails its magic check before its seq check: that
    /// is a stale block too, and the read retries under new roots. It used to be EIO at once:
    /// LOOKUPs on a fresh remount failed with "bad magic 8a93ac83, expected e597f96d" while
    /// the first log merge's commits freed and reused blocks (issue 13).
    @Test func aBlockReusedAsAnotherKindIsStaleAndTheReadRetries() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (_, md, link, vol) = try LogMergeTests.mount(tv)
        _ = try vol.makeNode(parent: Format.rootIno, name: Array("a".utf8), mode: UInt32(S_IFREG) | 0o644, caller: me)
        try vol.sync()
        let good = try link.getRoots()
        // roots sampled while a merge's fs root was current, whose root block has since been
        // freed and rewritten as an alloc list block (here: a block of this mount's pool)
        let blkno = try #require(vol.txn.avail.first)
        let (_, blocks) = AllocList.build([1, 2, 3], at: [blkno], fsid: md.fsid, seqs: [0x5eed])
        try md.write(large: blocks[0])
        var old = good
        old.fsRoot = BTreeRoot(ref: BlockRef(blkno: blkno, seq: 0x01d5eed), height: 1)

        link.rootsQueue = [old, good]
        let got = try Forest(device: md, link: link).read(Self.rootKey, lock: LockRange.covering(Self.rootKey))
        #expect(got.items.contains { $0.0 == Self.rootKey })
        #expect(link.rootsQueue.isEmpty)

        // under the same roots twice it is corruption, named with what the block held
        link.rootsQueue = [old, old]
        let e = #expect(throws: FSError.self) { try Forest(device: md, link: link).read(Self.rootKey, lock: LockRange.covering(Self.rootKey)) }
        #expect(e?.errno == FSError.EIO)
        #expect(e?.message.contains("bad magic") == true, "\(String(describing: e))")
        link.rootsQueue = []
    }
}
