import Glibc
import ScoutFS
import ScoutFormat
import ScoutProtocol
import ScoutServer
import ScoutTestSupport
import Testing

@testable import ScoutDaemon

private let me = Caller(uid: 0, gid: 0, pid: 1)
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The open inode map: its wire form, the server's OR of the mounts' maps, and the deletion
/// decision of a mount (in process, through `LocalLink`).
@Suite("Open inode map and inode deletion across mounts")
struct OpenInoMapTests {
    static func map(group: UInt64, req: UInt64 = 7, _ inos: [UInt64]) -> OpenInoMap {
        var m = OpenInoMap(args: OpenInoMapArgs(groupNr: group, reqID: req))
        for ino in inos { m.insert(ino: ino) }
        return m
    }

    @Test func wireFormIsTheOriginals() throws {
        let m = Self.map(group: 3, req: 9, [3 * 1024, 3 * 1024 + 65, 3 * 1024 + 1023])
        let bytes = m.encoded()
        #expect(bytes.count == 16 + 16 * 8)
        #expect(bytes[0] == 3 && bytes[8] == 9)
        // bit i of the group is bit i % 64 of le64 word i / 64
        #expect(bytes[16] == 1)
        #expect(bytes[16 + 8] == 2)
        #expect(bytes[16 + 15 * 8 + 7] == 0x80)
        #expect(try OpenInoMap.decodePayload(bytes) == m)
        #expect(throws: FormatError.self) { try OpenInoMap.decodePayload(Array(bytes.dropLast())) }
        #expect(m.contains(ino: 3 * 1024 + 65) && !m.contains(ino: 3 * 1024 + 64))
        #expect(OpenInoMap.group(ofIno: 3 * 1024 + 1023) == 3 && OpenInoMap.group(ofIno: 4 * 1024) == 4)
    }

    @Test func theServerORsEveryOtherMountsMap() {
        var g = OpenInoMapGather(groupNr: 2, reqID: 5, asking: 1, mounted: [1, 2, 3])
        #expect(g.targets == [2, 3])
        #expect(g.outcome == nil)
        #expect(g.reply(rid: 2, Self.map(group: 2, req: 5, [2048 + 1])) == nil)
        // a second answer from the same mount, or one from the asker, changes nothing
        #expect(g.reply(rid: 2, Self.map(group: 2, req: 5, [2048 + 9])) == nil)
        #expect(g.reply(rid: 1, Self.map(group: 2, req: 5, [2048 + 9])) == nil)
        let done = g.reply(rid: 3, Self.map(group: 2, req: 5, [2048 + 700]))
        #expect(done == .answered(Self.map(group: 2, req: 5, [2048 + 1, 2048 + 700])))
        // late events after the end change nothing
        #expect(g.timedOut() == nil && g.failed(rid: 3) == nil)
        #expect(g.outcome == done)
    }

    @Test func aLoneMountIsAnsweredAtOnceWithAnEmptyMap() {
        let g = OpenInoMapGather(groupNr: 0, reqID: 1, asking: 4, mounted: [4])
        #expect(g.targets.isEmpty)
        #expect(g.outcome == .answered(Self.map(group: 0, req: 1, [])))
    }

    @Test func aMountThatDoesNotAnswerLeavesTheGroupUnknown() {
        var g = OpenInoMapGather(groupNr: 2, reqID: 5, asking: 1, mounted: [1, 2, 3])
        #expect(g.reply(rid: 2, Self.map(group: 2, req: 5, [])) == nil)
        #expect(g.timedOut() == .unknown(rid: 3))
        var f = OpenInoMapGather(groupNr: 2, reqID: 5, asking: 1, mounted: [1, 2, 3])
        #expect(f.failed(rid: 2) == .unknown(rid: 2))
        #expect(f.reply(rid: 3, Self.map(group: 2, req: 5, [])) == nil)
        // a map for another request or group is no answer
        var w = OpenInoMapGather(groupNr: 2, reqID: 5, asking: 1, mounted: [1, 2])
        #expect(w.reply(rid: 2, Self.map(group: 3, req: 5, [])) == .unknown(rid: 2))
    }

    /// The server's wait resumes its handler once, whether the ending event came before or
    /// after the handler started waiting.
    @Test func theServersWaitResumesOnce() async {
        let early = OpenInoMapWait(OpenInoMapGather(groupNr: 1, reqID: 2, asking: 1, mounted: [1, 2]))
        early.reply(rid: 2, Self.map(group: 1, req: 2, [1025]))
        let first = await withCheckedContinuation { early.start($0) }
        #expect(first == .answered(Self.map(group: 1, req: 2, [1025])))
        let late = OpenInoMapWait(OpenInoMapGather(groupNr: 1, reqID: 3, asking: 1, mounted: [1, 2, 3]))
        Task {
            try? await Task.sleep(for: .milliseconds(20))
            late.reply(rid: 2, Self.map(group: 1, req: 3, []))
            late.timedOut()
            late.failed(rid: 3)
            late.timedOut()
        }
        let second = await withCheckedContinuation { late.start($0) }
        #expect(second == .unknown(rid: 3))
    }

