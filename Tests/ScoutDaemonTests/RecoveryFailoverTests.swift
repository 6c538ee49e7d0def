import Glibc
import Logging
import NIOCore
import ScoutBlockIO
import ScoutFS
import ScoutFormat
import ScoutNet
import ScoutProtocol
import ScoutServer
import ScoutStorage
import ScoutTestSupport
import Synchronization
import Testing

@testable import ScoutDaemon

private let me = Caller(uid: 0, gid: 0, pid: 1)
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }
private let loopback: UInt32 = 0x7f00_0001

struct RecoveryTimedOut: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out: \(what)" }
}

/// Polls `cond` every 20 ms until it holds, or throws after `limit`.
func eventually(_ limit: Duration, _ what: String, _ cond: () async throws -> Bool) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + limit
    while clock.now < deadline {
        if try await cond() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw RecoveryTimedOut(what: what)
}

/// Runs blocking filesystem work on its own thread (never on the few cooperative threads,
/// which the server's handlers need meanwhile).
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    return try await withCheckedThrowingContinuation { (cont: CheckedContinuation<T, any Error>) in
        let box = Unmanaged.passRetained(ThreadBody {
            do { cont.resume(returning: try body()) } catch { cont.resume(throwing: error) }
        })
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue().run()
            return nil
        }, box.toOpaque())
        if rc == 0 {
            pthread_detach(tid)
        } else {
            box.takeRetainedValue().run()
        }
    }
}

final class ThreadBody: @unchecked Sendable {
    // Invariant: set once by the spawning call, run once by the thread.
    let run: () -> Void
    init(_ r: @escaping () -> Void) { run = r }
}

/// Where the mounts find the current server.
final class ServerAddress: Sendable {
    private let value = Mutex<SocketAddress?>(nil)
    func set(_ a: SocketAddress?) { value.withLock { $0 = a } }
    func get() -> SocketAddress? { value.withLock { $0 } }
}

func testLogger(_ label: String) -> Logger {
    var l = Logger(label: label)
    l.logLevel = getenv("SCOUTFS_TEST_LOG") != nil ? .debug : .critical
    return l
}

/// One mount over TCP: a NetClient, its ClientLink and the Volume on top.
struct NetMount: Sendable {
    let rid: UInt64
    let client: NetClient
    let link: ClientLink
    let vol: Volume

    static func make(_ tv: TestVolume, rid: UInt64, address: ServerAddress, quorum: Bool = false) async throws -> NetMount {
        var greeting = NetGreeting(fsid: tv.fsid, fmtVers: 2, rid: rid)
        if quorum { greeting.flags |= NetGreeting.flagQuorum }
        var cfg = NetClient.Configuration(greeting: greeting)
        cfg.reconnectDelayMin = .milliseconds(20)
        cfg.reconnectDelayMax = .milliseconds(200)
        let client = NetClient(configuration: cfg, logger: testLogger("client.\(rid)")) { address.get() }
        let link = ClientLink(client: client)
        link.timeout = .seconds(20)
        client.start(handler: link)
        let md = MetaDevice(device: try FileBlockDevice(path: tv.meta, writable: true), fsid: tv.fsid)
        let data = tv.data
        let vol = try await onThread { try Volume(meta: md, dataPath: data, fmtVers: 2, link: link) }
        link.volume = vol
        return NetMount(rid: rid, client: client, link: link, vol: vol)
    }

    func create(_ name: String, _ bytes: [UInt8], sync: Bool = true) async throws -> UInt64 {
        let vol = self.vol
        return try await onThread {
            let f = try vol.makeNode(parent: Format.rootIno, name: b(name), mode: UInt32(S_IFREG) | 0o644, caller: me)
            try vol.open(f.ino, truncate: false)
            _ = try bytes.withUnsafeBytes { try vol.write(f.ino, offset: 0, $0) }
            vol.release(f.ino)
            if sync { try vol.sync() }
            return f.ino
        }
    }

