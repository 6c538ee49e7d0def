import ArgumentParser
import ScoutFormat
import ScoutStorage

#if canImport(Glibc)
import Glibc
#endif

/// `scoutfs mkfs`: the original's options, checks, messages and output.
struct MkfsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mkfs",
        abstract: "Initialize a new ScoutFS filesystem",
        usage: "scoutfs mkfs -Q NR,ADDR,PORT [-Q NR,ADDR,PORT ...] [<options>] META-DEVICE DATA-DEVICE"
    )

    @Option(name: [.customShort("Q"), .customLong("quorum-slot")], help: ArgumentHelp("Specify quorum slot addresses [Required]", valueName: "NR,ADDR,PORT"))
    var quorumSlots: [String] = []

    @Flag(name: [.customShort("f"), .customLong("force")], help: "Overwrite existing data on block devices")
    var force = false

    @Flag(name: [.customShort("A"), .customLong("allow-small-size")], help: "Allow specified meta/data devices less than minimum, still warns")
    var allowSmallSize = false

    @Option(name: [.customShort("m"), .customLong("max-meta-size")], help: ArgumentHelp("Use a size less than the base metadata device size (bytes or KMGTP units)", valueName: "SIZE"))
    var maxMetaSize: String?

    @Option(name: [.customShort("d"), .customLong("max-data-size")], help: ArgumentHelp("Use a size less than the base data device size (bytes or KMGTP units)", valueName: "SIZE"))
    var maxDataSize: String?

    @Option(name: [.customShort("z"), .customLong("data-alloc-zone-blocks")], help: ArgumentHelp("Divide data device into block zones so each mounts writes to a zone (4KB blocks)", valueName: "BLOCKS"))
    var dataAllocZoneBlocks: String?

    @Option(name: [.customShort("V"), .customLong("format-version")], help: ArgumentHelp("Specify a format version within supported range, (1-2, default 2)", valueName: "version"))
    var formatVersion: String?

    // Optional to the parser, so that mkfs gives the original's messages when one is missing.
    @Argument(help: ArgumentHelp("The metadata device (64KB blocks) [Required]", valueName: "META-DEVICE"))
    var metaDevice: String?

    @Argument(help: ArgumentHelp("The data device (4KB blocks) [Required]", valueName: "DATA-DEVICE"))
    var dataDevice: String?

    // Only so that a third device gets the original's message.
    @Argument(help: .hidden)
    var extraDevices: [String] = []

    var devices: [String] { [metaDevice, dataDevice].compactMap { $0 } + extraDevices }

    func run() throws {
        let code = execute(out: { print($0) }, err: { printErr($0) })
        if code != 0 { throw ExitCode(code) }
    }

    /// Runs mkfs; returns the exit status. Usage errors exit 64 like argp's, failures 1.
    func execute(out: (String) -> Void, err: (String) -> Void) -> Int32 {
        func report(_ e: ArgpError) -> Int32 {
            let (lines, status) = e.report(command: "mkfs")
            for l in lines { err(l) }
            return status
        }
        func usage(_ msg: String) -> Int32 { report(.usage(msg)) }
        func failed(_ e: Int32) -> Int32 { report(.failed(e)) }

        var slots: [Int: InetAddr] = [:]
        for arg in quorumSlots {
            switch QuorumSlotParser.parse(arg) {
            case .failure(let e):
                out(e.message)
                return failed(EINVAL)
            case .success(let (nr, addr)):
                if slots[nr] != nil {
                    return usage("Quorum slot \(nr) already specified before slot '\(arg)'\n")
                }
                slots[nr] = addr
            }
        }
        var o = MkfsOptions(metaPath: "", dataPath: "", slots: slots)
        o.force = force
        o.allowSmallSize = allowSmallSize
        if let s = maxMetaSize {
            switch HumanSize.parse(s) {
            case .failure(let f):
                err(f.message)
                return failed(f.errno)
            case .success(let v):
                o.maxMetaSize = v / UInt64(Format.largeBlockSize) * UInt64(Format.largeBlockSize)
                if o.maxMetaSize != v { err("Meta dev size \(v) rounded down to \(o.maxMetaSize) bytes") }
            }
        }
        if let s = maxDataSize {
            switch HumanSize.parse(s) {
            case .failure(let f):
                err(f.message)
                return failed(f.errno)
            case .success(let v):
                o.maxDataSize = v / UInt64(Format.smallBlockSize) * UInt64(Format.smallBlockSize)
                if o.maxDataSize != v { err("Data dev size \(v) rounded down to \(o.maxDataSize) bytes") }
            }
        }
        if let s = formatVersion {
            guard let v = HumanSize.parseU64(s) else {
                err("invalid 64bit value: '\(s)'")
                return failed(EINVAL)
            }
            if v < Format.versionMin || v > Format.versionMax {
                return usage("format-version \(v) is outside supported range of \(Format.versionMin)-\(Format.versionMax)")
            }
            o.formatVersion = v
        }
        if let s = dataAllocZoneBlocks {
            guard let v = HumanSize.parseU64(s) else {
                err("invalid 64bit value: '\(s)'")
                return failed(EINVAL)
            }
            if v == 0 { return usage("must provide non-zero data-alloc-zone-blocks") }
            o.dataAllocZoneBlocks = v
        }
        if devices.count > 2 { return usage("more than two arguments given") }
        if slots.isEmpty { return usage("must specify at least one quorum slot with --quorum-slot|-Q") }
        guard devices.count >= 1 else { return usage("no metadata device argument given") }
        guard devices.count == 2 else { return usage("no data device argument given") }
        if let msg = QuorumSlotParser.duplicateAddress(slots) {
            err(msg)
            return usage("invalid quorum slot configuration")
        }
        o.metaPath = devices[0]
        o.dataPath = devices[1]

        var tv = timeval()
        gettimeofday(&tv, nil)
        let now = Timespec(sec: UInt64(tv.tv_sec), nsec: UInt32(tv.tv_usec) * 1000)
        var rng = SystemRandomNumberGenerator()
        var uuid = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        uuid[6] = (uuid[6] & 0x0f) | 0x40  // version 4
        uuid[8] = (uuid[8] & 0x3f) | 0x80  // RFC 4122 variant
        do {
            try Mkfs.run(o, now: now, fsid: rng.next(), uuid: uuid, out: out, err: err)
        } catch {
            return failed(error.errno)
        }
        return 0
    }
}

