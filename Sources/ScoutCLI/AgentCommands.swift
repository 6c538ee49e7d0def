import ArgumentParser
import ScoutAgent
import ScoutIoctl

#if canImport(Glibc)
import Glibc
#endif

// The original's "Archival Agent Support" commands: release, stage, punch-offline,
// move-blocks, setattr, get-attr-x, set-attr-x, data-waiting and data-wait-err. Each parses
// into a plan (the original's argp checks and messages) that `execute` carries out through
// ScoutAgent.

private let pathHelp = ArgumentHelp("Path to ScoutFS filesystem", valueName: "PATH")

/// The size of a file for the default lengths of release and stage; nil and the errno when
/// stat fails.
func statFileSize(_ path: String) -> Result<UInt64, ArgpError> {
    var st = stat()
    guard stat(path, &st) == 0 else { return .failure(ArgpError([], .failed(errno))) }
    return .success(UInt64(max(0, st.st_size)))
}

/// The original's argp_failure for an unknown default length: "CMD: Could not get file size:
/// STRERROR", exit 1. (The original passes a negative errno, so it prints "Unknown error -N";
/// this prints the error's text.)
func fileSizeFailure(_ cmd: String, _ result: ArgpError) -> ArgpError {
    guard case .failed(let e) = result.outcome else { return result }
    return ArgpError(["\(cmd): Could not get file size: \(strerrorString(e))"], .exit(1))
}

/// `scoutfs release FILE --data-version VERSION [-o OFFSET] [-l LENGTH]`
struct ReleaseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "release", abstract: "Mark file region offline and free extents",
        usage: "scoutfs release -V VERSION [-o OFFSET] [-l LENGTH] FILE")

    @Option(name: [.customShort("V"), .customLong("data-version")], help: ArgumentHelp("Data version of the file [Required]", valueName: "VERSION"))
    var dataVersion: String?
    @Option(name: [.customShort("o"), .customLong("offset")], help: ArgumentHelp("Offset (bytes or KMGTP units) in file to release (default: 0)", valueName: "OFFSET"))
    var offset: String?
    @Option(name: [.customShort("l"), .customLong("length")], help: ArgumentHelp("Length of range (bytes or KMGTP units) of file to release (default: size of FILE)", valueName: "LENGTH"))
    var length: String?
    @Argument(help: ArgumentHelp("The file", valueName: "FILE")) var args: [String] = []

    struct Plan: Equatable {
        var path: String
        var dataVersion: UInt64
        var offset: UInt64
        var length: UInt64
    }

    func plan(fileSize: (String) -> Result<UInt64, ArgpError> = statFileSize) throws(ArgpError) -> Plan {
        let v = try dataVersion.map { s throws(ArgpError) in try Numbers.parseU64(s) } ?? 0
        let off = try offset.map { s throws(ArgpError) in try Numbers.parseHuman(s) } ?? 0
        var len = try length.map { s throws(ArgpError) in try Numbers.parseHuman(s) } ?? 0
        if args.count > 1 { throw .usage("more than one argument given") }
        guard let path = args.first else { throw .usage("must provide file path") }
        if v == 0 { throw .usage("must provide file version --data-version") }
        if len == 0 {
            switch fileSize(path) {
            case .success(let size): len = size > UInt64.max - 4095 ? size : (size + 4095) & ~4095
            case .failure(let e): throw fileSizeFailure("release", e)
            }
        }
        return Plan(path: path, dataVersion: v, offset: off, length: len)
    }

    static func execute(_ p: Plan) throws(ArgpError) {
        let agent = try openFile(p.path, O_RDWR)
        defer { agent.close() }
        do {
            try agent.release(offset: p.offset, length: p.length, dataVersion: p.dataVersion)
        } catch {
            throw .failed(error.errno, after: [errnoLine("release ioctl failed", error.errno)])
        }
    }

    func run() throws {
        try runArgp("release") { _ throws(ArgpError) in try Self.execute(try plan()) }
    }
}

