import CBlkid
public import ScoutBlockIO
public import ScoutFormat
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What `scoutfs mkfs` was asked to do.
public struct MkfsOptions: Sendable {
    public var metaPath: String
    public var dataPath: String
    /// Quorum slots by number (0..<15).
    public var slots: [Int: InetAddr]
    public var force = false
    public var allowSmallSize = false
    /// Use at most this many bytes of the meta device (0: all of it).
    public var maxMetaSize: UInt64 = 0
    /// Use at most this many bytes of the data device (0: all of it).
    public var maxDataSize: UInt64 = 0
    public var dataAllocZoneBlocks: UInt64 = 0
    public var formatVersion: UInt64 = Format.versionMax

    public init(metaPath: String, dataPath: String, slots: [Int: InetAddr]) {
        self.metaPath = metaPath
        self.dataPath = dataPath
        self.slots = slots
    }
}

/// A failed mkfs: the message was already written to the error stream; `errno` is the cause.
public struct MkfsError: Error, Equatable, Sendable {
    public var errno: Int32
    public init(errno: Int32) { self.errno = errno }
}

/// Writes a new filesystem exactly as the original's `mkfs`: the fs root with the root inode,
/// the server's first avail list, the data and meta extent allocators, zeroed quorum blocks and
/// the two super blocks (data device first, meta device last, each synced).
public enum Mkfs {
    /// The minimum size of each device without `-A`.
    public static let minimumDeviceSize: UInt64 = 64 << 30
    /// The per-mount data fill target a zone must hold (4 GiB in 4 KiB blocks).
    public static let serverDataFillTarget: UInt64 = (4 << 30) >> UInt64(Format.smallShift)
    /// Blocks in the server's first avail list: 64 MiB of metadata blocks.
    public static let firstAvailBlocks: UInt64 = (64 << 20) >> UInt64(Format.largeShift)

    /// Makes the filesystem. `out` receives standard output lines, `err` standard error lines.
    /// `now`, `fsid` and `uuid` are inputs so tests can reproduce a volume.
    @discardableResult
    public static func run(
        _ o: MkfsOptions, now: Timespec, fsid: UInt64, uuid: [UInt8],
        out: (String) -> Void, err: (String) -> Void
    ) throws(MkfsError) -> SuperBlock {
        let meta = try openDevice(o.metaPath, which: "meta", force: o.force, err: err)
        let data = try openDevice(o.dataPath, which: "data", force: o.force, err: err)
        return try format(meta: meta, data: data, o, now: now, fsid: fsid, uuid: uuid, out: out, err: err)
    }