    @Test func aMountsOwnMapHoldsItsLookupsAndOpenHandles() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (vol, _) = try tv.mount()
        let f = try vol.makeNode(parent: Format.rootIno, name: b("f"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        let g = try vol.makeNode(parent: Format.rootIno, name: b("g"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        let group = OpenInoMap.group(ofIno: f.ino)
        #expect(vol.localOpenInoMap(group: group).contains(ino: f.ino))
        try vol.open(g.ino, truncate: false)
        vol.forget(f.ino, 1)
        vol.forget(g.ino, 1)
        let m = vol.localOpenInoMap(group: group)
        #expect(!m.contains(ino: f.ino) && m.contains(ino: g.ino))
        #expect(m.args.groupNr == group)
        #expect(vol.localOpenInoMap(group: group + 1) == OpenInoMap(args: OpenInoMapArgs(groupNr: group + 1)))
        vol.release(g.ino)
        #expect(!vol.localOpenInoMap(group: group).contains(ino: g.ino))
    }

    /// Unlinked here while another mount holds it: kept (data readable) until the other
    /// mount's bit clears, and never deleted while the map cannot be had.
    @Test func anOrphanIsDeletedOnlyOnceNoMountHoldsIt() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (vol, link) = try tv.mount()
        let freeBefore = try vol.totals().freeDataBlocks
        let f = try vol.makeNode(parent: Format.rootIno, name: b("f"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        let payload = [UInt8](repeating: 0x5a, count: 1 << 20)
        try vol.open(f.ino, truncate: false)
        _ = try payload.withUnsafeBytes { try vol.write(f.ino, offset: 0, $0) }
        try vol.sync()
        #expect(try vol.totals().freeDataBlocks < freeBefore)
        link.remoteHeld = [f.ino]
        try vol.remove(parent: Format.rootIno, name: b("f"), dir: false)
        #expect(vol.tryDeleteOrphan(f.ino) == .heldHere)
        vol.forget(f.ino, 1)
        #expect(vol.tryDeleteOrphan(f.ino) == .heldHere)
        #expect(try vol.read(f.ino, offset: 0, size: 16) == Array(payload.prefix(16)))
        let asked = link.omapRequests
        vol.release(f.ino)  // this mount's last reference: it tries, the other mount holds it
        #expect(link.omapRequests > asked)
        #expect(vol.counters.inodeDeleted == 0)
        #expect(try vol.getattr(f.ino).nlink == 0)
        #expect(vol.tryDeleteOrphan(f.ino) == .heldElsewhere)
        // the other mount let go, but its answer cannot be had: still kept
        link.remoteHeld = []
        link.omapFails = true
        #expect(vol.tryDeleteOrphan(f.ino) == .failed)
        #expect(try vol.getattr(f.ino).nlink == 0)
        link.omapFails = false
        #expect(vol.tryDeleteOrphan(f.ino) == .deleted)
        #expect(vol.counters.inodeDeleted == 1)
        #expect(throws: FSError.self) { try vol.getattr(f.ino) }
        #expect(vol.tryDeleteOrphan(f.ino) == .notOrphan)
        try vol.sync()
        #expect(try vol.totals().freeDataBlocks == freeBefore)
    }

    /// The orphan scan sees only orphans merged into the fs root, asks for the open inode
    /// map once per group, and deletes what no mount holds.
    @Test func theOrphanScanDeletesMergedOrphansNoMountHolds() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (vol, link) = try tv.mount()
        var inos: [UInt64] = []
        for i in 0..<3 {
            let f = try vol.makeNode(parent: Format.rootIno, name: b("f\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me)
            inos.append(f.ino)
        }
        link.remoteHeld = Set(inos)
        for i in 0..<3 {
            try vol.remove(parent: Format.rootIno, name: b("f\(i)"), dir: false)
            vol.forget(inos[i], 1)
        }
        try vol.sync()
        // not merged yet: the scan finds nothing
        #expect(vol.scanOrphans() == false)
        #expect(vol.counters.orphanScanItem == 0)
        link.forceFinalize = true
        try vol.sync(force: true)
        link.forceFinalize = false
        var n = 0
        while try vol.mergeLogsOnce(), n < 1000 { n += 1 }
        while try link.core.freeMergedStep() {}
        let asked = link.omapRequests
        #expect(vol.scanOrphans() == true)
        #expect(vol.counters.orphanScanItem == 3)
        #expect(vol.counters.orphanScanOmapSet == 3)
        #expect(link.omapRequests == asked + 1, "one request for the group")
        #expect(vol.counters.inodeDeleted == 0)
        link.remoteHeld = [inos[1]]
        #expect(vol.scanOrphans() == true)
        #expect(vol.counters.inodeDeleted == 2)
        #expect(try vol.getattr(inos[1]).nlink == 0)
        link.remoteHeld = []
        _ = vol.scanOrphans()
        #expect(vol.counters.inodeDeleted == 3)
        for ino in inos { #expect(throws: FSError.self) { try vol.getattr(ino) } }
        #expect(vol.counters.orphanScanError == 0)
    }
}
