import Foundation
import ScoutBlockIO
import ScoutFormat
import ScoutStorage
import ScoutTestSupport
import Testing

@testable import ScoutCLI

/// `scoutfs check META-DEVICE DATA-DEVICE`: its output, exit status and errors.
@Suite struct CheckCommandTests {
    static func run(_ meta: String, _ data: String) -> (status: Int32, out: String, err: String) {
        var out = ""
        var err = ""
        let status = CheckCommand.execute(metaPath: meta, dataPath: data, output: &out, diagnostics: &err, progress: false)
        return (status, out, err)
    }

    static func mtime(_ path: String) throws -> Date {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date)
    }

    @Test func cleanGoldenVolumeExitsZeroWithOneSummaryLine() throws {
        let dir = try Golden.unpack("one-slot-v2")
        defer { TempDir.remove(String(dir[..<(dir.lastIndex(of: "/") ?? dir.endIndex)])) }
        let before = try Self.mtime(dir + "/meta.img")
        let r = Self.run(dir + "/meta.img", dir + "/data.img")
        #expect(r.status == 0)
        #expect(r.err == "")
        #expect(r.out == "check: clean: meta 5 referenced + 4089 free + 0 lost of 4094 blocks, data 0 in files + 262080 free + 0 lost of 262080 blocks, 1 inodes, 2 fs items, 4 btree blocks in 4 trees, 0 log trees\n")
        // read-only: nothing was written
        #expect(try Self.mtime(dir + "/meta.img") == before)
    }

    @Test func progressLineIsRewrittenAndErased() throws {
        let dir = try Golden.unpack("one-slot-v2")
        defer { TempDir.remove(String(dir[..<(dir.lastIndex(of: "/") ?? dir.endIndex)])) }
        var out = ""
        var err = ""
        let status = CheckCommand.execute(
            metaPath: dir + "/meta.img", dataPath: dir + "/data.img", output: &out, diagnostics: &err, progress: true, progressAfter: 0)
        #expect(status == 0)
        #expect(err.hasPrefix("\rcheck: allocators, 0 metadata blocks read (0% of the device)\u{1b}[K"), "\(err.debugDescription)")
        #expect(err.hasSuffix("\r\u{1b}[K"))
        #expect(out.hasPrefix("check: clean: "))
        // not shown for a check that ends within the delay
        err = ""
        _ = CheckCommand.execute(metaPath: dir + "/meta.img", dataPath: dir + "/data.img", output: &out, diagnostics: &err, progress: true)
        #expect(err == "")
    }

    @Test func damageIsReportedByBlknoAndExitsOne() throws {
        let dir = try Golden.unpack("one-slot-v2")
        defer { TempDir.remove(String(dir[..<(dir.lastIndex(of: "/") ?? dir.endIndex)])) }
        let dev = try FileBlockDevice(path: dir + "/meta.img", writable: true)
        let sb = try MetaDevice.readSuper(from: dev)
        let blkno = sb.fsRoot.ref.blkno
        let buf = BlockBuffer(size: Format.largeBlockSize)
        try dev.read(into: buf, at: blkno << UInt64(Format.largeShift))
        buf.setU8(1000, buf.u8(1000) ^ 1)
        try dev.write(buf, at: blkno << UInt64(Format.largeShift))
        try dev.sync()
        let r = Self.run(dir + "/meta.img", dir + "/data.img")
        #expect(r.status == 1)
        #expect(r.err == "")
        let lines = r.out.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("meta block \(blkno): bad checksum ") == true, "\(lines)")
        #expect(lines.first?.hasSuffix(" in fs_root") == true, "\(lines)")
        #expect(lines.count == 2)
        #expect(lines.last?.hasPrefix("check: 1 problem found: meta 5 referenced + 4089 free + 0 lost of 4094 blocks, ") == true, "\(lines)")
    }

    @Test func unreadableDevicesFailTheOriginalsWay() throws {
        let r = Self.run("/no/such/meta", "/no/such/data")
        #expect(r.status == 1)
        #expect(r.out == "")
        #expect(r.err == "failed to open meta device '/no/such/meta': No such file or directory (2)\nscoutfs: check failed: No such file or directory (2)\n")
    }

    @Test func devicesGivenTheWrongWayRound() throws {
        let dir = try Golden.unpack("one-slot-v1")
        defer { TempDir.remove(String(dir[..<(dir.lastIndex(of: "/") ?? dir.endIndex)])) }
        let r = Self.run(dir + "/data.img", dir + "/meta.img")
        #expect(r.status == 1)
        #expect(r.out == "meta super block: the device is a data device (IS_META_BDEV not set)\n")
        #expect(r.err == "scoutfs: check failed: Invalid argument (22)\n")
    }

    @Test func binaryTakesTwoDevices() throws {
        try #require(access(Proc.binary, X_OK) == 0, "build the scoutfs binary first (swift build --build-tests)")
        let dir = try Golden.unpack("three-slots-v2")
        defer { TempDir.remove(String(dir[..<(dir.lastIndex(of: "/") ?? dir.endIndex)])) }
        let r = try Proc.run([Proc.binary, "check", dir + "/meta.img", dir + "/data.img"])
        #expect(r.0 == 0)
        #expect(r.1.hasPrefix("check: clean: "))
        #expect(try Proc.run([Proc.binary, "check", dir + "/meta.img"]).0 == 64)
    }

    /// `check -u`: the summary, then where the blocks go; the per-structure blocks add up to the
    /// referenced ones of the summary (5 on the golden volume: fs root, mounted clients,
    /// meta_alloc, data_alloc and the server's avail list), divided by its one inode.
    @Test func usageFollowsTheSummary() throws {
        try #require(access(Proc.binary, X_OK) == 0, "build the scoutfs binary first (swift build --build-tests)")
        let dir = try Golden.unpack("one-slot-v2")
        defer { TempDir.remove(String(dir[..<(dir.lastIndex(of: "/") ?? dir.endIndex)])) }
        for flag in ["-u", "--metadata-usage"] {
            let r = try Proc.run([Proc.binary, "check", flag, dir + "/meta.img", dir + "/data.img"])
            #expect(r.0 == 0)
            let lines = r.1.split(separator: "\n").map(String.init)
            #expect(lines.first?.hasPrefix("check: clean: meta 5 referenced") == true)
            #expect(lines.dropFirst().first == "metadata blocks by structure (64 KiB each):")
            #expect(lines.contains("  total: 5 blocks, 320.0 KiB, 327680.0 bytes/file"))
            #expect(lines.contains { $0.hasPrefix("  fs_root: 1 leaves, 0 parents, leaf fill ") })
            #expect(lines.contains { $0.hasPrefix("  fs_root: inode: 1 items, 0.2 KiB, 224.0 bytes/item") })
        }
        // without the flag: the summary alone
        #expect(try Proc.run([Proc.binary, "check", dir + "/meta.img", dir + "/data.img"]).1.split(separator: "\n").count == 1)
    }
}