/// `scoutfs stage ARCHIVE-FILE STAGE-FILE --data-version VERSION [-o OFFSET] [-l LENGTH]`
struct StageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stage", abstract: "Write archive file contents to an offline file",
        usage: "scoutfs stage -V VERSION [-o OFFSET] [-l LENGTH] ARCHIVE-FILE STAGE-FILE")

    @Option(name: [.customShort("V"), .customLong("data-version")], help: ArgumentHelp("Data version of the file [Required]", valueName: "VERSION"))
    var dataVersion: String?
    @Option(name: [.customShort("o"), .customLong("offset")], help: ArgumentHelp("Offset (bytes or KMGTP units) in file to stage (default: 0)", valueName: "OFFSET"))
    var offset: String?
    @Option(name: [.customShort("l"), .customLong("length")], help: ArgumentHelp("Length of range (bytes or KMGTP units) of file to stage. (default: size of ARCHIVE-FILE)", valueName: "LENGTH"))
    var length: String?
    @Argument(help: ArgumentHelp("ARCHIVE-FILE STAGE-FILE", valueName: "FILES")) var args: [String] = []

    struct Plan: Equatable {
        var archivePath: String
        var path: String
        var dataVersion: UInt64
        var offset: UInt64
        var length: UInt64
    }

    static let bufferBytes = 1024 * 1024

    func plan(fileSize: (String) -> Result<UInt64, ArgpError> = statFileSize) throws(ArgpError) -> Plan {
        let v = try dataVersion.map { s throws(ArgpError) in try Numbers.parseU64(s) } ?? 0
        let off = try offset.map { s throws(ArgpError) in try Numbers.parseHuman(s) } ?? 0
        var len = try length.map { s throws(ArgpError) in try Numbers.parseHuman(s) } ?? 0
        if args.count > 2 { throw .usage("more than two arguments given") }
        guard let archive = args.first else { throw .usage("must provide archive file path") }
        guard args.count == 2 else { throw .usage("must provide to-stage file path") }
        if v == 0 { throw .usage("must provide file version with --data-version") }
        if len == 0 {
            // the archive file's size (the original's man page says the staged file's)
            switch fileSize(archive) {
            case .success(let size): len = size
            case .failure(let e): throw fileSizeFailure("stage", e)
            }
        }
        return Plan(archivePath: archive, path: args[1], dataVersion: v, offset: off, length: len)
    }

    static func execute(_ p: Plan) throws(ArgpError) {
        let archive = try openFile(p.archivePath, O_RDONLY)
        defer { archive.close() }
        let agent = try openFile(p.path, O_RDWR)
        defer { agent.close() }
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferBytes, alignment: 4096)
        defer { buf.deallocate() }
        var remaining = p.length
        var offset = p.offset
        while remaining > 0 {
            let want = Int(min(remaining, UInt64(bufferBytes)))
            var got: Int
            repeat { got = read(archive.fd, buf.baseAddress, want) } while got < 0 && errno == EINTR
            if got <= 0 {
                let e = errno
                throw .failed(EIO, after: ["archive read returned \(got): error \(strerrorString(e)) (\(e))"])
            }
            remaining -= UInt64(got)
            let written: Int
            let e: Int32
            do {
                written = try agent.stage(dataVersion: p.dataVersion, offset: offset, buffer: UnsafeRawBufferPointer(rebasing: buf[0..<got]))
                e = 0
            } catch {
                written = -1
                e = error.errno
            }
            if written != got {
                throw .failed(EIO, after: ["stage returned \(written), not \(got): error \(strerrorString(e)) (\(e))"])
            }
            offset += UInt64(got)
        }
    }

    func run() throws {
        try runArgp("stage") { _ throws(ArgpError) in try Self.execute(try plan()) }
    }
}

