import CFuseKernel
import Glibc

/// A point in time as FUSE carries it: seconds since the epoch (may be negative) and nanoseconds.
public struct FileTime: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Seconds since 1970-01-01 UTC.
    public var seconds: Int64
    /// Nanoseconds, 0..<1_000_000_000.
    public var nanoseconds: UInt32

    /// Makes a time from seconds and nanoseconds.
    public init(seconds: Int64, nanoseconds: UInt32 = 0) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// The current wall-clock time (`CLOCK_REALTIME`).
    public static func now() -> FileTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return FileTime(seconds: Int64(ts.tv_sec), nanoseconds: UInt32(ts.tv_nsec))
    }

    public static func < (a: FileTime, b: FileTime) -> Bool {
        (a.seconds, a.nanoseconds) < (b.seconds, b.nanoseconds)
    }

    public var description: String { "\(self.seconds).\(self.nanoseconds)" }
}

/// The attributes of an inode, as FUSE replies carry them (`struct fuse_attr`).
public struct FileAttributes: Hashable, Sendable {
    /// The inode number shown in `st_ino`.
    public var ino: UInt64
    /// Size in bytes.
    public var size: UInt64
    /// Allocated space in 512-byte units (`st_blocks`).
    public var blocks: UInt64
    /// Last access.
    public var atime: FileTime
    /// Last data modification.
    public var mtime: FileTime
    /// Last status change.
    public var ctime: FileTime
    /// File type and permission bits (`S_IFREG | 0o644`, ...).
    public var mode: UInt32
    /// Link count.
    public var nlink: UInt32
    /// Owner.
    public var uid: UInt32
    /// Group.
    public var gid: UInt32
    /// Device number for character and block devices (`makedev` encoding of the kernel's `new_encode_dev`).
    public var rdev: UInt32
    /// Preferred I/O size (`st_blksize`); 0 lets the kernel choose.
    public var blockSize: UInt32

    /// Makes attributes; times default to the epoch.
    public init(
        ino: UInt64, size: UInt64 = 0, blocks: UInt64 = 0,
        atime: FileTime = FileTime(seconds: 0), mtime: FileTime = FileTime(seconds: 0),
        ctime: FileTime = FileTime(seconds: 0),
        mode: UInt32, nlink: UInt32 = 1, uid: UInt32 = 0, gid: UInt32 = 0, rdev: UInt32 = 0,
        blockSize: UInt32 = 0
    ) {
        self.ino = ino
        self.size = size
        self.blocks = blocks
        self.atime = atime
        self.mtime = mtime
        self.ctime = ctime
        self.mode = mode
        self.nlink = nlink
        self.uid = uid
        self.gid = gid
        self.rdev = rdev
        self.blockSize = blockSize
    }
}

/// The reply to LOOKUP, MKNOD, MKDIR, SYMLINK, LINK (and the entry half of CREATE/TMPFILE): `struct fuse_entry_out`.
///
/// Every reply with a non-zero `nodeID` adds one to the kernel's lookup count of that node, which the kernel
/// later gives back through ``FileSystemOperations/forget(nodeID:lookups:)``.
public struct EntryReply: Hashable, Sendable {
    /// The node id (FUSE's name for the inode handle; use the inode number so exports work). 0 = negative entry.
    public var nodeID: UInt64
    /// Generation: `nodeID:generation` must be unique for the filesystem's lifetime.
    public var generation: UInt64
    /// The inode's attributes.
    public var attributes: FileAttributes
    /// How long the kernel may cache the name → node mapping.
    public var entryTimeout: Duration
    /// How long the kernel may cache `attributes`.
    public var attributeTimeout: Duration

    /// Makes an entry reply.
    public init(
        nodeID: UInt64, generation: UInt64 = 0, attributes: FileAttributes,
        entryTimeout: Duration, attributeTimeout: Duration
    ) {
        self.nodeID = nodeID
        self.generation = generation
        self.attributes = attributes
        self.entryTimeout = entryTimeout
        self.attributeTimeout = attributeTimeout
    }

