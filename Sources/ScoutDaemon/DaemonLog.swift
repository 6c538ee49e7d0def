import Glibc
public import Logging
import ScoutFS
import ScoutFormat

/// Where a mount daemon's log goes: a file of its own under the run directory and syslog,
/// never the terminal of the `mount` command that started it.
///
/// The file is `$SCOUTFS_RUN_DIR/log/<rid %016llx>.log` (run directory default `/run/scoutfs`),
/// appended to; the rid is the one the mount greets with and registers in `mounts/`. Syslog
/// gets the same lines through `/dev/log` (facility daemon, tag `scoutfs`), when that socket
/// exists. `SCOUTFS_LOG` sets the level (trace … critical, default notice);
/// `SCOUTFS_LOG_STDERR=1` also writes every line to the daemon's standard error.
public enum DaemonLog {
    /// The environment variable that mirrors the log to standard error.
    public static let stderrVariable = "SCOUTFS_LOG_STDERR"
    /// The environment variable that sets the level.
    public static let levelVariable = "SCOUTFS_LOG"

    /// The log file of the mount with `rid`.
    public static func path(rid: UInt64, runDirectory: String = ControlSocket.directory) -> String {
        "\(runDirectory)/log/\(rid.paddedHex).log"
    }

    /// The level from `SCOUTFS_LOG` (notice when unset, info when unknown).
    public static var level: Logger.Level {
        guard let v = getenv(levelVariable) else { return .notice }
        return Logger.Level(rawValue: String(cString: v)) ?? .info
    }

    /// Whether `SCOUTFS_LOG_STDERR` asks for the log on standard error too.
    public static var mirrorsToStandardError: Bool {
        guard let v = getenv(stderrVariable) else { return false }
        let s = String(cString: v)
        return !s.isEmpty && s != "0"
    }

    /// Opens (creating its directory) the log file at `path` for appending; nil when it
    /// cannot be opened.
    public static func openFile(_ path: String) -> LogFile? {
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            ControlServer.makeDirectories(String(path[..<slash]))
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        return fd >= 0 ? LogFile(fd: fd) : nil
    }

    /// One line as the file and standard error show it:
    /// `2026-12-06T16:21:52.123456Z notice scoutfs: rid=… message`.
    static func line(
        time: timespec, level: Logger.Level, label: String, metadata: Logger.Metadata, message: Logger.Message
    ) -> String {
        var t = time.tv_sec
        var tm = Glibc.tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let stamp = "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2)).\(pad(Int32(time.tv_nsec / 1000), 6))Z"
        return "\(stamp) \(level) \(label):\(metadataText(metadata)) \(message)\n"
    }

    /// ` key=value` pairs in key order ("" when empty).
    static func metadataText(_ metadata: Logger.Metadata) -> String {
        metadata.keys.sorted().map { " \($0)=\(metadata[$0]!)" }.joined()
    }

    /// The handler of a daemon: the file (when open), syslog, and standard error when asked.
    public static func handler(label: String, file: LogFile?, syslog: SyslogSocket?, standardError: Bool) -> any LogHandler {
        var handlers: [any LogHandler] = []
        if let file { handlers.append(LineLogHandler(label: label, sink: .file(file))) }
        if let syslog { handlers.append(LineLogHandler(label: label, sink: .syslog(syslog))) }
        if standardError { handlers.append(LineLogHandler(label: label, sink: .standardError)) }
        var h = MultiplexLogHandler(handlers)
        h.logLevel = level
        return h
    }
}

/// A log file open for appending, shared by every logger of the process.
public final class LogFile: Sendable {
    public let fd: Int32

    init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// Appends one line (O_APPEND keeps lines of concurrent writers whole).
    func write(_ text: String) {
        writeAll(fd, Array(text.utf8))
    }
}

/// The local syslog socket (`/dev/log`, a datagram socket), written to without ever blocking;
/// lines are dropped when it is missing or full.
public final class SyslogSocket: Sendable {
    public static let defaultPath = "/dev/log"
    /// Facility daemon (3).
    static let facility = 3

    let path: String
    let tag: String
    // Invariant: `fd` is only read or replaced with `lock` held.
    private let lock = PThreadLock()
    nonisolated(unsafe) private var fd: Int32 = -1

    /// - Parameters:
    ///   - path: the socket (default `/dev/log`).
    ///   - tag: the program name in each line.
    public init(path: String = SyslogSocket.defaultPath, tag: String = "scoutfs") {
        self.path = path
        self.tag = tag
    }

    deinit { if fd >= 0 { close(fd) } }

    /// The RFC 3164 line of a message, as glibc's syslog(3) sends it to `/dev/log`:
    /// `<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE` (local time, no host name).
    static func format(severity: Int, tag: String, pid: Int32, time: time_t, message: String) -> String {
        var t = time
        var tm = Glibc.tm()
        localtime_r(&t, &tm)
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let day = tm.tm_mday < 10 ? " \(tm.tm_mday)" : "\(tm.tm_mday)"
        let stamp = "\(months[Int(tm.tm_mon)]) \(day) \(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec))"
        return "<\(facility * 8 + severity)>\(stamp) \(tag)[\(pid)]: \(message)"
    }

    /// The syslog severity of a level.
    static func severity(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// Sends one message; connects on first use and once again after a failed send.
    func send(level: Logger.Level, message: String) {
        let bytes = Array(
            Self.format(severity: Self.severity(level), tag: tag, pid: getpid(), time: time(nil), message: message).utf8)
        lock.withLock {
            for _ in 0..<2 {
                if fd < 0 { fd = connectLocked() }
                guard fd >= 0 else { return }
                let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                if n >= 0 || errno == EAGAIN { return }
                close(fd)
                fd = -1
            }
        }
    }

    private func connectLocked() -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let p = Array(path.utf8)
        guard p.count < MemoryLayout.size(ofValue: addr.sun_path) else { return -1 }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in p.enumerated() { raw[i] = b }
        }
        let s = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return -1 }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            close(s)
            return -1
        }
        return s
    }
}

/// Writes each log line to one sink.
struct LineLogHandler: LogHandler {
    enum Sink {
        case file(LogFile)
        case syslog(SyslogSocket)
        case standardError
    }

    let label: String
    let sink: Sink
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var all = metadata
        if let extra = event.metadata { all.merge(extra) { $1 } }
        switch sink {
        case .syslog(let socket):
            socket.send(level: event.level, message: "\(event.level):\(DaemonLog.metadataText(all)) \(event.message)")
        case .file(let file):
            file.write(DaemonLog.line(time: Self.now(), level: event.level, label: label, metadata: all, message: event.message))
        case .standardError:
            writeAll(2, Array(DaemonLog.line(time: Self.now(), level: event.level, label: label, metadata: all, message: event.message).utf8))
        }
    }

    static func now() -> timespec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts
    }
}

/// Writes all of `bytes` to `fd`, retrying after EINTR and short writes; gives up on errors.
func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, $0.count - off) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        off += n
    }
}
