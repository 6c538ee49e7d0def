import Glibc
import ScoutAgent
import ScoutFUSE
import ScoutIoctl
import ScoutTestSupport
import Synchronization
import Testing

/// A thread running `body`; `join` waits for it (bounded) and says whether it finished.
final class TestThread: @unchecked Sendable {
    private final class Flag: @unchecked Sendable {
        let done = Mutex(false)
    }
    private let flag = Flag()
    private(set) var tid = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        let flag = self.flag
        let box = Unmanaged.passRetained(Box {
            body()
            flag.done.withLock { $0 = true }
        }).toOpaque()
        pthread_create(&tid, nil, { arg in
            Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, box)
    }

    var finished: Bool { flag.done.withLock { $0 } }

    /// Waits (at most `seconds`) for the thread; false when it is still running.
    @discardableResult
    func join(seconds: Double) -> Bool {
        if waitFor(seconds: seconds, { self.finished }) == nil { return false }
        pthread_join(tid, nil)
        return true
    }

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}

/// The result a reader thread leaves behind.
final class ReadResult: @unchecked Sendable {
    let lock = Mutex<(bytes: [UInt8]?, errno: Int32)>((nil, 0))
}

/// `n` bytes of a seeded random stream.
func archiveBytes(_ n: Int, seed: UInt64) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    var out = [UInt8](repeating: 0, count: n)
    var i = 0
    while i < n {
        var v = rng.next()
        for _ in 0..<8 where i < n {
            out[i] = UInt8(truncatingIfNeeded: v)
            v >>= 8
            i += 1
        }
    }
    return out
}

/// Reads all of `path` with read(2) in 1 MiB pieces (a buffered reader, as `cat`).
func readWhole(_ path: String) -> (bytes: [UInt8]?, errno: Int32) {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return (nil, errno) }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 { return (nil, errno) }
        if n == 0 { return (out, 0) }
        out += buf[0..<n]
    }
}

extension RealMounts {
    @Suite("The archive cycle on real mounts")
    struct ArchiveMountTests {
        /// Agent ops on `path` with a descriptor opened `flags`.
        static func agent<R>(_ path: String, _ flags: Int32 = O_RDWR, _ body: (ScoutAgent) throws -> R) throws -> R {
            let a = try ScoutAgent.open(path, flags: flags)
            defer { a.close() }
            return try body(a)
        }

        static func stage(_ path: String, _ bytes: [UInt8], version: UInt64) throws {
            try Self.agent(path) { a in
                var off = 0
                while off < bytes.count {
                    let n = min(1 << 20, bytes.count - off)
                    let wrote = try bytes[off..<off + n].withUnsafeBytes { try a.stage(dataVersion: version, offset: UInt64(off), buffer: $0) }
                    #expect(wrote == n)
                    off += n
                }
            }
        }

