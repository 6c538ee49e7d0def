import Glibc
import Logging
import ScoutFS
import ScoutServer
import ScoutTestSupport
import Synchronization
import Testing

@testable import ScoutDaemon

/// Runs a closure on a new thread.
enum Thread {
    static func detach(_ body: @escaping @Sendable () -> Void) {
        ClientLink.onThread(body)
    }
}

/// A clock tests move by hand.
final class ManualClock: Sendable {
    let ns = Atomic<UInt64>(1_000_000_000)
    func advance(seconds: UInt64) { ns.add(seconds * 1_000_000_000, ordering: .relaxed) }
    var now: UInt64 { ns.load(ordering: .relaxed) }
}

/// A control server on a socket in a temporary run directory, with fake sources.
struct ControlFixture {
    let dir: String
    let server: ControlServer
    let fences: FenceRequests
    let clock: ManualClock
    let options: OptionsBox
    var socket: String { server.path }

    static let quiet = Logger(label: "control-test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A server with a fence table (nil `withFences` gives none), a quorum status text (nil:
    /// not a member) and live options.
    static func make(withFences: Bool = true, quorumText: String? = "quorum_slot_nr 0\nterm 7\n") throws -> ControlFixture {
        let dir = try TempDir.make(prefix: "control")
        let clock = ManualClock()
        let fences = FenceRequests(clock: { clock.now })
        var base = MountOptions()
        base.metadevPath = "/dev/meta"
        base.quorumSlotNr = 0
        let box = OptionsBox(base)
        let sources = ControlSources(
            rid: 0x0123_4567_89ab_cdef,
            fences: { withFences ? fences : nil },
            quorumStatus: { quorumText },
            mountOptions: { box.list },
            setMountOption: { name, value throws(MountError) in try box.set(name, value) })
        let server = try ControlServer.start(path: dir + "/run/dev-0-99.sock", volume: nil, sources: sources, logger: quiet)
        return ControlFixture(dir: dir, server: server, fences: fences, clock: clock, options: box)
    }

    func request(_ line: String) throws -> (ok: Bool, errno: Int32, body: String) {
        try ControlSocket.request(path: socket, line, timeoutSeconds: 5)
    }

    func finish() {
        server.stop()
        TempDir.remove(dir)
    }
}

/// The live options behind the fake sources.
final class OptionsBox: Sendable {
    let options: Mutex<MountOptions>
    init(_ o: MountOptions) { options = Mutex(o) }
    var list: [(String, String)] { options.withLock { $0.controlList } }
    func set(_ name: String, _ value: String) throws(MountError) {
        let current = options.withLock { $0 }
        let next = try current.settingLive(name, value)
        options.withLock { $0 = next }
    }
}

@Suite struct ControlServerTests {
    @Test func ridAndUnknownCommands() throws {
        let f = try ControlFixture.make()
        defer { f.finish() }
        #expect(try f.request("rid") == (true, 0, "0123456789abcdef\n"))
        let unknown = try f.request("frobnicate")
        #expect(!unknown.ok && unknown.errno == EINVAL && unknown.body.contains("frobnicate"))
        let extra = try f.request("rid now")
        #expect(!extra.ok && extra.errno == EINVAL)
        let empty = try f.request("")
        #expect(!empty.ok && empty.errno == EINVAL)
        // no volume behind this socket
        let df = try f.request("df")
        #expect(!df.ok && df.errno == ENODEV)
    }

