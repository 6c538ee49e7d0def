import Glibc
import ScoutFUSE
import Synchronization

/// Runs a phase's threads (real OS threads doing syscalls on the mountpoints) and watches them:
/// every operation registers itself while it runs; one that runs past the bound is a hang.
final class StressMonitor: Sendable {
    struct InFlight: Sendable {
        var mount: Int
        var what: String
        var since: Double
    }

    private struct State {
        var running: [Int: InFlight] = [:]
        var finished: Set<Int> = []
        var errors: [String] = []
    }

    private let state = Mutex(State())
    let seed: UInt64
    let opTimeout: Double

    init(seed: UInt64, opTimeout: Double) {
        self.seed = seed
        self.opTimeout = opTimeout
    }

    /// Runs `body` as operation `what` of `thread` on `mount`.
    func op<R, E: Error>(_ thread: Int, mount: Int, _ what: @autoclosure () -> String, _ body: () throws(E) -> R) throws(E) -> R {
        let started = InFlight(mount: mount, what: what(), since: monotonicSeconds())
        state.withLock { $0.running[thread] = started }
        defer { _ = state.withLock { $0.running.removeValue(forKey: thread) } }
        return try body()
    }

    func fail(_ message: String) {
        state.withLock { $0.errors.append(message) }
    }

    var errors: [String] { state.withLock { $0.errors } }

    enum Outcome: Equatable {
        case done
        /// an operation ran past the bound: the report (stuck operations, daemon threads)
        case hung(String)
    }

    /// Starts one thread per body, waits for all of them (each operation bounded by
    /// `opTimeout`, the whole phase by `seconds`). On a hang it reports the stuck operations and
    /// every daemon thread's state, calls `abort` (which must unstick the threads, e.g. by
    /// aborting the FUSE connections) and waits a bounded time for the threads to end.
    func run(_ bodies: [(String, @Sendable () -> Void)], seconds: Double, daemons: [pid_t], abort: [Int]) -> Outcome {
        let ids = Array(bodies.indices)
        state.withLock { s in
            s.finished = []
            s.running = [:]
        }
        for (i, (name, body)) in bodies.enumerated() {
            let rc = Threads.spawn(name: name) { [self] in
                body()
                state.withLock { _ = $0.finished.insert(ids[i]) }
            }
            if rc != 0 {
                fail("seed \(seed): cannot start thread \(name): error \(rc)")
                state.withLock { _ = $0.finished.insert(ids[i]) }
            }
        }
        let start = monotonicSeconds()
        var stuck: [(Int, InFlight)] = []
        while monotonicSeconds() - start < seconds + 3 * opTimeout {
            let (done, running) = state.withLock { ($0.finished.count == ids.count, $0.running) }
            if done { return .done }
            let now = monotonicSeconds()
            stuck = running.filter { now - $0.value.since > opTimeout }.sorted { $0.key < $1.key }
            if !stuck.isEmpty { break }
            usleep(100_000)
        }
        let now = monotonicSeconds()
        var report = "seed \(seed): HANG: operations running longer than \(Int(opTimeout)) s:\n"
        if stuck.isEmpty { report += "  (none single: the phase ran past \(Int(seconds + 3 * opTimeout)) s)\n" }
        for (thread, f) in stuck {
            report += "  thread \(thread) mount m\(f.mount): \(f.what) for \(Int(now - f.since)) s\n"
        }
        for pid in daemons { report += Self.threadStates(pid) }
        abortFuseConnections(abort)
        // the aborted connections fail every waiting syscall with ENOTCONN; wait for the threads
        if waitFor(seconds: 20, { state.withLock { $0.finished.count == ids.count } }) == nil {
            // a dead daemon's connection ends too
            report += "threads still stuck 20 s after aborting FUSE connections \(abort): killing the daemons\n"
            for pid in daemons { kill(pid, SIGKILL) }
            if waitFor(seconds: 20, { state.withLock { $0.finished.count == ids.count } }) == nil { report += "threads still stuck\n" }
        }
        return .hung(report)
    }

