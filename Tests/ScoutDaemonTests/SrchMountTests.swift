import CFuseKernel
import Glibc
import ScoutTestSupport
import Testing

/// `.srch.` xattrs and search-xattrs on a real two-mount cluster.
extension RealMounts {
@Suite(.serialized, .enabled(if: MountEnv.usable, "needs root, /dev/fuse and a built scoutfs"))
struct SrchMountTests {
    /// The original utility built by hand, when it is there.
    static let original = "/work/tools/scoutfs-orig/utils/src/scoutfs"

    static func lines(_ s: String) -> [UInt64] { s.split(separator: "\n").compactMap { UInt64($0) } }

    /// SCOUT_SRCH_FILES tagged files (default 10⁴) spread over two mounts, with forced srch log
    /// rotations along the way and every fourth tag removed again: `search-xattrs` on either
    /// mount prints exactly the holders, in order, before and after a remount, and the
    /// original utility prints the same (with log files compacted into sorted ones by then); `check` is clean and the original's `print` reads
    /// the volume.
    @Test func searchFindsEveryTaggedInodeOnTwoMountsThroughRotationsAndARemount() throws {
        let total = getenv("SCOUT_SRCH_FILES").flatMap { Int(String(cString: $0)) } ?? 10_000
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1])
        guard let leader = c.leader(among: [0, 1]) else {
            Issue.record("no leader: \(c.logs())")
            return
        }
        let name = "scoutfs.srch.archive_id"
        var holders: [UInt64] = []
        for slot in 0..<2 {
            let d = "\(c.mnt(slot))/d\(slot)"
            #expect(mkdir(d, 0o755) == 0)
            var inos: [UInt64] = []
            for i in 0..<(total / 2) {
                let p = "\(d)/f\(i)"
                let fd = open(p, O_CREAT | O_WRONLY, 0o644)
                #expect(fd >= 0)
                var st = stat()
                fstat(fd, &st)
                close(fd)
                inos.append(UInt64(st.st_ino))
                let v = Array("\(i)".utf8)
                #expect(setxattr(p, name, v, v.count, 0) == 0, "setxattr \(p): \(errno)")
                if i % 2500 == 2499 {
                    #expect(MountEnv.sh("\(c.bin) trigger -p \(c.mnt(leader)) srch_force_log_rotate").0 == 0)
                    #expect(MountEnv.sh("\(c.bin) sync -p \(c.mnt(slot))").0 == 0)
                }
            }
            for (i, ino) in inos.enumerated() {
                if i % 4 == 0 {
                    #expect(removexattr("\(d)/f\(i)", name) == 0)
                } else {
                    holders.append(ino)
                }
            }
            #expect(MountEnv.sh("\(c.bin) sync -p \(c.mnt(slot))").0 == 0)
        }
        holders.sort()
        // the mounts' workers compact the rotated log files (four at a time) in the background
        if total >= 10_000 {
            let compacted = waitFor(seconds: 60) { (0..<2).contains { (LogMergeMountTests.counter(c, $0, "srch_compact") ?? 0) >= 2 } }
            #expect(compacted != nil, "no srch compaction: \(c.logs())")
            let (prc, printed) = MountEnv.sh("\(c.bin) print \(c.meta(0)) | grep -cE '^    32\\.0\\.8\\.'")
            #expect(prc == 0 && (Int(printed.trimmingCharacters(in: " \n")) ?? 0) >= 1, "no sorted srch file in print: \(printed)")
        }
        func verify(_ when: String) {
            for slot in 0..<2 {
                let (rc, out) = MountEnv.sh("\(c.bin) search-xattrs -p \(c.mnt(slot)) \(name)")
                #expect(rc == 0, "\(when): \(out)")
                let found = Self.lines(out)
                #expect(found == holders, "\(when) mount \(slot): \(found.count) found, \(holders.count) hold it")
                if access(Self.original, X_OK) == 0 {
                    let (orc, oout) = MountEnv.sh("\(Self.original) search-xattrs -p \(c.mnt(slot)) \(name)")
                    #expect(orc == 0 && oout == out, "\(when): the original prints \(Self.lines(oout).count) inodes")
                }
            }
            #expect(MountEnv.sh("\(c.bin) search-xattrs -p \(c.mnt(0)) scoutfs.srch.none").1.isEmpty)
            // errors as the original reports them: a name without the srch tag, no name
            if access(Self.original, X_OK) == 0 {
                for args in ["user.srch.x", "scoutfs.hide.x", ""] {
                    let ours = MountEnv.sh("\(c.bin) search-xattrs -p \(c.mnt(0)) \(args) 2>&1")
                    let theirs = MountEnv.sh("\(Self.original) search-xattrs -p \(c.mnt(0)) \(args) 2>&1")
                    #expect(ours.0 == theirs.0, "'\(args)': exit \(ours.0), the original's \(theirs.0)")
                    if !args.isEmpty { #expect(ours.1 == theirs.1, "'\(args)': \(ours.1) vs the original's \(theirs.1)") }
                }
            }
        }
        verify("before the remount")
        #expect(c.unmount([0, 1]) == 0, "\(c.logs())")
        try c.mount([0, 1])
        verify("after the remount")
        #expect(c.unmount([0, 1]) == 0, "\(c.logs())")
        let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
        #expect(check.0 == 0, "check: \(check.1)")
        if access(Self.original, X_OK) == 0 {
            let (prc, printed) = MountEnv.sh("\(Self.original) print \(c.dir)/meta > \(c.dir)/orig.print 2>&1; echo $?; grep -c 'srch' \(c.dir)/orig.print")
            #expect(prc == 0 && printed.hasPrefix("0\n"), "the original's print: \(printed)")
        }
    }

