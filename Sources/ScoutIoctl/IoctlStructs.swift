// The structs of the original's kmod/src/ioctl.h, field for field. Buffers are u64 pointers
// into the caller's memory.

/// `scoutfs_ioctl_walk_inodes_entry`: a position in a change index.
public struct WalkInodesEntry: IoctlStruct, Hashable, Comparable {
    public static let size = 24
    public var major: UInt64
    public var ino: UInt64
    public var minor: UInt32

    public init(major: UInt64, minor: UInt32 = 0, ino: UInt64) {
        self.major = major
        self.minor = minor
        self.ino = ino
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        major = try r.u64()
        ino = try r.u64()
        minor = try r.u32()
        try r.skip(4)
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(major)
        w.u64(ino)
        w.u32(minor)
        w.pad(4)
    }

    public static func < (a: Self, b: Self) -> Bool { (a.major, a.minor, a.ino) < (b.major, b.minor, b.ino) }

    /// The next position (the least significant field incremented, carrying), or nil at the end.
    public var next: WalkInodesEntry? {
        var n = self
        if n.ino != .max { n.ino += 1; return n }
        n.ino = 0
        if n.minor != .max { n.minor += 1; return n }
        n.minor = 0
        if n.major != .max { n.major += 1; return n }
        return nil
    }
}

/// `scoutfs_ioctl_walk_inodes`.
public struct WalkInodesArgs: IoctlStruct {
    public static let size = 72
    public static let metaSeq: UInt8 = 0
    public static let dataSeq: UInt8 = 1
    public var first: WalkInodesEntry
    public var last: WalkInodesEntry
    public var entriesPtr: UInt64
    public var nrEntries: UInt32
    public var index: UInt8

    public init(first: WalkInodesEntry, last: WalkInodesEntry, entriesPtr: UInt64, nrEntries: UInt32, index: UInt8) {
        self.first = first
        self.last = last
        self.entriesPtr = entriesPtr
        self.nrEntries = nrEntries
        self.index = index
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        first = try WalkInodesEntry(&r)
        last = try WalkInodesEntry(&r)
        entriesPtr = try r.u64()
        nrEntries = try r.u32()
        index = try r.u8()
        try r.skip(11)
    }

    public func encode(_ w: inout IoctlWriter) {
        first.encode(&w)
        last.encode(&w)
        w.u64(entriesPtr)
        w.u32(nrEntries)
        w.u8(index)
        w.pad(11)
    }
}

/// `scoutfs_ioctl_ino_path`.
public struct InoPathArgs: IoctlStruct {
    public static let size = 40
    public var ino: UInt64
    public var dirIno: UInt64
    public var dirPos: UInt64
    public var resultPtr: UInt64
    public var resultBytes: UInt16

    public init(ino: UInt64, dirIno: UInt64, dirPos: UInt64, resultPtr: UInt64, resultBytes: UInt16) {
        self.ino = ino
        self.dirIno = dirIno
        self.dirPos = dirPos
        self.resultPtr = resultPtr
        self.resultBytes = resultBytes
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        ino = try r.u64()
        dirIno = try r.u64()
        dirPos = try r.u64()
        resultPtr = try r.u64()
        resultBytes = try r.u16()
        try r.skip(6)
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(ino)
        w.u64(dirIno)
        w.u64(dirPos)
        w.u64(resultPtr)
        w.u16(resultBytes)
        w.pad(6)
    }
}

/// `scoutfs_ioctl_ino_path_result` without its path: the path's bytes (NUL included) follow it.
public struct InoPathResultHeader: IoctlStruct {
    public static let size = 24
    public var dirIno: UInt64
    public var dirPos: UInt64
    public var pathBytes: UInt16

    public init(dirIno: UInt64, dirPos: UInt64, pathBytes: UInt16) {
        self.dirIno = dirIno
        self.dirPos = dirPos
        self.pathBytes = pathBytes
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        dirIno = try r.u64()
        dirPos = try r.u64()
        pathBytes = try r.u16()
        try r.skip(6)
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(dirIno)
        w.u64(dirPos)
        w.u16(pathBytes)
        w.pad(6)
    }
}

/// `scoutfs_ioctl_release`.
public struct ReleaseArgs: IoctlStruct {
    public static let size = 24
    public var offset: UInt64
    public var length: UInt64
    public var dataVersion: UInt64

