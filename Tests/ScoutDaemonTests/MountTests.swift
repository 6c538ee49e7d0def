import CFuseKernel
import Glibc
import ScoutTestSupport
import Testing

/// Real FUSE mounts of the built `scoutfs` binary (root and /dev/fuse needed).
enum MountEnv {
    static var root: String {
        var p = #filePath
        for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
        return p
    }
    static var binary: String { root + "/.build/debug/scoutfs" }
    static var usable: Bool {
        guard getuid() == 0, access(binary, X_OK) == 0 else { return false }
        let fd = open("/dev/fuse", O_RDWR)
        if fd < 0 { return false }
        close(fd)
        return true
    }

    /// Runs a command; returns (exit status, output).
    @discardableResult
    static func sh(_ cmd: String) -> (Int32, String) {
        let out = "/tmp/scoutfs-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).out"
        let status = system("(\(cmd)) > \(out) 2>&1")
        let text = (try? TempDir.readText(out)) ?? ""
        unlink(out)
        return ((status >> 8) & 0xff, text)
    }
}

/// Every suite that mounts the real daemon, run one test at a time: each test blocks its
/// thread of the cooperative pool for its whole run (shell commands, waits), and on a
/// 2-core machine two of them at once would starve every async test of the process.
@Suite(.serialized) enum RealMounts {}

/// A volume on sparse files with a mountpoint, mounted through the CLI.
struct MountedVolume {
    let dir: String
    let port: Int
    /// The data device when it is a loop device over `dir/data` (else the file itself).
    var dataLoop: String? = nil
    var mnt: String { dir + "/mnt" }
    var dataPath: String { dataLoop ?? dir + "/data" }

    /// `dataOnLoopDevice`: the data device is a loop device over the data file (a block device).
    static func make(dataOnLoopDevice: Bool = false) throws -> MountedVolume {
        let dir = try TempDir.make(prefix: "scoutfs-mnt")
        let port = Int.random(in: 20000...40000)
        try TempDir.sparseFile(dir + "/meta", size: 4 << 30)
        try TempDir.sparseFile(dir + "/data", size: 4 << 30)
        mkdir(dir + "/mnt", 0o755)
        mkdir(dir + "/run", 0o755)
        var v = MountedVolume(dir: dir, port: port)
        if dataOnLoopDevice {
            let (rc, out) = MountEnv.sh("losetup -f --show \(dir)/data")
            guard rc == 0 else { throw Failure(message: "losetup: \(out)") }
            v.dataLoop = out.trimmingCharacters(in: " \n")
        }
        let (rc, out) = MountEnv.sh("\(MountEnv.binary) mkfs -A -f -Q 0,127.0.0.1,\(port) \(dir)/meta \(v.dataPath)")
        guard rc == 0 else {
            v.cleanup()
            throw Failure(message: "mkfs: \(out)")
        }
        return v
    }

    /// Mounts it, with `options` (comma-separated) after the ones every test uses.
    func mount(options: String = "") throws {
        let (rc, out) = MountEnv.sh(
            "timeout 60 env SCOUTFS_LOG_STDERR=1 SCOUTFS_RUN_DIR=\(dir)/run \(MountEnv.binary) mount -o metadev_path=\(dir)/meta,quorum_slot_nr=0,quorum_heartbeat_timeout_ms=2000\(options.isEmpty ? "" : "," + options) \(dataPath) \(mnt) 2>>\(dir)/log")
        guard rc == 0 else { throw Failure(message: "mount: \(out)") }
    }

    func unmount() -> Int32 { MountEnv.sh("timeout 60 umount \(mnt)").0 }

    /// The daemon serving this mount.
    func daemonPid() -> pid_t? {
        let (_, out) = MountEnv.sh("pgrep -f 'scoutfs mount --foreground.* \(dir)/data '")
        return out.split(separator: "\n").compactMap { pid_t($0) }.first
    }

    /// Starts the fencing agent with the local fence script for this volume's mounts (a new
    /// server fences the mount it replaces); returns its pid.
    func startFenced() throws -> pid_t {
        let conf = "SCOUTFS_FENCED_DELAY=0.2\nSCOUTFS_FENCED_RUN=\(MountEnv.root)/scripts/scoutfs-fence-local\n"
        try writeFile(dir + "/fenced.conf", Array(conf.utf8), fsync: false)
        let (rc, out) = MountEnv.sh(
            "env SCOUTFS_RUN_DIR=\(dir)/run \(MountEnv.binary) fenced --config \(dir)/fenced.conf >> \(dir)/fenced.log 2>&1 & echo $!")
        guard rc == 0, let pid = pid_t(out.filter { $0.isNumber }) else { throw Failure(message: "fenced: \(out)") }
        return pid
    }

    func cleanup() {
        MountEnv.sh("umount -l \(mnt)")
        if let dataLoop { MountEnv.sh("losetup -d \(dataLoop)") }
        TempDir.remove(dir)
    }
}

struct Failure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

func writeFile(_ path: String, _ bytes: [UInt8], fsync doSync: Bool) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw Failure(message: "open \(path): errno \(errno)") }
    defer { close(fd) }
    let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard n == bytes.count else { throw Failure(message: "write \(path): \(n) errno \(errno)") }
    if doSync { guard fsync(fd) == 0 else { throw Failure(message: "fsync \(path): errno \(errno)") } }
}

/// A file's contents, nil when it cannot be read (see `readAll` for the errno).
func readFile(_ path: String) -> [UInt8]? { try? readAll(path) }

