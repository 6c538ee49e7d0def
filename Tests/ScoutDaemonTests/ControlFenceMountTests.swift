import Glibc
import ScoutTestSupport
import Testing

@testable import ScoutDaemon

/// `scripts/scoutfs-fence-local` against a real FUSE mount of the built daemon: the daemon is
/// killed, its connection aborted and the mountpoint detached. (The mount registers itself
/// once the mount wires `MountRegistry` in; here the test writes the entry.)
extension RealMounts {
@Suite("fence-local against a FUSE mount", .serialized, .enabled(if: MountEnv.usable), .timeLimit(.minutes(3)))
struct ControlFenceMountTests {
    static func mounted(_ mnt: String) -> Bool {
        let text = (try? TempDir.readText("/proc/self/mountinfo")) ?? ""
        return text.split(separator: "\n").contains { $0.split(separator: " ").dropFirst(4).first.map(String.init) == mnt }
    }

    @Test func fencesALiveMount() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        try v.mount()
        let mnt = MountRegistry.canonical(v.mnt)
        #expect(Self.mounted(mnt))
        let pid = try #require(v.daemonPid())
        let runDir = v.dir + "/run"
        let rid: UInt64 = 0x00c0_ffee_0000_0001
        var st = stat()
        #expect(stat(mnt, &st) == 0)
        try MountRegistry(runDirectory: runDir).register(MountRegistry.Entry(
            rid: rid, pid: pid, pidStart: MountRegistry.startTime(pid: pid) ?? 0, mountpoint: mnt,
            device: MountRegistry.deviceNumber(st.st_dev), dataDevice: v.dir + "/data", controlSocket: ""))

        let script = MountEnv.root + "/scripts/scoutfs-fence-local"
        let (code, out) = MountEnv.sh(
            "SCOUTFS_RUN_DIR=\(runDir) SCOUTFS_FENCED_REQ_RID=00c0ffee00000001 SCOUTFS_FENCED_REQ_IP=127.0.0.1 timeout 60 bash \(script)")
        #expect(code == 0, "\(out)")
        #expect(out.contains("killing mount daemon \(pid)"))
        #expect(out.contains("aborted FUSE connection /sys/fs/fuse/connections/") || out.contains("no FUSE connection directory"))
        #expect(out.contains("unmounted \(mnt)"))
        // gone (the script waited until it was at most a zombie for init to reap)
        var gone = false
        for _ in 0..<100 where !gone {
            gone = kill(pid, 0) != 0
            if !gone { usleep(50_000) }
        }
        #expect(gone)
        #expect(!Self.mounted(mnt))
        #expect(try MountRegistry(runDirectory: runDir).lookup(rid: rid) == nil)
        // the killed mount left a consistent volume (its mount still recorded, not yet reclaimed)
        let check = MountEnv.sh("\(MountEnv.binary) check \(v.dir)/meta \(v.dataPath)")
        #expect(check.0 == 0, "check: \(check.1)")
    }
}
}
