import CFuseKernel
import Glibc
import ScoutTestSupport
import Testing

/// `.srch.` xattrs and search-xattrs on a real two-mount cluster.
extension RealMounts {
@Suite(.serialized, .enabled(if: MountEnv.usable, "needs root, /dev/fuse and a built scoutfs"))
struct SrchMountTests {
    /// The original utility built by hand, when it is there.
    static let original = "/work/tools/scoutfs-orig/utils/src/scoutfs"

    static func lines(_ s: String) -> [UInt64] { s.split(separator: "\n").compactMap { UInt64($0) } }

    /// SCOUT_SRCH_FILES tagged files (default 10⁴) spread over two mounts, with forced srch log
    /// rotations along the way and every fourth tag removed again: `search-xattrs` on either
    /// mount prints exactly the holders, in order, before and after a remount, and the
    /// original utility prints the same (with log files compacted into sorted ones by then); `check` is clean and the original's `print` reads
    /// the volume.
    @Test func searchFindsEveryTaggedInodeOnTwoMountsThroughRotationsAndARemount() throws {
        let total = getenv("SCOUT_SRCH_FILES").flatMap { Int(String(cString: $0)) } ?? 10_000
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1])
        guard let leader = c.leader(among: [0, 1]) else {
            Issue.record("no leader: \(c.logs())")
            return
        }
        let name = "scoutfs.srch.archive_id"
        var holders: [UInt64] = []
        for slot in 0..<2 {
            let d = "\(c.mnt(slot))/d\(slot)"
            #expect(mkdir(d, 0o755) == 0)
            var inos: [UInt64] = []
            for i in 0..<(total / 2) {
                let p = "\(d)/f\(i)"
                let fd = open(p, O_CREAT | O_WRONLY, 0o644)
                #expect(fd >= 0)
                var st = stat()
                fstat(fd, &st)
                close(fd)
                inos.append(UInt64(st.st_ino))
                let v = Array("\(i)".utf8)
                #expect(setxattr(p, name, v, v.count, 0) == 0, "setxattr \(p): \(errno)")
                if i % 2500 == 2499 {
                    #expect(MountEnv.sh("\(c.bin) trigger -p \(c.mnt(leader)) srch_force_log_rotate").0 == 0)
                    #expect(MountEnv.sh("\(c.bin) sync -p \(c.mnt(slot))").0 == 0)
                }
            }
            for (i, ino) in inos.enumerated() {
                if i % 4 == 0 {
                    #expect(removexattr("\(d)/f\(i)", name) == 0)
                } else {
                    holders.append(ino)
                }
            }
            #expect(MountEnv.sh("\(c.bin) sync -p \(c.mnt(slot))").0 == 0)
        }
        holders.sort()
        // the mounts' workers compact the rotated log files (four at a time) in the background
        if total >= 10_000 {
            let compacted = waitFor(seconds: 60) { (0..<2).contains { (LogMergeMountTests.counter(c, $0, "srch_compact") ?? 0) >= 2 } }
            #expect(compacted != nil, "no srch compaction: \(c.logs())")
            let (prc, printed) = MountEnv.sh("\(c.bin) print \(c.meta(0)) | grep -cE '^    32\\.0\\.8\\.'")
            #expect(prc == 0 && (Int(printed.trimmingCharacters(in: " \n")) ?? 0) >= 1, "no sorted srch file in print: \(printed)")
        }
        func verify(_ when: String) {
            for slot in 0..<2 {
                let (rc, out) = MountEnv.sh("\(c.bin) search-xattrs -p \(c.mnt(slot)) \(name)")
                #expect(rc == 0, "\(when): \(out)")
                let found = Self.lines(out)
                #expect(found == holders, "\(when) mount \(slot): \(found.count) found, \(holders.count) hold it")
                if access(Self.original, X_OK) == 0 {
                    let (orc, oout) = MountEnv.sh("\(Self.original) search-xattrs -p \(c.mnt(slot)) \(name)")
                    #expect(orc == 0 && oout == out, "\(when): the original prints \(Self.lines(oout).count) inodes")
                }
            }
            #expect(MountEnv.sh("\(c.bin) search-xattrs -p \(c.mnt(0)) scoutfs.srch.none").1.isEmpty)
            // errors as the original reports them: a name without the srch tag, no name
            if access(Self.original, X_OK) == 0 {
                for args in ["user.srch.x", "scoutfs.hide.x", ""] {
                    let ours = MountEnv.sh("\(c.bin) search-xattrs -p \(c.mnt(0)) \(args) 2>&1")
                    let theirs = MountEnv.sh("\(Self.original) search-xattrs -p \(c.mnt(0)) \(args) 2>&1")
                    #expect(ours.0 == theirs.0, "'\(args)': exit \(ours.0), the original's \(theirs.0)")
                    if !args.isEmpty { #expect(ours.1 == theirs.1, "'\(args)': \(ours.1) vs the original's \(theirs.1)") }
                }
            }
        }
        verify("before the remount")
        #expect(c.unmount([0, 1]) == 0, "\(c.logs())")
        try c.mount([0, 1])
        verify("after the remount")
        #expect(c.unmount([0, 1]) == 0, "\(c.logs())")
        let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
        #expect(check.0 == 0, "check: \(check.1)")
        if access(Self.original, X_OK) == 0 {
            let (prc, printed) = MountEnv.sh("\(Self.original) print \(c.dir)/meta > \(c.dir)/orig.print 2>&1; echo $?; grep -c 'srch' \(c.dir)/orig.print")
            #expect(prc == 0 && printed.hasPrefix("0\n"), "the original's print: \(printed)")
        }
    }
}
}