    /// Every thread of a process: its stat line, wchan and kernel stack (if readable).
    static func threadStates(_ pid: pid_t) -> String {
        var out = "--- daemon \(pid) threads\n"
        let tasks = listDirectory("/proc/\(pid)/task").sorted { (Int($0) ?? 0) < (Int($1) ?? 0) }
        for tid in tasks.prefix(200) {
            let base = "/proc/\(pid)/task/\(tid)"
            // tid (comm) state
            let stat = readText(base + "/stat").split(separator: " ").prefix(3).joined(separator: " ")
            let wchan = readText(base + "/wchan")
            out += "\(stat) wchan=\(wchan)\n"
            let stack = readText(base + "/stack")
            if !stack.isEmpty { out += stack.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n") + "\n" }
        }
        return out
    }
}

func readText(_ path: String) -> String {
    (try? readAll(path)).map { String(decoding: $0, as: UTF8.self) } ?? ""
}

/// A file's whole contents; throws the errno of the first failing call.
func readAll(_ path: String, limit: Int = 64 << 20) throws(Errno) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Errno(errno) }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 16)
    while out.count < limit {
        let n = read(fd, &buf, buf.count)
        if n < 0 { throw Errno(errno) }
        if n == 0 { break }
        out += buf[0..<n]
    }
    return out
}

struct Errno: Error, Equatable, CustomStringConvertible {
    var code: Int32
    /// where it came from, when a walk or read over many paths failed
    var context = ""
    init(_ code: Int32, path: String = "", call: String = "") {
        self.code = code
        if !path.isEmpty { context = "\(call) \(path): " }
    }
    var description: String { "\(context)errno \(code) (\(String(cString: strerror(code))))" }
}

/// The names in a directory, without `.` and `..` (bounded).
func listDirectory(_ path: String, limit: Int = 100_000) -> [String] {
    (try? readDirectory(path, limit: limit)) ?? []
}

func readDirectory(_ path: String, limit: Int = 100_000) throws(Errno) -> [String] {
    guard let d = opendir(path) else { throw Errno(errno) }
    defer { closedir(d) }
    var names: [String] = []
    while names.count < limit {
        errno = 0
        guard let e = readdir(d) else {
            if errno != 0 { throw Errno(errno) }
            break
        }
        let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != ".", name != ".." { names.append(name) }
    }
    return names
}

/// The FUSE connection numbers (/sys/fs/fuse/connections/N) of mountpoints, from
/// /proc/self/mountinfo (nothing touches the mounts themselves).
func fuseConnections(_ mountpoints: [String]) -> [String: Int] {
    var out: [String: Int] = [:]
    for line in readText("/proc/self/mountinfo").split(separator: "\n") {
        let f = line.split(separator: " ")
        guard f.count > 4, mountpoints.contains(String(f[4])) else { continue }
        let mm = f[2].split(separator: ":")
        guard mm.count == 2, let major = Int(mm[0]), let minor = Int(mm[1]) else { continue }
        out[String(f[4])] = major << 20 | minor
    }
    return out
}

/// The daemons of the mounts registered in a run directory (`RUN/mounts/RID`, `pid=`), read
/// from the registry so that nothing scans /proc/*/cmdline, which blocks on a process whose
/// memory map is held by a thread stuck in a FUSE page fault.
func registeredDaemons(runDir: String) -> [pid_t] {
    listDirectory(runDir + "/mounts").sorted().compactMap { name in
        readText(runDir + "/mounts/" + name).split(separator: "\n").first { $0.hasPrefix("pid=") }.flatMap { pid_t($0.dropFirst(4)) }
    }.filter { pid in
        // alive and still the scoutfs binary (not a reused pid)
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/\(pid)/exe", &buf, buf.count - 1)
        return n > 0 && String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self).hasSuffix("/scoutfs")
    }
}

/// Aborts FUSE connections: every request waiting on them fails with ENOTCONN.
func abortFuseConnections(_ ids: [Int]) {
    for id in ids {
        let fd = open("/sys/fs/fuse/connections/\(id)/abort", O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { continue }
        _ = write(fd, "1", 1)
        close(fd)
    }
}