    /// Writes the filesystem onto opened devices (the part of `run` after the device checks).
    @discardableResult
    public static func format(
        meta: any BlockDevice, data: any BlockDevice, _ o: MkfsOptions, now: Timespec, fsid: UInt64, uuid: [UInt8],
        out: (String) -> Void, err: (String) -> Void
    ) throws(MkfsError) -> SuperBlock {
        let metaSize = try limitSize(meta.size, max: o.maxMetaSize, allowSmall: o.allowSmallSize, which: "meta", out: out, err: err)
        let dataSize = try limitSize(data.size, max: o.maxDataSize, allowSmall: o.allowSmallSize, which: "data", out: out, err: err)

        var nextMeta = Format.metaDevStartBlkno
        let lastMeta = (metaSize >> UInt64(Format.largeShift)) - 1
        let firstData = Format.dataDevStartBlkno
        let lastData = (dataSize >> UInt64(Format.smallShift)) - 1

        var sb = SuperBlock(hdr: BlockHeader(magic: BlockMagic.superBlock.rawValue, fsid: fsid, seq: 1, blkno: Format.superBlkno), fmtVers: o.formatVersion, flags: 0, uuid: uuid)
        sb.nextIno = (Format.rootIno + 1 + Format.lockInodeGroupNr - 1) / Format.lockInodeGroupNr * Format.lockInodeGroupNr
        sb.inodeCount = 1
        sb.seq = 1
        sb.totalMetaBlocks = lastMeta + 1
        sb.totalDataBlocks = lastData + 1
        for (nr, addr) in o.slots { sb.qconf.slots[nr] = addr }
        sb.qconf.version = 1

        if let msg = invalidZoneBlocks(total: sb.totalDataBlocks, zone: o.dataAllocZoneBlocks) {
            err(msg)
            throw MkfsError(errno: EINVAL)
        }
        if o.dataAllocZoneBlocks != 0 {
            sb.volopt.setBits |= Format.volOptDataAllocZoneBlocksBit
            sb.volopt.dataAllocZoneBlocks = o.dataAllocZoneBlocks
        }

        let metaDev = MetaDevice(device: meta, fsid: fsid, cacheBytes: 0)
        func writeLarge(_ b: BlockBuffer, magic: BlockMagic, blkno: UInt64) throws(MkfsError) {
            b.header = BlockHeader(magic: magic.rawValue, fsid: fsid, seq: 1, blkno: blkno)
            do {
                try metaDev.write(large: b)
            } catch {
                err("write to blkno \(blkno) returned -1: \(errnoText(error))")
                throw MkfsError(errno: errnoValue(error))
            }
        }

        // the fs root: the root inode's meta_seq index item and the root inode
        var root = Inode()
        root.nextReaddirPos = 2
        root.nlink = UInt32(Format.direntFirstPos)
        root.mode = 0o040755
        root.atime = now
        root.ctime = now
        root.mtime = now
        root.crtime = now
        var blkno = nextMeta
        nextMeta += 1
        sb.fsRoot = BTreeRoot(ref: BlockRef(blkno: blkno, seq: 1), height: 1)
        let fsItems: [(Key, [UInt8])] = [
            (Key(zone: KeyZone.inodeIndex, type: KeyType.inodeIndexMetaSeq, third: Format.rootIno), []),
            (Key(zone: KeyZone.fs, first: Format.rootIno, type: KeyType.inode), root.encoded(version: o.formatVersion)),
        ]
        try writeLarge(leaf(fsItems), magic: .btree, blkno: blkno)

        // the server's first avail list: the next 64 MiB of metadata blocks
        blkno = nextMeta
        nextMeta += 1
        let list = BlockBuffer(size: Format.largeBlockSize)
        for i in 0..<Int(firstAvailBlocks) {
            list.setU64(AllocListBlockHeader.encodedSize + i * 8, nextMeta)
            nextMeta += 1
        }
        list.setU32(52, UInt32(firstAvailBlocks))
        sb.serverMetaAvail[0] = AllocListHead(ref: BlockRef(blkno: blkno, seq: 1), totalNr: firstAvailBlocks, firstNr: UInt32(firstAvailBlocks))
        try writeLarge(list, magic: .allocList, blkno: blkno)

        // the data allocator: one extent of the whole data device
        blkno = nextMeta
        nextMeta += 1
        sb.dataAlloc = AllocRoot(totalLen: lastData - firstData + 1, root: BTreeRoot(ref: BlockRef(blkno: blkno, seq: 1), height: 1))
        try writeLarge(extentLeaf(start: firstData, len: lastData - firstData + 1), magic: .btree, blkno: blkno)

        // the meta allocators split the remaining metadata blocks
        var metaStart = nextMeta + UInt64(sb.metaAlloc.count)
        let metaLen = (lastMeta - metaStart + 1 + UInt64(sb.metaAlloc.count) - 1) / UInt64(sb.metaAlloc.count)
        for i in sb.metaAlloc.indices {
            blkno = nextMeta
            nextMeta += 1
            let len = min(metaLen, lastMeta - metaStart + 1)
            sb.metaAlloc[i] = AllocRoot(totalLen: len, root: BTreeRoot(ref: BlockRef(blkno: blkno, seq: 1), height: 1))
            try writeLarge(extentLeaf(start: metaStart, len: len), magic: .btree, blkno: blkno)
            metaStart += metaLen
        }

        // zeroed quorum blocks, one a slot
        for i in 0..<Format.quorumBlocks {
            let q = BlockBuffer(size: Format.smallBlockSize)
            q.header = BlockHeader(magic: BlockMagic.quorum.rawValue, fsid: fsid, seq: 1, blkno: Format.quorumBlkno + i)
            do {
                try metaDev.write(small: q)
            } catch {
                err("error zeroing quorum block: \(errnoText(error))")
                throw MkfsError(errno: errnoValue(error))
            }
        }

        // the supers last: data first, then meta with IS_META_BDEV
        let dataDev = MetaDevice(device: data, fsid: fsid, cacheBytes: 0)
        for (dev, flags) in [(dataDev, UInt64(0)), (metaDev, Format.flagIsMetaBdev)] {
            sb.flags = flags
            do {
                try dev.writeSuper(sb)
                try dev.sync()
            } catch {
                err("fsync after write to blkno \(Format.superBlkno) failed: \(errnoText(error))")
                throw MkfsError(errno: errnoValue(error))
            }
        }

        out("Created scoutfs filesystem:")
        out("  meta device path:       \(o.metaPath)")
        out("  data device path:       \(o.dataPath)")
        out("  fsid:                   \(String(fsid, radix: 16))")
        out("  uuid:                   \(sb.uuidString)")
        out("  format version:         \(sb.fmtVers)")
        out("  64KB metadata blocks:   \(sizeString(sb.totalMetaBlocks, Format.largeBlockSize))")
        out("  4KB data blocks:        \(sizeString(sb.totalDataBlocks, Format.smallBlockSize))")
        out("  quorum config version:  \(sb.qconf.version)")
        var first = true
        for (nr, addr) in sb.qconf.configured {
            out((first ? "  quorum slots:           " : "                          ") + "\(nr): \(addr)")
            first = false
        }
        return sb
    }

