import ArgumentParser
import ScoutAgent
import ScoutIoctl

#if canImport(Glibc)
import Glibc
#endif

// The original's "Search Acceleration", "Additional Information" and debugging commands that
// read through ioctls: walk-inodes, ino-path, get-referring-entries, get-allocated-inos,
// stat, statfs, df and get-fiemap. Each parses into a plan (pure: the original's argp
// checks and messages) that `execute` carries out through ScoutAgent.

private let pathHelp = ArgumentHelp("Path to ScoutFS filesystem", valueName: "PATH")

/// `scoutfs walk-inodes [-p PATH] <meta_seq|data_seq> FIRST-ENTRY LAST-ENTRY`
struct WalkInodesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "walk-inodes", abstract: "Print range of indexed inodes",
        usage: "scoutfs walk-inodes [-p PATH] [--] <meta_seq|data_seq> FIRST-ENTRY LAST-ENTRY")

    @Option(name: .shortAndLong, help: pathHelp) var path: String?
    @Argument(help: ArgumentHelp("<meta_seq|data_seq> FIRST-ENTRY LAST-ENTRY (each major[.minor[.ino]], -1 for the largest; put -- before a -1)", valueName: "ARGS"))
    var args: [String] = []

    struct Plan: Equatable {
        var path: String?
        var index: WalkIndex
        var first: WalkInodesEntry
        var last: WalkInodesEntry
    }

    /// `major[.minor[.ino]]`, each strtoull base 0 (missing ones 0, more than three ignored);
    /// on failure the "bad index pos" line and the text before the first '.' (the original
    /// cuts its string there while parsing and then prints it).
    static func parseEntry(_ s: String) -> Result<WalkInodesEntry, ArgpError> {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        var vals: [UInt64] = []
        for part in parts.prefix(3) {
            guard let v = Numbers.u64(part) else {
                return .failure(ArgpError(["bad index pos at '\(part)'"], .failed(EINVAL)))
            }
            vals.append(v)
        }
        while vals.count < 3 { vals.append(0) }
        return .success(WalkInodesEntry(major: vals[0], minor: UInt32(truncatingIfNeeded: vals[1]), ino: vals[2]))
    }

    func plan() throws(ArgpError) -> Plan {
        if args.count > 3 { throw .usage("more than three arguments given") }
        if args.count < 1 { throw .usage("no index given") }
        if args.count < 2 { throw .usage("no first entry given") }
        if args.count < 3 { throw .usage("no last entry given") }
        let index: WalkIndex
        switch args[0].lowercased() {
        case "meta_seq": index = .metaSeq
        case "data_seq": index = .dataSeq
        default: throw .failed(EINVAL, after: ["unknown index '\(args[0])', try 'meta_seq' or 'data_seq'"])
        }
        func entry(_ s: String, _ which: String) throws(ArgpError) -> WalkInodesEntry {
            switch Self.parseEntry(s) {
            case .success(let e): return e
            case .failure(let e):
                let shown = s.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? s
                throw .failed(EINVAL, after: e.stderr + ["invalid \(which) position '\(shown)', try '1.2.3' or '-1'"])
            }
        }
        return Plan(path: path, index: index, first: try entry(args[1], "first"), last: try entry(args[2], "last"))
    }

    static func execute(_ p: Plan, _ out: Output) throws(ArgpError) {
        let agent = try openMountPath(p.path)
        defer { agent.close() }
        var first = p.first
        var total: UInt64 = 0
        while true {
            let ents: [WalkInodesEntry]
            do {
                // the original asks for 128 at a time; the output is the same with fewer calls
                ents = try agent.walkInodes(index: p.index, first: first, last: p.last, max: 4096)
            } catch {
                throw .failed(error.errno, after: [errnoLine("walk_inodes ioctl failed", error.errno)])
            }
            guard let last = ents.last else { break }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(ents.count * 74 + ents.count / 25 * 74)
            ArchiveOutput.appendWalkInodesLines(ents, total: total, to: &bytes)
            out.raw(bytes)
            total += UInt64(ents.count)
            guard let n = last.next else { break }
            first = n
        }
    }

    func run() throws {
        try runArgp("walk-inodes") { out throws(ArgpError) in try Self.execute(try plan(), out) }
    }
}

/// The INODE-NUM argument of ino-path and get-referring-entries, checked as the original's
/// option handler does.
func parseInodeArgument(_ args: [String]) throws(ArgpError) -> UInt64 {
    var ino: UInt64 = 0
    for a in args {
        if ino != 0 { throw .usage("more than one argument given") }
        ino = try Numbers.parseU64(a, usage: "inode parse error")
    }
    if ino == 0 { throw .usage("must provide inode number") }
    return ino
}

