import Glibc
import ScoutTestSupport
import Testing

/// Log merging on a real three-mount cluster (each mount on its own loop devices).
extension RealMounts {
@Suite(.serialized, .enabled(if: MountEnv.usable, "needs root, /dev/fuse and a built scoutfs"))
struct LogMergeMountTests {
    static func counter(_ c: Cluster, _ slot: Int, _ name: String) -> UInt64? {
        let (rc, out) = MountEnv.sh("timeout 10 \(c.bin) counters -p \(c.mnt(slot))")
        guard rc == 0 else { return nil }
        for line in out.split(separator: "\n") {
            let w = line.split(separator: " ")
            if w.count == 2, w[0] == name { return UInt64(w[1]) }
        }
        return nil
    }

    /// Creates, renames and unlinks on three mounts, then a forced merge: the fs root holds
    /// every live name and `print` shows no deleted or renamed-away one; every mount still
    /// reads everything; the merged inputs' log trees are gone.
    @Test func mergeFoldsEveryMountsTreeIntoTheFsRoot() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        var live: Set<String> = []
        for slot in 0..<3 {
            let d = "\(c.mnt(slot))/d\(slot)"
            #expect(mkdir(d, 0o755) == 0)
            let (rc, out) = MountEnv.sh(
                "cd \(d) && for i in $(seq 0 99); do echo $i > keep-\(slot)-$i; echo $i > del-\(slot)-$i; echo $i > old-\(slot)-$i; done"
                    + " && for i in $(seq 0 99); do rm del-\(slot)-$i; mv old-\(slot)-$i new-\(slot)-$i; done")
            #expect(rc == 0, "\(out)")
            for i in 0..<100 {
                live.insert("d\(slot)/keep-\(slot)-\(i)")
                live.insert("d\(slot)/new-\(slot)-\(i)")
            }
            #expect(MountEnv.sh("\(c.bin) sync -p \(c.mnt(slot))").0 == 0)
        }
        let (_, before) = MountEnv.sh("\(c.bin) print \(c.meta(0)) | grep -cE '^    rid [0-9]+ nr '")
        guard let leader = c.leader(among: [0, 1, 2]) else {
            Issue.record("no leader: \(c.logs())")
            return
        }
        #expect(MountEnv.sh("\(c.bin) trigger -p \(c.mnt(leader)) log_merge_force_finalize_ours").0 == 0)
        // a mount's merge worker polls every 5 s: the merge starts and finishes in a few polls
        let done = waitFor(seconds: 90) { (Self.counter(c, leader, "log_merge_complete") ?? 0) >= 1 }
        #expect(done != nil, "no merge completed: \(c.logs())")
        for slot in 0..<3 {
            let (rc, out) = MountEnv.sh("cd \(c.mnt(slot)) && ls d0 d1 d2 | grep -c -- -")
            #expect(rc == 0 && out.trimmingCharacters(in: " \n") == "600", "mount \(slot) lists \(out)")
            #expect(readFile("\(c.mnt(slot))/d\((slot + 1) % 3)/new-\((slot + 1) % 3)-7") == Array("7\n".utf8))
        }
        #expect(c.unmount([0, 1, 2]) == 0, "\(c.logs())")
        // print reads the unmounted volume (a mounted one may change under it): no deleted or
        // renamed-away name; the trees left are the ones the unmounts finalized
        let (prc, printed) = MountEnv.sh("\(c.bin) print \(c.dir)/meta")
        #expect(prc == 0)
        #expect(!printed.contains("del-") && !printed.contains("old-"), "print still shows deleted names")
        for name in live.sorted().prefix(20) {
            let base = String(name.split(separator: "/")[1])
            #expect(printed.contains(base), "\(base) not in print")
        }
        let (_, after) = MountEnv.sh("\(c.bin) print \(c.dir)/meta | grep -cE '^    rid [0-9]+ nr '")
        #expect(Int(after.trimmingCharacters(in: " \n")) ?? 99 <= 3, "log trees before \(before), after \(after)")
        let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
        #expect(check.0 == 0, "check: \(check.1)")
    }
}
}

