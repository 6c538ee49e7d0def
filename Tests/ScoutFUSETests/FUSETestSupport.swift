import CFuseKernel
import Glibc
import ScoutFUSE
import ScoutTestSupport
import Synchronization
import Testing

/// Whether FUSE mounts can be tested here: root, and /dev/fuse openable.
enum FUSETestEnvironment {
    static let available: Bool = {
        guard getuid() == 0 else { return false }
        let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        close(fd)
        return true
    }()

    static let loopAvailable: Bool = access("/dev/loop-control", R_OK | W_OK) == 0
}

/// A mounted test filesystem.
struct Mounted {
    let mountpoint: String
    let dir: String
    let mount: FUSEMount
    let session: FUSESession<MemoryFileSystem>
    let loop: LoopDevice?
    var fs: MemoryFileSystem { self.session.filesystem }

    func path(_ name: String) -> String { self.mountpoint + "/" + name }
}

/// Mounts `fs` on a fresh temporary directory (plain fuse, or fuseblk over a loop device on a sparse file), runs
/// `body`, and always unmounts (forcing if `body` left it mounted) and waits (bounded) for the session to end.
/// Returns the body's result and how the session ended.
@discardableResult
func withMounted<R>(
    _ fs: MemoryFileSystem, blockDevice: Bool = false, configuration: FUSEConfiguration = FUSEConfiguration(),
    options: FUSEMountOptions = FUSEMountOptions(),
    _ body: (Mounted) throws -> R
) throws -> (result: R, end: FUSESessionEnd?) {
    let dir = try TempDir.make(prefix: "fuse")
    defer { TempDir.remove(dir) }
    let mountpoint = dir + "/mnt"
    guard Glibc.mkdir(mountpoint, 0o755) == 0 else { throw FUSEError(errno) }

    var loop: LoopDevice?
    let source: FUSEMountSource
    if blockDevice {
        let image = dir + "/data.img"
        try TempDir.sparseFile(image, size: 64 << 20)
        let l = try LoopDevice.attach(backingPath: image)
        loop = l
        source = .block(devicePath: l.path)
    } else {
        source = .fuse(name: "memfs")
    }
    let (mount, fd) = try FUSEMount.mount(at: mountpoint, source: source, options: options)
    loop?.releaseHold()
    let session = FUSESession(deviceFD: fd, filesystem: fs, configuration: configuration)
    var ended: FUSESessionEnd?
    defer {
        if FUSEMount.isMounted(mountpoint) {
            _ = umount2(mountpoint, Int32(MNT_FORCE) | Int32(MNT_DETACH))
        }
        if ended == nil {
            ended = session.wait(timeout: .seconds(10))
        }
        #expect(ended != nil, "the session did not end within 10 s of the unmount")
    }
    try session.start()
    let info = session.waitForInitialization(timeout: .seconds(10))
    try #require(info != nil, "INIT was not answered within 10 s")
    let mounted = Mounted(mountpoint: mountpoint, dir: dir, mount: mount, session: session, loop: loop)
    let result = try body(mounted)
    if FUSEMount.isMounted(mountpoint) {
        _ = umount2(mountpoint, Int32(MNT_FORCE) | Int32(MNT_DETACH))
    }
    ended = session.wait(timeout: .seconds(10))
    return (result, ended)
}

/// A pthread running a blocking closure (system calls that must not run on Swift's cooperative pool).
final class TestThread: Sendable {
    private final class Shared: Sendable {
        let result = Mutex<(Int, Int32)?>(nil)
    }
    private let shared = Shared()
    private let tid = Mutex<pthread_t?>(nil)

    /// Starts `body`, which returns a syscall-style result and errno.
    init(_ body: @escaping @Sendable () -> (Int, Int32)) {
        final class Box: @unchecked Sendable {  // handed to exactly one thread
            let run: () -> Void
            init(_ run: @escaping () -> Void) { self.run = run }
        }
        let shared = self.shared
        let box = Unmanaged.passRetained(Box {
            // Threads inherit the creator's signal mask, and the test runner's threads may block signals.
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGUSR1)
            pthread_sigmask(SIG_UNBLOCK, &set, nil)
            let r = body()
            shared.result.withLock { $0 = r }
        }).toOpaque()
        var t = pthread_t()
        let rc = pthread_create(&t, nil, { arg in
            Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create failed")
        pthread_detach(t)
        self.tid.withLock { $0 = t }
    }

    /// Sends `signal` to the thread.
    func kill(_ signal: Int32) {
        if let t = self.tid.withLock({ $0 }) { pthread_kill(t, signal) }
    }

    /// Waits up to `timeout` for the result.
    func join(timeout: Duration) -> (Int, Int32)? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if let r = self.shared.result.withLock({ $0 }) { return r }
            usleep(1000)
        }
        return self.shared.result.withLock { $0 }
    }
}

/// Polls `condition` every millisecond for up to `timeout`.
func waitUntil(timeout: Duration, _ condition: () -> Bool) -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        usleep(1000)
    }
    return condition()
}

/// Installs a no-op handler for `signal` without SA_RESTART, so a blocked system call returns EINTR.
func installInterruptingHandler(_ signal: Int32) {
    var sa = sigaction()
    sa.__sigaction_handler.sa_handler = { _ in }
    sigemptyset(&sa.sa_mask)
    sa.sa_flags = 0
    sigaction(signal, &sa, nil)
}

// Small syscall helpers returning errno on failure.

func statPath(_ path: String) -> (stat?, Int32) {
    var st = Glibc.stat()
    if stat(path, &st) == 0 { return (st, 0) }
    return (nil, errno)
}

func writeFile(_ path: String, _ bytes: [UInt8], flags: Int32 = O_CREAT | O_WRONLY | O_TRUNC) throws {
    let fd = open(path, flags | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw FUSEError(errno) }
    defer { close(fd) }
    let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    guard n == bytes.count else { throw FUSEError(n < 0 ? errno : EIO) }
}

func readFile(_ path: String, max: Int = 1 << 24) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw FUSEError(errno) }
    defer { close(fd) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 20)
    while out.count < max {
        let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n >= 0 else { throw FUSEError(errno) }
        if n == 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return out
}

/// The names in a directory (readdir(3)), without . and ..
func listDirectory(_ path: String) throws -> [String] {
    guard let d = opendir(path) else { throw FUSEError(errno) }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
        let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

func renameat2(_ from: String, _ to: String, flags: UInt32) -> Int32 {
    cfk_renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) == 0 ? 0 : errno
}

/// `UTIME_NOW` and `UTIME_OMIT` (macros Swift does not import).
let utimeNow = (1 << 30) - 1
let utimeOmit = (1 << 30) - 2
/// `AT_EMPTY_PATH` (hidden behind _GNU_SOURCE).
let atEmptyPath: Int32 = 0x1000

/// The filesystem type of the mount at `path`, from /proc/self/mounts (no request to the mount).
func mountType(_ path: String) -> String? {
    guard let text = try? TempDir.readText("/proc/self/mounts") else { return nil }
    var found: String?
    for line in text.split(separator: "\n") {
        let f = line.split(separator: " ")
        if f.count >= 3 && f[1] == path { found = String(f[2]) }
    }
    return found
}
