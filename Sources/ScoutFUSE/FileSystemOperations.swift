import CFuseKernel
import Glibc

/// `FUSE_WRITE_*` flags of a WRITE request.
public struct WriteFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// `FUSE_WRITE_CACHE`: delayed write from the page cache; the file handle is a guess.
    public static let cache = WriteFlags(rawValue: 1 << 0)
    /// `FUSE_WRITE_LOCKOWNER`: the lock owner field is valid.
    public static let lockOwner = WriteFlags(rawValue: 1 << 1)
    /// `FUSE_WRITE_KILL_SUIDGID`: clear setuid/setgid (with ``FUSESession/Configuration/handleKillPrivV2``).
    public static let killSUIDGID = WriteFlags(rawValue: 1 << 2)
}

/// The operations of a filesystem served through FUSE, one method per FUSE opcode.
///
/// A ``FUSESession`` calls these methods synchronously on its reader threads, possibly several at once
/// (hence `Sendable`): the filesystem does its own locking. A method returns its typed reply, or throws;
/// the session then replies with the thrown error's errno (``FUSEError``, ``ErrnoConvertible``, swift-system's
/// `Errno`; anything else is `EIO`). Every request gets exactly one reply whatever the method does, except
/// FORGET, which has none.
///
/// Names and buffers (``FileName``, `RawSpan`, `UnsafeMutableRawBufferPointer`) point into the reader thread's
/// buffers and are valid only during the call.
///
/// An operation that may block for long (lock waits, offline data) should watch
/// ``RequestContext/isInterrupted`` (or use ``RequestContext/waitForInterrupt(timeout:)`` /
/// ``RequestContext/onInterrupt(_:)``) and throw ``FUSEError/interrupted`` when the caller is signalled.
/// Declaring the wait through those calls (or ``RequestContext/willBlock()``) also makes the session start a
/// spare reader thread, so that the INTERRUPT and other requests are still read.
///
/// Every method has a default: `ENOSYS` for most (the kernel then stops sending that opcode or falls back:
/// CREATE → MKNOD + OPEN, ACCESS/FLUSH/FSYNC/XATTR → treated as success or unsupported), success for
/// OPEN/OPENDIR/RELEASE/RELEASEDIR/FORGET/INIT/DESTROY, `ENOTTY` for IOCTL.
///
/// Nodes: node id 1 is the root (``FUSESession/rootNodeID``). Every reply carrying a node (LOOKUP, MKNOD,
/// MKDIR, SYMLINK, LINK, CREATE, TMPFILE, and READDIRPLUS records, see ``DirectoryReplyBuffer``) adds one to the
/// kernel's lookup count of that node; FORGET gives counts back. With EXPORT_SUPPORT negotiated (the default),
/// LOOKUP may ask for `.` and `..`.
public protocol FileSystemOperations: Sendable {
    /// INIT: the connection was negotiated. Throwing fails the mount's INIT (the kernel then fails every request).
    func initialize(_ connection: FUSEConnectionInfo) throws
    /// DESTROY: a clean unmount (fuseblk only). Commit and say farewell before returning: `umount` waits.
    func destroy()