    public init(offset: UInt64, length: UInt64, dataVersion: UInt64) {
        self.offset = offset
        self.length = length
        self.dataVersion = dataVersion
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        offset = try r.u64()
        length = try r.u64()
        dataVersion = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(offset)
        w.u64(length)
        w.u64(dataVersion)
    }
}

/// `scoutfs_ioctl_stage`.
public struct StageArgs: IoctlStruct {
    public static let size = 32
    public var dataVersion: UInt64
    public var bufPtr: UInt64
    public var offset: UInt64
    public var length: Int32

    public init(dataVersion: UInt64, bufPtr: UInt64, offset: UInt64, length: Int32) {
        self.dataVersion = dataVersion
        self.bufPtr = bufPtr
        self.offset = offset
        self.length = length
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        dataVersion = try r.u64()
        bufPtr = try r.u64()
        offset = try r.u64()
        length = try r.s32()
        try r.skip(4)
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(dataVersion)
        w.u64(bufPtr)
        w.u64(offset)
        w.s32(length)
        w.pad(4)
    }
}

/// `scoutfs_ioctl_stat_more`.
public struct StatMore: IoctlStruct, Equatable {
    public static let size = 56
    public var metaSeq: UInt64 = 0
    public var dataSeq: UInt64 = 0
    public var dataVersion: UInt64 = 0
    public var onlineBlocks: UInt64 = 0
    public var offlineBlocks: UInt64 = 0
    public var crtimeSec: UInt64 = 0
    public var crtimeNsec: UInt32 = 0

    public init() {}

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        metaSeq = try r.u64()
        dataSeq = try r.u64()
        dataVersion = try r.u64()
        onlineBlocks = try r.u64()
        offlineBlocks = try r.u64()
        crtimeSec = try r.u64()
        crtimeNsec = try r.u32()
        try r.skip(4)
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(metaSeq)
        w.u64(dataSeq)
        w.u64(dataVersion)
        w.u64(onlineBlocks)
        w.u64(offlineBlocks)
        w.u64(crtimeSec)
        w.u32(crtimeNsec)
        w.pad(4)
    }
}

/// `scoutfs_ioctl_data_waiting_entry`. `op` is a DWO bit.
public struct DataWaitingEntry: IoctlStruct, Hashable {
    public static let size = 24
    public static let opRead: UInt8 = 1 << 0
    public static let opWrite: UInt8 = 1 << 1
    public static let opChangeSize: UInt8 = 1 << 2
    public var ino: UInt64
    public var iblock: UInt64
    public var op: UInt8

    public init(ino: UInt64, iblock: UInt64, op: UInt8) {
        self.ino = ino
        self.iblock = iblock
        self.op = op
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        ino = try r.u64()
        iblock = try r.u64()
        op = try r.u8()
        try r.skip(7)
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(ino)
        w.u64(iblock)
        w.u8(op)
        w.pad(7)
    }
}

/// `scoutfs_ioctl_data_waiting`.
public struct DataWaitingArgs: IoctlStruct {
    public static let size = 40
    public var flags: UInt64
    public var afterIno: UInt64
    public var afterIblock: UInt64
    public var entsPtr: UInt64
    public var entsNr: UInt16

    public init(flags: UInt64 = 0, afterIno: UInt64, afterIblock: UInt64, entsPtr: UInt64, entsNr: UInt16) {
        self.flags = flags
        self.afterIno = afterIno
        self.afterIblock = afterIblock
        self.entsPtr = entsPtr
        self.entsNr = entsNr
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        flags = try r.u64()
        afterIno = try r.u64()
        afterIblock = try r.u64()
        entsPtr = try r.u64()
        entsNr = try r.u16()
        try r.skip(6)
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(flags)
        w.u64(afterIno)
        w.u64(afterIblock)
        w.u64(entsPtr)
        w.u16(entsNr)
        w.pad(6)
    }
}

/// `scoutfs_ioctl_setattr_more`.
public struct SetattrMoreArgs: IoctlStruct {
    public static let size = 48
    public static let flagOffline: UInt64 = 1
    public var dataVersion: UInt64
    public var size: UInt64
    public var flags: UInt64
    public var ctimeSec: UInt64
    public var ctimeNsec: UInt32
    public var crtimeNsec: UInt32
    public var crtimeSec: UInt64

