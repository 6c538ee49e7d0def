public import ScoutFormat
public import SystemPackage

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

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
    /// Measures the device again (it may have grown: a resized block device, a file extended
    /// with truncate) and returns its size in bytes; `size` reports it from then on.
    func remeasure() throws(Errno) -> UInt64
}

extension BlockDevice {
    /// A device whose size never changes.
    public func remeasure() throws(Errno) -> UInt64 { size }
}

/// A device file or block device, read with `pread` and written with `pwrite`, opened with
/// `O_DIRECT` so that the host's page cache never holds its blocks.
///
/// The devices are shared by every node of a cluster and each host has its own page cache: a
/// block another host rewrote must never be served from ours. With `O_DIRECT` the daemon's
/// own caches (verified by seq) are the only caches. Direct I/O needs buffers, offsets and
/// lengths aligned to the device's logical block size; block and data buffers are page-aligned,
/// and any other I/O goes through an aligned bounce buffer (reading the edge sectors first when
/// a write covers them partly).
///
/// A regular file on a filesystem without direct I/O (EINVAL at open) is opened buffered: all
/// its openers on this host then share that file's one page cache, which is coherent.
public final class FileBlockDevice: BlockDevice {
    public let path: String
    public let fd: FileDescriptor
    /// The size measured at open, or by the last `remeasure`.
    public var size: UInt64 { measured.load(ordering: .acquiring) }
    private let measured: Atomic<UInt64>
    /// Whether I/O bypasses the host's page cache.
    public let direct: Bool
    /// The alignment direct I/O needs (a power of two, at least 4096).
    public let alignment: Int

    #if arch(x86_64) || arch(i386)
    static let oDirect: Int32 = 0o40000
    #else
    static let oDirect: Int32 = 0o200000
    #endif

    /// Opens `path` read-write (or read-only) and measures it: `st_size` for files, the
    /// `BLKGETSIZE64` ioctl for block devices. `direct` asks for `O_DIRECT` (the default).
    public init(path: String, writable: Bool, direct: Bool = true) throws(Errno) {
        self.path = path
        let flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC
        var raw: Int32 = -1
        var isDirect = false
        if direct {
            raw = Glibc.open(path, flags | Self.oDirect)
            if raw >= 0 {
                isDirect = true
            } else if errno != EINVAL {
                throw Errno(rawValue: errno)
            }
        }
        if raw < 0 {
            raw = Glibc.open(path, flags)
            guard raw >= 0 else { throw Errno(rawValue: errno) }
        }
        let fd = FileDescriptor(rawValue: raw)
        self.fd = fd
        self.direct = isDirect
        var st = stat()
        guard fstat(raw, &st) == 0 else {
            let e = Errno(rawValue: errno)
            try? fd.close()
            throw e
        }
        let measure: (size: UInt64, alignment: Int)
        do {
            measure = try Self.measure(fd: raw, stat: st)
        } catch {
            try? fd.close()
            throw error
        }
        self.measured = Atomic(measure.size)
        self.alignment = measure.alignment
    }

    /// The size in bytes of the open file or block device `fd` (`st_size`, or
    /// `BLKGETSIZE64`), and the alignment direct I/O on it needs.
    static func measure(fd raw: Int32, stat st: stat) throws(Errno) -> (size: UInt64, alignment: Int) {
        var align = 4096
        if (st.st_mode & S_IFMT) == S_IFBLK {
            var bytes: UInt64 = 0
            // BLKGETSIZE64 = _IOR(0x12, 114, size_t)
            let blkGetSize64: UInt = 0x8008_1272
            guard ioctl(raw, blkGetSize64, &bytes) == 0 else { throw Errno(rawValue: errno) }
            // BLKSSZGET = _IO(0x12, 104): the logical block size
            var lbs: Int32 = 0
            if ioctl(raw, UInt(0x1268), &lbs) == 0, lbs > 0, lbs & (lbs - 1) == 0 {
                align = max(align, Int(lbs))
            }
            return (bytes, align)
        } else if (st.st_mode & S_IFMT) == S_IFREG {
            return (UInt64(st.st_size), align)
        }
        throw Errno(rawValue: ENODEV)
    }

