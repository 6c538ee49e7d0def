import Glibc
import ScoutFormat
import ScoutIoctl
import ScoutTestSupport
import Testing

@testable import ScoutDaemon

/// Crash recovery that needs no setup (issue 11, item 1): no fencing agent runs in these
/// tests. A rid whose daemon registered on this host and is provably gone is fenced by the
/// new server itself; a fence that only an agent could carry out fails the mount within a
/// bound, with one message.
extension RealMounts {
@Suite(
    "crash recovery without a fencing agent", .serialized,
    .enabled(if: MountEnv.usable, "needs root, /dev/fuse and a built scoutfs"), .timeLimit(.minutes(5)))
struct CrashRecoveryTests {
    /// The live registry entry of a volume's only mount.
    static func liveEntry(_ runDir: String) -> MountRegistry.Entry? {
        MountRegistry(runDirectory: runDir).entries().first { MountRegistry.isRunning($0) }
    }

    /// (a) mkfs a one-slot volume, mount, write and fsync, kill -9 the daemon, mount again at
    /// the same path with no agent running: it mounts within 5 s, every fsync'd byte is there,
    /// and the server logged why it fenced the dead rid itself. Twice in a row, and then a
    /// clean unmount leaves no mount, registry entry nor daemon behind.
    @Test func aKilledOneNodeMountRemountsAtOnceWithoutAnAgent() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        let runDir = v.dir + "/run"
        var rng = SplitMix64(seed: UInt64(getpid()))
        var synced: [String: [UInt8]] = [:]
        try v.mount()
        for round in 0..<2 {
            let entry = try #require(Self.liveEntry(runDir), "no live registry entry")
            for i in 0..<4 {
                let name = "r\(round)-f\(i)"
                let data = (0..<(1 + rng.below(300_000))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                try writeFile(v.mnt + "/" + name, data, fsync: true)
                synced[name] = data
            }
            kill(entry.pid, SIGKILL)
            #expect(waitFor(seconds: 10) { !MountRegistry.isRunning(entry) } != nil, "daemon \(entry.pid) still runs")

            let start = monotonicSeconds()
            try v.mount()
            let took = monotonicSeconds() - start
            #expect(took < 5, "round \(round): the remount took \(took) s\n\(Self.log(v))")
            for (name, data) in synced {
                #expect(readFile(v.mnt + "/" + name) == data, "round \(round): \(name) lost or changed after kill -9")
            }
            let log = Self.log(v)
            #expect(
                log.contains("fenced rid \(entry.rid.paddedHex)") && log.contains("without an agent"),
                "round \(round): no local fence of \(entry.rid.paddedHex) in the log\n\(log)")
            #expect(try MountRegistry(runDirectory: runDir).lookup(rid: entry.rid) == nil, "the dead rid's entry is left")
        }
        let last = try #require(Self.liveEntry(runDir))
        #expect(v.unmount() == 0)
        #expect(waitFor(seconds: 10) { !MountRegistry.isRunning(last) } != nil)
        #expect(MountRegistry(runDirectory: runDir).entries().isEmpty)
        #expect(FUSEMountTable.top(MountRegistry.canonical(v.mnt)) == nil, "a mount is left at \(v.mnt)")
        #expect(MountEnv.sh("\(MountEnv.binary) print \(v.dir)/meta").0 == 0)
    }

    /// A power cut of a one-node host, simulated: the daemon killed, its mount gone and the
    /// run directory's entry gone (as after a reboot, `/run` is empty), and the boot-surviving
    /// copy of its entry made to name an earlier boot. The next mount fences the rid itself
    /// (it ended with that boot) and mounts within 5 s with every fsync'd byte.
    @Test func aOneNodeVolumeRemountsAfterAPowerCutWithoutAnAgent() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        let runDir = v.dir + "/run"
        try v.mount()
        let data = (0..<300_001).map { UInt8(truncatingIfNeeded: $0 &* 11) }
        try writeFile(v.mnt + "/before-the-cut", data, fsync: true)
        let entry = try #require(Self.liveEntry(runDir))
        let copy = "\(runDir)/state/mounts/\(entry.rid.paddedHex)"
        #expect(access(copy, F_OK) == 0, "no boot-surviving copy of the entry")
        kill(entry.pid, SIGKILL)
        #expect(waitFor(seconds: 10) { !MountRegistry.isRunning(entry) } != nil)
        // the reboot: no mount, no run directory entry; the copy names another boot
        MountEnv.sh("umount -l \(v.mnt)")
        MountRegistry(runDirectory: runDir).unregister(rid: entry.rid)
        var old = entry
        old.bootID = "00000000-0000-0000-0000-000000000000"
        old.pid = 1
        var text = "rid=\(entry.rid.paddedHex)\npid=1\npid_start=\(entry.pidStart)\nmountpoint=\(entry.mountpoint)\n"
        text += "device=\(entry.device)\ndata_device=\(entry.dataDevice)\ncontrol_socket=\(entry.controlSocket)\n"
        text += "pid_namespace=\(entry.pidNamespace)\nboot_id=\(old.bootID)\nmachine_id=\(entry.machineID)\n"
        mkdir(runDir + "/state", 0o755)
        mkdir(runDir + "/state/mounts", 0o755)
        try writeText(copy, text)

