import Glibc
import ScoutAlloc
import ScoutBTree
import ScoutBlockIO
import ScoutFS
import ScoutFormat
import ScoutServer
import ScoutStorage
import ScoutTestSupport
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

extension TestVolume {
    /// A new server's view of the volume: a fresh transaction on the meta device.
    func openCore() throws -> ServerCore {
        let md = MetaDevice(device: try FileBlockDevice(path: meta, writable: true), fsid: fsid)
        return ServerCore(txn: try MetaTransaction(device: md))
    }
}

@Suite("Server core: start seq and reclaim")
struct RecoveryCoreTests {
    @Test func startSeqRisesAboveEveryLoggedItem() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let core = try tv.openCore()
        let base = core.superBlock.seq
        // two log trees, one with items newer than the committed core seq (a server that
        // died before persisting its counter)
        for (rid, seq) in [(UInt64(5), base + 3), (UInt64(6), base + 4242)] {
            var lt = LogTrees()
            lt.rid = rid
            lt.nr = 1
            lt.maxItemSeq = seq
            var root = core.txn.superBlock.logsRoot
            try BTree(store: core.txn).force(&root, Key(zone: KeyZone.logTrees, first: rid, second: 1), lt.encoded())
            core.txn.superBlock.logsRoot = root
        }
        try core.commit()
        #expect(core.superBlock.seq == base)