    public init(dataVersion: UInt64, size: UInt64, flags: UInt64, ctimeSec: UInt64, ctimeNsec: UInt32, crtimeSec: UInt64, crtimeNsec: UInt32) {
        self.dataVersion = dataVersion
        self.size = size
        self.flags = flags
        self.ctimeSec = ctimeSec
        self.ctimeNsec = ctimeNsec
        self.crtimeSec = crtimeSec
        self.crtimeNsec = crtimeNsec
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        dataVersion = try r.u64()
        size = try r.u64()
        flags = try r.u64()
        ctimeSec = try r.u64()
        ctimeNsec = try r.u32()
        crtimeNsec = try r.u32()
        crtimeSec = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(dataVersion)
        w.u64(size)
        w.u64(flags)
        w.u64(ctimeSec)
        w.u32(ctimeNsec)
        w.u32(crtimeNsec)
        w.u64(crtimeSec)
    }
}

/// `scoutfs_ioctl_resize_devices`: the new totals, in 64 KiB metadata and 4 KiB data blocks
/// (0 leaves a device's total as it is).
public struct ResizeDevices: IoctlStruct, Equatable {
    public static let size = 16
    public var newTotalMetaBlocks: UInt64
    public var newTotalDataBlocks: UInt64

    public init(newTotalMetaBlocks: UInt64, newTotalDataBlocks: UInt64) {
        self.newTotalMetaBlocks = newTotalMetaBlocks
        self.newTotalDataBlocks = newTotalDataBlocks
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        newTotalMetaBlocks = try r.u64()
        newTotalDataBlocks = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(newTotalMetaBlocks)
        w.u64(newTotalDataBlocks)
    }
}

/// `scoutfs_ioctl_statfs_more`.
public struct StatfsMore: IoctlStruct, Equatable {
    public static let size = 48
    public var fsid: UInt64 = 0
    public var rid: UInt64 = 0
    public var committedSeq: UInt64 = 0
    public var totalMetaBlocks: UInt64 = 0
    public var totalDataBlocks: UInt64 = 0
    public var reservedMetaBlocks: UInt64 = 0

    public init() {}

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        fsid = try r.u64()
        rid = try r.u64()
        committedSeq = try r.u64()
        totalMetaBlocks = try r.u64()
        totalDataBlocks = try r.u64()
        reservedMetaBlocks = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(fsid)
        w.u64(rid)
        w.u64(committedSeq)
        w.u64(totalMetaBlocks)
        w.u64(totalDataBlocks)
        w.u64(reservedMetaBlocks)
    }
}

/// `scoutfs_ioctl_data_wait_err`.
public struct DataWaitErrArgs: IoctlStruct {
    public static let size = 48
    public var ino: UInt64
    public var dataVersion: UInt64
    public var offset: UInt64
    public var count: UInt64
    public var op: UInt64
    public var err: Int64

    public init(ino: UInt64, dataVersion: UInt64, offset: UInt64, count: UInt64, op: UInt64, err: Int64) {
        self.ino = ino
        self.dataVersion = dataVersion
        self.offset = offset
        self.count = count
        self.op = op
        self.err = err
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        ino = try r.u64()
        dataVersion = try r.u64()
        offset = try r.u64()
        count = try r.u64()
        op = try r.u64()
        err = try r.s64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(ino)
        w.u64(dataVersion)
        w.u64(offset)
        w.u64(count)
        w.u64(op)
        w.s64(err)
    }
}

/// `scoutfs_ioctl_alloc_detail`.
public struct AllocDetailArgs: IoctlStruct {
    public static let size = 16
    public var entriesPtr: UInt64
    public var entriesNr: UInt64

    public init(entriesPtr: UInt64, entriesNr: UInt64) {
        self.entriesPtr = entriesPtr
        self.entriesNr = entriesNr
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        entriesPtr = try r.u64()
        entriesNr = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(entriesPtr)
        w.u64(entriesNr)
    }
}

/// `scoutfs_ioctl_alloc_detail_entry`: `meta` and `avail` are bits 0 and 1 of byte 17.
public struct AllocDetailEntry: IoctlStruct, Hashable {
    public static let size = 24
    public var id: UInt64
    public var blocks: UInt64
    public var type: UInt8
    public var meta: Bool
    public var avail: Bool

