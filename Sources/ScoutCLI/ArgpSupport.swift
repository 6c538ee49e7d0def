import ArgumentParser
import ScoutAgent
import ScoutIoctl

#if canImport(Glibc)
import Glibc
#endif

// The original utility's conventions for the archive commands (its utils/src/cmd.c, parse.c
// and util.c), shared by every command built on ScoutAgent.

/// How a command stops early, as the original's do: the lines it printed on standard error
/// first, then either an argp usage error (`<cmd>: MSG` plus the "Try" line, exit 64), a
/// failure (`scoutfs: <cmd> failed: STRERROR (ERRNO)`, exit 1), a failure whose reason
/// goes on that same line (`scoutfs: <cmd> failed: DETAIL: STRERROR (ERRNO)`, exit 1, or
/// `status` for `mount`), or a bare exit status after an argp_failure message.
struct ArgpError: Error, Equatable {
    enum Outcome: Equatable {
        case usage(String)
        case failed(Int32)
        case failedWith(detail: String, errno: Int32, status: Int32)
        case exit(Int32)
    }

    var stderr: [String]
    var outcome: Outcome

    init(_ stderr: [String] = [], _ outcome: Outcome) {
        self.stderr = stderr
        self.outcome = outcome
    }

    static func usage(_ msg: String, after lines: [String] = []) -> ArgpError { ArgpError(lines, .usage(msg)) }
    static func failed(_ errno: Int32, after lines: [String] = []) -> ArgpError { ArgpError(lines, .failed(errno)) }

    /// A failure reported on one line, with what failed: exit 1, or `status`.
    static func failed(_ errno: Int32, _ detail: String, status: Int32 = 1) -> ArgpError {
        ArgpError([], .failedWith(detail: detail, errno: errno, status: status))
    }

    /// The lines standard error shows for command `cmd`, and the exit status.
    func report(command cmd: String) -> (lines: [String], status: Int32) {
        switch outcome {
        case .usage(let msg):
            return (stderr + ["\(cmd): \(msg)"] + argpWrapped("Try `\(cmd) --help' or `\(cmd) --usage' for more information."), 64)
        case .failed(let e):
            return (stderr + [failureLine(cmd, e)], 1)
        case .failedWith(let detail, let e, let status):
            return (stderr + [failureLine(cmd, e, detail: detail)], status)
        case .exit(let status):
            return (stderr, status)
        }
    }
}

func strerrorString(_ e: Int32) -> String { String(cString: strerror(e)) }

/// A help line as argp's formatter prints it: words moved to a new line rather than cross
/// column 79 (the "Try" line of a long command name wraps).
func argpWrapped(_ line: String, width: Int = 79) -> [String] {
    var out: [String] = []
    var cur = ""
    for w in line.split(separator: " ") {
        if !cur.isEmpty && cur.count + 1 + w.count > width {
            out.append(cur)
            cur = String(w)
        } else {
            cur += (cur.isEmpty ? "" : " ") + w
        }
    }
    if !cur.isEmpty { out.append(cur) }
    return out
}

/// The one line of a failed command: `scoutfs: CMD failed: [DETAIL: ]STRERROR (ERRNO)`. A
/// detail that already ends with the error's text (a message passed along from the daemon)
/// does not repeat it.
func failureLine(_ cmd: String, _ e: Int32, detail: String? = nil) -> String {
    let text = strerrorString(e)
    let reason = "\(text) (\(e))"
    guard let detail, !detail.isEmpty else { return "scoutfs: \(cmd) failed: \(reason)" }
    if detail.hasSuffix(reason) { return "scoutfs: \(cmd) failed: \(detail)" }
    if detail.hasSuffix(text) { return "scoutfs: \(cmd) failed: \(detail) (\(e))" }
    return "scoutfs: \(cmd) failed: \(detail): \(reason)"
}

/// The original's "`what`: STRERROR (ERRNO)" line for a failed call.
func errnoLine(_ what: String, _ e: Int32) -> String { "\(what): \(strerrorString(e)) (\(e))" }

