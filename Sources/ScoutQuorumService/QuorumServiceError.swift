public import SystemPackage

/// Why the quorum service could not start or had to stop.
///
/// A struct with an extensible ``Code`` (NIO's `FileSystemError` shape), a message for the log,
/// and the underlying errno when there is one.
public struct QuorumServiceError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: Hashable, Sendable {
            case configuration, blockIO, invalidBlock, slotInUse, bind, alreadyStarted
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The configuration or an option is invalid.
        public static let configuration = Code(.configuration)
        /// A quorum block could not be read or written.
        public static let blockIO = Code(.blockIO)
        /// A quorum block failed verification (magic, crc, fsid or blkno).
        public static let invalidBlock = Code(.invalidBlock)
        /// Our block's BEGIN event names another mount: two mounts use this slot.
        public static let slotInUse = Code(.slotInUse)
        /// The UDP socket could not be bound to the slot's address.
        public static let bind = Code(.bind)
        /// `run()` was called twice.
        public static let alreadyStarted = Code(.alreadyStarted)

        public var description: String {
            switch base {
            case .configuration: "configuration"
            case .blockIO: "block I/O"
            case .invalidBlock: "invalid quorum block"
            case .slotInUse: "slot in use"
            case .bind: "bind"
            case .alreadyStarted: "already started"
            }
        }
    }

    public var code: Code
    public var message: String
    /// The errno behind an I/O failure.
    public var errno: Errno?

    public init(_ code: Code, _ message: String, errno: Errno? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        "quorum \(code): \(message)" + (errno.map { " (\($0))" } ?? "")
    }
}
