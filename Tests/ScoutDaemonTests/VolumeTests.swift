import Glibc
import ScoutFS
import ScoutFormat
import ScoutServer
import ScoutTestSupport
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

@Suite("Volume operations through the client/server split")
struct VolumeTests {
    @Test func namespaceDataXattrsSurviveRemount() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let root = Format.rootIno
        var fileIno: UInt64 = 0
        var payload = [UInt8](repeating: 0, count: 300_000)
        var rng = SplitMix64(seed: 1)
        for i in payload.indices { payload[i] = UInt8(truncatingIfNeeded: rng.next()) }
        do {
            let (vol, _) = try tv.mount()
            let d = try vol.makeNode(parent: root, name: b("dir"), mode: UInt32(S_IFDIR) | 0o755, caller: me)
            let f = try vol.makeNode(parent: d.ino, name: b("file"), mode: UInt32(S_IFREG) | 0o644, caller: me)
            fileIno = f.ino
            try vol.open(f.ino, truncate: false)
            let n = try payload.withUnsafeBytes { try vol.write(f.ino, offset: 5000, $0) }
            #expect(n == payload.count)
            vol.release(f.ino)
            _ = try vol.makeNode(parent: root, name: b("link"), mode: UInt32(S_IFLNK) | 0o777, caller: me, symlink: b("dir/file"))
            try vol.setxattr(f.ino, name: b("user.k"), value: b("v1"), flags: 0)
            try vol.setxattr(f.ino, name: b("user.big"), value: [UInt8](repeating: 9, count: 5000), flags: 0)
            _ = try vol.link(f.ino, newParent: root, newName: b("hard"))
            try vol.rename(parent: root, name: b("hard"), newParent: root, newName: b("hard2"), flags: [])
            try vol.unmount()
        }
        let (vol, _) = try tv.mount(rid: 0x5678)
        let d = try vol.lookup(parent: root, name: b("dir"))
        let f = try vol.lookup(parent: d.ino, name: b("file"))
        #expect(f.ino == fileIno)
        #expect(f.size == UInt64(5000 + payload.count))
        #expect(f.nlink == 2)
        let back = try vol.read(f.ino, offset: 0, size: 1 << 20)
        #expect(back.count == 5000 + payload.count)
        #expect(back.prefix(5000).allSatisfy { $0 == 0 })
        #expect(Array(back.suffix(payload.count)) == payload)
        #expect(try vol.readlink(try vol.lookup(parent: root, name: b("link")).ino) == b("dir/file"))
        #expect(try vol.getxattr(f.ino, name: b("user.k")) == b("v1"))
        #expect(try vol.getxattr(f.ino, name: b("user.big")) == [UInt8](repeating: 9, count: 5000))
        #expect(Set(try vol.listxattr(f.ino)) == [b("user.k"), b("user.big")])
        #expect(throws: FSError.self) { try vol.lookup(parent: root, name: b("hard")) }
        #expect(try vol.lookup(parent: root, name: b("hard2")).ino == fileIno)
        var names: [String] = []
        try vol.readdir(root, offset: 0) { n, _, _, _ in names.append(String(decoding: n, as: UTF8.self)); return true }
        #expect(names.sorted() == [".", "..", "dir", "hard2", "link"])
    }

    @Test func unlinkedOpenFileLivesUntilReleaseAndOrphansAreDeleted() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let root = Format.rootIno
        var ino: UInt64 = 0
        do {
            let (vol, _) = try tv.mount()
            let f = try vol.makeNode(parent: root, name: b("f"), mode: UInt32(S_IFREG) | 0o644, caller: me)
            ino = f.ino
            try vol.open(ino, truncate: false)
            _ = try b("hello").withUnsafeBytes { try vol.write(ino, offset: 0, $0) }
            try vol.remove(parent: root, name: b("f"), dir: false)
            // still readable through the open handle
            #expect(try vol.read(ino, offset: 0, size: 10) == b("hello"))
            try vol.sync()
            // crash: no release, no farewell
        }
        let (vol, _) = try tv.mount(rid: 0x9999)
        try vol.deleteOrphans()
        #expect(vol.counters.orphansDeleted == 1)
        #expect(throws: FSError.self) { try vol.getattr(ino) }
    }

    @Test func renameFlagsTruncateHolesAndFallocate() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let root = Format.rootIno
        let (vol, _) = try tv.mount()
        let a = try vol.makeNode(parent: root, name: b("a"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        let c = try vol.makeNode(parent: root, name: b("c"), mode: UInt32(S_IFDIR) | 0o755, caller: me)
        #expect(throws: FSError(FSError.EEXIST)) { try vol.rename(parent: root, name: b("a"), newParent: root, newName: b("c"), flags: .noReplace) }
        try vol.rename(parent: root, name: b("a"), newParent: root, newName: b("c"), flags: .exchange)
        #expect(try vol.lookup(parent: root, name: b("a")).ino == c.ino)
        #expect(try vol.lookup(parent: root, name: b("c")).ino == a.ino)
        _ = try [UInt8](repeating: 0xAB, count: 10000).withUnsafeBytes { try vol.write(a.ino, offset: 0, $0) }
        var s = SetAttr()
        s.size = 5000
        _ = try vol.setattr(a.ino, s)
        s.size = 12000
        _ = try vol.setattr(a.ino, s)
        let data = try vol.read(a.ino, offset: 0, size: 20000)
        #expect(data.count == 12000)
        #expect(data.prefix(5000).allSatisfy { $0 == 0xAB })
        #expect(data.suffix(7000).allSatisfy { $0 == 0 })
        try vol.fallocate(a.ino, mode: FallocMode.punchHole | FallocMode.keepSize, offset: 100, length: 4500)
        let p = try vol.read(a.ino, offset: 0, size: 5000)
        #expect(p.prefix(100).allSatisfy { $0 == 0xAB } && p[100..<4600].allSatisfy { $0 == 0 } && p[4600..<5000].allSatisfy { $0 == 0xAB })
        try vol.fallocate(a.ino, mode: 0, offset: 0, length: 1 << 20)
        #expect(try vol.getattr(a.ino).size == 1 << 20)
        #expect(try vol.read(a.ino, offset: 200_000, size: 10) == [UInt8](repeating: 0, count: 10))
        #expect(try vol.seek(a.ino, offset: 0, whence: 3) == 0)
        #expect(throws: FSError(FSError.ENOTEMPTY)) {
            _ = try vol.makeNode(parent: c.ino, name: b("x"), mode: UInt32(S_IFREG) | 0o644, caller: me)
            try vol.remove(parent: root, name: b("a"), dir: true)
        }
        try vol.unmount()
    }

    @Test func manyEntriesAcrossCommits() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let root = Format.rootIno
        let count = 3000
        do {
            let (vol, _) = try tv.mount()
            for i in 0..<count {
                _ = try vol.makeNode(parent: root, name: b("f\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me)
                if i % 700 == 0 { try vol.sync() }
            }
            for i in stride(from: 0, to: count, by: 3) { try vol.remove(parent: root, name: b("f\(i)"), dir: false) }
            try vol.unmount()
        }
        let (vol, _) = try tv.mount(rid: 77)
        var n = 0
        try vol.readdir(root, offset: 0) { _, _, _, _ in n += 1; return true }
        #expect(n == 2 + count - (count + 2) / 3)
        #expect(try vol.lookup(parent: root, name: b("f1")).nlink == 1)
        #expect(throws: FSError.self) { try vol.lookup(parent: root, name: b("f3")) }
    }
}

