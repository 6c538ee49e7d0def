import Glibc
import ScoutBlockIO
import ScoutFormat
import ScoutTestSupport
import Testing

/// The offline admin commands (change-quorum-config, change-format-version,
/// prepare-empty-data-device) and resize-devices' own checks, run as the built binary on
/// image files: their output and exit status, that a refused command leaves the devices as
/// they were, and (where the original utility is built on this machine) that both print the
/// same lines for the same input.
@Suite(.serialized) struct AdminCommandTests {
    static let original = "/work/tools/scoutfs-orig/utils/src/scoutfs"
    static var haveOriginal: Bool { access(original, X_OK) == 0 }

    /// A volume on two sparse files.
    struct Vol {
        let dir: String
        var meta: String { dir + "/meta.img" }
        var data: String { dir + "/data.img" }

        static func make(version: Int = 2, slots: [String] = ["0,127.0.0.1,42000"]) throws -> Vol {
            let v = Vol(dir: try TempDir.make(prefix: "admin"))
            try TempDir.sparseFile(v.meta, size: 256 << 20)
            try TempDir.sparseFile(v.data, size: 64 << 20)
            let (rc, out) = try Proc.run([Proc.binary, "mkfs", "-A", "-V", "\(version)"] + slots.flatMap { ["-Q", $0] } + [v.meta, v.data])
            try #require(rc == 0, "mkfs: \(out)")
            return v
        }

        /// A copy of both devices in a new directory.
        func copy() throws -> Vol {
            let c = Vol(dir: try TempDir.make(prefix: "admin"))
            for (from, to) in [(meta, c.meta), (data, c.data)] {
                let (rc, out) = try Proc.run(["/bin/cp", "--sparse=always", from, to])
                try #require(rc == 0, "cp: \(out)")
            }
            return c
        }

        /// Checksums of both devices' whole contents.
        func sums() throws -> String {
            try Proc.run(["/usr/bin/md5sum", meta, data]).1
        }

        func superBlock(data: Bool = false) throws -> SuperBlock {
            try MetaDevice.readSuper(from: FileBlockDevice(path: data ? self.data : meta, writable: false, direct: false))
        }

        func rewriteSuper(_ change: (inout SuperBlock) -> Void) throws {
            let dev = try FileBlockDevice(path: meta, writable: true, direct: false)
            var sb = try MetaDevice.readSuper(from: dev)
            change(&sb)
            try MetaDevice(device: dev, fsid: sb.hdr.fsid, cacheBytes: 0).writeSuper(sb)
        }

        /// A quorum block showing a mount of `slot` that began and has not ended.
        func markSlotRunning(_ slot: Int) throws {
            let dev = try FileBlockDevice(path: meta, writable: true, direct: false)
            let sb = try MetaDevice.readSuper(from: dev)
            let b = BlockBuffer(size: Format.smallBlockSize)
            let blkno = Format.quorumBlkno + UInt64(slot)
            var q = QuorumBlock(hdr: BlockHeader(magic: BlockMagic.quorum.rawValue, fsid: sb.hdr.fsid, seq: 1, blkno: blkno), writeNr: 7)
            q[.begin] = QuorumEvent(writeNr: 7, rid: 1, term: 1, ts: Timespec(sec: 1_700_000_000, nsec: 1234))
            q[.end] = QuorumEvent(writeNr: 3, rid: 1, term: 1, ts: Timespec(sec: 1_600_000_000, nsec: 5))
            b.write(q, at: 0)
            try MetaDevice(device: dev, fsid: sb.hdr.fsid, cacheBytes: 0).write(small: b)
        }

        func remove() { TempDir.remove(dir) }
    }

    /// Runs `binary` with `args`, where "M" and "D" stand for the volume's devices.
    static func run(_ v: Vol, _ args: [String], binary: String = Proc.binary) throws -> (Int32, String) {
        try Proc.run([binary] + args.map { $0 == "M" ? v.meta : $0 == "D" ? v.data : replacing($0, "DIR", with: v.dir) })
    }

    static func replacing(_ s: String, _ what: String, with: String) -> String {
        s.split(separator: what, omittingEmptySubsequences: false).joined(separator: with)
    }

    /// Output lines with the volume's directory named DIR, argp's wrapped "Try" line joined,
    /// sorted (the original's stdout is buffered to its exit; standard error is not).
    static func normalized(_ out: String, _ v: Vol) -> [String] {
        var lines: [String] = []
        for l in replacing(out, v.dir, with: "DIR").split(separator: "\n", omittingEmptySubsequences: false) {
            if let last = lines.last, last.hasPrefix("Try `"), !last.hasSuffix("information.") {
                lines[lines.count - 1] = last + " " + l
            } else {
                lines.append(String(l))
            }
        }
        return lines.sorted()
    }

