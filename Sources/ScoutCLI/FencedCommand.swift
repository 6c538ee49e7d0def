import ArgumentParser
import Glibc
import ScoutDaemon

/// `scoutfs fenced [--config FILE] [--once] [--run-dir DIR]`: the fencing agent, as the
/// original's `scoutfs-fenced` script.
///
/// Every `SCOUTFS_FENCED_DELAY` seconds it asks every mount's control socket in the run
/// directory for its fence requests (`fence-list`), and for each request that is neither
/// fenced nor errored runs `$SCOUTFS_FENCED_RUN $SCOUTFS_FENCED_RUN_ARGS` with
/// `SCOUTFS_FENCED_REQ_RID` (%016llx) and `SCOUTFS_FENCED_REQ_IP` (dotted quad) in its
/// environment. Exit status 0 answers `fenced`, anything else `error` (`fence-answer`).
/// Sockets that vanish, refuse or fail are skipped without a message (only the leader's
/// server has requests).
///
/// The configuration is a bash file, sourced by `/bin/bash` (so it may hold any bash), and
/// every `SCOUTFS_FENCED_*` variable it leaves is read: `SCOUTFS_FENCED_DELAY` (seconds,
/// default 2, fractions allowed), `SCOUTFS_FENCED_RUN` (required, executable),
/// `SCOUTFS_FENCED_RUN_ARGS` (split into words by bash, as the original's unquoted expansion).
/// The file is `--config`, else `$SCOUTFS_FENCED_CONFIG_FILE`, else
/// `/etc/scoutfs/scoutfs-fenced.conf`.
///
/// Deviations: SIGHUP re-reads the configuration in place (the original re-executes itself;
/// both exit when the new configuration is bad). Requests come from the control sockets in
/// `$SCOUTFS_RUN_DIR` (default `/run/scoutfs`) instead of `/sys/fs/scoutfs/*/fence/*`, and the
/// `server` in log lines is the socket's path. `--once` makes one pass at once and exits (for
/// tests and cron-like use).
struct FencedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fenced",
        abstract: "Run the fencing agent: carry out the fence requests of this host's servers"
    )

    @Option(help: ArgumentHelp(
        "The bash config file (default $SCOUTFS_FENCED_CONFIG_FILE, then /etc/scoutfs/scoutfs-fenced.conf)",
        valueName: "FILE"))
    var config: String?

    @Flag(help: "Make one pass over the fence requests and exit")
    var once = false

    @Option(help: ArgumentHelp("Where the mounts' control sockets are (default $SCOUTFS_RUN_DIR, then /run/scoutfs)", valueName: "DIR"))
    var runDir: String?

    static let defaultConfigFile = "/etc/scoutfs/scoutfs-fenced.conf"

    func run() throws {
        let code = execute(
            out: { line in
                print(line)
                fflush(nil)
            },
            err: { printErr($0) })
        if code != 0 { throw ExitCode(code) }
    }

    /// The agent's work; returns the exit status. Messages go to `out` (log lines) and `err`
    /// (errors), one line each.
    func execute(out: (String) -> Void, err: (String) -> Void) -> Int32 {
        let file = config ?? FencedConfig.environment("SCOUTFS_FENCED_CONFIG_FILE") ?? Self.defaultConfigFile
        let dir = runDir ?? ControlSocket.directory
        func log(_ s: String) { out(Self.stamp() + " " + s) }
        // SIGHUP is taken synchronously (sigtimedwait) between passes.
        var hup = sigset_t()
        sigemptyset(&hup)
        sigaddset(&hup, SIGHUP)
        if !once { pthread_sigmask(SIG_BLOCK, &hup, nil) }
        var cfg: FencedConfig
        do {
            log("reading config file \(file)")
            cfg = try FencedConfig.load(file: file)
        } catch {
            err(failureLine("fenced", error.errno, detail: error.message))
            return 1
        }
        for (name, value) in cfg.variables { log("    config var \(name)=\(value)") }
        if once {
            Self.pass(config: cfg, runDir: dir, log: log)
            return 0
        }

        while true {
            var deadline = Self.monotonicNow() + cfg.delay
            while true {
                let left = deadline - Self.monotonicNow()
                if left <= 0 { break }
                var ts = timespec(tv_sec: Int(left), tv_nsec: Int((left - Double(Int(left))) * 1e9))
                let sig = sigtimedwait(&hup, nil, &ts)
                if sig == SIGHUP {
                    log("caught SIGHUP, re-reading config file \(file)")
                    do {
                        cfg = try FencedConfig.load(file: file)
                    } catch {
                        err(failureLine("fenced", error.errno, detail: error.message))
                        return 1
                    }
                    for (name, value) in cfg.variables { log("    config var \(name)=\(value)") }
                    deadline = Self.monotonicNow() + cfg.delay
                }
            }
            Self.pass(config: cfg, runDir: dir, log: log)
        }
    }

    /// One look at every control socket, fencing every pending request found.
    static func pass(config: FencedConfig, runDir: String, log: (String) -> Void) {
        for socket in ControlSocket.sockets(in: runDir) {
            guard let list = try? ControlSocket.request(path: socket, "fence-list", timeoutSeconds: 5), list.ok else { continue }
            for line in list.body.split(separator: "\n") {
                guard let req = FenceListLine(String(line)), !req.fenced, !req.error else { continue }
                log("server \(socket) fencing rid \(req.rid) at IP \(req.ip) for \(req.reason)")
                let status = runFence(config: config, rid: req.rid, ip: req.ip)
                if status != 0 { log("server \(socket) fencing rid \(req.rid) saw error status \(status)") }
                let answer = status == 0 ? "fenced" : "error"
                do {
                    let r = try ControlSocket.request(path: socket, "fence-answer \(req.rid) \(answer)", timeoutSeconds: 5)
                    if !r.ok { log("server \(socket) rid \(req.rid): cannot answer \(answer): \(r.body) (\(r.errno))") }
                } catch {
                    log("server \(socket) rid \(req.rid): cannot answer \(answer): \(error.message) (\(error.errno))")
                }
            }
        }
    }

    /// Runs the fence program for one request and returns its exit status (128 + the
    /// signal when it was killed; 127 when it could not be started).
    static func runFence(config: FencedConfig, rid: String, ip: String) -> Int32 {
        var env: [String] = []
        var p = environ
        while let e = p.pointee {
            let s = String(cString: e)
            if !s.hasPrefix("SCOUTFS_FENCED_REQ_RID=") && !s.hasPrefix("SCOUTFS_FENCED_REQ_IP=") { env.append(s) }
            p += 1
        }
        env += ["SCOUTFS_FENCED_REQ_RID=\(rid)", "SCOUTFS_FENCED_REQ_IP=\(ip)"]
        let args = [config.run] + config.runArgs
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        var cenv: [UnsafeMutablePointer<CChar>?] = env.map { strdup($0) } + [nil]
        defer {
            for a in cargs { free(a) }
            for e in cenv { free(e) }
        }
        var attr = FencedConfig.childAttributes()
        defer { posix_spawnattr_destroy(&attr) }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, config.run, nil, &attr, &cargs, &cenv)
        guard rc == 0 else { return 127 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return 127 }
        }
        let signal = status & 0x7f
        if signal != 0 { return 128 + signal }
        return (status >> 8) & 0xff
    }

    /// `[YYYY-MM-DD HH:MM:SS.NNNNNNNNN]`, local time, as the original's `date '+%F %T.%N'`.
    static func stamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var tmv = tm()
        localtime_r(&t, &tmv)
        var buf = [CChar](repeating: 0, count: 64)
        let n = strftime(&buf, buf.count, "%F %T", &tmv)
        let date = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let ns = String(ts.tv_nsec)
        return "[\(date).\(String(repeating: "0", count: 9 - ns.count) + ns)]"
    }

    static func monotonicNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// One line of `fence-list`: `RID IPV4 REASON ELAPSED_SECS FENCED ERROR`.