    /// A leaf holding `items` in sorted order, built the way the original's mkfs builds it.
    static func leaf(_ items: [(Key, [UInt8])]) -> BlockBuffer {
        let b = BlockBuffer(size: Format.largeBlockSize)
        BTreeBlock.buildMkfsLeaf(into: b, items: items.map { (key: $0.0, value: $0.1) })
        return b
    }

    /// A leaf with the two items that record one free extent.
    static func extentLeaf(start: UInt64, len: UInt64) -> BlockBuffer {
        let end = start + len - 1
        return leaf([(FreeExtentKey.blkno(end: end, len: len), []), (FreeExtentKey.order(end: end, len: len), [])])
    }

    /// The original's zone size checks; nil when the size is acceptable.
    public static func invalidZoneBlocks(total: UInt64, zone: UInt64) -> String? {
        if zone == 0 { return nil }
        if zone < serverDataFillTarget {
            return "setting data_alloc_zone_blocks to '\(zone)' failed, must be at least \(serverDataFillTarget) mount data allocation target blocks"
        }
        let nr = total / UInt64(Format.dataAllocMaxZones)
        if zone < nr {
            return "setting data_alloc_zone_blocks to '\(zone)' failed, must be greater than \(nr) blocks which results in max \(Format.dataAllocMaxZones) zones"
        }
        if zone > total {
            return "setting data_alloc_zone_blocks to '\(zone)' failed, must be at most \(total) total data device blocks"
        }
        return nil
    }

    /// Opens a device exclusively, drops its cached pages and, without `force`, refuses one that
    /// holds a filesystem, a partition table or a scoutfs super.
    static func openDevice(_ path: String, which: String, force: Bool, err: (String) -> Void) throws(MkfsError) -> FileBlockDevice {
        let fd = open(path, O_RDWR | O_EXCL | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            err("failed to open \(which) dev '\(path)': \(strerrorText(e)) (\(e))")
            throw MkfsError(errno: e)
        }
        close(fd)
        let dev: FileBlockDevice
        do {
            dev = try FileBlockDevice(path: path, writable: true)
        } catch {
            if error.rawValue == ENODEV {
                err("path isn't regular or device file '\(path)'")
                throw MkfsError(errno: EINVAL)
            }
            err("failed to stat '\(path)': \(strerrorText(error.rawValue)) (\(error.rawValue))")
            throw MkfsError(errno: error.rawValue)
        }
        var st = stat()
        if fstat(dev.fd.rawValue, &st) == 0 {
            if (st.st_mode & S_IFMT) == S_IFREG {
                _ = posix_fadvise(dev.fd.rawValue, 0, st.st_size, Int32(POSIX_FADV_DONTNEED))
            } else if (st.st_mode & S_IFMT) == S_IFBLK {
                let blkFlsBuf: UInt = 0x1261
                if ioctl(dev.fd.rawValue, blkFlsBuf, 0) < 0 {
                    let e = errno
                    err("BLKFLSBUF, failed: \(strerrorText(e)) (\(e))")
                    throw MkfsError(errno: e)
                }
            }
        }
        if !force { try checkExisting(path, dev, err: err) }
        return dev
    }