        @Test(.enabled(if: MountEnv.usable)) func releaseWaitStageOnOneMount() throws {
            let v = try MountedVolume.make()
            defer { v.cleanup() }
            try v.mount()
            let root = try ScoutAgent.open(v.mnt)
            let saved = try root.statfsMore().committedSeq
            mkdir(v.mnt + "/p", 0o755)
            var files: [String: [UInt8]] = [:]
            for i in 0..<3 {
                let bytes = archiveBytes((1 << 20) + 1000 * i + 5, seed: UInt64(i + 1))
                files[v.mnt + "/p/f\(i)"] = bytes
                try writeFile(v.mnt + "/p/f\(i)", bytes, fsync: true)
            }
            // the files written since the saved position, found without a namespace walk
            let changed = try root.walkInodes(index: .dataSeq, first: WalkInodesEntry(major: saved + 1, ino: 0), last: WalkInodesEntry(major: .max, minor: .max, ino: .max), max: 100)
            var byIno: [UInt64: String] = [:]
            for (path, _) in files {
                var st = stat()
                stat(path, &st)
                byIno[UInt64(st.st_ino)] = path
            }
            #expect(Set(changed.map(\.ino)) == Set(byIno.keys))
            for e in changed {
                let p = try root.inoPath(ino: e.ino)
                #expect(v.mnt + "/" + String(decoding: p.path, as: UTF8.self) == byIno[e.ino])
            }

            let target = v.mnt + "/p/f1"
            let bytes = files[target]!
            let blocks = UInt64((bytes.count + 4095) / 4096)
            let before = try Self.agent(target) { try $0.statMore() }
            #expect(before.onlineBlocks == blocks && before.offlineBlocks == 0)
            // a stale data_version is refused, a right one releases everything
            #expect(throws: AgentError(command: .release, errno: ESTALE)) {
                try Self.agent(target) { try $0.release(offset: 0, length: blocks * 4096, dataVersion: before.dataVersion + 1) }
            }
            try Self.agent(target) { try $0.release(offset: 0, length: blocks * 4096, dataVersion: before.dataVersion) }
            let after = try Self.agent(target) { try $0.statMore() }
            #expect(after.onlineBlocks == 0 && after.offlineBlocks == blocks)
            #expect(after.dataVersion == before.dataVersion)
            var st = stat()
            stat(target, &st)
            #expect(st.st_size == bytes.count)
            // a read-only handle may not release, nor stage
            #expect(throws: AgentError(command: .release, errno: EINVAL)) {
                try Self.agent(target, O_RDONLY) { try $0.release(offset: 0, length: 4096, dataVersion: before.dataVersion) }
            }

