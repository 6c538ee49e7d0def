import Glibc
import ScoutFS
import ScoutFUSE
import ScoutFormat
import ScoutServer
import ScoutTestSupport
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)
private let bs = 4096

/// The result of a closure run on a thread of its own.
private final class Background<T: Sendable>: @unchecked Sendable {
    // Invariant: `result` is only touched with `lock` held.
    private let lock = PThreadLock()
    private var result: Result<T, FSError>?

    init(_ body: @escaping @Sendable () throws -> T) {
        let rc = Threads.spawn(name: "archive-test") {
            let r: Result<T, FSError>
            do {
                r = .success(try body())
            } catch let e as FSError {
                r = .failure(e)
            } catch {
                r = .failure(FSError(-1, "\(error)"))
            }
            self.lock.withLock {
                self.result = r
                self.lock.broadcast()
            }
        }
        precondition(rc == 0)
    }

    var finished: Bool { lock.withLock { result != nil } }

    /// The result, or nil when the closure is still running after `seconds`.
    func wait(_ seconds: Double = 30) -> Result<T, FSError>? {
        let deadline = monotonicSeconds() + seconds
        return lock.withLock {
            while result == nil {
                let left = deadline - monotonicSeconds()
                if left <= 0 { break }
                lock.wait(seconds: left)
            }
            return result
        }
    }
}

/// Polls `cond` until it holds or `seconds` pass.
private func eventually(_ seconds: Double = 20, _ cond: () -> Bool) -> Bool {
    let deadline = monotonicSeconds() + seconds
    while !cond() {
        if monotonicSeconds() > deadline { return false }
        usleep(1000)
    }
    return true
}

/// Byte equality by memcmp (element-wise `==` is slow in debug builds).
private func same(_ a: [UInt8], _ b: ArraySlice<UInt8>) -> Bool {
    a.count == b.count && a.withUnsafeBytes { x in b.withUnsafeBytes { y in memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 } }
}

private func failure(_ r: Result<some Any, FSError>?) -> Int32? {
    guard let r else { return nil }
    if case .failure(let e) = r { return e.errno }
    return 0
}

private func errnoOf(_ body: () throws -> Void) -> Int32 {
    do {
        try body()
        return 0
    } catch let e as FSError {
        return e.errno
    } catch {
        return -1
    }
}

/// Hooks whose interrupt the test fires by hand.
private final class TestInterrupt: @unchecked Sendable {
    // Invariant: the vars are only touched with `lock` held.
    private let lock = PThreadLock()
    private var handler: (@Sendable () -> Void)?
    private var interrupted = false
    private var blocks = 0

    var hooks: DataWaitHooks {
        DataWaitHooks(
            willBlock: { self.lock.withLock { self.blocks += 1 } },
            onInterrupt: { h in
                let now = self.lock.withLock { () -> Bool in
                    self.handler = h
                    return self.interrupted
                }
                if now { h() }
            },
            isInterrupted: { self.lock.withLock { self.interrupted } })
    }

    var willBlockCalls: Int { lock.withLock { blocks } }

    func fire() {
        let h = lock.withLock { () -> (@Sendable () -> Void)? in
            interrupted = true
            return handler
        }
        h?()
    }
}

@Suite struct ArchiveVolumeTests {
    /// A mounted test volume with helpers for files.
    struct Fixture {
        let tv: TestVolume
        let vol: Volume

        init() throws {
            tv = try TestVolume.make()
            vol = try tv.mount().0
        }

        func cleanup() { TempDir.remove(tv.dir) }

        func file(_ name: String, _ contents: [UInt8] = []) throws -> UInt64 {
            let a = try vol.makeNode(parent: Format.rootIno, name: Array(name.utf8), mode: UInt32(S_IFREG) | 0o644, caller: me)
            if !contents.isEmpty { _ = try contents.withUnsafeBytes { try vol.write(a.ino, offset: 0, $0) } }
            return a.ino
        }

        func dir(_ name: String) throws -> UInt64 {
            try vol.makeNode(parent: Format.rootIno, name: Array(name.utf8), mode: UInt32(S_IFDIR) | 0o755, caller: me).ino
        }

        func dv(_ ino: UInt64) throws -> UInt64 { try vol.getAttrX(ino).dataVersion }

        func stage(_ ino: UInt64, _ bytes: [UInt8], at offset: Int = 0, dv: UInt64? = nil) throws -> Int {
            let v: UInt64
            if let dv { v = dv } else { v = try self.dv(ino) }
            let r = bytes.withUnsafeBytes { raw in Result { () throws(FSError) -> Int in try vol.stage(ino, dataVersion: v, offset: UInt64(offset), raw) } }
            return try r.get()
        }

        func waiters() -> [DataWaiterEntry] { vol.dataWaiting(afterIno: 0, afterIblock: 0, max: 1000) }
    }

    @Test func releaseThenReadWaitsAndStageFromAnotherThreadWakesIt() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let data = archiveBytes(16 * bs + 1000, seed: 1)
        let ino = try f.file("f", data)
        try f.vol.sync()
        let before = try f.vol.getAttrX(ino)
        let mtime = try f.vol.getattr(ino).mtime
        #expect(before.onlineBlocks == 17 && before.offlineBlocks == 0)
        try f.vol.release(ino, offset: 0, length: UInt64(17 * bs), dataVersion: before.dataVersion)
        let after = try f.vol.getAttrX(ino)
        #expect(after.onlineBlocks == 0 && after.offlineBlocks == 17)
        #expect(after.size == before.size && after.dataVersion == before.dataVersion && after.dataSeq == before.dataSeq)
        #expect(after.metaSeq != before.metaSeq)
        #expect(try f.vol.getattr(ino).mtime == mtime)

