import Glibc
import ScoutFormat
import ScoutServer
import ScoutTestSupport
import Synchronization
import Testing

@testable import ScoutDaemon

/// The rules of fencing without an agent (`LocalFence`) on registry entries alone (no mount:
/// the entries have no device), and how `FenceRequests` uses a local fencer.
@Suite struct LocalFenceTests {
    static func entry(rid: UInt64, pid: Int32, start: UInt64) -> MountRegistry.Entry {
        MountRegistry.Entry(rid: rid, pid: pid, pidStart: start, mountpoint: "/nowhere", dataDevice: "/nowhere/data", controlSocket: "")
    }

    @Test func onlyARegisteredDaemonProvablyGoneIsFenced() throws {
        let dir = try TempDir.make(prefix: "localfence")
        defer { TempDir.remove(dir) }
        let reg = MountRegistry(runDirectory: dir)
        let fence = LocalFence(registry: reg)
        let parent = getppid()
        let parentStart = try #require(MountRegistry.startTime(pid: parent))

        // another host's rid: no entry here
        #expect(fence.verdict(rid: 1) == .notHere)
        #expect(fence.fence(rid: 1) == nil)
        // a running daemon (pid and start time match), ourselves, and an entry without a start
        // time (nothing proves it gone) are never fenced
        try reg.register(Self.entry(rid: 2, pid: parent, start: parentStart))
        try reg.register(Self.entry(rid: 3, pid: getpid(), start: 12345))
        try reg.register(Self.entry(rid: 4, pid: parent, start: 0))
        for rid: UInt64 in [2, 3, 4] {
            #expect(fence.fence(rid: rid) == nil, "rid \(rid)")
            #expect(try reg.lookup(rid: rid) != nil, "rid \(rid)")
        }
        // a pid of another pid namespace (a container sharing the run directory) proves nothing
        var other = Self.entry(rid: 10, pid: parent, start: parentStart + 1)
        other.pidNamespace = "pid:[1]"
        try reg.register(other)
        #expect(fence.verdict(rid: 10) == .running(pid: parent))
        #expect(try reg.lookup(rid: 10)?.pidNamespace == "pid:[1]")
        #expect(try reg.lookup(rid: 2)?.pidNamespace == MountRegistry.ownPidNamespace)
        #expect(MountRegistry.ownPidNamespace.hasPrefix("pid:["))
        // a reused pid (another start time) is not the daemon: it is gone
        try reg.register(Self.entry(rid: 5, pid: parent, start: parentStart + 1))
        let why = try #require(fence.fence(rid: 5))
        #expect(why.contains("pid \(parent)") && why.contains("is gone"), "\(why)")
        #expect(try reg.lookup(rid: 5) == nil)
        #expect(fence.fence(rid: 5) == nil)
        // a pid that no longer exists
        var child: pid_t = 0
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { free(argv[0]) }
        #expect(posix_spawn(&child, "/bin/true", nil, nil, &argv, environ) == 0)
        let childStart = MountRegistry.startTime(pid: child) ?? 1
        var status: Int32 = 0
        waitpid(child, &status, 0)
        try reg.register(Self.entry(rid: 6, pid: child, start: childStart))
        #expect(fence.verdict(rid: 6) == .gone(Self.entry(rid: 6, pid: child, start: childStart)))
        #expect(fence.fence(rid: 6) != nil)

        // the boot-surviving copy (a reboot emptied the run directory): an entry of an earlier
        // boot of this installation is gone; of this boot, or of another installation, not
        for (rid, boot, machine, gone) in [
            (UInt64(20), "another-boot", MountRegistry.currentMachineID, true),
            (21, MountRegistry.currentBootID, MountRegistry.currentMachineID, false),
            (22, "another-boot", "another-machine", false),
        ] {
            var e = Self.entry(rid: rid, pid: parent, start: parentStart)
            e.bootID = boot
            e.machineID = machine
            try reg.register(e)
            unlink(reg.path(rid: rid))
            #expect((fence.verdict(rid: rid) == .notHere) == !gone, "rid \(rid)")
            #expect((fence.fence(rid: rid) != nil) == gone, "rid \(rid)")
            #expect(access(reg.stateDirectory + "/" + rid.paddedHex, F_OK) == (gone ? -1 : 0), "rid \(rid)")
        }
    }

