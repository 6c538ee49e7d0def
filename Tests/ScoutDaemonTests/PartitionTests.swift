import Glibc
import ScoutBlockIO
import ScoutFormat
import ScoutTestSupport
import Testing

@testable import ScoutDaemon

/// A member writing numbered files in its own directory `dMEMBER/` in the background, each
/// fsync'd, appending the number to `writer.MEMBER` once its fsync returned; it stops at the
/// first error, when `CLUSTER/stop` exists, or after 600 files.
struct PartitionWriter {
    let c: Cluster
    let slot: Int

    static func content(_ name: String) -> [UInt8] {
        Array(String(repeating: name + "\n", count: 8192 / (name.count + 1) + 1).utf8.prefix(8192))
    }

    func start() {
        let d = "\(c.mnt(slot))/d\(slot)"
        let script = """
            mkdir -p \(d) || exit 1
            i=0
            while [ ! -e \(c.dir)/stop ] && [ $i -lt 600 ]; do
              i=$((i+1)); n=w\(slot)-$i
              yes $n | head -c 8192 | dd of=\(d)/$n bs=8192 iflag=fullblock conv=fsync status=none || exit 1
              echo $i >> \(c.dir)/writer.\(slot)
              sleep 0.1
            done
            """
        try? writeText("\(c.dir)/writer.\(slot).sh", script)
        unlink("\(c.dir)/writer.\(slot).rc")
        MountEnv.sh("( timeout 300 bash \(c.dir)/writer.\(slot).sh > \(c.dir)/writer.\(slot).out 2>&1; echo $? > \(c.dir)/writer.\(slot).rc ) >/dev/null 2>&1 &")
    }

    /// How many files the writer has synced.
    var synced: Int {
        let text = (try? TempDir.readText("\(c.dir)/writer.\(slot)")) ?? ""
        return text.split(separator: "\n").last.flatMap { Int($0) } ?? 0
    }

    /// The writer's exit status once it ended.
    var exitStatus: Int32? {
        (try? TempDir.readText("\(c.dir)/writer.\(slot).rc")).flatMap { Int32($0.trimmingCharacters(in: " \n")) }
    }

    /// What the writer printed (its errors).
    var output: String { (try? TempDir.readText("\(c.dir)/writer.\(slot).out")) ?? "" }

    /// Waits until the writer synced `count` files; false when `seconds` passed first.
    func waitSynced(_ count: Int, seconds: Double) -> Bool { waitFor(seconds: seconds) { synced >= count } != nil }

    /// The writer's file names present in `dSLOT/` as `member` lists them, in number order.
    func names(on member: Int) -> [Int] {
        let (_, out) = MountEnv.sh("timeout 30 ls \(c.mnt(member))/d\(slot)")
        return out.split(separator: "\n").compactMap { $0.hasPrefix("w\(slot)-") ? Int($0.dropFirst("w\(slot)-".count)) : nil }.sorted()
    }

    /// The numbers in `numbers` whose file does not read back exactly on `member`.
    func badFiles(_ numbers: [Int], on member: Int) -> [Int] {
        numbers.filter { readFile("\(c.mnt(member))/d\(slot)/w\(slot)-\($0)") != Self.content("w\(slot)-\($0)") }
    }
}

/// Whether any thread of process `pid` still runs (exists and is not a zombie). `kill(pid, 0)`
/// also succeeds for a zombie nobody reaped yet, and a thread-group leader shows as a zombie
/// while its other threads still run.
func processRuns(_ pid: pid_t) -> Bool {
    guard let dir = opendir("/proc/\(pid)/task") else { return false }
    defer { closedir(dir) }
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard !name.hasPrefix("."), let stat = try? TempDir.readText("/proc/\(pid)/task/\(name)/stat"),
            let close = stat.lastIndex(of: ")")
        else { continue }
        let state = stat[stat.index(close, offsetBy: 2)...].prefix(1)
        if state != "Z" && state != "X" { return true }
    }
    return false
}

extension Cluster {
    /// Every file under a member's mountpoint with its checksum, sorted by path: equal lists
    /// on two members mean they see the same tree and contents.
    func tree(_ slot: Int) -> String {
        MountEnv.sh("cd \(mnt(slot)) && timeout 60 find . -type f -print0 | sort -z | xargs -0 -r cksum").1
    }

