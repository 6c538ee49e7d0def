import Glibc
import ScoutFS
import ScoutFormat
import ScoutTestSupport
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// POSIX ACL xattr values as the kernel writes them (version 2, tag/perm/id entries).
enum ACLValue {
    static let userObj: UInt16 = 0x01, user: UInt16 = 0x02, groupObj: UInt16 = 0x04
    static let group: UInt16 = 0x08, mask: UInt16 = 0x10, other: UInt16 = 0x20
    static let access = Array("system.posix_acl_access".utf8)
    static let defaults = Array("system.posix_acl_default".utf8)

    static func make(_ entries: [(UInt16, UInt16, UInt32?)]) -> [UInt8] {
        var out: [UInt8] = [2, 0, 0, 0]
        for (tag, perm, id) in entries {
            let i = id ?? UInt32.max
            out += [UInt8(tag & 0xff), UInt8(tag >> 8), UInt8(perm & 0xff), UInt8(perm >> 8)]
            out += [UInt8(i & 0xff), UInt8(i >> 8 & 0xff), UInt8(i >> 16 & 0xff), UInt8(i >> 24)]
        }
        return out
    }
}

private func errno(of body: () throws -> Void) -> Int32? {
    do {
        try body()
        return nil
    } catch let e as FSError {
        return e.errno
    } catch {
        return -1
    }
}

@Suite("POSIX behaviour of Volume: ACLs, xattr flags, readdir positions")
struct PosixVolumeTests {
    typealias A = ACLValue