        let start = monotonicSeconds()
        try v.mount()
        let took = monotonicSeconds() - start
        #expect(took < 5, "the remount took \(took) s\n\(Self.log(v))")
        #expect(readFile(v.mnt + "/before-the-cut") == data)
        let log = Self.log(v)
        #expect(log.contains("fenced rid \(entry.rid.paddedHex)") && log.contains("earlier boot"), "\(log)")
        #expect(access(copy, F_OK) != 0, "the copy of the fenced rid's entry is left")
        #expect(v.unmount() == 0)
        #expect(MountRegistry(runDirectory: runDir).entries().isEmpty)
    }

    /// (b) A three-slot volume whose last leader was on another host (its rid has no registry
    /// entry here) and no agent: the two other members mount again, the one elected cannot
    /// fence the old leader, and both mounts fail within the bound (60 s and some), each
    /// with one message naming the rid, its address, the reason and what to run.
    @Test func anUnfenceableLeaderFailsTheMountWithinTheBound() throws {
        var c = try Cluster.make()
        defer { c.cleanup() }
        // no agent: stop the one the cluster helper started (our own child)
        kill(c.fenced, SIGKILL)
        c.fenced = 0
        c.localFence = true
        try c.mount([0, 1, 2])
        let leader = try #require(c.leader(among: [0, 1, 2]), "\(c.logs())")
        let entries = (0..<3).map { c.liveEntry($0) }
        let leaderRid = try #require(entries[leader]).rid
        for e in entries.compactMap({ $0 }) { kill(e.pid, SIGKILL) }
        for e in entries.compactMap({ $0 }) {
            #expect(waitFor(seconds: 10) { !MountRegistry.isRunning(e) } != nil, "daemon \(e.pid) still runs")
        }
        // the leader was on another host: nothing here knows its rid
        MountRegistry(runDirectory: c.dir + "/run").unregister(rid: leaderRid)

        let others = [0, 1, 2].filter { $0 != leader }
        let offsets = others.map { ((try? TempDir.readText("\(c.dir)/log.\($0)")) ?? "").utf8.count }
        let start = monotonicSeconds()
        let rcs = try c.inBackground(others.map { (c.mountCommand($0), "remount.\($0)") }, seconds: 110)
        let took = monotonicSeconds() - start
        #expect(rcs.allSatisfy { $0 != 0 && $0 != -1 }, "exit statuses \(rcs)\n\(c.logs())")
        #expect(took < 75, "the mounts took \(took) s to fail")
        for (i, slot) in others.enumerated() {
            let text = String(((try? TempDir.readText("\(c.dir)/log.\(slot)")) ?? "").utf8.dropFirst(offsets[i])) ?? ""
            let failures = text.split(separator: "\n").filter { $0.hasPrefix("scoutfs: mount failed") }
            #expect(failures.count == 1, "slot \(slot): \(failures.count) failure lines\n\(text)")
            let line = failures.first.map(String.init) ?? ""
            #expect(line.contains("rid \(leaderRid.paddedHex)"), "slot \(slot): \(line)")
            #expect(line.contains("at \(c.address(leader))"), "slot \(slot): \(line)")
            #expect(line.contains("quorum_block_leader"), "slot \(slot): \(line)")
            #expect(line.contains("scoutfs fenced"), "slot \(slot): \(line)")
        }
        // nothing of the failed mounts is left running
        for slot in others {
            #expect(c.liveEntry(slot) == nil, "slot \(slot) still has a live daemon")
        }
    }

    /// Three members on this host and no agent: the leader and a follower are killed with
    /// SIGKILL at once (no majority is left), the follower mounts again at its path: the new
    /// server fences the old leader (`quorum_block_leader`) and the killed follower's rid
    /// (pending recovery) itself, at once, without waiting for the 30 s recovery timeout; the
    /// data written before is read on every member, and all three unmount.
    @Test func aClusterOnOneHostRecoversFromTwoKilledMembersWithoutAnAgent() throws {
        var c = try Cluster.make()
        defer { c.cleanup() }
        kill(c.fenced, SIGKILL)
        c.fenced = 0
        c.localFence = true
        try c.mount([0, 1, 2])
        let all = [0, 1, 2]
        let leader = try #require(c.leader(among: all), "\(c.logs())")
        let follower = all.first { $0 != leader }!
        let survivor = all.first { $0 != leader && $0 != follower }!
        let data = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try writeFile(c.mnt(follower) + "/from-follower", data, fsync: true)
        try writeFile(c.mnt(leader) + "/from-leader", data, fsync: true)
        let dead = [leader, follower].compactMap { c.liveEntry($0) }
        #expect(dead.count == 2)
        for e in dead { kill(e.pid, SIGKILL) }
        for e in dead { #expect(waitFor(seconds: 10) { !MountRegistry.isRunning(e) } != nil) }

        let start = monotonicSeconds()
        let rcs = try c.inBackground([(c.mountCommand(follower), "remount.\(follower)")], seconds: 60)
        let took = monotonicSeconds() - start
        #expect(rcs == [0], "\(c.logs())")
        // heartbeat timeout (2 s), an election, local fences: no recovery timeout (30 s)
        #expect(took < 15, "the remount took \(took) s\n\(c.logs())")
        let logs = c.logs()
        for e in dead {
            #expect(logs.contains("fenced rid \(e.rid.paddedHex)") && logs.contains("without an agent"), "\(e.rid.paddedHex) not fenced locally\n\(logs)")
        }
        #expect(!logs.contains("recovery timeout"), "\(logs)")
        for m in [follower, survivor] {
            #expect(readFile(c.mnt(m) + "/from-follower") == data, "member \(m)")
            #expect(readFile(c.mnt(m) + "/from-leader") == data, "member \(m)")
        }
        try c.mount([leader])
        #expect(readFile(c.mnt(leader) + "/from-follower") == data)
        #expect(c.unmount(all) == 0, "\(c.logs())")
        #expect(MountEnv.sh("\(c.bin) print \(c.dir)/meta").0 == 0)
    }

    /// SIGTERM is the clean unmount: the daemon, whatever thread the signal reaches, unmounts
    /// from a child process (never with a system call into its own mount), commits, says
    /// farewell, and leaves no mount, registry entry nor daemon; the data is there on the
    /// next mount. (SIGTERM used to end the daemon like a crash whenever it reached another
    /// thread than the one waiting for it.)
    @Test func sigtermUnmountsCleanly() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        let runDir = v.dir + "/run"
        try v.mount()
        let data = (0..<123_457).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try writeFile(v.mnt + "/before-term", data, fsync: false)
        let entry = try #require(Self.liveEntry(runDir))
        kill(entry.pid, SIGTERM)
        #expect(waitFor(seconds: 20) { !MountRegistry.isRunning(entry) } != nil, "daemon \(entry.pid) still runs")
        #expect(FUSEMountTable.top(MountRegistry.canonical(v.mnt)) == nil, "still mounted\n\(Self.log(v))")
        #expect(MountRegistry(runDirectory: runDir).entries().isEmpty, "a registry entry is left\n\(Self.log(v))")
        try v.mount()
        #expect(readFile(v.mnt + "/before-term") == data, "unsynced data lost by a clean SIGTERM unmount")
        #expect(!Self.log(v).contains("fenced rid \(entry.rid.paddedHex)"), "the cleanly unmounted rid was fenced")
        #expect(v.unmount() == 0)
    }

    /// An ioctl whose buffer the caller mapped from a file of the same mount is refused with
    /// EFAULT at once: filling it would fault the file's pages in through a FUSE request to the
    /// daemon itself. The same call into anonymous memory works.
    @Test func anIoctlBufferMappedFromTheMountIsRefused() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        try v.mount()
        let size = 1 << 20
        try writeFile(v.mnt + "/mapped", [UInt8](repeating: 0, count: size), fsync: true)
        let fd = open(v.mnt + "/mapped", O_RDWR | O_CLOEXEC)
        let dir = open(v.mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(fd >= 0 && dir >= 0)
        let map = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        #expect(map != MAP_FAILED)
        let anon = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        defer { anon.deallocate() }
        func walk(into buffer: UnsafeMutableRawPointer?) -> (Int32, Int32) {
            var arg = WalkInodesArgs(
                first: WalkInodesEntry(major: 0, ino: 0), last: WalkInodesEntry(major: .max, minor: .max, ino: .max),
                entriesPtr: UInt64(UInt(bitPattern: buffer)), nrEntries: 16, index: WalkInodesArgs.metaSeq
            ).encoded
            let r = arg.withUnsafeMutableBytes { ioctl(dir, UInt(IoctlCommand.walkInodes.rawValue), $0.baseAddress!) }
            return (r, r < 0 ? errno : 0)
        }
        let start = monotonicSeconds()
        let (r, e) = walk(into: map)
        #expect(r < 0 && e == EFAULT, "ioctl into a mapping of the mount: \(r), errno \(e)")
        #expect(monotonicSeconds() - start < 5)
        let (r2, e2) = walk(into: anon.baseAddress)
        #expect(r2 > 0, "ioctl into anonymous memory: \(r2), errno \(e2)")
        munmap(map, size)
        close(fd)
        close(dir)
        #expect(v.unmount() == 0)
    }

    static func log(_ v: MountedVolume) -> String {
        let dir = v.dir + "/run/log"
        guard let d = opendir(dir) else { return "" }
        var names: [String] = []
        while let ent = readdir(d) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.hasSuffix(".log") { names.append(name) }
        }
        closedir(d)
        return names.sorted().map { "--- \($0)\n" + ((try? TempDir.readText(dir + "/" + $0)) ?? "") }.joined(separator: "\n")
    }
}
}

/// The top mount of a path, from the mount table (never a stat of the mount).
enum FUSEMountTable {
    static func top(_ path: String) -> String? {
        let text = (try? TempDir.readText("/proc/self/mountinfo")) ?? ""
        return text.split(separator: "\n").last { $0.split(separator: " ").dropFirst(4).first.map(String.init) == path }
            .map(String.init)
    }
}