    /// A daemon whose main thread exited while its other threads run on: /proc/PID/stat says
    /// zombie (Z), but the process lives and may still write. It counted as gone, and was
    /// fenced without being killed; now both `LocalFence` and the script see it running, and
    /// the script kills it.
    @Test func aDaemonWithAZombieMainThreadIsStillRunning() throws {
        let dir = try TempDir.make(prefix: "localfence")
        defer { TempDir.remove(dir) }
        let reg = MountRegistry(runDirectory: dir)
        var child: pid_t = 0
        let code = "import threading, time, ctypes\n"
            + "threading.Thread(target=lambda: time.sleep(60)).start()\n"
            + "ctypes.CDLL(None).pthread_exit(None)\n"
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("python3"), strdup("-c"), strdup(code), nil]
        defer { for a in argv { free(a) } }
        try #require(posix_spawnp(&child, "python3", nil, nil, &argv, environ) == 0)
        var reaped = false
        defer {
            if !reaped {
                kill(child, SIGKILL)
                waitpid(child, nil, 0)
            }
        }
        let start = try #require(MountRegistry.startTime(pid: child))
        let zombieMain = waitFor(seconds: 10) { MountRegistry.stateAndStartTime(pid: child)?.state == "Z" }
        try #require(zombieMain != nil, "python3's main thread did not exit")
        let e = Self.entry(rid: 30, pid: child, start: start)
        try reg.register(e)
        #expect(MountRegistry.isRunning(e))
        #expect(LocalFence(registry: reg).verdict(rid: 30) == .running(pid: child))

        let (rc, out) = MountEnv.sh(
            "SCOUTFS_RUN_DIR=\(dir) SCOUTFS_FENCED_REQ_RID=\(UInt64(30).paddedHex) SCOUTFS_FENCED_REQ_IP=127.0.0.1 "
                + "timeout 60 bash \(MountEnv.root)/scripts/scoutfs-fence-local")
        #expect(rc == 0, "\(out)")
        #expect(out.contains("killing mount daemon \(child)"), "\(out)")
        #expect(!out.contains("is not running"), "\(out)")
        var status: Int32 = 0
        #expect(waitpid(child, &status, 0) == child)
        reaped = true
        #expect((status & 0x7f) == SIGKILL)
        #expect(try reg.lookup(rid: 30) == nil)
    }

    @Test func aLocallyFencedRequestIsAnsweredAtOnce() {
        let asked = Mutex<[UInt64]>([])
        let fences = FenceRequests(localFencer: { request in
            asked.withLock { $0.append(request.rid) }
            return request.rid == 7 ? "its daemon is gone" : nil
        })
        #expect(fences.start(rid: 7, ipv4: 0x7f00_0001, reason: .quorumBlockLeader))
        #expect(fences.start(rid: 8, ipv4: 0x7f00_0001, reason: .clientRecovery))
        let seven = fences.request(rid: 7)
        #expect(seven?.fenced == true && seven?.localReason == "its daemon is gone")
        #expect(fences.request(rid: 8)?.isPending == true)
        #expect(fences.answered().map(\.rid) == [7])
        // only when the local fencer can fence: otherwise nothing is recorded
        #expect(!fences.startIfFencedLocally(rid: 9, ipv4: 0, reason: .clientRecovery))
        #expect(fences.request(rid: 9) == nil)
        fences.remove(rid: 7)
        #expect(fences.startIfFencedLocally(rid: 7, ipv4: 0, reason: .clientRecovery))
        #expect(fences.request(rid: 7)?.fenced == true)
        #expect(asked.withLock { $0 } == [7, 8, 9, 7])
    }

    @Test func anUnansweredRequestNamesTheRidItsAddressTheReasonAndWhatToRun() {
        let now = Mutex<UInt64>(0)
        let fences = FenceRequests(clock: { now.withLock { $0 } })
        fences.start(rid: 0xabc, ipv4: 0x7f00_0003, reason: .clientRecovery)
        now.withLock { $0 = FenceRequests.expiryNs }
        let r = fences.request(rid: 0xabc)
        #expect(r?.error == true && r?.expired == true)
        let message = r?.failureMessage ?? ""
        #expect(message.contains("rid 0000000000000abc at 127.0.0.3 (client_recovery)"), "\(message)")
        #expect(message.contains("within 30 s") && message.contains("scoutfs fenced"), "\(message)")
        fences.start(rid: 0xdef, ipv4: 0x7f00_0003, reason: .clientReconnect)
        fences.answer(rid: 0xdef, fenced: false)
        #expect(fences.request(rid: 0xdef)?.failureMessage.contains("the fencing agent failed") == true)
    }
}
