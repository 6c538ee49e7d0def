import ScoutFormat
import ScoutServer
import Testing

private let k1 = Key(zone: KeyZone.fs, first: 0)
private let k2 = Key(zone: KeyZone.fs, first: 1024)
private let k3 = Key(zone: KeyZone.fs, first: 2048)

/// A core seq for the pure lock server.
private final class SeqSource {
    var seq: UInt64
    init(_ s: UInt64) { seq = s }
    func next() -> UInt64 {
        seq += 1
        return seq
    }
}

@Suite("Lock server recovery (pure state)")
struct LockServerRecoveryTests {
    @Test func requestsQueueUntilRecoveryThenSeeRecoveredGrants() throws {
        let seq = SeqSource(100)
        var s = LockServerState(recovering: true)
        // a resent request arrives before anyone replayed its locks: nothing is granted
        let v1 = s.request(rid: 1, key: k1, old: .null, new: .write, nextSeq: seq.next)
        #expect(v1.isEmpty)
        let v2 = s.request(rid: 3, key: k2, old: .null, new: .read, nextSeq: seq.next)
        #expect(v2.isEmpty)
        #expect(s.waitingCount == 2)
        try s.recover(rid: 2, key: k1, mode: .write)
        try s.recover(rid: 2, key: k2, mode: .read)
        try s.recover(rid: 1, key: k3, mode: .writeOnly)
        #expect(s.grants(rid: 2) == [k1: .write, k2: .read])
        #expect(s.grants(rid: 1) == [k3: .writeOnly])
        // recovery done: the READ shares rid 2's READ, the WRITE needs rid 2 to drop its WRITE
        let acts = s.finishRecovery(nextSeq: seq.next)
        #expect(acts == [
            .invalidate(rid: 2, key: k1, from: .write, to: .null),
            .grant(rid: 3, key: k2, old: .null, new: .read, writeSeq: 0),
        ])
        #expect(!s.recovering)
        let v3 = s.finishRecovery(nextSeq: seq.next)
        #expect(v3.isEmpty)
        let after = s.invalidated(rid: 2, key: k1, mode: .null, nextSeq: seq.next)
        #expect(after == [.grant(rid: 1, key: k1, old: .null, new: .write, writeSeq: 101)])
        #expect(s.grants(rid: 2) == [k2: .read])
    }

    @Test func queuedRequestsKeepArrivalOrderAcrossRecovery() {
        let seq = SeqSource(7)
        var s = LockServerState(recovering: true)
        _ = s.request(rid: 5, key: k1, old: .null, new: .write, nextSeq: seq.next)
        _ = s.request(rid: 6, key: k1, old: .null, new: .read, nextSeq: seq.next)
        let acts = s.finishRecovery(nextSeq: seq.next)
        // rid 5 first (WRITE, a new write seq), then rid 6 conflicts and invalidates it to READ
        #expect(acts == [
            .grant(rid: 5, key: k1, old: .null, new: .write, writeSeq: 8),
            .invalidate(rid: 5, key: k1, from: .write, to: .read),
        ])
        let last = s.invalidated(rid: 5, key: k1, mode: .read, nextSeq: seq.next)
        #expect(last == [
            .grant(rid: 6, key: k1, old: .null, new: .read, writeSeq: 0)
        ])
    }

    @Test func duplicateReplayIsRefusedAndNullIsNotRecorded() throws {
        var s = LockServerState(recovering: true)
        try s.recover(rid: 1, key: k1, mode: .read)
        #expect(throws: LockServerState.RecoverError.duplicate(rid: 1, key: k1)) {
            try s.recover(rid: 1, key: k1, mode: .write)
        }
        try s.recover(rid: 1, key: k2, mode: .null)
        #expect(s.grants(rid: 1) == [k1: .read])
        // another mount may hold the same READ
        try s.recover(rid: 2, key: k1, mode: .read)
        #expect(s.grants(rid: 2) == [k1: .read])
    }

    @Test func lostMountKeepsItsGrantsUntilRemoved() {
        let seq = SeqSource(0)
        var s = LockServerState()
        _ = s.request(rid: 1, key: k1, old: .null, new: .write, nextSeq: seq.next)
        // rid 1 is lost; rid 2's request sends an invalidation that is never answered
        let acts = s.request(rid: 2, key: k1, old: .null, new: .write, nextSeq: seq.next)
        #expect(acts == [.invalidate(rid: 1, key: k1, from: .write, to: .null)])
        // a third request waits too, and no second invalidation goes out
        let v4 = s.request(rid: 3, key: k1, old: .null, new: .read, nextSeq: seq.next)
        #expect(v4.isEmpty)
        #expect(s.grants(rid: 1) == [k1: .write])
        // fenced and reclaimed: its grant goes, the waiters proceed in order
        let after = s.removeClient(rid: 1, nextSeq: seq.next)
        #expect(after == [
            .grant(rid: 2, key: k1, old: .null, new: .write, writeSeq: 2),
            .invalidate(rid: 2, key: k1, from: .write, to: .read),
        ])
        #expect(s.grants(rid: 1).isEmpty)
        // an answer to an invalidation that is no longer outstanding changes nothing
        let v5 = s.invalidated(rid: 1, key: k1, mode: .null, nextSeq: seq.next)
        #expect(v5.isEmpty)
        #expect(s.grants(rid: 2) == [k1: .write])
    }

    @Test func removingAMountDuringRecoveryGrantsNothingYet() throws {
        let seq = SeqSource(0)
        var s = LockServerState(recovering: true)
        try s.recover(rid: 1, key: k1, mode: .write)
        _ = s.request(rid: 2, key: k1, old: .null, new: .write, nextSeq: seq.next)
        let v6 = s.removeClient(rid: 1, nextSeq: seq.next)
        #expect(v6.isEmpty)
        let v7 = s.finishRecovery(nextSeq: seq.next)
        #expect(v7 == [.grant(rid: 2, key: k1, old: .null, new: .write, writeSeq: 1)])
    }
}

@Suite("Client recovery tracking")
struct ClientRecoveryTests {
    @Test func partsFinishIndependentlyAndTheEndIsReportedOnce() {
        var r = ClientRecovery(pendingRids: [9, 4])
        #expect(r.pendingRids() == [4, 9])
        #expect(!r.isFinished)
        let v8 = r.finish(rid: 4, .greeting)
        #expect(!v8)
        #expect(r.isPending(rid: 4, .locks))
        #expect(!r.isPending(rid: 4, .greeting))
        #expect(r.pendingRids(.greeting) == [9])
        let v9 = r.finish(rid: 4, .locks)
        #expect(!v9)
        #expect(!r.isPending(rid: 4))
        // unknown rids and finished parts change nothing
        let v10 = r.finish(rid: 77, .all)
        #expect(!v10)
        let v11 = r.finish(rid: 4, .all)
        #expect(!v11)
        let v12 = r.finish(rid: 9, .all)
        #expect(v12)
        #expect(r.isFinished)
        let v13 = r.finish(rid: 9, .all)
        #expect(!v13)
        r.prepare(rid: 3, .locks)
        #expect(r.isPending(rid: 3, .locks) && !r.isPending(rid: 3, .greeting))
        let v14 = r.finish(rid: 3, .locks)
        #expect(v14)
    }

    @Test func nothingPendingIsFinished() {
        #expect(ClientRecovery().isFinished)
        #expect(ClientRecovery(pendingRids: []).pendingRids().isEmpty)
    }
}
