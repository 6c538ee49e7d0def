import Dispatch
import Glibc
import ScoutTestSupport
import Synchronization
import Testing

/// Several mounts of one volume on one host, used at the same time (issue 13).
extension RealMounts {
@Suite(.serialized, .enabled(if: MountEnv.usable, "needs root, /dev/fuse and a built scoutfs"))
struct MultiMountTests {
    /// Two mounts open one new name with O_CREAT (no O_EXCL) at the same moment: both get
    /// the file. The kernel sends CREATE after a negative LOOKUP; when the other mount
    /// created the name in between, the daemon opens the existing file.
    @Test func concurrentCreateWithoutExclOpensTheFile() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1])
        let mounts = [c.mnt(0), c.mnt(1)]
        let failures = Mutex<[String]>([])
        let arrived = Atomic<Int>(0)
        let rounds = 150
        DispatchQueue.concurrentPerform(iterations: 2) { side in
            for i in 0..<rounds {
                // both sides start each round together
                arrived.add(1, ordering: .acquiringAndReleasing)
                let deadline = monotonicSeconds() + 30
                while arrived.load(ordering: .acquiring) < 2 * (i + 1), monotonicSeconds() < deadline { sched_yield() }
                let path = "\(mounts[side])/f\(i)"
                let fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
                if fd < 0 {
                    let e = errno
                    failures.withLock { $0.append("\(path): errno \(e)") }
                } else {
                    close(fd)
                }
            }
        }
        let failed = failures.withLock { $0 }
        #expect(failed.count == 0, "\(failed.count) of \(2 * rounds) opens failed: \(failed.prefix(5))")
        // with O_EXCL exactly one of two still wins
        #expect(open(c.mnt(1) + "/f0", O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644) == -1 && errno == EEXIST)
        #expect(c.unmount([0, 1]) == 0, "\(c.logs())")
    }

    /// `dd oflag=append` from two mounts into one file at once: every block lands (none
    /// overwrites another), quickly.
    @Test func appendsFromTwoMountsAllLand() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1])
        let blocks = 200
        for side in 0..<2 {
            try writeFile("\(c.dir)/src\(side)", [UInt8](repeating: UInt8(ascii: side == 0 ? "a" : "b"), count: 4096 * blocks), fsync: false)
        }
        try writeFile(c.mnt(0) + "/log", [], fsync: true)
        #expect(readFile(c.mnt(1) + "/log") == [])
        let start = monotonicSeconds()
        let rcs = try c.inBackground(
            (0..<2).map { side in
                ("timeout 60 dd if=\(c.dir)/src\(side) of=\(c.mnt(side))/log oflag=append conv=notrunc bs=4096 count=\(blocks) status=none",
                 "dd.\(side)")
            }, seconds: 70)
        let took = monotonicSeconds() - start
        #expect(rcs == [0, 0], "dd exit statuses \(rcs)\n\(c.logs())")
        for side in 0..<2 {
            let data = readFile(c.mnt(side) + "/log") ?? []
            #expect(data.count == 2 * blocks * 4096, "mount \(side) sees \(data.count / 4096) blocks")
            var counts: [UInt8: Int] = [:]
            for b in stride(from: 0, to: data.count - data.count % 4096, by: 4096) {
                let first = data[b]
                let uniform = data[b..<(b + 4096)].allSatisfy { $0 == first }
                counts[uniform ? first : 0, default: 0] += 1
            }
            #expect(counts == [UInt8(ascii: "a"): blocks, UInt8(ascii: "b"): blocks], "mount \(side): \(counts)")
        }
        // one lock transfer, with a commit, per append: seconds in a debug build, not a hang
        #expect(took < 45, "the appends took \(took) s")
        #expect(c.unmount([0, 1]) == 0, "\(c.logs())")
    }

    /// Allocating on one mount and freeing on another, twice the data device in total: the
    /// freed space comes back to the allocating mount (through the server), no ENOSPC.
    @Test func spaceFreedOnAnotherMountIsReused() throws {
        let c = try Cluster.make(mkfsOptions: "-d 256M")
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        for round in 0..<16 {
            let name = "big\(round)"
            let (rc, out) = MountEnv.sh("timeout 60 dd if=/dev/zero of=\(c.mnt(0))/\(name) bs=1M count=32 conv=fsync status=none")
            #expect(rc == 0, "round \(round): write on mount 0: \(out)")
            if rc != 0 { break }
            let (rrc, rout) = MountEnv.sh("timeout 60 rm \(c.mnt(1))/\(name)")
            #expect(rrc == 0, "round \(round): rm on mount 1: \(rout)")
            if rrc != 0 { break }
        }
        #expect(c.unmount([0, 1, 2]) == 0, "\(c.logs())")
    }

    /// `mkdir dir`, `mv dir dir-1`, `mv dir-1 dir-2`, `rmdir dir-2` in one directory, each
    /// step on a chosen mount, over every combination of three mounts: every step sees what
    /// the steps before did, wherever they ran.
    @Test func renameRoundsOverEveryMountCombination() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        #expect(mkdir(c.mnt(0) + "/top", 0o755) == 0)
        let steps = ["mkdir %/top/dir", "mv %/top/dir %/top/dir-1", "mv %/top/dir-1 %/top/dir-2", "rmdir %/top/dir-2"]
        var failed: String?
        rounds: for combo in 0..<81 {
            let on = [combo / 27, combo / 9 % 3, combo / 3 % 3, combo % 3]
            for (i, step) in steps.enumerated() {
                let cmd = step.replacingAll("%", with: c.mnt(on[i]))
                let (rc, out) = MountEnv.sh("timeout 30 \(cmd)")
                if rc != 0 {
                    failed = "round \(on) step \(i) (\(cmd)): \(out)"
                    break rounds
                }
            }
        }
        #expect(failed == nil, "\(failed ?? "")")
        #expect(c.unmount([0, 1, 2]) == 0, "\(c.logs())")
    }

    /// A mount that read a file keeps its pages; another mount then rewrites the file (same
    /// size). The first mount gives its lock up before the kernel's pages can go (dropping
    /// them waits for page locks that reads hold while they wait for the lock), and here the
    /// page invalidation is held back 3 s: a read() through the descriptor opened before,
    /// a new open's read, and a new shared mapping all still see the new bytes at once.
    @Test func noReadServesPagesFromBeforeAnotherMountsWrite() throws {
        var c = try Cluster.make()
        c.mountEnvironment = "SCOUTFS_TEST_PAGE_INVAL_DELAY_MS=3000"
        defer { c.cleanup() }
        try c.mount([0, 1])
        let size = 64 << 10
        try writeFile(c.mnt(0) + "/f", [UInt8](repeating: 0x41, count: size), fsync: true)
        let path1 = c.mnt(1) + "/f"
        let fd = open(path1, O_RDONLY | O_CLOEXEC)
        #expect(fd >= 0)
        var buf = [UInt8](repeating: 0, count: size)
        #expect(pread(fd, &buf, size, 0) == size && buf.allSatisfy { $0 == 0x41 })
        for round in 0..<3 {
            let byte = UInt8(0x61 + round)
            try writeFile(c.mnt(0) + "/f", [UInt8](repeating: byte, count: size), fsync: true)
            #expect(pread(fd, &buf, size, 0) == size)
            #expect(buf.allSatisfy { $0 == byte }, "round \(round): the open descriptor read old pages (\(buf[0]))")
            let fresh = (try? readAll(path1)) ?? []
            #expect(fresh.count == size && fresh.allSatisfy { $0 == byte }, "round \(round): a new open read old pages")
            let (rc, out) = MountEnv.sh(
                "/usr/bin/python3 -c 'import mmap,os; f=os.open(\"\(path1)\", os.O_RDONLY); m=mmap.mmap(f, \(size), prot=mmap.PROT_READ); print(len(set(m[:])), m[0])'")
            #expect(rc == 0 && out.trimmingCharacters(in: " \n") == "1 \(byte)", "round \(round): the mapping read old pages: \(out)")
            // and this mount's own read brings the lock back before the next round's write
        }
        close(fd)
        #expect(c.unmount([0, 1]) == 0, "\(c.logs())")
    }

    /// Threads write a file with pwrite on one mount while processes on another mount fault
    /// it in through a shared mapping: both sides keep going and the mounts keep answering.
    @Test func pwriteAgainstMmapFaultsAcrossMounts() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1])
        try writeFile(c.mnt(0) + "/shared", [UInt8](repeating: 0x2e, count: 1 << 20), fsync: true)
        let script = """
            import mmap, os, random, sys, time
            mode, path, secs, nproc = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
            size = 1 << 20
            end = time.time() + secs
            pids = []
            for i in range(nproc):
                pid = os.fork()
                if pid == 0:
                    r = random.Random(i)
                    if mode == "write":
                        fd = os.open(path, os.O_RDWR)
                        buf = bytes([65 + i]) * 4096
                        while time.time() < end:
                            os.pwrite(fd, buf, r.randrange(size // 4096) * 4096)
                    else:
                        fd = os.open(path, os.O_RDONLY)
                        m = mmap.mmap(fd, size, prot=mmap.PROT_READ)
                        total = 0
                        while time.time() < end:
                            total += m[r.randrange(size)]
                    os._exit(0)
                pids.append(pid)
            bad = 0
            for p in pids:
                bad += os.waitpid(p, 0)[1] != 0
            sys.exit(1 if bad else 0)
            """
        try writeText(c.dir + "/load.py", script)
        let rcs = try c.inBackground(
            [("timeout -s KILL 60 /usr/bin/python3 \(c.dir)/load.py write \(c.mnt(0))/shared 8 2", "writer"),
             ("timeout -s KILL 60 /usr/bin/python3 \(c.dir)/load.py read \(c.mnt(1))/shared 8 2", "reader")],
            seconds: 45)
        #expect(rcs == [0, 0], "writer, reader exit statuses \(rcs)\n\(c.logs())")
        // both mounts still answer
        for side in 0..<2 {
            #expect(MountEnv.sh("timeout 10 stat \(c.mnt(side))/shared").0 == 0, "mount \(side) does not answer")
        }
        #expect(c.unmount([0, 1]) == 0, "\(c.logs())")
    }
}
}

extension String {
    /// Every occurrence of `target` replaced by `replacement`.
    func replacingAll(_ target: Character, with replacement: String) -> String {
        var out = ""
        for ch in self {
            if ch == target { out += replacement } else { out.append(ch) }
        }
        return out
    }
}