/// The original's `NR,ADDR,PORT` quorum slot syntax and its messages.
enum QuorumSlotParser {
    static func parse(_ arg: String) -> Result<(Int, InetAddr), SlotError> {
        let parts = arg.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 3, let nr = Int(parts[0]), !parts[1].isEmpty, let port = Int(parts[2]) else {
            if parts.count > 3, Int(parts[0]) != nil, Int(parts[2]) != nil {
                return .failure(SlotError("extra unparsed trailing characters in quorum slot '\(arg)'"))
            }
            return .failure(SlotError("failed to parse all three NR,ADDR,PORT tokens in quorum slot '\(arg)'"))
        }
        if nr < 0 || nr >= Format.quorumMaxSlots {
            return .failure(SlotError("invalid nr '\(nr)' in quorum slot '\(arg)', must be between 0 and \(Format.quorumMaxSlots - 1)"))
        }
        if port <= 0 || port > 65535 {
            return .failure(SlotError("invalid ipv4 port '\(port)' in quorum slot '\(arg)', must be between 1 and 65535"))
        }
        guard let ip = InetAddr.parseIPv4(parts[1]), ip != 0, ip != UInt32.max else {
            return .failure(SlotError("invalid ipv4 address '\(parts[1])' in quorum slot '\(arg)'"))
        }
        return .success((nr, InetAddr(ipv4: ip, port: UInt16(port))))
    }

    /// The original's `valid_quorum_slots` message for two slots with one address, or nil.
    static func duplicateAddress(_ slots: [Int: InetAddr]) -> String? {
        let sorted = slots.sorted { $0.key < $1.key }
        for (i, a) in sorted.enumerated() {
            for b in sorted[(i + 1)...] where a.value.ipv4 == b.value.ipv4 && a.value.port == b.value.port {
                return "quorum slot nr \(a.key) and \(b.key) have the same address \(a.value.ipv4String):\(a.value.port)"
            }
        }
        return nil
    }

    struct SlotError: Error {
        var message: String
        init(_ m: String) { message = m }
    }
}

/// The original's `parse_human`: a number with an optional K, M, G, T or P suffix.
enum HumanSize {
    struct Failure: Error {
        var message: String
        var errno: Int32
    }

    static func parseU64(_ s: String) -> UInt64? {
        if s.hasPrefix("0x") || s.hasPrefix("0X") { return UInt64(s.dropFirst(2), radix: 16) }
        if s.count > 1 && s.hasPrefix("0") { return UInt64(s.dropFirst(), radix: 8) }
        return UInt64(s)
    }

    static func parse(_ s: String) -> Result<UInt64, Failure> {
        let digits = s.prefix { $0.isASCII && ($0.isHexDigit || $0 == "x" || $0 == "X") && !"KMGTP".contains($0) }
        var numberPart = String(digits)
        var suffix = String(s.dropFirst(digits.count))
        // a decimal number never ends in hex letters: give them back to the suffix
        if !(numberPart.hasPrefix("0x") || numberPart.hasPrefix("0X")) {
            let dec = numberPart.prefix { $0.isNumber }
            suffix = String(numberPart.dropFirst(dec.count)) + suffix
            numberPart = String(dec)
        }
        guard let v = numberPart.isEmpty ? 0 : parseU64(numberPart) else {
            return .failure(Failure(message: "invalid 64bit value: '\(s)'", errno: EINVAL))
        }
        let shift: UInt64
        switch suffix {
        case "K": shift = 10
        case "M": shift = 20
        case "G": shift = 30
        case "T": shift = 40
        case "P": shift = 50
        case "": shift = 0
        default: return .failure(Failure(message: "unknown suffix: '\(suffix)'", errno: ERANGE))
        }
        if v > (UInt64.max >> shift) {
            return .failure(Failure(message: "size too big: '\(s)'", errno: ERANGE))
        }
        return .success(v << shift)
    }
}

/// Writes a line to standard error.
func printErr(_ s: String) {
    var line = s + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