    public init(id: UInt64, blocks: UInt64, type: UInt8 = 0, meta: Bool, avail: Bool) {
        self.id = id
        self.blocks = blocks
        self.type = type
        self.meta = meta
        self.avail = avail
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        id = try r.u64()
        blocks = try r.u64()
        type = try r.u8()
        let bits = try r.u8()
        meta = bits & 1 != 0
        avail = bits & 2 != 0
        try r.skip(6)
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(id)
        w.u64(blocks)
        w.u8(type)
        w.u8((meta ? 1 : 0) | (avail ? 2 : 0))
        w.pad(6)
    }
}

/// `scoutfs_ioctl_move_blocks`, issued on the destination file.
public struct MoveBlocksArgs: IoctlStruct {
    public static let size = 48
    public static let flagStage: UInt64 = 1
    public var fromFD: UInt64
    public var fromOffset: UInt64
    public var length: UInt64
    public var toOffset: UInt64
    public var dataVersion: UInt64
    public var flags: UInt64

    public init(fromFD: UInt64, fromOffset: UInt64, length: UInt64, toOffset: UInt64, dataVersion: UInt64, flags: UInt64) {
        self.fromFD = fromFD
        self.fromOffset = fromOffset
        self.length = length
        self.toOffset = toOffset
        self.dataVersion = dataVersion
        self.flags = flags
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        fromFD = try r.u64()
        fromOffset = try r.u64()
        length = try r.u64()
        toOffset = try r.u64()
        dataVersion = try r.u64()
        flags = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(fromFD)
        w.u64(fromOffset)
        w.u64(length)
        w.u64(toOffset)
        w.u64(dataVersion)
        w.u64(flags)
    }
}

/// `scoutfs_ioctl_get_allocated_inos`.
public struct GetAllocatedInosArgs: IoctlStruct {
    public static let size = 24
    public var startIno: UInt64
    public var inosPtr: UInt64
    public var inosBytes: UInt64

    public init(startIno: UInt64, inosPtr: UInt64, inosBytes: UInt64) {
        self.startIno = startIno
        self.inosPtr = inosPtr
        self.inosBytes = inosBytes
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        startIno = try r.u64()
        inosPtr = try r.u64()
        inosBytes = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(startIno)
        w.u64(inosPtr)
        w.u64(inosBytes)
    }
}

/// `scoutfs_ioctl_get_referring_entries`.
public struct GetReferringEntriesArgs: IoctlStruct {
    public static let size = 40
    public var ino: UInt64
    public var dirIno: UInt64
    public var dirPos: UInt64
    public var entriesPtr: UInt64
    public var entriesBytes: UInt64

    public init(ino: UInt64, dirIno: UInt64, dirPos: UInt64, entriesPtr: UInt64, entriesBytes: UInt64) {
        self.ino = ino
        self.dirIno = dirIno
        self.dirPos = dirPos
        self.entriesPtr = entriesPtr
        self.entriesBytes = entriesBytes
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        ino = try r.u64()
        dirIno = try r.u64()
        dirPos = try r.u64()
        entriesPtr = try r.u64()
        entriesBytes = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(ino)
        w.u64(dirIno)
        w.u64(dirPos)
        w.u64(entriesPtr)
        w.u64(entriesBytes)
    }
}

/// `scoutfs_ioctl_dirent`: a variable-length record, the name (and its NUL) from byte 29,
/// padded to a multiple of 16 bytes (`entry_bytes`).
public struct ReferringEntry: Hashable, Sendable {
    public static let headerSize = 29
    public static let flagLast: UInt8 = 1
    public var dirIno: UInt64
    public var dirPos: UInt64
    public var ino: UInt64
    public var flags: UInt8
    public var dType: UInt8
    public var name: [UInt8]

    public init(dirIno: UInt64, dirPos: UInt64, ino: UInt64, flags: UInt8, dType: UInt8, name: [UInt8]) {
        self.dirIno = dirIno
        self.dirPos = dirPos
        self.ino = ino
        self.flags = flags
        self.dType = dType
        self.name = name
    }

    /// The record's size: header, name, NUL, rounded up to 16.
    public var entryBytes: Int { (Self.headerSize + name.count + 1 + 15) & ~15 }

    public func encode(_ w: inout IoctlWriter) {
        let start = w.bytes.count
        w.u64(dirIno)
        w.u64(dirPos)
        w.u64(ino)
        w.u16(UInt16(entryBytes))
        w.u8(flags)
        w.u8(dType)
        w.u8(UInt8(name.count))
        w.raw(name)
        w.pad(entryBytes - (w.bytes.count - start))
    }

