import CFuseKernel
import Glibc
import ScoutAgent
import ScoutFormat
import ScoutIoctl
import ScoutTestSupport
import Testing

extension RealMounts {
    /// Quotas on real mounts: the rule commands against the original utility on the same
    /// mount, and enforcement (EDQUOT at exactly the limit) across two mounts of a cluster.
    @Suite("Quotas on real mounts")
    struct QuotaMountTests {
        static let original = "/work/tools/scoutfs-orig/utils/src/scoutfs"
        static var haveOriginal: Bool { access(original, X_OK) == 0 }

        /// Standard output, standard error and exit status of a shell command line.
        struct Outcome: Equatable, CustomStringConvertible {
            var out: String
            var err: String
            var rc: Int32
            var description: String { "rc \(rc)\nstdout:\n\(out)stderr:\n\(err)" }
        }

        static func run(_ cmd: String) -> Outcome {
            let base = "/tmp/scoutfs-quota-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            let status = system("(\(cmd)) > \(base).out 2> \(base).err")
            defer {
                unlink(base + ".out")
                unlink(base + ".err")
            }
            return Outcome(
                out: (try? TempDir.readText(base + ".out")) ?? "", err: (try? TempDir.readText(base + ".err")) ?? "", rc: (status >> 8) & 0xff)
        }

        /// The steps of the original's tests/quota.sh for the rule commands (and their error
        /// cases), run with `bin` on mount `m` from no rules to no rules; `tmp` holds files.
        static func transcript(_ bin: String, _ m: String, _ tmp: String) -> [(String, Outcome)] {
            var steps: [String] = [
                "quota-list -p \(m)",
                "quota-add -p \(m) -r '7 13,L,- 15,L,- 17,L,- I 33 -'",
                "quota-list -p \(m)",
                "quota-add -p \(m) -r '7 13,L,- 15,L,- 17,L,- I 33 -'",  // EEXIST
                "quota-del -p \(m) -r '7 13,L,- 15,L,- 17,L,- I 33 -'",
                "quota-del -p \(m) -r '7 13,L,- 15,L,- 17,L,- I 33 -'",  // ENOENT
                "quota-list -p \(m)",
                "quota-add -p \(m) -r '1 1,L,- 1,L,- 1,L,- I 100 -'",
                "quota-add -p \(m) -r '1 1,L,- 1,L,- 1,L,- I 101 -'",
                "quota-del -p \(m) -r '1 1,L,- 1,L,- 1,L,- I 100 -'",
                "quota-list -p \(m)",
                "quota-add -p \(m) -r '1 1,L,- 1,L,- 1,L,- I 99 -'",
                "quota-del -p \(m) -r '1 1,L,- 1,L,- 1,L,- I 101 -'",
                "quota-list -p \(m)",
                "quota-del -p \(m) -r '1 1,L,- 1,L,- 1,L,- I 99 -'",
                // malformed: the text, and rules the filesystem refuses (EINVAL)
                "quota-add -p \(m) -r '1 1,L,- 1,L,- 1,L,- I 1'",
                "quota-add -p \(m) -r '1 1,Q,- 1,L,- 1,L,- I 1 -'",
                "quota-add -p \(m) -r '1 1,L,- 1,L,- 1,L,- X 1 -'",
                "quota-add -p \(m) -r '1 1,L,S 1,L,- 1,L,- I 1 -'",
                "quota-add -p \(m) -r '1 5,U,S 6,U,S 1,L,- I 1 -'",
                "quota-add -p \(m) -r '1 1,L,- 1,L,x 1,L,- I 1 -'",
                "quota-add -p \(m) -r '1 1,L,- 1,L,- 1,L,- D 1 z'",
                "quota-del -p \(m) -r '1 1,L,- 1,L,- 1,L,- D 1 z'",
                "quota-add -p \(m)", "quota-list", "quota-add -p \(m)/nope -r '1 1,L,- 1,L,- 1,L,- I 1 -'",
                // CAP_SYS_ADMIN
                "setpriv --reuid=65534 --regid=65534 --clear-groups \(bin) quota-list -p \(m)",
                "setpriv --reuid=65534 --regid=65534 --clear-groups \(bin) quota-add -p \(m) -r '1 1,L,- 1,L,- 1,L,- I 1 -'",
            ]
            for a in 10...15 { steps.append("quota-add -p \(m) -r '7 \(a),L,- 0,L,- 0,L,- I 33 -'") }
            steps += [
                "quota-add -p \(m) -r '200 1,P,S 2,U,- 3,G,S D 18446744073709551615 C'",
                "quota-add -p \(m) -r '0 0,L,- 0,L,- 0,L,- D 0 -'",
                "quota-list -p \(m)",
                "quota-list -p \(m) -U",
                "quota-list -p \(m) > \(tmp)/list",
                "quota-wipe -p \(m)",
                "quota-list -p \(m)",
                "quota-restore -p \(m) < \(tmp)/list",
                "quota-list -p \(m)",
                // a rule that exists stops a restore, after the rules before it (sorted: high to low)
                "quota-restore -p \(m) < \(tmp)/list",
                "quota-wipe -p \(m) -U",
                "quota-list -p \(m)",
                // a bad line: sorted adds none, unsorted the lines before it
                "printf '  7 10,L,- 0,L,- 0,L,- I 33 -\\n\\n  7 11,L,- 0,L,- 0,L,- I 33 -\\n' | \(bin) quota-restore -p \(m)",
                "quota-list -p \(m)",
                "printf '  7 10,L,- 0,L,- 0,L,- I 33 -\\nbad\\n  7 11,L,- 0,L,- 0,L,- I 33 -\\n' | \(bin) quota-restore -p \(m) -U",
                "quota-list -p \(m)",
                // a restored rule the filesystem refuses
                "printf '  7 10,L,S 0,L,- 0,L,- I 33 -\\n' | \(bin) quota-restore -p \(m) -U",
                "quota-wipe -p \(m)",
                "quota-list -p \(m) -U",
            ]
            return steps.map { s in
                let cmd = s.hasPrefix("setpriv") || s.hasPrefix("printf") ? s : "\(bin) \(s)"
                return (s, Self.run(cmd))
            }
        }

