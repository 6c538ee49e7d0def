import Glibc
import ScoutFormat
import ScoutTestSupport
import Testing

@testable import ScoutDaemon

extension Cluster {
    /// The rid of the live mount registered at a member's mountpoint.
    func rid(_ slot: Int) -> UInt64? { liveEntry(slot)?.rid }

    /// Mounts the three members, kills a follower's daemon with SIGKILL, detaches its dead
    /// mount (as an administrator would) and mounts that member again at the same path.
    func killAndRemountAFollower() throws -> (leader: Int, member: Int, killed: UInt64, newPid: pid_t) {
        try mount([0, 1, 2])
        let leading = try #require(self.leader(among: [0, 1, 2]), "\(logs())")
        let member = [0, 1, 2].first { $0 != leading }!
        let killed = try #require(rid(member), "no registry entry for member \(member)")
        let pid = try #require(daemonPid(member))
        kill(pid, SIGKILL)
        #expect(waitFor(seconds: 10) { kill(pid, 0) != 0 } != nil, "daemon \(pid) still there")
        MountEnv.sh("umount -l \(mnt(member))")
        try mount([member])
        #expect(rid(member) != killed)
        return (leading, member, killed, try #require(daemonPid(member)))
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
    /// listener (TCP), its control socket and its registry entry: checked the moment the
    /// umount(2) call returns, then the same slot is mounted again at once. Round after round,
    /// the leader's slot too.
    @Test func umountReturnsOnlyOnceTheSlotIsFree() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        for round in 0..<6 {
            let slot = round % 3
            let rid = try #require(c.rid(slot))
            let socket = try #require(try MountRegistry(runDirectory: c.dir + "/run").lookup(rid: rid)).controlSocket
            guard umount2(c.mnt(slot), 0) == 0 else {
                Issue.record("round \(round): umount \(c.mnt(slot)): errno \(errno)\n\(c.logs())")
                return
            }
            let udp = Self.bindError(SOCK_DGRAM, c.address(slot), c.port)
            let tcp = Self.bindError(SOCK_STREAM, c.address(slot), c.port)
            let registered = (try? MountRegistry(runDirectory: c.dir + "/run").lookup(rid: rid)) != nil
            let controlSocket = access(socket, F_OK) == 0
            #expect(udp == 0, "round \(round): the quorum UDP port is still taken (errno \(udp))")
            #expect(tcp == 0, "round \(round): the server's TCP port is still taken (errno \(tcp))")
            #expect(!registered, "round \(round): the registry entry is still there")
            #expect(!controlSocket, "round \(round): the control socket is still there")
            let (rc, out) = MountEnv.sh(c.mountCommand(slot))
            #expect(rc == 0, "round \(round), slot \(slot): \(out)\n\(c.logs())")
            if rc != 0 { return }
        }
        #expect(c.healthy(0, readOn: 2, name: "after-remounts"))
        #expect(c.unmount([0, 1, 2]) == 0, "\(c.logs())")
    }

    /// 0 when a socket of `type` can be bound to `host:port` right now (TCP with SO_REUSEADDR,
    /// so only a listener counts), else the errno.
    static func bindError(_ type: __socket_type, _ host: String, _ port: Int) -> Int32 {
        let fd = socket(AF_INET, Int32(type.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        if type == SOCK_STREAM {
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &addr.sin_addr)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return rc == 0 ? 0 : errno
    }

    /// The local fence script fences the rid, not the path: fencing a killed member's rid after
    /// a new mount took its mountpoint leaves the new mount alone.
    @Test func fencingAKilledRidSparesTheNewMountAtItsPath() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        let (leader, member, old, newPid) = try c.killAndRemountAFollower()
        let new = try #require(c.rid(member))

        let (rc, out) = MountEnv.sh(
            "SCOUTFS_RUN_DIR=\(c.dir)/run SCOUTFS_FENCED_REQ_RID=\(old.paddedHex) SCOUTFS_FENCED_REQ_IP=127.0.0.1 "
                + "timeout 60 bash \(MountEnv.root)/scripts/scoutfs-fence-local")
        #expect(rc == 0, "\(out)")
        #expect(out.contains("is not running"), "\(out)")
        #expect(!out.contains("killing") && !out.contains("aborted") && !out.contains("unmounted"), "\(out)")
        #expect(kill(newPid, 0) == 0)
        #expect(c.healthy(member, readOn: leader, name: "after-fence"), "\(c.logs())")
        #expect(try MountRegistry(runDirectory: c.dir + "/run").lookup(rid: new) != nil)
        #expect(c.unmount([0, 1, 2]) == 0, "\(c.logs())")
        let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
        #expect(check.0 == 0, "check: \(check.1)")
    }

    /// A member killed with SIGKILL and mounted again at once: the server fences the killed rid
    /// when its reconnect window (20 s) runs out, and the new mount at the same path lives on.
    @Test func aRemountSurvivesTheReconnectFenceOfItsKilledRid() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        let (leader, member, old, newPid) = try c.killAndRemountAFollower()

        let fenced = waitFor(seconds: 60) {
            let log = (try? TempDir.readText("\(c.dir)/fenced.log")) ?? ""
            return log.contains("fenced rid \(old.paddedHex)") || log.contains("no mount with rid \(old.paddedHex)")
        }
        #expect(fenced != nil, "the killed rid was not fenced\n\(c.logs())")
        #expect(c.logs().contains("client_reconnect") || c.logs().contains("reconnect timed out"), "\(c.logs())")
        usleep(500_000)
        #expect(kill(newPid, 0) == 0, "the new mount's daemon was killed\n\(c.logs())")
        #expect(c.healthy(member, readOn: leader, name: "after-reconnect-fence"), "\(c.logs())")
        #expect(c.unmount([0, 1, 2]) == 0, "\(c.logs())")
        let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
        #expect(check.0 == 0, "check: \(check.1)")
    }

    /// The three members unmount together right after a leader change, while one of them is
    /// busy: a new server is still recovering the members' locks (a busy member has many)
    /// when their farewells arrive. The last majority must leave together, never one member
    /// alone (which strands the other without a quorum until its farewell gives up after 60 s):
    /// every unmount finishes well within that.
    @Test func lastMembersUnmountTogetherRightAfterALeaderChange() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        let all = [0, 1, 2]
        let leader = try #require(c.leader(among: all), "\(c.logs())")
        let busy = all.first { $0 != leader }!
        // the busy member holds many locks and has more to write when the unmounts start
        let write = { (n: Int, sync: String) in
            "for d in $(seq 1 \(n)); do mkdir -p \(c.mnt(busy))/d$d && for i in 1 2 3; do "
                + "head -c 65536 /dev/urandom > \(c.mnt(busy))/d$d/f$i || exit 1; done; done\(sync)"
        }
        #expect(MountEnv.sh(write(40, "; \(c.bin) sync -p \(c.mnt(busy))")).0 == 0, "\(c.logs())")
        // the leader leaves and comes back: a new server recovers every member's locks
        let (rc, out) = MountEnv.sh("timeout 60 umount \(c.mnt(leader)) && \(c.mountCommand(leader))")
        #expect(rc == 0, "\(out)\n\(c.logs())")
        var commands: [(String, String)] = []
        for slot in all {
            let cmd = slot == busy ? "\(write(10, "")); timeout 90 umount \(c.mnt(slot))" : "timeout 90 umount \(c.mnt(slot))"
            commands.append((cmd, "umount.\(slot)"))
        }
        let start = monotonicSeconds()
        let rcs = try c.inBackground(commands, seconds: 120)
        let took = monotonicSeconds() - start
        #expect(rcs == [0, 0, 0], "exits \(rcs) after \(took) s\n\(c.logs())")
        #expect(took < 45, "unmounting took \(took) s\n\(c.logs())")
        #expect(!c.logs().contains("farewell not answered"), "\(c.logs())")
        #expect(MountEnv.sh("\(c.bin) print \(c.dir)/meta").0 == 0)
        let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
        #expect(check.0 == 0, "check: \(check.1)")
    }
}
}