// MARK: numbers

/// The original's number parsing (parse.c): strtoull/strtoll with base 0, so 0x and 0
/// prefixes (and a leading sign, wrapping as strtoull does) are accepted.
enum Numbers {
    /// The whole string as strtoull(s, &end, 0) reads it; nil when characters are left over.
    /// An overflow gives strtoull's ULLONG_MAX: the original meant to reject overflow, but
    /// its check compares with LLONG_MIN and LLONG_MAX and so never fires for strtoull.
    static func u64(_ s: String) -> UInt64? {
        s.withCString { p -> UInt64? in
            var end: UnsafeMutablePointer<CChar>?
            let v = strtoull(p, &end, 0)
            guard let end, end.pointee == 0 else { return nil }
            return UInt64(v)
        }
    }

    static func s64(_ s: String) -> Int64? {
        s.withCString { p -> Int64? in
            var end: UnsafeMutablePointer<CChar>?
            errno = 0
            let v = strtoll(p, &end, 0)
            guard errno != ERANGE, let end, end.pointee == 0 else { return nil }
            return Int64(v)
        }
    }

    /// `parse_u64`: the value, or the failure after "invalid 64bit value: 'S'".
    static func parseU64(_ s: String) throws(ArgpError) -> UInt64 {
        guard let v = u64(s) else { throw .failed(EINVAL, after: ["invalid 64bit value: '\(s)'"]) }
        return v
    }

    /// `parse_u64` whose failure the option handler turns into an argp usage error.
    static func parseU64(_ s: String, usage msg: String) throws(ArgpError) -> UInt64 {
        guard let v = u64(s) else { throw .usage(msg, after: ["invalid 64bit value: '\(s)'"]) }
        return v
    }

    static func parseS64(_ s: String, usage msg: String) throws(ArgpError) -> Int64 {
        guard let v = s64(s) else { throw .usage(msg, after: ["invalid 64bit value: '\(s)'"]) }
        return v
    }

    /// `parse_human`: a number (base 0) with an optional K, M, G, T or P suffix (powers of 1024).
    static func parseHuman(_ s: String) throws(ArgpError) -> UInt64 {
        let (value, rest, overflow) = s.withCString { p -> (UInt64, String, Bool) in
            var end: UnsafeMutablePointer<CChar>?
            errno = 0
            let v = strtoull(p, &end, 0)
            let overflow = errno == ERANGE
            return (UInt64(v), end.map { String(cString: $0) } ?? "", overflow)
        }
        if overflow { throw .failed(EINVAL, after: ["invalid 64bit value: '\(s)'"]) }
        let shift: UInt64
        switch rest.first {
        case "K": shift = 10
        case "M": shift = 20
        case "G": shift = 30
        case "T": shift = 40
        case "P": shift = 50
        case nil: shift = 0
        default: throw .failed(ERANGE, after: ["unknown suffix: '\(rest)'"])
        }
        // like the original, only the first character after the number is looked at
        if value > UInt64.max >> shift { throw .failed(ERANGE, after: ["size too big: '\(s)'"]) }
        return value << shift
    }

    /// `parse_timespec`: "SECS.NSECS" as sscanf("%llu.%u") reads it.
    static func parseTimespec(_ s: String) throws(ArgpError) -> (sec: UInt64, nsec: UInt32) {
        var sec: UInt64 = 0
        var nsec: UInt32 = 0
        let n = s.withCString { p in
            withUnsafeMutablePointer(to: &sec) { ps in
                withUnsafeMutablePointer(to: &nsec) { pn in
                    withVaList([ps, pn]) { vsscanf(p, "%llu.%u", $0) }
                }
            }
        }
        guard n == 2 else { throw .failed(EINVAL, after: ["invalid timespec string: '\(s)'"]) }
        if nsec > 1_000_000_000 { throw .failed(EINVAL, after: ["invalid timespec nsec value: '\(s)'"]) }
        return (sec, nsec)
    }
}

// MARK: paths

