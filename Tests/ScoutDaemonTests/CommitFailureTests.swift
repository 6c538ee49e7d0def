import Glibc
@testable import ScoutFS
import ScoutFormat
import ScoutTestSupport
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)

/// A COMMIT_LOG_TREES that the server made durable but whose answer never came back.
@Suite("Commit failures")
struct CommitFailureTests {
    /// The server keeps the first version of the commit (a resend of a commit that landed
    /// succeeds without looking at it). Writing the transaction again after the failure laid
    /// its lists out over the committed ones and put new blocks where the committed tree
    /// still counted them free. The mount now fails instead, and the volume stays consistent.
    @Test func aTransactionIsNeverWrittenAgainAfterItsCommitFailed() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md, link, vol) = try LogMergeTests.mount(tv)
        _ = try vol.makeNode(parent: Format.rootIno, name: Array("a".utf8), mode: UInt32(S_IFREG) | 0o644, caller: me)
        try vol.sync()
        _ = try vol.makeNode(parent: Format.rootIno, name: Array("b".utf8), mode: UInt32(S_IFREG) | 0o644, caller: me)
        link.lostCommitAnswers = 1
        let e = #expect(throws: FSError.self) { try vol.sync() }
        #expect(e?.errno == 110)

        // more changes, and a commit: refused, nothing is written
        let more = #expect(throws: FSError.self) {
            for i in 0..<200 {
                _ = try vol.makeNode(parent: Format.rootIno, name: Array("c\(i)".utf8), mode: UInt32(S_IFREG) | 0o644, caller: me)
            }
            try vol.sync()
        }
        #expect(more?.errno == 110)
        try VolumeCheckTests.expectClean(tv)
        // what the server made durable holds both first commits, as another mount reads it
        let other = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0x2222))
        let names = try LogMergeTests.names(other, Format.rootIno)
        #expect(names.isSuperset(of: ["a", "b"]))
        #expect(!names.contains("c0"))
    }
}
