import ArgumentParser
import ScoutAgent
import ScoutIoctl

#if canImport(Glibc)
import Glibc
#endif

/// `scoutfs list-hidden-xattrs FILE`: LISTXATTR_HIDDEN until it returns nothing, one name a
/// line, bytes that do not print shown as `?` (the original's listxattr_hidden.c).
struct ListHiddenXattrsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list-hidden-xattrs", abstract: "Print the names of hidden xattrs on a file",
        usage: "scoutfs list-hidden-xattrs FILE")

    @Argument(help: ArgumentHelp("The file", valueName: "FILE")) var args: [String] = []

    func plan() throws(ArgpError) -> String {
        if args.count > 1 { throw .usage("more than one filename argument given") }
        guard let f = args.first else { throw .usage("must specify filename") }
        return f
    }

    /// A name as the original prints it: every byte that is not printable ASCII becomes `?`.
    static func printable(_ name: [UInt8]) -> [UInt8] {
        name.map { $0 >= 0x20 && $0 < 0x7f ? $0 : UInt8(ascii: "?") }
    }

    static func execute(_ path: String, _ out: Output) throws(ArgpError) {
        let agent = try openFile(path, O_RDONLY)
        defer { agent.close() }
        var pos: (hash: UInt32, id: UInt64) = (0, 0)
        while true {
            let r: (names: [[UInt8]], pos: (hash: UInt32, id: UInt64))
            do {
                r = try agent.listxattrHidden(pos: pos)
            } catch {
                throw .failed(error.errno, after: [errnoLine("listxattr_hidden ioctl failed", error.errno)])
            }
            if r.names.isEmpty { break }
            for n in r.names { out.line(bytes: printable(n)) }
            pos = r.pos
        }
    }

    func run() throws {
        try runArgp("list-hidden-xattrs") { out throws(ArgpError) in try Self.execute(try plan(), out) }
    }
}

/// `scoutfs read-xattr-totals [-p PATH]`: every `.totl.` total, `A.B.C = TOTAL, COUNT`
/// (signed, as the original prints them).
struct ReadXattrTotalsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read-xattr-totals", abstract: "Print global value totals of .totl. xattrs",
        usage: "scoutfs read-xattr-totals [-p PATH]")

    @Option(name: .shortAndLong, help: tagPathHelp) var path: String?
    @Argument(help: .hidden) var ignored: [String] = []

    static func line(_ t: XattrTotal) -> String {
        "\(t.name[0]).\(t.name[1]).\(t.name[2]) = \(Int64(bitPattern: t.total)), \(Int64(bitPattern: t.count))"
    }

    static func execute(path: String?, _ out: Output) throws(ArgpError) {
        let agent = try openMountPath(path)
        defer { agent.close() }
        var pos: [UInt64] = [0, 0, 0]
        while true {
            let found: [XattrTotal]
            do {
                found = try agent.readXattrTotals(pos: pos)
            } catch {
                throw .failed(error.errno, after: [errnoLine("read_xattr_totals ioctl failed", error.errno)])
            }
            guard let last = found.last else { break }
            for t in found { out.line(line(t)) }
            pos = last.name
            pos[2] &+= 1
            if pos[2] == 0 {
                pos[1] &+= 1
                if pos[1] == 0 {
                    pos[0] &+= 1
                    if pos[0] == 0 { break }
                }
            }
        }
    }

    func run() throws {
        try runArgp("read-xattr-totals") { out throws(ArgpError) in try Self.execute(path: path, out) }
    }
}

