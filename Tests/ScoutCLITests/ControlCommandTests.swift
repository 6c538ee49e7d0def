import Glibc
import ScoutDaemon
import ScoutTestSupport
import Synchronization
import Testing

/// `scoutfs quorum-status` and `scoutfs mount-option` (the built binary) against a control
/// server in the test process, found the CLI's way: the device of `-p PATH` names the socket
/// in `$SCOUTFS_RUN_DIR`.
@Suite struct ControlCommandTests {
    /// A control server for the file system holding a new temporary directory.
    struct Fixture {
        let dir: String
        let server: ControlServer
        let options: OptionsBox
        var runDir: String { dir + "/run" }
        var env: [String: String] { ["SCOUTFS_RUN_DIR": runDir] }

        static func make(quorumText: String?) throws -> Fixture {
            let dir = try TempDir.make(prefix: "control-cli")
            var st = stat()
            guard stat(dir, &st) == 0 else { throw SetupFailure("stat \(dir)") }
            var base = MountOptions()
            base.metadevPath = "/dev/meta"
            let box = OptionsBox(base)
            let server = try ControlServer.start(
                path: ControlSocket.path(device: st.st_dev, directory: dir + "/run"), volume: nil,
                sources: ControlSources(
                    rid: 5, quorumStatus: { quorumText }, mountOptions: { box.list },
                    setMountOption: { name, value throws(MountError) in try box.set(name, value) }),
                logger: Proc.quiet)
            return Fixture(dir: dir, server: server, options: box)
        }

        func scoutfs(_ args: [String], env extra: [String: String] = [:]) throws -> (Int32, String) {
            try Proc.run([Proc.binary] + args, env: env.merging(extra) { $1 }, seconds: 30)
        }

        func finish() {
            server.stop()
            TempDir.remove(dir)
        }
    }

    final class OptionsBox: Sendable {
        let options: Mutex<MountOptions>
        init(_ o: MountOptions) { options = Mutex(o) }
        var list: [(String, String)] { options.withLock { $0.controlList } }
        func set(_ name: String, _ value: String) throws(MountError) {
            let next = try options.withLock { $0 }.settingLive(name, value)
            options.withLock { $0 = next }
        }
    }

    @Test func quorumStatus() throws {
        try #require(access(Proc.binary, X_OK) == 0, "build the scoutfs binary first (swift build --build-tests)")
        let member = try Fixture.make(quorumText: "quorum_slot_nr 1\nterm 9\nrole 2 (leader)\n")
        defer { member.finish() }
        #expect(try member.scoutfs(["quorum-status", "-p", member.dir]) == (0, "quorum_slot_nr 1\nterm 9\nrole 2 (leader)\n"))
        // $SCOUTFS_MOUNT_PATH when there is no -p
        #expect(try member.scoutfs(["quorum-status"], env: ["SCOUTFS_MOUNT_PATH": member.dir]).1 == "quorum_slot_nr 1\nterm 9\nrole 2 (leader)\n")

        let other = try Fixture.make(quorumText: nil)
        defer { other.finish() }
        let (code, out) = try other.scoutfs(["quorum-status", "-p", other.dir])
        #expect(code == 1)
        #expect(out.hasPrefix("scoutfs: quorum-status failed: this mount is not a quorum member"))
        #expect(out.hasSuffix("(\(ENOENT))\n"))
    }

    @Test func notAMount() throws {
        try #require(access(Proc.binary, X_OK) == 0, "build the scoutfs binary first (swift build --build-tests)")
        let dir = try TempDir.make(prefix: "control-cli-none")
        defer { TempDir.remove(dir) }
        let (code, out) = try Proc.run([Proc.binary, "quorum-status", "-p", dir], env: ["SCOUTFS_RUN_DIR": dir + "/run"])
        #expect(code == 1)
        #expect(out.hasPrefix("scoutfs: quorum-status failed: \(dir) is not in a mounted scoutfs filesystem"))
    }

    @Test func mountOption() throws {
        try #require(access(Proc.binary, X_OK) == 0, "build the scoutfs binary first (swift build --build-tests)")
        let f = try Fixture.make(quorumText: nil)
        defer { f.finish() }
        let (code, all) = try f.scoutfs(["mount-option", "-p", f.dir])
        #expect(code == 0)
        #expect(all.split(separator: "\n").contains("orphan_scan_delay_ms 10000"))
        #expect(all.split(separator: "\n").contains("quorum_slot_nr -1"))
        #expect(try f.scoutfs(["mount-option", "-p", f.dir, "orphan_scan_delay_ms"]) == (0, "10000\n"))
        #expect(try f.scoutfs(["mount-option", "-p", f.dir, "orphan_scan_delay_ms", "250"]) == (0, ""))
        #expect(f.options.options.withLock { $0.orphanScanDelayMs } == 250)
        #expect(try f.scoutfs(["mount-option", "-p", f.dir, "orphan_scan_delay_ms"]) == (0, "250\n"))

        let (badCode, bad) = try f.scoutfs(["mount-option", "-p", f.dir, "orphan_scan_delay_ms", "5"])
        #expect(badCode == 1)
        #expect(bad.hasPrefix("scoutfs: mount-option failed: invalid orphan_scan_delay_ms value 5"))
        #expect(bad.hasSuffix("(\(EINVAL))\n"))
        #expect(f.options.options.withLock { $0.orphanScanDelayMs } == 250)

        let (unknownCode, unknown) = try f.scoutfs(["mount-option", "-p", f.dir, "warp_speed"])
        #expect(unknownCode == 1)
        #expect(unknown == "scoutfs: mount-option failed: unknown mount option 'warp_speed': \(String(cString: strerror(ENOENT))) (\(ENOENT))\n")

        // a usage error: argp's message and exit 64
        let (spaceCode, space) = try f.scoutfs(["mount-option", "-p", f.dir, "lock_idle_count", "1 2"])
        #expect(spaceCode == 64)
        #expect(space.hasPrefix("mount-option: names and values cannot be empty or hold white space: '1 2'\n"))
    }
}
