import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import Logging
import ScoutBlockIO
import ScoutFormat
import ScoutQuorum
import ScoutQuorumService
import ScoutTestSupport
import Synchronization

/// A server that starts after a delay and stops at once, recording what it was asked.
final class FakeServer: QuorumServerDelegate {
    struct Start: Sendable {
        var term: UInt64
        var fencing: [QuorumFenceRequest]
    }

    struct State {
        var starts: [Start] = []
        var stops: [UInt64] = []
        var stopped: Set<UInt64> = []
        var reporters: [UInt64: QuorumServerReporter] = [:]
    }

    let startDelayMs: Int
    let failStarts: Bool
    let state = Mutex(State())

    init(startDelayMs: Int = 50, failStarts: Bool = false) {
        self.startDelayMs = startDelayMs
        self.failStarts = failStarts
    }

    var starts: [Start] { state.withLock { $0.starts } }
    var stops: [UInt64] { state.withLock { $0.stops } }

    func startServer(term: UInt64, fencing: [QuorumFenceRequest], reporter: QuorumServerReporter) {
        state.withLock {
            $0.starts.append(Start(term: term, fencing: fencing))
            $0.reporters[term] = reporter
        }
        reporter.report(.starting)
        let fail = failStarts
        // a Dispatch thread, not the cooperative pool, which other test suites may keep busy
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(startDelayMs)) { [self] in
            // report under the lock so a stop cannot slip in between the check and the report
            self.state.withLock { s in
                guard !s.stopped.contains(term) else { return }
                if fail {
                    s.stopped.insert(term)
                    reporter.report(.down)
                } else {
                    reporter.report(.up)
                }
            }
        }
    }

    func stopServer(term: UInt64) {
        state.withLock { s in
            s.stops.append(term)
            guard !s.stopped.contains(term), let reporter = s.reporters[term] else { return }
            s.stopped.insert(term)
            reporter.report(.stopping)
            reporter.report(.down)
        }
    }
}

/// A UDP port the kernel says is free on `host` now.
func freeUDPPort(host: String) -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    precondition(fd >= 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    inet_pton(AF_INET, host, &addr.sin_addr)
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    precondition(bound == 0, "bind \(host): \(errno)")
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return UInt16(bigEndian: addr.sin_port)
}

/// Sends raw bytes over UDP to `host:port`.
func sendUDP(_ bytes: [UInt8], host: String, port: UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    precondition(fd >= 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    inet_pton(AF_INET, host, &addr.sin_addr)
    _ = bytes.withUnsafeBytes { raw in
        withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                sendto(fd, raw.baseAddress, raw.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
    }
}

/// Polls `condition` every 20 ms until it holds or `timeoutMs` passes.
func waitUntil(timeoutMs: Int, _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let end = clock.now.advanced(by: .milliseconds(timeoutMs))
    while clock.now < end {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

/// Quorum members on loopback addresses sharing one in-memory metadata device.
final class TestQuorum: Sendable {
    static let fsid: UInt64 = 0xfeed_5c0f_0000_0042

    let device = MemoryDevice(size: 1 << 20)
    let config: QuorumConfig
    let heartbeatTimeoutMs: Int
    let store: QuorumBlockStore

    /// Slots `slots` on 127.0.0.(slot+1) with free ports; quorum blocks formatted.
    init(slots: [Int], heartbeatTimeoutMs: Int = 2000) throws {
        var config = QuorumConfig()
        for slot in slots {
            let host = "127.0.0.\(slot + 1)"
            config.slots[slot] = InetAddr(ipv4: InetAddr.parseIPv4(host)!, port: freeUDPPort(host: host))
        }
        self.config = config
        self.heartbeatTimeoutMs = heartbeatTimeoutMs
        self.store = QuorumBlockStore(device: device, fsid: Self.fsid)
        try store.format()
    }

    func configuration(slot: Int, rid: UInt64) -> QuorumServiceConfiguration {
        QuorumServiceConfiguration(
            fsid: Self.fsid, slot: slot, rid: rid, quorumConfig: config, heartbeatTimeoutMs: heartbeatTimeoutMs, seed: rid)
    }

    /// A running member.
    struct Member {
        let service: ScoutQuorumService
        let server: FakeServer
        let task: Task<Void, any Error>
        var status: QuorumStatus { service.status }
    }

    func start(slot: Int, rid: UInt64, server: FakeServer = FakeServer()) throws -> Member {
        var logger = Logger(label: "quorum-test")
        logger.logLevel = .critical
        let service = try ScoutQuorumService(
            configuration: configuration(slot: slot, rid: rid), device: device, delegate: server, logger: logger)
        service.start()
        let task = Task { try await service.run() }
        return Member(service: service, server: server, task: task)
    }

    /// Every member's state, for failure messages.
    static func describe(_ members: [Member]) -> String {
        members.map { m in
            let s = m.status
            let c = m.service.counters
            return "slot \(s.slot): \(s.lifecycle) term \(s.term) \(s.role) leader \(s.leader.map(String.init) ?? "-") server \(s.server) sent \(c.sent) received \(c.received) invalid \(c.receivedInvalid) sendFailed \(c.sendFailed) failure \(s.failure ?? "-")"
        }.joined(separator: "\n")
    }

    /// The single leader with its server up that every given member follows, if there is one.
    static func stableLeader(_ members: [Member]) -> Int? {
        let leaders = members.filter { m in
            let s = m.status
            return s.isLeader && s.server == .running(term: s.term, status: .up, stopRequested: false)
        }
        guard leaders.count == 1 else { return nil }
        let leader = leaders[0].status
        for m in members {
            let s = m.status
            guard s.leader == leader.slot, s.term >= leader.term, s.lifecycle == .running else { return nil }
        }
        return leader.slot
    }
}