/// `scoutfs punch-offline PATH -V VERSION -o OFFSET -l LENGTH`
struct PunchOfflineCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "punch-offline", abstract: "Make a (sparse) hole in the file at offset and with length",
        usage: "scoutfs punch-offline -V VERSION -o OFFSET -l LENGTH PATH")

    @Option(name: [.customShort("V"), .customLong("data-version")], help: ArgumentHelp("Data version of the file [Required]", valueName: "VERSION"))
    var dataVersion: String?
    @Option(name: [.customShort("o"), .customLong("offset")], help: ArgumentHelp("Offset (bytes or KMGTP units) in file to stage [Required]", valueName: "OFFSET"))
    var offset: String?
    @Option(name: [.customShort("l"), .customLong("length")], help: ArgumentHelp("Length of range (bytes or KMGTP units) of file to stage. [Required]", valueName: "LENGTH"))
    var length: String?
    @Argument(help: ArgumentHelp("The file", valueName: "PATH")) var args: [String] = []

    struct Plan: Equatable {
        var path: String
        var dataVersion: UInt64
        var offset: UInt64
        var length: UInt64
    }

    func plan() throws(ArgpError) -> Plan {
        let v = try dataVersion.map { s throws(ArgpError) in try Numbers.parseU64(s) }
        let off = try offset.map { s throws(ArgpError) in try Numbers.parseHuman(s) }
        let len = try length.map { s throws(ArgpError) in try Numbers.parseHuman(s) }
        if args.count > 1 { throw .usage("unknown extra argument given") }
        guard let path = args.first else { throw .usage("must provide path to file") }
        guard let off else { throw .usage("must provide offset") }
        guard let len else { throw .usage("must provide length") }
        guard let v else { throw .usage("must provide data_version") }
        return Plan(path: path, dataVersion: v, offset: off, length: len)
    }

    static func execute(_ p: Plan) throws(ArgpError) {
        let agent = try openFile(p.path, O_RDWR)
        defer { agent.close() }
        do {
            try agent.punchOffline(offset: p.offset, length: p.length, dataVersion: p.dataVersion)
        } catch {
            throw .failed(error.errno, after: [errnoLine("punch_offline ioctl failed", error.errno)])
        }
    }

    func run() throws {
        try runArgp("punch-offline") { _ throws(ArgpError) in try Self.execute(try plan()) }
    }
}

/// `scoutfs move-blocks FROM_FILE --from-offset OFFSET --length LENGTH TO_FILE --to-offset OFFSET`
struct MoveBlocksCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "move-blocks", abstract: "Move a fixed-size region of extents from one regular file to another",
        usage: "scoutfs move-blocks FROM_FILE --from-offset OFFSET --length LENGTH TO_FILE --to-offset OFFSET")

    @Option(name: [.customShort("f"), .customLong("from-offset")], help: ArgumentHelp("Byte offset in from file of region to move [Required]", valueName: "OFFSET"))
    var fromOffset: String?
    @Option(name: [.customShort("l"), .customLong("length")], help: ArgumentHelp("Length in bytes of region to move between files [Required]", valueName: "LENGTH"))
    var length: String?
    @Option(name: [.customShort("t"), .customLong("to-offset")], help: ArgumentHelp("Byte offset in to file where region will be moved to [Required]", valueName: "OFFSET"))
    var toOffset: String?
    @Argument(help: ArgumentHelp("FROM_FILE TO_FILE", valueName: "FILES")) var args: [String] = []

    struct Plan: Equatable {
        var fromPath: String
        var fromOffset: UInt64
        var length: UInt64
        var toPath: String
        var toOffset: UInt64
    }

    func plan() throws(ArgpError) -> Plan {
        let from = try fromOffset.map { s throws(ArgpError) in try Numbers.parseU64(s) }
        let len = try length.map { s throws(ArgpError) in try Numbers.parseHuman(s) }
        let to = try toOffset.map { s throws(ArgpError) in try Numbers.parseHuman(s) }
        if args.count > 2 { throw .usage("more than two file path arguments given") }
        guard let fromPath = args.first else { throw .usage("must provide from file path") }
        guard args.count == 2 else { throw .usage("must provide to file path") }
        guard let from else { throw .usage("must provide from file offset --from-offset") }
        guard let len else { throw .usage("must provide region length --length") }
        guard let to else { throw .usage("must provide to file offset --to-offset") }
        return Plan(fromPath: fromPath, fromOffset: from, length: len, toPath: args[1], toOffset: to)
    }

    static func execute(_ p: Plan) throws(ArgpError) {
        let from = try openFile(p.fromPath, O_RDWR)
        defer { from.close() }
        let to = try openFile(p.toPath, O_RDWR)
        defer { to.close() }
        do {
            try to.moveBlocks(from: from.fd, fromOffset: p.fromOffset, length: p.length, toOffset: p.toOffset)
        } catch {
            throw .failed(error.errno, after: [errnoLine("ioctl failed on '\(p.toPath)'", error.errno)])
        }
    }

    func run() throws {
        try runArgp("move-blocks") { _ throws(ArgpError) in try Self.execute(try plan()) }
    }
}