extension RealMounts.LogMergeMountTests {
    /// Rounds of fsync'd writes and unlinks on three mounts, a forced merge, and a SIGKILL of
    /// the leader (its server) or of another merging mount at a random moment of the merge;
    /// the killed member mounts again. Every fsync'd file reads back whole on every mount
    /// after every round, unlinked ones stay gone, and the merge finishes on the next server.
    /// SCOUT_MERGE_KILLS=N sets the rounds (default 4), SCOUT_MERGE_SEED=S replays one run.
    @Test func mergesSurviveKillsOfTheServerAndOfMergingMounts() throws {
        let kills = getenv("SCOUT_MERGE_KILLS").flatMap { Int(String(cString: $0)) } ?? 4
        let seed = getenv("SCOUT_MERGE_SEED").flatMap { UInt64(String(cString: $0)) } ?? UInt64.random(in: 1...1_000_000)
        var rng = SplitMix64(seed: seed)
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        var files: [String: [UInt8]] = [:]
        func content(_ name: String) -> [UInt8] {
            var g = SplitMix64(seed: UInt64(truncatingIfNeeded: name.hashValue) ^ seed)
            return (0..<(4096 + Int(g.next() % 20000))).map { _ in UInt8(truncatingIfNeeded: g.next()) }
        }
        func verify(_ round: Int) -> Bool {
            for slot in 0..<3 {
                for (name, data) in files where readFile("\(c.mnt(slot))/\(name)") != data {
                    Issue.record("seed \(seed) round \(round): \(name) differs on mount \(slot)\n\(c.logs())")
                    return false
                }
            }
            return true
        }
        for round in 0..<kills {
            for slot in 0..<3 {
                let dir = "r\(round)-m\(slot)"
                #expect(mkdir("\(c.mnt(slot))/\(dir)", 0o755) == 0)
                for i in 0..<100 {
                    let name = "\(dir)/f\(i)"
                    let data = content(name)
                    try writeFile("\(c.mnt(slot))/\(name)", data, fsync: true)
                    files[name] = data
                }
                // unlink some of the previous round's files from another mount
                if round > 0 {
                    for i in stride(from: 0, to: 100, by: 4) {
                        let name = "r\(round - 1)-m\((slot + 1) % 3)/f\(i)"
                        #expect(unlink("\(c.mnt(slot))/\(name)") == 0, "seed \(seed): unlink \(name): errno \(errno)")
                        files[name] = nil
                    }
                }
            }
            let leader = try #require(c.leader(among: [0, 1, 2]), "seed \(seed)\n\(c.logs())")
            #expect(MountEnv.sh("\(c.bin) trigger -p \(c.mnt(leader)) log_merge_force_finalize_ours").0 == 0)
            for slot in 0..<3 { _ = MountEnv.sh("\(c.bin) sync -p \(c.mnt(slot))") }
            // the merge is under way on every mount: kill the server or a merging mount
            usleep(UInt32(rng.next() % 1_500_000))
            let victim = round % 2 == 0 ? leader : (leader + 1 + Int(rng.next() % 2)) % 3
            let pid = try #require(c.daemonPid(victim))
            kill(pid, SIGKILL)
            #expect(waitFor(seconds: 10) { kill(pid, 0) != 0 } != nil, "seed \(seed): daemon \(pid) still there")
            MountEnv.sh("umount -l \(c.mnt(victim))")
            try c.mount([victim])
            guard verify(round) else { return }
        }
        // the last merge finishes on whichever server leads now
        let leader = try #require(c.leader(among: [0, 1, 2]), "seed \(seed)\n\(c.logs())")
        let before = Self.counter(c, leader, "log_merge_complete") ?? 0
        #expect(MountEnv.sh("\(c.bin) trigger -p \(c.mnt(leader)) log_merge_force_finalize_ours").0 == 0)
        let merged = waitFor(seconds: 120) { (Self.counter(c, leader, "log_merge_complete") ?? 0) > before }
        #expect(merged != nil, "seed \(seed): no merge completed on the last server\n\(c.logs())")
        _ = verify(kills)
        #expect(c.unmount([0, 1, 2]) == 0, "seed \(seed)\n\(c.logs())")
        let (prc, printed) = MountEnv.sh("\(c.bin) print \(c.meta(0)) > /dev/null")
        #expect(prc == 0, "seed \(seed): print of the volume failed: \(printed)")
        let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
        #expect(check.0 == 0, "seed \(seed): check: \(check.1)")
    }
}
