import CFuseKernel
import Glibc
import ScoutTestSupport
import Testing

extension RealMounts {
    /// The mount handles HANDLE_KILLPRIV_V2: the daemon, not the kernel, clears setuid,
    /// setgid and `security.capability` on write, truncate and chown, as the VFS would.
    @Suite("Privileges killed by the daemon on real mounts")
    struct KillPrivMountTests {
        static func mode(_ path: String) -> UInt32 {
            var st = stat()
            return stat(path, &st) == 0 ? UInt32(st.st_mode) & 0o7777 : 0
        }

        /// A version 2 `security.capability` value granting CAP_NET_BIND_SERVICE (permitted).
        static let capability: [UInt8] = [0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]

        @Test(.enabled(if: MountEnv.usable)) func writesTruncatesAndChownsClearWhatTheVFSClears() throws {
            let v = try MountedVolume.make()
            defer { v.cleanup() }
            try v.mount()
            let m = v.mnt
            #expect(chmod(v.dir, 0o755) == 0 && chmod(m, 0o777) == 0)
            let cases: [(String, UInt32)] = [("both", 0o6777), ("suid", 0o4666), ("sgidnox", 0o2766), ("trunc", 0o6777), ("root", 0o6777)]
            for (name, mode) in cases {
                try writeFile(m + "/" + name, Array("x".utf8), fsync: false)
                #expect(chmod(m + "/" + name, mode) == 0)
                #expect(Self.mode(m + "/" + name) == mode)
            }
            // an unprivileged writer (no CAP_FSETID): appends to three, truncating open of one
            let py = """
                import os
                for n in ['both', 'suid', 'sgidnox']:
                    fd = os.open('\(m)/' + n, os.O_WRONLY | os.O_APPEND); os.write(fd, b'y'); os.close(fd)
                os.close(os.open('\(m)/trunc', os.O_WRONLY | os.O_TRUNC))
                """
            try writeFile(v.dir + "/nonroot.py", Array(py.utf8), fsync: false)
            let nr = MountEnv.sh("setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 \(v.dir)/nonroot.py")
            #expect(nr.0 == 0, "\(nr.1)")
            #expect(Self.mode(m + "/both") == 0o0777)
            #expect(Self.mode(m + "/suid") == 0o0666)
            // setgid without group execute stays (it marks mandatory locking)
            #expect(Self.mode(m + "/sgidnox") == 0o2766)
            #expect(Self.mode(m + "/trunc") == 0o0777)
            #expect(readFile(m + "/both") == Array("xy".utf8))
            // root keeps them on write (CAP_FSETID)
            try writeFile(m + "/root", Array("zz".utf8), fsync: false)
            #expect(Self.mode(m + "/root") == 0o6777)
            // chown clears setuid, and setgid when group-executable, even for root
            #expect(chown(m + "/root", 1, 1) == 0)
            #expect(Self.mode(m + "/root") == 0o0777)

            // a write drops security.capability, whoever writes
            try writeFile(m + "/cap", Array("x".utf8), fsync: false)
            let set = Self.capability.withUnsafeBytes { setxattr(m + "/cap", "security.capability", $0.baseAddress, $0.count, 0) }
            #expect(set == 0, "setxattr errno \(errno)")
            var buf = [UInt8](repeating: 0, count: 64)
            #expect(getxattr(m + "/cap", "security.capability", &buf, buf.count) == Self.capability.count)
            let fd = open(m + "/cap", O_WRONLY | O_APPEND)
            #expect(fd >= 0)
            #expect(write(fd, "y", 1) == 1)
            close(fd)
            #expect(getxattr(m + "/cap", "security.capability", &buf, buf.count) == -1 && errno == ENODATA)
            #expect(readFile(m + "/cap") == Array("xy".utf8))

            // what the daemon stored survives a remount
            #expect(v.unmount() == 0)
            try v.mount()
            #expect(Self.mode(m + "/both") == 0o0777 && Self.mode(m + "/sgidnox") == 0o2766 && Self.mode(m + "/root") == 0o0777)
        }
    }
}
