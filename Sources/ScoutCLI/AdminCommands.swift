import ArgumentParser
import ScoutAgent
import ScoutBlockIO
import ScoutFormat
import ScoutIoctl
import ScoutStorage
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

// The original's admin commands (utils/src/resize_devices.c, change_quorum_config.c,
// change_format_version.c, prepare_empty_data_device.c): their options, checks, messages and
// exit statuses.
//
// Deviations from the original: a super block that fails verification is reported with EIO
// ("failed to read meta super block: Input/output error (5)", exit 1) where the original prints
// the errno left over from its last system call (usually "Success (0)") and exits 0.

/// `scoutfs resize-devices [-p PATH] [-m SIZE] [-d SIZE]`: grows a mounted volume into its
/// grown devices, through the RESIZE_DEVICES ioctl (the server adds the new blocks).
struct ResizeDevicesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resize-devices", abstract: "Online resize of metadata and/or data devices")

    @Option(name: .shortAndLong, help: ArgumentHelp("Path to ScoutFS filesystem", valueName: "PATH")) var path: String?
    @Option(name: [.customShort("m"), .customLong("meta-size")], help: ArgumentHelp("New metadata device size (bytes or KMGTP units)", valueName: "SIZE"))
    var metaSize: String?
    @Option(name: [.customShort("d"), .customLong("data-size")], help: ArgumentHelp("New data device size (bytes or KMGTP units)", valueName: "SIZE"))
    var dataSize: String?
    @Argument(help: .hidden) var ignored: [String] = []

    /// The new totals in blocks, and the truncation notes the original prints first.
    static func totals(metaBytes: UInt64, dataBytes: UInt64) -> (rd: ResizeDevices, notes: [String]) {
        var notes: [String] = []
        let lg = UInt64(Format.largeBlockSize), sm = UInt64(Format.smallBlockSize)
        if metaBytes % lg != 0 {
            notes.append("metadata device size \(metaBytes) is not a multiple of \(lg) metadata block size, truncating down to \(metaBytes / lg * lg) byte size")
        }
        if dataBytes % sm != 0 {
            notes.append("data device size \(dataBytes) is not a multiple of \(sm) data block size, truncating down to \(dataBytes / sm * sm) byte size")
        }
        let rd = ResizeDevices(
            newTotalMetaBlocks: metaBytes >> UInt64(Format.largeShift), newTotalDataBlocks: dataBytes >> UInt64(Format.smallShift))
        return (rd, notes)
    }

    static func execute(path: String?, metaSize: String?, dataSize: String?, _ out: Output) throws(ArgpError) {
        let meta = try metaSize.map { s throws(ArgpError) in try Numbers.parseHuman(s) } ?? 0
        let data = try dataSize.map { s throws(ArgpError) in try Numbers.parseHuman(s) } ?? 0
        let (rd, notes) = totals(metaBytes: meta, dataBytes: data)
        for n in notes { out.line(n) }
        out.flush()
        let agent = try openMountPath(path)
        defer { agent.close() }
        do {
            try agent.resizeDevices(rd)
        } catch {
            throw .failed(error.errno, after: [errnoLine("resize_devices ioctl failed", error.errno)])
        }
    }

    func run() throws {
        try runArgp("resize-devices") { out throws(ArgpError) in
            try Self.execute(path: path, metaSize: metaSize, dataSize: dataSize, out)
        }
    }
}