    /// The quorum block of a slot as the metadata image holds it now (read with O_DIRECT,
    /// as the members write it through their loop devices).
    func quorumBlock(_ slot: Int) -> QuorumBlock? {
        guard let dev = try? FileBlockDevice(path: dir + "/meta", writable: false) else { return nil }
        let b = BlockBuffer(size: Format.smallBlockSize)
        guard (try? dev.read(into: b, at: (Format.quorumBlkno + UInt64(slot)) << UInt64(Format.smallShift))) != nil else {
            return nil
        }
        return try? b.decode(QuorumBlock.self)
    }

    /// Waits (bounded) until the members settle after a member with a greater term joined:
    /// one leader whose server listens, which every member names as its leader, twice in a row
    /// a heartbeat timeout apart. A member mounted again after a partition may depose the
    /// leader with its greater term (when it stands before it has heard the leader), as a
    /// healed one does. The leader it deposed (slot `deposed`, `rid`, daemon `pid`) may then
    /// be fenced for `quorum_block_leader`: its server was still stopping when it voted, so the
    /// new leader found no stop in its quorum block (the original races the same way). Such a
    /// member is mounted again, and the members settle once more.
    func settle(_ all: [Int], deposed: Int, rid: UInt64, pid: pid_t) throws -> (leader: Int, deposedFenced: Bool) {
        func current() -> Int? {
            let leaders = all.filter { role($0) == "leader" }
            guard leaders.count == 1, serverListening(leaders[0]) else { return nil }
            let l = leaders[0]
            return all.allSatisfy { $0 == l || quorumStatus($0)?["leader"] == "\(l)" } ? l : nil
        }
        func settled() -> Int? {
            var found: Int?
            let ok = waitFor(seconds: 40) {
                guard let l = current() else { return false }
                usleep(useconds_t(heartbeatMs * 1000 + 500_000))
                found = l
                return current() == l
            }
            return ok == nil ? nil : found
        }
        var leader = settled()
        let fenced = !processRuns(pid)
        if fenced {
            #expect(fencedLog().contains("fencing rid \(rid.paddedHex) at IP \(address(deposed)) for quorum_block_leader"), "\(fencedLog())")
            #expect(waitFor(seconds: 20) { MountEnv.sh("mountpoint -q \(mnt(deposed))").0 != 0 } != nil, "the fenced mount is still there")
            try mount([deposed])
            leader = settled()
        }
        let status = all.map { (role($0) ?? "-", term($0) ?? 0, quorumStatus($0)?["leader"] ?? "-") }
        let l = try #require(leader, "the members did not settle on one leader: \(status)\n\(logs())")
        return (l, fenced)
    }

