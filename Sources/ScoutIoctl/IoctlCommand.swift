/// The ioctl numbers of the original's `ioctl.h` (magic 0xE8), plus this project's private
/// GET_FIEMAP (the VFS never passes FS_IOC_FIEMAP to a FUSE filesystem).
///
/// A number is `dir << 30 | size << 16 | magic << 8 | nr`, as Linux's `_IOC` packs it.
public struct IoctlCommand: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let magic: UInt32 = 0xE8

    public enum Direction: UInt32, Sendable {
        case none = 0, write = 1, read = 2, readWrite = 3
    }

    public init(_ dir: Direction, _ nr: UInt32, size: Int) {
        rawValue = dir.rawValue << 30 | UInt32(size) << 16 | Self.magic << 8 | nr
    }

    public var direction: Direction { Direction(rawValue: rawValue >> 30)! }
    public var number: UInt32 { rawValue & 0xff }
    public var type: UInt32 { (rawValue >> 8) & 0xff }
    public var size: Int { Int((rawValue >> 16) & 0x3fff) }

    public static let walkInodes = IoctlCommand(.write, 1, size: WalkInodesArgs.size)
    public static let inoPath = IoctlCommand(.write, 2, size: InoPathArgs.size)
    public static let release = IoctlCommand(.write, 3, size: ReleaseArgs.size)
    public static let stage = IoctlCommand(.write, 4, size: StageArgs.size)
    public static let statMore = IoctlCommand(.read, 5, size: StatMore.size)
    public static let dataWaiting = IoctlCommand(.write, 6, size: DataWaitingArgs.size)
    public static let setattrMore = IoctlCommand(.write, 7, size: SetattrMoreArgs.size)
    public static let listxattrHidden = IoctlCommand(.readWrite, 8, size: 24)
    public static let searchXattrs = IoctlCommand(.write, 9, size: 56)
    public static let statfsMore = IoctlCommand(.read, 10, size: StatfsMore.size)
    public static let dataWaitErr = IoctlCommand(.write, 11, size: DataWaitErrArgs.size)
    public static let allocDetail = IoctlCommand(.write, 12, size: AllocDetailArgs.size)
    public static let moveBlocks = IoctlCommand(.write, 13, size: MoveBlocksArgs.size)
    public static let resizeDevices = IoctlCommand(.write, 14, size: 16)
    public static let readXattrTotals = IoctlCommand(.write, 15, size: 40)
    public static let getAllocatedInos = IoctlCommand(.write, 16, size: GetAllocatedInosArgs.size)
    public static let getReferringEntries = IoctlCommand(.write, 17, size: GetReferringEntriesArgs.size)
    public static let getAttrX = IoctlCommand(.write, 18, size: InodeAttrX.size)
    public static let setAttrX = IoctlCommand(.write, 19, size: InodeAttrX.size)
    public static let getQuotaRules = IoctlCommand(.read, 20, size: GetQuotaRulesArgs.size)
    public static let addQuotaRule = IoctlCommand(.write, 21, size: QuotaRule.size)
    public static let delQuotaRule = IoctlCommand(.write, 22, size: QuotaRule.size)
    public static let readXattrIndex = IoctlCommand(.read, 23, size: 72)
    public static let punchOffline = IoctlCommand(.write, 24, size: PunchOfflineArgs.size)
    public static let injectTotlDelta = IoctlCommand(.write, 25, size: 40)
    /// Private: a `struct fiemap` header in and out, its extents written after it.
    public static let getFiemap = IoctlCommand(.readWrite, 64, size: FiemapHeader.size)

    static let names: [UInt32: String] = [
        1: "WALK_INODES", 2: "INO_PATH", 3: "RELEASE", 4: "STAGE", 5: "STAT_MORE", 6: "DATA_WAITING",
        7: "SETATTR_MORE", 8: "LISTXATTR_HIDDEN", 9: "SEARCH_XATTRS", 10: "STATFS_MORE", 11: "DATA_WAIT_ERR",
        12: "ALLOC_DETAIL", 13: "MOVE_BLOCKS", 14: "RESIZE_DEVICES", 15: "READ_XATTR_TOTALS",
        16: "GET_ALLOCATED_INOS", 17: "GET_REFERRING_ENTRIES", 18: "GET_ATTR_X", 19: "SET_ATTR_X",
        20: "GET_QUOTA_RULES", 21: "ADD_QUOTA_RULE", 22: "DEL_QUOTA_RULE", 23: "READ_XATTR_INDEX",
        24: "PUNCH_OFFLINE", 25: "INJECT_TOTL_DELTA", 64: "GET_FIEMAP",
    ]

    public var description: String {
        if type == Self.magic, let n = Self.names[number] { return n }
        return "ioctl 0x" + String(rawValue, radix: 16)
    }
}
