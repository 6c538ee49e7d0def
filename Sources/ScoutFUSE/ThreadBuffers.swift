import CFuseKernel
import Glibc
import Logging

/// One reader thread's request and reply buffers, allocated once and reused for every request.
///
/// Request buffer: reading starts 80 bytes before a page boundary, so that a WRITE's payload (after the 40-byte
/// `fuse_in_header` and the 40-byte `fuse_write_in`) lands page-aligned. Every other request's structs are still
/// 8-byte aligned. Reply buffer: the data area (READ, READDIR) starts on a page boundary, with room for the
/// 16-byte `fuse_out_header` right before it, so a data reply is one contiguous `write`.
final class ThreadBuffers {
    static let page = 4096
    static let writePrefix = MemoryLayout<fuse_in_header>.size + MemoryLayout<fuse_write_in>.size

    private let inBase: UnsafeMutableRawPointer
    private let outBase: UnsafeMutableRawPointer
    /// Where `read(2)` puts a request.
    let readStart: UnsafeMutableRawPointer
    /// How many bytes `read(2)` may put there (≥ header + write_in + max_write, ≥ FUSE_MIN_READ_BUFFER).
    let readLength: Int
    /// Reply data area (page-aligned) and its capacity.
    let outData: UnsafeMutableRawPointer
    let outCapacity: Int

    init(maxWrite: Int, maxData: Int) {
        let inSize = Self.page + maxWrite + Self.page
        self.inBase = UnsafeMutableRawPointer.allocate(byteCount: inSize, alignment: Self.page)
        self.readStart = self.inBase + (Self.page - Self.writePrefix)
        self.readLength = inSize - (Self.page - Self.writePrefix)
        self.outCapacity = max(maxData, Self.page)
        self.outBase = UnsafeMutableRawPointer.allocate(byteCount: Self.page + self.outCapacity, alignment: Self.page)
        self.outData = self.outBase + Self.page
    }

    deinit {
        self.inBase.deallocate()
        self.outBase.deallocate()
    }
}

/// Writes replies to the device. Every reply is one `write`/`writev` of a `fuse_out_header` plus payload.
struct ReplyWriter {
    let fd: Int32
    let buffers: ThreadBuffers
    let core: SessionCore

    private static let headerSize = MemoryLayout<fuse_out_header>.size

    @inline(__always)
    private func check(_ n: Int, _ expected: Int, _ unique: UInt64) {
        if n == expected { return }
        let e = errno
        // ENOENT: the request is gone (interrupted and answered by the kernel, or aborted); ENODEV: the connection
        // ended. Both are normal; the reader will see the end itself.
        if n < 0 && (e == ENOENT || e == ENODEV || e == ECONNABORTED) { return }
        self.core.logger.warning(
            "FUSE reply write failed", metadata: ["unique": "\(unique)", "result": "\(n)", "errno": "\(e)"])
    }

    /// An error reply (`errno` positive).
    func error(_ unique: UInt64, _ errno: Int32) {
        var h = fuse_out_header(len: UInt32(Self.headerSize), error: -errno, unique: unique)
        let n = withUnsafeBytes(of: &h) { Glibc.write(self.fd, $0.baseAddress, Self.headerSize) }
        self.check(n, Self.headerSize, unique)
    }

    /// A success reply without payload.
    func ok(_ unique: UInt64) {
        self.error(unique, 0)
    }

    /// A success reply with one struct (its first `size` bytes, for protocol versions with shorter structs).
    func value<T>(_ unique: UInt64, _ value: T, size: Int = MemoryLayout<T>.size) {
        let size = min(size, MemoryLayout<T>.size)
        self.buffers.outData.storeBytes(of: value, as: T.self)
        self.inPlace(unique, count: size)
    }

    /// A success reply whose payload already sits at the start of the reply data area.
    func inPlace(_ unique: UInt64, count: Int) {
        let start = self.buffers.outData - Self.headerSize
        start.storeBytes(
            of: fuse_out_header(len: UInt32(Self.headerSize + count), error: 0, unique: unique),
            as: fuse_out_header.self)
        let n = Glibc.write(self.fd, start, Self.headerSize + count)
        self.check(n, Self.headerSize + count, unique)
    }

    /// A success reply with a struct followed by bytes (`writev`, no copy of the bytes).
    func value<T>(_ unique: UInt64, _ value: T, then bytes: UnsafeRawBufferPointer) {
        let size = MemoryLayout<T>.size
        var h = fuse_out_header(len: UInt32(Self.headerSize + size + bytes.count), error: 0, unique: unique)
        var v = value
        let total = Self.headerSize + size + bytes.count
        let n = withUnsafeMutableBytes(of: &h) { hp in
            withUnsafeMutableBytes(of: &v) { vp in
                var iov = (
                    iovec(iov_base: hp.baseAddress, iov_len: Self.headerSize),
                    iovec(iov_base: vp.baseAddress, iov_len: size),
                    iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
                )
                return withUnsafeMutableBytes(of: &iov) { ip in
                    writev(self.fd, ip.baseAddress!.assumingMemoryBound(to: iovec.self), bytes.count > 0 ? 3 : 2)
                }
            }
        }
        self.check(n, total, unique)
    }

    /// A success reply with bytes only.
    func bytes(_ unique: UInt64, _ bytes: UnsafeRawBufferPointer) {
        var h = fuse_out_header(len: UInt32(Self.headerSize + bytes.count), error: 0, unique: unique)
        let total = Self.headerSize + bytes.count
        let n = withUnsafeMutableBytes(of: &h) { hp in
            var iov = (
                iovec(iov_base: hp.baseAddress, iov_len: Self.headerSize),
                iovec(iov_base: UnsafeMutableRawPointer(mutating: bytes.baseAddress), iov_len: bytes.count)
            )
            return withUnsafeMutableBytes(of: &iov) { ip in
                writev(self.fd, ip.baseAddress!.assumingMemoryBound(to: iovec.self), bytes.count > 0 ? 2 : 1)
            }
        }
        self.check(n, total, unique)
    }
}