struct FenceListLine: Equatable {
    var rid: String
    var ip: String
    var reason: String
    var elapsedSeconds: UInt64
    var fenced: Bool
    var error: Bool

    /// Nil for a line that does not have that shape.
    init?(_ line: String) {
        let f = line.split(separator: " ").map(String.init)
        guard f.count == 6, f[0].count == 16, UInt64(f[0], radix: 16) != nil,
              let elapsed = UInt64(f[3]), ["0", "1"].contains(f[4]), ["0", "1"].contains(f[5]),
              f[1].allSatisfy({ $0.isNumber || $0 == "." })
        else { return nil }
        rid = f[0]
        ip = f[1]
        reason = f[2]
        elapsedSeconds = elapsed
        fenced = f[4] == "1"
        error = f[5] == "1"
    }
}

/// A bad fencing agent configuration: what is wrong, and the errno reported with it.
struct FencedConfigError: Error {
    var message: String
    var errno: Int32
    init(_ m: String, errno: Int32 = EINVAL) {
        message = m
        self.errno = errno
    }
}

/// The agent's configuration, read by sourcing the config file with bash.
struct FencedConfig: Equatable {
    var file: String
    /// Seconds between passes.
    var delay: Double
    /// The fence program.
    var run: String
    /// Its arguments, split by bash.
    var runArgs: [String]
    /// Every `SCOUTFS_FENCED_*` variable after sourcing, by name (for the log).
    var variables: [(String, String)]

