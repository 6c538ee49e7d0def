import Glibc
import ScoutDaemon
import ScoutTestSupport
import Testing

/// Three quorum members, each a `scoutfs mount` daemon on 127.0.0.(slot+1), with a `scoutfs
/// fenced` agent running the local fence script. With `networkNamespaces`, each member has a
/// network stack of its own instead (see `ClusterNetwork`).
///
/// Each member opens the shared image files through loop devices of its own, as separate hosts
/// on a shared LUN do: every loop device has its own page cache, so a mount that read or wrote
/// its devices through the host's page cache would see blocks another member has since
/// rewritten. (Members sharing one device path on one host would share one cache and hide that.)
struct Cluster {
    let dir: String
    let port: Int
    let heartbeatMs: Int
    var fenced: pid_t = 0
    /// Whether the members' servers fence killed members of this host themselves
    /// (`LocalFence`); off by default, so that these tests exercise the fencing agent
    /// (`SCOUTFS_LOCAL_FENCE=0`).
    var localFence = false
    /// More mount options for every member (`name=value,...`).
    var mountOptions = ""
    /// More environment for every member's daemon (`NAME=value ...`).
    var mountEnvironment = ""
    /// Each member's own loop devices over `dir/meta` and `dir/data`.
    var metaDevices: [String] = []
    var dataDevices: [String] = []
    /// The members' network namespaces, bridge and links, when each member has a network
    /// stack of its own (`make(networkNamespaces: true)`); nil: all on 127.0.0.x of this one.
    var network: ClusterNetwork? = nil

    func meta(_ slot: Int) -> String { metaDevices[slot] }
    func data(_ slot: Int) -> String { dataDevices[slot] }

    func mnt(_ slot: Int) -> String { "\(dir)/m\(slot)" }
    func address(_ slot: Int) -> String { network?.address(slot) ?? "127.0.0.\(slot + 1)" }
    /// Every command of this cluster runs with its own run directory (control sockets, mount
    /// registry), so fencing agents of clusters running at the same time never meet.
    var bin: String { "env SCOUTFS_RUN_DIR=\(dir)/run \(MountEnv.binary)" }

    /// `mkfsOptions` are added to the mkfs command line (e.g. `-d 256M` for a small data device).
    /// `networkNamespaces`: every member's daemon runs in a network namespace of its own,
    /// linked to the others through a bridge (`ClusterNetwork`), so a member's link can be cut.
    /// Whatever was set up is torn down again when this throws.
    static func make(
        heartbeatMs: Int = 2000, fenceScript: String? = nil, mkfsOptions: String = "", networkNamespaces: Bool = false
    ) throws -> Cluster {
        let dir = try TempDir.make(prefix: "scoutfs-cluster")
        var c = Cluster(dir: dir, port: Int.random(in: 20000...40000), heartbeatMs: heartbeatMs)
        do {
            try c.setUp(fenceScript: fenceScript, mkfsOptions: mkfsOptions, networkNamespaces: networkNamespaces)
        } catch {
            c.cleanup()
            throw error
        }
        return c
    }

    private mutating func setUp(fenceScript: String?, mkfsOptions: String, networkNamespaces: Bool) throws {
        if networkNamespaces { network = try ClusterNetwork.make(cluster: dir, members: 3) }
        try TempDir.sparseFile(dir + "/meta", size: 4 << 30)
        try TempDir.sparseFile(dir + "/data", size: 4 << 30)
        mkdir(dir + "/run", 0o755)
        for slot in 0..<3 { mkdir(mnt(slot), 0o755) }
        // SCOUT_CLUSTER_ONE_HOST=1: every member opens the image files themselves (one host's
        // view, one page cache), to tell a cache-coherence failure from any other
        let oneHost = getenv("SCOUT_CLUSTER_ONE_HOST").map { String(cString: $0) } == "1"
        for _ in 0..<3 {
            metaDevices.append(oneHost ? dir + "/meta" : try attachLoop(dir + "/meta", cluster: dir))
            dataDevices.append(oneHost ? dir + "/data" : try attachLoop(dir + "/data", cluster: dir))
        }
        let q = (0..<3).map { "-Q \($0),\(address($0)),\(port)" }.joined(separator: " ")
        let (rc, out) = MountEnv.sh("\(bin) mkfs -A -f \(q) \(mkfsOptions) \(dir)/meta \(dir)/data")
        guard rc == 0 else { throw Failure(message: "mkfs: \(out)") }
        let run = fenceScript ?? "\(MountEnv.root)/scripts/scoutfs-fence-local"
        let conf = "SCOUTFS_FENCED_DELAY=0.2\nSCOUTFS_FENCED_RUN=\(run)\nSCOUTFS_FENCED_RUN_ARGS=\"\"\n"
        try writeText(dir + "/fenced.conf", conf)
        let (frc, fout) = MountEnv.sh("\(bin) fenced --config \(dir)/fenced.conf >> \(dir)/fenced.log 2>&1 & echo $!")
        guard frc == 0, let pid = pid_t(fout.trimmingCharacters(in: " \n")) else { throw Failure(message: "fenced: \(fout)") }
        fenced = pid
    }

