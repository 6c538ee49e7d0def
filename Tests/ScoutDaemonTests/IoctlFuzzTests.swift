import CFuseKernel
import Glibc
import ScoutIoctl
import ScoutTestSupport
import Testing

extension RealMounts {
    /// Bad input at every ioctl number: random structs, random and bad pointers, unaligned
    /// offsets, huge lengths, handles opened read-only, write-only and read-write, and a
    /// directory. Every call must get an errno (never EIO, never a crash), the mount must keep
    /// answering, and no committed byte may change.
    @Suite("Ioctl fuzzing on a real mount")
    struct IoctlFuzzTests {
        /// The numbers to aim at: every command of the ABI, and neighbours with wrong sizes
        /// and directions.
        static let commands: [IoctlCommand] = [
            .walkInodes, .inoPath, .release, .stage, .statMore, .dataWaiting, .setattrMore, .listxattrHidden,
            .searchXattrs, .statfsMore, .dataWaitErr, .allocDetail, .moveBlocks, .resizeDevices, .readXattrTotals,
            .getAllocatedInos, .getReferringEntries, .getAttrX, .setAttrX, .getQuotaRules, .addQuotaRule,
            .delQuotaRule, .readXattrIndex, .punchOffline, .injectTotlDelta, .getFiemap,
        ]

        @Test(.enabled(if: MountEnv.usable)) func randomArgumentsAtEveryIoctl() throws {
            let v = try MountedVolume.make()
            defer { v.cleanup() }
            try v.mount()
            // SCOUT_IOCTL_FUZZ_SEED=N runs another seed (failures name their round)
            let seed = getenv("SCOUT_IOCTL_FUZZ_SEED").flatMap { UInt64(String(cString: $0)) } ?? 1
            var rng = SplitMix64(seed: seed)
            var payload = [UInt8](repeating: 0, count: 1 << 20)
            for i in payload.indices { payload[i] = UInt8(truncatingIfNeeded: rng.next()) }
            try writeFile(v.mnt + "/data", payload, fsync: true)
            try writeFile(v.mnt + "/small", Array("small file".utf8), fsync: true)
            mkdir(v.mnt + "/dir", 0o755)
            try writeFile(v.mnt + "/dir/inner", Array("inner".utf8), fsync: true)

            let fds = [
                open(v.mnt + "/data", O_RDONLY), open(v.mnt + "/data", O_WRONLY), open(v.mnt + "/small", O_RDWR),
                open(v.mnt + "/dir", O_RDONLY | O_DIRECTORY), open(v.mnt + "/data", O_RDWR | O_APPEND),
            ]
            defer { for fd in fds where fd >= 0 { close(fd) } }
            #expect(fds.allSatisfy { $0 >= 0 })

            // valid pointers point into a region larger than anything the daemon writes back
            let scratchSize = 80 << 20
            let scratch = mmap(nil, scratchSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
            defer { munmap(scratch, scratchSize) }
            let readOnly = mmap(nil, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
            defer { munmap(readOnly, 4096) }
            let arg = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
            defer { arg.deallocate() }

            var errnos: [Int32: Int] = [:]
            var successes = 0
            let rounds = 3000
            for round in 0..<rounds {
                var cmd = Self.commands[Int(rng.next() % UInt64(Self.commands.count))]
                switch rng.next() % 8 {
                case 0: cmd = IoctlCommand(.write, UInt32(rng.next() % 80), size: Int(rng.next() % 200))
                case 1: cmd = IoctlCommand(IoctlCommand.Direction(rawValue: UInt32(rng.next() % 4))!, cmd.number, size: cmd.size)
                default: break
                }
                for i in 0..<4096 { arg.storeBytes(of: UInt8(truncatingIfNeeded: rng.next()), toByteOffset: i, as: UInt8.self) }
                // aim the u64 fields that hold pointers, offsets and lengths at interesting values
                for off in stride(from: 0, to: 128, by: 8) where rng.next() % 2 == 0 {
                    let v: UInt64
                    switch rng.next() % 9 {
                    case 0: v = UInt64(UInt(bitPattern: scratch)) + rng.next() % 4096
                    case 1: v = 0
                    case 2: v = 0xdead_0000_0000 + rng.next() % 4096  // unmapped
                    case 3: v = UInt64(UInt(bitPattern: readOnly))  // not writable
                    case 4: v = rng.next() % 16 * 4096  // aligned offsets
                    case 5: v = rng.next() % 100_000  // unaligned ones
                    case 6: v = .max - rng.next() % 4096  // huge
                    case 7: v = UInt64(fds[Int(rng.next() % UInt64(fds.count))])  // a descriptor
                    default: v = rng.next() % 8
                    }
                    arg.storeBytes(of: v, toByteOffset: off, as: UInt64.self)
                }
                let fd = fds[Int(rng.next() % UInt64(fds.count))]
                let start = monotonicSeconds()
                let rc = cfk_ioctl_ptr(fd, UInt(cmd.rawValue), arg)
                let e = errno
                let took = monotonicSeconds() - start
                #expect(took < 10, "round \(round): \(cmd) took \(took) s")
                if rc < 0 {
                    errnos[e, default: 0] += 1
                    #expect(e != EIO && e != ENOSYS, "round \(round): \(cmd) on fd \(fd) gave errno \(e)")
                } else {
                    successes += 1
                }
                if round % 250 == 0 {
                    var st = stat()
                    #expect(stat(v.mnt + "/dir/inner", &st) == 0, "round \(round): the mount stopped answering")
                }
            }
            print("ioctl fuzz: \(rounds) calls, \(successes) succeeded, errnos \(errnos.sorted { $0.key < $1.key })")
            for fd in fds where fd >= 0 { close(fd) }
            #expect(readFile(v.mnt + "/data") == payload)
            #expect(readFile(v.mnt + "/small") == Array("small file".utf8))
            // committed: the same bytes after a remount
            #expect(v.unmount() == 0)
            try v.mount()
            #expect(readFile(v.mnt + "/data") == payload)
            #expect(readFile(v.mnt + "/dir/inner") == Array("inner".utf8))
            #expect(v.unmount() == 0)
        }
    }
}