    /// Runs ours and (when built) the original on copies of `v`; expects the same status and
    /// lines; returns ours.
    @discardableResult
    static func compare(_ v: Vol, _ args: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> (Int32, String) {
        let ours = try Vol.copy(v)()
        defer { ours.remove() }
        let r = try run(ours, args)
        guard haveOriginal else { return r }
        let theirs = try Vol.copy(v)()
        defer { theirs.remove() }
        let o = try run(theirs, args, binary: original)
        #expect(r.0 == o.0, "\(args): status \(r.0), the original's \(o.0)", sourceLocation: sourceLocation)
        #expect(normalized(r.1, ours) == normalized(o.1, theirs), "\(args)\nours:\n\(r.1)\noriginal:\n\(o.1)", sourceLocation: sourceLocation)
        return r
    }

    /// `args` is refused with `status` and the devices are unchanged.
    static func refused(_ v: Vol, _ args: [String], status: Int32, _ lines: [String], sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = try v.sums()
        let (rc, out) = try run(v, args)
        #expect(rc == status, "\(args): \(out)", sourceLocation: sourceLocation)
        // argp wraps the "Try" line at 79 columns, as the original's does
        let unwrapped = out.split(separator: "\n").joined(separator: " ")
        for l in lines {
            #expect(unwrapped.contains(l), "\(args): no '\(l)' in\n\(out)", sourceLocation: sourceLocation)
        }
        #expect(try v.sums() == before, "\(args) changed the devices", sourceLocation: sourceLocation)
    }

    // MARK: change-quorum-config

    @Test func changeQuorumConfigRewritesTheSlots() throws {
        let v = try Vol.make()
        defer { v.remove() }
        let before = try v.superBlock()
        let (rc, out) = try Self.run(v, ["change-quorum-config", "-F", "-Q", "0,127.0.0.1,42001", "-Q", "2,127.0.0.3,42003", "M"])
        #expect(rc == 0, "\(out)")
        #expect(out == """
            Successfully changed quorum config for scoutfs filesystem:
              meta device path:       \(v.meta)
              fsid:                   \(String(before.hdr.fsid, radix: 16))
              uuid:                   \(before.uuidString)
              quorum config version:  2
              quorum slots:           0: 127.0.0.1:42001
                                      2: 127.0.0.3:42003

            """)
        let sb = try v.superBlock()
        #expect(sb.qconf.version == before.qconf.version + 1)
        #expect(sb.qconf.configured.map(\.nr) == [0, 2])
        #expect(sb.qconf.slots[2].port == 42003)
        // nothing else of the super changed
        var same = sb
        same.qconf = before.qconf
        same.hdr = before.hdr
        #expect(same.encoded() == before.encoded())
        let check = try Proc.run([Proc.binary, "check", v.meta, v.data])
        #expect(check.0 == 0, "\(check.1)")
    }

    @Test func changeQuorumConfigBadInput() throws {
        let v = try Vol.make()
        defer { v.remove() }
        let tryLine = "Try `change-quorum-config --help' or `change-quorum-config --usage' for more information."
        for (args, msg) in [
            (["-Q", "0,127.0.0.1,9000", "M"], "change-quorum-config: must specify --offline"),
            (["-F", "M"], "change-quorum-config: must specify at least one quorum slot with --quorum-slot|-Q"),
            (["-F", "-Q", "0,127.0.0.1,9000"], "change-quorum-config: no metadata device argument given"),
            (["-F", "-Q", "0,127.0.0.1,9000", "M", "D"], "change-quorum-config: more than one metadata device argument given"),
            (["-F", "-Q", "0,127.0.0.1", "M"], "change-quorum-config: no metadata device argument given"),
            (["-F", "-Q", "0,127.0.0.1,9000", "-Q", "1,127.0.0.1,9000", "M"], "change-quorum-config: invalid quorum slot configuration"),
            (["-F", "-Q", "0,127.0.0.1,9000", "-Q", "0,127.0.0.2,9000", "M"], "change-quorum-config: Quorum slot 0 already specified before slot '0,127.0.0.2,9000'"),
            (["-F", "-Q", "15,127.0.0.1,9000", "M"], "change-quorum-config: no metadata device argument given"),
        ] {
            try Self.refused(v, ["change-quorum-config"] + args, status: 64, [msg, tryLine])
            try Self.compare(v, ["change-quorum-config"] + args)
        }
        try Self.refused(v, ["change-quorum-config", "-F", "-Q", "0,127.0.0.1", "M"], status: 64,
                         ["extra unparsed trailing characters in quorum slot '0,127.0.0.1'"])
        try Self.refused(v, ["change-quorum-config", "-F", "-Q", "0,127.0.0.1,9000", v.dir + "/none"], status: 1, [
            "failed to open meta device '\(v.dir)/none': No such file or directory (2)",
            "scoutfs: change-quorum-config failed: No such file or directory (2)",
        ])
        try Self.compare(v, ["change-quorum-config", "-F", "-Q", "0,127.0.0.1,9000", "DIR/none"])
    }

    // MARK: a volume in use

    @Test func everyOfflineCommandRefusesAVolumeInUse() throws {
        let mounted = try Vol.make(version: 1)
        defer { mounted.remove() }
        try mounted.rewriteSuper { $0.mountedClients.ref.blkno = 100 }
        let running = try Vol.make(version: 1, slots: ["0,127.0.0.1,42000", "1,127.0.0.2,42000"])
        defer { running.remove() }
        try running.markSlotRunning(1)
        let cases: [([String], String)] = [
            (["change-quorum-config", "-F", "-Q", "0,127.0.0.1,9000", "M"], "to change the quorum config"),
            (["change-format-version", "-F", "M", "D"], "to change the format version"),
            (["prepare-empty-data-device", "--check", "M"], "to determine if the data device is empty."),
            (["prepare-empty-data-device", "M", "D"], "to determine if the data device is empty."),
        ]
        for (args, purpose) in cases {
            let busy = "The filesystem must be fully recovered and cleanly unmounted \(purpose)"
            let failed = "scoutfs: \(args[0]) failed: Device or resource busy (16)"
            try Self.refused(mounted, args, status: 1, ["meta superblock mounted clients btree is not empty.", busy, failed])
            try Self.refused(running, args, status: 1, [
                "mount in quorum slot 1 could still be running.",
                "  begin event: write_nr 7 timestamp 1700000000.00001234",
                "    end event: write_nr 3 timestamp 1600000000.00000005",
                busy, failed,
            ])
            try Self.compare(mounted, args)
            try Self.compare(running, args)
        }
    }

    // MARK: change-format-version

    @Test func changeFormatVersionRaisesOnly() throws {
        let v = try Vol.make(version: 1)
        defer { v.remove() }
        let sb = try v.superBlock()
        try Self.compare(v, ["change-format-version", "-F", "M", "D"])
        let (rc, out) = try Self.run(v, ["change-format-version", "-F", "M", "D"])
        #expect(rc == 0, "\(out)")
        #expect(out == """
            Successfully updated format version for scoutfs filesystem:
              meta device path:     \(v.meta)
              data device path:     \(v.data)
              fsid:                 \(String(sb.hdr.fsid, radix: 16))
              uuid:                 \(sb.uuidString)
              format version:       2

            """)
        #expect(try v.superBlock().fmtVers == 2)
        #expect(try v.superBlock(data: true).fmtVers == 2)
        let check = try Proc.run([Proc.binary, "check", v.meta, v.data])
        #expect(check.0 == 0, "\(check.1)")

        try Self.refused(v, ["change-format-version", "-F", "-V", "2", "M", "D"], status: 0,
                         ["both metadata and data device format version are already 2, nothing to do."])
        try Self.refused(v, ["change-format-version", "-F", "-V", "1", "M", "D"], status: 1, [
            "Downgrade of Meta Format Version: 2 and Data Format Version: 2 to Format Version: 1 is not allowed",
            "scoutfs: change-format-version failed: Operation not permitted (1)",
        ])
        let tryLine = "Try `change-format-version --help' or `change-format-version --usage' for more information."
        for (args, msg) in [
            (["M", "D"], "change-format-version: must specify --offline"),
            (["-F", "-V", "3", "M", "D"], "change-format-version: format-version 3 is outside supported range of 1-2"),
            (["-F", "M"], "change-format-version: no data device argument given"),
            (["-F"], "change-format-version: no metadata device argument given"),
            (["-F", "M", "D", "D"], "change-format-version: more than two device arguments given"),
        ] {
            try Self.refused(v, ["change-format-version"] + args, status: 64, [msg, tryLine])
        }
        for args in [["-F", "-V", "1", "M", "D"], ["-F", "-V", "3", "M", "D"], ["M", "D"], ["-F", "M"], ["-F", "M", "D", "D"]] {
            try Self.compare(v, ["change-format-version"] + args)
        }
        // the devices swapped, on a volume still at version 1
        let old = try Vol.make(version: 1)
        defer { old.remove() }
        try Self.refused(old, ["change-format-version", "-F", "D", "M"], status: 1, [
            "device argument #1 is not a meta device (swap arguments?)",
            "scoutfs: change-format-version failed: Invalid argument (22)",
        ])
        try Self.compare(old, ["change-format-version", "-F", "D", "M"])
    }

    // MARK: prepare-empty-data-device

    @Test func prepareEmptyDataDevice() throws {
        let v = try Vol.make()
        defer { v.remove() }
        let (rc, out) = try Self.run(v, ["prepare-empty-data-device", "--check", "M"])
        #expect(rc == 0 && out == "All checks passed.\n", "\(out)")
        try Self.compare(v, ["prepare-empty-data-device", "--check", "M", "D"])

        // a device too small for the volume's data blocks
        try TempDir.sparseFile(v.dir + "/small.img", size: 1 << 20)
        try Self.refused(v, ["prepare-empty-data-device", "M", "DIR/small.img"], status: 1, [
            "new data device \(v.dir)/small.img of size 1.00MB has 256 4KiB blocks, it needs at least 16384 (64.00 MB) blocks.",
            "scoutfs: prepare-empty-data-device failed: Invalid argument (22)",
        ])
        try Self.compare(v, ["prepare-empty-data-device", "--check", "M", "DIR/small.img"])

        // a new, empty data device gets the volume's identity
        try TempDir.sparseFile(v.dir + "/new.img", size: 64 << 20)
        let made = try Self.run(v, ["prepare-empty-data-device", "M", "DIR/new.img"])
        #expect(made.0 == 0, "\(made.1)")
        #expect(made.1.hasPrefix("Successfully initialized empty data device for scoutfs filesystem:\n"))
        #expect(made.1.contains("  4KB data blocks:        16384 (64.00 MB)\n"))
        let ms = try v.superBlock()
        let ds = try MetaDevice.readSuper(from: FileBlockDevice(path: v.dir + "/new.img", writable: false, direct: false))
        #expect(ds.hdr.fsid == ms.hdr.fsid && ds.uuid == ms.uuid && ds.fmtVers == ms.fmtVers)
        #expect(ds.flags & Format.flagIsMetaBdev == 0)
        #expect(ds.totalDataBlocks == ms.totalDataBlocks && ds.totalMetaBlocks == ms.totalMetaBlocks)
        let check = try Proc.run([Proc.binary, "check", v.meta, v.dir + "/new.img"])
        #expect(check.0 == 0, "\(check.1)")

        // a volume whose data allocator shows blocks in use
        try v.rewriteSuper { $0.dataAlloc.totalLen -= 100 }
        try Self.refused(v, ["prepare-empty-data-device", "--check", "M"], status: 1, [
            "Data block allocator metadata shows 100 (400.00 KB) data blocks used by files.  They must be removed, truncated, or released before a new empty data device can be used.",
            "Errors were found that must be addressed before a new empty data device could be prepared and used.",
            "scoutfs: prepare-empty-data-device failed: Invalid argument (22)",
        ])
        try Self.compare(v, ["prepare-empty-data-device", "--check", "M"])
        try Self.compare(v, ["prepare-empty-data-device", "M", "DIR/new.img"])

        let tryLine = "Try `prepare-empty-data-device --help' or `prepare-empty-data-device --usage' for more information."
        for (args, msg) in [
            (["M"], "prepare-empty-data-device: no data device argument given"),
            ([String](), "prepare-empty-data-device: no metadata device argument given"),
            (["M", "D", "D"], "prepare-empty-data-device: more than two device arguments given"),
        ] {
            try Self.refused(v, ["prepare-empty-data-device"] + args, status: 64, [msg, tryLine])
            try Self.compare(v, ["prepare-empty-data-device"] + args)
        }
    }

    // MARK: resize-devices (its checks before the ioctl; the mount test grows a volume)

    @Test func resizeDevicesOutsideAMount() throws {
        let v = try Vol.make()
        defer { v.remove() }
        try Self.refused(v, ["resize-devices", "-p", "DIR", "-m", "1000", "-d", "5000"], status: 1, [
            "metadata device size 1000 is not a multiple of 65536 metadata block size, truncating down to 0 byte size",
            "data device size 5000 is not a multiple of 4096 data block size, truncating down to 4096 byte size",
            "resize_devices ioctl failed: Inappropriate ioctl for device (25)",
            "scoutfs: resize-devices failed: Inappropriate ioctl for device (25)",
        ])
        try Self.refused(v, ["resize-devices", "-p", "DIR", "-m", "5Q"], status: 1, [
            "unknown suffix: 'Q'", "scoutfs: resize-devices failed: Numerical result out of range (34)",
        ])
        for args in [["-p", "DIR", "-m", "1000", "-d", "5000"], ["-p", "DIR", "-m", "5Q"], ["-p", "DIR/none", "-d", "1G"]] {
            try Self.compare(v, ["resize-devices"] + args)
        }
    }
}

extension AdminCommandTests.Vol {
    /// `copy` as a function of the volume (for the comparisons).
    static func copy(_ v: Self) -> () throws -> Self { v.copy }
}
