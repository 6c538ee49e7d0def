import Glibc
import Logging
import ScoutFUSE

/// The block device a mount's fuseblk superblock sits on. Its device number is the mount's
/// `st_dev`, which must stay the same across remounts of a volume on a node (NFS file handles,
/// `find -xdev`, backup tools and our control socket name all key on it), while every mount on
/// the node needs a block device of its own (the kernel would hand a second mount of one
/// device the first mount's superblock and connection).
///
/// - A data device that is a block device nobody holds (no mount of any namespace claims it:
///   an exclusive open succeeds) is the source itself, as the original mounts on it: `st_dev`
///   is the data device's.
/// - Otherwise (a data file, or a second mount of the volume on this node) a loop device over
///   the data device at a number derived from the volume's fsid: the first free of
///   ``candidateCount`` numbers in ``loopNumbers`` is created and attached, and removed again
///   after the unmount (numbers a killed daemon left are reused, and removed by the next clean
///   exit). A remount gets the same number as long as no other volume's mount has
///   it; when all are taken, any free loop device (a changing `st_dev`, logged).
///
/// Choosing and mounting run under a host-wide lock (``lockPath``), so that two mounts starting
/// together never both take the data device.
struct FuseblkSource {
    /// The device mounted as fuseblk.
    let path: String
    /// The loop device, when the source is one.
    let loop: LoopDevice?
    /// The volume's fsid (its loop device numbers).
    let fsid: UInt64

    static let lockPath = "/run/scoutfs-fuseblk.lock"
    /// Where the preferred loop device numbers lie: above the pool that `losetup -f` and
    /// LOOP_CTL_GET_FREE hand out first.
    static let loopNumbers = 1024..<(1024 + 32768)
    static let candidateCount = 8

    /// The preferred loop device numbers of the volume `fsid`, most preferred first.
    static func preferredLoopNumbers(fsid: UInt64) -> [Int] {
        var out: [Int] = []
        var x = fsid
        while out.count < candidateCount {
            // splitmix64: the same numbers in every process (Swift's Hasher is seeded per process)
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            let n = loopNumbers.lowerBound + Int(z % UInt64(loopNumbers.count))
            if !out.contains(n) { out.append(n) }
        }
        return out
    }

    /// Picks the source for the volume `fsid` on `dataPath` and mounts fuseblk on it at
    /// `mountpoint`. Returns the source, the mount and its /dev/fuse descriptor.
    ///
    /// `mounted` is called, still under the host-wide lock, with the new mount's device number
    /// (the source's `st_rdev`, read from the block device, never from the mount), so that the
    /// mount registry names the device before anyone else may choose a device or take a
    /// registered one for a dead mount's (``LocalFence``).
    static func mount(
        dataPath: String, fsid: UInt64, at mountpoint: String, options: FUSEMountOptions, logger: Logger,
        mounted: (dev_t) -> Void = { _ in }
    ) throws(MountError) -> (FuseblkSource, FUSEMount, Int32) {
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if lock >= 0 {
            while flock(lock, LOCK_EX) != 0 && errno == EINTR {}
        } else {
            logger.warning("cannot open \(lockPath) (errno \(errno)): choosing the fuseblk source unlocked")
        }
        defer { if lock >= 0 { close(lock) } }

        if Self.isUnclaimedBlockDevice(dataPath) {
            do {
                let (m, fd) = try FUSEMount.mount(at: mountpoint, source: .block(devicePath: dataPath), options: options)
                mounted(Self.deviceNumber(dataPath))
                return (FuseblkSource(path: dataPath, loop: nil, fsid: fsid), m, fd)
            } catch where error.errno == EBUSY {
                logger.info("data device \(dataPath) is busy: mounting on a loop device over it")
            } catch {
                throw MountError(error.errno, "\(error)")
            }
        }
        let preferred = preferredLoopNumbers(fsid: fsid)
        let loop: LoopDevice
        do {
            loop = try LoopDevice.attach(backingPath: dataPath, readOnly: options.readOnly, preferred: preferred)
        } catch {
            throw MountError(error.errno, "cannot attach a loop device to \(dataPath): \(error)")
        }
        if !loop.isPreferred {
            logger.warning(
                "loop devices \(preferred.map { "loop\($0)" }.joined(separator: ", ")) are all in use: \(loop.path) is this mount's fuseblk source, so st_dev differs from earlier mounts")
        }
        do {
            let (m, fd) = try FUSEMount.mount(at: mountpoint, source: .block(devicePath: loop.path), options: options)
            mounted(Self.deviceNumber(loop.path))
            loop.releaseHold()
            return (FuseblkSource(path: loop.path, loop: loop, fsid: fsid), m, fd)
        } catch {
            loop.releaseHold()
            if loop.isPreferred { LoopDevice.remove(number: loop.number) }
            throw MountError(error.errno, "\(error)")
        }
    }

    /// The device number of the block device `path` (a fuseblk mount's `st_dev`); 0 when it
    /// cannot be read.
    static func deviceNumber(_ path: String) -> dev_t {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_rdev : 0
    }

    /// Whether `path` is a block device that no one holds exclusively (mounted filesystems,
    /// fuseblk mounts included, hold theirs so).
    static func isUnclaimedBlockDevice(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFBLK else { return false }
        let fd = open(path, O_RDONLY | O_EXCL | O_CLOEXEC)
        guard fd >= 0 else { return false }
        close(fd)
        return true
    }

    /// After the mount is gone: deletes the loop device this mount used, once it has detached,
    /// and any other of the volume's numbers a killed daemon left behind unused (those in use
    /// by other mounts stay).
    func finished() {
        guard let loop, loop.isPreferred else { return }
        LoopDevice.remove(number: loop.number)
        for n in Self.preferredLoopNumbers(fsid: fsid) where n != loop.number {
            LoopDevice.remove(number: n, timeout: .zero)
        }
    }
}
