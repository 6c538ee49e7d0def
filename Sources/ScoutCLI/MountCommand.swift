import ArgumentParser
import Glibc
import Logging
import ScoutDaemon

/// `scoutfs mount -o metadev_path=META[,quorum_slot_nr=N,...] DATA-DEV MOUNTPOINT`: mounts a
/// volume through FUSE. By default it starts the daemon in the background and returns once
/// the mount is usable (what `mount -t scoutfs` runs through `mount.scoutfs`); with
/// `--foreground` it serves in this process until unmounted.
struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount a scoutfs volume through FUSE"
    )

    @Option(name: .short, help: ArgumentHelp("Mount options (metadev_path= is required)", valueName: "OPTIONS"))
    var options: [String] = []

    @Flag(help: "Serve in this process until unmounted")
    var foreground = false

    @Option(help: .hidden)
    var readyFd: Int32?

    @Argument(help: ArgumentHelp("The data device", valueName: "DATA-DEV"))
    var device: String

    @Argument(help: ArgumentHelp("Where to mount", valueName: "MOUNTPOINT"))
    var mountpoint: String

    func run() throws {
        let parsed: MountOptions
        do {
            parsed = try MountOptions.parse(options.joined(separator: ","))
        } catch {
            throw ArgpError.failed(EINVAL, error.message, status: 32)
        }
        // A mount whose daemon on this host is provably gone (killed: its mount answers
        // ENOTCONN) is cleared off the mountpoint first, so the volume mounts again at once.
        // Its registry entry stays: the new server fences its rid with it (LocalFence).
        // (The daemon started by `mount` finds nothing left to clear.)
        if let dead = LocalFence.clearDeadMount(at: mountpoint), readyFd == nil {
            printErr("scoutfs: mount: cleared the dead mount of rid \(dead) from \(mountpoint)")
        }
        var st = stat()
        guard stat(mountpoint, &st) == 0 else {
            throw ArgpError.failed(errno, "cannot mount on '\(mountpoint)'", status: 32)
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw ArgpError.failed(ENOTDIR, "cannot mount on '\(mountpoint)'", status: 32)
        }
        if !foreground { throw ExitCode(spawnDaemon()) }
        // before any thread starts: SIGTERM and SIGINT are the clean unmount, never a crash
        Mount.blockTerminationSignals()
        closeInheritedDescriptors(keeping: readyFd)
        // The daemon logs to its file and syslog (DaemonLog). Started by `scoutfs mount`, it
        // leaves the command's terminal: standard input and output go to /dev/null and standard
        // error (runtime crash reports) to the log file, unless SCOUTFS_LOG_STDERR asks for
        // the log there too. Run with --foreground by hand, it also logs to standard error.
        let rid = UInt64.random(in: 1...UInt64.max)
        let logPath = DaemonLog.path(rid: rid)
        let file = DaemonLog.openFile(logPath)
        let toStderr = readyFd == nil || DaemonLog.mirrorsToStandardError
        if readyFd != nil && !toStderr { detachStandardStreams(errorsTo: file?.fd) }
        let syslog = SyslogSocket()
        LoggingSystem.bootstrap { label in
            DaemonLog.handler(label: label, file: file, syslog: syslog, standardError: toStderr)
        }
        let logger = Logger(label: "scoutfs")
        if file == nil { logger.warning("cannot open the log file \(logPath): logging to syslog only") }
        let m = Mount(options: parsed, dataPath: device, mountpoint: mountpoint, logger: logger, rid: rid)
        let code: Int32
        do {
            code = try m.run {
                if let fd = readyFd {
                    var b: UInt8 = 1
                    _ = write(fd, &b, 1)
                    close(fd)
                }
            }
        } catch {
            let message = failureLine("mount", error.errno, detail: error.message)
            logger.error("mount failed: \(error.message) (\(error.errno))")
            if let fd = readyFd {
                // the starting command prints it on its own standard error
                _ = Array((message + "\n").utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            } else if !toStderr {
                printErr(message)
            }
            throw ExitCode(32)
        }
        throw ExitCode(code)
    }

    /// Starts `scoutfs mount --foreground` detached from this terminal and waits until it
    /// reports the mount ready (exit 0) or fails: its message (sent through the ready pipe)
    /// goes to this command's standard error, and its exit status is returned.
    func spawnDaemon() -> Int32 {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { return 32 }
        var args = ["scoutfs", "mount", "--foreground", "--ready-fd", "\(fds[1])"]
        for o in options { args += ["-o", o] }
        args += [device, mountpoint]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        posix_spawnattr_setflags(&attr, Int16(0x80) /* POSIX_SPAWN_SETSID */)
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { for a in cargs { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/proc/self/exe", &actions, &attr, &cargs, environ)
        close(fds[1])
        guard rc == 0 else {
            close(fds[0])
            printErr(failureLine("mount", rc, detail: "cannot start the mount daemon"))
            return 32
        }
        // one byte 1: ready; anything else: the daemon's error message, until it exits
        var said: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while said.count < 1 << 16 {
            let n = read(fds[0], &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            said += buf[0..<n]
            if said.first == 1 { break }
        }
        close(fds[0])
        if said.first == 1 { return 0 }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let exited = status & 0x7f == 0
        let code = (status >> 8) & 0xff
        var message = Substring(String(decoding: said, as: UTF8.self))
        while let last = message.last, last == "\n" || last == " " { message.removeLast() }
        if !message.isEmpty {
            printErr(String(message))
        } else {
            let how = exited ? "exited with status \(code)" : "was killed by signal \(status & 0x7f)"
            printErr(failureLine("mount", EIO, detail: "the mount daemon \(how) before the mount was ready"))
        }
        return exited && code != 0 ? code : 32
    }
}

/// Points standard input and output at /dev/null and standard error at `errors` (the log
/// file; /dev/null when nil), so the daemon never writes to the terminal it was started from
/// nor keeps it open.
func detachStandardStreams(errorsTo errors: Int32?) {
    let null = open("/dev/null", O_RDWR | O_CLOEXEC)
    guard null >= 0 else { return }
    dup2(null, 0)
    dup2(null, 1)
    dup2(errors ?? null, 2)
    close(null)
}

/// Finds the control socket of the mount holding `path`.
func controlSocket(for path: String) throws(ArgpError) -> String {
    var st = stat()
    guard stat(path, &st) == 0 else { throw .failed(errno, "cannot stat '\(path)'") }
    return ControlSocket.path(device: st.st_dev)
}

/// Sends a control command to the mount holding `path`; its failure is reported as the
/// command's (`scoutfs: CMD failed: …`).
func control(_ path: String, _ command: String) throws(ArgpError) -> String {
    let sock = try controlSocket(for: path)
    let r: (ok: Bool, errno: Int32, body: String)
    do {
        r = try ControlSocket.request(path: sock, command)
    } catch {
        throw .failed(error.errno, "\(path) is not in a mounted scoutfs filesystem: \(error.message)")
    }
    guard r.ok else { throw .failed(r.errno, r.body) }
    return r.body
}

/// `scoutfs counters [-p PATH]`: the mount's counters.
struct CountersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "counters", abstract: "Show a mount's counters")

    @Option(name: .short, help: ArgumentHelp("A path in the filesystem (default $SCOUTFS_MOUNT_PATH, then .)", valueName: "PATH"))
    var path: String?

    func run() throws {
        print(try control(mountPath(path), "counters"), terminator: "")
    }
}

/// `scoutfs sync [-p PATH]`: commits the mount's open transaction (FUSE does not forward
/// sync(2) or syncfs(2) to the daemon).
struct SyncCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "sync", abstract: "Commit a mount's transaction")

    @Option(name: .short, help: ArgumentHelp("A path in the filesystem (default $SCOUTFS_MOUNT_PATH, then .)", valueName: "PATH"))
    var path: String?

    func run() throws {
        _ = try control(mountPath(path), "sync")
    }
}

/// Closes every descriptor above stderr that the daemon inherited, except `keep`: a daemon
/// that lives for the whole mount must not pin its parent's files (a file held open inside
/// another mount keeps that mount busy).
func closeInheritedDescriptors(keeping keep: Int32?) {
    guard let dir = opendir("/proc/self/fd") else { return }
    var fds: [Int32] = []
    while let ent = readdir(dir) {
        let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        if let fd = Int32(name), fd > 2, fd != keep { fds.append(fd) }
    }
    let own = dirfd(dir)
    closedir(dir)
    for fd in fds where fd != own { close(fd) }
}
