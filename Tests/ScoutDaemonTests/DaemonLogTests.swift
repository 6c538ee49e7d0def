import Glibc
import Logging
import ScoutTestSupport
import Testing

@testable import ScoutDaemon

/// A datagram socket bound at a path, standing in for /dev/log.
final class FakeSyslog {
    let path: String
    let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in path.utf8.enumerated() { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard fd >= 0, rc == 0 else { throw Failure(message: "bind \(path): errno \(errno)") }
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// The next datagram (nil after 2 s without one).
    func receive() -> String? {
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buf, buf.count, 0)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }
}

@Suite struct DaemonLogTests {
    @Test func syslogLinesAreRFC3164() {
        // 2026-12-06 09:05:03 UTC, printed in local time as syslog(3) does
        var t: time_t = 1_796_547_903
        var tm = Glibc.tm()
        localtime_r(&t, &tm)
        let line = SyslogSocket.format(severity: 5, tag: "scoutfs", pid: 42, time: t, message: "notice: hello")
        let day = tm.tm_mday < 10 ? " \(tm.tm_mday)" : "\(tm.tm_mday)"
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        #expect(line == "<29>Dec \(day) \(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) scoutfs[42]: notice: hello")
        #expect(SyslogSocket.severity(.error) == 3)
        #expect(SyslogSocket.severity(.debug) == 7)
    }

    @Test func handlerWritesTheFileAndSyslogWithMetadata() throws {
        let dir = try TempDir.make(prefix: "daemon-log")
        defer { TempDir.remove(dir) }
        let sink = try FakeSyslog(path: dir + "/log.sock")
        let path = DaemonLog.path(rid: 0xabc, runDirectory: dir + "/run")
        #expect(path == dir + "/run/log/0000000000000abc.log")
        let file = try #require(DaemonLog.openFile(path))
        var logger = Logger(label: "scoutfs") { label in
            DaemonLog.handler(label: label, file: file, syslog: SyslogSocket(path: sink.path), standardError: false)
        }
        logger.logLevel = .info
        logger[metadataKey: "rid"] = "abc"
        logger.info("mounted here")
        logger.debug("not at info")
        let sent = try #require(sink.receive())
        #expect(sent.hasPrefix("<30>"))
        #expect(sent.hasSuffix("scoutfs[\(getpid())]: info: rid=abc mounted here"))
        let text = try TempDir.readText(path)
        #expect(text.hasSuffix(" info scoutfs: rid=abc mounted here\n"))
        #expect(!text.contains("not at info"))
    }

    @Test func aMissingSyslogSocketIsIgnored() throws {
        let dir = try TempDir.make(prefix: "daemon-log-none")
        defer { TempDir.remove(dir) }
        let logger = Logger(label: "scoutfs") { label in
            DaemonLog.handler(label: label, file: nil, syslog: SyslogSocket(path: dir + "/absent"), standardError: false)
        }
        logger.error("dropped")  // must neither block nor fail
    }
}

extension RealMounts {
@Suite(.serialized, .enabled(if: MountEnv.usable, "needs root, /dev/fuse and a built scoutfs"), .timeLimit(.minutes(3)))
struct DaemonLogMountTests {
    /// The daemon's log lines go to `<run dir>/log/<rid>.log`, not to the mount command's
    /// standard error; the command's own errors still do.
    @Test func theDaemonLogsToItsFileNotTheMountCommandsTerminal() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        let run = v.dir + "/run"
        let mount = "timeout 60 env SCOUTFS_LOG=info SCOUTFS_RUN_DIR=\(run) \(MountEnv.binary) mount -o metadev_path=\(v.dir)/meta,quorum_slot_nr=0,quorum_heartbeat_timeout_ms=2000 \(v.dir)/data \(v.mnt)"
        let (rc, out) = MountEnv.sh("\(mount) 2>\(v.dir)/stderr")
        #expect(rc == 0, "\(out)")
        let stderrText = (try? TempDir.readText(v.dir + "/stderr")) ?? "?"
        #expect(stderrText.isEmpty, "daemon lines on the mount command's stderr: \(stderrText)")
        let entry = try #require(MountRegistry(runDirectory: run).entries().first)
        let log = try TempDir.readText(DaemonLog.path(rid: entry.rid, runDirectory: run))
        #expect(log.contains("mounted \(v.dir)/data on \(v.mnt)"), "\(log)")
        #expect(log.contains("rid="), "\(log)")

        // a failed mount still says why on the command's standard error
        let (rc2, out2) = MountEnv.sh("\(mount.replacingMount(v.mnt, with: v.dir)) 2>&1")
        #expect(rc2 == 32, "\(out2)")
        #expect(out2.contains("scoutfs: mount failed: quorum_slot_nr=0 is in use"), "\(out2)")
        #expect(v.unmount() == 0)
        #expect((try? TempDir.readText(v.dir + "/stderr")) == "")
    }
}
}

extension String {
    /// The command with its mountpoint argument (the last word) replaced.
    fileprivate func replacingMount(_ mnt: String, with other: String) -> String {
        guard hasSuffix(" " + mnt) else { return self }
        return String(dropLast(mnt.count)) + other
    }
}