    static func == (a: FencedConfig, b: FencedConfig) -> Bool {
        a.file == b.file && a.delay == b.delay && a.run == b.run && a.runArgs == b.runArgs
            && a.variables.map(\.0) == b.variables.map(\.0) && a.variables.map(\.1) == b.variables.map(\.1)
    }

    static func environment(_ name: String) -> String? {
        guard let p = getenv(name), p.pointee != 0 else { return nil }
        return String(cString: p)
    }

    /// The bash program that sources the file (`$1`) and prints the variables (`V` records)
    /// and the split `RUN_ARGS` words (`A` records), each ended by a NUL. Whatever the file
    /// prints goes to stderr.
    static let reader = """
        SCOUTFS_FENCED_CONFIG_FILE="$1"
        SCOUTFS_FENCED_DELAY=2
        . "$1" >&2 || exit 97
        __scoutfs_fenced_args=( $SCOUTFS_FENCED_RUN_ARGS )
        for __v in "${!SCOUTFS_FENCED_@}"; do printf 'V%s=%s\\0' "$__v" "${!__v}"; done
        for __w in "${__scoutfs_fenced_args[@]}"; do printf 'A%s\\0' "$__w"; done
        exit 0
        """

    /// Reads and checks `file`. Throws with the original's messages: an unreadable file, a
    /// file bash cannot source, no or a non-executable `SCOUTFS_FENCED_RUN`, and (ours) a
    /// delay that is not a number of seconds.
    static func load(file: String) throws(FencedConfigError) -> FencedConfig {
        guard !file.isEmpty else { throw FencedConfigError("SCOUTFS_FENCED_CONFIG_FILE isn't set") }
        var st = stat()
        if stat(file, &st) != 0 || access(file, R_OK) != 0 {
            throw FencedConfigError("config file '\(file)' isn't a readable file", errno: errno)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw FencedConfigError("config file '\(file)' isn't a readable file: not a regular file", errno: (st.st_mode & S_IFMT) == S_IFDIR ? EISDIR : EINVAL)
        }
        let (status, output) = runBash(args: ["-c", reader, "scoutfs-fenced", file])
        guard status == 0 else {
            throw FencedConfigError("error sourcing \(file) as bash script (status \(status))")
        }
        var variables: [(String, String)] = []
        var words: [String] = []
        for record in output.split(separator: 0) {
            let text = String(decoding: record.dropFirst(), as: UTF8.self)
            switch record.first {
            case UInt8(ascii: "V"):
                guard let eq = text.firstIndex(of: "=") else { continue }
                variables.append((String(text[..<eq]), String(text[text.index(after: eq)...])))
            case UInt8(ascii: "A"):
                words.append(text)
            default:
                continue
            }
        }
        let value = { (name: String) in variables.first(where: { $0.0 == name })?.1 ?? "" }
        let run = value("SCOUTFS_FENCED_RUN")
        guard !run.isEmpty else { throw FencedConfigError("SCOUTFS_FENCED_RUN must be set") }
        var rst = stat()
        guard stat(run, &rst) == 0, (rst.st_mode & S_IFMT) != S_IFDIR, access(run, X_OK) == 0 else {
            throw FencedConfigError("SCOUTFS_FENCED_RUN '\(run)' isn't executable")
        }
        let delayText = value("SCOUTFS_FENCED_DELAY")
        guard let delay = Double(delayText), delay.isFinite, delay >= 0, delay <= 86400 else {
            throw FencedConfigError("SCOUTFS_FENCED_DELAY '\(delayText)' isn't a number of seconds (0 to 86400)")
        }
        return FencedConfig(file: file, delay: delay, run: run, runArgs: words, variables: variables)
    }

    /// Spawn attributes for children: no signals blocked (the agent blocks SIGHUP to wait
    /// for it), SIGHUP at its default action.
    static func childAttributes() -> posix_spawnattr_t {
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attr, &none)
        var hup = sigset_t()
        sigemptyset(&hup)
        sigaddset(&hup, SIGHUP)
        posix_spawnattr_setsigdefault(&attr, &hup)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        return attr
    }

    /// Runs /bin/bash with `args`; returns its exit status (-1 when it could not run) and
    /// its standard output. Standard error is inherited.
    static func runBash(args: [String]) -> (Int32, [UInt8]) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return (-1, []) }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        let argv = ["/bin/bash"] + args
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        var attr = childAttributes()
        defer { posix_spawnattr_destroy(&attr) }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/bash", &actions, &attr, &cargs, environ)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            return (-1, [])
        }
        var output: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while output.count < 1 << 20 {
            let n = read(fds[0], &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            output += buf[0..<n]
        }
        close(fds[0])
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return (-1, output) }
        }
        if status & 0x7f != 0 { return (128 + (status & 0x7f), output) }
        return ((status >> 8) & 0xff, output)
    }
}