    /// The size in bytes of the file or block device at `path`, measured now.
    public static func measure(path: String) throws(Errno) -> UInt64 {
        let raw = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard raw >= 0 else { throw Errno(rawValue: errno) }
        defer { _ = Glibc.close(raw) }
        var st = stat()
        guard fstat(raw, &st) == 0 else { throw Errno(rawValue: errno) }
        return try measure(fd: raw, stat: st).size
    }

    public func remeasure() throws(Errno) -> UInt64 {
        var st = stat()
        guard fstat(fd.rawValue, &st) == 0 else { throw Errno(rawValue: errno) }
        let size = try Self.measure(fd: fd.rawValue, stat: st).size
        measured.store(size, ordering: .releasing)
        return size
    }

    deinit { try? fd.close() }

    public func read(into buffer: BlockBuffer, at offset: UInt64) throws(Errno) {
        try read(into: buffer.bytes, at: offset)
    }

    public func write(_ buffer: BlockBuffer, at offset: UInt64) throws(Errno) {
        try write(UnsafeRawBufferPointer(buffer.bytes), at: offset)
    }

    /// Reads exactly `dst.count` bytes at `offset` (EIO past the end of the device).
    public func read(into dst: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(Errno) {
        try Self.checkOffset(offset, dst.count)
        guard dst.count > 0 else { return }
        if isAligned(dst.baseAddress!, dst.count, offset) {
            try preadFully(dst.baseAddress!, dst.count, offset)
            return
        }
        let (start, length) = covering(offset, dst.count)
        let bounce = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: alignment)
        defer { bounce.deallocate() }
        try preadFully(bounce.baseAddress!, length, start)
        dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: bounce[Int(offset - start)..<Int(offset - start) + dst.count]))
    }

    /// Writes all of `src` at `offset`. An unaligned write with direct I/O reads the sectors it
    /// covers partly, merges and writes them whole.
    public func write(_ src: UnsafeRawBufferPointer, at offset: UInt64) throws(Errno) {
        try Self.checkOffset(offset, src.count)
        guard src.count > 0 else { return }
        if isAligned(src.baseAddress!, src.count, offset) {
            try pwriteFully(src.baseAddress!, src.count, offset)
            return
        }
        let (start, length) = covering(offset, src.count)
        let bounce = UnsafeMutableRawBufferPointer.allocate(byteCount: length, alignment: alignment)
        defer { bounce.deallocate() }
        let a = UInt64(alignment)
        if offset != start {
            try preadFully(bounce.baseAddress!, alignment, start)
        }
        let end = offset + UInt64(src.count)
        if end % a != 0 && (length > alignment || offset == start) {
            try preadFully(bounce.baseAddress! + length - alignment, alignment, start + UInt64(length) - a)
        }
        UnsafeMutableRawBufferPointer(rebasing: bounce[Int(offset - start)..<Int(offset - start) + src.count]).copyMemory(from: src)
        try pwriteFully(bounce.baseAddress!, length, start)
    }

    public func sync() throws(Errno) {
        if fsync(fd.rawValue) != 0 { throw Errno(rawValue: errno) }
    }

    // MARK: helpers

    private func isAligned(_ p: UnsafeRawPointer, _ count: Int, _ offset: UInt64) -> Bool {
        guard direct else { return true }
        let mask = alignment - 1
        return Int(bitPattern: p) & mask == 0 && count & mask == 0 && Int(offset & UInt64(mask)) == 0
    }

    /// The aligned range that covers `count` bytes at `offset`.
    private func covering(_ offset: UInt64, _ count: Int) -> (start: UInt64, length: Int) {
        let a = UInt64(alignment)
        let start = offset / a * a
        let end = (offset + UInt64(count) + a - 1) / a * a
        return (start, Int(end - start))
    }

    private func preadFully(_ p: UnsafeMutableRawPointer, _ count: Int, _ offset: UInt64) throws(Errno) {
        var done = 0
        while done < count {
            let n = pread(fd.rawValue, p + done, count - done, off_t(offset) + off_t(done))
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

    private func pwriteFully(_ p: UnsafeRawPointer, _ count: Int, _ offset: UInt64) throws(Errno) {
        var done = 0
        while done < count {
            let n = pwrite(fd.rawValue, p + done, count - done, off_t(offset) + off_t(done))
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
}
