import Glibc
import ScoutFormat
import ScoutProtocol
import Synchronization
import Testing

@testable import ScoutDaemon
@testable import ScoutFS

/// A server that grants every request at once, with increasing write seqs.
final class GrantingLink: ServerLink, Sendable {
    private let seq = Mutex<UInt64>(40)
    func getRoots() throws(FSError) -> ForestRoots { ForestRoots() }
    func getLogTrees() throws(FSError) -> LogTrees { LogTrees() }
    func commitLogTrees(_ lt: LogTrees) throws(FSError) {}
    func allocInodes(count: UInt64) throws(FSError) -> (ino: UInt64, nr: UInt64) { (0, 0) }
    func lock(key: Key, old: LockMode, new: LockMode) throws(FSError) -> UInt64 {
        seq.withLock {
            $0 += 1
            return $0
        }
    }
    func lastSeq() throws(FSError) -> UInt64 { 0 }
    func statfs() throws(FSError) -> ServerTotals { throw FSError(FSError.EIO) }
    func farewell() throws(FSError) {}
    func getLogMerge() throws(FSError) -> LogMergeRequest? { nil }
    func commitLogMerge(_ comp: LogMergeComplete) throws(FSError) {}
    func openInoMap(group: UInt64) throws(FSError) -> OpenInoMap { throw FSError(FSError.EIO) }
}

@Suite("Client side of lock recovery")
struct RecoveryClientTests {
    @Test func batchesPageThroughHeldLocksInKeyOrder() throws {
        let lc = LockClient(link: GrantingLink())
        let ranges = (0..<30).map { LockRange.inode(UInt64($0) * Format.lockInodeGroupNr) }
        for r in ranges.shuffled() {
            try lc.acquire(r, r.start.first % 2048 == 0 ? .write : .read)
            lc.release(r, r.start.first % 2048 == 0 ? .write : .read)
        }
        // a NULL lock is not reported
        lc.invalidate(ranges[29], to: .null)
        var seen: [RecoveredLock] = []
        var key = Key.zero
        for _ in 0..<10 {
            let batch = lc.recoveryBatch(from: key, limit: NetLockRecover.maxLocks)
            #expect(batch.count <= 22)
            guard let last = batch.last else { break }
            seen += batch
            key = last.key.incremented()
        }
        #expect(seen.map(\.key) == ranges.prefix(29).map(\.start))
        for l in seen {
            #expect(l.mode == (l.key.first % 2048 == 0 ? .write : .read))
            #expect(l.writeSeq > 40)
        }
        #expect(Set(seen.map(\.writeSeq)).count == 29)
    }

    @Test func aLockBeingInvalidatedIsReportedInItsOldMode() async throws {
        let lc = LockClient(link: GrantingLink())
        let r = LockRange.inode(5000)
        try lc.acquire(r, .write)  // one user holds it: the invalidation has to wait
        let before = lc.recoveryBatch(from: .zero, limit: 22)
        #expect(before.map(\.mode) == [.write])
        let done = Mutex(false)
        let t = RecoveryThread {
            lc.invalidate(r, to: .null)
            done.withLock { $0 = true }
        }
        t.start()
        // the invalidation is under way but waits for the user
        try await Task.sleep(for: .milliseconds(200))
        #expect(!done.withLock { $0 })
        let during = lc.recoveryBatch(from: .zero, limit: 22)
        #expect(during == before)
        lc.release(r, .write)
        for _ in 0..<300 where !done.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(done.withLock { $0 })
        #expect(lc.recoveryBatch(from: .zero, limit: 22).isEmpty)
    }