    func mountCommand(_ slot: Int) -> String {
        "\(mountEnvironment) SCOUTFS_LOCAL_FENCE=\(localFence ? 1 : 0) SCOUTFS_LOG=info SCOUTFS_LOG_STDERR=1 SCOUTFS_RUN_DIR=\(dir)/run \(network?.enter(slot) ?? "")timeout 120 \(MountEnv.binary) mount -o metadev_path=\(meta(slot)),quorum_slot_nr=\(slot),quorum_heartbeat_timeout_ms=\(heartbeatMs)\(mountOptions.isEmpty ? "" : "," + mountOptions) \(data(slot)) \(mnt(slot)) 2>>\(dir)/log.\(slot)"
    }

    /// Mounts the given members at once (a majority is needed before any mount is usable).
    func mount(_ slots: [Int]) throws {
        let rcs = try inBackground(slots.map { (mountCommand($0), "mount.\($0)") }, seconds: 150)
        guard rcs.allSatisfy({ $0 == 0 }) else { throw Failure(message: "mount \(slots): exit \(rcs)\n\(logs())") }
    }

    /// Runs commands concurrently and waits for all (bounded); returns their exit statuses
    /// (-1 for one that did not finish). The shell's own `wait` is not used: the test
    /// process's threads may block SIGCHLD, which dash inherits and then never wakes.
    func inBackground(_ commands: [(String, String)], seconds: Double) throws -> [Int32] {
        for (cmd, name) in commands {
            unlink("\(dir)/\(name).rc")
            MountEnv.sh("( \(cmd); echo $? > \(dir)/\(name).rc.tmp; mv \(dir)/\(name).rc.tmp \(dir)/\(name).rc ) >/dev/null 2>&1 &")
        }
        var rcs: [Int32] = Array(repeating: -1, count: commands.count)
        _ = waitFor(seconds: seconds) {
            for (i, (_, name)) in commands.enumerated() where rcs[i] == -1 {
                if let text = try? TempDir.readText("\(dir)/\(name).rc"), let rc = Int32(text.trimmingCharacters(in: " \n")) {
                    rcs[i] = rc
                }
            }
            return !rcs.contains(-1)
        }
        return rcs
    }

    /// The registry entry of a member's live mount (its daemon's pid and start time match):
    /// no scan of every process (`pgrep` blocks on any process stuck in the kernel).
    func liveEntry(_ slot: Int) -> MountRegistry.Entry? {
        let mp = MountRegistry.canonical(mnt(slot))
        return MountRegistry(runDirectory: dir + "/run").entries()
            .first { $0.mountpoint == mp && MountRegistry.startTime(pid: $0.pid) == $0.pidStart }
    }

    /// The daemon of a member's mount.
    func daemonPid(_ slot: Int) -> pid_t? { liveEntry(slot)?.pid }