    func overwrite(_ ino: UInt64, _ bytes: [UInt8]) async throws {
        let vol = self.vol
        try await onThread {
            try vol.open(ino, truncate: true)
            _ = try bytes.withUnsafeBytes { try vol.write(ino, offset: 0, $0) }
            vol.release(ino)
            try vol.sync()
        }
    }

    func read(_ name: String) async throws -> [UInt8] {
        let vol = self.vol
        return try await onThread {
            let f = try vol.lookup(parent: Format.rootIno, name: b(name))
            return try vol.read(f.ino, offset: 0, size: 1 << 20)
        }
    }

    func read(ino: UInt64, count: Int) async throws -> [UInt8] {
        let vol = self.vol
        return try await onThread { try vol.read(ino, offset: 0, size: count) }
    }

    func mkdir(_ name: String) async throws {
        let vol = self.vol
        _ = try await onThread { try vol.makeNode(parent: Format.rootIno, name: b(name), mode: UInt32(S_IFDIR) | 0o755, caller: me) }
    }

    /// The largest write seq of any lock this mount holds.
    var highestLockSeq: UInt64 { vol.locksForRecovery(from: .zero, limit: .max).map(\.writeSeq).max() ?? 0 }
}

/// A volume whose super block configures `slots` quorum slots.
func quorumVolume(slots: Int) throws -> TestVolume {
    let dir = try TempDir.make(prefix: "scoutfs-qvol")
    let meta = dir + "/meta"
    let data = dir + "/data"
    try TempDir.sparseFile(meta, size: 2 << 30)
    try TempDir.sparseFile(data, size: 8 << 30)
    var slotMap: [Int: InetAddr] = [:]
    for i in 0..<slots { slotMap[i] = InetAddr(ipv4: 0x7f00_0001, port: UInt16(12000 + i)) }
    var o = MkfsOptions(metaPath: meta, dataPath: data, slots: slotMap)
    o.allowSmallSize = true
    o.force = true
    let fsid = UInt64.random(in: 1...UInt64.max)
    try Mkfs.run(o, now: Timespec(sec: 1), fsid: fsid, uuid: Array(repeating: 7, count: 16), out: { _ in }, err: { _ in })
    return TestVolume(dir: dir, meta: meta, data: data, fsid: fsid)
}

/// A server of one term on the test volume, listening on a free loopback port.
struct TermServer {
    let service: ServerService
    let server: NetServer
    let fatal: Recorded

    final class Recorded: Sendable {
        private let items = Mutex<[String]>([])
        func add(_ s: String) { items.withLock { $0.append(s) } }
        var all: [String] { items.withLock { $0 } }
    }

    static func start(
        _ tv: TestVolume, term: UInt64, fences: FenceRequests, recoveryTimeout: Duration = .seconds(30),
        reconnectTimeout: Duration = .seconds(60)
    ) async throws -> TermServer {
        let fatal = Recorded()
        let service = ServerService(
            core: try tv.openCore(), term: term, fences: fences, recoveryTimeout: recoveryTimeout,
            reclaimInterval: .milliseconds(100), logger: testLogger("server.\(term)"), onFatal: { fatal.add($0) })
        var cfg = NetServer.Configuration(host: "127.0.0.1", port: 0)
        cfg.reconnectTimeout = reconnectTimeout
        let server = try await service.start(configuration: cfg)
        return TermServer(service: service, server: server, fatal: fatal)
    }
}

/// Waits for a request that is expected to stay blocked for a while.
final class Outcome: Sendable {
    private let state = Mutex<Result<Void, FSError>?>(nil)
    func set(_ r: Result<Void, FSError>) { state.withLock { $0 = r } }
    var value: Result<Void, FSError>? { state.withLock { $0 } }
}

extension Outcome {
    /// Unmounts `m` (final commit and farewell) on a thread of its own; the result lands here.
    func startUnmount(_ m: NetMount) {
        Task {
            do {
                try await onThread { try m.vol.unmount() }
                set(.success(()))
            } catch {
                set(.failure(error as? FSError ?? FSError(5, "\(error)")))
            }
        }
    }
}

