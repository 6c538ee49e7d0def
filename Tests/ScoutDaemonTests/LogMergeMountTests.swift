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
        let (prc, printed) = MountEnv.sh("\(c.bin) print \(c.meta(1))")
        #expect(prc == 0)
        #expect(!printed.contains("del-") && !printed.contains("old-"), "print still shows deleted names")
        for name in live.sorted().prefix(20) {
            let base = String(name.split(separator: "/")[1])
            #expect(printed.contains(base), "\(base) not in print")
        }
        let (_, after) = MountEnv.sh("\(c.bin) print \(c.meta(0)) | grep -cE '^    rid [0-9]+ nr '")
        #expect(Int(after.trimmingCharacters(in: " \n")) ?? 99 <= 3, "log trees before \(before), after \(after)")
        for slot in 0..<3 {
            let (rc, out) = MountEnv.sh("cd \(c.mnt(slot)) && ls d0 d1 d2 | grep -c -- -")
            #expect(rc == 0 && out.trimmingCharacters(in: " \n") == "600", "mount \(slot) lists \(out)")
            #expect(readFile("\(c.mnt(slot))/d\((slot + 1) % 3)/new-\((slot + 1) % 3)-7") == Array("7\n".utf8))
        }
        #expect(c.unmount([0, 1, 2]) == 0, "\(c.logs())")
    }
}
}