    /// `scoutfs quorum-status` of a member, as name → value (first word after the name).
    func quorumStatus(_ slot: Int) -> [String: String]? {
        let (rc, out) = MountEnv.sh("timeout 10 \(bin) quorum-status -p \(mnt(slot))")
        guard rc == 0 else { return nil }
        var fields: [String: String] = [:]
        for line in out.split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.count >= 2, fields[String(words[0])] == nil {
                fields[String(words[0])] = words[1...].joined(separator: " ")
            }
        }
        return fields
    }

    func role(_ slot: Int) -> String? {
        guard let r = quorumStatus(slot)?["role"], let open = r.firstIndex(of: "("), let close = r.firstIndex(of: ")") else {
            return nil
        }
        return String(r[r.index(after: open)..<close])
    }

    func term(_ slot: Int) -> UInt64? { quorumStatus(slot)?["term"].flatMap { UInt64($0) } }

    /// True when a TCP listener answers on the member's slot address (its server is up).
    func serverListening(_ slot: Int) -> Bool {
        MountEnv.sh("timeout 1 bash -c 'exec 3<>/dev/tcp/\(address(slot))/\(port)'").0 == 0
    }

    func leader(among slots: [Int]) -> Int? {
        slots.first { role($0) == "leader" }
    }

    func logs() -> String {
        (0..<3).map { "--- log.\($0)\n" + ((try? TempDir.readText("\(dir)/log.\($0)")) ?? "") }.joined(separator: "\n")
            + "--- fenced.log\n" + ((try? TempDir.readText("\(dir)/fenced.log")) ?? "")
    }

    /// Unmounts the given members together (the last quorum members' farewells are answered
    /// together, so they must leave at once). Returns 0 when every umount succeeded.
    func unmount(_ slots: [Int]) -> Int32 {
        let rcs = (try? inBackground(slots.map { ("timeout 60 umount \(mnt($0))", "umount.\($0)") }, seconds: 90)) ?? [-1]
        return rcs.allSatisfy { $0 == 0 } ? 0 : 1
    }

    func cleanup() {
        if fenced > 0 { kill(fenced, SIGKILL) }
        for slot in 0..<3 {
            if let pid = daemonPid(slot) { kill(pid, SIGKILL) }
        }
        usleep(200_000)
        for slot in 0..<3 { MountEnv.sh("umount -l \(mnt(slot))") }
        for dev in metaDevices + dataDevices where dev.hasPrefix("/dev/") { MountEnv.sh("losetup -d \(dev)") }
        // what a failed setUp had made before it threw is recorded there too
        ClusterNetwork.tearDown(cluster: dir)
        // SCOUTFS_TEST_KEEP=1 keeps the logs and devices for a look afterwards
        if getenv("SCOUTFS_TEST_KEEP") == nil { TempDir.remove(dir) }
    }
}

/// Attaches a loop device over `file` (a host's view of a shared LUN); its path is also
/// recorded in `cluster/loops` so a test that dies early leaves a list to clean up.
func attachLoop(_ file: String, cluster: String) throws -> String {
    let (rc, out) = MountEnv.sh("losetup -f --show \(file)")
    let dev = out.trimmingCharacters(in: " \n")
    guard rc == 0, dev.hasPrefix("/dev/loop") else { throw Failure(message: "losetup \(file): \(out)") }
    MountEnv.sh("echo \(dev) >> \(cluster)/loops")
    return dev
}

/// Writes `bytes` at `offset` of an existing (or, with `create`, a new) file and fsyncs it.
func overwrite(_ path: String, at offset: Int, _ bytes: [UInt8], create: Bool) throws {
    let fd = open(path, O_WRONLY | O_CLOEXEC | (create ? O_CREAT : 0), 0o644)
    guard fd >= 0 else { throw Failure(message: "open \(path): errno \(errno)") }
    defer { close(fd) }
    let n = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
    guard n == bytes.count else { throw Failure(message: "pwrite \(path): \(n) errno \(errno)") }
    guard fsync(fd) == 0 else { throw Failure(message: "fsync \(path): errno \(errno)") }
}

/// Polls `condition` every 50 ms until it holds or `seconds` pass; returns the seconds it took.
func waitFor(seconds: Double, _ condition: () -> Bool) -> Double? {
    let start = monotonicSeconds()
    while monotonicSeconds() - start < seconds {
        if condition() { return monotonicSeconds() - start }
        usleep(50_000)
    }
    return nil
}

func writeText(_ path: String, _ text: String) throws {
    try writeFile(path, Array(text.utf8), fsync: false)
}

func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

extension String {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s.removeFirst() }
        while let c = s.last, set.contains(c) { s.removeLast() }
        return String(s)
    }
}

extension RealMounts {
@Suite(.serialized, .enabled(if: MountEnv.usable, "needs root, /dev/fuse and a built scoutfs"))
struct ClusterTests {
    /// The acceptance run: elect, kill -9 the leader, fail over within the heartbeat timeout
    /// + 1 s, fence the old leader with the local fence script, rejoin as a follower.
    @Test func leaderFailoverFencesAndRejoins() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        let all = [0, 1, 2]
        var leaders = all.filter { c.role($0) == "leader" }
        #expect(leaders.count == 1, "leaders \(leaders)\n\(c.logs())")
        guard let old = leaders.first else { return }
        #expect(waitFor(seconds: 10) { c.serverListening(old) } != nil)
        let termBefore = try #require(c.term(old))