    /// A negative entry for LOOKUP: the name does not exist, and the kernel may remember that for `timeout`
    /// (lookup only; other operations must return a real node).
    public static func negative(timeout: Duration) -> EntryReply {
        EntryReply(
            nodeID: 0, attributes: FileAttributes(ino: 0, mode: 0), entryTimeout: timeout,
            attributeTimeout: .zero)
    }
}

/// The reply to GETATTR and SETATTR: `struct fuse_attr_out`.
public struct AttributeReply: Hashable, Sendable {
    /// The attributes.
    public var attributes: FileAttributes
    /// How long the kernel may cache them.
    public var timeout: Duration

    /// Makes an attribute reply.
    public init(attributes: FileAttributes, timeout: Duration) {
        self.attributes = attributes
        self.timeout = timeout
    }
}

/// `FOPEN_*` flags an OPEN, OPENDIR or CREATE reply carries.
public struct OpenReplyFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `FOPEN_DIRECT_IO`: bypass the page cache for this open file.
    public static let directIO = OpenReplyFlags(rawValue: 1 << 0)
    /// `FOPEN_KEEP_CACHE`: keep the page cache from earlier opens.
    public static let keepCache = OpenReplyFlags(rawValue: 1 << 1)
    /// `FOPEN_NONSEEKABLE`
    public static let nonSeekable = OpenReplyFlags(rawValue: 1 << 2)
    /// `FOPEN_CACHE_DIR`: let the kernel cache this directory's entries (OPENDIR).
    public static let cacheDirectory = OpenReplyFlags(rawValue: 1 << 3)
    /// `FOPEN_STREAM`
    public static let stream = OpenReplyFlags(rawValue: 1 << 4)
    /// `FOPEN_NOFLUSH`: no FLUSH on close.
    public static let noFlush = OpenReplyFlags(rawValue: 1 << 5)
    /// `FOPEN_PARALLEL_DIRECT_WRITES`
    public static let parallelDirectWrites = OpenReplyFlags(rawValue: 1 << 6)
}

/// The reply to OPEN and OPENDIR: `struct fuse_open_out`.
public struct OpenReply: Hashable, Sendable {
    /// An opaque handle the kernel passes back with every request on this open file.
    public var fileHandle: UInt64
    /// Caching choices for this open file.
    public var flags: OpenReplyFlags

    /// Makes an open reply.
    public init(fileHandle: UInt64 = 0, flags: OpenReplyFlags = []) {
        self.fileHandle = fileHandle
        self.flags = flags
    }
}

/// The reply to CREATE and TMPFILE: an entry plus an open file.
public struct CreateReply: Hashable, Sendable {
    /// The new node (must not be negative).
    public var entry: EntryReply
    /// The open file.
    public var open: OpenReply

    /// Makes a create reply.
    public init(entry: EntryReply, open: OpenReply) {
        self.entry = entry
        self.open = open
    }
}

/// How SETATTR changes a timestamp.
public enum TimeChange: Hashable, Sendable {
    /// `UTIME_NOW`: the filesystem uses its own current time.
    case now
    /// An explicit time.
    case set(FileTime)
}

/// The changes one SETATTR asks for (`struct fuse_setattr_in`); `nil` = leave alone (`UTIME_OMIT` for times).
public struct SetAttributes: Hashable, Sendable {
    /// `FATTR_MODE`: new permission bits (the kernel sends the whole mode including the type bits).
    public var mode: UInt32?
    /// `FATTR_UID`
    public var uid: UInt32?
    /// `FATTR_GID`
    public var gid: UInt32?
    /// `FATTR_SIZE`: truncate or extend.
    public var size: UInt64?
    /// `FATTR_ATIME` (+ `FATTR_ATIME_NOW`)
    public var atime: TimeChange?
    /// `FATTR_MTIME` (+ `FATTR_MTIME_NOW`)
    public var mtime: TimeChange?
    /// `FATTR_CTIME`
    public var ctime: FileTime?
    /// `FATTR_FH`: the change comes through this open file (ftruncate, futimens).
    public var fileHandle: UInt64?
    /// `FATTR_LOCKOWNER`
    public var lockOwner: UInt64?
    /// `FATTR_KILL_SUIDGID`: clear setuid/setgid (only with ``FUSESession/Configuration/handleKillPrivV2``).
    public var killSUIDGID: Bool