@Suite("Volume error paths")
struct VolumeErrorTests {
    @Test func corruptBlockGivesEIONotWrongData() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        var rid: UInt64 = 0x4242
        do {
            let (vol, link) = try tv.mount(rid: rid)
            for i in 0..<50 { _ = try vol.makeNode(parent: Format.rootIno, name: b("f\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me) }
            try vol.unmount()
            rid = link.rid
        }
        // scribble over the log tree's root block
        let (_, link) = try tv.mount(rid: 1)
        guard let lt = try link.core.currentLogTrees(rid: rid) else { throw Failure(message: "no log trees") }
        let fd = open(tv.meta, O_WRONLY)
        var junk = [UInt8](repeating: 0x5a, count: 512)
        _ = pwrite(fd, &junk, junk.count, off_t(lt.itemRoot.ref.blkno) * 65536 + 1000)
        close(fd)
        let (vol, _) = try tv.mount(rid: 2)
        let e = #expect(throws: FSError.self) { _ = try vol.lookup(parent: Format.rootIno, name: b("f1")) }
        #expect(e?.errno == FSError.EIO)
        #expect(e?.message.contains("blkno \(lt.itemRoot.ref.blkno)") == true, "the error names the block: \(String(describing: e))")
    }

    @Test func fullDataDeviceGivesENOSPCAndStaysConsistent() throws {
        let tv = try TestVolume.make(dataSize: 64 << 20)
        defer { TempDir.remove(tv.dir) }
        let (vol, _) = try tv.mount()
        let f = try vol.makeNode(parent: Format.rootIno, name: b("big"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        let chunk = [UInt8](repeating: 1, count: 1 << 20)
        var written: UInt64 = 0
        var sawENOSPC = false
        for i in 0..<200 {
            do {
                _ = try chunk.withUnsafeBytes { try vol.write(f.ino, offset: UInt64(i) << 20, $0) }
                written += 1 << 20
            } catch {
                #expect((error as? FSError)?.errno == FSError.ENOSPC, "\(error)")
                sawENOSPC = true
                break
            }
        }
        #expect(sawENOSPC)
        try vol.sync()
        let g = try vol.makeNode(parent: Format.rootIno, name: b("after"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        #expect(g.size == 0)
        try vol.unmount()
    }
}