        // every member sees what another wrote and synced
        let survivors = all.filter { $0 != old }
        let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        try writeFile(c.mnt(old) + "/before", data, fsync: true)
        try writeFile(c.mnt(survivors[0]) + "/from-survivor", data, fsync: true)
        #expect(readFile(c.mnt(survivors[1]) + "/before") == data)

        // kill -9 the leader: a survivor's server must serve within timeout + 1 s
        let pid = try #require(c.daemonPid(old))
        let killed = monotonicSeconds()
        kill(pid, SIGKILL)
        var newLeader: Int?
        let took = waitFor(seconds: 30) {
            newLeader = survivors.first { c.serverListening($0) }
            return newLeader != nil
        }
        let elapsed = monotonicSeconds() - killed
        #expect(took != nil, "no new server\n\(c.logs())")
        #expect(elapsed <= Double(c.heartbeatMs) / 1000 + 1.0, "new server after \(elapsed) s\n\(c.logs())")
        let leader = try #require(newLeader)
        #expect(c.role(leader) == "leader")
        #expect((c.term(leader) ?? 0) > termBefore)

        // the old leader was fenced by the local fence script
        #expect(
            waitFor(seconds: 20) { (try? TempDir.readText("\(c.dir)/fenced.log"))?.contains("quorum_block_leader") == true } != nil,
            "no fence of the old leader\n\(c.logs())")
        #expect(waitFor(seconds: 10) { MountEnv.sh("mountpoint -q \(c.mnt(old))").0 != 0 } != nil, "old mount still there")

        // the survivors still work and see everything synced before the kill
        let other = survivors.first { $0 != leader }!
        #expect(readFile(c.mnt(leader) + "/before") == data)
        #expect(readFile(c.mnt(other) + "/from-survivor") == data)
        try writeFile(c.mnt(other) + "/after", data, fsync: true)
        #expect(readFile(c.mnt(leader) + "/after") == data)

        // the old leader's member comes back as a follower of the new leader
        try c.mount([old])
        #expect(waitFor(seconds: 10) { c.role(old) == "follower" } != nil, "\(c.quorumStatus(old) ?? [:])")
        #expect(c.term(old) == c.term(leader))
        #expect(readFile(c.mnt(old) + "/after") == data)
        leaders = all.filter { c.role($0) == "leader" }
        #expect(leaders == [leader])

