import CFuseKernel
import Glibc
import Synchronization

/// A failed system call while mounting, unmounting or setting up a loop device.
public struct FUSEMountError: ErrnoConvertible, Hashable, Sendable, CustomStringConvertible {
    /// The errno.
    public var errno: Int32
    /// What was being done ("mount /mnt", "LOOP_CONFIGURE /dev/loop3", ...).
    public var operation: String

    /// Makes an error.
    public init(errno: Int32, operation: String) {
        self.errno = errno
        self.operation = operation
    }

    public var errnoValue: Int32 { self.errno }

    public var description: String { "\(self.operation): \(FUSEError(self.errno))" }
}

/// A loop device attached over a file (or a block device), so that a fuseblk mount has its own block device.
///
/// The device is attached with `LO_FLAGS_AUTOCLEAR`: the kernel detaches it when its last opener closes it. This
/// object keeps the device open until ``releaseHold()`` (call it after `mount(2)` succeeded: the mount then holds
/// the device, and the unmount frees it) or until it is deinitialized. Several loop devices may sit over one file,
/// which is how several mounts of one data file get distinct fuseblk sources.
///
/// A caller that wants the same device number every time (a stable `st_dev`) names preferred device numbers: the
/// first of them that is free is created if needed (`LOOP_CTL_ADD`) and attached; ``remove(number:timeout:)``
/// deletes it again once it is detached.
public final class LoopDevice: Sendable {
    /// `/dev/loopN`
    public let path: String
    /// `N`
    public let number: Int
    /// The backing file.
    public let backingPath: String
    /// Whether the device is one of the preferred numbers (rather than a free device of the pool).
    public let isPreferred: Bool
    private let holdFD: Atomic<Int32>

    private init(path: String, number: Int, backingPath: String, isPreferred: Bool, holdFD: Int32) {
        self.path = path
        self.number = number
        self.backingPath = backingPath
        self.isPreferred = isPreferred
        self.holdFD = Atomic(holdFD)
    }

    deinit {
        self.releaseHold()
    }