/// `scoutfs setattr FILE [-V VERSION [-s SIZE [-o]]] [-t CTIME] [-r CRTIME]`: SETATTR_MORE.
struct SetattrCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "setattr", abstract: "Set attributes on newly-created zero-length file",
        usage: "scoutfs setattr [-V VERSION [-s SIZE [-o]]] [-t TIMESPEC] [-r TIMESPEC] FILE")

    @Option(name: [.customShort("t"), .customLong("ctime")], help: ArgumentHelp("Set change time using \"<seconds-since-epoch>.<nanoseconds>\" format", valueName: "TIMESPEC"))
    var ctime: String?
    @Option(name: [.customShort("r"), .customLong("crtime")], help: ArgumentHelp("Set creation time using \"<seconds-since-epoch>.<nanoseconds>\" format", valueName: "TIMESPEC"))
    var crtime: String?
    @Option(name: [.customShort("V"), .customLong("data-version")], help: ArgumentHelp("Set data version", valueName: "VERSION"))
    var dataVersion: String?
    @Option(name: [.customShort("s"), .customLong("size")], help: ArgumentHelp("Set file size (bytes or KMGTP units). Requires --data-version", valueName: "SIZE"))
    var size: String?
    @Flag(name: [.customShort("o"), .customLong("offline")], help: "Set file contents as offline, not sparse. Requires --size")
    var offline = false
    @Argument(help: ArgumentHelp("The file", valueName: "FILE")) var args: [String] = []

    struct Plan {
        var path: String
        var args: SetattrMoreArgs
    }

    func plan() throws(ArgpError) -> Plan {
        let ct = try ctime.map { s throws(ArgpError) in try Numbers.parseTimespec(s) } ?? (0, 0)
        let crt = try crtime.map { s throws(ArgpError) in try Numbers.parseTimespec(s) } ?? (0, 0)
        let v = try dataVersion.map { s throws(ArgpError) in try Numbers.parseU64(s) } ?? 0
        if dataVersion != nil && v == 0 { throw .usage("data version must not be 0") }
        let sz = try size.map { s throws(ArgpError) in try Numbers.parseHuman(s) } ?? 0
        if args.count > 1 { throw .usage("more than one argument given") }
        guard let path = args.first else { throw .usage("no filename given") }
        if sz != 0 && v == 0 { throw .usage("must provide data-version if using --size option") }
        if sz == 0 && offline { throw .usage("must provide size if using --offline option") }
        let a = SetattrMoreArgs(
            dataVersion: v, size: sz, flags: offline ? SetattrMoreArgs.flagOffline : 0,
            ctimeSec: ct.0, ctimeNsec: ct.1, crtimeSec: crt.0, crtimeNsec: crt.1)
        return Plan(path: path, args: a)
    }

    static func execute(_ p: Plan) throws(ArgpError) {
        let agent = try openFile(p.path, O_WRONLY)
        defer { agent.close() }
        do {
            try agent.setattrMore(p.args)
        } catch {
            throw .failed(error.errno, after: [errnoLine("setattr_more ioctl failed on '\(p.path)'", error.errno)])
        }
    }

    func run() throws {
        try runArgp("setattr") { _ throws(ArgpError) in try Self.execute(try plan()) }
    }
}