        #expect(c.unmount(all) == 0, "\(c.logs())")
        #expect(MountEnv.sh("\(c.bin) print \(c.dir)/meta").0 == 0)
        let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
        #expect(check.0 == 0, "check: \(check.1)")
    }

    /// Members on separate hosts (their own loop devices, so their own page caches) read what
    /// the others wrote: new files, files rewritten in place, truncated and extended, with new
    /// metadata blocks every round. Through the host's page cache the readers saw stale
    /// metadata blocks ("stale block twice", EIO) and stale data.
    @Test func membersOnSeparateHostsReadEachOthersWrites() throws {
        let c = try Cluster.make()
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        for round in 0..<9 {
            let writer = round % 3
            let data = (0..<(150_000 + round * 4096)).map { UInt8(truncatingIfNeeded: $0 &* (round + 3) &+ round) }
            try writeFile(c.mnt(writer) + "/new\(round)", data, fsync: true)
            try writeFile(c.mnt(writer) + "/same", data, fsync: true)
            // in place: the same data blocks get new contents
            let patch = [UInt8](repeating: UInt8(round + 1), count: 8192)
            try overwrite(c.mnt(writer) + "/fixed", at: 4096, patch, create: round == 0)
            for reader in 0..<3 where reader != writer {
                #expect(readFile(c.mnt(reader) + "/new\(round)") == data, "round \(round): member \(reader) reading new\(round)\n\(c.logs())")
                #expect(readFile(c.mnt(reader) + "/same") == data, "round \(round): member \(reader) reading same")
                let fixed = readFile(c.mnt(reader) + "/fixed") ?? []
                #expect(fixed.count == 12288 && Array(fixed[4096...]) == patch, "round \(round): member \(reader) reading fixed")
            }
        }
        // every name is listed by every member
        for m in 0..<3 {
            let (_, out) = MountEnv.sh("ls \(c.mnt(m))")
            #expect(out.split(separator: "\n").count == 11, "member \(m) lists \(out)")
        }
        #expect(c.unmount([0, 1, 2]) == 0, "\(c.logs())")
        #expect(MountEnv.sh("\(c.bin) print \(c.dir)/meta").0 == 0)
        let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
        #expect(check.0 == 0, "check: \(check.1)")
    }

    /// A fence script that takes 10 s, under a 2 s heartbeat timeout, causes no second
    /// election: the new leader keeps heartbeating while its server waits for the fence.
    @Test func slowFenceCausesNoSecondElection() throws {
        let dir = try TempDir.make(prefix: "scoutfs-slowfence")
        defer { TempDir.remove(dir) }
        let script = dir + "/slow-fence"
        try writeText(script, "#!/bin/bash\nsleep 10\nexec \(MountEnv.root)/scripts/scoutfs-fence-local \"$@\"\n")
        chmod(script, 0o755)
        let c = try Cluster.make(fenceScript: script)
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        let all = [0, 1, 2]
        let old = try #require(c.leader(among: all), "\(c.logs())")
        #expect(waitFor(seconds: 10) { c.serverListening(old) } != nil)
        let survivors = all.filter { $0 != old }
        kill(try #require(c.daemonPid(old)), SIGKILL)

        var leader: Int?
        #expect(waitFor(seconds: 10) {
            leader = survivors.first { c.role($0) == "leader" }
            return leader != nil
        } != nil, "\(c.logs())")
        let elected = try #require(leader)
        let term = try #require(c.term(elected))
        // the server waits for the slow fence; meanwhile nobody stands for election again
        let up = waitFor(seconds: 20) {
            #expect(c.term(elected) == term, "term moved while fencing")
            for s in survivors { #expect(c.term(s) == term, "member \(s) changed term while the leader was fencing") }
            return c.serverListening(elected)
        }
        #expect(up != nil, "\(c.logs())")
        #expect((up ?? 0) >= 5, "the server came up before the slow fence finished")
        #expect(c.role(elected) == "leader")
        #expect(c.unmount(survivors) == 0, "\(c.logs())")
        let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
        #expect(check.0 == 0, "check: \(check.1)")
    }

    /// A slot not in the config, a slot taken by a live mount, and a heartbeat timeout out of
    /// range are refused with clear errors; the live heartbeat timeout can be changed.
    @Test func badSlotsAndLiveHeartbeatTimeout() throws {
        let c = try Cluster.make(heartbeatMs: 2000)
        defer { c.cleanup() }
        try c.mount([0, 1])
        // slot 5 is not configured
        var (rc, out) = MountEnv.sh(
            "timeout 30 \(c.bin) mount -o metadev_path=\(c.meta(2)),quorum_slot_nr=5 \(c.data(2)) \(c.mnt(2))")
        #expect(rc == 32 && out.contains("not a configured quorum slot"), "\(out)")
        // slot 1 is in use by a live mount
        (rc, out) = MountEnv.sh(
            "timeout 30 \(c.bin) mount -o metadev_path=\(c.meta(2)),quorum_slot_nr=1 \(c.data(2)) \(c.mnt(2))")
        #expect(rc == 32 && out.contains("in use"), "\(out)")
        // heartbeat timeout out of range, at mount and live
        (rc, out) = MountEnv.sh(
            "timeout 30 \(c.bin) mount -o metadev_path=\(c.meta(2)),quorum_slot_nr=2,quorum_heartbeat_timeout_ms=1999 \(c.data(2)) \(c.mnt(2))")
        #expect(rc == 32 && out.contains("quorum_heartbeat_timeout_ms"), "\(out)")
        (rc, out) = MountEnv.sh("\(c.bin) mount-option -p \(c.mnt(0)) quorum_heartbeat_timeout_ms 60001")
        #expect(rc != 0 && out.contains("between 2000 and 60000"), "\(out)")
        (rc, out) = MountEnv.sh("\(c.bin) mount-option -p \(c.mnt(0)) quorum_heartbeat_timeout_ms 7000")
        #expect(rc == 0, "\(out)")
        (rc, out) = MountEnv.sh("\(c.bin) mount-option -p \(c.mnt(0)) quorum_heartbeat_timeout_ms")
        #expect(out.contains("7000"), "\(out)")
        #expect(c.unmount([0, 1]) == 0, "\(c.logs())")
    }
}
}
