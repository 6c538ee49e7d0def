import Logging
import NIOCore
import NIOPosix
import ScoutProtocol
import Synchronization
import Testing

@testable import ScoutNet

struct TimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out: \(what)" }
}

/// Runs `op`, failing if it takes longer than `limit`. On a timeout `op` is cancelled and left
/// behind (a task group would wait for it, and a hung operation would hang the test).
func within<T: Sendable>(
    _ limit: Duration, _ what: String = #function, _ op: @escaping @Sendable () async throws -> T
) async throws -> T {
    let done = Mutex(false)
    let tasks = Mutex<[Task<Void, Never>]>([])
    return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, any Error>) in
        let finish: @Sendable (Result<T, any Error>) -> Void = { r in
            guard done.withLock({ d in
                defer { d = true }
                return !d
            }) else { return }
            cont.resume(with: r)
            for t in tasks.withLock({ $0 }) { t.cancel() }
        }
        let work = Task {
            do { finish(.success(try await op())) } catch { finish(.failure(error)) }
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            finish(.failure(TimedOut(what: what)))
        }
        tasks.withLock { $0 = [work, timer] }
    }
}

/// Polls `cond` every 10 ms until it holds, or fails after `limit`.
func eventually(
    _ limit: Duration = .seconds(10), _ what: String = "condition", _ cond: @Sendable () async -> Bool
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + limit
    while clock.now < deadline {
        if await cond() { return }
        try await Task.sleep(for: .milliseconds(10))
    }
    throw TimedOut(what: what)
}

func quietLogger() -> Logger {
    var l = Logger(label: "scoutfs.net.test")
    l.logLevel = .critical
    return l
}

/// A thread-safe list of what happened.
final class Recorder<T: Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    func add(_ t: T) { items.withLock { $0.append(t) } }
    var all: [T] { items.withLock { $0 } }
    var count: Int { items.withLock { $0.count } }
}

let testFSID: UInt64 = 0xf5_1d
let testVers: UInt64 = 2

enum ServerEvent: Sendable, Equatable {
    case greeting(rid: UInt64, term: UInt64, farewell: Bool)
    case greeted(rid: UInt64, firstContact: Bool)
    case disconnected(rid: UInt64)
    case gone(rid: UInt64, reason: NetServer.GoneReason)
}

/// A server handler whose request processing is a closure.
struct TestServerHandler: NetServerHandler {
    let term: UInt64
    let events = Recorder<ServerEvent>()
    var refuse: NetErrno?
    var onGreeted: (@Sendable (UInt64) async -> Void)?
    var onRequest: @Sendable (UInt64, NetCommand, [UInt8]) async -> Result<[UInt8], NetErrno>

    init(term: UInt64 = 1, onRequest: @escaping @Sendable (UInt64, NetCommand, [UInt8]) async -> Result<[UInt8], NetErrno>) {
        self.term = term
        self.onRequest = onRequest
    }

    func greeting(_ g: NetGreeting, from address: SocketAddress?) async -> Result<NetGreeting, NetErrno> {
        events.add(.greeting(rid: g.rid, term: g.serverTerm, farewell: g.isFarewell))
        if let refuse { return .failure(refuse) }
        if g.fsid != testFSID { return .failure(.einval) }
        return .success(NetGreeting(fsid: g.fsid, fmtVers: g.fmtVers, serverTerm: term, rid: g.rid))
    }

    func clientGreeted(rid: UInt64, greeting: NetGreeting, firstContact: Bool) async {
        events.add(.greeted(rid: rid, firstContact: firstContact))
        await onGreeted?(rid)
    }

    func handle(rid: UInt64, cmd: NetCommand, payload: [UInt8]) async -> Result<[UInt8], NetErrno> {
        await onRequest(rid, cmd, payload)
    }

    func clientDisconnected(rid: UInt64) async { events.add(.disconnected(rid: rid)) }
    func clientGone(rid: UInt64, reason: NetServer.GoneReason) async { events.add(.gone(rid: rid, reason: reason)) }
}

struct TestClientHandler: NetClientHandler {
    let events = Recorder<NetClient.Event>()
    var onRequest: @Sendable (NetIncomingRequest) async -> Void = { $0.respond(.success($0.payload)) }

    func handleRequest(_ request: NetIncomingRequest) async { await onRequest(request) }
    func connectionEvent(_ event: NetClient.Event) async { events.add(event) }
}

/// Where the client should connect; tests can move it.
final class AddressBox: Sendable {
    private let value = Mutex<SocketAddress?>(nil)
    init(_ a: SocketAddress?) { value.withLock { $0 = a } }
    func set(_ a: SocketAddress?) { value.withLock { $0 = a } }
    func get() -> SocketAddress? { value.withLock { $0 } }
}

func startServer(_ handler: TestServerHandler, reconnectTimeout: Duration = .seconds(20)) async throws -> NetServer {
    var config = NetServer.Configuration(host: "127.0.0.1", port: 0)
    config.reconnectTimeout = reconnectTimeout
    return try await NetServer.start(configuration: config, handler: handler, logger: quietLogger())
}

func makeClient(
    to server: NetServer?, rid: UInt64 = 0xabc, address: AddressBox? = nil, fsid: UInt64 = testFSID,
    configure: (inout NetClient.Configuration) -> Void = { _ in }
) throws -> (NetClient, AddressBox) {
    let box = try address ?? AddressBox(server.map { try SocketAddress(ipAddress: "127.0.0.1", port: $0.port) })
    var config = NetClient.Configuration(greeting: NetGreeting(fsid: fsid, fmtVers: testVers, rid: rid))
    config.reconnectDelayMin = .milliseconds(10)
    config.reconnectDelayMax = .milliseconds(200)
    configure(&config)
    let client = NetClient(configuration: config, logger: quietLogger()) { box.get() }
    return (client, box)
}

extension UInt64 {
    var bytes: [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: self >> (8 * UInt64($0))) } }
    init(bytes b: [UInt8]) {
        self = b.prefix(8).enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
}

/// A late-bound reference, for handlers that need the server they are handed to.
final class Late<T: Sendable>: Sendable {
    private let value = Mutex<T?>(nil)
    func set(_ v: T) { value.withLock { $0 = v } }
    var get: T? { value.withLock { $0 } }
}