/// The FILE argument of get-attr-x and set-attr-x.
func attrXFilename(_ args: [String]) throws(ArgpError) -> String {
    if args.count > 1 { throw .usage("more than one argument given") }
    guard let f = args.first else { throw .usage("no filename given") }
    return f
}

/// `scoutfs get-attr-x FILE [--meta_seq] [--data_seq] … [--project_id]`: GET_ATTR_X of the
/// attributes asked for (all of them when none are).
struct GetAttrXCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get-attr-x", abstract: "get extensible file attributes",
        usage: "scoutfs get-attr-x [-m] [-d] [-v] [-n] [-f] [-c] [-r] [-s] [-t] [-p] FILE")

    @Flag(name: [.customShort("m"), .customLong("meta_seq")], help: "Inode Metadata change index sequence number") var metaSeq = false
    @Flag(name: [.customShort("d"), .customLong("data_seq")], help: "File Data change index sequence number") var dataSeq = false
    @Flag(name: [.customShort("v"), .customLong("data_version")], help: "File Data contents version") var dataVersion = false
    @Flag(name: [.customShort("n"), .customLong("online_blocks")], help: "Online data block count") var onlineBlocks = false
    @Flag(name: [.customShort("f"), .customLong("offline_blocks")], help: "Offline data block count") var offlineBlocks = false
    @Flag(name: [.customShort("c"), .customLong("ctime")], help: "Inode change time (posix ctime)") var ctime = false
    @Flag(name: [.customShort("r"), .customLong("crtime")], help: "ScoutFS creation time") var crtime = false
    @Flag(name: [.customShort("s"), .customLong("size")], help: "Inode i_size field") var size = false
    @Flag(name: [.customShort("t"), .customLong("retention")], help: "Retention flag") var retention = false
    @Flag(name: [.customShort("p"), .customLong("project_id")], help: "Project ID") var projectID = false
    @Argument(help: ArgumentHelp("The file", valueName: "FILE")) var args: [String] = []

    struct Plan: Equatable {
        var path: String
        var mask: UInt64
    }

    func plan() throws(ArgpError) -> Plan {
        let path = try attrXFilename(args)
        var mask: UInt64 = 0
        for (on, bit) in [
            (metaSeq, InodeAttrX.maskMetaSeq), (dataSeq, InodeAttrX.maskDataSeq), (dataVersion, InodeAttrX.maskDataVersion),
            (onlineBlocks, InodeAttrX.maskOnlineBlocks), (offlineBlocks, InodeAttrX.maskOfflineBlocks), (ctime, InodeAttrX.maskCtime),
            (crtime, InodeAttrX.maskCrtime), (size, InodeAttrX.maskSize), (retention, InodeAttrX.maskRetention),
            (projectID, InodeAttrX.maskProjectID),
        ] where on {
            mask |= bit
        }
        return Plan(path: path, mask: mask == 0 ? ~InodeAttrX.maskUnknown : mask)
    }

    static func execute(_ p: Plan, _ out: Output) throws(ArgpError) {
        let agent = try openFile(p.path, O_RDONLY)
        defer { agent.close() }
        var x: InodeAttrX
        do {
            x = try agent.getAttrX(mask: p.mask)
        } catch {
            throw .failed(error.errno, after: [errnoLine("attr_x ioctl failed on '\(p.path)'", error.errno)])
        }
        // print what was asked for, whatever mask came back
        x.mask = p.mask
        for l in ArchiveOutput.attrXLines(x) { out.line(l) }
    }

    func run() throws {
        try runArgp("get-attr-x") { out throws(ArgpError) in try Self.execute(try plan(), out) }
    }
}

