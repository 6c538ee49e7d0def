import ScoutAlloc
import ScoutBTree
import ScoutFormat

/// An error from a filesystem operation, with the errno a FUSE reply or a CLI exit uses.
public struct FSError: Error, Equatable, Sendable, CustomStringConvertible {
    public var errno: Int32
    public var message: String

    public init(_ errno: Int32, _ message: String = "") {
        self.errno = errno
        self.message = message
    }

    public var description: String { message.isEmpty ? "errno \(errno)" : "\(message) (errno \(errno))" }

    public static let ENOENT: Int32 = 2
    public static let EIO: Int32 = 5
    public static let E2BIG: Int32 = 7
    public static let EBADF: Int32 = 9
    public static let EAGAIN: Int32 = 11
    public static let ENOMEM: Int32 = 12
    public static let EACCES: Int32 = 13
    public static let EBUSY: Int32 = 16
    public static let EEXIST: Int32 = 17
    public static let EXDEV: Int32 = 18
    public static let ENOTDIR: Int32 = 20
    public static let EISDIR: Int32 = 21
    public static let EINVAL: Int32 = 22
    public static let EFBIG: Int32 = 27
    public static let ENOSPC: Int32 = 28
    public static let EMLINK: Int32 = 31
    public static let ERANGE: Int32 = 34
    public static let ENAMETOOLONG: Int32 = 36
    public static let ENOSYS: Int32 = 38
    public static let ENOTEMPTY: Int32 = 39
    public static let ENODATA: Int32 = 61
    public static let EDQUOT: Int32 = 122
    public static let ENXIO: Int32 = 6
    public static let ENODEV: Int32 = 19
    public static let EOPNOTSUPP: Int32 = 95
    public static let ESTALE: Int32 = 116
    public static let ESHUTDOWN: Int32 = 108
    public static let EPERM: Int32 = 1
    public static let EINTR: Int32 = 4

    /// Runs `body`, a read of committed blocks from references it fetches itself (a super
    /// block read, GET_ROOTS), again while it meets a stale block (freed and rewritten since
    /// the references were read), at most `attempts` times; still stale after that is EIO.
    static func retryingStale<T>(_ what: String, attempts: Int = 3, _ body: () throws(FSError) -> T) throws(FSError) -> T {
        var last: FSError?
        for _ in 0..<attempts {
            do {
                return try body()
            } catch where error.errno == ESTALE {
                last = error
            }
        }
        throw FSError(EIO, "\(what): stale blocks under \(attempts) fresh references: \(last?.message ?? "")")
    }

    static func store(_ e: BlockStoreError) -> FSError {
        switch e {
        case .noSpace: return FSError(ENOSPC, "metadata allocator exhausted")
        case .io(let errno, let blkno): return FSError(errno == 0 ? EIO : errno, "meta blkno \(blkno): I/O error")
        case .format(let f): return FSError(f.isStale ? ESTALE : EIO, "\(f)")
        }
    }

    static func btree(_ e: BTreeError) -> FSError {
        switch e {
        case .store(let s): return store(s)
        default: return FSError(EIO, "corrupt btree: \(e)")
        }
    }

    static func alloc(_ e: AllocError) -> FSError {
        switch e {
        case .btree(let b): return btree(b)
        default: return FSError(EIO, "allocator: \(e)")
        }
    }
}