    /// kill -9 of the server or of a compacting mount while srch compaction runs (right after
    /// a mount finished a compaction step, so the next one is under way): after each remount
    /// every mount's search-xattrs prints exactly the holders; compaction then goes on from
    /// what the server kept, and the volume checks clean.
    @Test func searchStaysExactThroughKillsDuringCompaction() throws {
        let seed = getenv("SCOUT_SRCH_SEED").flatMap { UInt64(String(cString: $0)) } ?? UInt64.random(in: 1...1_000_000)
        var rng = SplitMix64(seed: seed)
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        let name = "scoutfs.srch.k"
        var paths: [UInt64: String] = [:]
        var holders: Set<UInt64> = []
        func verify(_ when: String) {
            let want = holders.sorted()
            for slot in 0..<3 {
                let (rc, out) = MountEnv.sh("\(c.bin) search-xattrs -p \(c.mnt(slot)) \(name)")
                let found = Self.lines(out)
                #expect(rc == 0 && found == want, "seed \(seed) \(when), mount \(slot): \(found.count) found, \(want.count) hold it")
            }
        }
        func steps() -> [UInt64] { (0..<3).map { LogMergeMountTests.counter(c, $0, "srch_compact") ?? 0 } }
        var landed = 0
        for round in 0..<4 {
            let leader = try #require(c.leader(among: [0, 1, 2]), "seed \(seed)")
            // each mount tags 600 new files into its open log file
            for slot in 0..<3 {
                let dir = "r\(round)-\(slot)"
                #expect(mkdir(c.mnt(slot) + "/" + dir, 0o755) == 0)
                for i in 0..<600 {
                    let rel = "\(dir)/f\(i)"
                    let fd = open(c.mnt(slot) + "/" + rel, O_CREAT | O_WRONLY, 0o644)
                    var st = stat()
                    #expect(fd >= 0 && fstat(fd, &st) == 0)
                    close(fd)
                    #expect(setxattr(c.mnt(slot) + "/" + rel, name, "\(i)", "\(i)".utf8.count, 0) == 0)
                    paths[UInt64(st.st_ino)] = rel
                    holders.insert(UInt64(st.st_ino))
                }
                #expect(MountEnv.sh("\(c.bin) sync -p \(c.mnt(slot))").0 == 0)
            }
            // then a burst of rotations, each after some earlier holders lose the tag, so
            // that compaction has a dozen log files to work through when the kill comes
            for _ in 0..<4 {
                for slot in 0..<3 {
                    for ino in holders.sorted() where rng.next() % 30 == 0 {
                        #expect(removexattr(c.mnt(slot) + "/" + paths[ino]!, name) == 0)
                        holders.remove(ino)
                    }
                    #expect(MountEnv.sh("\(c.bin) trigger -p \(c.mnt(leader)) srch_force_log_rotate").0 == 0)
                    #expect(MountEnv.sh("\(c.bin) sync -p \(c.mnt(slot))").0 == 0)
                }
            }
            verify("round \(round) before the kill")
            // the server in even rounds, else the mount that just finished a step
            let before = steps()
            var victim = round % 2 == 0 ? leader : (leader + 1) % 3
            let moved = waitFor(seconds: 30) {
                let now = steps()
                let movedSlots = (0..<3).filter { now[$0] > before[$0] }
                if round % 2 == 1, let s = movedSlots.first(where: { $0 != leader }) ?? movedSlots.first { victim = s }
                return now != before
            }
            if moved != nil { landed += 1 }
            usleep(UInt32(rng.next() % 150_000))
            let pid = try #require(c.daemonPid(victim), "seed \(seed)")
            kill(pid, SIGKILL)
            #expect(waitFor(seconds: 10) { kill(pid, 0) != 0 } != nil)
            MountEnv.sh("umount -l \(c.mnt(victim))")
            try c.mount([victim])
            verify("round \(round) after killing mount \(victim)\(victim == leader ? " (the server)" : "")")
        }
        #expect(landed >= 3, "seed \(seed): only \(landed) of 4 kills came right after a compaction step")
        // compaction carries on from what the server kept until no step is left
        var last = steps()
        var quiet = 0.0
        let settle = monotonicSeconds()
        while quiet < 12 && monotonicSeconds() - settle < 180 {
            usleep(1_000_000)
            let now = steps()
            quiet = now == last ? quiet + 1 : 0
            last = now
        }
        verify("after compaction settled")
        // the last killed mount is fenced once its reconnect times out: until then the server
        // counts it as a quorum mount, and a farewell of every member at once would strand
        // the last one (the original's farewell rule)
        let fenced = waitFor(seconds: 90) {
            ((try? TempDir.readText(c.dir + "/fenced.log")) ?? "").split(separator: "\n").filter { $0.hasPrefix("fenced rid") }.count >= 4
        }
        #expect(fenced != nil, "seed \(seed): not every killed mount was fenced")
        let (prc, printed) = MountEnv.sh("\(c.bin) print \(c.meta(0)) | grep -cE '^    32\\.0\\.8\\.'")
        #expect(prc == 0 && (Int(printed.trimmingCharacters(in: " \n")) ?? 0) >= 1, "seed \(seed): no sorted srch file in print: \(printed)")
        #expect(c.unmount([0, 1, 2]) == 0, "\(c.logs())")
        let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
        #expect(check.0 == 0, "seed \(seed): check: \(check.1)")
    }
}
}
