import ArgumentParser
import Glibc
import ScoutDaemon
import ScoutServer
import ScoutTestSupport
import Testing

@testable import ScoutCLI

/// The fencing agent against real control sockets holding fence request tables, with a fake
/// fence program that records what it was given.
@Suite struct FencedCommandTests {
    /// A run directory, a fake fence program and a config naming it.
    struct Setup {
        let dir: String
        var runDir: String { dir + "/run" }
        var ran: String { dir + "/ran" }
        var config: String { dir + "/fenced.conf" }
        var program: String { dir + "/fence-prog" }

        /// The program appends `RID IP ARGS...` (args separated by `|`) to `ran`, and exits 3
        /// for the rid in `$FAIL_RID` of the config, 0 otherwise.
        static func make(failRid: String = "00000000000000bb", delay: String = "0.2") throws -> Setup {
            let s = Setup(dir: try TempDir.make(prefix: "fenced"))
            mkdir(s.runDir, 0o755)
            try Proc.write(s.program, """
                #!/bin/bash
                args=$(printf '%s|' "$@")
                echo "$SCOUTFS_FENCED_REQ_RID $SCOUTFS_FENCED_REQ_IP $args" >> '\(s.ran)'
                [ "$SCOUTFS_FENCED_REQ_RID" = "\(failRid)" ] && exit 3
                exit 0

                """, mode: 0o755)
            try Proc.write(s.config, """
                # test config
                SCOUTFS_FENCED_DELAY=\(delay)
                SCOUTFS_FENCED_RUN='\(s.program)'
                SCOUTFS_FENCED_RUN_ARGS="one 'two three'   four"
                echo "configured" # goes to stderr

                """)
            return s
        }

        func ranLines() -> [String] {
            ((try? TempDir.readText(ran)) ?? "").split(separator: "\n").map(String.init)
        }
    }

    static func fenced(_ args: [String]) throws -> (code: Int32, out: [String], err: [String]) {
        let cmd = try FencedCommand.parse(args)
        var out: [String] = []
        var err: [String] = []
        let code = cmd.execute(out: { out.append($0) }, err: { err.append($0) })
        return (code, out, err)
    }

    @Test func oncePassFencesPendingRequests() throws {
        let s = try Setup.make()
        defer { TempDir.remove(s.dir) }
        let fences = FenceRequests()
        fences.start(rid: 0xaa, ipv4: 0x0a00_0002, reason: .clientRecovery)
        fences.start(rid: 0xbb, ipv4: 0x0a00_0003, reason: .quorumBlockLeader)
        fences.start(rid: 0xcc, ipv4: 0x0a00_0004, reason: .clientReconnect)
        fences.start(rid: 0xdd, ipv4: 0x0a00_0005, reason: .clientReconnect)
        fences.answer(rid: 0xcc, fenced: true)
        fences.answer(rid: 0xdd, fenced: false)
        let leader = try ControlServer.start(
            path: s.runDir + "/dev-0-1.sock", volume: nil,
            sources: ControlSources(rid: 1, fences: { fences }), logger: Proc.quiet)
        defer { leader.stop() }
        // a follower's socket (no server), a dead socket, and a file that is not a socket
        let follower = try ControlServer.start(path: s.runDir + "/dev-0-2.sock", volume: nil, logger: Proc.quiet)
        defer { follower.stop() }
        let dead = try ControlServer.start(path: s.runDir + "/dev-0-3.sock", volume: nil, logger: Proc.quiet)
        let deadPath = dead.path
        dead.stop()
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in for (i, b) in Array(deadPath.utf8).enumerated() { raw[i] = b } }
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        close(fd)  // bound, never listening: connections are refused
        try Proc.write(s.runDir + "/junk.sock", "not a socket\n")

