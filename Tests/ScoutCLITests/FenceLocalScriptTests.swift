import Glibc
import ScoutDaemon
import ScoutTestSupport
import Testing

/// `scripts/scoutfs-fence-local` against mount registry entries of stand-in daemons
/// (`sleep` processes; their "mountpoints" are plain directories, so nothing is unmounted).
@Suite struct FenceLocalScriptTests {
    static func fence(rid: String, runDir: String) throws -> (Int32, String) {
        try Proc.run(
            ["/bin/bash", Proc.fenceLocal],
            env: ["SCOUTFS_RUN_DIR": runDir, "SCOUTFS_FENCED_REQ_RID": rid, "SCOUTFS_FENCED_REQ_IP": "127.0.0.1",
                  "SCOUTFS_FENCE_LOCAL_WAIT": "5"],
            seconds: 30)
    }

    /// A `sleep` standing in for a mount daemon, registered under `rid`.
    static func standIn(rid: UInt64, runDir: String, pidStart: UInt64? = nil) throws -> Child {
        let child = try Child(["/bin/sleep", "600"])
        let pid = child.pid
        // the start time is set at fork, so it is already final
        let start = try #require(MountRegistry.startTime(pid: pid))
        mkdir(runDir + "/mnt", 0o755)
        try MountRegistry(runDirectory: runDir).register(MountRegistry.Entry(
            rid: rid, pid: pid, pidStart: pidStart ?? start, mountpoint: runDir + "/mnt",
            dataDevice: "/dev/null", controlSocket: runDir + "/dev-0-1.sock"))
        return child
    }

    @Test func killsTheDaemonAndRemovesTheEntry() throws {
        let dir = try TempDir.make(prefix: "fence-local")
        defer { TempDir.remove(dir) }
        let daemon = try Self.standIn(rid: 0x1234_abcd, runDir: dir)
        defer { daemon.stop() }
        let pid = daemon.pid
        // another mount on the host stays untouched
        let other = try Self.standIn(rid: 0x99, runDir: dir)
        defer { other.stop() }

        let (code, out) = try Self.fence(rid: "000000001234ABCD", runDir: dir)
        #expect(code == 0, "\(out)")
        #expect(out.contains("killing mount daemon \(pid) of rid 000000001234abcd"))
        #expect(out.contains("fenced rid 000000001234abcd"))
        let status = try #require(daemon.wait(seconds: 10))
        #expect(status & 0x7f == SIGKILL)
        #expect(try MountRegistry(runDirectory: dir).lookup(rid: 0x1234_abcd) == nil)

        #expect(other.wait(seconds: 0.1) == nil)
        #expect(try MountRegistry(runDirectory: dir).lookup(rid: 0x99) != nil)
    }

    @Test func unknownRidIsNotOurs() throws {
        let dir = try TempDir.make(prefix: "fence-local-unknown")
        defer { TempDir.remove(dir) }
        let (code, out) = try Self.fence(rid: "00000000000000ee", runDir: dir)
        #expect(code == 0, "\(out)")
        #expect(out.contains("no mount with rid 00000000000000ee on this host"))
    }

    @Test func reusedPidIsLeftAlone() throws {
        let dir = try TempDir.make(prefix: "fence-local-reused")
        defer { TempDir.remove(dir) }
        let daemon = try Self.standIn(rid: 0x42, runDir: dir, pidStart: 1)
        defer { daemon.stop() }
        let (code, out) = try Self.fence(rid: "42", runDir: dir)
        #expect(code == 0, "\(out)")
        #expect(!out.contains("killing"))
        #expect(daemon.wait(seconds: 0.1) == nil)
        #expect(try MountRegistry(runDirectory: dir).lookup(rid: 0x42) == nil)
    }

    @Test(arguments: ["", "xyz", "12345678901234567", "12 34"])
    func badRid(_ rid: String) throws {
        let dir = try TempDir.make(prefix: "fence-local-bad")
        defer { TempDir.remove(dir) }
        let (code, out) = try Self.fence(rid: rid, runDir: dir)
        #expect(code == 1)
        #expect(out.contains("scoutfs-fence-local: SCOUTFS_FENCED_REQ_RID"))
    }

    @Test func malformedEntry() throws {
        let dir = try TempDir.make(prefix: "fence-local-malformed")
        defer { TempDir.remove(dir) }
        mkdir(dir + "/mounts", 0o755)
        try Proc.write(dir + "/mounts/0000000000000007", "rid=0000000000000007\npid=nope\nmountpoint=/x\n")
        let (code, out) = try Self.fence(rid: "7", runDir: dir)
        #expect(code == 1)
        #expect(out.contains("has no valid pid"))
        #expect(access(dir + "/mounts/0000000000000007", F_OK) == 0)
    }
}