    /// Unpacks `count` records from `bytes`.
    public static func decode(_ bytes: [UInt8], count: Int) throws(IoctlDecodeError) -> [ReferringEntry] {
        var r = IoctlReader(bytes)
        var out: [ReferringEntry] = []
        for _ in 0..<count {
            let start = r.offset
            let dirIno = try r.u64()
            let dirPos = try r.u64()
            let ino = try r.u64()
            let entryBytes = Int(try r.u16())
            let flags = try r.u8()
            let dType = try r.u8()
            let nameLen = Int(try r.u8())
            let name = try r.take(nameLen)
            guard entryBytes >= headerSize + nameLen + 1 else { throw IoctlDecodeError(needed: headerSize + nameLen + 1, got: entryBytes) }
            try r.skip(start + entryBytes - r.offset)
            out.append(ReferringEntry(dirIno: dirIno, dirPos: dirPos, ino: ino, flags: flags, dType: dType, name: name))
        }
        return out
    }
}

/// `scoutfs_ioctl_inode_attr_x`.
public struct InodeAttrX: IoctlStruct, Equatable {
    public static let size = 104
    public static let maskMetaSeq: UInt64 = 1 << 0
    public static let maskDataSeq: UInt64 = 1 << 1
    public static let maskDataVersion: UInt64 = 1 << 2
    public static let maskOnlineBlocks: UInt64 = 1 << 3
    public static let maskOfflineBlocks: UInt64 = 1 << 4
    public static let maskCtime: UInt64 = 1 << 5
    public static let maskCrtime: UInt64 = 1 << 6
    public static let maskSize: UInt64 = 1 << 7
    public static let maskRetention: UInt64 = 1 << 8
    public static let maskProjectID: UInt64 = 1 << 9
    public static let maskUnknown: UInt64 = ~0 << 10
    public static let flagSizeOffline: UInt64 = 1 << 0
    public static let flagsUnknown: UInt64 = ~0 << 1
    public static let bitRetention: UInt64 = 1 << 0

    public var mask: UInt64 = 0
    public var flags: UInt64 = 0
    public var metaSeq: UInt64 = 0
    public var dataSeq: UInt64 = 0
    public var dataVersion: UInt64 = 0
    public var onlineBlocks: UInt64 = 0
    public var offlineBlocks: UInt64 = 0
    public var ctimeSec: UInt64 = 0
    public var ctimeNsec: UInt32 = 0
    public var crtimeNsec: UInt32 = 0
    public var crtimeSec: UInt64 = 0
    public var size: UInt64 = 0
    public var bits: UInt64 = 0
    public var projectID: UInt64 = 0

    public init() {}

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        mask = try r.u64()
        flags = try r.u64()
        metaSeq = try r.u64()
        dataSeq = try r.u64()
        dataVersion = try r.u64()
        onlineBlocks = try r.u64()
        offlineBlocks = try r.u64()
        ctimeSec = try r.u64()
        ctimeNsec = try r.u32()
        crtimeNsec = try r.u32()
        crtimeSec = try r.u64()
        size = try r.u64()
        bits = try r.u64()
        projectID = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(mask)
        w.u64(flags)
        w.u64(metaSeq)
        w.u64(dataSeq)
        w.u64(dataVersion)
        w.u64(onlineBlocks)
        w.u64(offlineBlocks)
        w.u64(ctimeSec)
        w.u32(ctimeNsec)
        w.u32(crtimeNsec)
        w.u64(crtimeSec)
        w.u64(size)
        w.u64(bits)
        w.u64(projectID)
    }

    /// The bytes GET_ATTR_X fills for `mask`: up to the end of the last field asked for.
    public static func filledBytes(mask: UInt64) -> Int {
        let ends: [(UInt64, Int)] = [
            (maskProjectID, 104), (maskRetention, 96), (maskSize, 88), (maskCrtime, 80), (maskCtime, 72),
            (maskOfflineBlocks, 56), (maskOnlineBlocks, 48), (maskDataVersion, 40), (maskDataSeq, 32), (maskMetaSeq, 24),
        ]
        for (bit, end) in ends where mask & bit != 0 { return end }
        return 16
    }
}