/// `scoutfs ino-path [-p PATH] INODE-NUM`
struct InoPathCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ino-path", abstract: "Print paths that refer to inode number",
        usage: "scoutfs ino-path [-p PATH] INODE-NUM")

    @Option(name: .shortAndLong, help: pathHelp) var path: String?
    @Argument(help: ArgumentHelp("The inode number", valueName: "INODE-NUM")) var args: [String] = []

    func plan() throws(ArgpError) -> UInt64 { try parseInodeArgument(args) }

    static func execute(ino: UInt64, path: String?, _ out: Output) throws(ArgpError) {
        let agent = try openMountPath(path)
        defer { agent.close() }
        var cursor: DirentCursor? = DirentCursor()
        while let c = cursor {
            let r: InoPathResult
            do {
                r = try agent.inoPath(ino: ino, cursor: c)
            } catch {
                if error.errno == ENOENT { break }
                throw .failed(error.errno, after: [errnoLine("inodes_since ioctl failed", error.errno)])
            }
            out.line(bytes: ArchiveOutput.inoPathLine(r))
            cursor = r.cursor.next
        }
    }

    func run() throws {
        try runArgp("ino-path") { out throws(ArgpError) in try Self.execute(ino: try plan(), path: path, out) }
    }
}

/// `scoutfs get-referring-entries [-p PATH] INODE-NUM`
struct GetReferringEntriesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get-referring-entries", abstract: "Print directory entries that refer to inode number",
        usage: "scoutfs get-referring-entries [-p PATH] INODE-NUM")

    @Option(name: .shortAndLong, help: pathHelp) var path: String?
    @Argument(help: ArgumentHelp("The inode number", valueName: "INODE-NUM")) var args: [String] = []

    func plan() throws(ArgpError) -> UInt64 { try parseInodeArgument(args) }

    static func execute(ino: UInt64, path: String?, _ out: Output) throws(ArgpError) {
        let agent = try openMountPath(path)
        defer { agent.close() }
        var cursor: DirentCursor? = DirentCursor()
        while let c = cursor {
            let ents: [ReferringEntry]
            do {
                ents = try agent.getReferringEntries(ino: ino, cursor: c)
            } catch {
                throw .failed(error.errno, after: [errnoLine("ioctl failed", error.errno)])
            }
            guard let last = ents.last else { return }
            for e in ents {
                out.line(bytes: ArchiveOutput.referringEntryLine(e))
                if e.flags & ReferringEntry.flagLast != 0 { return }
            }
            cursor = DirentCursor(dirIno: last.dirIno, dirPos: last.dirPos).next
        }
    }

    func run() throws {
        try runArgp("get-referring-entries") { out throws(ArgpError) in try Self.execute(ino: try plan(), path: path, out) }
    }
}

/// `scoutfs get-allocated-inos -i INO [-s] [-p PATH]`
struct GetAllocatedInosCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get-allocated-inos", abstract: "Print allocated inode numbers from starting inode number",
        usage: "scoutfs get-allocated-inos -i INODE-NUM [-s] [-p PATH]")

    @Option(name: .shortAndLong, help: ArgumentHelp("Start from 64bit inode number (required)", valueName: "NUMBER")) var ino: String?
    @Option(name: .shortAndLong, help: pathHelp) var path: String?
    @Flag(name: .shortAndLong, help: "Only print single specific inode number argument") var single = false
    @Argument(help: .hidden) var ignored: [String] = []

    struct Plan: Equatable {
        var ino: UInt64
        var single: Bool
        var path: String?
    }

    // The original's -i falls through into -p and makes the number the path; here -i only
    // sets the inode number.
    func plan() throws(ArgpError) -> Plan {
        guard let ino else { throw .usage("must provide --ino starting inode number option") }
        return Plan(ino: try Numbers.parseU64(ino), single: single, path: path)
    }

    /// What is printed for the allocated numbers returned: with `single`, only `ino` itself.
    static func lines(_ inos: [UInt64], plan p: Plan) -> [String] {
        if p.single, let f = inos.first, f != p.ino { return [] }
        return inos.map { String($0) }
    }

    static func execute(_ p: Plan, _ out: Output) throws(ArgpError) {
        let agent = try openMountPath(p.path)
        defer { agent.close() }
        let inos: [UInt64]
        do {
            inos = try agent.getAllocatedInos(start: p.ino, max: p.single ? 1 : 1024)
        } catch {
            throw .failed(error.errno, after: [errnoLine("get_allocated_inos ioctl failed", error.errno)])
        }
        for l in lines(inos, plan: p) { out.line(l) }
    }

    func run() throws {
        try runArgp("get-allocated-inos") { out throws(ArgpError) in try Self.execute(try plan(), out) }
    }
}