@Suite("Server failover: lock recovery, fencing and reclaim", .serialized, .timeLimit(.minutes(2)))
struct RecoveryFailoverTests {
    @Test func newServerRecoversLocksFencesTheSilentMountAndReclaimsIt() async throws {
        // each mount takes 1 GiB of data blocks into its allocator
        let tv = try TestVolume.make(dataSize: 8 << 30)
        defer { TempDir.remove(tv.dir) }
        let address = ServerAddress()
        let a = try await TermServer.start(tv, term: 1, fences: FenceRequests())
        address.set(a.server.localAddress)

        let m1 = try await NetMount.make(tv, rid: 0x1001, address: address)
        let m2 = try await NetMount.make(tv, rid: 0x1002, address: address)
        let m3 = try await NetMount.make(tv, rid: 0x1003, address: address)
        #expect(try a.service.mountedClientRids() == [0x1001, 0x1002, 0x1003])

        // work under server A, coherent across mounts
        let x = [UInt8](repeating: 0x11, count: 50_000)
        let f1 = try await m1.create("f1", x)
        #expect(try await m2.read("f1") == x)
        let y = [UInt8](repeating: 0x22, count: 70_000)
        _ = try await m2.create("f2", y)
        let z = [UInt8](repeating: 0x33, count: 30_000)
        _ = try await m3.create("f3", z)  // m3 now holds WRITE on the root directory's lock
        #expect(try await m1.read("f2") == y)
        let heldSeqs = max(m1.highestLockSeq, m2.highestLockSeq, m3.highestLockSeq)
        #expect(heldSeqs > 0)

        // m3 stops without a farewell; m2 asks for the root lock (m3's WRITE), which waits on
        // an invalidation m3 never answers; then server A dies
        await m3.client.shutdown()
        let blocked = Outcome()
        Task {
            do {
                try await m2.mkdir("after-failover")
                blocked.set(.success(()))
            } catch let e as FSError {
                blocked.set(.failure(e))
            } catch {
                blocked.set(.failure(FSError(5, "\(error)")))
            }
        }
        try await eventually(.seconds(30), "m2's request reaches A") { a.service.waitingLockRequests == 1 }
        await a.service.stop()
        #expect(a.service.isStopped)

        // server B, term 2, on another port of the same volume
        let fences = FenceRequests()
        // the recovery timer is fired by hand below, once m1 and m2 are done: a busy machine
        // (parallel test suites) cannot make them miss a short window
        let bServer = try await TermServer.start(tv, term: 2, fences: fences, recoveryTimeout: .seconds(600))
        let bsvc = bServer.service
        #expect(bsvc.recoveryPending() == [0x1001, 0x1002, 0x1003])
        address.set(bServer.server.localAddress)

        // m1 and m2 reconnect and replay their locks; m3 stays pending
        try await eventually(.seconds(30), "m1 and m2 recover") { bsvc.recoveryPending() == [0x1003] }
        #expect(!bsvc.grants(rid: 0x1001).isEmpty)
        #expect(!bsvc.grants(rid: 0x1002).isEmpty)
        #expect(bsvc.grants(rid: 0x1003).isEmpty)
        #expect(bsvc.coreSeq >= heldSeqs)
        // locks m1 still holds serve it while recovery waits (READ on f1's inode group)
        #expect(try await m1.read(ino: f1, count: x.count) == x)
        // m2's request was resent to B, which holds it until m3 is dealt with
        try await eventually(.seconds(30), "m2's request reaches B") { bsvc.waitingLockRequests == 1 }
        #expect(blocked.value == nil)

        #expect(fences.list().isEmpty)
        bsvc.recoveryTimedOut()
        let req = try #require(fences.request(rid: 0x1003))
        #expect(req.reason == .clientRecovery)
        #expect(req.ipv4 == loopback)  // from its mounted_client item: B never saw it
        #expect(fences.request(rid: 0x1001) == nil && fences.request(rid: 0x1002) == nil)
        try await Task.sleep(for: .milliseconds(300))
        #expect(blocked.value == nil)
        #expect(try bsvc.mountedClientRids().contains(0x1003))

        fences.answer(rid: 0x1003, fenced: true)
        try await eventually(.seconds(30), "the blocked request is granted") { blocked.value != nil }
        if case .failure(let e) = blocked.value { Issue.record("mkdir after failover failed: \(e)") }
        #expect(fences.request(rid: 0x1003) == nil)
        #expect(try bsvc.mountedClientRids() == [0x1001, 0x1002])
        #expect(bsvc.recoveryPending().isEmpty)
        #expect(bServer.fatal.all.isEmpty)

        // everything committed before the failover is visible, the reclaimed mount's too
        #expect(try await m2.read("f3") == z)
        #expect(try await m2.read("f1") == x)
        // and new writes are seen by the other mount (the new server's seqs sort later)
        let w = [UInt8](repeating: 0x44, count: 40_000)
        try await m2.overwrite(f1, w)
        #expect(try await m1.read("f1") == w)
        _ = try await m1.create("f4", y)
        #expect(try await m2.read("f4") == y)

        // a clean unmount reclaims the mount at once
        try await onThread { try m2.vol.unmount() }
        #expect(try bsvc.mountedClientRids() == [0x1001])
        try await onThread { try m1.vol.unmount() }
        #expect(try bsvc.mountedClientRids().isEmpty)
        await bsvc.stop()
        try VolumeCheckTests.expectClean(tv)
    }

