import Glibc
import ScoutFormat
import ScoutTestSupport
import Testing

@testable import ScoutDaemon

extension Cluster {
    /// The rid of the mount registered at a member's mountpoint.
    func rid(_ slot: Int) -> UInt64? {
        let mp = MountRegistry.canonical(mnt(slot))
        return MountRegistry(runDirectory: dir + "/run").entries().first { $0.mountpoint == mp }?.rid
    }

    /// Kills a member's daemon with SIGKILL, waits until it is gone and detaches its dead mount
    /// (as an administrator would before mounting there again). Returns the killed rid.
    func killAndDetach(_ slot: Int) throws -> UInt64 {
        let killed = try #require(self.rid(slot), "no registry entry for member \(slot)")
        let pid = try #require(daemonPid(slot))
        kill(pid, SIGKILL)
        #expect(waitFor(seconds: 10) { kill(pid, 0) != 0 } != nil, "daemon \(pid) still there")
        MountEnv.sh("umount -l \(mnt(slot))")
        return killed
    }

    /// Writes a file on one member (synced) and reads it back on another.
    func healthy(_ slot: Int, readOn other: Int, name: String) -> Bool {
        let data = (0..<50_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        guard (try? writeFile(mnt(slot) + "/" + name, data, fsync: true)) != nil else { return false }
        return readFile(mnt(slot) + "/" + name) == data && readFile(mnt(other) + "/" + name) == data
    }
}

/// Unmount, remount and fencing of cluster members (issue 13).
extension RealMounts {
@Suite(.serialized, .enabled(if: MountEnv.usable, "needs root, /dev/fuse and a built scoutfs"))
struct ClusterLifecycleTests {
    /// `umount` returns only once the daemon gave back its quorum slot (UDP), its server's
    /// listener and its control socket: mounting the same slot right after always works.
    @Test func umountThenMountTheSameSlotAtOnce() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        for round in 0..<6 {
            let slot = round % 3  // the leader's slot too
            let (rc, out) = MountEnv.sh("timeout 60 umount \(c.mnt(slot)) && \(c.mountCommand(slot))")
            #expect(rc == 0, "round \(round), slot \(slot): \(out)\n\(c.logs())")
            if rc != 0 { return }
        }
        #expect(c.healthy(0, readOn: 2, name: "after-remounts"))
        #expect(c.unmount([0, 1, 2]) == 0, "\(c.logs())")
    }

    /// The local fence script fences the rid, not the path: fencing a killed member's rid after
    /// a new mount took its mountpoint leaves the new mount alone.
    @Test func fencingAKilledRidSparesTheNewMountAtItsPath() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        let all = [0, 1, 2]
        let leader = try #require(c.leader(among: all), "\(c.logs())")
        let member = all.first { $0 != leader }!
        let old = try c.killAndDetach(member)
        try c.mount([member])
        let new = try #require(c.rid(member))
        #expect(new != old)
        let newPid = try #require(c.daemonPid(member))

        let (rc, out) = MountEnv.sh(
            "SCOUTFS_RUN_DIR=\(c.dir)/run SCOUTFS_FENCED_REQ_RID=\(old.paddedHex) SCOUTFS_FENCED_REQ_IP=127.0.0.1 "
                + "timeout 60 bash \(MountEnv.root)/scripts/scoutfs-fence-local")
        #expect(rc == 0, "\(out)")
        #expect(out.contains("is not running"), "\(out)")
        #expect(!out.contains("killing") && !out.contains("aborted") && !out.contains("unmounted"), "\(out)")
        #expect(kill(newPid, 0) == 0)
        #expect(c.healthy(member, readOn: leader, name: "after-fence"), "\(c.logs())")
        #expect(try MountRegistry(runDirectory: c.dir + "/run").lookup(rid: new) != nil)
        #expect(c.unmount(all) == 0, "\(c.logs())")
    }

    /// A member killed with SIGKILL and mounted again at once: the server fences the killed rid
    /// when its reconnect window (20 s) runs out, and the new mount at the same path lives on.
    @Test func aRemountSurvivesTheReconnectFenceOfItsKilledRid() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        let all = [0, 1, 2]
        let leader = try #require(c.leader(among: all), "\(c.logs())")
        let member = all.first { $0 != leader }!
        let old = try c.killAndDetach(member)
        try c.mount([member])
        let newPid = try #require(c.daemonPid(member))

        let fenced = waitFor(seconds: 60) {
            let log = (try? TempDir.readText("\(c.dir)/fenced.log")) ?? ""
            return log.contains("fenced rid \(old.paddedHex)") || log.contains("no mount with rid \(old.paddedHex)")
        }
        #expect(fenced != nil, "the killed rid was not fenced\n\(c.logs())")
        #expect(c.logs().contains("client_reconnect") || c.logs().contains("reconnect timed out"), "\(c.logs())")
        usleep(500_000)
        #expect(kill(newPid, 0) == 0, "the new mount's daemon was killed\n\(c.logs())")
        #expect(c.healthy(member, readOn: leader, name: "after-reconnect-fence"), "\(c.logs())")
        #expect(c.unmount(all) == 0, "\(c.logs())")
    }

    /// The three members unmount together while one of them is still writing: its farewell
    /// comes last, after a long final commit, and every unmount finishes well within the
    /// farewell's 60 s.
    @Test func lastMembersUnmountTogetherWhileOneIsBusy() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        let all = [0, 1, 2]
        do {
            let busy = c.leader(among: all) ?? 0
            let writer = "for i in $(seq 1 300); do head -c 262144 /dev/urandom > \(c.mnt(busy))/f$i || exit 1; done"
            var commands: [(String, String)] = []
            for slot in all {
                let cmd = slot == busy
                    ? "\(writer); timeout 90 umount \(c.mnt(slot))"
                    : "sleep 1; timeout 90 umount \(c.mnt(slot))"
                commands.append((cmd, "umount.\(slot)"))
            }
            let start = monotonicSeconds()
            let rcs = try c.inBackground(commands, seconds: 120)
            let took = monotonicSeconds() - start
            #expect(rcs == [0, 0, 0], "exits \(rcs) after \(took) s\n\(c.logs())")
            #expect(took < 45, "unmounting took \(took) s\n\(c.logs())")
            #expect(!c.logs().contains("farewell not answered"), "\(c.logs())")
        }
        #expect(MountEnv.sh("\(c.bin) print \(c.dir)/meta").0 == 0)
    }
}
}