/// `scoutfs change-quorum-config -F -Q NR,ADDR,PORT [...] META-DEVICE`: rewrites the quorum
/// slots of an unmounted volume's super block (the config version goes up by one).
struct ChangeQuorumConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "change-quorum-config",
        abstract: "Change quorum slots and addresses of an existing ScoutFS filesystem",
        usage: "scoutfs change-quorum-config -F -Q NR,ADDR,PORT [-Q NR,ADDR,PORT ...] META-DEVICE")

    @Option(name: [.customShort("Q"), .customLong("quorum-slot")], help: ArgumentHelp("Specify quorum slot addresses [Required]", valueName: "NR,ADDR,PORT"))
    var quorumSlots: [String] = []
    @Flag(name: [.customShort("F"), .customLong("offline")], help: "Write format version in offline device super blocks [Currently Required]")
    var offline = false
    @Argument(help: ArgumentHelp("The metadata device", valueName: "META-DEVICE")) var devices: [String] = []

    func plan(_ out: Output) throws(ArgpError) -> (meta: String, slots: [Int: InetAddr]) {
        var slots: [Int: InetAddr] = [:]
        // argp stops at a bad option; its final checks still run, before any device argument
        // was seen (getopt moves them after the options)
        func finalChecks(meta: String?) throws(ArgpError) {
            if !offline { throw .usage("must specify --offline") }
            guard meta != nil else { throw .usage("no metadata device argument given") }
        }
        for arg in quorumSlots {
            switch QuorumSlotParser.parse(arg) {
            case .failure(let e):
                // the original's sscanf leaves its %n count unset for a slot that stops short,
                // so every incomplete slot is reported as having extra characters
                let incomplete = e.message.hasPrefix("failed to parse all three")
                out.line(incomplete ? "extra unparsed trailing characters in quorum slot '\(arg)'" : e.message)
                out.flush()
                try finalChecks(meta: nil)
                throw .failed(EINVAL)
            case .success(let (nr, addr)):
                if slots[nr] != nil { throw .usage("Quorum slot \(nr) already specified before slot '\(arg)'\n") }
                slots[nr] = addr
            }
        }
        if devices.count > 1 { throw .usage("more than one metadata device argument given") }
        try finalChecks(meta: devices.first)
        if slots.isEmpty { throw .usage("must specify at least one quorum slot with --quorum-slot|-Q") }
        if let msg = QuorumSlotParser.duplicateAddress(slots) {
            throw .usage("invalid quorum slot configuration", after: [msg])
        }
        return (devices[0], slots)
    }

    static func execute(meta path: String, slots: [Int: InetAddr], _ out: Output) throws(ArgpError) {
        let dev = try OfflineSuper.open(path, which: "meta", writable: true)
        var sb = try OfflineSuper.read(dev, which: "meta")
        try OfflineSuper.checkNotInUse(dev, sb.super, purpose: "to change the quorum config")
        var qconf = QuorumConfig(version: sb.super.qconf.version &+ 1)
        for (nr, addr) in slots { qconf.slots[nr] = addr }
        sb.super.qconf = qconf
        try OfflineSuper.write(dev, &sb)
        out.line("Successfully changed quorum config for scoutfs filesystem:")
        out.line("  meta device path:       \(path)")
        out.line("  fsid:                   \(String(sb.super.hdr.fsid, radix: 16))")
        out.line("  uuid:                   \(sb.super.uuidString)")
        out.line("  quorum config version:  \(sb.super.qconf.version)")
        var first = true
        for (nr, addr) in sb.super.qconf.configured {
            out.line((first ? "  quorum slots:           " : "                          ") + "\(nr): \(addr)")
            first = false
        }
        if first { out.line("  quorum slots:           ") }
    }

    func run() throws {
        try runArgp("change-quorum-config") { out throws(ArgpError) in
            let (meta, slots) = try plan(out)
            try Self.execute(meta: meta, slots: slots, out)
        }
    }
}

