import CFuseKernel
import Glibc
import ScoutTestSupport
import Testing

/// Runs a command as uid/gid 1234 (no supplementary groups).
private func asUser(_ cmd: String, uid: Int = 1234) -> (Int32, String) {
    MountEnv.sh("setpriv --reuid=\(uid) --regid=\(uid) --clear-groups \(cmd)")
}

/// The mode of `path` itself (symlinks not followed).
private func mode(_ path: String) -> UInt32? {
    var st = stat()
    return lstat(path, &st) == 0 ? UInt32(st.st_mode) : nil
}

private func device(_ path: String) -> dev_t? {
    var st = stat()
    return stat(path, &st) == 0 ? st.st_dev : nil
}

/// `getfacl` without header and effective-rights comments, numeric ids.
private func acl(_ path: String) -> String { MountEnv.sh("getfacl -pcEn \(path)").1 }

extension MountedVolume {
    /// A second mount of the volume at `dir/mnt2`, as a client (no quorum slot).
    func mountClient(_ at: String) throws {
        let (rc, out) = MountEnv.sh(
            "timeout 60 env SCOUTFS_RUN_DIR=\(dir)/run \(MountEnv.binary) mount -o metadev_path=\(dir)/meta \(dataPath) \(at) 2>>\(dir)/log")
        guard rc == 0 else { throw Failure(message: "mount client: \(out)") }
    }
}

/// A second mount of `v` on this node (a client at `dir/mnt2`, mounted and unmounted here): its
/// st_dev is not `first`, and the two mounts share files.
private func expectSecondMountHasItsOwnDevice(_ v: MountedVolume, apartFrom first: dev_t) throws {
    let mnt2 = v.dir + "/mnt2"
    mkdir(mnt2, 0o755)
    try v.mountClient(mnt2)
    defer { MountEnv.sh("umount -l \(mnt2)") }
    #expect(device(mnt2) != nil && device(mnt2) != first)
    try writeFile(mnt2 + "/from2", Array("2".utf8), fsync: true)
    #expect(readFile(v.mnt + "/from2") == Array("2".utf8))
    #expect(MountEnv.sh("timeout 60 umount \(mnt2)").0 == 0)
}

/// Runs `body` on a fresh mounted volume whose directory other users can reach (the ACL tests
/// run commands as uid 1234); unmounts and removes it afterwards.
private func withVolumeOpenToOthers(_ body: (MountedVolume) throws -> Void) throws {
    let v = try MountedVolume.make()
    defer { v.cleanup() }
    chmod(v.dir, 0o755)
    try v.mount()
    defer { _ = v.unmount() }
    try body(v)
}

extension RealMounts {
@Suite("POSIX behaviour of a real mount: ACLs, readdir offsets, st_dev", .serialized, .enabled(if: MountEnv.usable), .timeLimit(.minutes(5)))
struct PosixMountTests {
    @Test func accessACLsAreEnforced() throws {
        try withVolumeOpenToOthers { v in
            let m = v.mnt
            for name in ["open", "closed"] { try writeFile("\(m)/\(name)", Array("data".utf8), fsync: false) }
            chmod("\(m)/open", 0o644)
            chmod("\(m)/closed", 0o600)
            #expect(asUser("cat \(m)/open") == (0, "data"))
            #expect(asUser("cat \(m)/closed").0 != 0)

            // a named entry denies a user that "other" would let read
            #expect(MountEnv.sh("setfacl -m u:1234:--- \(m)/open").0 == 0)
            let denied = asUser("cat \(m)/open")
            #expect(denied.0 != 0 && denied.1.contains("Permission denied"), "\(denied)")
            #expect(asUser("cat \(m)/open", uid: 1235) == (0, "data"))

            // and grants one that the mode bits would refuse; the group bits become the mask
            #expect(MountEnv.sh("setfacl -m u:1234:r \(m)/closed").0 == 0)
            #expect(asUser("cat \(m)/closed") == (0, "data"))
            #expect(mode("\(m)/closed") == UInt32(Glibc.S_IFREG) | 0o640)
            #expect(acl("\(m)/closed") == "user::rw-\nuser:1234:r--\ngroup::---\nmask::r--\nother::---\n\n")

            // chmod narrows the mask: the grant is gone
            #expect(chmod("\(m)/closed", 0o600) == 0)
            #expect(acl("\(m)/closed").contains("mask::---"))
            #expect(asUser("cat \(m)/closed").0 != 0)

            // an ACL the mode can say sets the mode and stores nothing
            #expect(MountEnv.sh("setfacl -b \(m)/closed && setfacl --set u::rw-,g::r--,o::r-- \(m)/closed").0 == 0)
            #expect(mode("\(m)/closed") == UInt32(Glibc.S_IFREG) | 0o644)
            var buf = [UInt8](repeating: 0, count: 256)
            #expect(getxattr("\(m)/closed", "system.posix_acl_access", &buf, buf.count) < 0 && errno == ENODATA)
            #expect(asUser("cat \(m)/closed") == (0, "data"))
        }
    }