/// `scoutfs set-attr-x FILE [-m SEQ] [-d SEQ] [-v VERSION] [-n COUNT] [-f COUNT] [-c SECS.NSECS]
/// [-r SECS.NSECS] [-s SIZE] [-t 0|1] [-p PROJECT_ID]`: SET_ATTR_X of the attributes given.
/// Values are not checked beyond parsing (the filesystem decides), as in the original.
struct SetAttrXCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-attr-x", abstract: "Set extensible file attributes",
        usage: "scoutfs set-attr-x [<options>] FILE")

    @Option(name: [.customShort("m"), .customLong("meta_seq")], parsing: .unconditional, help: ArgumentHelp("Inode Metadata change index sequence number", valueName: "SEQ"))
    var metaSeq: String?
    @Option(name: [.customShort("d"), .customLong("data_seq")], parsing: .unconditional, help: ArgumentHelp("File Data change index sequence number", valueName: "SEQ"))
    var dataSeq: String?
    @Option(name: [.customShort("v"), .customLong("data_version")], parsing: .unconditional, help: ArgumentHelp("File Data contents version", valueName: "VERSION"))
    var dataVersion: String?
    @Option(name: [.customShort("n"), .customLong("online_blocks")], parsing: .unconditional, help: ArgumentHelp("Online data block count", valueName: "COUNT"))
    var onlineBlocks: String?
    @Option(name: [.customShort("f"), .customLong("offline_blocks")], parsing: .unconditional, help: ArgumentHelp("Offline data block count", valueName: "COUNT"))
    var offlineBlocks: String?
    @Option(name: [.customShort("c"), .customLong("ctime")], parsing: .unconditional, help: ArgumentHelp("Inode change time (posix ctime)", valueName: "SECS.NSECS"))
    var ctime: String?
    @Option(name: [.customShort("r"), .customLong("crtime")], parsing: .unconditional, help: ArgumentHelp("ScoutFS creation time", valueName: "SECS.NSECS"))
    var crtime: String?
    @Option(name: [.customShort("s"), .customLong("size")], parsing: .unconditional, help: ArgumentHelp("Inode i_size field", valueName: "SIZE"))
    var size: String?
    @Option(name: [.customShort("t"), .customLong("retention")], parsing: .unconditional, help: ArgumentHelp("Retention flag", valueName: "0|1"))
    var retention: String?
    @Option(name: [.customShort("p"), .customLong("project_id")], parsing: .unconditional, help: ArgumentHelp("Project ID", valueName: "PROJECT_ID"))
    var projectID: String?
    @Argument(help: ArgumentHelp("The file", valueName: "FILE")) var args: [String] = []

    struct Plan: Equatable {
        var path: String
        var attrs: InodeAttrX
    }

    /// argp hands every option to the parser before the FILE argument, so a value that
    /// does not parse stops it before FILE is seen: the original then reports its end-of-
    /// arguments check, "no filename given", as a usage error (exit 64) after the value's
    /// own message.
    func plan() throws(ArgpError) -> Plan {
        do {
            let x = try attributes()
            return Plan(path: try attrXFilename(args), attrs: x)
        } catch where error.outcome == .failed(EINVAL) {
            throw .usage("no filename given", after: error.stderr)
        }
    }

    private func attributes() throws(ArgpError) -> InodeAttrX {
        var x = InodeAttrX()
        if let s = metaSeq {
            x.mask |= InodeAttrX.maskMetaSeq
            x.metaSeq = try Numbers.parseU64(s)
        }
        if let s = dataSeq {
            x.mask |= InodeAttrX.maskDataSeq
            x.dataSeq = try Numbers.parseU64(s)
        }
        if let s = dataVersion {
            x.mask |= InodeAttrX.maskDataVersion
            x.dataVersion = try Numbers.parseU64(s)
            if x.dataVersion == 0 { throw .usage("data version must not be 0") }
        }
        if let s = onlineBlocks {
            x.mask |= InodeAttrX.maskOnlineBlocks
            x.onlineBlocks = try Numbers.parseU64(s)
        }
        if let s = offlineBlocks {
            x.mask |= InodeAttrX.maskOfflineBlocks
            x.offlineBlocks = try Numbers.parseU64(s)
        }
        if let s = ctime {
            x.mask |= InodeAttrX.maskCtime
            (x.ctimeSec, x.ctimeNsec) = try Numbers.parseTimespec(s)
        }
        if let s = crtime {
            x.mask |= InodeAttrX.maskCrtime
            (x.crtimeSec, x.crtimeNsec) = try Numbers.parseTimespec(s)
        }
        if let s = size {
            x.mask |= InodeAttrX.maskSize
            x.size = try Numbers.parseU64(s)
        }
        if let s = retention {
            x.mask |= InodeAttrX.maskRetention
            if try Numbers.parseU64(s) != 0 { x.bits |= InodeAttrX.bitRetention }
        }
        if let s = projectID {
            x.mask |= InodeAttrX.maskProjectID
            x.projectID = try Numbers.parseU64(s)
        }
        return x
    }

    static func execute(_ p: Plan) throws(ArgpError) {
        if p.attrs.mask == 0 { return }
        let agent = try openFile(p.path, O_RDONLY)
        defer { agent.close() }
        do {
            try agent.setAttrX(p.attrs)
        } catch {
            throw .failed(error.errno, after: [errnoLine("attr_x ioctl failed on '\(p.path)'", error.errno)])
        }
    }

    func run() throws {
        try runArgp("set-attr-x") { _ throws(ArgpError) in try Self.execute(try plan()) }
    }
}

