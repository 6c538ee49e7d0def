import ScoutProtocol

/// Why a request did not get a successful answer.
public enum NetError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The peer answered with an error.
    case remote(NetWireError)
    /// The server has no connection state for that client (never greeted, or gone).
    case notConnected
    /// The client or server was shut down before the answer came.
    case shutdown
    /// `requestSync`'s timeout passed. The request was withdrawn, but the peer may have
    /// processed it already: its outcome is unknown.
    case timedOut
    /// The request could not be sent (payload over 1100 bytes, a greeting, ...).
    case invalid(NetProtocolError)
    /// `requestSync` was called on an event-loop thread, where waiting would deadlock.
    case calledOnEventLoop
    /// An address that cannot be connected to or listened on.
    case badAddress(String)
    /// A successful response whose payload is not the size its command answers with.
    case badResponse(NetCommand, length: Int)

    /// The positive errno for callers that speak errno (FUSE replies, the original's callers).
    public var errno: Int32 {
        switch self {
        case .remote(let e): e == .none ? 0 : e.errno
        case .notConnected: LinuxErrno.ENOTCONN
        case .shutdown: LinuxErrno.ESHUTDOWN
        case .timedOut: LinuxErrno.ETIMEDOUT
        case .invalid(.dataTooLong): LinuxErrno.EMSGSIZE
        case .invalid: LinuxErrno.EINVAL
        case .calledOnEventLoop: LinuxErrno.EDEADLK
        case .badAddress: LinuxErrno.EINVAL
        case .badResponse: LinuxErrno.EMSGSIZE
        }
    }

    public var description: String {
        switch self {
        case .remote(let e): "peer answered \(e)"
        case .notConnected: "client not connected"
        case .shutdown: "connection shut down"
        case .timedOut: "request timed out"
        case .invalid(let e): "invalid request: \(e)"
        case .calledOnEventLoop: "blocking request on an event-loop thread"
        case .badAddress(let a): "bad address \(a)"
        case .badResponse(let c, let n): "\(c) response of \(n) bytes"
        }
    }
}
