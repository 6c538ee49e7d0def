public import ScoutFormat
public import SystemPackage

/// Why a block could not be read or written.
public enum BlockIOError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The device failed the read or write.
    case io(Errno, blkno: UInt64)
    /// The block was read but failed verification (corrupt, or stale: see `FormatError.isStale`).
    case format(FormatError)

    public var description: String {
        switch self {
        case .io(let e, let b): return "blkno \(b): \(e)"
        case .format(let f): return f.description
        }
    }
}

/// Reads and writes the metadata device's 64 KiB blocks and its 4 KiB super and quorum blocks,
/// verifying every read, through a bounded cache of clean blocks.
public final class MetaDevice: Sendable {
    public let device: any BlockDevice
    public let fsid: UInt64
    public let cache: BlockCache

    /// - Parameter cacheBytes: memory the block cache may hold.
    public init(device: any BlockDevice, fsid: UInt64, cacheBytes: Int = 64 << 20) {
        self.device = device
        self.fsid = fsid
        self.cache = BlockCache(capacity: cacheBytes)
    }

    /// Number of 64 KiB blocks on the device.
    public var totalLargeBlocks: UInt64 { device.size >> UInt64(Format.largeShift) }

    /// Reads a 64 KiB block by reference and verifies magic, crc, fsid, blkno and seq.
    ///
    /// A stale reference (every check passes but the seq) throws `.format(.stale)`, distinct
    /// from corruption, and is never cached.
    public func read(_ ref: BlockRef, magic: BlockMagic) throws(BlockIOError) -> BlockBuffer {
        if let b = cache.get(blkno: ref.blkno, seq: ref.seq) { return b }
        let b = try readUnverified(largeBlkno: ref.blkno)
        do {
            try b.verify(magic: magic, fsid: fsid, blkno: ref.blkno, seq: ref.seq)
        } catch {
            throw .format(error)
        }
        cache.insert(blkno: ref.blkno, seq: ref.seq, buffer: b)
        return b
    }

    /// Reads a 64 KiB block without verifying it (for print and repair tools).
    public func readUnverified(largeBlkno blkno: UInt64) throws(BlockIOError) -> BlockBuffer {
        let b = BlockBuffer(size: Format.largeBlockSize)
        try checkInside(blkno, shift: Format.largeShift)
        do {
            try device.read(into: b, at: blkno << UInt64(Format.largeShift))
        } catch {
            throw .io(error, blkno: blkno)
        }
        return b
    }

    /// Reads a 4 KiB block (super or quorum) and verifies magic, crc, fsid and blkno.
    public func readSmall(blkno: UInt64, magic: BlockMagic) throws(BlockIOError) -> BlockBuffer {
        let b = BlockBuffer(size: Format.smallBlockSize)
        try checkInside(blkno, shift: Format.smallShift)
        do {
            try device.read(into: b, at: blkno << UInt64(Format.smallShift))
        } catch {
            throw .io(error, blkno: blkno)
        }
        do {
            try b.verify(magic: magic, fsid: fsid, blkno: blkno, seq: nil)
        } catch {
            throw .format(error)
        }
        return b
    }

    /// Seals (crc) and writes a 64 KiB block at the blkno in its header; caches it as clean.
    public func write(large b: BlockBuffer) throws(BlockIOError) {
        let h = b.header
        try checkInside(h.blkno, shift: Format.largeShift)
        b.seal()
        do {
            try device.write(b, at: h.blkno << UInt64(Format.largeShift))
        } catch {
            cache.remove(blkno: h.blkno)
            throw .io(error, blkno: h.blkno)
        }
        cache.insert(blkno: h.blkno, seq: h.seq, buffer: b)
    }

    /// Seals and writes a 4 KiB block at the blkno in its header.
    public func write(small b: BlockBuffer) throws(BlockIOError) {
        let h = b.header
        try checkInside(h.blkno, shift: Format.smallShift)
        b.seal()
        do {
            try device.write(b, at: h.blkno << UInt64(Format.smallShift))
        } catch {
            throw .io(error, blkno: h.blkno)
        }
    }

    /// Throws EIO for a blkno past the end of the device: shifting it to a byte offset would
    /// wrap (a write would land on another block) or overflow the device's offset arithmetic.
    /// A blkno past the size measured so far is looked for again once: the device may have
    /// grown since (RESIZE_DEVICES on another mount hands out the new blocks).
    private func checkInside(_ blkno: UInt64, shift: Int) throws(BlockIOError) {
        if blkno < device.size >> UInt64(shift) { return }
        let now = (try? device.remeasure()) ?? device.size
        guard blkno < now >> UInt64(shift) else { throw .io(Errno.ioError, blkno: blkno) }
    }

    /// Waits for every write to be durable.
    public func sync() throws(BlockIOError) {
        do {
            try device.sync()
        } catch {
            throw .io(error, blkno: 0)
        }
    }

    /// Reads and decodes the super block of a device whose fsid is not known yet.
    public static func readSuper(from device: any BlockDevice) throws(BlockIOError) -> SuperBlock {
        let b = BlockBuffer(size: Format.smallBlockSize)
        do {
            try device.read(into: b, at: Format.superBlkno << UInt64(Format.smallShift))
        } catch {
            throw .io(error, blkno: Format.superBlkno)
        }
        let h = b.header
        do {
            try b.verify(magic: .superBlock, fsid: h.fsid, blkno: Format.superBlkno, seq: nil)
            return try b.decode(SuperBlock.self)
        } catch {
            throw .format(error)
        }
    }

    /// Writes a super block (4 KiB, zero padded) with its crc.
    public func writeSuper(_ sb: SuperBlock) throws(BlockIOError) {
        let b = BlockBuffer(size: Format.smallBlockSize)
        b.write(sb, at: 0)
        try write(small: b)
    }
}