/// `scoutfs data-waiting --inode INODE-NUM --block BLOCK-NUM [-p PATH]`
struct DataWaitingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "data-waiting", abstract: "Print operations waiting for data blocks",
        usage: "scoutfs data-waiting [-p PATH] -I INODE-NUM -B BLKNO-NUM")

    @Option(name: .shortAndLong, help: pathHelp) var path: String?
    @Option(name: [.customShort("I"), .customLong("inode")], help: ArgumentHelp("Inode number [Required]", valueName: "INODE-NUM"))
    var inode: String?
    @Option(name: [.customShort("B"), .customLong("block")], help: ArgumentHelp("Block number [Required]", valueName: "BLKNO-NUM"))
    var block: String?
    @Argument(help: .hidden) var ignored: [String] = []

    struct Plan: Equatable {
        var path: String?
        var ino: UInt64
        var iblock: UInt64
    }

    func plan() throws(ArgpError) -> Plan {
        let ino = try inode.map { s throws(ArgpError) in try Numbers.parseU64(s, usage: "inode parse error") }
        let blk = try block.map { s throws(ArgpError) in try Numbers.parseU64(s, usage: "blkno parse error") }
        guard let ino else { throw .usage("no inode given") }
        guard let blk else { throw .usage("no blkno given") }
        return Plan(path: path, ino: ino, iblock: blk)
    }

    static func execute(_ p: Plan, _ out: Output) throws(ArgpError) {
        let agent = try openMountPath(p.path)
        defer { agent.close() }
        var afterIno = p.ino
        var afterIblock = p.iblock
        while true {
            let ents: [DataWaitingEntry]
            do {
                ents = try agent.dataWaiting(afterIno: afterIno, afterIblock: afterIblock, max: 16)
            } catch {
                throw .failed(error.errno, after: [errnoLine("waiting ioctl failed", error.errno)])
            }
            guard let last = ents.last else { return }
            for e in ents { out.line(ArchiveOutput.dataWaitingLine(e)) }
            afterIno = last.ino
            afterIblock = last.iblock
        }
    }

    func run() throws {
        try runArgp("data-waiting") { out throws(ArgpError) in try Self.execute(try plan(), out) }
    }
}