/// The original's `get_path`: the `-p` option, else `$SCOUTFS_MOUNT_PATH`, else the current
/// directory. (The original passes the missing option instead of the variable, so its
/// environment fallback never works; this is the intended order.)
enum MountPathRule {
    static let variable = "SCOUTFS_MOUNT_PATH"

    /// The path to open; nil when the current directory is needed but unknown.
    static func resolve(option: String?, environment: String?, currentDirectory: () -> String?) -> String? {
        if let option { return option }
        if let environment, !environment.isEmpty { return environment }
        return currentDirectory()
    }

    static func currentDirectory() -> String? {
        guard let p = getcwd(nil, 0) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    static func environment() -> String? {
        guard let p = getenv(variable) else { return nil }
        return String(cString: p)
    }
}

/// Opens `path` as the original's `open_path` does: "failed to open 'PATH': STRERROR (ERRNO)".
func openFile(_ path: String, _ flags: Int32) throws(ArgpError) -> ScoutAgent {
    let fd = open(path, flags | O_CLOEXEC)
    guard fd >= 0 else {
        let e = errno
        throw .failed(e, after: [errnoLine("failed to open '\(path)'", e)])
    }
    return ScoutAgent(fd: fd)
}

/// `get_path`: opens the file system path from `-p`, the environment or the current directory.
func openMountPath(_ option: String?, _ flags: Int32 = O_RDONLY) throws(ArgpError) -> ScoutAgent {
    var cwdErrno: Int32 = 0
    guard let path = MountPathRule.resolve(option: option, environment: MountPathRule.environment(), currentDirectory: {
        let d = MountPathRule.currentDirectory()
        if d == nil { cwdErrno = errno }
        return d
    }) else {
        throw .failed(cwdErrno == 0 ? ENOENT : cwdErrno)
    }
    return try openFile(path, flags)
}

// MARK: output

/// Standard output, buffered, written with write(2) (flushed before anything goes to
/// standard error, so the two stay in order).
final class Output {
    private var buffer: [UInt8] = []

    init() { buffer.reserveCapacity(1 << 16) }

    func line(_ s: String) {
        buffer.append(contentsOf: s.utf8)
        buffer.append(10)
        if buffer.count >= 1 << 16 { flush() }
    }

    /// Bytes that already end in their newlines.
    func raw(_ bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
        if buffer.count >= 1 << 16 { flush() }
    }

    func line(bytes: [UInt8]) {
        buffer.append(contentsOf: bytes)
        buffer.append(10)
        if buffer.count >= 1 << 16 { flush() }
    }

    func flush() {
        var off = 0
        while off < buffer.count {
            let n = buffer[off...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            off += n
        }
        buffer.removeAll(keepingCapacity: true)
    }

    deinit { flush() }
}

/// Runs an archive command's body and reports an `ArgpError` the original's way.
func runArgp(_ command: String, _ body: (Output) throws(ArgpError) -> Void) throws {
    let out = Output()
    do {
        try body(out)
        out.flush()
    } catch {
        out.flush()
        let (lines, status) = error.report(command: command)
        for l in lines { printErr(l) }
        throw ExitCode(status)
    }
}

// MARK: printf pieces

/// `%-Ns`
func leftJustified(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

/// `%Ns`
func rightJustified(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
}

/// `%016llx`
func hex16(_ v: UInt64) -> String {
    let h = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 16 - h.count)) + h
}

/// `%09u`
func zeroPadded(_ v: UInt32, _ width: Int) -> String {
    let d = String(v)
    return String(repeating: "0", count: max(0, width - d.count)) + d
}

/// A C format of doubles (vsnprintf), for `%.2f`.
func cFormat(_ format: String, _ args: [Double]) -> String {
    var buf = [CChar](repeating: 0, count: 64)
    let n = withVaList(args) { va in
        buf.withUnsafeMutableBufferPointer { vsnprintf($0.baseAddress, $0.count, format, va) }
    }
    return String(decoding: buf.prefix(max(0, min(Int(n), 63))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