    @Test func aMountThatDoesNotReconnectIsFencedAndAnErroredFenceStopsTheServer() async throws {
        let tv = try TestVolume.make(dataSize: 8 << 30)
        defer { TempDir.remove(tv.dir) }
        let address = ServerAddress()
        let fences = FenceRequests()
        let s = try await TermServer.start(tv, term: 1, fences: fences, reconnectTimeout: .milliseconds(500))
        let svc = s.service
        address.set(s.server.localAddress)
        #expect(svc.recoveryPending().isEmpty)

        let m1 = try await NetMount.make(tv, rid: 0x2001, address: address)
        let m2 = try await NetMount.make(tv, rid: 0x2002, address: address)
        let v = [UInt8](repeating: 0x55, count: 10_000)
        _ = try await m1.create("lost", v)  // m1 holds WRITE on the root directory's lock
        #expect(try await m2.read("lost") == v)  // now READ for both
        try await m1.mkdir("m1-dir")  // WRITE for m1 again, m2 back to NULL
        #expect(svc.grants(rid: 0x2001).values.contains(.write))

        // m1's connection breaks and it never comes back
        await m1.client.shutdown()
        let blocked = Outcome()
        Task {
            do {
                try await m2.mkdir("m2-dir")
                blocked.set(.success(()))
            } catch let e as FSError {
                blocked.set(.failure(e))
            } catch {
                blocked.set(.failure(FSError(5, "\(error)")))
            }
        }
        try await eventually(.seconds(30), "m1 is to be fenced") { fences.request(rid: 0x2001) != nil }
        let req = try #require(fences.request(rid: 0x2001))
        #expect(req.reason == .clientReconnect)
        #expect(req.ipv4 == loopback)
        // its WRITE stays until it is fenced: it may still be writing
        try await Task.sleep(for: .milliseconds(300))
        #expect(blocked.value == nil)
        #expect(svc.grants(rid: 0x2001).values.contains(.write))

        fences.answer(rid: 0x2001, fenced: true)
        try await eventually(.seconds(30), "m2's request is granted") { blocked.value != nil }
        if case .failure(let e) = blocked.value { Issue.record("mkdir after fencing failed: \(e)") }
        #expect(try svc.mountedClientRids() == [0x2002])
        #expect(svc.grants(rid: 0x2001).isEmpty)
        #expect(try await m2.read("lost") == v)

        // a fence that fails stops the server
        let m3 = try await NetMount.make(tv, rid: 0x2003, address: address)
        await m3.client.shutdown()
        try await eventually(.seconds(30), "m3 is to be fenced") { fences.request(rid: 0x2003) != nil }
        fences.answer(rid: 0x2003, fenced: false)
        try await eventually(.seconds(30), "the server stops") { svc.isStopped && !s.fatal.all.isEmpty }
        #expect(s.fatal.all.count == 1)
        #expect(s.fatal.all.first?.contains("0000000000002003") == true)
        #expect(try svc.mountedClientRids() == [0x2002, 0x2003])
        await m2.client.shutdown()
        await svc.stop()
        // consistent as the stopped server left it: m1 reclaimed, m2 and m3 still recorded
        try VolumeCheckTests.expectClean(tv)
    }