    /// Makes a change set; everything defaults to "leave alone".
    public init(
        mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil,
        atime: TimeChange? = nil, mtime: TimeChange? = nil, ctime: FileTime? = nil,
        fileHandle: UInt64? = nil, lockOwner: UInt64? = nil, killSUIDGID: Bool = false
    ) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.atime = atime
        self.mtime = mtime
        self.ctime = ctime
        self.fileHandle = fileHandle
        self.lockOwner = lockOwner
        self.killSUIDGID = killSUIDGID
    }
}

/// `renameat2` flags as RENAME2 carries them. (`RENAME_WHITEOUT` never reaches the filesystem: the session
/// replies `EINVAL` itself.)
public struct RenameFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `RENAME_NOREPLACE`: fail with `EEXIST` if the target exists.
    public static let noReplace = RenameFlags(rawValue: 1 << 0)
    /// `RENAME_EXCHANGE`: swap the two names atomically (both must exist).
    public static let exchange = RenameFlags(rawValue: 1 << 1)
    /// `RENAME_WHITEOUT` (rejected by the session).
    public static let whiteout = RenameFlags(rawValue: 1 << 2)
}

/// The reply to STATFS (`struct fuse_kstatfs`).
public struct FileSystemStatistics: Hashable, Sendable {
    /// Total blocks of `fragmentSize` bytes.
    public var blocks: UInt64
    /// Free blocks.
    public var freeBlocks: UInt64
    /// Free blocks for unprivileged users.
    public var availableBlocks: UInt64
    /// Total inodes.
    public var files: UInt64
    /// Free inodes.
    public var freeFiles: UInt64
    /// Preferred block size (`f_bsize`).
    public var blockSize: UInt32
    /// Longest name (`f_namelen`).
    public var nameLength: UInt32
    /// Fragment size (`f_frsize`), the unit of the block counts.
    public var fragmentSize: UInt32

    /// Makes statistics.
    public init(
        blocks: UInt64, freeBlocks: UInt64, availableBlocks: UInt64, files: UInt64, freeFiles: UInt64,
        blockSize: UInt32 = 4096, nameLength: UInt32 = 255, fragmentSize: UInt32 = 4096
    ) {
        self.blocks = blocks
        self.freeBlocks = freeBlocks
        self.availableBlocks = availableBlocks
        self.files = files
        self.freeFiles = freeFiles
        self.blockSize = blockSize
        self.nameLength = nameLength
        self.fragmentSize = fragmentSize
    }
}

/// The reply to IOCTL (restricted ioctls only: `output` at most the size the command encodes).
public struct IoctlReply: Hashable, Sendable {
    /// The ioctl's return value.
    public var result: Int32
    /// The bytes to copy back to the caller.
    public var output: [UInt8]

    /// Makes an ioctl reply.
    public init(result: Int32, output: [UInt8] = []) {
        self.result = result
        self.output = output
    }
}

/// What the kernel offered in INIT and what the session negotiated.
public struct FUSEConnectionInfo: Hashable, Sendable {
    /// The kernel's protocol major version (7).
    public var kernelMajor: UInt32
    /// The kernel's protocol minor version.
    public var kernelMinor: UInt32
    /// The minor version in use (min of the kernel's and ours, 38).
    public var minor: UInt32
    /// All `FUSE_*` INIT flags the kernel offered (flags2 in the high 32 bits).
    public var kernelFlags: UInt64
    /// The flags the session replied with.
    public var flags: UInt64
    /// Largest WRITE payload the kernel will send.
    public var maxWrite: UInt32
    /// Largest READ the kernel will ask for (bounded by `maxPages` pages and the `max_read` mount option).
    public var maxPages: UInt16
    /// Readahead window.
    public var maxReadahead: UInt32

    /// Whether a flag (`FUSE_DO_READDIRPLUS`, ...) was negotiated.
    public func negotiated(_ flag: UInt64) -> Bool { self.flags & flag != 0 }
}