        let next = try tv.openCore()
        #expect(next.superBlock.seq == base)
        #expect(try next.maxLoggedItemSeq() == base + 4242)
        try next.startSeq()
        #expect(next.superBlock.seq == base + 4242)
        #expect(next.nextSeq() == base + 4243)
        // never lowers it
        next.setSeqIfGreater(3)
        #expect(next.superBlock.seq == base + 4243)
    }

    @Test func startSeqKeepsAHigherCommittedSeq() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let core = try tv.openCore()
        for _ in 0..<10 { _ = core.nextSeq() }
        try core.commit()
        let next = try tv.openCore()
        let committed = next.superBlock.seq
        #expect(try next.maxLoggedItemSeq() < committed)
        try next.startSeq()
        #expect(next.superBlock.seq == committed)
    }

    @Test func reclaimReturnsAllocatorsFinalizesAndDeletesTheMountLast() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let rid: UInt64 = 0xfe11
        let (vol, link) = try tv.mount(rid: rid)
        let core = link.core
        try core.addMountedClient(rid: rid, addr: InetAddr(ipv4: 0x0a00_0001, port: 9), quorum: false)
        #expect(try core.mountedClient(rid: rid)?.addr == InetAddr(ipv4: 0x0a00_0001, port: 9))
        // the greeting's insert keeps an existing item
        try core.addMountedClient(rid: rid, addr: InetAddr(ipv4: 0x0a00_0002, port: 9), quorum: true)
        #expect(try core.mountedClient(rid: rid)?.addr.ipv4 == 0x0a00_0001)

        let root = Format.rootIno
        let f = try vol.makeNode(parent: root, name: b("kept"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        try vol.open(f.ino, truncate: false)
        let data = [UInt8](repeating: 0x5a, count: 200_000)
        _ = try data.withUnsafeBytes { try vol.write(f.ino, offset: 0, $0) }
        vol.release(f.ino)
        try vol.sync()

        let lt = try #require(try core.currentLogTrees(rid: rid))
        #expect(lt.flags & LogTrees.flagFinalized == 0)
        #expect(lt.metaAvail.totalNr > 1000)
        #expect(lt.dataAvail.totalLen > 1000)
        let statsBefore = try core.statfs()
        let dataAllocBefore = core.superBlock.dataAlloc.totalLen
        let availBefore = core.txn.avail.count
        let metaAllocBefore = core.superBlock.metaAlloc[0].totalLen
        let returnedData = lt.dataAvail.totalLen + lt.dataFreed.totalLen

        try core.reclaim(rid: rid)

        let after = try #require(try core.currentLogTrees(rid: rid))
        #expect(after.nr == lt.nr)
        #expect(after.flags & LogTrees.flagFinalized != 0)
        #expect(after.finalizeSeq > lt.getTransSeq)
        #expect(after.commitTransSeq == after.getTransSeq)
        #expect(after.metaAvail.ref.isNull && after.metaFreed.ref.isNull)
        #expect(after.dataAvail.totalLen == 0 && after.dataFreed.totalLen == 0)
        #expect(after.itemRoot == lt.itemRoot)
        #expect(core.superBlock.dataAlloc.totalLen == dataAllocBefore + returnedData)
        // the mount's unused metadata blocks are the server's now (a few went to the commit)
        #expect(core.txn.avail.count + Int(core.superBlock.metaAlloc[0].totalLen) >= availBefore + Int(metaAllocBefore) + Int(lt.metaAvail.totalNr) - 64)
        let statsAfter = try core.statfs()
        #expect(statsAfter.freeDataBlocks == statsBefore.freeDataBlocks)
        #expect(statsAfter.freeMetaBlocks + 64 >= statsBefore.freeMetaBlocks)
        #expect(try core.mountedClient(rid: rid) == nil)
        #expect(core.txn.committed.mountedClients == core.superBlock.mountedClients)

        // a second run (a next server redoing it) changes nothing
        let sb = core.superBlock
        try core.reclaim(rid: rid)
        #expect(core.superBlock.logsRoot == sb.logsRoot)
        #expect(core.superBlock.mountedClients == sb.mountedClients)
        #expect(core.superBlock.dataAlloc.totalLen == sb.dataAlloc.totalLen)
        #expect(core.superBlock.seq == sb.seq)

        // the finalized tree's items stay readable to another mount
        let (other, _) = try tv.mount(rid: 0xbeef)
        let g = try other.lookup(parent: root, name: b("kept"))
        #expect(try other.read(g.ino, offset: 0, size: 300_000) == data)
    }

    @Test func fragmentedAllocatorsTakeSeveralCommitsAndAPartialReclaimIsFinishedByTheNextServer() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let rid: UInt64 = 0xabc
        let core = try tv.openCore()
        try core.addMountedClient(rid: rid, addr: InetAddr(), quorum: false)
        var lt = try core.getLogTrees(rid: rid)
        // fragment the mount's data allocators: every other block of a run freed back
        let alloc = ExtentAllocator(store: core.txn)
        var taken: [Extent] = []
        for _ in 0..<40 { taken.append(try #require(try alloc.allocate(&lt.dataAvail, count: 1))) }
        for (i, e) in taken.enumerated() {
            if i % 2 == 0 { try alloc.free(&lt.dataAvail, e) } else { try alloc.free(&lt.dataFreed, e) }
        }
        let extents = try alloc.extents(lt.dataAvail).count + alloc.extents(lt.dataFreed).count
        #expect(extents >= 30)
        try core.commitLogTrees(lt)
        let freeBefore = try core.statfs().freeDataBlocks

        // one bounded step lands, then the server dies
        core.reclaimExtentsPerCommit = 4
        #expect(try core.reclaimStep(rid: rid) == false)
        try core.commit()
        let partial = try #require(try core.currentLogTrees(rid: rid))
        #expect(partial.flags & LogTrees.flagFinalized == 0)
        #expect(try core.mountedClient(rid: rid) != nil)

        let next = try tv.openCore()
        next.reclaimExtentsPerCommit = 4
        let commitsBefore = next.txn.committed.hdr.seq
        try next.reclaim(rid: rid)
        #expect(next.txn.committed.hdr.seq - commitsBefore >= UInt64((extents - 4) / 4))
        let done = try #require(try next.currentLogTrees(rid: rid))
        #expect(done.flags & LogTrees.flagFinalized != 0)
        #expect(done.dataAvail.totalLen == 0 && done.dataFreed.totalLen == 0)
        #expect(try next.mountedClient(rid: rid) == nil)
        #expect(try next.statfs().freeDataBlocks == freeBefore)
        // what the volume holds after a restart
        let again = try tv.openCore()
        #expect(try again.mountedClient(rid: rid) == nil)
        #expect(try again.currentLogTrees(rid: rid)?.flags == LogTrees.flagFinalized)
    }
}
