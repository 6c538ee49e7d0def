import Glibc
import ScoutFS
import ScoutFormat
import ScoutTestSupport
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The mount's commit trigger (`Volume.maybeCommit`): clustered changes share their log tree
/// leaves, so they commit far less often than one commit per ~2 000 dirty items, and what the
/// bigger transactions carry is all there after a remount.
@Suite("Commit trigger of a mount")
struct CommitBoundTests {
    @Test func clusteredCreatesAndScatteredXattrsCommitRarelyAndSurvive() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        var inos: [UInt64] = []
        do {
            let (vol, _) = try tv.mount()
            let root = Format.rootIno
            let d = try vol.makeNode(parent: root, name: b("dir"), mode: UInt32(S_IFDIR) | 0o755, caller: me)
            try vol.sync()
            let before = vol.counters.commits
            // 4 000 creates dirty about 20 000 items: one commit every ~2 000 items before
            for i in 0..<4000 {
                inos.append(try vol.makeNode(parent: d.ino, name: b("f\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me).ino)
            }
            #expect(vol.counters.commits == before, "creates in one directory committed \(vol.counters.commits - before) times")
            // xattrs on files spread over the directory
            var rng = SplitMix64(seed: 5)
            for _ in 0..<3000 {
                let ino = inos[Int(rng.next() % UInt64(inos.count))]
                try vol.setxattr(ino, name: b("user.v"), value: [UInt8](repeating: UInt8(truncatingIfNeeded: ino), count: 300), flags: 0)
            }
            try vol.unmount()
        }
        let (vol, _) = try tv.mount(rid: 0x5678)
        let d = try vol.lookup(parent: Format.rootIno, name: b("dir"))
        for i in stride(from: 0, to: 4000, by: 97) {
            #expect(try vol.lookup(parent: d.ino, name: b("f\(i)")).ino == inos[i])
        }
        var withXattr = 0
        for ino in inos.prefix(500) {
            if let v = try? vol.getxattr(ino, name: b("user.v")) {
                #expect(v == [UInt8](repeating: UInt8(truncatingIfNeeded: ino), count: 300))
                withXattr += 1
            }
        }
        #expect(withXattr > 100)
    }
}
