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
}