/// `scoutfs stat [-s FIELD] FILE`: STAT_MORE.
struct StatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stat", abstract: "Show ScoutFS extra inode information",
        usage: "scoutfs stat [-s FIELD-NAME] FILE")

    @Option(name: .shortAndLong, help: ArgumentHelp("Specify single field to print", valueName: "FIELD-NAME")) var singleField: String?
    @Argument(help: ArgumentHelp("The file", valueName: "FILE")) var args: [String] = []

    struct Plan: Equatable {
        var path: String
        var single: String?
    }

    func plan() throws(ArgpError) -> Plan {
        if args.count > 1 { throw .usage("more than one argument") }
        guard let path = args.first else { throw .usage("missing operand") }
        if let s = singleField, !ArchiveOutput.statFields.contains(s) {
            throw .failed(EINVAL, after: ["unknown field: '\(s)'"])
        }
        return Plan(path: path, single: singleField)
    }

    // The original prints the ioctl's failure and still exits 0; this reports it as a failure.
    static func execute(_ p: Plan, _ out: Output) throws(ArgpError) {
        let agent = try openMountPath(p.path)
        defer { agent.close() }
        do {
            for l in ArchiveOutput.statLines(try agent.statMore(), single: p.single) { out.line(l) }
        } catch {
            throw .failed(error.errno, after: [errnoLine("ioctl failed", error.errno)])
        }
    }

    func run() throws {
        try runArgp("stat") { out throws(ArgpError) in try Self.execute(try plan(), out) }
    }
}

/// `scoutfs statfs [-p PATH] [-s FIELD]`: STATFS_MORE.
struct StatfsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "statfs", abstract: "Show ScoutFS file system information")

    @Option(name: .shortAndLong, help: pathHelp) var path: String?
    @Option(name: .shortAndLong, help: ArgumentHelp("Specify single field to print", valueName: "FIELD-NAME")) var singleField: String?
    @Argument(help: .hidden) var ignored: [String] = []

    func plan() throws(ArgpError) -> String? {
        if let s = singleField, !ArchiveOutput.statfsFields.contains(s) {
            throw .failed(EINVAL, after: ["unknown field: '\(s)'"])
        }
        return singleField
    }

    static func execute(path: String?, single: String?, _ out: Output) throws(ArgpError) {
        let agent = try openMountPath(path)
        defer { agent.close() }
        do {
            for l in ArchiveOutput.statfsLines(try agent.statfsMore(), single: single) { out.line(l) }
        } catch {
            throw .failed(error.errno, after: [errnoLine("ioctl failed", error.errno)])
        }
    }

    func run() throws {
        try runArgp("statfs") { out throws(ArgpError) in try Self.execute(path: path, single: try plan(), out) }
    }
}

/// `scoutfs df [-p PATH] [-h]`: STATFS_MORE and ALLOC_DETAIL, as the original's table.
struct DfCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "df", abstract: "Show metadata and data block usage", helpNames: [.long])

    @Option(name: .shortAndLong, help: pathHelp) var path: String?
    @Flag(name: .shortAndLong, help: "Print sizes in human readable format (e.g., 1KB 234MB 2GB)") var humanReadable = false
    @Argument(help: .hidden) var ignored: [String] = []

    static func execute(path: String?, human: Bool, _ out: Output) throws(ArgpError) {
        let agent = try openMountPath(path)
        defer { agent.close() }
        let sfm: StatfsMore
        do {
            sfm = try agent.statfsMore()
        } catch {
            throw .failed(EIO, after: ["statfs_more returned -1: error \(strerrorString(error.errno)) (\(error.errno))"])
        }
        let entries: [AllocDetailEntry]
        do {
            entries = try agent.allocDetail()
        } catch {
            throw .failed(EIO, after: ["alloc_detail returned -1: error \(strerrorString(error.errno)) (\(error.errno))"])
        }
        for l in ArchiveOutput.dfLines(sfm, entries, human: human) { out.line(l) }
    }

    func run() throws {
        try runArgp("df") { out throws(ArgpError) in try Self.execute(path: path, human: humanReadable, out) }
    }
}