        /// The rule commands print, fail and exit as the original utility does on our mount,
        /// and the rule items are keyed by the FNV-1a hash of their value, as the original's.
        @Test(.enabled(if: MountEnv.usable)) func commandsMatchTheOriginal() throws {
            let v = try MountedVolume.make()
            defer { v.cleanup() }
            try v.mount()
            // other users reach the mount (the CAP_SYS_ADMIN steps)
            #expect(chmod(v.dir, 0o755) == 0)
            let ours = Self.transcript(MountEnv.binary, v.mnt, v.dir)
            // spot checks of our own transcript
            let byStep = Dictionary(ours.map { ($0.0, $0.1) }, uniquingKeysWith: { a, _ in a })
            #expect(ours[0].1 == Outcome(out: "", err: "", rc: 0))
            #expect(ours[2].1.out == "  7 13,L,- 15,L,- 17,L,- I 33 -\n")
            #expect(ours[3].1.err == "MOD_QUOTA_RULE ioctl failed: File exists (17)\nscoutfs: quota-add failed: File exists (17)\n")
            #expect(ours[5].1.err.hasSuffix("scoutfs: quota-del failed: No such file or directory (2)\n"))
            #expect(ours[10].1.out == "  1 1,L,- 1,L,- 1,L,- I 101 -\n")
            #expect(byStep["quota-add -p \(v.mnt) -r '1 1,L,S 1,L,- 1,L,- I 1 -'"]?.err.hasSuffix("Invalid argument (22)\n") == true)
            #expect(ours.first { $0.0.hasPrefix("setpriv") }?.1.err.hasSuffix("quota-list failed: Operation not permitted (1)\n") == true)
            // sorted from high to low: priority first, then the first name's value
            let full = ours.first { $0.0 == "quota-list -p \(v.mnt)" && $0.1.out.contains("200 ") }?.1.out ?? ""
            let lines: [String] = full.split(separator: "\n").map(String.init)
            #expect(lines == ["200 1,P,S 2,U,- 3,G,S D 18446744073709551615 C"] + (10...15).reversed().map { "  7 \($0),L,- 0,L,- 0,L,- I 33 -" } + ["  0 0,L,- 0,L,- 0,L,- D 0 -"], "\(full)")
            let unsorted = ours.first { $0.0 == "quota-list -p \(v.mnt) -U" }?.1.out ?? ""
            #expect(unsorted.split(separator: "\n").map(String.init).sorted() == lines.sorted() && unsorted != full, "-U lists storage (hash) order")

            if Self.haveOriginal {
                let theirs = Self.transcript(Self.original, v.mnt, v.dir)
                for (a, b) in zip(ours, theirs) {
                    #expect(a.1 == b.1, "\(a.0)\nours: \(a.1)\noriginal: \(b.1)")
                }
                // rules added by one utility are read and removed by the other
                #expect(Self.run("\(Self.original) quota-add -p \(v.mnt) -r '3 4,G,S 5,L,- 6,P,- D 7 C'").rc == 0)
                #expect(Self.run("\(MountEnv.binary) quota-list -p \(v.mnt)").out == "  3 4,G,S 5,L,- 6,P,- D 7 C\n")
                #expect(Self.run("\(MountEnv.binary) quota-del -p \(v.mnt) -r '3 4,G,S 5,L,- 6,P,- D 7 C'").rc == 0)
                #expect(Self.run("\(Self.original) quota-list -p \(v.mnt)") == Outcome(out: "", err: "", rc: 0))
            }

            // a bulk restore of more rules than a batch, listed back the same (tests/quota.sh)
            let many = (0..<3000).map { "  1 \(9_000_003_000 - $0),U,S 1,L,- 1,L,- I 1 -\n" }.joined()
            try writeFile(v.dir + "/lots", Array(many.utf8), fsync: false)
            #expect(Self.run("\(MountEnv.binary) quota-restore -p \(v.mnt) < \(v.dir)/lots").rc == 0)
            #expect(Self.run("\(MountEnv.binary) quota-list -p \(v.mnt)").out == many)
            if Self.haveOriginal { #expect(Self.run("\(Self.original) quota-list -p \(v.mnt)").out == many) }
            // GET_QUOTA_RULES in small batches: the cursor resumes past the last rule returned
            let agent = try ScoutAgent.open(v.mnt)
            var iterator: [UInt64] = [0, 0]
            var seen: [QuotaRule] = []
            var cursors: [[UInt64]] = []
            for _ in 0..<1000 {
                let batch = try agent.getQuotaRules(iterator: &iterator, max: 7)
                if batch.isEmpty { break }
                seen += batch
                cursors.append(iterator)
            }
            #expect(try agent.getQuotaRules(iterator: &iterator, max: 7).isEmpty && iterator == cursors.last)
            agent.close()
            #expect(seen.count == 3000 && Set(seen).count == 3000 && Set(seen.map(\.nameVal[0])) == Set((0..<3000).map { 9_000_003_000 - UInt64($0) }))
            #expect(zip(cursors, cursors.dropFirst()).allSatisfy { $0.0[0] < $0.1[0] || ($0.0[0] == $0.1[0] && $0.0[1] < $0.1[1]) }, "storage order")
            #expect(zip(seen, seen.dropFirst()).allSatisfy { FNV1a.hash64($0.0.encoded) < FNV1a.hash64($0.1.encoded) }, "hash order")
            #expect(Self.run("\(MountEnv.binary) quota-wipe -p \(v.mnt)").rc == 0)

            // the item's key: (QUOTA zone, RULE type, FNV-1a 64 of the 48-byte value, collision 0)
            let rule = QuotaRule(prio: 9, nameVal: [1, 2, 3], op: QuotaRule.opData, limit: 77)
            #expect(Self.run("\(MountEnv.binary) quota-add -p \(v.mnt) -r '9 1,L,- 2,L,- 3,L,- D 77 -'").rc == 0)
            #expect(v.unmount() == 0)
            let printed = Self.run("\(MountEnv.binary) print \(v.dir)/meta").out
            let hash = FNV1a.hash64(rule.encoded)
            let hex = String(hash, radix: 16)
            #expect(printed.contains("quota rule: hash 0x\(String(repeating: "0", count: 16 - hex.count) + hex) coll_nr 0"), "no quota rule item at the FNV-1a key")
            let check = MountEnv.sh("\(MountEnv.binary) check \(v.dir)/meta \(v.dir)/data")
            #expect(check.0 == 0, "\(check.1)")
        }

        static func set(_ path: String, _ name: String, _ value: String) -> Int32 {
            setxattr(path, name, value, value.utf8.count, 0) == 0 ? 0 : errno
        }

        /// The errno of creating `path` as a regular file (0: created).
        static func create(_ path: String) -> Int32 {
            let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
            if fd < 0 { return errno }
            close(fd)
            return 0
        }

        /// The errno of writing `count` bytes at `offset` of an existing file (0: written).
        static func write(_ path: String, offset: Int, count: Int = 4096) -> Int32 {
            let fd = open(path, O_WRONLY | O_CLOEXEC)
            if fd < 0 { return errno }
            defer { close(fd) }
            let buf = [UInt8](repeating: 0x5a, count: count)
            return pwrite(fd, buf, count, off_t(offset)) == count ? 0 : errno
        }

        /// An agent's part and EDQUOT at exactly the limit, for inode creation and for data,
        /// whichever of two mounts the operation or the `.totl.` change happens on; rule
        /// changes seen by the other mount at once; the 5 s check cache; the attribute sources.
        @Test(.enabled(if: MountEnv.usable)) func enforcementAtTheLimitOnTwoMounts() throws {
            let c = try Cluster.make()
            defer { c.cleanup() }
            try c.mount([0, 1])
            let m = [c.mnt(0), c.mnt(1)]
            func settle() {
                // what the agent does after changing totals: commit them and forget old checks
                for i in 0..<2 { #expect(MountEnv.sh("\(c.bin) sync -p \(m[i])").0 == 0) }
                for i in 0..<2 { #expect(MountEnv.sh("\(c.bin) trigger -p \(m[i]) drop_quota_check_cache").0 == 0) }
            }
            func quota(_ i: Int, _ args: String) -> Outcome { Self.run("\(c.bin) \(args.replacingOccurrences("PATH", m[i]))") }
            #expect(mkdir(m[0] + "/d", 0o777) == 0 && chmod(m[0] + "/d", 0o777) == 0 && chmod(c.dir, 0o755) == 0)

            // inodes: at most 3 files carrying the count xattr, checked by count (C)
            #expect(quota(1, "quota-add -p PATH -r '1 7,L,- 7,L,- 7,L,- I 3 C'").rc == 0)
            for k in 0..<3 {
                let f = m[k % 2] + "/d/f\(k)"
                #expect(Self.create(f) == 0, "file \(k) of 3")
                #expect(Self.set(f, "scoutfs.totl.files.7.7.7", "1") == 0)
                settle()
            }
            for i in 0..<2 {
                #expect(Self.create(m[i] + "/d/over") == EDQUOT, "mount \(i)")
                #expect(mkdir(m[i] + "/d/dir", 0o755) == -1 && errno == EDQUOT)
                #expect(symlink("f0", m[i] + "/d/sl") == -1 && errno == EDQUOT)
                #expect(mkfifo(m[i] + "/d/fifo", 0o644) == -1 && errno == EDQUOT)
                #expect(open(m[i] + "/d", cfk_o_tmpfile() | O_WRONLY, 0o644) == -1 && errno == EDQUOT)
            }
            // an existing name is still opened (EEXIST comes first), links and renames go on
            #expect(open(m[0] + "/d/f0", O_CREAT | O_WRONLY, 0o644).closing() == 0)
            #expect(link(m[0] + "/d/f0", m[0] + "/d/f0-link") == 0 && rename(m[1] + "/d/f1", m[1] + "/d/f1-moved") == 0)
            // the agent lowers the count on mount 1: mount 0 keeps its EDQUOT for 5 s
            #expect(MountEnv.sh("\(c.bin) trigger -p \(m[0]) drop_quota_check_cache").0 == 0)
            let start = monotonicSeconds()
            #expect(Self.create(m[0] + "/d/over") == EDQUOT)
            #expect(removexattr(m[1] + "/d/f0", "scoutfs.totl.files.7.7.7") == 0)
            #expect(MountEnv.sh("\(c.bin) sync -p \(m[1])").0 == 0)
            if monotonicSeconds() - start < 4.5 { #expect(Self.create(m[0] + "/d/over") == EDQUOT, "the check result is kept") }
            let allowed = waitFor(seconds: 10) { Self.create(m[0] + "/d/over") == 0 }
            let took = monotonicSeconds() - start
            #expect(allowed != nil && took >= 5 && took < 9, "the check result expires after 5 s (allowed after \(took) s)")
            // a rule change is seen by the other mount at once (its rules and checks are dropped)
            #expect(Self.set(m[0] + "/d/over", "scoutfs.totl.files.7.7.7", "1") == 0)
            settle()
            #expect(Self.create(m[1] + "/d/over2") == EDQUOT)
            #expect(quota(0, "quota-del -p PATH -r '1 7,L,- 7,L,- 7,L,- I 3 C'").rc == 0)
            #expect(Self.create(m[1] + "/d/over2") == 0)
            #expect(quota(0, "quota-add -p PATH -r '1 7,L,- 7,L,- 7,L,- I 4 C'").rc == 0)
            #expect(quota(1, "quota-list -p PATH").out == "  1 7,L,- 7,L,- 7,L,- I 4 C\n")
            #expect(Self.create(m[1] + "/d/over3") == 0, "count 3 of 4")
            #expect(Self.set(m[1] + "/d/over3", "scoutfs.totl.files.7.7.7", "1") == 0)
            settle()
            #expect(Self.create(m[0] + "/d/over4") == EDQUOT && Self.create(m[1] + "/d/over4") == EDQUOT)
            #expect(quota(1, "quota-wipe -p PATH").rc == 0)

            // data: 12288 bytes, the total of the files' byte counts; writes and fallocate
            #expect(quota(0, "quota-add -p PATH -r '1 8,L,- 8,L,- 8,L,- D 12288 -'").rc == 0)
            #expect(Self.create(m[0] + "/d/g0") == 0 && Self.create(m[1] + "/d/g1") == 0)
            var sizes = [0, 0]
            for k in 0..<3 {
                let g = k % 2
                let f = m[g] + "/d/g\(g)"
                #expect(Self.write(f, offset: sizes[g]) == 0, "write \(k) of 3")
                sizes[g] += 4096
                #expect(Self.set(f, "scoutfs.totl.bytes.8.8.8", "\(sizes[g])") == 0)
                settle()
            }
            for i in 0..<2 {
                #expect(Self.write(m[i] + "/d/g\(i)", offset: 0) == EDQUOT, "overwrite on mount \(i)")
                #expect(Self.write(m[i] + "/d/g\(i)", offset: 1 << 20) == EDQUOT, "extend on mount \(i)")
                let alloc = MountEnv.sh("fallocate -l 1M \(m[i])/d/g\(i)")
                #expect(alloc.0 != 0 && alloc.1.contains("Disk quota exceeded"), "\(alloc.1)")
                // punching frees blocks: never refused
                #expect(MountEnv.sh("fallocate -p -o 0 -l 4096 \(m[i])/d/g\(i)").0 == 0)
                #expect(truncate(m[i] + "/d/g\(i)", 100) == 0)
                // an inode rule is not a data rule
                #expect(Self.create(m[i] + "/d/h\(i)") == 0)
            }
            #expect(readFile(m[1] + "/d/g0")?.count == 100)
            // the kernel's writeback of a shared mapping is not refused (nor is it in the original)
            let mapped = MountEnv.sh(
                "python3 -c \"import mmap,os; fd=os.open('\(m[0])/d/g0', os.O_RDWR); m=mmap.mmap(fd, 100); m[0:6]=b'mapped'; m.flush()\"")
            #expect(mapped.0 == 0, "\(mapped.1)")
            #expect(readFile(m[1] + "/d/g0").map { Array($0.prefix(6)) } == Array("mapped".utf8))
            // below the limit again
            #expect(Self.set(m[1] + "/d/g1", "scoutfs.totl.bytes.8.8.8", "4095") == 0)
            settle()
            #expect(Self.write(m[0] + "/d/g0", offset: 0) == 0)
            #expect(quota(0, "quota-wipe -p PATH").rc == 0)

            // attribute sources: uid (selecting) and project
            let uidRule = "2 22222,U,S 9,L,- 9,L,- I 1 -"
            #expect(quota(0, "quota-add -p PATH -r '\(uidRule)'").rc == 0)
            #expect(Self.set(m[0] + "/d/f2", "scoutfs.totl.u.22222.9.9", "5") == 0)
            settle()
            for i in 0..<2 {
                let asUser = MountEnv.sh("setpriv --reuid=22222 --regid=44444 --clear-groups touch \(m[i])/d/user\(i) 2>&1")
                #expect(asUser.0 != 0 && asUser.1.contains("Disk quota exceeded"), "\(asUser.1)")
                let other = MountEnv.sh("setpriv --reuid=22223 --regid=44444 --clear-groups touch \(m[i])/d/other\(i) 2>&1")
                #expect(other.0 == 0, "\(other.1)")
            }
            #expect(quota(0, "quota-del -p PATH -r '\(uidRule)'").rc == 0)
            #expect(mkdir(m[0] + "/p77", 0o755) == 0 && mkdir(m[0] + "/p78", 0o755) == 0)
            #expect(MountEnv.sh("\(c.bin) set-attr-x \(m[0])/p77 -p 77").0 == 0)
            #expect(MountEnv.sh("\(c.bin) set-attr-x \(m[0])/p78 -p 78").0 == 0)
            #expect(quota(1, "quota-add -p PATH -r '1 0,P,- 6,L,- 6,L,- I 1 -'").rc == 0)
            #expect(Self.set(m[0] + "/d/f2", "scoutfs.totl.proj.77.6.6", "1") == 0)
            settle()
            for i in 0..<2 {
                #expect(Self.create(m[i] + "/p77/x\(i)") == EDQUOT, "project 77 on mount \(i)")
                #expect(Self.create(m[i] + "/p78/x\(i)") == 0, "project 78 on mount \(i)")
            }
            #expect(quota(1, "quota-wipe -p PATH").rc == 0)
            #expect(Self.create(m[0] + "/p77/after") == 0)
            #expect(c.unmount([0, 1]) == 0)
            let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
            #expect(check.0 == 0, "\(check.1)")
        }

        /// Rules changing on one mount over and over while another creates and writes files:
        /// every change takes the quota lock from the creating mount, which reads the rules
        /// again; nothing fails, nothing hangs, and a limit that applies is still enforced.
        @Test(.enabled(if: MountEnv.usable)) func ruleChangesWhileAnotherMountCreates() throws {
            let c = try Cluster.make()
            defer { c.cleanup() }
            try c.mount([0, 1])
            #expect(mkdir(c.mnt(0) + "/w", 0o755) == 0)
            let py = "import os,sys\nd=sys.argv[1]\nn=0\nwhile not os.path.exists(d+'/../stop'):\n"
                + "    fd=os.open(d+'/f%d'%n, os.O_CREAT|os.O_WRONLY, 0o644); os.write(fd, b'x'*4096); os.close(fd); n+=1\n"
                + "print(n)\n"
            try writeFile(c.dir + "/creates.py", Array(py.utf8), fsync: false)
            let changes = "for i in $(seq 1 60); do \(c.bin) quota-add -p \(c.mnt(1)) -r \"1 $i,U,S 5,L,- 5,L,- I 1 -\" || exit 1; "
                + "\(c.bin) quota-add -p \(c.mnt(1)) -r \"1 5,L,- 5,L,- 5,L,- D 1 -\" || exit 2; "
                + "\(c.bin) quota-wipe -p \(c.mnt(1)) || exit 3; done; touch \(c.mnt(0))/stop"
            let rcs = try c.inBackground(
                [("python3 \(c.dir)/creates.py \(c.mnt(0))/w > \(c.dir)/creates.out 2>&1", "creates"), (changes, "changes")], seconds: 240)
            #expect(rcs == [0, 0], "creates: \((try? TempDir.readText(c.dir + "/creates.out")) ?? "")")
            let created = Int(((try? TempDir.readText(c.dir + "/creates.out")) ?? "").trimmingCharacters(in: " \n")) ?? 0
            #expect(created > 0)
            // and the rules still work afterwards
            #expect(Self.run("\(c.bin) quota-add -p \(c.mnt(1)) -r '1 5,L,- 5,L,- 5,L,- I 1 -'").rc == 0)
            #expect(Self.set(c.mnt(1) + "/w", "scoutfs.totl.t.5.5.5", "1") == 0)
            #expect(MountEnv.sh("\(c.bin) sync -p \(c.mnt(1))").0 == 0)
            #expect(MountEnv.sh("\(c.bin) trigger -p \(c.mnt(0)) drop_quota_check_cache").0 == 0)
            #expect(Self.create(c.mnt(0) + "/w/last") == EDQUOT)
            print("quota: \(created) files created on one mount during 240 rule changes on the other")
            #expect(c.unmount([0, 1]) == 0)
        }

        /// A format version 1 volume has no quotas: the commands fail with EOPNOTSUPP, as the
        /// original's do, and nothing is enforced.
        @Test(.enabled(if: MountEnv.usable)) func formatVersion1HasNoQuotas() throws {
            let v = try MountedVolume.make()
            defer { v.cleanup() }
            let made = MountEnv.sh("\(MountEnv.binary) mkfs -A -f -V 1 -Q 0,127.0.0.1,\(v.port) \(v.dir)/meta \(v.dir)/data")
            try #require(made.0 == 0, "mkfs: \(made.1)")
            try v.mount()
            let m = v.mnt
            var bins = [MountEnv.binary]
            if Self.haveOriginal { bins.append(Self.original) }
            var outcomes: [[Outcome]] = []
            for b in bins {
                outcomes.append([
                    Self.run("\(b) quota-list -p \(m)"), Self.run("\(b) quota-add -p \(m) -r '1 1,L,- 1,L,- 1,L,- I 0 -'"),
                    Self.run("\(b) quota-del -p \(m) -r '1 1,L,- 1,L,- 1,L,- I 0 -'"), Self.run("\(b) quota-wipe -p \(m)"),
                ])
            }
            #expect(outcomes[0][0].err == "GET_QUOTA_RULES ioctl failed: Operation not supported (95)\nscoutfs: quota-list failed: Operation not supported (95)\n")
            #expect(outcomes[0][1].err.hasPrefix("MOD_QUOTA_RULE ioctl failed: Operation not supported (95)"))
            if outcomes.count == 2 { #expect(outcomes[0] == outcomes[1]) }
            #expect(Self.create(m + "/f") == 0 && Self.write(m + "/f", offset: 0) == 0)
            #expect(v.unmount() == 0)
        }
    }
}

extension String {
    /// Every `PATH` replaced by `path`.
    fileprivate func replacingOccurrences(_ word: String, _ path: String) -> String {
        split(separator: word, omittingEmptySubsequences: false).joined(separator: path)
    }
}

extension Int32 {
    /// An open's result closed: 0 when it opened, else its errno.
    fileprivate func closing() -> Int32 {
        if self < 0 { return errno }
        close(self)
        return 0
    }
}