    /// Every request the server takes while it is stopping is answered only once its sockets
    /// are closed, so no answer reaches the client, which re-sends the request to the next
    /// server. An answer that got through (ESHUTDOWN, EINVAL on the wire) failed the client's
    /// operation: after a partitioned member's greater term deposed the leader, a create and an
    /// fsync on the deposed leader's own mount failed with EINVAL (PartitionTests).
    @Test func requestsTakenWhileStoppingAreAnsweredOnlyOnceTheSocketsAreClosed() async throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let address = ServerAddress()
        let s = try await TermServer.start(tv, term: 1, fences: FenceRequests())
        address.set(s.server.localAddress)
        let m = try await NetMount.make(tv, rid: 0x4001, address: address)  // a connection to close
        let svc = s.service
        let stopping = Task { await svc.stop() }
        while !svc.isStopped { await Task.yield() }
        let requests: [(NetCommand, [UInt8])] = [
            (.allocInodes, NetU64(16).encoded()), (.getLogTrees, []), (.getRoots, []), (.getLastSeq, []), (.statfs, []),
            (.srchGetCompact, []), (.getLogMerge, []), (.lock, NetLock(key: Key(), oldMode: .null, newMode: .read).encoded()),
        ]
        await withTaskGroup(of: Void.self) { group in
            for (cmd, payload) in requests {
                group.addTask {
                    let r = await svc.handle(rid: 0x4001, cmd: cmd, payload: payload)
                    let closed = svc.mutex.withLock { svc.socketsClosed }
                    #expect(closed, "\(cmd) was answered \(r) before the sockets were closed")
                }
            }
        }
        await stopping.value
        await m.client.shutdown()
    }

    @Test func quorumMembersLeaveOnlyAsTheLastMajority() async throws {
        let tv = try quorumVolume(slots: 3)  // an election needs 2 votes
        defer { TempDir.remove(tv.dir) }
        let address = ServerAddress()
        let s = try await TermServer.start(tv, term: 1, fences: FenceRequests())
        address.set(s.server.localAddress)
        let q1 = try await NetMount.make(tv, rid: 0x3001, address: address, quorum: true)
        let q2 = try await NetMount.make(tv, rid: 0x3002, address: address, quorum: true)
        let other = try await NetMount.make(tv, rid: 0x3003, address: address)
        _ = try await q1.create("q1", [1, 2, 3])

        // a mount that is not a quorum member leaves at once
        try await onThread { try other.vol.unmount() }
        #expect(try s.service.mountedClientRids() == [0x3001, 0x3002])

        // one of the two members alone would leave too few for an election: held
        let first = Outcome()
        first.startUnmount(q1)
        try await Task.sleep(for: .milliseconds(500))
        #expect(first.value == nil)
        #expect(try s.service.mountedClientRids() == [0x3001, 0x3002])

        // the last majority leaves together
        try await onThread { try q2.vol.unmount() }
        try await eventually(.seconds(30), "the held farewell is answered") { first.value != nil }
        if case .failure(let e) = first.value { Issue.record("farewell failed: \(e)") }
        #expect(try s.service.mountedClientRids().isEmpty)
        await s.service.stop()
        try VolumeCheckTests.expectClean(tv)
    }

    /// A member whose connection went away while its farewell was held, and which never came
    /// back (a real client reads its mounted_client item on the device before reconnecting,
    /// finds it gone and stops), is not fenced when the reconnect window runs out: its farewell
    /// was processed, so it is no longer a mounted client. Fencing it would hit whatever mount
    /// stands where it stood.
    @Test func aMemberWhoseFarewellWasProcessedWhileAwayIsNotFenced() async throws {
        let tv = try quorumVolume(slots: 3)  // an election needs 2 votes
        defer { TempDir.remove(tv.dir) }
        let address = ServerAddress()
        let fences = FenceRequests()
        let s = try await TermServer.start(tv, term: 1, fences: fences, reconnectTimeout: .seconds(2))
        address.set(s.server.localAddress)
        let q1 = try await NetMount.make(tv, rid: 0x5001, address: address, quorum: true)
        let q2 = try await NetMount.make(tv, rid: 0x5002, address: address, quorum: true)
        _ = try await q1.create("q1", [1, 2, 3])

        // q1's farewell is held: alone it would leave too few members for an election
        let first = Outcome()
        first.startUnmount(q1)
        try await Task.sleep(for: .milliseconds(500))
        #expect(first.value == nil)
        // its connection goes and it does not come back; then the last majority is complete
        await q1.client.shutdown()
        try await onThread { try q2.vol.unmount() }
        #expect(try s.service.mountedClientRids().isEmpty)

        // the reconnect window of q1's state runs out: nothing to fence
        try await Task.sleep(for: .seconds(3))
        #expect(fences.request(rid: 0x5001) == nil, "\(fences.list())")
        #expect(s.fatal.all.isEmpty)
        await s.service.stop()
        try VolumeCheckTests.expectClean(tv)
    }

    /// The last two members of a new server's cluster say farewell while one of them is still
    /// recovering its locks (a busy mount, slow to answer LOCK_RECOVER): neither is answered
    /// until both can go. Answering the other alone would leave the slow one the only quorum
    /// member, with no server for its farewell ever again.
    @Test func theLastMajorityWaitsForAMemberStillRecoveringItsLocks() async throws {
        let tv = try quorumVolume(slots: 3)  // an election needs 2 votes
        defer { TempDir.remove(tv.dir) }
        // both were mounted under an earlier server
        let old = try tv.openCore()
        try old.addMountedClient(rid: 0x6001, addr: InetAddr(), quorum: true)
        try old.addMountedClient(rid: 0x6002, addr: InetAddr(), quorum: true)
        let s = try await TermServer.start(tv, term: 7, fences: FenceRequests())
        let address = ServerAddress()
        address.set(s.server.localAddress)
        let quick = RecoveringClient(answersAtOnce: true)
        let slow = RecoveringClient(answersAtOnce: false)
        let q1 = quick.start(tv, rid: 0x6001, address: address)
        let q2 = slow.start(tv, rid: 0x6002, address: address)
        try await eventually(.seconds(30), "the slow member is asked for its locks") { slow.held != nil }
        try await eventually(.seconds(30), "the quick member recovered") { s.service.recoveryPending() == [0x6002] }

        let first = FarewellOutcome()
        let second = FarewellOutcome()
        Task { await first.run(q1) }
        Task { await second.run(q2) }
        try await Task.sleep(for: .milliseconds(800))
        #expect(first.value == nil, "the quick member left the slow one alone")
        #expect(second.value == nil)
        #expect(try s.service.mountedClientRids() == [0x6001, 0x6002])

        // the slow member recovers: both go together
        slow.answerHeld()
        try await eventually(.seconds(30), "both farewells are answered") { first.value != nil && second.value != nil }
        #expect(first.value == "ok")
        #expect(second.value == "ok")
        #expect(try s.service.mountedClientRids().isEmpty)
        await s.service.stop()
        try VolumeCheckTests.expectClean(tv)
    }

    @Test func theRecoveryTimerFencesMountsThatNeverCameBackAtTheirStoredAddress() async throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        // two mounts of an earlier server that never come back
        let old = try tv.openCore()
        try old.addMountedClient(rid: 0x4001, addr: InetAddr(ipv4: 0x0a01_0203, port: 7), quorum: false)
        try old.addMountedClient(rid: 0x4002, addr: InetAddr(), quorum: true)
        let fences = FenceRequests()
        let s = try await TermServer.start(tv, term: 5, fences: fences, recoveryTimeout: .milliseconds(300))
        #expect(s.service.recoveryPending() == [0x4001, 0x4002])
        try await eventually(.seconds(30), "both are to be fenced") { fences.list().count == 2 }
        let reqs = fences.list()
        #expect(reqs.map(\.rid) == [0x4001, 0x4002])
        #expect(reqs.allSatisfy { $0.reason == .clientRecovery && $0.isPending })
        #expect(reqs.map(\.ipv4) == [0x0a01_0203, 0])
        // pending until reclaimed, however long the agent takes
        try await Task.sleep(for: .milliseconds(300))
        #expect(s.service.recoveryPending() == [0x4001, 0x4002])
        fences.answer(rid: 0x4002, fenced: true)
        try await eventually(.seconds(30), "0x4002 is reclaimed") { s.service.recoveryPending() == [0x4001] }
        #expect(try s.service.mountedClientRids() == [0x4001])
        fences.answer(rid: 0x4001, fenced: true)
        try await eventually(.seconds(30), "0x4001 is reclaimed") { s.service.recoveryPending().isEmpty }
        #expect(try s.service.mountedClientRids().isEmpty)
        #expect(fences.list().isEmpty)
        #expect(s.fatal.all.isEmpty)
        await s.service.stop()
        // the reclaims are on disk
        let next = try tv.openCore()
        #expect(try next.mountedClients().isEmpty)
        try VolumeCheckTests.expectClean(tv)
    }
}

