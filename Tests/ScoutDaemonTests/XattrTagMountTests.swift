import CFuseKernel
import Glibc
import ScoutAgent
import ScoutIoctl
import ScoutTestSupport
import Testing

extension RealMounts {
    /// The tagged-xattr commands on a real mount, against the original utility (built by
    /// hand) on the same mount when it is there.
    @Suite("Tagged xattr commands on real mounts")
    struct XattrTagMountTests {
        static let original = "/work/tools/scoutfs-orig/utils/src/scoutfs"

        static func set(_ path: String, _ name: String, _ value: String) -> Int32 {
            setxattr(path, name, value, value.utf8.count, 0) == 0 ? 0 : errno
        }

        @Test(.enabled(if: MountEnv.usable)) func commandsPrintWhatTheOriginalPrints() throws {
            let v = try MountedVolume.make()
            defer { v.cleanup() }
            try v.mount()
            let m = v.mnt
            var want: [String: (Int64, Int64)] = [:]
            for i in 0..<12 {
                let f = m + "/f\(i)"
                try writeFile(f, [UInt8(i)], fsync: false)
                #expect(Self.set(f, "scoutfs.totl.size.1.\(i % 3).0", "\(i * 10)") == 0)
                #expect(Self.set(f, "scoutfs.hide.totl.x.7.7.7", "0x\(String(i, radix: 16))") == 0)
                #expect(Self.set(f, "scoutfs.indx.age.3.\(100 - i)", "") == 0)
                #expect(Self.set(f, "scoutfs.hide.note\(i)", "n") == 0)
                #expect(Self.set(f, "user.u", "1") == 0)
                want["1.\(i % 3).0", default: (0, 0)].0 += Int64(i * 10)
                want["1.\(i % 3).0", default: (0, 0)].1 += 1
                want["7.7.7", default: (0, 0)].0 += Int64(i)
                want["7.7.7", default: (0, 0)].1 += 1
            }
            // changed and removed
            #expect(Self.set(m + "/f0", "scoutfs.totl.size.1.0.0", "1000") == 0)
            want["1.0.0"]!.0 += 1000
            #expect(removexattr(m + "/f1", "scoutfs.totl.size.1.1.0") == 0)
            want["1.1.0"]!.0 -= 10
            want["1.1.0"]!.1 -= 1
            // the original's errors
            #expect(Self.set(m + "/f0", "scoutfs.bogus.name", "1") == EINVAL)
            #expect(Self.set(m + "/f0", "scoutfs.totl.size.1.2", "1") == EINVAL)
            #expect(Self.set(m + "/f0", "scoutfs.totl.size.1.2.3", "x") == EINVAL)
            #expect(Self.set(m + "/f0", "scoutfs.indx.a.300.1", "") == EINVAL)
            // tagged names need CAP_SYS_ADMIN (a user who may write the file gets EPERM)
            #expect(chmod(m + "/f3", 0o666) == 0 && chmod(v.dir, 0o755) == 0)
            let py = "import os,errno\nfor n in ['scoutfs.hide.u', 'scoutfs.totl.u.1.1.1', 'user.ok']:\n"
                + "    try:\n        os.setxattr('\(m)/f3', n, b'1'); print(n, 0)\n    except OSError as e: print(n, e.errno)\n"
            try writeFile(v.dir + "/nonroot.py", Array(py.utf8), fsync: false)
            let nr = MountEnv.sh("setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 - < \(v.dir)/nonroot.py")
            #expect(nr.1 == "scoutfs.hide.u 1\nscoutfs.totl.u.1.1.1 1\nuser.ok 0\n", "\(nr.1)")
            // hidden names are not listed
            var buf = [CChar](repeating: 0, count: 4096)
            let n = listxattr(m + "/f2", &buf, buf.count)
            let listed = buf[0..<max(n, 0)].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
            #expect(Set(listed) == ["scoutfs.totl.size.1.2.0", "scoutfs.indx.age.3.98", "user.u"])
            #expect(MountEnv.sh("SCOUTFS_RUN_DIR=\(v.dir)/run \(MountEnv.binary) sync -p \(m)").0 == 0)

            let ours = MountEnv.sh("\(MountEnv.binary) read-xattr-totals -p \(m)")
            #expect(ours.0 == 0)
            let wantLines = want.filter { $0.value != (0, 0) }.map { "\($0.key) = \($0.value.0), \($0.value.1)" }.sorted()
            #expect(ours.1.split(separator: "\n").map(String.init).sorted() == wantLines, "\(ours.1)")
            let idx = MountEnv.sh("\(MountEnv.binary) read-xattr-index -p \(m)")
            #expect(idx.1.split(separator: "\n").count == 12 && idx.1.hasPrefix("3.89 = "), "\(idx.1)")
            let hid = MountEnv.sh("\(MountEnv.binary) list-hidden-xattrs \(m)/f5")
            #expect(Set(hid.1.split(separator: "\n").map(String.init)) == ["scoutfs.hide.totl.x.7.7.7", "scoutfs.hide.note5"], "\(hid.1)")

            // the same commands (and error cases) through the original utility
            if access(Self.original, X_OK) == 0 {
                let commands = [
                    "read-xattr-totals -p \(m)", "read-xattr-index -p \(m)", "read-xattr-index -p \(m) 3.90.0 3.95.-1",
                    "read-xattr-index -p \(m) 3.95.0 3.90.0", "read-xattr-index -p \(m) 999.1.1", "read-xattr-index -p \(m) x",
                    "read-xattr-index -p \(m) 3.x 3.91.-1", "read-xattr-index -p \(m) 0x3.0130.0 3.0x5a.-1",
                    "list-hidden-xattrs \(m)/f5", "list-hidden-xattrs \(m)/f0", "list-hidden-xattrs \(m)/nope",
                    "list-hidden-xattrs", "list-hidden-xattrs a b", "read-xattr-index -p \(m) 1.1.1 2.2.2 3.3.3",
                ]
                for c in commands {
                    let a = MountEnv.sh("\(MountEnv.binary) \(c)")
                    let b = MountEnv.sh("\(Self.original) \(c)")
                    #expect(a.0 == b.0 && a.1 == b.1, "\(c): ours rc \(a.0)\n\(a.1)\noriginal rc \(b.0)\n\(b.1)")
                }
                // totals injected through the original's INJECT_TOTL_DELTA read back by both
                let agent = try ScoutAgent.open(m)
                try agent.injectTotlDelta(name: [9, 9, 9], total: -5, count: -1)
                agent.close()
                #expect(MountEnv.sh("SCOUTFS_RUN_DIR=\(v.dir)/run \(MountEnv.binary) sync -p \(m)").0 == 0)
                let a = MountEnv.sh("\(MountEnv.binary) read-xattr-totals -p \(m)")
                let b = MountEnv.sh("\(Self.original) read-xattr-totals -p \(m)")
                #expect(a.1 == b.1 && a.1.contains("9.9.9 = -5, -1"), "\(a.1)\n\(b.1)")
            }
            #expect(v.unmount() == 0)
        }