/// `scoutfs change-format-version -F [-V VERS] META-DEVICE DATA-DEVICE`: raises an unmounted
/// volume's format version in both super blocks (never lowers it).
struct ChangeFormatVersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "change-format-version",
        abstract: "Change format version of an existing ScoutFS filesystem",
        usage: "scoutfs change-format-version -F [-V VERS] META-DEVICE DATA-DEVICE")

    @Flag(name: [.customShort("F"), .customLong("offline")], help: "Write format version in offline device super blocks")
    var offline = false
    @Option(name: [.customShort("V"), .customLong("format-version")],
            help: ArgumentHelp("Specify a format version within supported range (\(Format.versionMin)-\(Format.versionMax), default \(Format.versionMax))", valueName: "VERS"))
    var formatVersion: String?
    @Argument(help: ArgumentHelp("The metadata and data devices", valueName: "META-DEVICE DATA-DEVICE")) var devices: [String] = []

    func plan() throws(ArgpError) -> (meta: String, data: String, version: UInt64) {
        var version = Format.versionMax
        if let s = formatVersion {
            version = try Numbers.parseU64(s)
            if version < Format.versionMin || version > Format.versionMax {
                throw .usage("format-version \(version) is outside supported range of \(Format.versionMin)-\(Format.versionMax)")
            }
        }
        if devices.count > 2 { throw .usage("more than two device arguments given") }
        if !offline { throw .usage("must specify --offline") }
        guard devices.count >= 1 else { throw .usage("no metadata device argument given") }
        guard devices.count == 2 else { throw .usage("no data device argument given") }
        return (devices[0], devices[1], version)
    }

    static func execute(meta: String, data: String, version: UInt64, _ out: Output) throws(ArgpError) {
        let metaDev = try OfflineSuper.open(meta, which: "meta", writable: true)
        let dataDev = try OfflineSuper.open(data, which: "data", writable: true)
        var ms = try OfflineSuper.read(metaDev, which: "meta")
        var ds = try OfflineSuper.read(dataDev, which: "data", fsid: ms.super.hdr.fsid)
        if ms.super.fmtVers == version && ms.super.fmtVers == ds.super.fmtVers {
            out.line("both metadata and data device format version are already \(version), nothing to do.")
            return
        }
        if ms.super.flags & Format.flagIsMetaBdev == 0 {
            out.line("device argument #1 is not a meta device (swap arguments?)")
            throw .failed(EINVAL)
        }
        if ds.super.flags & Format.flagIsMetaBdev != 0 {
            out.line("device argument #2 is not a data device (swap arguments?)")
            throw .failed(EINVAL)
        }
        for (which, v) in [("meta", ms.super.fmtVers), ("data", ds.super.fmtVers)]
        where v < Format.versionMin || v > Format.versionMax {
            // the original's message has no newline
            out.flush()
            var text = "\(which) super block has format version \(v) outside of supported version range \(Format.versionMin)-\(Format.versionMax)"
            text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
            throw .failed(EINVAL)
        }
        try OfflineSuper.checkNotInUse(metaDev, ms.super, purpose: "to change the format version")
        if ms.super.fmtVers > version || ds.super.fmtVers > version {
            out.line("Downgrade of Meta Format Version: \(ms.super.fmtVers) and Data Format Version: \(ds.super.fmtVers) to Format Version: \(version) is not allowed")
            throw .failed(EPERM)
        }
        var wroteMeta = false
        if ms.super.fmtVers != version {
            ms.super.fmtVers = version
            try OfflineSuper.write(metaDev, &ms)
            wroteMeta = true
        }
        if ds.super.fmtVers != version {
            ds.super.fmtVers = version
            do {
                try OfflineSuper.write(dataDev, &ds)
            } catch {
                guard wroteMeta else { throw error }
                throw ArgpError(error.stderr + [
                    "Error writing data super block after writing the meta",
                    "super block.  The two super blocks may now be out of sync which",
                    "would prevent mounting.   Correct the source of the write error",
                    "and retry changing the version to write both super blocks.",
                ], error.outcome)
            }
        }
        out.line("Successfully updated format version for scoutfs filesystem:")
        out.line("  meta device path:     \(meta)")
        out.line("  data device path:     \(data)")
        out.line("  fsid:                 \(String(ms.super.hdr.fsid, radix: 16))")
        out.line("  uuid:                 \(ms.super.uuidString)")
        out.line("  format version:       \(ms.super.fmtVers)")
    }

    func run() throws {
        try runArgp("change-format-version") { out throws(ArgpError) in
            let (meta, data, version) = try plan()
            try Self.execute(meta: meta, data: data, version: version, out)
        }
    }
}

