import Synchronization

/// Event counts of a client or server, for diagnostics and tests (the original's `net_*` counters).
public final class NetCounters: Sendable {
    /// A point-in-time copy of the counters.
    public struct Snapshot: Sendable, Equatable {
        public var messagesSent = 0
        public var messagesReceived = 0
        /// Messages that broke the protocol (each one closed its connection).
        public var invalidMessages = 0
        /// Resent messages dropped because their seq was already received.
        public var duplicatesDropped = 0
        /// Responses to requests no longer pending.
        public var unmatchedResponses = 0
        /// Sockets established (connected or accepted).
        public var connections = 0
        /// Sockets closed.
        public var disconnections = 0
        /// Greetings refused or failed (either side).
        public var greetingFailures = 0
    }

    let messagesSent = Atomic<Int>(0)
    let messagesReceived = Atomic<Int>(0)
    let invalidMessages = Atomic<Int>(0)
    let duplicatesDropped = Atomic<Int>(0)
    let unmatchedResponses = Atomic<Int>(0)
    let connections = Atomic<Int>(0)
    let disconnections = Atomic<Int>(0)
    let greetingFailures = Atomic<Int>(0)

    public init() {}

    @inline(__always)
    func bump(_ a: borrowing Atomic<Int>, by n: Int = 1) {
        a.wrappingAdd(n, ordering: .relaxed)
    }

    public func snapshot() -> Snapshot {
        Snapshot(
            messagesSent: messagesSent.load(ordering: .relaxed),
            messagesReceived: messagesReceived.load(ordering: .relaxed),
            invalidMessages: invalidMessages.load(ordering: .relaxed),
            duplicatesDropped: duplicatesDropped.load(ordering: .relaxed),
            unmatchedResponses: unmatchedResponses.load(ordering: .relaxed),
            connections: connections.load(ordering: .relaxed),
            disconnections: disconnections.load(ordering: .relaxed),
            greetingFailures: greetingFailures.load(ordering: .relaxed))
    }
}
