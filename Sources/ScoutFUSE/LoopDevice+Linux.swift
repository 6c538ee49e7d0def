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
public final class LoopDevice: Sendable {
    /// `/dev/loopN`
    public let path: String
    /// `N`
    public let number: Int
    /// The backing file.
    public let backingPath: String
    private let holdFD: Atomic<Int32>

    private init(path: String, number: Int, backingPath: String, holdFD: Int32) {
        self.path = path
        self.number = number
        self.backingPath = backingPath
        self.holdFD = Atomic(holdFD)
    }

    deinit {
        self.releaseHold()
    }

    /// Attaches a free loop device over `backingPath` (`LOOP_CTL_GET_FREE` + `LOOP_CONFIGURE`, falling back to
    /// `LOOP_SET_FD` + `LOOP_SET_STATUS64` on kernels without LOOP_CONFIGURE), with autoclear.
    public static func attach(backingPath: String, readOnly: Bool = false, directIO: Bool = false) throws(FUSEMountError) -> LoopDevice {
        let backing = open(backingPath, (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
        guard backing >= 0 else { throw FUSEMountError(errno: errno, operation: "open \(backingPath)") }
        defer { close(backing) }
        let control = open("/dev/loop-control", O_RDWR | O_CLOEXEC)
        guard control >= 0 else { throw FUSEMountError(errno: errno, operation: "open /dev/loop-control") }
        defer { close(control) }

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
            if rc == 0 {
                return LoopDevice(path: path, number: Int(n), backingPath: backingPath, holdFD: dev)
            }
            lastError = FUSEMountError(errno: errno, operation: "LOOP_CONFIGURE \(path)")
            close(dev)
            if lastError.errno != EBUSY { throw lastError }
        }
        throw lastError
    }

    /// Closes this object's descriptor of the device. With autoclear the device detaches when no one else holds it
    /// (a mount holds it until unmounted). Idempotent.
    public func releaseHold() {
        let fd = self.holdFD.exchange(-1, ordering: .acquiringAndReleasing)
        if fd >= 0 { close(fd) }
    }
}