    @Test func fenceListAndAnswerRoundTrip() throws {
        let f = try ControlFixture.make()
        defer { f.finish() }
        #expect(try f.request("fence-list") == (true, 0, ""))
        f.fences.start(rid: 0xabc, ipv4: 0x0a00_0002, reason: .clientRecovery)
        f.clock.advance(seconds: 3)
        f.fences.start(rid: 0xffff_0000_0000_0001, ipv4: 0xc0a8_0101, reason: .quorumBlockLeader)
        f.clock.advance(seconds: 1)
        let listed = try f.request("fence-list")
        #expect(listed.ok)
        #expect(listed.body == """
            0000000000000abc 10.0.0.2 client_recovery 4 0 0
            ffff000000000001 192.168.1.1 quorum_block_leader 1 0 0

            """)

        #expect(try f.request("fence-answer 0000000000000abc fenced") == (true, 0, ""))
        #expect(f.fences.request(rid: 0xabc)?.fenced == true)
        #expect(try f.request("fence-answer 0xFFFF000000000001 error") == (true, 0, ""))
        #expect(f.fences.request(rid: 0xffff_0000_0000_0001)?.error == true)
        let after = try f.request("fence-list")
        #expect(after.body.split(separator: "\n") == [
            "0000000000000abc 10.0.0.2 client_recovery 4 1 0",
            "ffff000000000001 192.168.1.1 quorum_block_leader 1 0 1",
        ])

        let missing = try f.request("fence-answer 1234 fenced")
        #expect(!missing.ok && missing.errno == ENOENT && missing.body.contains("0000000000001234"))
    }

    @Test func fenceAnswerBadInput() throws {
        let f = try ControlFixture.make()
        defer { f.finish() }
        f.fences.start(rid: 7, ipv4: 1, reason: .clientReconnect)
        for line in [
            "fence-answer", "fence-answer 7", "fence-answer 7 fenced now", "fence-answer 7 yes",
            "fence-answer xyz fenced", "fence-answer 0x fenced", "fence-answer 12345678901234567 fenced",
            "fence-answer -7 fenced",
        ] {
            let r = try f.request(line)
            #expect(!r.ok && r.errno == EINVAL, "\(line)")
        }
        #expect(f.fences.request(rid: 7)?.isPending == true)
    }

    @Test func fenceAnswerNeedsRoot() throws {
        let f = try ControlFixture.make()
        defer { f.finish() }
        f.fences.start(rid: 7, ipv4: 1, reason: .clientReconnect)
        let refused = f.server.handle("fence-answer 7 fenced", uid: 1000)
        #expect(refused.hasPrefix("ERR \(EPERM) "))
        #expect(f.fences.request(rid: 7)?.isPending == true)
        #expect(f.server.handle("fence-list", uid: 1000).hasPrefix("OK\n0000000000000007 "))
        #expect(f.server.handle("fence-answer 7 fenced", uid: 0) == "OK\n")
        #expect(f.fences.request(rid: 7)?.fenced == true)
    }

    @Test func noServerNoFences() throws {
        let f = try ControlFixture.make(withFences: false)
        defer { f.finish() }
        #expect(try f.request("fence-list") == (true, 0, ""))
        let r = try f.request("fence-answer 7 fenced")
        #expect(!r.ok && r.errno == ENOENT)
    }

    @Test func quorumStatus() throws {
        let member = try ControlFixture.make()
        defer { member.finish() }
        #expect(try member.request("quorum-status") == (true, 0, "quorum_slot_nr 0\nterm 7\n"))
        let other = try ControlFixture.make(quorumText: nil)
        defer { other.finish() }
        let r = try other.request("quorum-status")
        #expect(!r.ok && r.errno == ENOENT && r.body.contains("not a quorum member"))
    }

    @Test func mountOptions() throws {
        let f = try ControlFixture.make()
        defer { f.finish() }
        let all = try f.request("mount-option")
        #expect(all.ok)
        let lines = all.body.split(separator: "\n")
        #expect(lines.contains("quorum_heartbeat_timeout_ms 10000"))
        #expect(lines.contains("metadev_path /dev/meta"))
        #expect(lines.contains("quorum_slot_nr 0"))
        #expect(try f.request("mount-option lock_idle_count") == (true, 0, "10000\n"))

        #expect(try f.request("mount-option quorum_heartbeat_timeout_ms 2500") == (true, 0, ""))
        #expect(try f.request("mount-option quorum_heartbeat_timeout_ms") == (true, 0, "2500\n"))

        let range = try f.request("mount-option quorum_heartbeat_timeout_ms 100")
        #expect(!range.ok && range.errno == EINVAL && range.body.contains("2000"))
        let word = try f.request("mount-option lock_idle_count many")
        #expect(!word.ok && word.errno == EINVAL)
        let injected = try f.request("mount-option lock_idle_count 64,quorum_slot_nr=3")
        #expect(!injected.ok && injected.errno == EINVAL)
        let fixed = try f.request("mount-option metadev_path /dev/other")
        #expect(!fixed.ok && fixed.errno == EINVAL && fixed.body.contains("cannot be changed"))
        let unknown = try f.request("mount-option no_such_option")
        #expect(!unknown.ok && unknown.errno == ENOENT && unknown.body.contains("no_such_option"))
        let unknownSet = try f.request("mount-option no_such_option 1")
        #expect(!unknownSet.ok && unknownSet.errno == ENOENT)
        let tooMany = try f.request("mount-option lock_idle_count 64 65")
        #expect(!tooMany.ok && tooMany.errno == EINVAL)
        #expect(try f.request("mount-option quorum_heartbeat_timeout_ms") == (true, 0, "2500\n"))

        #expect(f.server.handle("mount-option lock_idle_count 64", uid: 1000).hasPrefix("ERR \(EPERM) "))
        #expect(f.server.handle("mount-option lock_idle_count", uid: 1000) == "OK\n10000\n")
    }

    @Test func defaultSourcesRefuseChanges() throws {
        let dir = try TempDir.make(prefix: "control-default")
        defer { TempDir.remove(dir) }
        let s = try ControlServer.start(path: dir + "/c.sock", volume: nil, logger: ControlFixture.quiet)
        defer { s.stop() }
        let sources = ControlSources(mountOptions: { [("lock_idle_count", "10000")] })
        do throws(MountError) {
            try sources.setMountOption("lock_idle_count", "64")
            Issue.record("the default setter accepted a change")
        } catch {
            #expect(error.errno == EINVAL)
        }
        #expect(try ControlSocket.request(path: s.path, "rid") == (true, 0, "0000000000000000\n"))
        #expect(try ControlSocket.request(path: s.path, "mount-option") == (true, 0, ""))
        #expect(try ControlSocket.request(path: s.path, "fence-list") == (true, 0, ""))
    }

    /// A slow command (a long sync, say) does not hold up the others.
    @Test func slowCommandDoesNotBlockOthers() throws {
        let dir = try TempDir.make(prefix: "control-slow")
        defer { TempDir.remove(dir) }
        let release = Atomic<Bool>(false)
        let entered = Atomic<Bool>(false)
        let s = try ControlServer.start(
            path: dir + "/c.sock", volume: nil,
            sources: ControlSources(rid: 9, quorumStatus: {
                entered.store(true, ordering: .releasing)
                for _ in 0..<500 where !release.load(ordering: .acquiring) { usleep(10_000) }
                return "slow\n"
            }),
            logger: ControlFixture.quiet)
        defer { s.stop() }
        let path = s.path
        let slow = Atomic<Bool>(false)
        Thread.detach {
            let r = try? ControlSocket.request(path: path, "quorum-status", timeoutSeconds: 10)
            slow.store(r?.body == "slow\n", ordering: .releasing)
        }
        for _ in 0..<500 where !entered.load(ordering: .acquiring) { usleep(10_000) }
        let didEnter = entered.load(ordering: .acquiring)
        #expect(didEnter)
        let started = monotonicSeconds()
        #expect(try ControlSocket.request(path: path, "rid", timeoutSeconds: 10) == (true, 0, "0000000000000009\n"))
        #expect(monotonicSeconds() - started < 2)
        release.store(true, ordering: .releasing)
        for _ in 0..<500 where !slow.load(ordering: .acquiring) { usleep(10_000) }
        let slowAnswered = slow.load(ordering: .acquiring)
        #expect(slowAnswered)
    }

    @Test func stopRemovesTheSocket() throws {
        let f = try ControlFixture.make()
        #expect(ControlSocket.sockets(in: f.dir + "/run") == [f.socket])
        f.server.stop()
        #expect(access(f.socket, F_OK) != 0)
        #expect(ControlSocket.sockets(in: f.dir + "/run").isEmpty)
        #expect(throws: MountError.self) { try f.request("rid") }
        TempDir.remove(f.dir)
    }

    @Test func runDirectoryFromEnvironment() {
        #expect(ControlSocket.defaultDirectory == "/run/scoutfs")
        #expect(ControlSocket.path(device: 0, directory: "/x") == "/x/dev-0-0.sock")
        // 8:3, glibc's encoding
        #expect(ControlSocket.path(device: (8 << 8) | 3, directory: "/x") == "/x/dev-8-3.sock")
    }
}

@Suite struct MountRegistryTests {
    @Test func registerLookupUnregister() throws {
        let dir = try TempDir.make(prefix: "registry")
        defer { TempDir.remove(dir) }
        let reg = MountRegistry(runDirectory: dir)
        #expect(try reg.lookup(rid: 5) == nil)
        mkdir(dir + "/mnt", 0o755)
        try reg.register(
            rid: 0xfeed, mountpoint: dir + "//mnt/", device: (7 << 8) | 3, dataDevice: dir + "/./data",
            controlSocket: dir + "/dev-0-1.sock")
        let e = try #require(try reg.lookup(rid: 0xfeed))
        #expect(e.pid == getpid())
        #expect(e.pidStart != 0 && e.pidStart == MountRegistry.startTime(pid: getpid()))
        let realDir = MountRegistry.canonical(dir + "/mnt")
        #expect(e.mountpoint == realDir)
        #expect(e.mountpoint.hasPrefix("/") && !e.mountpoint.contains("//"))
        #expect(e.controlSocket == dir + "/dev-0-1.sock")
        #expect(e.device == "7:3")
        let text = try TempDir.readText(dir + "/mounts/000000000000feed")
        #expect(text.contains("rid=000000000000feed\n"))
        #expect(text.contains("pid=\(getpid())\n"))
        #expect(text.contains("mountpoint=\(realDir)\n"))
        #expect(text.contains("device=7:3\n"))
        #expect(reg.entries().map(\.rid) == [0xfeed])

        reg.unregister(rid: 0xfeed)
        #expect(try reg.lookup(rid: 0xfeed) == nil)
        #expect(reg.entries().isEmpty)
        reg.unregister(rid: 0xfeed)
    }

    @Test func badEntries() throws {
        let dir = try TempDir.make(prefix: "registry-bad")
        defer { TempDir.remove(dir) }
        let reg = MountRegistry(runDirectory: dir)
        #expect(throws: MountError.self) {
            try reg.register(MountRegistry.Entry(rid: 1, pid: 1, mountpoint: "/a\nb", dataDevice: "", controlSocket: ""))
        }
        mkdir(reg.directory, 0o755)
        let fd = open(reg.path(rid: 2), O_WRONLY | O_CREAT, 0o644)
        _ = "rid=2\npid=oops\n".withCString { write(fd, $0, strlen($0)) }
        close(fd)
        #expect(throws: MountError.self) { try reg.lookup(rid: 2) }
        #expect(reg.entries().isEmpty)
    }

    @Test func canonicalPaths() throws {
        let dir = try TempDir.make(prefix: "registry-canon")
        defer { TempDir.remove(dir) }
        mkdir(dir + "/real", 0o755)
        symlink(dir + "/real", dir + "/link")
        #expect(MountRegistry.canonical(dir + "/link/m") == MountRegistry.canonical(dir + "/real/m"))
        #expect(MountRegistry.canonical(dir + "/link/m").hasSuffix("/real/m"))
        #expect(MountRegistry.canonical("/") == "/")
        #expect(MountRegistry.canonical("/nonexistent-dir-xyz/m") == "/nonexistent-dir-xyz/m")
        #expect(MountRegistry.startTime(pid: 0) == nil)
    }
}
