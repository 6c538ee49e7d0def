import Glibc
import ScoutBlockIO
import ScoutFormat
import ScoutTestSupport
import Testing

/// `scoutfs resize-devices` on a mounted volume: the devices' files grow with truncate, the
/// server adds the new blocks, and the space is there at once.
extension RealMounts {
@Suite("Online resize of a mounted volume", .serialized, .enabled(if: MountEnv.usable), .timeLimit(.minutes(5)))
struct ResizeMountTests {
    static func statfsField(_ v: MountedVolume, _ field: String) -> UInt64? {
        let (rc, out) = MountEnv.sh("\(MountEnv.binary) statfs -p \(v.mnt) -s \(field)")
        return rc == 0 ? UInt64(out.trimmingCharacters(in: " \n")) : nil
    }

    static func dataBlocks(_ v: MountedVolume) -> UInt64? {
        var st = statvfs()
        return statvfs(v.mnt, &st) == 0 ? UInt64(st.f_blocks) : nil
    }

    /// Writes `bytes` of a pattern to `path` and fsyncs; returns the errno of the first
    /// failure, 0 when all of it is on the devices.
    static func fill(_ path: String, bytes: Int) -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0x5a, count: 1 << 20)
        var done = 0
        while done < bytes {
            let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, min($0.count, bytes - done)) }
            if n < 0 { return errno }
            done += n
        }
        return fsync(fd) == 0 ? 0 : errno
    }

    static func superBlock(_ path: String) throws -> SuperBlock {
        try MetaDevice.readSuper(from: FileBlockDevice(path: path, writable: false, direct: false))
    }

    @Test func growsBothDevicesOnline() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        // a small volume: 2 GiB of metadata, 64 MiB of data
        let meta = v.dir + "/meta", data = v.dir + "/data"
        #expect(truncate(meta, 0) == 0 && truncate(meta, 2 << 30) == 0)
        #expect(truncate(data, 0) == 0 && truncate(data, 64 << 20) == 0)
        let made = MountEnv.sh("\(MountEnv.binary) mkfs -A -f -V 1 -Q 0,127.0.0.1,\(v.port) \(meta) \(data)")
        try #require(made.0 == 0, "mkfs: \(made.1)")
        try v.mount()
        let resize = "env SCOUTFS_RUN_DIR=\(v.dir)/run \(MountEnv.binary) resize-devices -p \(v.mnt)"

        #expect(Self.statfsField(v, "total_meta_blocks") == 2 << 14)
        #expect(Self.statfsField(v, "total_data_blocks") == 16384)
        #expect(Self.dataBlocks(v) == 16384)
        // 100 MiB does not fit
        let full = Self.fill(v.mnt + "/big", bytes: 100 << 20)
        #expect(full == ENOSPC, "writing 100 MiB into 64 MiB: errno \(full)")
        #expect(unlink(v.mnt + "/big") == 0)
        #expect(MountEnv.sh("env SCOUTFS_RUN_DIR=\(v.dir)/run \(MountEnv.binary) sync -p \(v.mnt)").0 == 0)

        // refused: a shrink, more than the devices hold; nothing changes
        for (args, what) in [("-d 32M", "shrink"), ("-d 1G", "beyond the data device"), ("-m 8G", "beyond the meta device")] {
            let (rc, out) = MountEnv.sh("\(resize) \(args)")
            #expect(rc == 1, "\(what)")
            #expect(out == "resize_devices ioctl failed: Invalid argument (22)\nscoutfs: resize-devices failed: Invalid argument (22)\n", "\(what): \(out)")
        }
        #expect(Self.statfsField(v, "total_meta_blocks") == 2 << 14)
        #expect(Self.statfsField(v, "total_data_blocks") == 16384)

        // the devices grow, then the volume
        #expect(truncate(meta, 3 << 30) == 0)
        #expect(truncate(data, 256 << 20) == 0)
        let unaligned = MountEnv.sh("\(resize) -m 3G -d \((256 << 20) + 100)")
        #expect(unaligned.0 == 0, "\(unaligned.1)")
        #expect(unaligned.1 == "data device size \((256 << 20) + 100) is not a multiple of 4096 data block size, truncating down to \(256 << 20) byte size\n")
        #expect(Self.statfsField(v, "total_meta_blocks") == 3 << 14)
        #expect(Self.statfsField(v, "total_data_blocks") == 65536)
        #expect(Self.dataBlocks(v) == 65536)
        let df = MountEnv.sh("env SCOUTFS_RUN_DIR=\(v.dir)/run \(MountEnv.binary) df -p \(v.mnt)")
        #expect(df.0 == 0)
        #expect(df.1.contains("49152") && df.1.contains("65536"), "df: \(df.1)")
        // the same sizes again change nothing
        #expect(MountEnv.sh("\(resize) -m 3G -d 256M").0 == 0)

        // the offline commands refuse the mounted volume
        for (args, purpose) in [
            ("change-quorum-config -F -Q 0,127.0.0.1,\(v.port + 1) \(meta)", "to change the quorum config"),
            ("change-format-version -F \(meta) \(data)", "to change the format version"),
            ("prepare-empty-data-device --check \(meta)", "to determine if the data device is empty."),
        ] {
            let (rc, out) = MountEnv.sh("\(MountEnv.binary) \(args)")
            #expect(rc == 1, "\(args): \(out)")
            #expect(out.contains("meta superblock mounted clients btree is not empty.\n"), "\(args): \(out)")
            #expect(out.contains("The filesystem must be fully recovered and cleanly unmounted \(purpose)\n"), "\(args): \(out)")
            #expect(out.contains("failed: Device or resource busy (16)\n"), "\(args): \(out)")
        }

        // what did not fit before does now, and reads back
        let grown = Self.fill(v.mnt + "/big", bytes: 100 << 20)
        #expect(grown == 0, "writing 100 MiB into 256 MiB: errno \(grown)")
        let sum = MountEnv.sh("md5sum < \(v.mnt)/big; head -c \(100 << 20) /dev/zero | tr '\\0' Z | md5sum")
        let sums = sum.1.split(separator: "\n")
        #expect(sums.count == 2 && sums[0] == sums[1], "\(sum.1)")
        #expect(v.unmount() == 0)

        // remounted, the totals stay, and the volume is consistent
        try v.mount()
        #expect(Self.statfsField(v, "total_data_blocks") == 65536)
        #expect(v.unmount() == 0)
        // the refused commands changed nothing; unmounted, the format version goes up
        let sb = try Self.superBlock(meta)
        #expect(sb.qconf.version == 1 && sb.qconf.slots[0].port == UInt16(v.port) && sb.fmtVers == 1)
        #expect(sb.totalMetaBlocks == 3 << 14 && sb.totalDataBlocks == 65536)
        let cfv = MountEnv.sh("\(MountEnv.binary) change-format-version -F \(meta) \(data)")
        #expect(cfv.0 == 0 && cfv.1.contains("  format version:       2\n"), "\(cfv.1)")
        let check = MountEnv.sh("\(MountEnv.binary) check \(meta) \(data)")
        #expect(check.0 == 0, "check: \(check.1)")
    }

    /// Three members, each on its own loop devices: a follower asks, the leader's server grows
    /// the volume, and every member sees the new totals and uses the new space.
    @Test func growsAClusterFromAFollower() throws {
        let c = try Cluster.make(mkfsOptions: "-m 2G -d 256M")
        defer { c.cleanup() }
        try c.mount([0, 1, 2])
        guard let leader = c.leader(among: [0, 1, 2]) else {
            Issue.record("no leader\n\(c.logs())")
            return
        }
        let followers = [0, 1, 2].filter { $0 != leader }
        func totals(_ m: Int) -> String {
            MountEnv.sh("\(c.bin) statfs -p \(c.mnt(m)) | grep total_").1
        }
        for m in 0..<3 { #expect(totals(m) == "total_meta_blocks 32768\ntotal_data_blocks 65536\n", "member \(m)") }
        let r = MountEnv.sh("\(c.bin) resize-devices -p \(c.mnt(followers[0])) -m 3G -d 1G")
        #expect(r.0 == 0, "\(r.1)\n\(c.logs())")
        for m in 0..<3 { #expect(totals(m) == "total_meta_blocks 49152\ntotal_data_blocks 262144\n", "member \(m)") }
        // more than the whole volume held before, written by the other follower
        let big = c.mnt(followers[1]) + "/big"
        #expect(Self.fill(big, bytes: 400 << 20) == 0, "\(c.logs())")
        let sums = MountEnv.sh("md5sum < \(c.mnt(leader))/big; head -c \(400 << 20) /dev/zero | tr '\\0' Z | md5sum").1.split(separator: "\n")
        #expect(sums.count == 2 && sums[0] == sums[1], "\(sums)")
        #expect(c.unmount([0, 1, 2]) == 0, "\(c.logs())")
        let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
        #expect(check.0 == 0, "check: \(check.1)")
    }
}
}