        let vol = f.vol
        let reader = Background { () throws in try vol.read(ino, offset: 0, size: data.count + 10) }
        #expect(eventually { f.waiters() == [DataWaiterEntry(ino: ino, iblock: 0, op: .read)] })
        usleep(50_000)
        #expect(!reader.finished)
        try f.vol.sync()
        let stager = Background { () throws in try data.withUnsafeBytes { try vol.stage(ino, dataVersion: before.dataVersion, offset: 0, $0) } }
        #expect(try stager.wait()?.get() == data.count)
        #expect(try reader.wait()?.get() == data)
        #expect(f.waiters().isEmpty)
        let staged = try f.vol.getAttrX(ino)
        #expect(staged.onlineBlocks == 17 && staged.offlineBlocks == 0)
        #expect(staged.dataVersion == before.dataVersion && staged.dataSeq == before.dataSeq && staged.size == before.size)
        #expect(try f.vol.getattr(ino).mtime == mtime)
        #expect(f.vol.counters.dataWaits >= 1)

        // a write changes data_version and data_seq
        try f.vol.sync()
        _ = try [UInt8(1)].withUnsafeBytes { try f.vol.write(ino, offset: 5, $0) }
        let written = try f.vol.getAttrX(ino)
        #expect(written.dataVersion == before.dataVersion + 1)
        #expect(written.dataSeq != before.dataSeq)
    }

    @Test func dataVersionMismatchIsESTALE() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let ino = try f.file("f", archiveBytes(4 * bs, seed: 2))
        let v = try f.dv(ino)
        #expect(errnoOf { try f.vol.release(ino, offset: 0, length: UInt64(bs), dataVersion: v + 1) } == FSError.ESTALE)
        try f.vol.release(ino, offset: 0, length: UInt64(4 * bs), dataVersion: v)
        #expect(errnoOf { _ = try f.stage(ino, [UInt8](repeating: 1, count: bs), dv: v + 1) } == FSError.ESTALE)
        #expect(errnoOf { try f.vol.punchOffline(ino, offset: 0, length: UInt64(bs), dataVersion: v + 1, flags: 0) } == FSError.ESTALE)
        let src = try f.file("src", archiveBytes(bs, seed: 3))
        #expect(
            errnoOf {
                try f.vol.moveBlocks(from: src, fromOffset: 0, length: UInt64(bs), to: ino, toOffset: 0, dataVersion: v + 1, stage: true)
            } == FSError.ESTALE)
        // nothing changed
        let a = try f.vol.getAttrX(ino)
        #expect(a.offlineBlocks == 4 && a.onlineBlocks == 0 && a.dataVersion == v)
        #expect(try f.vol.getAttrX(src).onlineBlocks == 1)
    }

    @Test func alignmentAndFileTypeErrors() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let ino = try f.file("f", archiveBytes(3 * bs + 100, seed: 4))
        let d = try f.dir("d")
        let v = try f.dv(ino)
        let EOVERFLOW: Int32 = 75
        // release
        #expect(errnoOf { try f.vol.release(ino, offset: 1, length: UInt64(bs), dataVersion: v) } == FSError.EINVAL)
        #expect(errnoOf { try f.vol.release(ino, offset: 0, length: 100, dataVersion: v) } == FSError.EINVAL)
        #expect(errnoOf { try f.vol.release(ino, offset: 0xffff_ffff_ffff_f000, length: 8192, dataVersion: v) } == FSError.EINVAL)
        #expect(errnoOf { try f.vol.release(ino, offset: 0xffff_ffff_ffff_f000, length: 4096, dataVersion: v) } == 0)
        #expect(errnoOf { try f.vol.release(d, offset: 0, length: UInt64(bs), dataVersion: 0) } == FSError.EINVAL)
        #expect(errnoOf { try f.vol.release(d, offset: 1, length: 0, dataVersion: 7) } == 0)
        // stage
        try f.vol.release(ino, offset: 0, length: UInt64(4 * bs), dataVersion: v)
        #expect(errnoOf { _ = try f.stage(ino, [UInt8](repeating: 1, count: bs), at: 100) } == FSError.EINVAL)
        #expect(errnoOf { _ = try f.stage(ino, [UInt8](repeating: 1, count: 100)) } == FSError.EINVAL)
        #expect(errnoOf { _ = try f.stage(ino, [UInt8](repeating: 1, count: 5 * bs)) } == FSError.EINVAL)
        #expect(errnoOf { _ = try f.stage(ino, [UInt8](repeating: 1, count: 4 * bs)) } == FSError.EINVAL)
        #expect(errnoOf { _ = try f.stage(ino, [UInt8](repeating: 1, count: 100), at: 3 * bs) } == 0)
        #expect(errnoOf { _ = try f.stage(d, [UInt8](repeating: 1, count: bs), dv: 0) } == FSError.EINVAL)
        #expect(try f.stage(ino, [], at: 0) == 0)
        // punch-offline
        #expect(errnoOf { try f.vol.punchOffline(ino, offset: 1, length: UInt64(bs), dataVersion: v, flags: 0) } == EOVERFLOW)
        #expect(errnoOf { try f.vol.punchOffline(ino, offset: 0, length: 10, dataVersion: v, flags: 0) } == EOVERFLOW)
        #expect(errnoOf { try f.vol.punchOffline(ino, offset: 0, length: UInt64(bs), dataVersion: v, flags: 1) } == FSError.EINVAL)
        #expect(errnoOf { try f.vol.punchOffline(d, offset: 0, length: UInt64(bs), dataVersion: 0, flags: 0) } == FSError.EINVAL)
        // move-blocks
        let src = try f.file("src", archiveBytes(2 * bs + 10, seed: 5))
        let dst = try f.file("dst")
        func mb(_ from: UInt64, _ fo: UInt64, _ len: Int, _ to: UInt64, _ toOff: Int) -> Int32 {
            errnoOf { try f.vol.moveBlocks(from: from, fromOffset: fo, length: UInt64(len), to: to, toOffset: UInt64(toOff), dataVersion: 0, stage: false) }
        }
        #expect(mb(src, 0, bs, src, 4 * bs) == FSError.EINVAL)
        #expect(mb(src, 1, bs, dst, 0) == FSError.EINVAL)
        #expect(mb(src, 0, bs, dst, 1) == FSError.EINVAL)
        #expect(mb(src, 0, 100, dst, 0) == FSError.EINVAL)
        #expect(mb(src, 0, bs, d, 0) == FSError.EISDIR)
        #expect(mb(src, 0xffff_ffff_ffff_f000, 8192, dst, 0) == EOVERFLOW)
        #expect(mb(src, 0, 0, dst, 1) == 0)
        // nothing moved
        #expect(try f.vol.getAttrX(src).onlineBlocks == 3)
        #expect(try f.vol.getAttrX(dst).onlineBlocks == 0)
    }

    @Test func releaseFreesBlocksSkipsOfflineAndSparseAndTruncatesPastSize() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let ino = try f.file("f", archiveBytes(8 * bs, seed: 6))
        // a hole at blocks 8..9, blocks 10..11 written, blocks 12..15 allocated past i_size
        _ = try archiveBytes(2 * bs, seed: 7).withUnsafeBytes { try f.vol.write(ino, offset: UInt64(10 * bs), $0) }
        try f.vol.fallocate(ino, mode: FallocMode.keepSize, offset: UInt64(12 * bs), length: UInt64(4 * bs))
        var v = try f.dv(ino)
        #expect(try f.vol.getAttrX(ino).onlineBlocks == 14)
        try f.vol.sync(force: true)
        let free0 = try f.vol.totals().freeDataBlocks

        try f.vol.release(ino, offset: UInt64(2 * bs), length: UInt64(2 * bs), dataVersion: v)
        var a = try f.vol.getAttrX(ino)
        #expect(a.onlineBlocks == 12 && a.offlineBlocks == 2)
        // again, and over the hole: offline and sparse blocks are skipped
        try f.vol.release(ino, offset: UInt64(2 * bs), length: UInt64(2 * bs), dataVersion: v)
        try f.vol.release(ino, offset: UInt64(8 * bs), length: UInt64(2 * bs), dataVersion: v)
        a = try f.vol.getAttrX(ino)
        #expect(a.onlineBlocks == 12 && a.offlineBlocks == 2)
        #expect(a.dataVersion == v && a.size == UInt64(12 * bs))
        try f.vol.sync(force: true)
        try f.vol.sync(force: true)
        let free1 = try f.vol.totals().freeDataBlocks
        #expect(free1 >= free0 + 2, "released blocks are free again: \(free0) → \(free1)")

        // releasing inside i_size leaves the blocks past it online, and so the file
        v = try f.dv(ino)
        try f.vol.release(ino, offset: 0, length: UInt64(12 * bs), dataVersion: v)
        a = try f.vol.getAttrX(ino)
        #expect(a.onlineBlocks == 4 && a.offlineBlocks == 10)
        // once no block is online, the (offline) blocks past i_size are truncated
        try f.vol.release(ino, offset: 0, length: UInt64(16 * bs), dataVersion: v)
        a = try f.vol.getAttrX(ino)
        #expect(a.onlineBlocks == 0)
        #expect(a.offlineBlocks == 10, "blocks past i_size were truncated")
        #expect(a.size == UInt64(12 * bs))
        try f.vol.sync(force: true)
        try f.vol.sync(force: true)
        let free2 = try f.vol.totals().freeDataBlocks
        #expect(free2 >= free1 + 12, "\(free1) → \(free2)")
        // the hole still reads as zeros without waiting, the released blocks wait
        #expect(try f.vol.read(ino, offset: UInt64(8 * bs), size: 2 * bs) == [UInt8](repeating: 0, count: 2 * bs))
    }

    @Test func stageOverOnlineBlocksOverwritesThemLikeTheOriginal() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let data = archiveBytes(3 * bs, seed: 8)
        let ino = try f.file("f", data)
        let v = try f.dv(ino)
        let other = archiveBytes(bs, seed: 9)
        // the original's staging write maps existing online blocks and writes them in place
        #expect(try f.stage(ino, other, at: bs) == bs)
        var expected = Array(data[0..<bs])
        expected += other
        expected += data[(2 * bs)...]
        #expect(try f.vol.read(ino, offset: 0, size: 3 * bs) == expected)
        let a = try f.vol.getAttrX(ino)
        #expect(a.dataVersion == v && a.onlineBlocks == 3 && a.offlineBlocks == 0)
    }

    @Test func punchOfflineMakesOfflineSparseAndRefusesOnline() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let data = archiveBytes(8 * bs, seed: 10)
        let ino = try f.file("f", data)
        let v = try f.dv(ino)
        try f.vol.release(ino, offset: 0, length: UInt64(4 * bs), dataVersion: v)
        // a reader of block 1 waits; punching wakes it and it reads zeros
        let vol = f.vol
        let reader = Background { () throws in try vol.read(ino, offset: UInt64(bs), size: bs) }
        #expect(eventually { f.waiters() == [DataWaiterEntry(ino: ino, iblock: 1, op: .read)] })
        // an online block in the range: EINVAL, and the offline blocks before it stay offline
        #expect(errnoOf { try f.vol.punchOffline(ino, offset: 0, length: UInt64(5 * bs), dataVersion: v, flags: 0) } == FSError.EINVAL)
        #expect(try f.vol.getAttrX(ino).offlineBlocks == 4)
        try f.vol.punchOffline(ino, offset: 0, length: UInt64(2 * bs), dataVersion: v, flags: 0)
        #expect(try reader.wait()?.get() == [UInt8](repeating: 0, count: bs))
        let a = try f.vol.getAttrX(ino)
        #expect(a.offlineBlocks == 2 && a.onlineBlocks == 4 && a.dataVersion == v && a.size == UInt64(8 * bs))
        // the punched blocks read as zeros at once; the rest still waits
        #expect(try f.vol.read(ino, offset: 0, size: 2 * bs) == [UInt8](repeating: 0, count: 2 * bs))
        #expect(try f.vol.read(ino, offset: UInt64(4 * bs), size: 4 * bs) == Array(data[(4 * bs)...]))
        let late = Background { () throws in try vol.read(ino, offset: UInt64(2 * bs), size: bs) }
        #expect(eventually { f.waiters() == [DataWaiterEntry(ino: ino, iblock: 2, op: .read)] })
        #expect(try f.stage(ino, Array(data[(2 * bs)..<(4 * bs)]), at: 2 * bs) == 2 * bs)
        #expect(try late.wait()?.get() == Array(data[(2 * bs)..<(3 * bs)]))
    }

    @Test func moveBlocksWithoutStage() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let data = archiveBytes(3 * bs + 100, seed: 11)
        let src = try f.file("src", data)
        let dst = try f.file("dst")
        try f.vol.sync()
        let s0 = try f.vol.getAttrX(src)
        let d0 = try f.vol.getAttrX(dst)
        usleep(10_000)
        // a tail that ends at the source's i_size needs no alignment
        try f.vol.moveBlocks(from: src, fromOffset: 0, length: UInt64(data.count), to: dst, toOffset: UInt64(2 * bs), dataVersion: 0, stage: false)
        let s1 = try f.vol.getAttrX(src)
        let d1 = try f.vol.getAttrX(dst)
        #expect(d1.size == UInt64(2 * bs + data.count))
        #expect(try f.vol.read(dst, offset: 0, size: 1 << 20) == [UInt8](repeating: 0, count: 2 * bs) + data)
        #expect(s1.onlineBlocks == 0 && d1.onlineBlocks == 4)
        #expect(s1.size == s0.size)
        #expect(try f.vol.read(src, offset: 0, size: 1 << 20) == [UInt8](repeating: 0, count: data.count))
        #expect(s1.dataVersion == s0.dataVersion + 1 && d1.dataVersion == d0.dataVersion + 1)
        #expect(s1.dataSeq != s0.dataSeq && d1.dataSeq != d0.dataSeq)
        #expect(s1.ctime != s0.ctime && d1.ctime != d0.ctime)

        // never over existing destination extents
        let src2 = try f.file("src2", archiveBytes(2 * bs, seed: 12))
        #expect(
            errnoOf { try f.vol.moveBlocks(from: src2, fromOffset: 0, length: UInt64(2 * bs), to: dst, toOffset: UInt64(bs), dataVersion: 0, stage: false) }
                == FSError.EINVAL)
        #expect(try f.vol.getAttrX(src2).onlineBlocks == 2)
        #expect(try f.vol.getAttrX(dst).dataVersion == d1.dataVersion)

        // offline blocks in either file: ENODATA
        let off = try f.file("off", archiveBytes(2 * bs, seed: 13))
        try f.vol.release(off, offset: 0, length: UInt64(bs), dataVersion: try f.dv(off))
        #expect(
            errnoOf { try f.vol.moveBlocks(from: off, fromOffset: UInt64(bs), length: UInt64(bs), to: dst, toOffset: UInt64(10 * bs), dataVersion: 0, stage: false) }
                == FSError.ENODATA)
        #expect(
            errnoOf { try f.vol.moveBlocks(from: src2, fromOffset: 0, length: UInt64(bs), to: off, toOffset: UInt64(4 * bs), dataVersion: 0, stage: false) }
                == FSError.ENODATA)
        // starting at or past the source's size moves nothing and changes nothing
        let d2 = try f.vol.getAttrX(dst)
        let s2 = try f.vol.getAttrX(src2)
        try f.vol.moveBlocks(from: src2, fromOffset: UInt64(2 * bs), length: UInt64(bs), to: dst, toOffset: UInt64(20 * bs), dataVersion: 0, stage: false)
        #expect(try f.vol.getAttrX(dst) == d2)
        #expect(try f.vol.getAttrX(src2) == s2)
    }

    @Test func moveBlocksStageIntoOfflineDestination() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let data = archiveBytes(4 * bs + 300, seed: 14)
        // the destination: restored metadata with offline data
        let dst = try f.file("dst")
        var x = AttrX()
        x.mask = [.dataVersion, .size]
        x.flags = AttrX.flagSizeOffline
        x.dataVersion = 77
        x.size = UInt64(data.count)
        try f.vol.setAttrX(dst, x)
        let vol = f.vol
        let reader = Background { () throws in try vol.read(dst, offset: 0, size: 1 << 20) }
        #expect(eventually { f.waiters() == [DataWaiterEntry(ino: dst, iblock: 0, op: .read)] })
        // staging from a temporary file
        let tmp = try f.file("tmp", data)
        try f.vol.sync()
        let t0 = try f.vol.getAttrX(tmp)
        let d0 = try f.vol.getAttrX(dst)
        // the destination must be offline where the blocks land
        let online = try f.file("online", archiveBytes(bs, seed: 15))
        let ov = try f.dv(online)
        #expect(
            errnoOf { try f.vol.moveBlocks(from: tmp, fromOffset: 0, length: UInt64(bs), to: online, toOffset: 0, dataVersion: ov, stage: true) }
                == FSError.EINVAL)
        #expect(
            errnoOf { try f.vol.moveBlocks(from: tmp, fromOffset: 0, length: UInt64(bs), to: dst, toOffset: UInt64(5 * bs), dataVersion: 77, stage: true) }
                == FSError.ENOENT)
        #expect(try f.vol.getAttrX(tmp).onlineBlocks == 5)

        try f.vol.moveBlocks(from: tmp, fromOffset: 0, length: UInt64(data.count), to: dst, toOffset: 0, dataVersion: 77, stage: true)
        #expect(try reader.wait()?.get() == data)
        let d1 = try f.vol.getAttrX(dst)
        let t1 = try f.vol.getAttrX(tmp)
        #expect(d1.dataVersion == 77 && d1.dataSeq == d0.dataSeq && d1.ctime == d0.ctime && d1.size == UInt64(data.count))
        #expect(d1.offlineBlocks == 0 && d1.onlineBlocks == 5)
        #expect(t1.dataVersion == t0.dataVersion + 1 && t1.dataSeq != t0.dataSeq && t1.onlineBlocks == 0)
    }

    @Test func setAttrXIsAllOrNothingAndSizeOfflineMakesAnOfflineFile() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let ino = try f.file("f")
        let a0 = try f.vol.getAttrX(ino)
        func set(_ body: (inout AttrX) -> Void) -> Int32 {
            var x = AttrX()
            body(&x)
            return errnoOf { try f.vol.setAttrX(ino, x) }
        }
        let t = Timespec(sec: 1_234_567, nsec: 89)
        // a size without a data_version: nothing at all changes, ctime included
        #expect(set { $0.mask = [.ctime, .size]; $0.ctime = t; $0.size = 100 } == FSError.EINVAL)
        #expect(try f.vol.getAttrX(ino) == a0)
        #expect(set { $0.mask = [.dataVersion, .crtime]; $0.crtime = t } == FSError.EINVAL)
        #expect(set { $0.mask = [.size, .dataVersion]; $0.dataVersion = 3; $0.flags = AttrX.flagSizeOffline } == FSError.EINVAL)
        #expect(set { $0.mask = AttrX.Mask(rawValue: 1 << 10) } == FSError.EINVAL)
        #expect(set { $0.mask = [.ctime]; $0.flags = 2 } == FSError.EINVAL)
        #expect(set { $0.mask = []; $0.flags = 2 } == 0)
        #expect(try f.vol.getAttrX(ino) == a0)
        let d = try f.dir("d")
        #expect(errnoOf { var x = AttrX(); x.mask = [.dataVersion]; x.dataVersion = 1; try f.vol.setAttrX(d, x) } == FSError.EINVAL)

        // the restore: seq and block-count fields are ignored
        #expect(
            set {
                $0.mask = [.dataVersion, .size, .ctime, .crtime, .projectID, .metaSeq, .onlineBlocks]
                $0.flags = AttrX.flagSizeOffline
                $0.dataVersion = 5
                $0.size = UInt64(3 * bs + 10)
                $0.ctime = t
                $0.crtime = t
                $0.projectID = 42
                $0.metaSeq = 999_999
                $0.onlineBlocks = 7
            } == 0)
        let a = try f.vol.getAttrX(ino)
        #expect(a.dataVersion == 5 && a.size == UInt64(3 * bs + 10) && a.ctime == t && a.crtime == t && a.projectID == 42)
        #expect(a.offlineBlocks == 4 && a.onlineBlocks == 0 && a.metaSeq != 999_999)
        #expect(a.mask == .all)
        // size and data_version only while data_version is 0
        #expect(set { $0.mask = [.dataVersion]; $0.dataVersion = 6 } == FSError.EINVAL)

        // reading waits for the staged data
        let data = archiveBytes(3 * bs + 10, seed: 16)
        let vol = f.vol
        let reader = Background { () throws in try vol.read(ino, offset: 0, size: 1 << 20) }
        #expect(eventually { f.waiters() == [DataWaiterEntry(ino: ino, iblock: 0, op: .read)] })
        #expect(try f.stage(ino, data, dv: 5) == data.count)
        #expect(try reader.wait()?.get() == data)

        // a large restored file: one offline extent, staged anywhere inside
        let big = try f.file("big")
        var x = AttrX()
        x.mask = [.size, .dataVersion]
        x.flags = AttrX.flagSizeOffline
        x.size = (1 << 40) + 10
        x.dataVersion = 9
        try f.vol.setAttrX(big, x)
        #expect(try f.vol.getAttrX(big).offlineBlocks == (1 << 28) + 1)
        let piece = archiveBytes(bs, seed: 25)
        #expect(try f.stage(big, piece, at: 1 << 39, dv: 9) == bs)
        #expect(try f.stage(big, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], at: 1 << 40, dv: 9) == 10)
        #expect(try f.vol.read(big, offset: 1 << 39, size: bs) == piece)
        #expect(try f.vol.read(big, offset: 1 << 40, size: 100) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
        #expect(try f.vol.getAttrX(big).offlineBlocks == (1 << 28) - 1)

        // retention: only a call that clears it goes through
        #expect(set { $0.mask = [.retention]; $0.bits = AttrX.bitRetention } == 0)
        #expect(try f.vol.getAttrX(ino).bits == AttrX.bitRetention)
        #expect(set { $0.mask = [.ctime]; $0.ctime = Timespec(sec: 1) } == FSError.EPERM)
        #expect(errnoOf { try f.vol.punchOffline(ino, offset: 0, length: UInt64(bs), dataVersion: 5, flags: 0) } == FSError.EPERM)
        #expect(set { $0.mask = [.retention, .ctime]; $0.ctime = Timespec(sec: 1) } == 0)
        #expect(try f.vol.getAttrX(ino).bits == 0)
        #expect(try f.vol.getAttrX(ino).ctime == Timespec(sec: 1))
    }

    @Test func dataWaitingListsWaitersInOrderWithTheCursorAndDataWaitErrFailsThem() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let a = try f.file("a", archiveBytes(4 * bs, seed: 17))
        let b = try f.file("b", archiveBytes(4 * bs, seed: 18))
        #expect(a < b)
        for ino in [a, b] { try f.vol.release(ino, offset: 0, length: UInt64(4 * bs), dataVersion: try f.dv(ino)) }
        let vol = f.vol
        let readers = [(a, 2), (a, 0), (b, 1), (a, 0)].map { ino, blk in
            Background { () throws in try vol.read(ino, offset: UInt64(blk * bs), size: bs) }
        }
        let writer = Background { () throws in try [UInt8(7)].withUnsafeBytes { try vol.write(b, offset: UInt64(3 * bs), $0) } }
        let all = [
            DataWaiterEntry(ino: a, iblock: 0, op: .read), DataWaiterEntry(ino: a, iblock: 2, op: .read),
            DataWaiterEntry(ino: b, iblock: 0, op: .write), DataWaiterEntry(ino: b, iblock: 1, op: .read),
        ]
        #expect(eventually { f.waiters() == all }, "\(f.waiters())")
        #expect(f.vol.dataWaiting(afterIno: 0, afterIblock: 0, max: 2) == Array(all[0..<2]))
        #expect(f.vol.dataWaiting(afterIno: a, afterIblock: 0, max: 1) == [all[1]])
        #expect(f.vol.dataWaiting(afterIno: a, afterIblock: 2, max: 10) == Array(all[2...]))
        #expect(f.vol.dataWaiting(afterIno: b, afterIblock: 1, max: 10) == [])

        // no waiter matches: nobody is woken
        #expect(f.vol.dataWaitErr(ino: a, offset: 0, count: UInt64(3 * bs), ops: DataWaitOp.write.rawValue, err: FSError.EIO) == 0)
        #expect(f.vol.dataWaitErr(ino: a, offset: UInt64(3 * bs), count: UInt64(bs), ops: DataWaitOp.read.rawValue, err: FSError.EIO) == 0)
        // the three readers of a's blocks 0 and 2
        #expect(f.vol.dataWaitErr(ino: a, offset: 0, count: UInt64(3 * bs), ops: DataWaitOp.read.rawValue, err: FSError.EIO) == 3)
        for i in [0, 1, 3] { #expect(failure(readers[i].wait()) == FSError.EIO) }
        #expect(f.waiters() == Array(all[2...]))
        #expect(!readers[2].finished && !writer.finished)
        // the reader of b's block 1 by its op; the writer is staged
        #expect(f.vol.dataWaitErr(ino: b, offset: UInt64(bs), count: 1, ops: DataWaitOp.read.rawValue | DataWaitOp.changeSize.rawValue, err: 61) == 1)
        #expect(failure(readers[2].wait()) == 61)
        #expect(try f.stage(b, archiveBytes(4 * bs, seed: 18)) == 4 * bs)
        #expect(try writer.wait()?.get() == 1)
        #expect(f.waiters().isEmpty)
    }

    @Test func interruptEndsTheWaitWithEINTR() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let ino = try f.file("f", archiveBytes(2 * bs, seed: 19))
        try f.vol.release(ino, offset: 0, length: UInt64(2 * bs), dataVersion: try f.dv(ino))
        let intr = TestInterrupt()
        let hooks = intr.hooks
        let vol = f.vol
        let reader = Background { () throws in try vol.read(ino, offset: 0, size: bs, hooks: hooks) }
        #expect(eventually { f.waiters().count == 1 })
        usleep(20_000)
        #expect(!reader.finished)
        intr.fire()
        #expect(failure(reader.wait()) == FSError.EINTR)
        #expect(intr.willBlockCalls == 1)
        #expect(f.waiters().isEmpty)
        // a request interrupted before it waits does not wait at all
        let again = Background { () throws in try vol.read(ino, offset: 0, size: bs, hooks: hooks) }
        #expect(failure(again.wait()) == FSError.EINTR)
        #expect(f.waiters().isEmpty)
    }

    @Test func aWriteOverOfflineBlocksWaits() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let data = archiveBytes(4 * bs, seed: 20)
        let ino = try f.file("f", data)
        let v = try f.dv(ino)
        try f.vol.release(ino, offset: 0, length: UInt64(4 * bs), dataVersion: v)
        let patch = archiveBytes(100, seed: 21)
        let vol = f.vol
        let writer = Background { () throws in try patch.withUnsafeBytes { try vol.write(ino, offset: UInt64(bs + 50), $0) } }
        #expect(eventually { f.waiters() == [DataWaiterEntry(ino: ino, iblock: 0, op: .write)] })
        usleep(20_000)
        #expect(!writer.finished)
        #expect(try f.vol.getAttrX(ino).dataVersion == v)
        #expect(try f.stage(ino, data, dv: v) == data.count)
        #expect(try writer.wait()?.get() == patch.count)
        var expected = data
        expected.replaceSubrange((bs + 50)..<(bs + 150), with: patch)
        #expect(try f.vol.read(ino, offset: 0, size: 1 << 20) == expected)
        #expect(try f.vol.getAttrX(ino).dataVersion == v + 1)
    }

    @Test func aSizeChangeOverOfflineBlocksWaitsWithChangeSize() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let data = archiveBytes(4 * bs, seed: 22)
        let ino = try f.file("f", data)
        let v = try f.dv(ino)
        try f.vol.release(ino, offset: 0, length: UInt64(4 * bs), dataVersion: v)
        // the same size does not wait
        var same = SetAttr()
        same.size = UInt64(4 * bs)
        _ = try f.vol.setattr(ino, same)
        #expect(try f.vol.getAttrX(ino).dataVersion == v)
        let vol = f.vol
        var smaller = SetAttr()
        smaller.size = UInt64(bs)
        let truncater = Background { [smaller] () throws in try vol.setattr(ino, smaller).size }
        #expect(eventually { f.waiters() == [DataWaiterEntry(ino: ino, iblock: 0, op: .changeSize)] })
        // and so does fallocate growing the file
        let grower = Background { () throws in try vol.fallocate(ino, mode: 0, offset: 0, length: UInt64(8 * bs)) }
        #expect(eventually { f.waiters() == [DataWaiterEntry(ino: ino, iblock: 0, op: .changeSize)] && vol.counters.dataWaits >= 2 })
        usleep(20_000)
        #expect(!truncater.finished && !grower.finished)
        #expect(try f.vol.getAttrX(ino).size == UInt64(4 * bs))
        #expect(try f.stage(ino, data, dv: v) == data.count)
        #expect(failure(truncater.wait()) == 0)
        #expect(failure(grower.wait()) == 0)
        let a = try f.vol.getAttrX(ino)
        #expect(a.offlineBlocks == 0 && a.dataVersion >= v + 2)
        #expect(try f.vol.read(ino, offset: 0, size: bs) == Array(data[0..<bs]))
        // truncating to 0 never waits: offline blocks just go
        try f.vol.release(ino, offset: 0, length: UInt64(16 * bs), dataVersion: a.dataVersion)
        var zero = SetAttr()
        zero.size = 0
        _ = try f.vol.setattr(ino, zero)
        #expect(try f.vol.getAttrX(ino).offlineBlocks == 0)
    }

    @Test func readsWaitOnlyForTheBlocksTheyReturn() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let data = archiveBytes(4 * bs, seed: 24)
        let ino = try f.file("f", data)
        // blocks 4..7 allocated past i_size, then blocks 2..7 released: offline inside and past i_size
        try f.vol.fallocate(ino, mode: FallocMode.keepSize, offset: UInt64(4 * bs), length: UInt64(4 * bs))
        let v = try f.dv(ino)
        try f.vol.release(ino, offset: UInt64(2 * bs), length: UInt64(6 * bs), dataVersion: v)
        #expect(try f.vol.getAttrX(ino).offlineBlocks == 6)
        // the online part reads at once
        #expect(try f.vol.read(ino, offset: 0, size: 2 * bs) == Array(data[0..<(2 * bs)]))
        // a large read waits for blocks 2..3 only, never for the offline blocks past i_size
        let vol = f.vol
        let reader = Background { () throws in try vol.read(ino, offset: 0, size: 1 << 20) }
        #expect(eventually { f.waiters() == [DataWaiterEntry(ino: ino, iblock: 2, op: .read)] })
        // fallocate KEEP_SIZE does not wait, and leaves offline blocks offline
        try f.vol.fallocate(ino, mode: FallocMode.keepSize, offset: 0, length: UInt64(16 * bs))
        #expect(try f.vol.getAttrX(ino).offlineBlocks == 6)
        #expect(try f.stage(ino, Array(data[(2 * bs)...]), at: 2 * bs) == 2 * bs)
        #expect(try reader.wait()?.get() == data)
        // a write past i_size over offline blocks fills them without waiting
        let w = Background { () throws in try [UInt8(9)].withUnsafeBytes { try vol.write(ino, offset: UInt64(5 * bs), $0) } }
        #expect(try w.wait()?.get() == 1)
        #expect(try f.vol.getAttrX(ino).offlineBlocks == 3)
        #expect(try f.vol.read(ino, offset: UInt64(5 * bs), size: 2) == [9])
    }

    @Test func losingTheInodeLockWakesWaitersToRetry() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let data = archiveBytes(2 * bs, seed: 23)
        let ino = try f.file("f", data)
        let v = try f.dv(ino)
        try f.vol.release(ino, offset: 0, length: UInt64(2 * bs), dataVersion: v)
        let vol = f.vol
        let reader = Background { () throws in try vol.read(ino, offset: 0, size: 2 * bs) }
        #expect(eventually { f.waiters().count == 1 })
        let waits = f.vol.counters.dataWaits
        // what another mount's stage does to this one: the inode's lock is taken away
        f.vol.invalidateLock(key: Key(zone: KeyZone.fs, first: ino), to: .null)
        // the reader woke, took the lock again, found the data still offline and waits again
        #expect(eventually { f.vol.counters.dataWaits == waits + 1 && f.waiters().count == 1 })
        #expect(!reader.finished)
        #expect(try f.stage(ino, data, dv: v) == data.count)
        #expect(try reader.wait()?.get() == data)
    }

    /// Release and stage racing readers: 16 files of 1 MiB, 200 rounds. One thread
    /// releases each file and reads every file back whole (waiting where it is offline);
    /// the other stages each file as soon as it is released, in 256 KiB pieces, last piece
    /// first. Every byte read must be the file's.
    @Test func concurrentReleaseAndStageKeepEveryByte() throws {
        let f = try Fixture()
        defer { f.cleanup() }
        let rounds = 200
        let files = 16
        let size = 1 << 20
        let golden = (0..<files).map { archiveBytes(size, seed: 100 + UInt64($0)) }
        let inos = try (0..<files).map { try f.file("f\($0)", golden[$0]) }
        let versions = try inos.map { try f.dv($0) }
        let vol = f.vol
        // released[k] counts the releases of file k the stager may stage
        let released = SlotCounter(files)
        let stager = Background { () throws -> Int in
            var staged = 0
            for r in 0..<rounds {
                for k in 0..<files {
                    released.wait(k, atLeast: r + 1)
                    for piece in (0..<4).reversed() {
                        let off = piece * (size / 4)
                        let n = try golden[k][off..<(off + size / 4)].withUnsafeBytes {
                            try vol.stage(inos[k], dataVersion: versions[k], offset: UInt64(off), $0)
                        }
                        staged += n
                    }
                }
            }
            return staged
        }
        let reader = Background { () throws -> Int in
            var bad = 0
            for _ in 0..<rounds {
                for k in 0..<files {
                    try vol.release(inos[k], offset: 0, length: UInt64(size), dataVersion: versions[k])
                    released.add(k)
                }
                for k in 0..<files {
                    var pos = 0
                    while pos < size {
                        let got = try vol.read(inos[k], offset: UInt64(pos), size: 128 << 10)
                        if !same(got, golden[k][pos..<(pos + (128 << 10))]) { bad += 1 }
                        pos += 128 << 10
                    }
                }
            }
            return bad
        }
        #expect(try reader.wait(600)?.get() == 0)
        #expect(try stager.wait(600)?.get() == rounds * files * size)
        for k in 0..<files {
            let a = try f.vol.getAttrX(inos[k])
            #expect(a.dataVersion == versions[k] && a.onlineBlocks == 256 && a.offlineBlocks == 0)
            #expect(same(try f.vol.read(inos[k], offset: 0, size: size), golden[k][...]))
        }
        #expect(f.waiters().isEmpty)
        // the readers did meet offline data (else this tested nothing)
        #expect(f.vol.counters.dataWaits > 0)
    }
}

/// Per-slot counters a thread can wait on.
private final class SlotCounter: @unchecked Sendable {
    // Invariant: `counts` is only touched with `lock` held.
    private let lock = PThreadLock()
    private var counts: [Int]

    init(_ n: Int) { counts = [Int](repeating: 0, count: n) }

    func add(_ k: Int) {
        lock.withLock {
            counts[k] += 1
            lock.broadcast()
        }
    }

    func wait(_ k: Int, atLeast n: Int) {
        lock.withLock {
            while counts[k] < n { lock.wait(seconds: 1) }
        }
    }
}
