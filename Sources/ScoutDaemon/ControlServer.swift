import Glibc
import Logging
public import ScoutFS
import ScoutFormat

/// Where a mount's control socket lives: one per mounted filesystem, named by the mount's
/// device number, so the CLI finds it by `stat`ing any path inside the mount.
public enum ControlSocket {
    public static let directory = "/run/scoutfs"

    public static func path(device: dev_t) -> String {
        "\(directory)/dev-\(major(device))-\(minor(device)).sock"
    }

    static func major(_ d: dev_t) -> UInt32 { UInt32(truncatingIfNeeded: ((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff)) }
    static func minor(_ d: dev_t) -> UInt32 { UInt32(truncatingIfNeeded: ((d >> 12) & 0xffff_ff00) | (d & 0xff)) }

    /// Sends one command line and returns (status line, body). Status "OK" or "ERR <errno> <message>".
    public static func request(path: String, _ line: String) throws(MountError) -> (ok: Bool, errno: Int32, body: String) {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw MountError(errno, "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { throw MountError(ENAMETOOLONG, "socket path too long") }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw MountError(errno, "cannot reach the mount's control socket \(path): \(String(cString: strerror(errno)))") }
        let out = Array((line + "\n").utf8)
        _ = out.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var reply: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            reply += buf[0..<n]
        }
        let text = String(decoding: reply, as: UTF8.self)
        let (status, body) = text.firstIndex(of: "\n").map { (String(text[..<$0]), String(text[text.index(after: $0)...])) } ?? (text, "")
        if status == "OK" { return (true, 0, body) }
        let parts = status.split(separator: " ", maxSplits: 2)
        let e = parts.count > 1 ? Int32(parts[1]) ?? EIO : EIO
        return (false, e, parts.count > 2 ? String(parts[2]) : status)
    }
}

/// Serves a mount's control socket: `df`, `statfs`, `counters` and `sync`, one command per
/// connection. Callers are identified by SO_PEERCRED; `sync` needs root or the mount's owner.
final class ControlServer: @unchecked Sendable {
    let fd: Int32
    let path: String
    let volume: Volume
    let logger: Logger
    private let stopped = CleanFlag()

    private init(fd: Int32, path: String, volume: Volume, logger: Logger) {
        self.fd = fd
        self.path = path
        self.volume = volume
        self.logger = logger
    }

    static func start(device: dev_t, volume: Volume, logger: Logger) throws(MountError) -> ControlServer {
        mkdir(ControlSocket.directory, 0o755)
        let path = ControlSocket.path(device: device)
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw MountError(errno, "control socket") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw MountError(e, "cannot bind control socket \(path)")
        }
        chmod(path, 0o666)
        let s = ControlServer(fd: fd, path: path, volume: volume, logger: logger)
        ClientLink.onThread { s.serve() }
        return s
    }

    func stop() {
        stopped.set()
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
        unlink(path)
    }

    private func serve() {
        while !stopped.isSet {
            let c = accept(fd, nil, nil)
            if c < 0 {
                if errno == EINTR { continue }
                return
            }
            // struct ucred: pid, uid, gid (needs _GNU_SOURCE in C, so read it as three int32s)
            var cred: (pid: Int32, uid: UInt32, gid: UInt32) = (0, UInt32.max, UInt32.max)
            var len = socklen_t(12)
            getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len)
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = read(c, &buf, buf.count)
            let line = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self).trimmingSuffixNewline() : ""
            let reply = handle(line, uid: cred.uid)
            let bytes = Array(reply.utf8)
            _ = bytes.withUnsafeBytes { write(c, $0.baseAddress, $0.count) }
            close(c)
        }
    }

    func handle(_ line: String, uid: uid_t) -> String {
        let words = line.split(separator: " ").map(String.init)
        guard let cmd = words.first else { return "ERR \(EINVAL) empty command\n" }
        do throws(FSError) {
            switch cmd {
            case "df", "statfs":
                let t = try volume.totals()
                let uuid = t.uuid.map { String($0, radix: 16).leftPad(2) }.joined()
                return "OK\n" + [
                    "meta_total \(t.totalMetaBlocks)", "meta_free \(t.freeMetaBlocks)",
                    "data_total \(t.totalDataBlocks)", "data_free \(t.freeDataBlocks)",
                    "inode_count \(t.inodeCount)", "fsid \(String(volume.fsid, radix: 16).leftPad(16))",
                    "uuid \(uuid)", "committed_seq \(try volume.committedSeq())",
                ].joined(separator: "\n") + "\n"
            case "counters":
                let c = volume.counters
                return "OK\n" + [
                    "commits \(c.commits)", "commit_items \(c.commitItems)", "orphans_deleted \(c.orphansDeleted)",
                    "data_bytes_read \(c.dataBytesRead)", "data_bytes_written \(c.dataBytesWritten)",
                ].joined(separator: "\n") + "\n"
            case "sync":
                guard uid == 0 || uid == getuid() else { return "ERR \(EPERM) only root or the mount's owner may sync\n" }
                try volume.sync()
                return "OK\n"
            default:
                return "ERR \(EINVAL) unknown command \(cmd)\n"
            }
        } catch {
            return "ERR \(error.errno) \(error.message)\n"
        }
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
    func trimmingSuffixNewline() -> String {
        var s = self
        while s.hasSuffix("\n") || s.hasSuffix("\r") { s.removeLast() }
        return s
    }
}
