import Glibc
import Logging
import ScoutTestSupport
import Testing

/// Child processes for the CLI tests: the built `scoutfs` binary and the scripts.
enum Proc {
    /// The package's root directory.
    static var root: String {
        var p = #filePath
        for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
        return p
    }

    static var binary: String { root + "/.build/debug/scoutfs" }
    static var fenceLocal: String { root + "/scripts/scoutfs-fence-local" }

    static let quiet = Logger(label: "cli-test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// Starts `args` with the environment plus `env`, stdout and stderr to `output` (or
    /// /dev/null). Returns the pid.
    static func spawn(_ args: [String], env: [String: String] = [:], output: String? = nil) throws -> pid_t {
        var environment: [String] = []
        var p = environ
        while let e = p.pointee {
            let s = String(cString: e)
            let name = String(s.prefix(while: { $0 != "=" }))
            if env[name] == nil { environment.append(s) }
            p += 1
        }
        environment += env.map { "\($0.key)=\($0.value)" }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, output ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        var cenv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for a in cargs { free(a) }
            for e in cenv { free(e) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, args[0], &actions, nil, &cargs, &cenv)
        guard rc == 0 else { throw SetupFailure("cannot start \(args[0]): \(rc)") }
        return pid
    }

    /// Waits up to `seconds` for `pid` to exit; returns its raw wait status, nil on timeout.
    static func wait(_ pid: pid_t, seconds: Double) -> Int32? {
        var status: Int32 = 0
        for _ in 0..<Int(seconds * 50) {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { return status }
            if r < 0 && errno != EINTR { return nil }
            usleep(20_000)
        }
        return nil
    }

    /// Runs `args` to completion (at most `seconds`); returns (exit status, output). A run
    /// that times out is killed and reported as status -1.
    static func run(_ args: [String], env: [String: String] = [:], seconds: Double = 30) throws -> (Int32, String) {
        let dir = try TempDir.make(prefix: "proc")
        defer { TempDir.remove(dir) }
        let out = dir + "/out"
        let pid = try spawn(args, env: env, output: out)
        guard let status = wait(pid, seconds: seconds) else {
            kill(pid, SIGKILL)
            _ = wait(pid, seconds: 5)
            return (-1, (try? TempDir.readText(out)) ?? "")
        }
        let code = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, (try? TempDir.readText(out)) ?? "")
    }

    /// Polls `condition` every 20 ms for up to `seconds`.
    static func eventually(seconds: Double, _ condition: () -> Bool) -> Bool {
        for _ in 0..<Int(seconds * 50) {
            if condition() { return true }
            usleep(20_000)
        }
        return condition()
    }

    static func write(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
        unlink(path)
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw SetupFailure("open \(path): errno \(errno)") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else {
            throw SetupFailure("write \(path): errno \(errno)")
        }
        fchmod(fd, mode)
    }
}

/// A child process that is killed only while it is not yet reaped (so its pid cannot have
/// been reused by another process).
final class Child {
    let pid: pid_t
    private(set) var status: Int32?

    init(_ args: [String], env: [String: String] = [:], output: String? = nil) throws {
        pid = try Proc.spawn(args, env: env, output: output)
    }

    /// Waits up to `seconds` for it to exit; its raw wait status, nil on timeout.
    @discardableResult
    func wait(seconds: Double) -> Int32? {
        if status == nil { status = Proc.wait(pid, seconds: seconds) }
        return status
    }

    /// Sends `signal` unless it was reaped.
    func signal(_ signal: Int32) {
        if status == nil { kill(pid, signal) }
    }

    /// Kills and reaps it.
    func stop() {
        signal(SIGKILL)
        wait(seconds: 5)
    }
}

/// A failed test set-up step.
struct SetupFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