    /// The original's `check_bdev`: libblkid's probe for filesystems and partition tables, then
    /// the scoutfs super magic, which blkid does not know.
    static func checkExisting(_ path: String, _ dev: FileBlockDevice, err: (String) -> Void) throws(MkfsError) {
        if let pr = blkid_new_probe_from_filename(path) {
            defer { blkid_free_probe(pr) }
            if blkid_probe_enable_partitions(pr, 1) == -1 {
                err("\(path): blkid_probe_enable_partitions() failed")
                throw MkfsError(errno: EINVAL)
            }
            let r = blkid_do_fullprobe(pr)
            if r == -1 {
                err("\(path): blkid_do_fullprobe() failed")
                throw MkfsError(errno: EINVAL)
            }
            if r == 0 {
                var value: UnsafePointer<CChar>? = nil
                if blkid_probe_lookup_value(pr, "TYPE", &value, nil) == 0, let value {
                    err("\(path): appears to contain an existing \(String(cString: value)) superblock")
                    throw MkfsError(errno: EINVAL)
                }
                if blkid_probe_lookup_value(pr, "PTTYPE", &value, nil) == 0, let value {
                    err("\(path): appears to contain a partition table (\(String(cString: value)))")
                    throw MkfsError(errno: EINVAL)
                }
            }
        } else {
            err("\(path): failed to create a new libblkid probe")
        }
        let b = BlockBuffer(size: Format.smallBlockSize)
        if dev.size >= (Format.superBlkno + 1) << UInt64(Format.smallShift) {
            do {
                try dev.read(into: b, at: Format.superBlkno << UInt64(Format.smallShift))
            } catch {
                err("\(path): failed to read super block: \(strerrorText(error.rawValue)) (\(error.rawValue))")
                throw MkfsError(errno: error.rawValue)
            }
            if b.header.magic == BlockMagic.superBlock.rawValue {
                err("\(path): appears to contain an existing ScoutFS superblock")
                throw MkfsError(errno: EINVAL)
            }
        }
    }

    /// The original's `limit_device_size`.
    static func limitSize(_ devSize: UInt64, max: UInt64, allowSmall: Bool, which: String, out: (String) -> Void, err: (String) -> Void) throws(MkfsError) -> UInt64 {
        var size = devSize
        if max != 0 {
            if size > max {
                out("Limiting use of \(baseSize(size)) \(which) device to \(baseSize(max))")
                size = max
            } else if size < max {
                out("Device size limit of \(baseSize(max)) for \(which) device is greater than \(baseSize(size)) available, ignored.")
            }
        }
        if size < minimumDeviceSize {
            err("\(baseSize(size)) too small for min \(baseSize(minimumDeviceSize)) \(which) device\(allowSmall ? ", allowing with -A" : "")")
            if !allowSmall { throw MkfsError(errno: EINVAL) }
        }
        return size
    }
}

/// `%.2f%s` of a byte count scaled by 1024s, as the original's `BASE_SIZE_FMT` (float math).
public func baseSize(_ bytes: UInt64) -> String {
    let (x, suffix) = scaledSize(bytes, 1)
    return fixed2(x) + suffix
}

/// `%llu (%.2f %s)`, the original's `SIZE_FMT` for a block count.
public func sizeString(_ nr: UInt64, _ blockSize: Int) -> String {
    let (x, suffix) = scaledSize(nr, blockSize)
    return "\(nr) (\(fixed2(x)) \(suffix))"
}

func scaledSize(_ nr: UInt64, _ size: Int) -> (Float, String) {
    let suffixes = ["B", "KB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    var x = Float(nr) * Float(size)
    var i = 0
    while x >= 1024 {
        x /= 1024
        i += 1
    }
    return (x, suffixes[i])
}

/// Formats with two decimals, rounding half away from zero (as printf does for these values).
func fixed2(_ x: Float) -> String {
    let cents = (Double(x) * 100).rounded()
    let whole = Int(cents / 100)
    let frac = Int(cents) - whole * 100
    return "\(whole)." + (frac < 10 ? "0" : "") + "\(frac)"
}

func strerrorText(_ e: Int32) -> String {
    String(cString: strerror(e))
}

func errnoValue(_ e: BlockIOError) -> Int32 {
    if case .io(let errno, _) = e { return errno.rawValue }
    return EIO
}

func errnoText(_ e: BlockIOError) -> String {
    let v = errnoValue(e)
    return "\(strerrorText(v)) (\(v))"
}