/// `scoutfs prepare-empty-data-device [--check] META-DEVICE [DATA-DEVICE]`: writes a new data
/// device's super block for a volume whose files hold no data blocks.
struct PrepareEmptyDataDeviceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare-empty-data-device",
        abstract: "Prepare empty data device for use with an existing ScoutFS filesystem",
        usage: "scoutfs prepare-empty-data-device [--check] META-DEVICE DATA-DEVICE")

    @Flag(name: [.customShort("c"), .customLong("check")], help: "Only check for errors and do not write")
    var check = false
    @Argument(help: ArgumentHelp("The metadata and new data devices", valueName: "META-DEVICE DATA-DEVICE")) var devices: [String] = []

    func plan() throws(ArgpError) -> (meta: String, data: String?) {
        if devices.count > 2 { throw .usage("more than two device arguments given") }
        guard devices.count >= 1 else { throw .usage("no metadata device argument given") }
        if devices.count < 2 && !check { throw .usage("no data device argument given") }
        return (devices[0], devices.count > 1 ? devices[1] : nil)
    }

    static func execute(meta: String, data: String?, check: Bool, _ out: Output) throws(ArgpError) {
        do {
            try prepare(meta: meta, data: data, check: check, out)
            if check { out.line("All checks passed.") }
        } catch {
            if check { out.line("Errors were found that must be addressed before a new empty data device could be prepared and used.") }
            throw error
        }
    }

    static func prepare(meta: String, data: String?, check: Bool, _ out: Output) throws(ArgpError) {
        let metaDev = try OfflineSuper.open(meta, which: "meta", writable: false)
        let ms = try OfflineSuper.read(metaDev, which: "meta").super
        try OfflineSuper.checkNotInUse(metaDev, ms, purpose: "to determine if the data device is empty.")
        let inUse = (ms.totalDataBlocks &- Format.dataDevStartBlkno) &- ms.dataAlloc.totalLen
        if inUse != 0 {
            throw .failed(EINVAL, after: [
                "Data block allocator metadata shows \(sizeString(inUse, Format.smallBlockSize)) data blocks used by files.  They must be removed, truncated, or released before a new empty data device can be used."
            ])
        }
        guard let data else { return }
        let dataDev = try OfflineSuper.open(data, which: "data", writable: !check)
        let dataBlocks = dataDev.size >> UInt64(Format.smallShift)
        if dataBlocks < ms.totalDataBlocks {
            throw .failed(EINVAL, after: [
                "new data device \(data) of size \(baseSize(dataDev.size)) has \(dataBlocks) 4KiB blocks, it needs at least \(sizeString(ms.totalDataBlocks, Format.smallBlockSize)) blocks."
            ])
        }
        if check { return }
        // only the fields that identify the volume
        var ds = SuperBlock(
            hdr: BlockHeader(magic: BlockMagic.superBlock.rawValue, fsid: ms.hdr.fsid, seq: 1, blkno: Format.superBlkno),
            fmtVers: ms.fmtVers, flags: ms.flags & ~Format.flagIsMetaBdev, uuid: ms.uuid)
        ds.id = ms.id
        ds.seq = ms.seq
        ds.totalMetaBlocks = ms.totalMetaBlocks
        ds.totalDataBlocks = ms.totalDataBlocks
        let b = BlockBuffer(size: Format.smallBlockSize)
        b.write(ds, at: 0)
        var block = OfflineSuper.Block(super: ds, buffer: b)
        do {
            try OfflineSuper.write(dataDev, &block)
        } catch {
            throw ArgpError(error.stderr + ["Error writing super block to new data device '\(data)': \(strerrorString(EIO)) (\(EIO))"], error.outcome)
        }
        out.line("Successfully initialized empty data device for scoutfs filesystem:")
        out.line("  meta device path:       \(meta)")
        out.line("  data device path:       \(data)")
        out.line("  fsid:                   \(String(ms.hdr.fsid, radix: 16))")
        out.line("  uuid:                   \(ms.uuidString)")
        out.line("  format version:         \(ms.fmtVers)")
        out.line("  64KB metadata blocks:   \(sizeString(ms.totalMetaBlocks, Format.largeBlockSize))")
        out.line("  4KB data blocks:        \(sizeString(ms.totalDataBlocks, Format.smallBlockSize))")
    }

    func run() throws {
        try runArgp("prepare-empty-data-device") { out throws(ArgpError) in
            let (meta, data) = try plan()
            try Self.execute(meta: meta, data: data, check: check, out)
        }
    }
}

/// Super blocks of an unmounted volume, read and written as the original's offline commands do.
enum OfflineSuper {
    /// A super block as read: the decoded fields and the 4 KiB block they came from (its bytes
    /// past the struct are written back as they were).
    struct Block {
        var `super`: SuperBlock
        let buffer: BlockBuffer
    }

    static func open(_ path: String, which: String, writable: Bool) throws(ArgpError) -> FileBlockDevice {
        do {
            return try FileBlockDevice(path: path, writable: writable)
        } catch {
            throw .failed(error.rawValue, after: [errnoLine("failed to open \(which) device '\(path)'", error.rawValue)])
        }
    }

