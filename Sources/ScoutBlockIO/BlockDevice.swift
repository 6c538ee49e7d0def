public import ScoutFormat
public import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where blocks are read from and written to: a device file or block device, or a test double.
///
/// Offsets are in bytes; callers use `Format.smallBlockSize`/`largeBlockSize` multiples.
public protocol BlockDevice: AnyObject, Sendable {
    /// Size of the device in bytes.
    var size: UInt64 { get }
    /// Reads exactly `buffer.size` bytes at `offset` into the buffer.
    func read(into buffer: BlockBuffer, at offset: UInt64) throws(Errno)
    /// Writes the whole buffer at `offset`.
    func write(_ buffer: BlockBuffer, at offset: UInt64) throws(Errno)
    /// Makes every completed write durable.
    func sync() throws(Errno)
}

/// A device file or block device opened with `open(2)`, read with `pread`, written with `pwrite`.
public final class FileBlockDevice: BlockDevice {
    public let path: String
    public let fd: FileDescriptor
    public let size: UInt64

    /// Opens `path` read-write (or read-only) and measures it: `st_size` for files, the
    /// `BLKGETSIZE64` ioctl for block devices.
    public init(path: String, writable: Bool) throws(Errno) {
        self.path = path
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(path), writable ? .readWrite : .readOnly, options: [.closeOnExec])
        } catch let e as Errno {
            throw e
        } catch {
            throw Errno.ioError
        }
        self.fd = fd
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else {
            let e = Errno(rawValue: errno)
            try? fd.close()
            throw e
        }
        if (st.st_mode & S_IFMT) == S_IFBLK {
            var bytes: UInt64 = 0
            // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
            let blkGetSize64: UInt = 0x8008_1272
            guard ioctl(fd.rawValue, blkGetSize64, &bytes) == 0 else {
                let e = Errno(rawValue: errno)
                try? fd.close()
                throw e
            }
            self.size = bytes
        } else if (st.st_mode & S_IFMT) == S_IFREG {
            self.size = UInt64(st.st_size)
        } else {
            try? fd.close()
            throw Errno(rawValue: ENODEV)
        }
    }

    deinit { try? fd.close() }

    public func read(into buffer: BlockBuffer, at offset: UInt64) throws(Errno) {
        try Self.checkOffset(offset, buffer.size)
        var done = 0
        while done < buffer.size {
            let n = pread(fd.rawValue, buffer.bytes.baseAddress! + done, buffer.size - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno(rawValue: errno)
            }
            if n == 0 {
                // past the end of the device: short read
                throw Errno.ioError
            }
            done += n
        }
    }

    public func write(_ buffer: BlockBuffer, at offset: UInt64) throws(Errno) {
        try Self.checkOffset(offset, buffer.size)
        var done = 0
        while done < buffer.size {
            let n = pwrite(fd.rawValue, buffer.bytes.baseAddress! + done, buffer.size - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw Errno(rawValue: errno)
            }
            done += n
        }
    }

    /// off_t is signed: an I/O ending past Int64.max is EINVAL (as pread says for a negative
    /// offset) rather than a trap converting the offset.
    private static func checkOffset(_ offset: UInt64, _ count: Int) throws(Errno) {
        guard offset <= UInt64(Int64.max) - UInt64(count) else { throw .invalidArgument }
    }

    public func sync() throws(Errno) {
        if fsync(fd.rawValue) != 0 { throw Errno(rawValue: errno) }
    }
}