/// `scoutfs read-xattr-index [-p PATH] [FIRST-ENTRY [LAST-ENTRY]]`: the inodes of the
/// `.indx.` index between two `MAJOR.MINOR.INO` positions, `MAJOR.MINOR = INO` a line.
struct ReadXattrIndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read-xattr-index", abstract: "Search and print inode numbers indexed by their .indx. xattrs",
        usage: "scoutfs read-xattr-index [-p PATH] FIRST-ENTRY LAST-ENTRY")

    @Option(name: .shortAndLong, help: tagPathHelp) var path: String?
    @Argument(help: ArgumentHelp("Index positions", valueName: "FIRST-ENTRY LAST-ENTRY")) var args: [String] = []

    struct Plan: Equatable {
        var first: XattrIndexEntry
        var last: XattrIndexEntry
        var path: String?
    }

    /// `parse_entry`: `sscanf("%i.%lli.%lli")` into `ent`, then the major's range. As in C,
    /// the minor and inode fields sscanf matched are stored even when the entry fails, and
    /// the major only when it succeeds; returns the message of a failure.
    static func parseEntry(_ s: String, into ent: inout XattrIndexEntry) -> String? {
        var fields: [Int64] = []
        s.withCString { p in
            var cur = p
            for i in 0..<3 {
                if i > 0 {
                    guard cur.pointee == CChar(UInt8(ascii: ".")) else { return }
                    cur += 1
                }
                var end: UnsafeMutablePointer<CChar>?
                let v = strtoll(cur, &end, 0)
                guard let end, end != UnsafeMutablePointer(mutating: cur) else { return }
                fields.append(i == 0 ? Int64(Int32(truncatingIfNeeded: v)) : v)
                cur = UnsafePointer(end)
            }
        }
        if fields.count > 1 { ent.minor = UInt64(bitPattern: fields[1]) }
        if fields.count > 2 { ent.ino = UInt64(bitPattern: fields[2]) }
        guard fields.count == 3 else {
            return "bad index position entry argument '\(s)', it must be in the form \"a.b.ino\" where each value can be prefixed by '0' for octal or '0x' for hex"
        }
        guard fields[0] >= 0 && fields[0] <= 255 else {
            return "initial major index position '\(fields[0])' must be between 0 and 255, inclusive."
        }
        ent.major = UInt8(fields[0])
        return nil
    }

    static func key(_ e: XattrIndexEntry) -> (UInt8, UInt64, UInt64) { (e.major, e.minor, e.ino) }
    static func text(_ e: XattrIndexEntry) -> String { "\(e.major).\(e.minor).\(e.ino)" }

    /// The positions to read. Only the last entry's parse decides failure: the original
    /// overwrites a failed first entry's result with the last's (it prints the first's
    /// message and goes on with what sscanf stored).
    func plan(stderr: (String) -> Void = { line in
        let b = Array((line + "\n").utf8)
        _ = b.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }) throws(ArgpError) -> Plan {
        if args.count > 2 { throw .usage("more than two entry arguments given") }
        var p = Plan(first: XattrIndexEntry(), last: XattrIndexEntry(major: .max, minor: .max, ino: .max), path: path)
        var failure: String? = nil
        if args.count > 0 { failure = Self.parseEntry(args[0], into: &p.first) }
        if args.count > 1 {
            if let f = failure { stderr(f) }
            failure = Self.parseEntry(args[1], into: &p.last)
        }
        if let failure { throw .failed(EINVAL, after: [failure]) }
        if Self.key(p.first) > Self.key(p.last) {
            throw .failed(EINVAL, after: [
                "first index position \(Self.text(p.first)) must be less than last index position \(Self.text(p.last))"
            ])
        }
        return p
    }

    static func execute(_ p: Plan, _ out: Output) throws(ArgpError) {
        let agent = try openMountPath(p.path)
        defer { agent.close() }
        var first = p.first
        while true {
            let found: [XattrIndexEntry]
            do {
                found = try agent.readXattrIndex(first: first, last: p.last)
            } catch {
                throw .failed(error.errno, after: [errnoLine("read_xattr_index ioctl failed", error.errno)])
            }
            guard let last = found.last else { break }
            for e in found { out.line("\(e.major).\(e.minor) = \(e.ino)") }
            first = last
            first.ino &+= 1
            if first.ino == 0 {
                first.minor &+= 1
                if first.minor == 0 {
                    first.major &+= 1
                    if first.major == 0 { break }
                }
            }
            if key(first) > key(p.last) { break }
        }
    }

    func run() throws {
        try runArgp("read-xattr-index") { out throws(ArgpError) in try Self.execute(try plan(), out) }
    }
}

private let tagPathHelp = ArgumentHelp("Path to ScoutFS filesystem", valueName: "PATH")
