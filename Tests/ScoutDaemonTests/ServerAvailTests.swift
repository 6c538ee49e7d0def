import Glibc
import ScoutFS
import ScoutFormat
import ScoutServer
import ScoutStorage
import ScoutTestSupport
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)

/// The server's own avail list, which every server commit lays out whole.
@Suite("Server avail list")
struct ServerAvailTests {
    /// Every block a mount frees comes back through the server's freed list into its avail
    /// list. That list grew with everything ever freed, so each server commit wrote more list
    /// blocks the longer the volume lived (creates slowed as a volume filled). Past the high
    /// mark the excess now goes back into meta_alloc: the list stays bounded, no block is lost
    /// or freed twice.
    @Test func theServersAvailListStaysBoundedAsMountsFreeBlocks() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, _, _, vol) = try LogMergeTests.mount(tv)
        core.serverAvailLow = 32
        core.serverAvailHigh = 256
        let free0 = try core.statfs().freeMetaBlocks
        var most: UInt64 = 0
        for round in 0..<40 {
            for i in 0..<200 {
                _ = try vol.makeNode(parent: Format.rootIno, name: Array("r\(round)-\(i)".utf8), mode: UInt32(S_IFREG) | 0o644, caller: me)
            }
            try vol.sync()
            most = max(most, core.txn.committed.serverMetaAvail[0].totalNr)
        }
        // the commits copied and freed far more blocks than the mark
        #expect(core.counters.metaAvailTrimmed > UInt64(core.serverAvailHigh) * 2, "\(core.counters.metaAvailTrimmed)")
        #expect(most <= UInt64(core.serverAvailHigh) + 64, "the committed avail list held \(most) blocks")
        #expect(try core.statfs().freeMetaBlocks < free0)
        try VolumeCheckTests.expectClean(tv)
    }
}