    /// Mounts the three members in their namespaces, waits for the leader's server, and starts
    /// a writer on every member; returns once each has synced three files.
    func mountAndStartWriters() throws -> (leader: Int, writers: [PartitionWriter]) {
        try mount([0, 1, 2])
        let leader = try #require(self.leader(among: [0, 1, 2]), "\(logs())")
        #expect(waitFor(seconds: 10) { serverListening(leader) } != nil, "\(logs())")
        let writers = (0..<3).map { PartitionWriter(c: self, slot: $0) }
        for w in writers { w.start() }
        for w in writers { #expect(w.waitSynced(3, seconds: 60), "member \(w.slot) does not write\n\(logs())") }
        return (leader, writers)
    }

    /// Every member lists the tree `reference` lists; then all unmount and `check` passes.
    func expectOneTreeAndACleanVolume(_ reference: Int) {
        let tree = self.tree(reference)
        #expect(!tree.isEmpty)
        for m in 0..<3 { #expect(self.tree(m) == tree, "member \(m) sees another tree") }
        #expect(unmount([0, 1, 2]) == 0, "\(logs())")
        let check = MountEnv.sh("\(bin) check \(dir)/meta \(dir)/data")
        #expect(check.0 == 0, "check: \(check.1)")
    }

    func fencedLog() -> String { (try? TempDir.readText(dir + "/fenced.log")) ?? "" }

    func stopWriters(_ writers: [PartitionWriter]) -> Bool {
        MountEnv.sh("touch \(dir)/stop")
        return waitFor(seconds: 60) { writers.allSatisfy { $0.exitStatus != nil } } != nil
    }
}

/// Members with network stacks of their own (`Cluster.make(networkNamespaces: true)`), one of
/// them cut off the others by taking its link down (issue 13): no split brain, the cut member
/// is fenced, the majority carries on, and the member mounts again once the link is back.
extension RealMounts {
@Suite(
    .serialized,
    .enabled(if: MountEnv.usable, "needs root, /dev/fuse and a built scoutfs"),
    .enabled(if: ClusterNetwork.usable, "needs network namespaces: ip netns add and nsenter (iproute2, util-linux)"))
struct PartitionTests {
    /// The leader is cut off while every member writes: the other two elect a new leader,
    /// whose server starts only once the agent has killed the old leader (fenced by rid); the
    /// survivors keep writing and read each other's files; nothing the old leader wrote appears
    /// after it was fenced, and everything it had synced is there; after the link comes back
    /// the old leader's member mounts again and all three see the same tree.
    @Test func aPartitionedLeaderIsFencedAndTheMajorityCarriesOn() throws {
        var c = try Cluster.make(networkNamespaces: true)
        // the survivors' connections to the cut leader break after 5 s without an answer
        c.mountOptions = "tcp_keepalive_timeout_ms=5000"
        defer { c.cleanup() }
        let net = try #require(c.network)
        let all = [0, 1, 2]
        let (old, writers) = try c.mountAndStartWriters()
        let termBefore = try #require(c.term(old))
        let oldRid = try #require(c.rid(old))
        let oldPid = try #require(c.daemonPid(old))
        let survivors = all.filter { $0 != old }

        try net.cut(old)
        let cut = monotonicSeconds()
        // a survivor leads in a greater term and serves, but never while the old leader lives
        var leader: Int?
        var splitBrain = false
        let elected = waitFor(seconds: 60) {
            if let l = survivors.first(where: { c.role($0) == "leader" }), c.serverListening(l) {
                splitBrain = splitBrain || processRuns(oldPid)
                leader = l
            }
            return leader != nil
        }
        let tookOver = monotonicSeconds() - cut
        #expect(elected != nil, "no survivor took over\n\(c.logs())")
        #expect(!splitBrain, "a survivor's server listened while the old leader's daemon still ran")
        let newLeader = try #require(leader)
        #expect((c.term(newLeader) ?? 0) > termBefore)
        // the agent fenced the old leader's rid for quorum_block_leader: its daemon is gone
        #expect(!processRuns(oldPid), "the old leader's daemon still runs")
        #expect(c.fencedLog().contains("fencing rid \(oldRid.paddedHex)"), "\(c.fencedLog())")
        #expect(c.fencedLog().contains("quorum_block_leader"), "\(c.fencedLog())")
        #expect(waitFor(seconds: 30) { writers[old].exitStatus != nil } != nil, "the old leader's writer never stopped")
        #expect(writers[old].exitStatus != 0)
        let oldSynced = writers[old].synced

        // the survivors keep writing through the new server and read each other's files
        let counts = survivors.map { writers[$0].synced }
        for (i, s) in survivors.enumerated() {
            #expect(writers[s].waitSynced(counts[i] + 5, seconds: 60), "member \(s) stopped writing\n\(c.logs())")
        }
        print("partitioned leader: new server after \(tookOver) s, survivors writing again after \(monotonicSeconds() - cut) s")
        // what the old leader left is fixed from the moment it was fenced
        let oldFiles = writers[old].names(on: newLeader)
        #expect(Array(1...max(1, oldSynced)).allSatisfy { oldFiles.contains($0) } || oldSynced == 0,
                "files the old leader synced are missing: synced \(oldSynced), present \(oldFiles)")
        #expect(writers[old].badFiles(oldFiles, on: newLeader).isEmpty)
        #expect(c.stopWriters(writers), "\(c.logs())")
        for s in survivors {
            let other = survivors.first { $0 != s }!
            let synced = Array(1...writers[s].synced)
            #expect(writers[s].badFiles(synced, on: other).isEmpty, "member \(other) reading member \(s)'s files")
        }

        // the link comes back; the old leader's member mounts again as a follower
        try net.heal(old)
        #expect(waitFor(seconds: 20) { MountEnv.sh("mountpoint -q \(c.mnt(old))").0 != 0 } != nil, "the fenced mount is still there")
        try c.mount([old])
        #expect(waitFor(seconds: 20) { c.role(old) == "follower" } != nil, "\(c.quorumStatus(old) ?? [:])")
        #expect(c.term(old) == c.term(newLeader))
        #expect(writers[old].names(on: old) == oldFiles, "the old leader's files changed after it was fenced")
        #expect(c.healthy(old, readOn: survivors[0], name: "after-heal"), "\(c.logs())")
        c.expectOneTreeAndACleanVolume(newLeader)
    }

    /// A follower (a client of the leader's server and a quorum member) is cut off: it never
    /// leads nor records an election, the leader keeps its term, the server fences the
    /// follower once its connection broke and its reconnect window ran out, the other two
    /// keep working; after the link is back the follower mounts again and sees everything.
    @Test func aPartitionedFollowerIsFencedAndRemounts() throws {
        var c = try Cluster.make(networkNamespaces: true)
        c.mountOptions = "tcp_keepalive_timeout_ms=5000"
        defer { c.cleanup() }
        let net = try #require(c.network)
        let all = [0, 1, 2]
        let (leader, writers) = try c.mountAndStartWriters()
        let term = try #require(c.term(leader))
        let cutOff = all.first { $0 != leader }!
        let other = all.first { $0 != leader && $0 != cutOff }!
        let rid = try #require(c.rid(cutOff))
        let pid = try #require(c.daemonPid(cutOff))

        try net.cut(cutOff)
        let cut = monotonicSeconds()
        var ledAlone = false, leaderMoved = false
        let fenced = waitFor(seconds: 90) {
            ledAlone = ledAlone || c.role(cutOff) == "leader"
            leaderMoved = leaderMoved || c.term(leader) != term || c.role(leader) != "leader"
            return !processRuns(pid)
        }
        let fencedAfter = monotonicSeconds() - cut
        #expect(fenced != nil, "the cut-off follower was not fenced\n\(c.logs())")
        #expect(!ledAlone, "the cut-off follower became leader on its own")
        #expect(!leaderMoved, "the majority's leader changed")
        #expect((c.quorumBlock(cutOff)?[.elect].term ?? 0) <= term, "the cut-off member recorded an election")
        #expect(c.fencedLog().contains("fencing rid \(rid.paddedHex)"), "\(c.fencedLog())")
        #expect(waitFor(seconds: 30) { writers[cutOff].exitStatus != nil } != nil, "the cut-off writer never stopped")
        let cutSynced = writers[cutOff].synced

        // the other two are unaffected: they keep writing and read each other's files
        let counts = [leader, other].map { writers[$0].synced }
        #expect(writers[leader].waitSynced(counts[0] + 5, seconds: 60), "the leader stopped writing\n\(c.logs())")
        #expect(writers[other].waitSynced(counts[1] + 5, seconds: 60), "member \(other) stopped writing\n\(c.logs())")
        print("partitioned follower: fenced after \(fencedAfter) s")
        let cutFiles = writers[cutOff].names(on: leader)
        #expect(cutSynced == 0 || Array(1...cutSynced).allSatisfy { cutFiles.contains($0) }, "synced \(cutSynced), present \(cutFiles)")
        #expect(writers[cutOff].badFiles(cutFiles, on: leader).isEmpty)
        #expect(c.stopWriters(writers), "\(c.logs())")
        #expect(writers[leader].badFiles(Array(1...writers[leader].synced), on: other).isEmpty)
        #expect(writers[other].badFiles(Array(1...writers[other].synced), on: leader).isEmpty)

        try net.heal(cutOff)
        #expect(waitFor(seconds: 20) { MountEnv.sh("mountpoint -q \(c.mnt(cutOff))").0 != 0 } != nil, "the fenced mount is still there")
        // mounted again, the member starts in the greatest term on disk, the one it climbed to
        // while cut off: it follows the leader it finds in the quorum blocks if it hears it
        // before it stands, else it deposes it
        let leaderRid = try #require(c.rid(leader)), leaderPid = try #require(c.daemonPid(leader))
        try c.mount([cutOff])
        let startTerm = try #require(c.term(cutOff))
        let settled = try c.settle(all, deposed: leader, rid: leaderRid, pid: leaderPid)
        print("partitioned follower: mounted again in term \(startTerm) (the leader's was \(term)); member \(settled.leader) leads, the deposed leader was \(settled.deposedFenced ? "" : "not ")fenced")
        #expect(writers[cutOff].names(on: cutOff) == cutFiles, "the cut-off member's files changed after it was fenced")
        #expect(c.healthy(cutOff, readOn: other, name: "after-heal"), "\(c.logs())")
        c.expectOneTreeAndACleanVolume(settled.leader)
    }

    /// A member alone on its side of a partition stands for election again and again (its term
    /// climbs) but never wins: one vote is not a majority of three. Neither its status nor its
    /// quorum block ever shows it leading, while the majority keeps its leader and term and
    /// keeps writing (each member in a directory of its own: a lock the cut-off member holds
    /// would wait for its fence). Once the link is back, within the reconnect window, the lone
    /// member's greater term deposes the leader (as in the original, there is no pre-vote); the
    /// three settle on one leader, the lone member's writes go on, unfenced; the deposed leader
    /// alone may be fenced (when the new leader finds its stop not yet recorded) and mounts
    /// again; every synced file is there and all three see one tree.
    @Test func aMinorityPartitionNeverElectsALeader() throws {
        let c = try Cluster.make(networkNamespaces: true)
        defer { c.cleanup() }
        let net = try #require(c.network)
        let all = [0, 1, 2]
        let (leader, writers) = try c.mountAndStartWriters()
        let term = try #require(c.term(leader))
        let alone = all.first { $0 != leader }!
        let other = all.first { $0 != leader && $0 != alone }!
        let pid = try #require(c.daemonPid(alone))

        try net.cut(alone)
        let majorityBefore = [leader, other].map { writers[$0].synced }
        // seven heartbeat timeouts, well within the 24 s a connection takes to break
        var ledAlone = false, leaderMoved = false, aloneTerm = term
        let end = monotonicSeconds() + 7 * Double(c.heartbeatMs) / 1000
        while monotonicSeconds() < end {
            let status = c.quorumStatus(alone)
            ledAlone = ledAlone || status?["role"]?.contains("leader") == true
            aloneTerm = max(aloneTerm, status?["term"].flatMap { UInt64($0) } ?? 0)
            leaderMoved = leaderMoved || c.term(leader) != term || c.role(leader) != "leader"
            if let q = c.quorumBlock(alone), q[.elect].term > term { ledAlone = true }
            usleep(200_000)
        }
        let aloneSynced = writers[alone].synced
        #expect(!ledAlone, "the member alone became leader\n\(c.logs())")
        #expect(!leaderMoved, "the majority's leader changed\n\(c.logs())")
        #expect(aloneTerm > term, "the member alone never stood for election (term \(aloneTerm))")
        #expect(c.serverListening(leader))
        #expect(writers[leader].synced >= majorityBefore[0] + 3 && writers[other].synced >= majorityBefore[1] + 3,
                "the majority stopped writing while a member was cut off: \(majorityBefore) then \([leader, other].map { writers[$0].synced })")

        // healed: the lone member's greater term deposes the leader (no pre-vote, as in the
        // original); the new leader fences the deposed one when its stop is not on disk yet
        // (its server was still stopping when it voted), and no other member
        let leaderRid = try #require(c.rid(leader)), aloneRid = try #require(c.rid(alone))
        let otherRid = try #require(c.rid(other)), leaderPid = try #require(c.daemonPid(leader))
        try net.heal(alone)
        #expect(writers[alone].waitSynced(aloneSynced + 3, seconds: 60), "the lone member's writes did not go on\n\(c.logs())")
        #expect(writers[other].waitSynced(writers[other].synced + 3, seconds: 60), "member \(other) stopped writing\n\(c.logs())")
        #expect(processRuns(pid), "the member alone was fenced\n\(c.fencedLog())")
        #expect(!c.fencedLog().contains(aloneRid.paddedHex) && !c.fencedLog().contains(otherRid.paddedHex), "\(c.fencedLog())")
        let settled = try c.settle(all, deposed: leader, rid: leaderRid, pid: leaderPid)
        let deposedFenced = settled.deposedFenced
        if deposedFenced {
            #expect(waitFor(seconds: 30) { writers[leader].exitStatus != nil } != nil, "the fenced member's writer never stopped")
        } else {
            #expect(writers[leader].waitSynced(writers[leader].synced + 3, seconds: 60), "the old leader stopped writing")
        }
        print("minority partition: the lone member reached term \(aloneTerm); after healing member \(settled.leader) leads, the deposed leader was \(deposedFenced ? "" : "not ")fenced")
        #expect(c.stopWriters(writers), "\(c.logs())")
        for w in writers where !(deposedFenced && w.slot == leader) {
            #expect(w.exitStatus == 0, "member \(w.slot)'s writer: \(w.output)\n\(c.logs())")
        }
        for w in writers {
            let synced = Array(1...w.synced)
            for m in all { #expect(w.badFiles(synced, on: m).isEmpty, "member \(m) reading member \(w.slot)'s files") }
        }
        c.expectOneTreeAndACleanVolume(settled.leader)
    }
}
}
