/// `scoutfs_ioctl_listxattr_hidden`: a cursor (name hash and xattr id) and a buffer of
/// NUL-terminated names.
public struct ListxattrHiddenArgs: IoctlStruct, Equatable {
    public static let size = 24
    public var idPos: UInt64 = 0
    public var bufPtr: UInt64 = 0
    public var bufBytes: UInt32 = 0
    public var hashPos: UInt32 = 0

    public init(idPos: UInt64 = 0, bufPtr: UInt64 = 0, bufBytes: UInt32 = 0, hashPos: UInt32 = 0) {
        self.idPos = idPos
        self.bufPtr = bufPtr
        self.bufBytes = bufBytes
        self.hashPos = hashPos
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        idPos = try r.u64()
        bufPtr = try r.u64()
        bufBytes = try r.u32()
        hashPos = try r.u32()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(idPos)
        w.u64(bufPtr)
        w.u32(bufBytes)
        w.u32(hashPos)
    }
}

/// `scoutfs_ioctl_read_xattr_totals`: the name to start from and an array of
/// `XattrTotal`s to fill.
public struct ReadXattrTotalsArgs: IoctlStruct, Equatable {
    public static let size = 40
    public var posName: [UInt64] = [0, 0, 0]
    public var totalsPtr: UInt64 = 0
    public var totalsBytes: UInt64 = 0

    public init(posName: [UInt64] = [0, 0, 0], totalsPtr: UInt64 = 0, totalsBytes: UInt64 = 0) {
        self.posName = posName
        self.totalsPtr = totalsPtr
        self.totalsBytes = totalsBytes
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        posName = [try r.u64(), try r.u64(), try r.u64()]
        totalsPtr = try r.u64()
        totalsBytes = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        for n in posName { w.u64(n) }
        w.u64(totalsPtr)
        w.u64(totalsBytes)
    }
}

/// `scoutfs_ioctl_xattr_total`: one total, its name, and how many xattrs add to it.
public struct XattrTotal: IoctlStruct, Equatable {
    public static let size = 40
    public var name: [UInt64] = [0, 0, 0]
    public var total: UInt64 = 0
    public var count: UInt64 = 0

    public init(name: [UInt64], total: UInt64, count: UInt64) {
        self.name = name
        self.total = total
        self.count = count
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        name = [try r.u64(), try r.u64(), try r.u64()]
        total = try r.u64()
        count = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        for n in name { w.u64(n) }
        w.u64(total)
        w.u64(count)
    }
}

/// `scoutfs_ioctl_xattr_index_entry`: a position in the `.indx.` index.
public struct XattrIndexEntry: IoctlStruct, Equatable {
    public static let size = 24
    public var minor: UInt64 = 0
    public var ino: UInt64 = 0
    public var major: UInt8 = 0

    public init(major: UInt8 = 0, minor: UInt64 = 0, ino: UInt64 = 0) {
        self.major = major
        self.minor = minor
        self.ino = ino
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        minor = try r.u64()
        ino = try r.u64()
        major = try r.u8()
        try r.skip(7)
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(minor)
        w.u64(ino)
        w.u8(major)
        w.pad(7)
    }
}

/// `scoutfs_ioctl_read_xattr_index`: the first and last positions and an array of entries to
/// fill. Declared `_IOR` by the original although the kernel reads it from the caller.
public struct ReadXattrIndexArgs: IoctlStruct, Equatable {
    public static let size = 72
    public var flags: UInt64 = 0
    public var first = XattrIndexEntry()
    public var last = XattrIndexEntry()
    public var entriesPtr: UInt64 = 0
    public var entriesNr: UInt64 = 0

    public init(first: XattrIndexEntry = XattrIndexEntry(), last: XattrIndexEntry = XattrIndexEntry(major: .max, minor: .max, ino: .max), entriesPtr: UInt64 = 0, entriesNr: UInt64 = 0) {
        self.first = first
        self.last = last
        self.entriesPtr = entriesPtr
        self.entriesNr = entriesNr
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        flags = try r.u64()
        first = try XattrIndexEntry(&r)
        last = try XattrIndexEntry(&r)
        entriesPtr = try r.u64()
        entriesNr = try r.u64()
    }

    public func encode(_ w: inout IoctlWriter) {
        w.u64(flags)
        first.encode(&w)
        last.encode(&w)
        w.u64(entriesPtr)
        w.u64(entriesNr)
    }
}

/// `scoutfs_ioctl_inject_totl_delta`: a signed (total, count) delta at a totl name.
public struct InjectTotlDeltaArgs: IoctlStruct, Equatable {
    public static let size = 40
    public var name: [UInt64] = [0, 0, 0]
    public var total: Int64 = 0
    public var count: Int64 = 0

    public init(name: [UInt64], total: Int64, count: Int64) {
        self.name = name
        self.total = total
        self.count = count
    }

    public init(_ r: inout IoctlReader) throws(IoctlDecodeError) {
        name = [try r.u64(), try r.u64(), try r.u64()]
        total = try r.s64()
        count = try r.s64()
    }

    public func encode(_ w: inout IoctlWriter) {
        for n in name { w.u64(n) }
        w.s64(total)
        w.s64(count)
    }
}