/// `scoutfs get-fiemap [-P|-L] [-b] FILE`: the private GET_FIEMAP, printed as the original's
/// FS_IOC_FIEMAP walk.
struct GetFiemapCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get-fiemap", abstract: "Print fiemap extent mapping",
        usage: "scoutfs get-fiemap [-P] [-L] [-b] FILE")

    @Flag(name: [.customShort("P"), .customLong("physical")], help: "Output physical offsets only") var physical = false
    @Flag(name: [.customShort("L"), .customLong("logical")], help: "Output logical offsets only") var logical = false
    @Flag(name: [.customShort("b"), .customLong("byte")], help: "Output byte values instead of blocks") var byte = false
    @Argument(help: ArgumentHelp("The file", valueName: "FILE")) var args: [String] = []

    struct Plan: Equatable {
        var path: String
        var offsets: ArchiveOutput.FiemapOffsets
        var bytes: Bool
    }

    /// The extents a 16 KiB `struct fiemap` buffer holds after its header.
    static let extentsPerCall = (16384 - FiemapHeader.size) / FiemapExtent.size

    func plan() throws(ArgpError) -> Plan {
        if args.count > 1 { throw .usage("more than one argument given") }
        if physical && logical { throw .usage("can't pass both -P and -L options") }
        guard let path = args.first else { throw .usage("no filename given") }
        return Plan(path: path, offsets: physical ? .physical : logical ? .logical : .both, bytes: byte)
    }

    static func execute(_ p: Plan, _ out: Output) throws(ArgpError) {
        let agent = try openFile(p.path, O_RDONLY)
        defer { agent.close() }
        var st = stat()
        guard fstat(agent.fd, &st) == 0 else {
            let e = errno
            throw .failed(e, after: [errnoLine("stat failed on '\(p.path)'", e)])
        }
        var nr: UInt64 = 0
        var start: UInt64 = 0
        var last = false
        while !last {
            let r: FiemapResult
            do {
                r = try agent.getFiemap(start: start, length: .max, maxExtents: extentsPerCall)
            } catch {
                throw .failed(error.errno, after: [errnoLine("get_fiemap ioctl failed", error.errno)])
            }
            guard let final = r.extents.last else { break }
            for e in r.extents {
                out.line(ArchiveOutput.fiemapLine(nr, e, blockSize: UInt64(st.st_blksize), bytes: p.bytes, offsets: p.offsets))
                nr += 1
                if e.flags & FiemapExtent.flagLast != 0 { last = true }
            }
            start = final.logical &+ final.length
        }
        out.line(ArchiveOutput.fiemapTotal(nr))
    }

    func run() throws {
        try runArgp("get-fiemap") { out throws(ArgpError) in try Self.execute(try plan(), out) }
    }
}

/// `scoutfs search-xattrs [-p PATH] XATTR-NAME`
struct SearchXattrsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "search-xattrs", abstract: "Print inode numbers of inodes which may have given xattr",
        usage: "scoutfs search-xattrs [-p PATH] XATTR-NAME")

    @Option(name: .shortAndLong, help: pathHelp) var path: String?
    @Argument(help: ArgumentHelp("The xattr name, with the .srch. tag", valueName: "XATTR-NAME")) var args: [String] = []

    func plan() throws(ArgpError) -> String {
        if args.count > 1 { throw .usage("more than one name argument given") }
        guard let name = args.first else { throw .usage("must provide xattr containing .srch. scoutfs tag") }
        return name
    }

    /// The original's passes of 10⁶ inodes, each continuing after the last inode printed.
    static func execute(name: String, path: String?, _ out: Output) throws(ArgpError) {
        let agent = try openMountPath(path)
        defer { agent.close() }
        var next: UInt64 = 0
        while true {
            let r: (inodes: [UInt64], end: Bool)
            do {
                r = try agent.searchXattrs(name: Array(name.utf8), next: next)
            } catch {
                throw .failed(error.errno, after: [errnoLine("search_xattrs ioctl failed", error.errno)])
            }
            guard let last = r.inodes.last else { break }
            var bytes: [UInt8] = []
            bytes.reserveCapacity(r.inodes.count * 8)
            for i in r.inodes { bytes += Array("\(i)\n".utf8) }
            out.raw(bytes)
            if r.end || last == .max { break }
            next = last + 1
        }
    }

    func run() throws {
        try runArgp("search-xattrs") { out throws(ArgpError) in try Self.execute(name: try plan(), path: path, out) }
    }
}