extension RealMounts {
@Suite("FUSE mounts of the scoutfs daemon", .serialized, .enabled(if: MountEnv.usable), .timeLimit(.minutes(5)))
struct MountTests {
    @Test func posixOperationsSurviveRemount() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        try v.mount()
        let m = v.mnt
        var rng = SplitMix64(seed: 42)
        let big = (0..<(3 << 20)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        #expect(mkdir(m + "/dir", 0o750) == 0)
        try writeFile(m + "/dir/big", big, fsync: false)
        try writeFile(m + "/small", Array("hello".utf8), fsync: true)
        #expect(symlink("dir/big", m + "/sl") == 0)
        #expect(link(m + "/small", m + "/dir/hard") == 0)
        #expect(rename(m + "/small", m + "/small2") == 0)
        #expect(setxattr(m + "/small2", "user.tag", "v", 1, 0) == 0)
        #expect(truncate(m + "/dir/big", 1_000_000) == 0)
        #expect(mkfifo(m + "/fifo", 0o600) == 0)
        #expect(unlink(m + "/fifo") == 0)
        var st = stat()
        #expect(stat(m + "/dir/hard", &st) == 0 && st.st_nlink == 2)
        // O_TMPFILE linked in through /proc
        let tfd = open(m + "/dir", cfk_o_tmpfile() | O_RDWR, 0o600)
        #expect(tfd >= 0)
        if tfd >= 0 {
            _ = write(tfd, "tmp", 3)
            #expect(linkat(AT_FDCWD, "/proc/self/fd/\(tfd)", AT_FDCWD, m + "/dir/fromtmp", AT_SYMLINK_FOLLOW) == 0)
            close(tfd)
        }
        #expect(MountEnv.sh("env SCOUTFS_RUN_DIR=\(v.dir)/run \(MountEnv.binary) sync -p \(m)").0 == 0)
        #expect(MountEnv.sh("env SCOUTFS_RUN_DIR=\(v.dir)/run \(MountEnv.binary) df -p \(m)").1.contains("MetaData"))
        #expect(v.unmount() == 0)

        try v.mount()
        #expect(readFile(m + "/dir/big") == Array(big.prefix(1_000_000)))
        #expect(readFile(m + "/small2") == Array("hello".utf8))
        #expect(readFile(m + "/dir/hard") == Array("hello".utf8))
        #expect(readFile(m + "/dir/fromtmp") == Array("tmp".utf8))
        var buf = [CChar](repeating: 0, count: 64)
        #expect(readlink(m + "/sl", &buf, 64) == 7)
        var x = [UInt8](repeating: 0, count: 8)
        #expect(getxattr(m + "/small2", "user.tag", &x, 8) == 1)
        #expect(access(m + "/small", F_OK) != 0)
        #expect(v.unmount() == 0)
        // the volume is consistent to our own checker
        #expect(MountEnv.sh("\(MountEnv.binary) print \(v.dir)/meta").0 == 0)
        let check = MountEnv.sh("\(MountEnv.binary) check \(v.dir)/meta \(v.dataPath)")
        #expect(check.0 == 0, "check: \(check.1)")
    }

    @Test func killNineKeepsEveryFsyncedByte() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        var rng = SplitMix64(seed: UInt64(getpid()))
        var synced: [String: [UInt8]] = [:]
        let fenced = try v.startFenced()
        defer { kill(fenced, SIGKILL) }
        for round in 0..<3 {
            try v.mount()
            guard let pid = v.daemonPid() else { throw Failure(message: "no daemon") }
            let files = 5 + rng.below(10)
            let killAt = rng.below(files)
            for i in 0..<files {
                let name = "r\(round)-f\(i)"
                let data = (0..<(1 + rng.below(200_000))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                try writeFile(v.mnt + "/" + name, data, fsync: true)
                synced[name] = data
                // unsynced work that may or may not survive
                try writeFile(v.mnt + "/" + name + ".unsynced", data, fsync: false)
                if i == killAt { break }
            }
            kill(pid, SIGKILL)
            usleep(200_000)
            MountEnv.sh("umount -l \(v.mnt)")
        }
        try v.mount()
        for (name, data) in synced {
            #expect(readFile(v.mnt + "/" + name) == data, "\(name) lost or changed after kill -9")
        }
        #expect(v.unmount() == 0)
        #expect(MountEnv.sh("\(MountEnv.binary) print \(v.dir)/meta").0 == 0)
        let check = MountEnv.sh("\(MountEnv.binary) check \(v.dir)/meta \(v.dataPath)")
        #expect(check.0 == 0, "check: \(check.1)")
    }

    @Test func badOptionsAreRefused() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        let cases = [
            "quorum_slot_nr=3,metadev_path=\(v.dir)/meta",
            "metadev_path=\(v.dir)/meta,quorum_slot_nr=15",
            "metadev_path=\(v.dir)/meta,quorum_heartbeat_timeout_ms=100",
            "metadev_path=\(v.dir)/meta,bogus",
            "quorum_slot_nr=0",
            "metadev_path=\(v.dir)/data,quorum_slot_nr=0",
        ]
        for o in cases {
            let (rc, out) = MountEnv.sh("timeout 30 env SCOUTFS_RUN_DIR=\(v.dir)/run \(MountEnv.binary) mount -o \(o) \(v.dir)/data \(v.mnt)")
            #expect(rc != 0, "mount -o \(o) succeeded")
            #expect(out.contains("scoutfs: mount failed"), "\(o): \(out)")
        }
    }
}
}