            // a reader waits, is listed by data-waiting, and gets the staged bytes
            let result = ReadResult()
            let reader = TestThread { let r = readWhole(target); result.lock.withLock { $0 = r } }
            let listed = waitFor(seconds: 10) { (try? root.dataWaiting(afterIno: 0, afterIblock: 0))?.isEmpty == false }
            #expect(listed != nil, "no waiter listed")
            let waiting = try root.dataWaiting(afterIno: 0, afterIblock: 0)
            #expect(waiting.allSatisfy { $0.ino == UInt64(st.st_ino) && $0.op == DataWaitingEntry.opRead })
            #expect(!reader.finished)
            #expect(throws: AgentError(command: .stage, errno: ESTALE)) {
                try Self.stage(target, bytes, version: before.dataVersion + 1)
            }
            try Self.stage(target, bytes, version: before.dataVersion)
            #expect(reader.join(seconds: 30))
            #expect(result.lock.withLock { $0.bytes } == bytes)
            let staged = try Self.agent(target) { try $0.statMore() }
            #expect(staged.onlineBlocks == blocks && staged.offlineBlocks == 0)
            #expect(staged.dataVersion == before.dataVersion)
            #expect(try root.dataWaiting(afterIno: 0, afterIblock: 0).isEmpty)
            root.close()
            #expect(v.unmount() == 0)
            let check = MountEnv.sh("\(MountEnv.binary) check \(v.dir)/meta \(v.dataPath)")
            #expect(check.0 == 0, "check: \(check.1)")
        }

        @Test(.enabled(if: MountEnv.usable)) func walkInodesReturnsExactlyTheChangesAfterEachCommit() throws {
            let v = try MountedVolume.make()
            defer { v.cleanup() }
            try v.mount()
            let root = try ScoutAgent.open(v.mnt)
            var inos: [UInt64] = []
            for i in 0..<40 {
                try writeFile(v.mnt + "/f\(i)", [UInt8(i)], fsync: true)
                var st = stat()
                stat(v.mnt + "/f\(i)", &st)
                inos.append(UInt64(st.st_ino))
            }
            var rng = SplitMix64(seed: 7)
            for round in 0..<8 {
                let saved = try root.statfsMore().committedSeq
                var changed = Set<UInt64>()
                for _ in 0..<5 {
                    let i = Int(rng.next() % 40)
                    try writeFile(v.mnt + "/f\(i)", [UInt8(round), UInt8(i)], fsync: true)
                    changed.insert(inos[i])
                }
                var found = Set<UInt64>()
                var it = root.changes(index: .dataSeq, from: WalkInodesEntry(major: saved + 1, ino: 0), to: WalkInodesEntry(major: .max, minor: .max, ino: .max), batch: 3).makeIterator()
                while let e = it.next() { found.insert(e.ino) }
                #expect(it.error == nil)
                #expect(found == changed, "round \(round)")
            }
            root.close()
            #expect(v.unmount() == 0)
        }

        @Test(.enabled(if: MountEnv.usable)) func anInterruptedWaiterGetsEINTR() throws {
            let v = try MountedVolume.make()
            defer { v.cleanup() }
            try v.mount()
            let path = v.mnt + "/off"
            try writeFile(path, archiveBytes(8192, seed: 3), fsync: true)
            let ver = try Self.agent(path) { try $0.statMore().dataVersion }
            try Self.agent(path) { try $0.release(offset: 0, length: 8192, dataVersion: ver) }
            // a handler without SA_RESTART: the interrupted read returns EINTR
            var sa = sigaction()
            sa.__sigaction_handler.sa_handler = { _ in }
            sa.sa_flags = 0
            sigaction(SIGUSR1, &sa, nil)
            let result = ReadResult()
            let reader = TestThread {
                var set = sigset_t()
                sigemptyset(&set)
                sigaddset(&set, SIGUSR1)
                pthread_sigmask(SIG_UNBLOCK, &set, nil)
                let fd = open(path, O_RDONLY)
                var buf = [UInt8](repeating: 0, count: 4096)
                let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
                let e = errno
                close(fd)
                result.lock.withLock { $0 = (n >= 0 ? Array(buf[0..<n]) : nil, n < 0 ? e : 0) }
            }
            let root = try ScoutAgent.open(v.mnt)
            #expect(waitFor(seconds: 10) { (try? root.dataWaiting(afterIno: 0, afterIblock: 0))?.isEmpty == false } != nil)
            // the signal may land before the read reached the daemon's wait: send it until it ends
            _ = waitFor(seconds: 10) {
                pthread_kill(reader.tid, SIGUSR1)
                return reader.finished
            }
            #expect(reader.join(seconds: 10))
            #expect(result.lock.withLock { $0.errno } == EINTR)
            #expect(waitFor(seconds: 5) { (try? root.dataWaiting(afterIno: 0, afterIblock: 0))?.isEmpty == true } != nil)
            root.close()
            #expect(v.unmount() == 0)
        }

        @Test(.enabled(if: MountEnv.usable)) func concurrentReleaseAndStageKeepEveryByte() throws {
            let v = try MountedVolume.make()
            defer { v.cleanup() }
            try v.mount()
            let files = (0..<16).map { (v.mnt + "/r\($0)", archiveBytes(1 << 20, seed: UInt64(100 + $0))) }
            for (p, b) in files { try writeFile(p, b, fsync: false) }
            let rounds = Int(getenv("SCOUT_ARCHIVE_ROUNDS").flatMap { Int(String(cString: $0)) } ?? 200)
            let failures = Mutex<[String]>([])
            let workers = (0..<2).map { w in
                TestThread {
                    for round in 0..<rounds {
                        for (p, b) in files.enumerated().filter({ $0.offset % 2 == w }).map(\.element) {
                            do {
                                let ver = try Self.agent(p) { try $0.statMore().dataVersion }
                                try Self.agent(p) { try $0.release(offset: 0, length: 1 << 20, dataVersion: ver) }
                                try Self.stage(p, b, version: ver)
                                if round % 20 == 0, readWhole(p).bytes != b { failures.withLock { $0.append("\(p) round \(round): bytes differ") } }
                            } catch {
                                failures.withLock { $0.append("\(p) round \(round): \(error)") }
                            }
                        }
                    }
                }
            }
            for w in workers { #expect(w.join(seconds: 900)) }
            #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0.prefix(5) })")
            for (p, b) in files { #expect(readWhole(p).bytes == b, "\(p)") }
            #expect(v.unmount() == 0)
            try v.mount()
            for (p, b) in files { #expect(readWhole(p).bytes == b, "\(p) after remount") }
            #expect(v.unmount() == 0)
            let check = MountEnv.sh("\(MountEnv.binary) check \(v.dir)/meta \(v.dataPath)")
            #expect(check.0 == 0, "check: \(check.1)")
        }

        @Test(.enabled(if: MountEnv.usable)) func fiveHundredWaitingReadersLeaveTheMountResponsive() throws {
            let v = try MountedVolume.make()
            defer { v.cleanup() }
            try v.mount()
            mkdir(v.mnt + "/other", 0o755)
            for i in 0..<20 { try writeFile(v.mnt + "/other/n\(i)", [1], fsync: false) }
            let bytes = archiveBytes(500 * 4096, seed: 9)
            let path = v.mnt + "/big"
            try writeFile(path, bytes, fsync: true)
            let ver = try Self.agent(path) { try $0.statMore().dataVersion }
            try Self.agent(path) { try $0.release(offset: 0, length: UInt64(bytes.count), dataVersion: ver) }
            let bad = Mutex(0)
            let readers = (0..<500).map { i in
                TestThread {
                    let fd = open(path, O_RDONLY)
                    var buf = [UInt8](repeating: 0, count: 4096)
                    let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 4096, off_t(i * 4096)) }
                    close(fd)
                    if n != 4096 || buf[...] != bytes[i * 4096..<(i + 1) * 4096] { bad.withLock { $0 += 1 } }
                }
            }
            let root = try ScoutAgent.open(v.mnt)
            #expect(waitFor(seconds: 60) { ((try? root.dataWaiting(afterIno: 0, afterIblock: 0, max: 1000))?.count ?? 0) >= 500 } != nil)
            // elsewhere on the mount, a stat and a readdir answer at once
            var worst = 0.0
            for i in 0..<10 {
                let t0 = monotonicSeconds()
                var st = stat()
                #expect(stat(v.mnt + "/other/n\(i)", &st) == 0)
                let names = MountEnv.sh("ls \(v.mnt)/other | wc -l").1
                #expect(names.trimmingCharacters(in: " \n") == "20")
                worst = max(worst, monotonicSeconds() - t0)
            }
            // a mount blocked behind the waiters would take the lock or request timeouts
            // (seconds); a loaded 2-core machine takes a few tenths for the ls alone
            #expect(worst < 1, "stat + ls took \(worst) s with 500 readers waiting")
            #expect(readers.allSatisfy { !$0.finished })
            try Self.stage(path, bytes, version: ver)
            for r in readers { #expect(r.join(seconds: 60)) }
            #expect(bad.withLock { $0 } == 0)
            root.close()
            #expect(v.unmount() == 0)
        }

        @Test(.enabled(if: MountEnv.usable)) func walkInodesIsExactAcrossMounts() throws {
            let c = try Cluster.make()
            defer { c.cleanup() }
            try c.mount([0, 1, 2])
            var inos: [UInt64] = []
            for i in 0..<30 {
                try writeFile(c.mnt(i % 3) + "/f\(i)", [UInt8(i)], fsync: true)
                var st = stat()
                stat(c.mnt(0) + "/f\(i)", &st)
                inos.append(UInt64(st.st_ino))
            }
            let agents = try (0..<3).map { try ScoutAgent.open(c.mnt($0)) }
            defer { for a in agents { a.close() } }
            var rng = SplitMix64(seed: 5)
            for round in 0..<6 {
                let saved = try agents[0].statfsMore().committedSeq
                var changed = Set<UInt64>()
                // the same files changed from different mounts, each write synced
                for _ in 0..<9 {
                    let i = Int(rng.next() % 30)
                    let m = Int(rng.next() % 3)
                    try writeFile(c.mnt(m) + "/f\(i)", [UInt8(round), UInt8(m)], fsync: true)
                    changed.insert(inos[i])
                }
                for m in 0..<3 {
                    var found = Set<UInt64>()
                    var it = agents[m].changes(index: .dataSeq, from: WalkInodesEntry(major: saved + 1, ino: 0), to: WalkInodesEntry(major: .max, minor: .max, ino: .max)).makeIterator()
                    while let e = it.next() { found.insert(e.ino) }
                    #expect(it.error == nil)
                    #expect(found == changed, "round \(round), walked on mount \(m)")
                }
            }
        }

        @Test(.enabled(if: MountEnv.usable)) func anMmapFaultOnOfflineDataWaitsForTheStage() throws {
            let v = try MountedVolume.make()
            defer { v.cleanup() }
            try v.mount()
            let path = v.mnt + "/mapped"
            let bytes = archiveBytes(64 << 10, seed: 13)
            try writeFile(path, bytes, fsync: true)
            let ver = try Self.agent(path) { try $0.statMore().dataVersion }
            try Self.agent(path) { try $0.release(offset: 0, length: UInt64(bytes.count), dataVersion: ver) }
            let got = Mutex<[UInt8]?>(nil)
            let faulter = TestThread {
                let fd = open(path, O_RDONLY)
                guard fd >= 0, let p = mmap(nil, bytes.count, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else { return }
                let copy = Array(UnsafeRawBufferPointer(start: p, count: bytes.count))
                munmap(p, bytes.count)
                close(fd)
                got.withLock { $0 = copy }
            }
            let root = try ScoutAgent.open(v.mnt)
            #expect(waitFor(seconds: 10) { (try? root.dataWaiting(afterIno: 0, afterIblock: 0))?.isEmpty == false } != nil)
            #expect(!faulter.finished)
            try Self.stage(path, bytes, version: ver)
            #expect(faulter.join(seconds: 30))
            #expect(got.withLock { $0 } == bytes)
            root.close()
            #expect(v.unmount() == 0)
        }

        @Test(.enabled(if: MountEnv.usable)) func aStageOnOneMountWakesAReaderOnAnother() throws {
            let c = try Cluster.make()
            defer { c.cleanup() }
            try c.mount([0, 1, 2])
            let bytes = archiveBytes(3 << 20, seed: 11)
            try writeFile(c.mnt(0) + "/x", bytes, fsync: true)
            let ver = try Self.agent(c.mnt(0) + "/x") { try $0.statMore().dataVersion }
            try Self.agent(c.mnt(0) + "/x") { try $0.release(offset: 0, length: UInt64(bytes.count), dataVersion: ver) }
            let result = ReadResult()
            let reader = TestThread { let r = readWhole(c.mnt(1) + "/x"); result.lock.withLock { $0 = r } }
            let m1 = try ScoutAgent.open(c.mnt(1))
            defer { m1.close() }
            let m0 = try ScoutAgent.open(c.mnt(0))
            defer { m0.close() }
            #expect(waitFor(seconds: 20) { (try? m1.dataWaiting(afterIno: 0, afterIblock: 0))?.isEmpty == false } != nil)
            // waiters belong to their mount
            #expect(try m0.dataWaiting(afterIno: 0, afterIblock: 0).isEmpty)
            try Self.stage(c.mnt(2) + "/x", bytes, version: ver)
            #expect(reader.join(seconds: 30), "the reader on mount 1 was not woken\n\(c.logs())")
            #expect(result.lock.withLock { $0.bytes } == bytes)
            #expect(readWhole(c.mnt(0) + "/x").bytes == bytes)
        }
    }
}