    @Test func invalidationsOfOneLockRunInArrivalOrderAndOnlyLower() async throws {
        let lc = LockClient(link: GrantingLink())
        // the first invalidation's cache work is slow: a second one must not overtake it
        let ran = Mutex<[LockMode]>([])
        lc.onInvalidate = { _, to in
            ran.withLock { $0.append(to) }
            if to == .read { usleep(300_000) }
            ran.withLock { $0.append(to) }
        }
        let r = LockRange.inode(7000)
        try lc.acquire(r, .write)
        let finished = Mutex(0)
        RecoveryThread {
            lc.invalidate(r, to: .read)
            finished.withLock { $0 += 1 }
        }.start()
        for _ in 0..<1000 where !lc.isInvalidating(r) { try await Task.sleep(for: .milliseconds(10)) }
        #expect(lc.isInvalidating(r))
        RecoveryThread {
            lc.invalidate(r, to: .null)
            finished.withLock { $0 += 1 }
        }.start()
        try await Task.sleep(for: .milliseconds(100))
        lc.release(r, .write)
        for _ in 0..<1000 where finished.withLock({ $0 }) < 2 { try await Task.sleep(for: .milliseconds(10)) }
        #expect(finished.withLock { $0 } == 2)
        // each ran whole, in arrival order
        #expect(ran.withLock { $0 } == [.read, .read, .null, .null])
        #expect(lc.mode(r) == .null)
        // a stale duplicate to READ of a lock at NULL leaves it at NULL
        lc.invalidate(r, to: .read)
        #expect(lc.mode(r) == .null)
        lc.invalidate(LockRange.inode(90000), to: .read)
        #expect(lc.mode(LockRange.inode(90000)) == .null)
        #expect(LockClient.lowered(.write, to: .read) == .read)
        #expect(LockClient.lowered(.read, to: .read) == .read)
        #expect(LockClient.lowered(.writeOnly, to: .read) == .null)
        #expect(LockClient.lowered(.write, to: .null) == .null)
    }

    @Test func linkAnswersRecoveryFromTheVolumeAndRefusesABadKey() throws {
        let none = ClientLink.recoverBatch(Key(zone: 1).encoded(), volume: nil)
        #expect(try NetLockRecover.decode(none.get()).locks.isEmpty)
        #expect(ClientLink.recoverBatch([1, 2, 3], volume: nil) == .failure(.einval))
    }
}

/// A plain pthread for blocking calls in tests.
final class RecoveryThread: @unchecked Sendable {
    // Invariant: `body` is set at init and only run by the started thread.
    private let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
    func start() {
        let me = Unmanaged.passRetained(self)
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            Unmanaged<RecoveryThread>.fromOpaque(arg!).takeRetainedValue().body()
            return nil
        }, me.toOpaque())
        if rc == 0 { pthread_detach(tid) } else { me.takeRetainedValue().body() }
    }
}

/// A server whose grant answer is held until released: the requester applies it late.
final class SlowGrantLink: ServerLink, Sendable {
    let answered = Mutex(false)
    let release = Mutex(false)
    func getRoots() throws(FSError) -> ForestRoots { ForestRoots() }
    func getLogTrees() throws(FSError) -> LogTrees { LogTrees() }
    func commitLogTrees(_ lt: LogTrees) throws(FSError) {}
    func allocInodes(count: UInt64) throws(FSError) -> (ino: UInt64, nr: UInt64) { (0, 0) }
    func lock(key: Key, old: LockMode, new: LockMode) throws(FSError) -> UInt64 {
        answered.withLock { $0 = true }
        for _ in 0..<500 where !release.withLock({ $0 }) { usleep(10_000) }
        return 7
    }
    func lastSeq() throws(FSError) -> UInt64 { 0 }
    func statfs() throws(FSError) -> ServerTotals { throw FSError(FSError.EIO) }
    func farewell() throws(FSError) {}
    func getLogMerge() throws(FSError) -> LogMergeRequest? { nil }
    func commitLogMerge(_ comp: LogMergeComplete) throws(FSError) {}
    func openInoMap(group: UInt64) throws(FSError) -> OpenInoMap { throw FSError(FSError.EIO) }
}

@Suite("Grant and invalidation order")
struct GrantOrderTests {
    /// The server granted WRITE and then asked for it back; the invalidation is handled before
    /// the requesting thread applied the grant. The lock must end at NULL, not WRITE.
    @Test func anInvalidationOfAGrantNotYetAppliedWaitsForIt() async throws {
        let link = SlowGrantLink()
        let lc = LockClient(link: link)
        let r = LockRange.inode(1)
        let acquirer = Task.detached {
            try lc.acquire(r, .write)
            usleep(50_000)
            lc.release(r, .write)
        }
        for _ in 0..<500 where !link.answered.withLock({ $0 }) { usleep(10_000) }
        let invalidator = Task.detached { lc.invalidate(r, from: .write, to: .null) }
        usleep(100_000)
        link.release.withLock { $0 = true }
        try await acquirer.value
        await invalidator.value
        #expect(lc.mode(r) == .null)
    }
}
