import ArgumentParser
import ScoutFormat
import ScoutTestSupport
import Testing

@testable import ScoutCLI

/// Bad mkfs input gets the original's message and a non-zero exit, and touches nothing.
@Suite struct MkfsCommandTests {
    struct Run {
        var code: Int32
        var out: [String]
        var err: [String]
        var all: String { (out + err).joined(separator: "\n") }
    }

    static func mkfs(_ args: [String]) throws -> Run {
        let cmd = try MkfsCommand.parse(args)
        var out: [String] = []
        var err: [String] = []
        let code = cmd.execute(out: { out.append($0) }, err: { err.append($0) })
        return Run(code: code, out: out, err: err)
    }

    /// Two sparse device files; returns their paths and a fingerprint of their super areas.
    static func devices(meta: UInt64 = 256 << 20, data: UInt64 = 1 << 30) throws -> (String, String, String) {
        let dir = try TempDir.make(prefix: "mkfs")
        try TempDir.sparseFile(dir + "/meta.img", size: meta)
        try TempDir.sparseFile(dir + "/data.img", size: data)
        return (dir, dir + "/meta.img", dir + "/data.img")
    }

    /// The first 256 KiB: the super, the quorum blocks and the first btree and list blocks.
    static func head(_ path: String) throws -> [UInt8] {
        try TempDir.readBytes(path, count: 256 << 10)
    }

    @Test func makesAndRefusesToOverwrite() throws {
        let (dir, m, d) = try Self.devices()
        defer { TempDir.remove(dir) }
        let made = try Self.mkfs(["-A", "-Q", "0,127.0.0.1,42000", m, d])
        #expect(made.code == 0)
        #expect(made.out.first == "Created scoutfs filesystem:")
        let before = try Self.head(m)
        let again = try Self.mkfs(["-A", "-Q", "0,127.0.0.1,42000", m, d])
        #expect(again.code == 1)
        #expect(again.err.contains("\(m): appears to contain an existing ScoutFS superblock"))
        #expect(again.err.last == "scoutfs: mkfs failed: Invalid argument (22)")
        #expect(try Self.head(m) == before)
        let forced = try Self.mkfs(["-A", "-f", "-Q", "0,127.0.0.1,42000", m, d])
        #expect(forced.code == 0)
        #expect(try Self.head(m) != before)
    }

    @Test func tooSmallWithoutAllow() throws {
        let (dir, m, d) = try Self.devices()
        defer { TempDir.remove(dir) }
        let r = try Self.mkfs(["-Q", "0,127.0.0.1,42000", m, d])
        #expect(r.code == 1)
        #expect(r.err.first == "256.00MB too small for min 64.00GB meta device")
        #expect(try Self.head(m).allSatisfy { $0 == 0 })
    }

    @Test func missingDevice() throws {
        let (dir, _, d) = try Self.devices()
        defer { TempDir.remove(dir) }
        let r = try Self.mkfs(["-A", "-Q", "0,127.0.0.1,42000", dir + "/nope", d])
        #expect(r.code == 1)
        #expect(r.err.first == "failed to open meta dev '\(dir)/nope': No such file or directory (2)")
        #expect(r.err.last == "scoutfs: mkfs failed: No such file or directory (2)")
    }

    @Test(arguments: [
        (["-Q", "15,127.0.0.1,42000"], "invalid nr '15' in quorum slot '15,127.0.0.1,42000', must be between 0 and 14"),
        (["-Q", "0,127.0.0.1,0"], "invalid ipv4 port '0' in quorum slot '0,127.0.0.1,0', must be between 1 and 65535"),
        (["-Q", "0,127.0.0.1,65536"], "invalid ipv4 port '65536' in quorum slot '0,127.0.0.1,65536', must be between 1 and 65535"),
        (["-Q", "0,127.0.0.256,42000"], "invalid ipv4 address '127.0.0.256' in quorum slot '0,127.0.0.256,42000'"),
        (["-Q", "0,localhost,42000"], "invalid ipv4 address 'localhost' in quorum slot '0,localhost,42000'"),
        (["-Q", "0,127.0.0.1"], "failed to parse all three NR,ADDR,PORT tokens in quorum slot '0,127.0.0.1'"),
        (["-Q", "0,127.0.0.1,42000,9"], "extra unparsed trailing characters in quorum slot '0,127.0.0.1,42000,9'"),
        (["-Q", "0,127.0.0.1,42000", "-Q", "0,127.0.0.2,42000"], "mkfs: Quorum slot 0 already specified before slot '0,127.0.0.2,42000'\n"),
        (["-Q", "0,127.0.0.1,42000", "-Q", "1,127.0.0.1,42000"], "quorum slot nr 0 and 1 have the same address 127.0.0.1:42000"),
        (["-Q", "0,127.0.0.1,42000", "-V", "3"], "mkfs: format-version 3 is outside supported range of 1-2"),
        (["-Q", "0,127.0.0.1,42000", "-V", "0"], "mkfs: format-version 0 is outside supported range of 1-2"),
        (["-Q", "0,127.0.0.1,42000", "-z", "0"], "mkfs: must provide non-zero data-alloc-zone-blocks"),
        (["-Q", "0,127.0.0.1,42000", "-z", "1000"], "setting data_alloc_zone_blocks to '1000' failed, must be at least 1048576 mount data allocation target blocks"),
        (["-Q", "0,127.0.0.1,42000", "-m", "10Q"], "unknown suffix: 'Q'"),
        ([], "mkfs: must specify at least one quorum slot with --quorum-slot|-Q"),
    ])
    func badInput(args: [String], message: String) throws {
        let (dir, m, d) = try Self.devices()
        defer { TempDir.remove(dir) }
        let r = try Self.mkfs(["-A"] + args + [m, d])
        #expect(r.code != 0)
        #expect(r.all.contains(message), "got: \(r.all)")
        #expect(try Self.head(m).allSatisfy { $0 == 0 }, "the meta device was written")
    }
}