    /// `read_block_verify` of the super block: crc, magic, fsid (when given), blkno.
    static func read(_ dev: FileBlockDevice, which: String, fsid: UInt64 = 0) throws(ArgpError) -> Block {
        let blkno = Format.superBlkno
        let b = BlockBuffer(size: Format.smallBlockSize)
        let failure = errnoLine("failed to read \(which) super block", EIO)
        do {
            try dev.read(into: b, at: blkno << UInt64(Format.smallShift))
        } catch {
            throw .failed(error.rawValue, after: ["incomplete pread", errnoLine("failed to read \(which) super block", error.rawValue)])
        }
        let h = b.header
        let crc = b.computeCRC()
        func hex8(_ v: UInt32) -> String { let s = String(v, radix: 16); return String(repeating: "0", count: max(0, 8 - s.count)) + s }
        if crc != h.crc {
            throw .failed(EIO, after: ["crc of read blkno \(blkno) failed, stored \(hex8(h.crc)) != calculated \(hex8(crc))", failure])
        }
        if h.magic != BlockMagic.superBlock.rawValue {
            throw .failed(EIO, after: ["read blkno \(blkno) has bad magic \(hex8(h.magic)) != expected \(hex8(BlockMagic.superBlock.rawValue))", failure])
        }
        if fsid != 0 && h.fsid != fsid {
            throw .failed(EIO, after: ["read blkno \(blkno) has bad fsid \(hex16(h.fsid)) != expected \(hex16(fsid))", failure])
        }
        if h.blkno != blkno {
            throw .failed(EIO, after: ["read blkno \(blkno) has bad blkno \(h.blkno) != expected \(blkno)", failure])
        }
        do {
            return Block(super: try b.decode(SuperBlock.self), buffer: b)
        } catch {
            throw .failed(EIO, after: [failure])
        }
    }

    /// `write_block`: the header as the original writes it (seq 1), the crc, and a sync.
    static func write(_ dev: FileBlockDevice, _ block: inout Block) throws(ArgpError) {
        block.super.hdr = BlockHeader(
            magic: BlockMagic.superBlock.rawValue, fsid: block.super.hdr.fsid, seq: 1, blkno: Format.superBlkno)
        block.buffer.write(block.super, at: 0)
        block.buffer.seal()
        do {
            try dev.write(block.buffer, at: Format.superBlkno << UInt64(Format.smallShift))
            try dev.sync()
        } catch {
            throw .failed(error.rawValue, after: ["write to blkno \(Format.superBlkno) returned -1: \(strerrorString(error.rawValue)) (\(error.rawValue))"])
        }
    }

    /// `meta_super_in_use`: a volume with mounted clients, or a quorum slot whose last begin
    /// event has no end after it (a mount that may still run), is in use: EBUSY after the
    /// reason and the command's "must be fully recovered" line.
    static func checkNotInUse(_ dev: FileBlockDevice, _ sb: SuperBlock, purpose: String) throws(ArgpError) {
        let busy = "The filesystem must be fully recovered and cleanly unmounted \(purpose)"
        if sb.mountedClients.ref.blkno != 0 {
            throw .failed(EBUSY, after: ["meta superblock mounted clients btree is not empty.", busy])
        }
        for (nr, _) in sb.qconf.configured where nr < Int(Format.quorumBlocks) {
            let blkno = Format.quorumBlkno + UInt64(nr)
            let b = BlockBuffer(size: Format.smallBlockSize)
            do {
                try dev.read(into: b, at: blkno << UInt64(Format.smallShift))
            } catch {
                throw .failed(error.rawValue, after: ["error reading quorum block for slot \(nr)"])
            }
            guard let q = try? b.decode(QuorumBlock.self) else { continue }
            let beg = q[.begin], end = q[.end]
            if beg.writeNr > end.writeNr {
                throw .failed(EBUSY, after: [
                    "mount in quorum slot \(nr) could still be running.",
                    "  begin event: write_nr \(beg.writeNr) timestamp \(beg.ts.sec).\(zeroPadded(beg.ts.nsec, 8))",
                    "    end event: write_nr \(end.writeNr) timestamp \(end.ts.sec).\(zeroPadded(end.ts.nsec, 8))",
                    busy,
                ])
            }
        }
    }
}