        let r = try Self.fenced(["--config", s.config, "--run-dir", s.runDir, "--once"])
        #expect(r.code == 0)
        #expect(r.err.isEmpty)
        #expect(s.ranLines() == [
            "00000000000000aa 10.0.0.2 one|'two|three'|four|",
            "00000000000000bb 10.0.0.3 one|'two|three'|four|",
        ])
        #expect(fences.request(rid: 0xaa)?.fenced == true)
        #expect(fences.request(rid: 0xaa)?.error == false)
        #expect(fences.request(rid: 0xbb)?.error == true)
        #expect(fences.request(rid: 0xbb)?.fenced == false)

        let leaderPath = leader.path
        #expect(r.out.contains { $0.hasSuffix("] server \(leaderPath) fencing rid 00000000000000aa at IP 10.0.0.2 for client_recovery") })
        #expect(r.out.contains { $0.hasSuffix("] server \(leaderPath) fencing rid 00000000000000bb at IP 10.0.0.3 for quorum_block_leader") })
        #expect(r.out.contains { $0.hasSuffix("] server \(leaderPath) fencing rid 00000000000000bb saw error status 3") })
        #expect(r.out.contains { $0.hasSuffix("] reading config file \(s.config)") })
        #expect(r.out.contains { $0.hasSuffix("]     config var SCOUTFS_FENCED_DELAY=0.2") })
        #expect(!r.out.contains { $0.contains("00000000000000cc") || $0.contains("00000000000000dd") })
        #expect(!r.out.contains { $0.contains("dev-0-2") || $0.contains("dev-0-3") || $0.contains("junk") })
        // every log line starts with the original's time stamp
        for line in r.out {
            #expect(line.count > 32 && line.first == "[" && Array(line)[30] == "]", "\(line)")
        }

        // a second pass finds nothing left to do
        let again = try Self.fenced(["--config", s.config, "--run-dir", s.runDir, "--once"])
        #expect(again.code == 0)
        #expect(s.ranLines().count == 2)
    }

    @Test func configParsing() throws {
        let s = try Setup.make()
        defer { TempDir.remove(s.dir) }
        let cfg = try FencedConfig.load(file: s.config)
        #expect(cfg.delay == 0.2)
        #expect(cfg.run == s.program)
        #expect(cfg.runArgs == ["one", "'two", "three'", "four"])
        #expect(cfg.variables.map(\.0) == [
            "SCOUTFS_FENCED_CONFIG_FILE", "SCOUTFS_FENCED_DELAY", "SCOUTFS_FENCED_RUN", "SCOUTFS_FENCED_RUN_ARGS",
        ])

        // the default delay, bash expressions, no arguments
        try Proc.write(s.config, """
            prog='\(s.program)'
            SCOUTFS_FENCED_RUN="${prog}"
            SCOUTFS_FENCED_EXTRA=$((6 * 7))

            """)
        let plain = try FencedConfig.load(file: s.config)
        #expect(plain.delay == 2)
        #expect(plain.runArgs.isEmpty)
        #expect(plain.variables.contains { $0 == ("SCOUTFS_FENCED_EXTRA", "42") })
    }

    @Test(arguments: [
        ("missing", "isn't a readable file"),
        ("directory", "isn't a readable file"),
        ("no-run", "SCOUTFS_FENCED_RUN must be set"),
        ("not-executable", "isn't executable"),
        ("run-is-directory", "isn't executable"),
        ("bad-bash", "error sourcing"),
        ("bad-delay", "SCOUTFS_FENCED_DELAY 'soon' isn't a number of seconds"),
    ])
    func badConfig(_ kind: String, _ message: String) throws {
        let s = try Setup.make()
        defer { TempDir.remove(s.dir) }
        var file = s.config
        switch kind {
        case "missing": file = s.dir + "/nothing.conf"
        case "directory": file = s.dir
        case "no-run": try Proc.write(s.config, "SCOUTFS_FENCED_DELAY=1\n")
        case "not-executable":
            try Proc.write(s.dir + "/plain", "#!/bin/bash\n")
            try Proc.write(s.config, "SCOUTFS_FENCED_RUN=\(s.dir)/plain\n")
        case "run-is-directory": try Proc.write(s.config, "SCOUTFS_FENCED_RUN=\(s.dir)\n")
        case "bad-bash": try Proc.write(s.config, "SCOUTFS_FENCED_RUN=\(s.program)\nfalse\n")
        default: try Proc.write(s.config, "SCOUTFS_FENCED_RUN=\(s.program)\nSCOUTFS_FENCED_DELAY=soon\n")
        }
        let r = try Self.fenced(["--config", file, "--run-dir", s.runDir, "--once"])
        #expect(r.code == 1)
        #expect(r.err.count == 1)
        #expect(r.err.first?.hasPrefix("scoutfs: fenced failed: ") == true)
        #expect(r.err.first?.contains(message) == true, "\(r.err)")
        #expect(s.ranLines().isEmpty)
    }

    @Test func fenceListLines() {
        let ok = FenceListLine("00000000000000aa 10.0.0.2 client_recovery 4 0 1")
        #expect(ok?.rid == "00000000000000aa" && ok?.ip == "10.0.0.2" && ok?.reason == "client_recovery")
        #expect(ok?.elapsedSeconds == 4 && ok?.fenced == false && ok?.error == true)
        for bad in [
            "", "00000000000000aa 10.0.0.2 client_recovery 4 0", "aa 10.0.0.2 client_recovery 4 0 0",
            "00000000000000aa 10.0.0.2 client_recovery x 0 0", "00000000000000aa 10.0.0.2 client_recovery 4 2 0",
            "00000000000000aa $(rm) client_recovery 4 0 0", "0000000000000zaa 10.0.0.2 client_recovery 4 0 0",
        ] {
            #expect(FenceListLine(bad) == nil, "\(bad)")
        }
    }

    /// The daemon itself (the built binary): it fences in its loop, and SIGHUP makes it
    /// read the changed config.
    @Test func loopAndSighup() throws {
        try #require(access(Proc.binary, X_OK) == 0, "build the scoutfs binary first (swift build --build-tests)")
        let s = try Setup.make(delay: "0.2")
        defer { TempDir.remove(s.dir) }
        let fences = FenceRequests()
        let leader = try ControlServer.start(
            path: s.runDir + "/dev-0-1.sock", volume: nil,
            sources: ControlSources(rid: 1, fences: { fences }), logger: Proc.quiet)
        defer { leader.stop() }
        let log = s.dir + "/fenced.log"
        let agent = try Child([Proc.binary, "fenced", "--config", s.config, "--run-dir", s.runDir], output: log)
        defer { agent.stop() }
        let logText = { (try? TempDir.readText(log)) ?? "" }
        #expect(Proc.eventually(seconds: 20) { logText().contains("config var SCOUTFS_FENCED_RUN=\(s.program)") })

        fences.start(rid: 0xaa, ipv4: 0x7f00_0001, reason: .clientReconnect)
        #expect(Proc.eventually(seconds: 20) { fences.request(rid: 0xaa)?.fenced == true })
        #expect(s.ranLines() == ["00000000000000aa 127.0.0.1 one|'two|three'|four|"])

        try Proc.write(s.config, """
            SCOUTFS_FENCED_DELAY=0.2
            SCOUTFS_FENCED_RUN='\(s.program)'
            SCOUTFS_FENCED_RUN_ARGS=changed

            """)
        agent.signal(SIGHUP)
        #expect(Proc.eventually(seconds: 20) { logText().contains("config var SCOUTFS_FENCED_RUN_ARGS=changed") })
        #expect(logText().contains("caught SIGHUP"))
        fences.start(rid: 0xab, ipv4: 0x7f00_0001, reason: .clientReconnect)
        #expect(Proc.eventually(seconds: 20) { fences.request(rid: 0xab)?.fenced == true })
        #expect(s.ranLines().last == "00000000000000ab 127.0.0.1 changed|")

        // a broken config on SIGHUP ends the agent (the original's re-exec fails the same way)
        try Proc.write(s.config, "SCOUTFS_FENCED_DELAY=0.2\n")
        agent.signal(SIGHUP)
        let status = agent.wait(seconds: 20)
        #expect(status.map { ($0 >> 8) & 0xff } == 1)
        #expect(logText().contains("scoutfs: fenced failed: SCOUTFS_FENCED_RUN must be set"))
    }
}