        /// Random sets, changes and removals of `.totl.` xattrs on the same files from three
        /// mounts, a forced log merge between rounds: every mount's `read-xattr-totals`
        /// prints the sums the test computes, and check passes after unmount.
        @Test(.enabled(if: MountEnv.usable)) func totalsAreExactAcrossThreeMountsAndMerges() throws {
            let c = try Cluster.make()
            defer { c.cleanup() }
            try c.mount([0, 1, 2])
            for i in 0..<12 { try writeFile(c.mnt(0) + "/f\(i)", [UInt8(i)], fsync: true) }
            let names = ["scoutfs.totl.t.1.1.1", "scoutfs.totl.t.1.1.2", "scoutfs.hide.totl.u.2.0.0", "scoutfs.totl.v.3.3.3"]
            var values: [String: UInt64] = [:]  // "file name" → value
            var rng = SplitMix64(seed: 11)
            guard let leader = c.leader(among: [0, 1, 2]) else {
                Issue.record("no leader")
                return
            }
            for round in 0..<4 {
                for _ in 0..<30 {
                    let m = Int(rng.next() % 3)
                    let f = "f\(rng.next() % 12)"
                    let n = names[Int(rng.next() % UInt64(names.count))]
                    let path = c.mnt(m) + "/" + f
                    if values["\(f) \(n)"] != nil && rng.next() % 3 == 0 {
                        #expect(removexattr(path, n) == 0)
                        values["\(f) \(n)"] = nil
                    } else {
                        let v = rng.next() % 100_000
                        #expect(Self.set(path, n, "\(v)") == 0)
                        values["\(f) \(n)"] = v
                    }
                }
                for m in 0..<3 { #expect(MountEnv.sh("\(c.bin) sync -p \(c.mnt(m))").0 == 0) }
                var sums: [String: (UInt64, UInt64)] = [:]
                for (k, v) in values {
                    let key = k.split(separator: ".").suffix(3).joined(separator: ".")
                    sums[key, default: (0, 0)].0 += v
                    sums[key, default: (0, 0)].1 += 1
                }
                let want = sums.map { "\($0.key) = \($0.value.0), \($0.value.1)" }.sorted()
                for m in 0..<3 {
                    let (rc, out) = MountEnv.sh("\(c.bin) read-xattr-totals -p \(c.mnt(m))")
                    #expect(rc == 0 && out.split(separator: "\n").map(String.init).sorted() == want, "round \(round) mount \(m): \(out) want \(want)")
                }
                // a merge of every mount's tree, then read again
                let before = RealMounts.LogMergeMountTests.counter(c, leader, "log_merge_complete") ?? 0
                #expect(MountEnv.sh("\(c.bin) trigger -p \(c.mnt(leader)) log_merge_force_finalize_ours").0 == 0)
                let done = waitFor(seconds: 90) { (RealMounts.LogMergeMountTests.counter(c, leader, "log_merge_complete") ?? 0) > before }
                #expect(done != nil, "no merge completed")
                for m in 0..<3 {
                    let (rc, out) = MountEnv.sh("\(c.bin) read-xattr-totals -p \(c.mnt(m))")
                    #expect(rc == 0 && out.split(separator: "\n").map(String.init).sorted() == want, "round \(round) merged, mount \(m): \(out)")
                }
            }
            #expect(c.unmount([0, 1, 2]) == 0)
            let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
            #expect(check.0 == 0, "check: \(check.1)")
        }

        /// Committed `.totl.` changes on three mounts, a forced merge, and a kill -9 of the
        /// server or of a merging mount while it runs: after the remount every mount reads the
        /// exact totals (nothing lost, nothing counted twice), during and after the merge.
        @Test(.enabled(if: MountEnv.usable)) func totalsSurviveKillsDuringMerges() throws {
            let seed = getenv("SCOUT_MERGE_SEED").flatMap { UInt64(String(cString: $0)) } ?? UInt64.random(in: 1...1_000_000)
            var rng = SplitMix64(seed: seed)
            let c = try Cluster.make()
            defer { c.cleanup() }
            try c.mount([0, 1, 2])
            for i in 0..<30 { try writeFile(c.mnt(0) + "/f\(i)", [UInt8(i)], fsync: true) }
            var values: [String: UInt64] = [:]
            func want() -> [String] {
                var sums: [String: (UInt64, UInt64)] = [:]
                for (k, v) in values {
                    let key = k.split(separator: ".").suffix(3).joined(separator: ".")
                    sums[key, default: (0, 0)].0 += v
                    sums[key, default: (0, 0)].1 += 1
                }
                return sums.map { "\($0.key) = \($0.value.0), \($0.value.1)" }.sorted()
            }
            func expectTotals(_ what: String) {
                for m in 0..<3 {
                    let (rc, out) = MountEnv.sh("\(c.bin) read-xattr-totals -p \(c.mnt(m))")
                    #expect(rc == 0 && out.split(separator: "\n").map(String.init).sorted() == want(), "seed \(seed) \(what), mount \(m): \(out)")
                }
            }
            for round in 0..<3 {
                for m in 0..<3 {
                    for _ in 0..<60 {
                        let f = "f\(rng.next() % 30)"
                        let n = "scoutfs.totl.k.\(rng.next() % 4).\(round % 2).0"
                        let v = rng.next() % 1000
                        #expect(Self.set(c.mnt(m) + "/" + f, n, "\(v)") == 0)
                        values["\(f) \(n)"] = v
                    }
                    #expect(MountEnv.sh("\(c.bin) sync -p \(c.mnt(m))").0 == 0)
                }
                expectTotals("round \(round) before the merge")
                let leader = try #require(c.leader(among: [0, 1, 2]), "seed \(seed)")
                #expect(MountEnv.sh("\(c.bin) trigger -p \(c.mnt(leader)) log_merge_force_finalize_ours").0 == 0)
                for m in 0..<3 { _ = MountEnv.sh("\(c.bin) sync -p \(c.mnt(m))") }
                usleep(UInt32(rng.next() % 1_500_000))
                expectTotals("round \(round) while merging")
                let victim = round % 2 == 0 ? leader : (leader + 1 + Int(rng.next() % 2)) % 3
                let pid = try #require(c.daemonPid(victim))
                kill(pid, SIGKILL)
                #expect(waitFor(seconds: 10) { kill(pid, 0) != 0 } != nil)
                MountEnv.sh("umount -l \(c.mnt(victim))")
                try c.mount([victim])
                expectTotals("round \(round) after killing mount \(victim)")
            }
            let leader = try #require(c.leader(among: [0, 1, 2]), "seed \(seed)")
            let before = RealMounts.LogMergeMountTests.counter(c, leader, "log_merge_complete") ?? 0
            #expect(MountEnv.sh("\(c.bin) trigger -p \(c.mnt(leader)) log_merge_force_finalize_ours").0 == 0)
            #expect(waitFor(seconds: 120) { (RealMounts.LogMergeMountTests.counter(c, leader, "log_merge_complete") ?? 0) > before } != nil)
            expectTotals("after the last merge")
            #expect(c.unmount([0, 1, 2]) == 0)
            let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
            #expect(check.0 == 0, "seed \(seed): check: \(check.1)")
        }
    }
}
