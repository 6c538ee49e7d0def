public import ScoutBlockIO
public import ScoutFormat
public import SystemPackage
import Synchronization

/// A sparse in-memory device: 4 KiB pages that were never written read as zeros.
public final class MemoryDevice: BlockDevice {
    public let size: UInt64
    private let pages = Mutex([UInt64: [UInt8]]())
    private static let page = 4096

    public init(size: UInt64) { self.size = size }

    public func read(into buffer: BlockBuffer, at offset: UInt64) throws(Errno) {
        guard offset + UInt64(buffer.size) <= size else { throw .ioError }
        pages.withLock { p in
            var done = 0
            while done < buffer.size {
                let off = offset + UInt64(done)
                let pg = off / UInt64(Self.page)
                let within = Int(off % UInt64(Self.page))
                let n = min(Self.page - within, buffer.size - done)
                if let bytes = p[pg] {
                    for i in 0..<n { buffer.bytes[done + i] = bytes[within + i] }
                } else {
                    buffer.zero(done, n)
                }
                done += n
            }
        }
    }

    public func write(_ buffer: BlockBuffer, at offset: UInt64) throws(Errno) {
        guard offset + UInt64(buffer.size) <= size else { throw .noSpace }
        writeBytes(Array(UnsafeRawBufferPointer(buffer.bytes)), at: offset)
    }

    /// Writes raw bytes (used to tear writes part way).
    public func writeBytes(_ bytes: [UInt8], at offset: UInt64) {
        pages.withLock { p in
            var done = 0
            while done < bytes.count {
                let off = offset + UInt64(done)
                let pg = off / UInt64(Self.page)
                let within = Int(off % UInt64(Self.page))
                let n = min(Self.page - within, bytes.count - done)
                var page = p[pg] ?? [UInt8](repeating: 0, count: Self.page)
                for i in 0..<n { page[within + i] = bytes[done + i] }
                p[pg] = page
                done += n
            }
        }
    }

    public func sync() throws(Errno) {}

    /// A copy of the whole device, as a crash would leave it.
    public func snapshot() -> MemoryDevice {
        let copy = MemoryDevice(size: size)
        let mine = pages.withLock { $0 }
        copy.pages.withLock { $0 = mine }
        return copy
    }
}

/// Wraps a device and simulates a crash at the Nth write: that write and every later one is
/// dropped, or the Nth is torn (only its first `tearBytes` reach the device) and later ones dropped.
///
/// Syncs are passed through; reads see what reached the device.
public final class CrashingDevice: BlockDevice {
    public enum Mode: Sendable {
        /// Writes from the Nth on are lost.
        case drop
        /// The Nth write is cut after `bytes`; later writes are lost.
        case tear(bytes: Int)
    }

    public let base: MemoryDevice
    public let crashAt: Int
    public let mode: Mode
    private let writes = Mutex(0)

    /// - Parameter crashAt: the 0-based index of the first write that does not (fully) land.
    public init(base: MemoryDevice, crashAt: Int, mode: Mode) {
        self.base = base
        self.crashAt = crashAt
        self.mode = mode
    }

    public var size: UInt64 { base.size }
    /// Writes attempted so far.
    public var writeCount: Int { writes.withLock { $0 } }
    /// Whether the crash point has been reached.
    public var crashed: Bool { writeCount > crashAt }

    public func read(into buffer: BlockBuffer, at offset: UInt64) throws(Errno) {
        try base.read(into: buffer, at: offset)
    }

    public func write(_ buffer: BlockBuffer, at offset: UInt64) throws(Errno) {
        let n = writes.withLock { w in
            defer { w += 1 }
            return w
        }
        if n < crashAt {
            try base.write(buffer, at: offset)
        } else if n == crashAt, case .tear(let bytes) = mode {
            let all = Array(UnsafeRawBufferPointer(buffer.bytes))
            base.writeBytes(Array(all.prefix(bytes)), at: offset)
        }
    }

    public func sync() throws(Errno) {}
}