    /// LOOKUP: find `name` in `parent`. Return ``EntryReply/negative(timeout:)`` or throw `ENOENT` when absent.
    func lookup(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws -> EntryReply
    /// FORGET / BATCH_FORGET: the kernel dropped `lookups` references to `nodeID`. No reply.
    func forget(nodeID: UInt64, lookups: UInt64)
    /// GETATTR; `fileHandle` is set when the kernel asks through an open file (fstat).
    func getattr(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64?) throws -> AttributeReply
    /// SETATTR: chmod, chown, truncate, utimes (`UTIME_NOW` arrives as ``TimeChange/now``).
    func setattr(_ context: RequestContext, nodeID: UInt64, changes: SetAttributes) throws -> AttributeReply
    /// READLINK: the target bytes (no NUL).
    func readlink(_ context: RequestContext, nodeID: UInt64) throws -> [UInt8]
    /// SYMLINK: create `name` in `parent` pointing to `target`.
    func symlink(_ context: RequestContext, parent: UInt64, name: borrowing FileName, target: borrowing FileName) throws -> EntryReply
    /// MKNOD: `mode` includes the type bits; with DONT_MASK the filesystem applies `umask` itself.
    func mknod(_ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, rdev: UInt32, umask: UInt32) throws -> EntryReply
    /// MKDIR: `mode` is the permission bits (no type bits); apply `umask` (DONT_MASK).
    func mkdir(_ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, umask: UInt32) throws -> EntryReply
    /// UNLINK
    func unlink(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws
    /// RMDIR
    func rmdir(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws
    /// RENAME and RENAME2 (`flags`: ``RenameFlags/noReplace`` or ``RenameFlags/exchange``; never whiteout).
    func rename(
        _ context: RequestContext, parent: UInt64, name: borrowing FileName, newParent: UInt64,
        newName: borrowing FileName, flags: RenameFlags) throws
    /// LINK: a new name `newName` in `newParent` for `nodeID`.
    func link(_ context: RequestContext, nodeID: UInt64, newParent: UInt64, newName: borrowing FileName) throws -> EntryReply
    /// OPEN: `flags` are the `open(2)` flags (`O_TRUNC` included: ATOMIC_O_TRUNC is negotiated).
    /// `killSUIDGID` is FUSE_OPEN_KILL_SUIDGID (truncating open by a non-privileged writer, killpriv v2 only).
    func open(_ context: RequestContext, nodeID: UInt64, flags: Int32, killSUIDGID: Bool) throws -> OpenReply
    /// READ: fill `buffer` (its count is the size asked, at most `max_pages` pages; page-aligned memory, so it may be
    /// an `O_DIRECT` target) from `offset`; return the byte count (short = end of file).
    /// `flags` are the open file's flags.
    func read(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64,
        into buffer: UnsafeMutableRawBufferPointer, flags: Int32) throws -> Int
    /// WRITE: `data` starts on a 4096-byte memory boundary. Return the bytes written.
    func write(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, data: RawSpan,
        writeFlags: WriteFlags, flags: Int32) throws -> Int
    /// STATFS
    func statfs(_ context: RequestContext, nodeID: UInt64) throws -> FileSystemStatistics
    /// RELEASE: the last close of an open file. `flush` is FUSE_RELEASE_FLUSH.
    func release(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, flags: Int32, flush: Bool) throws
    /// FSYNC (`sync FILE`, fsync, fdatasync when `dataOnly`).
    func fsync(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, dataOnly: Bool) throws
    /// SETXATTR: `flags` are `XATTR_CREATE`/`XATTR_REPLACE`; `killSGID` is FUSE_SETXATTR_ACL_KILL_SGID.
    func setxattr(
        _ context: RequestContext, nodeID: UInt64, name: borrowing FileName, value: RawSpan, flags: Int32,
        killSGID: Bool) throws
    /// GETXATTR: the whole value. The session answers size queries and replies `ERANGE` when it does not fit.
    /// Throw `ENODATA` when absent.
    func getxattr(_ context: RequestContext, nodeID: UInt64, name: borrowing FileName) throws -> [UInt8]
    /// LISTXATTR: all names (the session packs them NUL-terminated, answers size queries and `ERANGE`).
    func listxattr(_ context: RequestContext, nodeID: UInt64) throws -> [[UInt8]]
    /// REMOVEXATTR
    func removexattr(_ context: RequestContext, nodeID: UInt64, name: borrowing FileName) throws
    /// FLUSH: each close(2) of a file descriptor.
    func flush(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, lockOwner: UInt64) throws
    /// OPENDIR
    func opendir(_ context: RequestContext, nodeID: UInt64, flags: Int32) throws -> OpenReply
    /// READDIR and READDIRPLUS (``DirectoryReplyBuffer/isPlus``): append records from `offset` (0 = start; otherwise
    /// the `nextOffset` of the last record the kernel consumed) until `append` returns false or the directory ends.
    func readdir(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64,
        into buffer: inout DirectoryReplyBuffer) throws
    /// RELEASEDIR
    func releasedir(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, flags: Int32) throws
    /// FSYNCDIR (`sync DIR`).
    func fsyncdir(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, dataOnly: Bool) throws
    /// ACCESS (sent only without `default_permissions`): `mask` is `R_OK|W_OK|X_OK` or `F_OK`.
    func access(_ context: RequestContext, nodeID: UInt64, mask: Int32) throws
    /// CREATE: create and open `name` (`mode` includes `S_IFREG`; apply `umask`).
    func create(
        _ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, umask: UInt32,
        flags: Int32) throws -> CreateReply
    /// TMPFILE (O_TMPFILE): create an unnamed inode in `parent` (nlink 0) and open it; `linkat` may name it later.
    func tmpfile(_ context: RequestContext, parent: UInt64, mode: UInt32, umask: UInt32, flags: Int32) throws -> CreateReply
    /// FALLOCATE: `mode` is the `fallocate(2)` mode (`FALLOC_FL_KEEP_SIZE`, `FALLOC_FL_PUNCH_HOLE`, ...).
    func fallocate(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, length: UInt64,
        mode: Int32) throws
    /// LSEEK for `SEEK_DATA`/`SEEK_HOLE` (`ENXIO` past the end). Other whences are handled by the kernel.
    func lseek(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, whence: Int32) throws -> UInt64
    /// COPY_FILE_RANGE: return the bytes copied. Default `ENOSYS` (the kernel then copies through read/write).
    func copyFileRange(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, outNodeID: UInt64,
        outFileHandle: UInt64, outOffset: UInt64, length: UInt64, flags: UInt64) throws -> Int
    /// IOCTL (restricted): `input` holds the `_IOC_SIZE` bytes for `_IOW` commands; reply at most `outputSize`
    /// bytes for `_IOR` commands. `flags` are FUSE_IOCTL_* (`FUSE_IOCTL_DIR` on directories). Default `ENOTTY`.
    func ioctl(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, command: UInt32, argument: UInt64,
        input: RawSpan, outputSize: Int, flags: UInt32) throws -> IoctlReply
}

extension FileSystemOperations {
    public func initialize(_ connection: FUSEConnectionInfo) throws {}
    public func destroy() {}
    public func lookup(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws -> EntryReply {
        throw FUSEError.notImplemented
    }
    public func forget(nodeID: UInt64, lookups: UInt64) {}
    public func getattr(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64?) throws -> AttributeReply {
        throw FUSEError.notImplemented
    }
    public func setattr(_ context: RequestContext, nodeID: UInt64, changes: SetAttributes) throws -> AttributeReply {
        throw FUSEError.notImplemented
    }
    public func readlink(_ context: RequestContext, nodeID: UInt64) throws -> [UInt8] {
        throw FUSEError.notImplemented
    }
    public func symlink(_ context: RequestContext, parent: UInt64, name: borrowing FileName, target: borrowing FileName) throws -> EntryReply {
        throw FUSEError.notImplemented
    }
    public func mknod(_ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, rdev: UInt32, umask: UInt32) throws -> EntryReply {
        throw FUSEError.notImplemented
    }
    public func mkdir(_ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, umask: UInt32) throws -> EntryReply {
        throw FUSEError.notImplemented
    }
    public func unlink(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws {
        throw FUSEError.notImplemented
    }
    public func rmdir(_ context: RequestContext, parent: UInt64, name: borrowing FileName) throws {
        throw FUSEError.notImplemented
    }
    public func rename(
        _ context: RequestContext, parent: UInt64, name: borrowing FileName, newParent: UInt64,
        newName: borrowing FileName, flags: RenameFlags
    ) throws {
        throw FUSEError.notImplemented
    }
    public func link(_ context: RequestContext, nodeID: UInt64, newParent: UInt64, newName: borrowing FileName) throws -> EntryReply {
        throw FUSEError.notImplemented
    }
    public func open(_ context: RequestContext, nodeID: UInt64, flags: Int32, killSUIDGID: Bool) throws -> OpenReply {
        OpenReply()
    }
    public func read(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64,
        into buffer: UnsafeMutableRawBufferPointer, flags: Int32
    ) throws -> Int {
        throw FUSEError.notImplemented
    }
    public func write(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, data: RawSpan,
        writeFlags: WriteFlags, flags: Int32
    ) throws -> Int {
        throw FUSEError.notImplemented
    }
    public func statfs(_ context: RequestContext, nodeID: UInt64) throws -> FileSystemStatistics {
        throw FUSEError.notImplemented
    }
    public func release(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, flags: Int32, flush: Bool) throws {}
    public func fsync(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, dataOnly: Bool) throws {
        throw FUSEError.notImplemented
    }
    public func setxattr(
        _ context: RequestContext, nodeID: UInt64, name: borrowing FileName, value: RawSpan, flags: Int32,
        killSGID: Bool
    ) throws {
        throw FUSEError.notImplemented
    }
    public func getxattr(_ context: RequestContext, nodeID: UInt64, name: borrowing FileName) throws -> [UInt8] {
        throw FUSEError.notImplemented
    }
    public func listxattr(_ context: RequestContext, nodeID: UInt64) throws -> [[UInt8]] {
        throw FUSEError.notImplemented
    }
    public func removexattr(_ context: RequestContext, nodeID: UInt64, name: borrowing FileName) throws {
        throw FUSEError.notImplemented
    }
    public func flush(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, lockOwner: UInt64) throws {
        throw FUSEError.notImplemented
    }
    public func opendir(_ context: RequestContext, nodeID: UInt64, flags: Int32) throws -> OpenReply {
        OpenReply()
    }
    public func readdir(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64,
        into buffer: inout DirectoryReplyBuffer
    ) throws {
        throw FUSEError.notImplemented
    }
    public func releasedir(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, flags: Int32) throws {}
    public func fsyncdir(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, dataOnly: Bool) throws {
        throw FUSEError.notImplemented
    }
    public func access(_ context: RequestContext, nodeID: UInt64, mask: Int32) throws {
        throw FUSEError.notImplemented
    }
    public func create(
        _ context: RequestContext, parent: UInt64, name: borrowing FileName, mode: UInt32, umask: UInt32,
        flags: Int32
    ) throws -> CreateReply {
        throw FUSEError.notImplemented
    }
    public func tmpfile(_ context: RequestContext, parent: UInt64, mode: UInt32, umask: UInt32, flags: Int32) throws -> CreateReply {
        throw FUSEError.notImplemented
    }
    public func fallocate(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, length: UInt64,
        mode: Int32
    ) throws {
        throw FUSEError.notImplemented
    }
    public func lseek(_ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, whence: Int32) throws -> UInt64 {
        throw FUSEError.notImplemented
    }
    public func copyFileRange(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, offset: UInt64, outNodeID: UInt64,
        outFileHandle: UInt64, outOffset: UInt64, length: UInt64, flags: UInt64
    ) throws -> Int {
        throw FUSEError.notImplemented
    }
    public func ioctl(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, command: UInt32, argument: UInt64,
        input: RawSpan, outputSize: Int, flags: UInt32
    ) throws -> IoctlReply {
        throw FUSEError(ENOTTY)
    }
}