/// A bare client (no volume) that answers LOCK_RECOVER with no locks, at once or only when
/// told to (a mount too busy to answer).
final class RecoveringClient: NetClientHandler, Sendable {
    let answersAtOnce: Bool
    private let pending = Mutex<NetIncomingRequest?>(nil)

    init(answersAtOnce: Bool) { self.answersAtOnce = answersAtOnce }

    /// The LOCK_RECOVER request held unanswered.
    var held: NetIncomingRequest? { pending.withLock { $0 } }

    func start(_ tv: TestVolume, rid: UInt64, address: ServerAddress) -> NetClient {
        var greeting = NetGreeting(fsid: tv.fsid, fmtVers: 2, rid: rid)
        greeting.flags |= NetGreeting.flagQuorum
        var cfg = NetClient.Configuration(greeting: greeting)
        cfg.reconnectDelayMin = .milliseconds(20)
        cfg.reconnectDelayMax = .milliseconds(200)
        let client = NetClient(configuration: cfg, logger: testLogger("client.\(rid)")) { address.get() }
        client.start(handler: self)
        return client
    }

    func handleRequest(_ request: NetIncomingRequest) async {
        guard request.cmd == .lockRecover else { return request.respond(.failure(NetErrno(22))) }
        if answersAtOnce {
            request.respond(.success(NetLockRecover(locks: []).encoded()))
        } else {
            pending.withLock { $0 = request }
        }
    }

    func answerHeld() {
        pending.withLock { $0 }?.respond(.success(NetLockRecover(locks: []).encoded()))
    }
}

/// The outcome of a bare client's farewell: "ok" or the error.
final class FarewellOutcome: Sendable {
    private let state = Mutex<String?>(nil)
    var value: String? { state.withLock { $0 } }

    func run(_ client: NetClient) async {
        do {
            try await client.farewell()
            state.withLock { $0 = "ok" }
        } catch {
            state.withLock { $0 = "\(error)" }
        }
    }
}
