import Glibc
import NIOCore

/// TCP options for client and server sockets, as the original sets them.
///
/// TCP_NODELAY always. With a keepalive timeout T (the original's `tcp_keepalive_timeout_ms`,
/// 24 s by default): SO_KEEPALIVE, 3 probes, 1 s apart, starting at T - 3 s idle, and
/// TCP_USER_TIMEOUT T, so an unresponsive peer breaks the connection after about T.
enum SocketSetup {
    static let probes: SocketOptionValue = 3

    /// Sets the options; call on the channel's event loop (from its initializer).
    static func apply(to channel: any Channel, keepaliveTimeout: Duration?) throws {
        guard let sync = channel.syncOptions else { return }
        try sync.setOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
        guard let t = keepaliveTimeout else { return }
        let ms = SocketOptionValue(
            clamping: t.components.seconds * 1000 + t.components.attoseconds / 1_000_000_000_000_000)
        try sync.setOption(ChannelOptions.socketOption(.so_keepalive), value: 1)
        try sync.setOption(ChannelOptions.tcpOption(.init(rawValue: CInt(TCP_KEEPCNT))), value: probes)
        try sync.setOption(ChannelOptions.tcpOption(.init(rawValue: CInt(TCP_KEEPIDLE))), value: max(1, ms / 1000 - probes))
        try sync.setOption(ChannelOptions.tcpOption(.init(rawValue: CInt(TCP_KEEPINTVL))), value: 1)
        try sync.setOption(ChannelOptions.tcpOption(.init(rawValue: CInt(TCP_USER_TIMEOUT))), value: max(1, ms))
    }
}