    @Test func defaultACLsAreInherited() throws {
        try withVolumeOpenToOthers { v in
            let d = v.mnt + "/d"
            #expect(mkdir(d, 0o755) == 0)
            chmod(d, 0o755)
            #expect(MountEnv.sh("setfacl -d -m u:1234:rwx \(d)").0 == 0)
            let created = MountEnv.sh("umask 022; touch \(d)/f && mkdir \(d)/sub && mkdir -m 0700 \(d)/priv && ln -s f \(d)/l")
            #expect(created.0 == 0, "\(created.1)")

            // the file: the default ACL restricted by 0666, not by the umask
            #expect(mode("\(d)/f") == UInt32(Glibc.S_IFREG) | 0o664)
            #expect(acl("\(d)/f") == "user::rw-\nuser:1234:rwx\ngroup::r-x\nmask::rw-\nother::r--\n\n")
            // the directory also inherits the default ACL
            #expect(mode("\(d)/sub") == UInt32(Glibc.S_IFDIR) | 0o775)
            let sub = acl("\(d)/sub")
            #expect(sub.contains("user:1234:rwx\n") && sub.contains("mask::rwx\n"))
            #expect(sub.contains("default:user:1234:rwx\n") && sub.contains("default:other::r-x\n"))
            #expect(mode("\(d)/l") == UInt32(Glibc.S_IFLNK) | 0o777)
            // root owns them all; the ACL lets 1234 in
            #expect(asUser("touch \(d)/sub/mine").0 == 0)
            #expect(asUser("sh -c 'echo x > \(d)/f'").0 == 0)
            // mkdir -m 0700: the mask is empty, the named entry grants nothing
            #expect(mode("\(d)/priv") == UInt32(Glibc.S_IFDIR) | 0o700)
            #expect(asUser("touch \(d)/priv/mine").0 != 0)
            // inherited ACLs reach the next level down
            #expect(MountEnv.sh("umask 077; touch \(d)/sub/deeper").0 == 0)
            #expect(mode("\(d)/sub/deeper") == UInt32(Glibc.S_IFREG) | 0o664)
            #expect(asUser("cat \(d)/sub/deeper").0 == 0)
        }
    }

    @Test func aclChangesReachOtherMounts() throws {
        try withVolumeOpenToOthers { v in
            let mnt2 = v.dir + "/mnt2"
            mkdir(mnt2, 0o755)
            try v.mountClient(mnt2)
            defer { MountEnv.sh("timeout 60 umount \(mnt2)") }
            try writeFile(v.mnt + "/shared", Array("s".utf8), fsync: true)
            chmod(v.mnt + "/shared", 0o644)
            // the other mount's kernel has read (and cached) the absence of an ACL
            #expect(asUser("cat \(mnt2)/shared") == (0, "s"))
            #expect(MountEnv.sh("setfacl -m u:1234:--- \(v.mnt)/shared").0 == 0)
            #expect(asUser("cat \(mnt2)/shared").0 != 0)
            // and back the other way
            #expect(MountEnv.sh("setfacl -x u:1234 \(mnt2)/shared").0 == 0)
            #expect(asUser("cat \(v.mnt)/shared") == (0, "s"))
        }
    }

    @Test func readdirOffsetsAreDirentPositions() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        try v.mount()
        defer { _ = v.unmount() }
        let d = v.mnt + "/d"
        #expect(mkdir(d, 0o755) == 0)
        // dirent positions 2...11; delete 2 and 5...8
        for i in 0..<10 { try writeFile("\(d)/f0\(i)", [], fsync: false) }
        for i in [0, 3, 4, 5, 6] { #expect(unlink("\(d)/f0\(i)") == 0) }

        guard let dir = opendir(d) else { throw Failure(message: "opendir: errno \(errno)") }
        defer { closedir(dir) }
        var seen: [(String, Int64)] = []
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            seen.append((name, Int64(e.pointee.d_off)))
        }
        let want: [(String, Int64)] = [(".", 1), ("..", 3), ("f01", 4), ("f02", 9), ("f07", 10), ("f08", 11), ("f09", 12)]
        #expect(seen.map(\.0) == want.map(\.0))
        #expect(seen.map(\.1) == want.map(\.1))
        // seeking to a returned offset continues after that entry
        for (i, (name, off)) in seen.enumerated() {
            seekdir(dir, Int(off))
            let next = readdir(dir).map { e in
                withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            }
            #expect(next == (i + 1 < seen.count ? seen[i + 1].0 : nil), "after \(name) at \(off)")
        }
    }

    @Test func stDevSurvivesRemountOfADataFile() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        try TempDir.sparseFile(v.dir + "/other", size: 1 << 20)
        try v.mount()
        guard let first = device(v.mnt) else { throw Failure(message: "stat \(v.mnt)") }
        #expect(v.unmount() == 0)
        // someone takes the first free loop device (the one just freed, if it came from the pool)
        let taken = MountEnv.sh("losetup -f --show \(v.dir)/other").1.trimmingCharacters(in: " \n")
        defer { MountEnv.sh("losetup -d \(taken)") }
        try v.mount()
        #expect(device(v.mnt) == first)

        try expectSecondMountHasItsOwnDevice(v, apartFrom: first)
        #expect(v.unmount() == 0)
        // the loop device made for the volume goes with its last unmount
        let sysfs = "/sys/dev/block/\(major(first)):\(minor(first))"
        #expect(waitFor(seconds: 5) { access(sysfs, F_OK) != 0 } != nil, "\(sysfs) still there")
    }

    @Test func stDevIsTheDataBlockDevice() throws {
        let v = try MountedVolume.make(dataOnLoopDevice: true)
        defer { v.cleanup() }
        var st = stat()
        #expect(stat(v.dataPath, &st) == 0)
        let data = st.st_rdev
        try v.mount()
        #expect(device(v.mnt) == data)
        // a second mount on this node cannot share the device: a loop device over it
        try expectSecondMountHasItsOwnDevice(v, apartFrom: data)
        #expect(v.unmount() == 0)
        try v.mount()
        #expect(device(v.mnt) == data)
        #expect(v.unmount() == 0)
    }
}
}

private func major(_ d: dev_t) -> UInt64 { (UInt64(d) >> 8) & 0xfff | (UInt64(d) >> 32) & ~0xfff }
private func minor(_ d: dev_t) -> UInt64 { UInt64(d) & 0xff | (UInt64(d) >> 12) & ~0xff }
