/// `enum scoutfs_net_cmd`: the command of a message, the same number in a request and its response.
///
/// The comment on each case names its payloads (request → response) as the original sends them.
public enum NetCommand: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// C→S, handled before anything else: `NetGreeting` → `NetGreeting`.
    case greeting = 0
    /// C→S: a `UInt64` count (`NetU64`) → `NetInodeAlloc` (nr 0 means no inodes left).
    case allocInodes = 1
    /// C→S: nothing → `LogTrees`.
    case getLogTrees = 2
    /// C→S: `LogTrees` → nothing.
    case commitLogTrees = 3
    /// S→C: nothing → nothing ("commit your open transaction soon").
    case syncLogTrees = 4
    /// C→S: nothing → `NetRoots`.
    case getRoots = 5
    /// C→S: nothing → `NetU64` (the last complete transaction seq).
    case getLastSeq = 6
    /// Both: `NetLock` → `NetLock` (C→S asks for a mode; S→C invalidates to a mode).
    case lock = 7
    /// S→C: `Key` (start of the batch) → `NetLockRecover`.
    case lockRecover = 8
    /// C→S: nothing → `SrchCompact`.
    case srchGetCompact = 9
    /// C→S: `SrchCompact` → nothing.
    case srchCommitCompact = 10
    /// C→S: nothing → `LogMergeRequest` (ENOENT: nothing to do).
    case getLogMerge = 11
    /// C→S: `LogMergeComplete` → nothing.
    case commitLogMerge = 12
    /// Both: `OpenInoMapArgs` → `OpenInoMap`.
    case openInoMap = 13
    /// C→S: nothing → `VolumeOptions`.
    case getVolopt = 14
    /// C→S: `VolumeOptions` → nothing.
    case setVolopt = 15
    /// C→S: `VolumeOptions` → nothing.
    case clearVolopt = 16
    /// C→S: `NetResizeDevices` → nothing.
    case resizeDevices = 17
    /// C→S: nothing → `NetStatfs`.
    case statfs = 18
    /// C→S: nothing → nothing; the last request of a clean unmount.
    case farewell = 19

    /// The first command number the original does not know (`SCOUTFS_NET_CMD_UNKNOWN`).
    public static let unknownRaw: UInt8 = 20

    public var description: String {
        switch self {
        case .greeting: "GREETING"
        case .allocInodes: "ALLOC_INODES"
        case .getLogTrees: "GET_LOG_TREES"
        case .commitLogTrees: "COMMIT_LOG_TREES"
        case .syncLogTrees: "SYNC_LOG_TREES"
        case .getRoots: "GET_ROOTS"
        case .getLastSeq: "GET_LAST_SEQ"
        case .lock: "LOCK"
        case .lockRecover: "LOCK_RECOVER"
        case .srchGetCompact: "SRCH_GET_COMPACT"
        case .srchCommitCompact: "SRCH_COMMIT_COMPACT"
        case .getLogMerge: "GET_LOG_MERGE"
        case .commitLogMerge: "COMMIT_LOG_MERGE"
        case .openInoMap: "OPEN_INO_MAP"
        case .getVolopt: "GET_VOLOPT"
        case .setVolopt: "SET_VOLOPT"
        case .clearVolopt: "CLEAR_VOLOPT"
        case .resizeDevices: "RESIZE_DEVICES"
        case .statfs: "STATFS"
        case .farewell: "FAREWELL"
        }
    }
}

/// Linux errno numbers used by the wire mapping.
///
/// The daemon only runs on Linux, and this module stays free of libc, so the few numbers it needs
/// are spelled out here (they match `<asm-generic/errno-base.h>` and `<asm-generic/errno.h>`).
public enum LinuxErrno {
    public static let ENOENT: Int32 = 2
    public static let EIO: Int32 = 5
    public static let ENOMEM: Int32 = 12
    public static let EINVAL: Int32 = 22
    public static let ENOSPC: Int32 = 28
    public static let EMSGSIZE: Int32 = 90
    public static let ENOLINK: Int32 = 67
    public static let ETIMEDOUT: Int32 = 110
    public static let ECONNABORTED: Int32 = 103
    public static let ENOTCONN: Int32 = 107
    public static let ESHUTDOWN: Int32 = 108
    public static let EDEADLK: Int32 = 35
    public static let ECANCELED: Int32 = 125
}

/// `enum scoutfs_net_errors`: the errnos a response can carry on the wire.
///
/// Only these six errnos cross the wire; any other host errno is sent as EINVAL (the original
/// warns once when that happens; the shell may log).
public enum NetWireError: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case none = 0
    case enoent = 1
    case enomem = 2
    case eio = 3
    case enospc = 4
    case einval = 5
    case enolink = 6

    /// The first error number the original does not know (`SCOUTFS_NET_ERR_UNKNOWN`).
    public static let unknownRaw: UInt8 = 7

    /// The wire error for a positive host errno, or nil when the wire has no value for it.
    public init?(exactly errno: Int32) {
        switch errno {
        case 0: self = .none
        case LinuxErrno.ENOENT: self = .enoent
        case LinuxErrno.ENOMEM: self = .enomem
        case LinuxErrno.EIO: self = .eio
        case LinuxErrno.ENOSPC: self = .enospc
        case LinuxErrno.EINVAL: self = .einval
        case LinuxErrno.ENOLINK: self = .enolink
        default: return nil
        }
    }

    /// The wire error for a positive host errno: 0 is `.none`, an errno without a wire value
    /// (or a negative one) is `.einval`, as the original sends it.
    public init(errno: Int32) {
        self = NetWireError(exactly: errno) ?? .einval
    }

    /// The positive host errno; 0 for `.none`.
    public var errno: Int32 {
        switch self {
        case .none: 0
        case .enoent: LinuxErrno.ENOENT
        case .enomem: LinuxErrno.ENOMEM
        case .eio: LinuxErrno.EIO
        case .enospc: LinuxErrno.ENOSPC
        case .einval: LinuxErrno.EINVAL
        case .enolink: LinuxErrno.ENOLINK
        }
    }

    public var description: String {
        switch self {
        case .none: "NONE"
        case .enoent: "ENOENT"
        case .enomem: "ENOMEM"
        case .eio: "EIO"
        case .enospc: "ENOSPC"
        case .einval: "EINVAL"
        case .enolink: "ENOLINK"
        }
    }
}

/// A positive errno that a request handler answers with (sent as a `NetWireError`).
public struct NetErrno: Error, Hashable, Sendable, CustomStringConvertible {
    /// The positive errno value.
    public var code: Int32

    /// Wraps a positive errno.
    public init(_ code: Int32) { self.code = code }

    public static let enoent = NetErrno(LinuxErrno.ENOENT)
    public static let enomem = NetErrno(LinuxErrno.ENOMEM)
    public static let eio = NetErrno(LinuxErrno.EIO)
    public static let enospc = NetErrno(LinuxErrno.ENOSPC)
    public static let einval = NetErrno(LinuxErrno.EINVAL)
    public static let enolink = NetErrno(LinuxErrno.ENOLINK)

    /// The value on the wire (`.einval` for errnos the wire cannot carry).
    public var wire: NetWireError { NetWireError(errno: code) }

    public var description: String { "errno \(code)" }
}
