import CFuseKernel
import Glibc
import SystemPackage

/// An error that knows which errno a FUSE reply should carry.
///
/// The session maps every error a ``FileSystemOperations`` method throws to an errno through this
/// protocol (see ``FUSEError/errno(for:)``); errors that do not conform become `EIO`.
public protocol ErrnoConvertible: Error {
    /// The positive errno value to reply with (`ENOENT`, `EIO`, ...).
    var errnoValue: Int32 { get }
}

/// An errno-carrying error: what a filesystem operation throws to make the session reply with that errno.
public struct FUSEError: ErrnoConvertible, Hashable, Sendable, CustomStringConvertible {
    /// The positive errno value.
    public var errno: Int32

    /// Makes an error replying `errno` (a positive value such as `ENOENT`).
    public init(_ errno: Int32) {
        self.errno = errno
    }

    public var errnoValue: Int32 { self.errno }

    public var description: String {
        guard let s = strerror(self.errno) else { return "errno \(self.errno)" }
        return "\(String(cString: s)) (errno \(self.errno))"
    }

    /// `ENOENT`
    public static let noEntry = FUSEError(ENOENT)
    /// `EEXIST`
    public static let exists = FUSEError(EEXIST)
    /// `ENOTDIR`
    public static let notDirectory = FUSEError(ENOTDIR)
    /// `EISDIR`
    public static let isDirectory = FUSEError(EISDIR)
    /// `ENOTEMPTY`
    public static let notEmpty = FUSEError(ENOTEMPTY)
    /// `EINVAL`
    public static let invalid = FUSEError(EINVAL)
    /// `EIO`
    public static let io = FUSEError(EIO)
    /// `ENOSYS`: the operation is not implemented.
    public static let notImplemented = FUSEError(ENOSYS)
    /// `EINTR`: the request was interrupted (see ``RequestContext/isInterrupted``).
    public static let interrupted = FUSEError(EINTR)
    /// `ENODATA`: no such extended attribute.
    public static let noData = FUSEError(ENODATA)
    /// `ERANGE`
    public static let range = FUSEError(ERANGE)
    /// `EPERM`
    public static let notPermitted = FUSEError(EPERM)
    /// `EACCES`
    public static let accessDenied = FUSEError(EACCES)

    /// The errno a reply carries for `error`: ``ErrnoConvertible`` errors give their own value, `Errno` from
    /// swift-system its raw value, anything else `EIO`. Values outside 1...4095 also become `EIO`, because the
    /// kernel rejects other reply errors.
    public static func errno(for error: any Error) -> Int32 {
        let value: Int32
        if let e = error as? FUSEError {
            value = e.errno
        } else if let e = error as? any ErrnoConvertible {
            value = e.errnoValue
        } else if let e = error as? Errno {
            value = e.rawValue
        } else {
            value = EIO
        }
        return (1...4095).contains(value) ? value : EIO
    }
}