    @Test func setxattrWithCreateAndReplaceIsInvalid() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (vol, _) = try tv.mount()
        let f = try vol.makeNode(parent: Format.rootIno, name: b("f"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        let both = XattrFlags.create | XattrFlags.replace
        #expect(errno { try vol.setxattr(f.ino, name: b("user.x"), value: b("1"), flags: both) } == FSError.EINVAL)
        try vol.setxattr(f.ino, name: b("user.x"), value: b("1"), flags: 0)
        #expect(errno { try vol.setxattr(f.ino, name: b("user.x"), value: b("2"), flags: both) } == FSError.EINVAL)
        #expect(errno { try vol.setxattr(f.ino, name: b("user.x"), value: b("2"), flags: 4) } == FSError.EINVAL)
        #expect(try vol.getxattr(f.ino, name: b("user.x")) == b("1"))
        #expect(errno { try vol.setxattr(f.ino, name: b("user.x"), value: b("2"), flags: XattrFlags.create) } == FSError.EEXIST)
        #expect(errno { try vol.setxattr(f.ino, name: b("user.y"), value: b("2"), flags: XattrFlags.replace) } == FSError.ENODATA)
    }

    @Test func accessACLKeepsTheModeInStep() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (vol, _) = try tv.mount()
        let f = try vol.makeNode(parent: Format.rootIno, name: b("f"), mode: UInt32(S_IFREG) | 0o640, caller: me)
        // a named entry: stored, the group bits show the mask
        let named = A.make([(A.userObj, 6, nil), (A.user, 4, 1234), (A.groupObj, 4, nil), (A.mask, 6, nil), (A.other, 0, nil)])
        try vol.setxattr(f.ino, name: A.access, value: named, flags: 0)
        #expect(try vol.getattr(f.ino).mode == UInt32(S_IFREG) | 0o660)
        #expect(try vol.getxattr(f.ino, name: A.access) == named)
        // chmod rewrites owner, mask and other; the named and owning group entries stay
        var s = SetAttr()
        s.mode = UInt32(S_IFREG) | 0o604
        _ = try vol.setattr(f.ino, s)
        #expect(try vol.getattr(f.ino).mode == UInt32(S_IFREG) | 0o604)
        #expect(
            try vol.getxattr(f.ino, name: A.access)
                == A.make([(A.userObj, 6, nil), (A.user, 4, 1234), (A.groupObj, 4, nil), (A.mask, 0, nil), (A.other, 4, nil)]))
        // an ACL the mode can say: only the mode changes, nothing is stored
        try vol.setxattr(f.ino, name: A.access, value: A.make([(A.userObj, 7, nil), (A.groupObj, 5, nil), (A.other, 1, nil)]), flags: 0)
        #expect(try vol.getattr(f.ino).mode == UInt32(S_IFREG) | 0o751)
        #expect(errno { _ = try vol.getxattr(f.ino, name: A.access) } == FSError.ENODATA)
        // removing an absent ACL succeeds (ext4, tmpfs); other absent names do not
        try vol.removexattr(f.ino, name: A.access)
        #expect(errno { try vol.removexattr(f.ino, name: b("user.none")) } == FSError.ENODATA)
        // setgid goes when the kernel says the setter is outside the group
        var g = SetAttr()
        g.mode = UInt32(S_IFREG) | UInt32(S_ISGID) | 0o750
        _ = try vol.setattr(f.ino, g)
        try vol.setxattr(f.ino, name: A.access, value: named, flags: 0, killSGID: true)
        #expect(try vol.getattr(f.ino).mode == UInt32(S_IFREG) | 0o660)
        // invalid ACLs
        let bad: [[UInt8]] = [
            A.make([(A.userObj, 6, nil), (A.user, 4, 1234), (A.groupObj, 4, nil), (A.other, 0, nil)]),  // no mask
            A.make([(A.groupObj, 4, nil), (A.userObj, 6, nil), (A.other, 0, nil)]),  // order
            A.make([(A.userObj, 6, nil), (A.groupObj, 4, nil)]),  // no other
            A.make([(A.userObj, 8, nil), (A.groupObj, 4, nil), (A.other, 0, nil)]),  // perm
            A.make([(A.userObj, 6, nil), (0x40, 4, nil), (A.groupObj, 4, nil), (A.other, 0, nil)]),  // tag
            [1, 0, 0, 0] + Array(A.make([(A.userObj, 6, nil), (A.groupObj, 4, nil), (A.other, 0, nil)]).dropFirst(4)),  // version
            Array(named.dropLast()),  // size
        ]
        for v in bad {
            #expect(errno { try vol.setxattr(f.ino, name: A.access, value: v, flags: 0) } == FSError.EINVAL, "\(v)")
        }
        // default ACLs belong to directories
        #expect(errno { try vol.setxattr(f.ino, name: A.defaults, value: named, flags: 0) } == FSError.EACCES)
    }

    @Test func newInodesInheritTheDefaultACLWithoutUmask() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (vol, _) = try tv.mount()
        let root = Format.rootIno
        let d = try vol.makeNode(parent: root, name: b("d"), mode: UInt32(S_IFDIR) | 0o755, caller: me)
        let def = A.make([(A.userObj, 7, nil), (A.user, 7, 1234), (A.groupObj, 5, nil), (A.mask, 7, nil), (A.other, 5, nil)])
        try vol.setxattr(d.ino, name: A.defaults, value: def, flags: 0)

        let f = try vol.makeNode(parent: d.ino, name: b("f"), mode: UInt32(S_IFREG) | 0o666, umask: 0o022, caller: me)
        #expect(f.mode == UInt32(S_IFREG) | 0o664)
        #expect(
            try vol.getxattr(f.ino, name: A.access)
                == A.make([(A.userObj, 6, nil), (A.user, 7, 1234), (A.groupObj, 5, nil), (A.mask, 6, nil), (A.other, 4, nil)]))
        #expect(errno { _ = try vol.getxattr(f.ino, name: A.defaults) } == FSError.ENODATA)

        let sub = try vol.makeNode(parent: d.ino, name: b("sub"), mode: UInt32(S_IFDIR) | 0o777, umask: 0o022, caller: me)
        #expect(sub.mode == UInt32(S_IFDIR) | 0o775)
        #expect(try vol.getxattr(sub.ino, name: A.access) == def)
        #expect(try vol.getxattr(sub.ino, name: A.defaults) == def)

        let fifo = try vol.makeNode(parent: d.ino, name: b("fifo"), mode: UInt32(S_IFIFO) | 0o600, umask: 0o022, caller: me)
        #expect(fifo.mode == UInt32(S_IFIFO) | 0o600)
        #expect(
            try vol.getxattr(fifo.ino, name: A.access)
                == A.make([(A.userObj, 6, nil), (A.user, 7, 1234), (A.groupObj, 5, nil), (A.mask, 0, nil), (A.other, 0, nil)]))

        let tmp = try vol.tmpfile(parent: d.ino, mode: UInt32(S_IFREG) | 0o640, umask: 0o077, caller: me)
        #expect(tmp.mode == UInt32(S_IFREG) | 0o640)
        #expect(try vol.listxattr(tmp.ino) == [A.access])

        // symlinks get no ACL
        let l = try vol.makeNode(parent: d.ino, name: b("l"), mode: UInt32(S_IFLNK) | 0o777, umask: 0o022, caller: me, symlink: b("f"))
        #expect(l.mode == UInt32(S_IFLNK) | 0o777)
        #expect(try vol.listxattr(l.ino).isEmpty)

        // a default ACL of base entries only: the mode says it all, nothing stored, no umask
        let d2 = try vol.makeNode(parent: root, name: b("d2"), mode: UInt32(S_IFDIR) | 0o755, caller: me)
        try vol.setxattr(d2.ino, name: A.defaults, value: A.make([(A.userObj, 7, nil), (A.groupObj, 5, nil), (A.other, 0, nil)]), flags: 0)
        let g = try vol.makeNode(parent: d2.ino, name: b("g"), mode: UInt32(S_IFREG) | 0o666, umask: 0o077, caller: me)
        #expect(g.mode == UInt32(S_IFREG) | 0o640)
        #expect(try vol.listxattr(g.ino).isEmpty)

        // no default ACL: the umask
        let p = try vol.makeNode(parent: root, name: b("p"), mode: UInt32(S_IFREG) | 0o666, umask: 0o022, caller: me)
        #expect(p.mode == UInt32(S_IFREG) | 0o644)
        #expect(try vol.listxattr(p.ino).isEmpty)

        // all of it survives a remount
        try vol.unmount()
        let (again, _) = try tv.mount(rid: 0x4321)
        #expect(try again.getxattr(sub.ino, name: A.defaults) == def)
        #expect(try again.getattr(f.ino).mode == UInt32(S_IFREG) | 0o664)
    }

    @Test func readdirOffsetsAreDirentPositions() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (vol, _) = try tv.mount()
        let d = try vol.makeNode(parent: Format.rootIno, name: b("d"), mode: UInt32(S_IFDIR) | 0o755, caller: me)
        // positions 2...11, then gaps at 2 and 5...8
        for i in 0..<10 { _ = try vol.makeNode(parent: d.ino, name: b("f0\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me) }
        for i in [0, 3, 4, 5, 6] { try vol.remove(parent: d.ino, name: b("f0\(i)"), dir: false) }

        func list(from offset: UInt64, limit: Int = .max) throws -> [(String, UInt64)] {
            var out: [(String, UInt64)] = []
            try vol.readdir(d.ino, offset: offset) { name, _, _, next in
                guard out.count < limit else { return false }
                out.append((String(decoding: name, as: UTF8.self), next))
                return true
            }
            return out
        }
        let all = try list(from: 0)
        let want: [(String, UInt64)] = [(".", 1), ("..", 3), ("f01", 4), ("f02", 9), ("f07", 10), ("f08", 11), ("f09", 12)]
        #expect(all.map(\.0) == want.map(\.0))
        #expect(all.map(\.1) == want.map(\.1))
        // every offset handed out continues with the entry after it
        for (i, (_, next)) in all.enumerated() {
            #expect(try list(from: next).map(\.0) == all[(i + 1)...].map(\.0), "from \(next)")
        }
        // a reply that fills up resumes where the kernel stopped, with nothing lost or repeated
        var names: [String] = []
        var offset: UInt64 = 0
        while true {
            let part = try list(from: offset, limit: 2)
            if part.isEmpty { break }
            names += part.map(\.0)
            offset = part.last!.1
        }
        #expect(names == want.map(\.0))
        // an empty directory: ".." ends at 2
        let e = try vol.makeNode(parent: Format.rootIno, name: b("e"), mode: UInt32(S_IFDIR) | 0o755, caller: me)
        var empty: [UInt64] = []
        try vol.readdir(e.ino, offset: 0) { _, _, _, next in
            empty.append(next)
            return true
        }
        #expect(empty == [1, 2])
    }
}