/// `scoutfs data-wait-err --inode INODE-NUM --version VER-NUM --offset OFF-NUM --count COUNT
/// --op OP --err ERR [-p PATH]`
struct DataWaitErrCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "data-wait-err", abstract: "Return error from matching waiters",
        usage: "scoutfs data-wait-err [-p PATH] -I INODE-NUM -V VER-NUM -F OFF-NUM -C COUNT -O OP -E ERR")

    @Option(name: .shortAndLong, help: pathHelp) var path: String?
    @Option(name: [.customShort("I"), .customLong("inode")], help: ArgumentHelp("Inode number [Required]", valueName: "INODE-NUM"))
    var inode: String?
    @Option(name: [.customShort("V"), .customLong("version")], help: ArgumentHelp("Version [Required]", valueName: "VER-NUM"))
    var version: String?
    @Option(name: [.customShort("F"), .customLong("offset")], help: ArgumentHelp("Offset (bytes or KMGTP units) [Required]", valueName: "OFF-NUM"))
    var offset: String?
    @Option(name: [.customShort("C"), .customLong("count")], help: ArgumentHelp("Count [Required]", valueName: "COUNT"))
    var count: String?
    @Option(name: [.customShort("O"), .customLong("op")], help: ArgumentHelp("Operation: \"read\", \"write\", \"change_size\" [Required]", valueName: "OP"))
    var op: String?
    @Option(name: [.customShort("E"), .customLong("err")], parsing: .unconditional, help: ArgumentHelp("Error [Required]", valueName: "ERR"))
    var err: String?
    @Argument(help: .hidden) var ignored: [String] = []

    struct Plan: Equatable {
        var path: String?
        var ino: UInt64
        var version: UInt64
        var offset: UInt64
        var count: UInt64
        var op: UInt8
        var err: Int64
    }

    func plan() throws(ArgpError) -> Plan {
        let ino = try inode.map { s throws(ArgpError) in try Numbers.parseU64(s, usage: "inode parse error") }
        let ver = try version.map { s throws(ArgpError) in try Numbers.parseU64(s, usage: "version parse error") }
        let off = try offset.map { s throws(ArgpError) -> UInt64 in
            do throws(ArgpError) { return try Numbers.parseHuman(s) } catch { throw .usage("version parse error", after: error.stderr) }
        }
        let cnt = try count.map { s throws(ArgpError) in try Numbers.parseU64(s, usage: "count parse error") }
        let e = try err.map { s throws(ArgpError) -> Int64 in
            let e = try Numbers.parseS64(s, usage: "error parse error")
            if e >= 0 || e < -4095 { throw .usage("errno out of range") }
            return e
        }
        guard let ino else { throw .usage("no inode given") }
        guard let ver else { throw .usage("no version given") }
        guard let off else { throw .usage("no offset given") }
        guard let cnt else { throw .usage("no count given") }
        guard let op else { throw .usage("no operation given") }
        guard let e else { throw .usage("no error given") }
        let bit: UInt8
        switch op {
        case "read": bit = DataWaitingEntry.opRead
        case "write": bit = DataWaitingEntry.opWrite
        case "change_size": bit = DataWaitingEntry.opChangeSize
        default: throw .failed(EINVAL, after: ["invalid data wait op: '\(op)'"])
        }
        return Plan(path: path, ino: ino, version: ver, offset: off, count: cnt, op: bit, err: e)
    }

    static func execute(_ p: Plan, _ out: Output) throws(ArgpError) {
        let agent = try openMountPath(p.path)
        defer { agent.close() }
        do {
            let n = try agent.dataWaitErr(ino: p.ino, dataVersion: p.version, offset: p.offset, count: p.count, op: p.op, err: p.err)
            out.line(ArchiveOutput.dataWaitErrLine(n))
        } catch {
            throw .failed(EIO, after: ["data_wait_err returned -1: error \(strerrorString(error.errno)) (\(error.errno))"])
        }
    }

    func run() throws {
        try runArgp("data-wait-err") { out throws(ArgpError) in try Self.execute(try plan(), out) }
    }
}