    /// Attaches a loop device over `backingPath` with autoclear: the first free one of `preferred` (created when it
    /// does not exist), else a free device of the pool (`LOOP_CTL_GET_FREE`). Configures with `LOOP_CONFIGURE`,
    /// falling back to `LOOP_SET_FD` + `LOOP_SET_STATUS64` on kernels without it.
    public static func attach(
        backingPath: String, readOnly: Bool = false, directIO: Bool = false, preferred: [Int] = []
    ) throws(FUSEMountError) -> LoopDevice {
        let backing = open(backingPath, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard backing >= 0 else { throw FUSEMountError(errno: errno, operation: "open \(backingPath)") }
        defer { close(backing) }
        let control = open("/dev/loop-control", O_RDWR | O_CLOEXEC)
        guard control >= 0 else { throw FUSEMountError(errno: errno, operation: "open /dev/loop-control") }
        defer { close(control) }
        let setup = Setup(backing: backing, backingPath: backingPath, readOnly: readOnly, directIO: directIO)

        preferring: for n in preferred where n >= 0 {
            // A device another attacher just removed (between our ADD and open) is added again.
            for _ in 0..<3 {
                let added = cfk_ioctl_ulong(control, cfk_loop_ctl_add(), UInt(n))
                guard added >= 0 || errno == EEXIST else { break }
                let path = "/dev/loop\(n)"
                let dev = Self.openNode(path, readOnly: readOnly, waiting: added >= 0)
                if dev < 0 {
                    if errno == ENOENT && added >= 0 {
                        // no node for a device we made: /dev is not devtmpfs, use the pool
                        _ = cfk_ioctl_ulong(control, cfk_loop_ctl_remove(), UInt(n))
                        break preferring
                    }
                    if errno == ENOENT || errno == ENXIO { continue }
                    break
                }
                if case .success = setup.configure(dev, path) {
                    return LoopDevice(path: path, number: n, backingPath: backingPath, isPreferred: true, holdFD: dev)
                }
                close(dev)
                break
            }
        }

        var lastError = FUSEMountError(errno: EBUSY, operation: "LOOP_CTL_GET_FREE")
        // Another process can take the free device between GET_FREE and CONFIGURE (EBUSY): try again.
        for _ in 0..<16 {
            let n = cfk_ioctl_ulong(control, cfk_loop_ctl_get_free(), 0)
            guard n >= 0 else { throw FUSEMountError(errno: errno, operation: "LOOP_CTL_GET_FREE") }
            let path = "/dev/loop\(n)"
            let dev = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
            guard dev >= 0 else {
                lastError = FUSEMountError(errno: errno, operation: "open \(path)")
                if errno == ENOENT || errno == EBUSY { continue }
                throw lastError
            }
            switch setup.configure(dev, path) {
            case .success:
                return LoopDevice(path: path, number: Int(n), backingPath: backingPath, isPreferred: false, holdFD: dev)
            case .failure(let e):
                lastError = e
                close(dev)
                if lastError.errno != EBUSY { throw lastError }
            }
        }
        throw lastError
    }

    /// Opens a loop device's node; `waiting` for one that `LOOP_CTL_ADD` just created (devtmpfs may show it a
    /// moment later).
    private static func openNode(_ path: String, readOnly: Bool, waiting: Bool) -> Int32 {
        for _ in 0..<(waiting ? 100 : 1) {
            let fd = open(path, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
            if fd >= 0 || errno != ENOENT { return fd }
            usleep(10_000)
        }
        errno = ENOENT
        return -1
    }

    /// How a device is bound to the backing file.
    private struct Setup {
        let backing: Int32
        let backingPath: String
        let readOnly: Bool
        let directIO: Bool

        func configure(_ dev: Int32, _ path: String) -> Result<Void, FUSEMountError> {
            var flags = UInt32(LO_FLAGS_AUTOCLEAR)
            if readOnly { flags |= UInt32(LO_FLAGS_READ_ONLY) }
            if directIO { flags |= UInt32(LO_FLAGS_DIRECT_IO) }
            var info = loop_info64()
            info.lo_flags = flags
            withUnsafeMutableBytes(of: &info.lo_file_name) { dst in
                let bytes = Array(backingPath.utf8.prefix(dst.count - 1))
                dst.copyBytes(from: bytes)
            }
            var config = loop_config()
            config.fd = UInt32(backing)
            config.info = info
            var rc = cfk_ioctl_ptr(dev, cfk_loop_configure(), &config)
            if rc != 0 && (errno == EINVAL || errno == ENOTTY) {
                // Older kernels: SET_FD then SET_STATUS64 (no DIRECT_IO/READ_ONLY through status).
                rc = cfk_ioctl_ulong(dev, cfk_loop_set_fd(), UInt(backing))
                if rc == 0 {
                    info.lo_flags = UInt32(LO_FLAGS_AUTOCLEAR)
                    rc = cfk_ioctl_ptr(dev, cfk_loop_set_status64(), &info)
                    if rc != 0 {
                        let e = errno
                        _ = cfk_ioctl_ulong(dev, cfk_loop_clr_fd(), 0)
                        errno = e
                    }
                }
            }
            return rc == 0 ? .success(()) : .failure(FUSEMountError(errno: errno, operation: "LOOP_CONFIGURE \(path)"))
        }
    }

    /// Deletes `/dev/loopN` (`LOOP_CTL_REMOVE`) once it is detached and nobody has it open, waiting up to `timeout`
    /// for that (an autoclear device detaches shortly after its unmount). Returns false when it stayed in use: then
    /// someone else is using it, and it is theirs to keep.
    @discardableResult
    public static func remove(number: Int, timeout: Duration = .seconds(2)) -> Bool {
        let control = open("/dev/loop-control", O_RDWR | O_CLOEXEC)
        guard control >= 0 else { return false }
        defer { close(control) }
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while true {
            if cfk_ioctl_ulong(control, cfk_loop_ctl_remove(), UInt(number)) >= 0 || errno == ENODEV { return true }
            guard errno == EBUSY, clock.now < deadline else { return false }
            usleep(50_000)
        }
    }

    /// Closes this object's descriptor of the device. With autoclear the device detaches when no one else holds it
    /// (a mount holds it until unmounted). Idempotent.
    public func releaseHold() {
        let fd = self.holdFD.exchange(-1, ordering: .acquiringAndReleasing)
        if fd >= 0 { close(fd) }
    }
}