/// `scoutfs_ioctl_punch_offline`.
public struct PunchOfflineArgs: IoctlStruct {
    public static let size = 32
    public var offset: UInt64
    public var length: UInt64
    public var dataVersion: UInt64
    public var flags: UInt64

    public init(offset: UInt64, length: UInt64, dataVersion: UInt64, flags: UInt64 = 0) {
        self.offset = offset
        self.length = length
        self.dataVersion = dataVersion
        self.flags = flags
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        offset = try r.u64()
        length = try r.u64()
        dataVersion = try r.u64()
        flags = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(offset)
        w.u64(length)
        w.u64(dataVersion)
        w.u64(flags)
    }
}

/// The header of Linux's `struct fiemap`, the argument of the private GET_FIEMAP; its
/// `extentCount` extents (``FiemapExtent``) follow it in the caller's memory.
public struct FiemapHeader: IoctlStruct, Equatable {
    public static let size = 32
    public var start: UInt64
    public var length: UInt64
    public var flags: UInt32
    public var mappedExtents: UInt32
    public var extentCount: UInt32

    public init(start: UInt64, length: UInt64, flags: UInt32 = 0, mappedExtents: UInt32 = 0, extentCount: UInt32) {
        self.start = start
        self.length = length
        self.flags = flags
        self.mappedExtents = mappedExtents
        self.extentCount = extentCount
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        start = try r.u64()
        length = try r.u64()
        flags = try r.u32()
        mappedExtents = try r.u32()
        extentCount = try r.u32()
        try r.skip(4)
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(start)
        w.u64(length)
        w.u32(flags)
        w.u32(mappedExtents)
        w.u32(extentCount)
        w.pad(4)
    }
}

/// Linux's `struct fiemap_extent`.
public struct FiemapExtent: IoctlStruct, Hashable {
    public static let size = 56
    /// FIEMAP_EXTENT_LAST
    public static let flagLast: UInt32 = 0x1
    /// FIEMAP_EXTENT_UNKNOWN: scoutfs reports offline extents with it.
    public static let flagUnknown: UInt32 = 0x2
    /// FIEMAP_EXTENT_UNWRITTEN
    public static let flagUnwritten: UInt32 = 0x800
    public var logical: UInt64
    public var physical: UInt64
    public var length: UInt64
    public var flags: UInt32

    public init(logical: UInt64, physical: UInt64, length: UInt64, flags: UInt32) {
        self.logical = logical
        self.physical = physical
        self.length = length
        self.flags = flags
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        logical = try r.u64()
        physical = try r.u64()
        length = try r.u64()
        try r.skip(16)
        flags = try r.u32()
        try r.skip(12)
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(logical)
        w.u64(physical)
        w.u64(length)
        w.pad(16)
        w.u32(flags)
        w.pad(12)
    }
}

/// `scoutfs_ioctl_search_xattrs` (56 bytes).
public struct SearchXattrsArgs: IoctlStruct {
    public static let size = 56
    /// Set in `outputFlags` when the pass searched through `lastIno`.
    public static let oflagEnd: UInt64 = 1
    /// Where `outputFlags` sits in the struct (the ioctl is `_IOW`: it is written in place).
    public static let outputFlagsOffset = 32
    public var nextIno: UInt64
    public var lastIno: UInt64
    public var namePtr: UInt64
    public var inodesPtr: UInt64
    public var outputFlags: UInt64
    public var nrInodes: UInt64
    public var nameBytes: UInt16

    public init(nextIno: UInt64, lastIno: UInt64, namePtr: UInt64, inodesPtr: UInt64, outputFlags: UInt64 = 0, nrInodes: UInt64, nameBytes: UInt16) {
        self.nextIno = nextIno
        self.lastIno = lastIno
        self.namePtr = namePtr
        self.inodesPtr = inodesPtr
        self.outputFlags = outputFlags
        self.nrInodes = nrInodes
        self.nameBytes = nameBytes
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        nextIno = try r.u64()
        lastIno = try r.u64()
        namePtr = try r.u64()
        inodesPtr = try r.u64()
        outputFlags = try r.u64()
        nrInodes = try r.u64()
        nameBytes = try r.u16()
        try r.skip(6)
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(nextIno)
        w.u64(lastIno)
        w.u64(namePtr)
        w.u64(inodesPtr)
        w.u64(outputFlags)
        w.u64(nrInodes)
        w.u16(nameBytes)
        w.pad(6)
    }
}
