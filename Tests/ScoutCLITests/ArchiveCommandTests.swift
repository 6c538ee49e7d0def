import ArgumentParser
import Glibc
import ScoutAgent
import ScoutIoctl
import ScoutTestSupport
import Testing

@testable import ScoutCLI

/// The error a plan throws, or nil when it succeeds (another error, from ArgumentParser,
/// comes back as an error no check expects).
private func failure<T>(_ f: () throws -> T) -> ArgpError? {
    do {
        _ = try f()
        return nil
    } catch let e as ArgpError {
        return e
    } catch {
        return ArgpError(["unexpected: \(error)"], .exit(-1))
    }
}

private func usage(_ msg: String, after lines: [String] = []) -> ArgpError { .usage(msg, after: lines) }
private func failed(_ e: Int32, _ lines: String...) -> ArgpError { .failed(e, after: lines) }

/// The original utility's parsing, checks and messages for the archive commands, and their
/// output formats, without a mount (ArgumentParser parses; `plan()` is the argp checking).
@Suite struct ArchiveCommandTests {
    // MARK: shared conventions

    @Test func numbersAreStrtoullBaseZero() throws {
        #expect(Numbers.u64("42") == 42)
        #expect(Numbers.u64("0x1f") == 31)
        #expect(Numbers.u64("010") == 8)
        #expect(Numbers.u64("-1") == .max)
        #expect(Numbers.u64("") == 0)  // strtoull leaves nothing over
        #expect(Numbers.u64("12a") == nil)
        #expect(Numbers.u64("99999999999999999999999") == .max)  // as the original: its overflow check never fires
        #expect(Numbers.s64("-5") == -5)
        #expect(failure { try Numbers.parseU64("1.5") } == failed(EINVAL, "invalid 64bit value: '1.5'"))
    }

    @Test func humanSizes() throws {
        #expect(try Numbers.parseHuman("4096") == 4096)
        #expect(try Numbers.parseHuman("4K") == 4096)
        #expect(try Numbers.parseHuman("3M") == 3 << 20)
        #expect(try Numbers.parseHuman("2G") == 2 << 30)
        #expect(try Numbers.parseHuman("1T") == 1 << 40)
        #expect(try Numbers.parseHuman("1P") == 1 << 50)
        #expect(try Numbers.parseHuman("0x10K") == 16 << 10)
        #expect(failure { try Numbers.parseHuman("5Q") } == failed(ERANGE, "unknown suffix: 'Q'"))
        #expect(failure { try Numbers.parseHuman("20000P") } == failed(ERANGE, "size too big: '20000P'"))
    }

    @Test func timespecs() throws {
        #expect(try Numbers.parseTimespec("12.5") == (12, 5))
        #expect(try Numbers.parseTimespec("1700000000.999999999") == (1_700_000_000, 999_999_999))
        #expect(failure { try Numbers.parseTimespec("12") } == failed(EINVAL, "invalid timespec string: '12'"))
        #expect(failure { try Numbers.parseTimespec("x.1") } == failed(EINVAL, "invalid timespec string: 'x.1'"))
        #expect(failure { try Numbers.parseTimespec("1.1000000001") } == failed(EINVAL, "invalid timespec nsec value: '1.1000000001'"))
    }

    @Test func reports() {
        let u = usage("no filename given").report(command: "setattr")
        #expect(u.status == 64)
        #expect(u.lines == ["setattr: no filename given", "Try `setattr --help' or `setattr --usage' for more information."])
        let f = failed(EINVAL, "invalid 64bit value: 'x'").report(command: "release")
        #expect(f.status == 1)
        #expect(f.lines == ["invalid 64bit value: 'x'", "scoutfs: release failed: Invalid argument (22)"])
    }

    @Test func pathFallback() {
        #expect(MountPathRule.resolve(option: "/a", environment: "/b", currentDirectory: { "/c" }) == "/a")
        #expect(MountPathRule.resolve(option: nil, environment: "/b", currentDirectory: { "/c" }) == "/b")
        #expect(MountPathRule.resolve(option: nil, environment: nil, currentDirectory: { "/c" }) == "/c")
        #expect(MountPathRule.resolve(option: nil, environment: "", currentDirectory: { "/c" }) == "/c")
        #expect(MountPathRule.resolve(option: nil, environment: nil, currentDirectory: { nil }) == nil)
    }

    @Test func argumentParserErrorsInArgpWords() {
        #expect(ScoutCommand.argpMessage("Unknown option '--foo'") == "unrecognized option '--foo'")
        #expect(ScoutCommand.argpMessage("Unknown option '-x'") == "invalid option -- 'x'")
        #expect(ScoutCommand.argpMessage("Missing value for '-V <VERSION>'") == "option requires an argument -- 'V'")
        #expect(ScoutCommand.argpMessage("Missing value for '--data-version <VERSION>'") == "option '--data-version' requires an argument")
        #expect(ScoutCommand.argpMessage("something else") == "something else")
    }

    @Test func getoptShortOptions() throws {
        let v: Set<Character> = ["V", "o", "l", "E"]
        #expect(ScoutCommand.getoptWords(["-V3", "f"], valueOptions: v) == ["-V", "3", "f"])
        #expect(ScoutCommand.getoptWords(["-xV3"], valueOptions: v) == ["-x", "-V", "3"])
        #expect(ScoutCommand.getoptWords(["-xy", "-V", "-3"], valueOptions: v) == ["-x", "-y", "-V", "-3"])
        #expect(ScoutCommand.getoptWords(["-E", "-5", "-E-6"], valueOptions: v) == ["-E", "-5", "-E", "-6"])
        #expect(ScoutCommand.getoptWords(["--length=4K", "--", "-V3"], valueOptions: v) == ["--length=4K", "--", "-V3"])
        #expect(ScoutCommand.getoptWords(["--usage"], valueOptions: v) == ["--help"])
        #expect(ScoutCommand.getoptWords(["-1"], valueOptions: v) == ["-1"])
        // every short option said to take a value is one of the command's options
        for (name, letters) in ScoutCommand.argpValueOptions {
            for c in letters {
                // (mount's two positionals are required by the parser)
                let positionals = name == "mount" ? ["DATA-DEV", "MOUNTPOINT"] : []
                let words = [name] + ScoutCommand.getoptWords(["-\(c)7"], valueOptions: letters) + positionals
                #expect(throws: Never.self, "\(words)") { _ = try ScoutCommand.parseAsRoot(words) }
            }
        }
    }

    @Test func topLevelUsage() {
        // every subcommand is listed once, under one of the original's groups
        let names = ScoutCommand.configuration.subcommands.map { $0.configuration.commandName ?? "" }
        #expect(Set(ScoutCommand.commandTable.map(\.name)) == Set(names))
        #expect(ScoutCommand.commandTable.count == names.count)
        let lines = ScoutCommand.usageLines()
        #expect(Array(lines[0..<6]) == [
            "usage: scoutfs <command> [<args>]", "", "Selected fs defaults to current working directory.",
            "See <command> --help for more details.", "", "Supported format version: 1-2",
        ])
        #expect(lines.filter { $0.hasSuffix(":") } == [
            "Core admin:", "Additional Information:", "Search Acceleration:", "Archival Agent Support:", "Debugging commands:",
        ])
        // "  %*s %s" twice: the name right-aligned to the longest, then the description under it
        let width = ScoutCommand.commandTable.map(\.name.count).max() ?? 0
        let pad = { (n: Int) in String(repeating: " ", count: n) }
        let i = lines.firstIndex(of: pad(2 + width - "walk-inodes".count) + "walk-inodes <meta_seq|data_seq> FIRST-ENTRY LAST-ENTRY")
        #expect(i != nil)
        if let i { #expect(lines[i + 1] == pad(2 + width + 1) + "Print range of indexed inodes") }
    }

    // MARK: walk-inodes

    @Test func walkInodesArguments() throws {
        func plan(_ a: [String]) throws -> ArgpError? {
            let c = try WalkInodesCommand.parse(a)
            return failure { try c.plan() }
        }
        #expect(try plan([]) == usage("no index given"))
        #expect(try plan(["meta_seq"]) == usage("no first entry given"))
        #expect(try plan(["meta_seq", "0"]) == usage("no last entry given"))
        #expect(try plan(["meta_seq", "0", "1", "2"]) == usage("more than three arguments given"))
        #expect(try plan(["inode", "0", "1"]) == failed(EINVAL, "unknown index 'inode', try 'meta_seq' or 'data_seq'"))
        #expect(try plan(["meta_seq", "1.x.3", "1"]) == failed(EINVAL, "bad index pos at 'x'", "invalid first position '1', try '1.2.3' or '-1'"))
        #expect(try plan(["meta_seq", "1", "z"]) == failed(EINVAL, "bad index pos at 'z'", "invalid last position 'z', try '1.2.3' or '-1'"))

        let p = try WalkInodesCommand.parse(["-p", "/mnt", "--", "DATA_SEQ", "0x10.2", "-1"]).plan()
        #expect(p == WalkInodesCommand.Plan(path: "/mnt", index: .dataSeq, first: WalkInodesEntry(major: 16, minor: 2, ino: 0), last: WalkInodesEntry(major: .max, minor: 0, ino: 0)))
        let q = try WalkInodesCommand.parse(["meta_seq", "1.2.3.4", "5.-1.-1"]).plan()
        #expect(q.index == .metaSeq)
        #expect(q.first == WalkInodesEntry(major: 1, minor: 2, ino: 3))
        #expect(q.last == WalkInodesEntry(major: 5, minor: .max, ino: .max))
        #expect(q.path == nil)
    }

    @Test func walkInodesOutput() {
        let ents = (0..<30).map { WalkInodesEntry(major: 100 + UInt64($0), minor: 0, ino: 4096 + UInt64($0)) }
        let lines = ArchiveOutput.walkInodesLines(ents, total: 0)
        let header = "#                    major                minor      ino                 "
        #expect(ArchiveOutput.walkInodesHeader == header)
        #expect(lines.count == 32)
        #expect(lines[0] == header)
        #expect(lines[1] == "0                    100                  0          4096                ")
        #expect(lines[26] == header)
        #expect(lines[27] == "25                   125                  0          4121                ")
        // a later batch continues the count: the header comes before row 25
        let more = ArchiveOutput.walkInodesLines(Array(ents[0..<7]), total: 20)
        #expect(more.count == 8)
        #expect(more[5] == header)
        #expect(more[6].hasPrefix("25 "))
        #expect(ArchiveOutput.walkInodesLines([WalkInodesEntry(major: .max, minor: .max, ino: .max)], total: 1) == [
            "1                    18446744073709551615 4294967295 18446744073709551615"
        ])
    }

    // MARK: ino-path, get-referring-entries, get-allocated-inos

    @Test func inodeArguments() throws {
        #expect(failure { try parseInodeArgument([]) } == usage("must provide inode number"))
        #expect(failure { try parseInodeArgument(["0"]) } == usage("must provide inode number"))
        #expect(failure { try parseInodeArgument(["x1"]) } == usage("inode parse error", after: ["invalid 64bit value: 'x1'"]))
        #expect(failure { try parseInodeArgument(["5", "6"]) } == usage("more than one argument given"))
        #expect(try parseInodeArgument(["0", "6"]) == 6)  // as the original: a 0 does not count
        #expect(try InoPathCommand.parse(["0x400"]).plan() == 1024)
        #expect(try GetReferringEntriesCommand.parse(["-p", "/m", "77"]).plan() == 77)
    }

    @Test func pathAndEntryLines() {
        let r = InoPathResult(dirIno: 1, dirPos: 2, path: Array("a/b/c".utf8))
        #expect(ArchiveOutput.inoPathLine(r) == Array("a/b/c".utf8))
        #expect(ArchiveOutput.inoPathLine(InoPathResult(dirIno: 1, dirPos: 2, path: [0x61, 0, 0x62])) == [0x61])
        let e = ReferringEntry(dirIno: 1, dirPos: 17, ino: 300, flags: 0, dType: 8, name: [0x66, 0xff])
        #expect(ArchiveOutput.referringEntryLine(e) == Array("dir 1 pos 17 type 8 name ".utf8) + [0x66, 0xff])
    }

    @Test func cursorsCarry() {
        #expect(DirentCursor(dirIno: 3, dirPos: 9).next == DirentCursor(dirIno: 3, dirPos: 10))
        #expect(DirentCursor(dirIno: 3, dirPos: .max).next == DirentCursor(dirIno: 4, dirPos: 0))
        #expect(DirentCursor(dirIno: .max, dirPos: .max).next == nil)
        #expect(WalkInodesEntry(major: 1, minor: .max, ino: .max).next == WalkInodesEntry(major: 2, minor: 0, ino: 0))
    }

    @Test func getAllocatedInos() throws {
        #expect(failure { try GetAllocatedInosCommand.parse([]).plan() } == usage("must provide --ino starting inode number option"))
        #expect(failure { try GetAllocatedInosCommand.parse(["-i", "q"]).plan() } == failed(EINVAL, "invalid 64bit value: 'q'"))
        // -i does not overwrite the path (the original's fall-through bug)
        #expect(try GetAllocatedInosCommand.parse(["-i", "0x10", "-s"]).plan() == GetAllocatedInosCommand.Plan(ino: 16, single: true, path: nil))
        #expect(try GetAllocatedInosCommand.parse(["-p", "/m", "--ino", "5"]).plan() == GetAllocatedInosCommand.Plan(ino: 5, single: false, path: "/m"))
        let single = GetAllocatedInosCommand.Plan(ino: 5, single: true, path: nil)
        #expect(GetAllocatedInosCommand.lines([5], plan: single) == ["5"])
        #expect(GetAllocatedInosCommand.lines([6], plan: single) == [])
        #expect(GetAllocatedInosCommand.lines([5, 6, 9], plan: GetAllocatedInosCommand.Plan(ino: 5, single: false, path: nil)) == ["5", "6", "9"])
    }

    // MARK: stat, statfs, df

    @Test func statArguments() throws {
        #expect(failure { try StatCommand.parse([]).plan() } == usage("missing operand"))
        #expect(failure { try StatCommand.parse(["a", "b"]).plan() } == usage("more than one argument"))
        #expect(failure { try StatCommand.parse(["a", "-s", "size"]).plan() } == failed(EINVAL, "unknown field: 'size'"))
        #expect(try StatCommand.parse(["-s", "data_version", "f"]).plan() == StatCommand.Plan(path: "f", single: "data_version"))
        #expect(failure { try StatfsCommand.parse(["-s", "rid2"]).plan() } == failed(EINVAL, "unknown field: 'rid2'"))
        #expect(try StatfsCommand.parse(["--single-field", "fsid", "-p", "/m"]).plan() == "fsid")
    }

    @Test func statOutput() {
        var s = StatMore()
        s.metaSeq = 11
        s.dataSeq = 12
        s.dataVersion = 3
        s.onlineBlocks = 4
        s.offlineBlocks = 5
        s.crtimeSec = 1_700_000_000
        s.crtimeNsec = 7
        #expect(ArchiveOutput.statLines(s) == [
            "meta_seq          11",
            "data_seq          12",
            "data_version      3",
            "online_blocks     4",
            "offline_blocks    5",
            "crtime            1700000000.000000007",
        ])
        #expect(ArchiveOutput.statLines(s, single: "data_version") == ["3"])
        #expect(ArchiveOutput.statLines(s, single: "crtime") == ["1700000000.000000007"])

        var f = StatfsMore()
        f.fsid = 0xabc
        f.rid = 0x1234_5678_9abc_def0
        f.committedSeq = 99
        f.totalMetaBlocks = 4096
        f.totalDataBlocks = 262_144
        #expect(ArchiveOutput.statfsLines(f) == [
            "fsid              0000000000000abc",
            "rid               123456789abcdef0",
            "committed_seq     99",
            "total_meta_blocks 4096",
            "total_data_blocks 262144",
        ])
        #expect(ArchiveOutput.statfsLines(f, single: "rid") == ["123456789abcdef0"])
    }

    @Test func dfTable() {
        var f = StatfsMore()
        f.totalMetaBlocks = 1000
        f.totalDataBlocks = 5000
        f.reservedMetaBlocks = 10
        let entries = [
            AllocDetailEntry(id: 1, blocks: 100, meta: true, avail: true),
            AllocDetailEntry(id: 2, blocks: 200, meta: true, avail: false),
            AllocDetailEntry(id: 3, blocks: 1000, meta: false, avail: true),
        ]
        #expect(ArchiveOutput.dfLines(f, entries, human: false) == [
            "    Type  Size  Total  Used  Free  Use%  ",
            "MetaData  64KB   1000   710   290    71  ",
            "    Data   4KB   5000  4000  1000    80  ",
        ])
        #expect(ArchiveOutput.dfLines(f, entries, human: true) == [
            "    Type  Size    Total     Used     Free  Use%  ",
            "MetaData  64KB  62.50MB  44.38MB  18.12MB    71  ",
            "    Data   4KB  19.53MB  15.62MB   3.91MB    80  ",
        ])
        // the reserve is never more than what is free
        f.reservedMetaBlocks = 5000
        #expect(ArchiveOutput.dfLines(f, entries, human: false)[1] == "MetaData  64KB   1000  1000     0   100  ")
        #expect(ArchiveOutput.baseSize(0) == "0.00B")
        #expect(ArchiveOutput.baseSize(1536) == "1.50KB")
        #expect(ArchiveOutput.baseSize(1 << 40) == "1.00TB")
    }

    @Test func dfOptions() throws {
        let d = try DfCommand.parse(["-h", "-p", "/m"])
        #expect(d.humanReadable)
        #expect(d.path == "/m")
        #expect(try DfCommand.parse(["--human-readable"]).path == nil)
    }

    // MARK: attr_x and setattr

    @Test func getAttrX() throws {
        #expect(failure { try GetAttrXCommand.parse([]).plan() } == usage("no filename given"))
        #expect(failure { try GetAttrXCommand.parse(["a", "b"]).plan() } == usage("more than one argument given"))
        #expect(try GetAttrXCommand.parse(["f"]).plan() == GetAttrXCommand.Plan(path: "f", mask: 0x3ff))
        #expect(try GetAttrXCommand.parse(["f", "-m", "--retention", "-p"]).plan().mask
            == InodeAttrX.maskMetaSeq | InodeAttrX.maskRetention | InodeAttrX.maskProjectID)

        var x = InodeAttrX()
        x.mask = 0x3ff
        x.metaSeq = 1
        x.dataSeq = 2
        x.dataVersion = 3
        x.onlineBlocks = 4
        x.offlineBlocks = 5
        x.ctimeSec = 6
        x.ctimeNsec = 7
        x.crtimeSec = 8
        x.crtimeNsec = 90
        x.size = 10
        x.bits = InodeAttrX.bitRetention
        x.projectID = 12
        #expect(ArchiveOutput.attrXLines(x) == [
            "meta_seq: 1", "data_seq: 2", "data_version: 3", "online_blocks: 4", "offline_blocks: 5", "ctime: 6.7", "crtime: 8.90",
            "size: 10", "retention: 1", "project_id: 12",
        ])
        x.mask = InodeAttrX.maskCrtime
        #expect(ArchiveOutput.attrXLines(x) == ["8.90"])
        x.mask = InodeAttrX.maskRetention
        x.bits = 0
        #expect(ArchiveOutput.attrXLines(x) == ["0"])
        x.mask = InodeAttrX.maskSize | InodeAttrX.maskDataVersion
        #expect(ArchiveOutput.attrXLines(x) == ["data_version: 3", "size: 10"])
    }

    @Test func setAttrX() throws {
        #expect(failure { try SetAttrXCommand.parse(["-m", "1"]).plan() } == usage("no filename given"))
        #expect(failure { try SetAttrXCommand.parse(["f", "-v", "0"]).plan() } == usage("data version must not be 0"))
        // argp runs every option before FILE: a bad value leaves no filename seen, as the original reports
        #expect(failure { try SetAttrXCommand.parse(["f", "-d", "z"]).plan() } == usage("no filename given", after: ["invalid 64bit value: 'z'"]))
        #expect(failure { try SetAttrXCommand.parse(["f", "-c", "5"]).plan() } == usage("no filename given", after: ["invalid timespec string: '5'"]))
        // an option's value may start with '-' (argp takes the next word), and wraps as strtoull does
        #expect(try SetAttrXCommand.parse(["-p", "-1", "f"]).plan().attrs.projectID == .max)
        #expect(try SetAttrXCommand.parse(["-p", "18446744073709551616", "f"]).plan().attrs.projectID == .max)

        let none = try SetAttrXCommand.parse(["f"]).plan()
        #expect(none.attrs.mask == 0)
        let p = try SetAttrXCommand.parse([
            "f", "-m", "1", "-d", "2", "-v", "3", "-n", "4", "-f", "5", "-c", "6.7", "-r", "8.9", "-s", "10", "-t", "1", "-p", "12",
        ]).plan()
        var x = InodeAttrX()
        x.mask = 0x3ff
        x.metaSeq = 1
        x.dataSeq = 2
        x.dataVersion = 3
        x.onlineBlocks = 4
        x.offlineBlocks = 5
        x.ctimeSec = 6
        x.ctimeNsec = 7
        x.crtimeSec = 8
        x.crtimeNsec = 9
        x.size = 10
        x.bits = InodeAttrX.bitRetention
        x.projectID = 12
        #expect(p == SetAttrXCommand.Plan(path: "f", attrs: x))
        // retention 0 asks to clear the bit: in the mask, not in the bits
        let clear = try SetAttrXCommand.parse(["--retention", "0", "f"]).plan()
        #expect(clear.attrs.mask == InodeAttrX.maskRetention)
        #expect(clear.attrs.bits == 0)
        #expect(try SetAttrXCommand.parse(["--project_id", "0x20", "f"]).plan().attrs.projectID == 32)
    }

    @Test func setattr() throws {
        #expect(failure { try SetattrCommand.parse([]).plan() } == usage("no filename given"))
        #expect(failure { try SetattrCommand.parse(["a", "b"]).plan() } == usage("more than one argument given"))
        #expect(failure { try SetattrCommand.parse(["f", "-V", "0"]).plan() } == usage("data version must not be 0"))
        #expect(failure { try SetattrCommand.parse(["f", "-s", "4K"]).plan() } == usage("must provide data-version if using --size option"))
        #expect(failure { try SetattrCommand.parse(["f", "-V", "2", "-o"]).plan() } == usage("must provide size if using --offline option"))
        #expect(failure { try SetattrCommand.parse(["f", "-t", "nope"]).plan() } == failed(EINVAL, "invalid timespec string: 'nope'"))
        #expect(failure { try SetattrCommand.parse(["f", "-V", "2", "-s", "3X"]).plan() } == failed(ERANGE, "unknown suffix: 'X'"))

        let p = try SetattrCommand.parse(["f", "-V", "2", "-s", "1M", "-o", "-t", "100.5", "--crtime", "50.25"]).plan()
        #expect(p.path == "f")
        #expect(p.args.encoded == SetattrMoreArgs(
            dataVersion: 2, size: 1 << 20, flags: SetattrMoreArgs.flagOffline, ctimeSec: 100, ctimeNsec: 5, crtimeSec: 50, crtimeNsec: 25
        ).encoded)
    }

    // MARK: release, stage, punch-offline, move-blocks

    @Test func release() throws {
        let size: (String) -> Result<UInt64, ArgpError> = { _ in .success(5000) }
        #expect(failure { try ReleaseCommand.parse([]).plan(fileSize: size) } == usage("must provide file path"))
        #expect(failure { try ReleaseCommand.parse(["a", "b"]).plan(fileSize: size) } == usage("more than one argument given"))
        #expect(failure { try ReleaseCommand.parse(["f"]).plan(fileSize: size) } == usage("must provide file version --data-version"))
        #expect(failure { try ReleaseCommand.parse(["f", "-V", "v1"]).plan(fileSize: size) } == failed(EINVAL, "invalid 64bit value: 'v1'"))
        // the default length: the file's size rounded up to 4 KiB
        #expect(try ReleaseCommand.parse(["f", "-V", "3"]).plan(fileSize: size) == ReleaseCommand.Plan(path: "f", dataVersion: 3, offset: 0, length: 8192))
        #expect(try ReleaseCommand.parse(["f", "-V", "3", "-o", "4K", "-l", "1M"]).plan(fileSize: size)
            == ReleaseCommand.Plan(path: "f", dataVersion: 3, offset: 4096, length: 1 << 20))
        let missing: (String) -> Result<UInt64, ArgpError> = { _ in .failure(ArgpError([], .failed(ENOENT))) }
        let e = try #require(failure { try ReleaseCommand.parse(["f", "-V", "3"]).plan(fileSize: missing) })
        #expect(e.report(command: "release") == (["release: Could not get file size: No such file or directory"], 1))
    }

    @Test func stage() throws {
        var asked: [String] = []
        let size: (String) -> Result<UInt64, ArgpError> = { asked.append($0); return .success(12345) }
        #expect(failure { try StageCommand.parse([]).plan(fileSize: size) } == usage("must provide archive file path"))
        #expect(failure { try StageCommand.parse(["a"]).plan(fileSize: size) } == usage("must provide to-stage file path"))
        #expect(failure { try StageCommand.parse(["a", "b", "c"]).plan(fileSize: size) } == usage("more than two arguments given"))
        #expect(failure { try StageCommand.parse(["a", "b"]).plan(fileSize: size) } == usage("must provide file version with --data-version"))
        // the default length is the archive file's size
        #expect(try StageCommand.parse(["arch", "f", "--data-version", "9"]).plan(fileSize: size)
            == StageCommand.Plan(archivePath: "arch", path: "f", dataVersion: 9, offset: 0, length: 12345))
        #expect(asked == ["arch"])
        #expect(try StageCommand.parse(["arch", "f", "-V", "9", "-o", "1M", "-l", "2K"]).plan(fileSize: size)
            == StageCommand.Plan(archivePath: "arch", path: "f", dataVersion: 9, offset: 1 << 20, length: 2048))
    }

    @Test func punchOffline() throws {
        // the original's golden output order
        #expect(failure { try PunchOfflineCommand.parse([]).plan() } == usage("must provide path to file"))
        #expect(failure { try PunchOfflineCommand.parse(["f"]).plan() } == usage("must provide offset"))
        #expect(failure { try PunchOfflineCommand.parse(["f", "-o", "0"]).plan() } == usage("must provide length"))
        #expect(failure { try PunchOfflineCommand.parse(["f", "-o", "0", "-l", "4K"]).plan() } == usage("must provide data_version"))
        #expect(failure { try PunchOfflineCommand.parse(["f", "g"]).plan() } == usage("unknown extra argument given"))
        #expect(try PunchOfflineCommand.parse(["f", "-o", "0", "-l", "4K", "-V", "0"]).plan()
            == PunchOfflineCommand.Plan(path: "f", dataVersion: 0, offset: 0, length: 4096))
    }

    @Test func moveBlocks() throws {
        #expect(failure { try MoveBlocksCommand.parse([]).plan() } == usage("must provide from file path"))
        #expect(failure { try MoveBlocksCommand.parse(["a"]).plan() } == usage("must provide to file path"))
        #expect(failure { try MoveBlocksCommand.parse(["a", "b", "c"]).plan() } == usage("more than two file path arguments given"))
        #expect(failure { try MoveBlocksCommand.parse(["a", "b"]).plan() } == usage("must provide from file offset --from-offset"))
        #expect(failure { try MoveBlocksCommand.parse(["a", "-f", "0", "b"]).plan() } == usage("must provide region length --length"))
        #expect(failure { try MoveBlocksCommand.parse(["a", "-f", "0", "-l", "4K", "b"]).plan() } == usage("must provide to file offset --to-offset"))
        // --from-offset is a plain number, the others take units
        #expect(failure { try MoveBlocksCommand.parse(["a", "-f", "4K", "b"]).plan() } == failed(EINVAL, "invalid 64bit value: '4K'"))
        #expect(try MoveBlocksCommand.parse(["a", "--from-offset", "4096", "--length", "8K", "b", "--to-offset", "1M"]).plan()
            == MoveBlocksCommand.Plan(fromPath: "a", fromOffset: 4096, length: 8192, toPath: "b", toOffset: 1 << 20))
    }

    // MARK: data-waiting, data-wait-err

    @Test func dataWaiting() throws {
        #expect(failure { try DataWaitingCommand.parse([]).plan() } == usage("no inode given"))
        #expect(failure { try DataWaitingCommand.parse(["-I", "1"]).plan() } == usage("no blkno given"))
        #expect(failure { try DataWaitingCommand.parse(["-I", "x", "-B", "0"]).plan() } == usage("inode parse error", after: ["invalid 64bit value: 'x'"]))
        #expect(failure { try DataWaitingCommand.parse(["-I", "1", "-B", "y"]).plan() } == usage("blkno parse error", after: ["invalid 64bit value: 'y'"]))
        #expect(try DataWaitingCommand.parse(["--inode", "0", "--block", "0", "-p", "/m"]).plan() == DataWaitingCommand.Plan(path: "/m", ino: 0, iblock: 0))

        #expect(ArchiveOutput.opString(0) == "")
        #expect(ArchiveOutput.opString(1) == "read")
        #expect(ArchiveOutput.opString(2) == "write")
        #expect(ArchiveOutput.opString(3) == "read,write")
        #expect(ArchiveOutput.opString(4) == "change_size")
        #expect(ArchiveOutput.opString(5) == "read,change_size")
        #expect(ArchiveOutput.opString(7) == "read,write,change_size")
        #expect(ArchiveOutput.opString(9) == "read,")  // an unknown higher bit still earns the comma
        #expect(ArchiveOutput.dataWaitingLine(DataWaitingEntry(ino: 4097, iblock: 12, op: 3)) == "ino 4097 iblock 12 ops read,write")
    }

    @Test func dataWaitErr() throws {
        let all = ["-I", "5", "-V", "2", "-F", "4K", "-C", "3", "-O", "write", "-E", "-5"]
        #expect(try DataWaitErrCommand.parse(all).plan()
            == DataWaitErrCommand.Plan(path: nil, ino: 5, version: 2, offset: 4096, count: 3, op: DataWaitingEntry.opWrite, err: -5))
        // each missing option, in the original's order
        let names = ["inode", "version", "offset", "count", "operation", "error"]
        for (i, name) in names.enumerated() {
            var a = all
            a.removeSubrange(i * 2..<i * 2 + 2)
            #expect(failure { try DataWaitErrCommand.parse(a).plan() } == usage("no \(name) given"))
        }
        func with(_ opt: String, _ value: String) throws -> ArgpError? {
            var a = all
            a[a.firstIndex(of: opt)! + 1] = value
            return failure { try DataWaitErrCommand.parse(a).plan() }
        }
        #expect(try with("-E", "5") == usage("errno out of range"))
        #expect(try with("-E", "-4096") == usage("errno out of range"))
        #expect(try with("-E", "-4095") == nil)
        #expect(try with("-E", "e") == usage("error parse error", after: ["invalid 64bit value: 'e'"]))
        #expect(try with("-I", "i") == usage("inode parse error", after: ["invalid 64bit value: 'i'"]))
        #expect(try with("-V", "v") == usage("version parse error", after: ["invalid 64bit value: 'v'"]))
        #expect(try with("-F", "1X") == usage("version parse error", after: ["unknown suffix: 'X'"]))  // sic
        #expect(try with("-C", "c") == usage("count parse error", after: ["invalid 64bit value: 'c'"]))
        #expect(try with("-O", "truncate") == failed(EINVAL, "invalid data wait op: 'truncate'"))
        #expect(try with("-O", "change_size") == nil)
        #expect(ArchiveOutput.dataWaitErrLine(2) == "data_wait_err found 2 waiters.")
    }

    // MARK: get-fiemap

    @Test func getFiemap() throws {
        #expect(failure { try GetFiemapCommand.parse([]).plan() } == usage("no filename given"))
        #expect(failure { try GetFiemapCommand.parse(["-P", "-L"]).plan() } == usage("can't pass both -P and -L options"))
        #expect(failure { try GetFiemapCommand.parse(["a", "b"]).plan() } == usage("more than one argument given"))
        #expect(try GetFiemapCommand.parse(["f"]).plan() == GetFiemapCommand.Plan(path: "f", offsets: .both, bytes: false))
        #expect(try GetFiemapCommand.parse(["-P", "f"]).plan().offsets == .physical)
        #expect(try GetFiemapCommand.parse(["--logical", "-b", "f"]).plan() == GetFiemapCommand.Plan(path: "f", offsets: .logical, bytes: true))
        #expect(GetFiemapCommand.extentsPerCall == 292)

        let e = FiemapExtent(logical: 8192, physical: 1 << 20, length: 12288, flags: FiemapExtent.flagUnknown | FiemapExtent.flagLast)
        #expect(ArchiveOutput.fiemapLine(0, e, blockSize: 4096, bytes: false, offsets: .both) == "0: offset: 2 256 length: 3 flags: O.L")
        #expect(ArchiveOutput.fiemapLine(3, e, blockSize: 4096, bytes: true, offsets: .logical) == "3: offset: 8192 length: 12288 flags: O.L")
        #expect(ArchiveOutput.fiemapLine(1, e, blockSize: 4096, bytes: false, offsets: .physical) == "1: offset: 256 length: 3 flags: O.L")
        let online = FiemapExtent(logical: 0, physical: 0, length: 4096, flags: FiemapExtent.flagLast)
        #expect(ArchiveOutput.fiemapLine(0, online, blockSize: 4096, bytes: true, offsets: .logical) == "0: offset: 0 length: 4096 flags: ..L")
        let unwritten = FiemapExtent(logical: 0, physical: 4096, length: 12288, flags: FiemapExtent.flagUnwritten)
        #expect(ArchiveOutput.fiemapLine(0, unwritten, blockSize: 4096, bytes: true, offsets: .logical) == "0: offset: 0 length: 12288 flags: .U.")
        #expect(ArchiveOutput.fiemapTotal(2) == "extents: 2")
    }

    // MARK: ScoutAgent against a file that is not in scoutfs

    @Test func agentIssuesRealIoctls() throws {
        let agent = try ScoutAgent.open("/", flags: O_RDONLY)
        defer { agent.close() }
        // the host's filesystem knows none of these: ENOTTY from the kernel, for each command
        #expect(throws: AgentError(command: .statfsMore, errno: ENOTTY)) { _ = try agent.statfsMore() }
        #expect(throws: AgentError(command: .statMore, errno: ENOTTY)) { _ = try agent.statMore() }
        #expect(throws: AgentError(command: .walkInodes, errno: ENOTTY)) {
            _ = try agent.walkInodes(index: .metaSeq, first: WalkInodesEntry(major: 0, ino: 0), last: WalkInodesEntry(major: .max, ino: 0))
        }
        #expect(throws: AgentError(command: .allocDetail, errno: ENOTTY)) { _ = try agent.allocDetail() }
        #expect(throws: AgentError(command: .getFiemap, errno: ENOTTY)) { _ = try agent.getFiemap(start: 0, maxExtents: 4) }
        #expect(throws: AgentError(command: .getAttrX, errno: ENOTTY)) { _ = try agent.getAttrX(mask: 0x3ff) }
        // INO_PATH's ENOENT ends the walk; ENOTTY does not
        #expect(throws: AgentError(command: .inoPath, errno: ENOTTY)) { _ = try agent.inoPaths(ino: 1) }
        var it = agent.changes(index: .dataSeq, from: WalkInodesEntry(major: 0, ino: 0), to: WalkInodesEntry(major: 9, ino: 0)).makeIterator()
        #expect(it.next() == nil)
        #expect(it.error?.errno == ENOTTY)
        #expect(it.position == WalkInodesEntry(major: 0, ino: 0))
        #expect("\(AgentError(command: .statMore, errno: ENOTTY))" == "STAT_MORE failed: Inappropriate ioctl for device (25)")
        #expect("\(AgentError(command: nil, errno: EACCES))" == "open failed: Permission denied (13)")
        #expect(throws: AgentError(command: nil, errno: ENOENT)) { _ = try ScoutAgent.open("/no/such/path") }
    }

    // MARK: the built binary

    @Test func binaryReportsTheOriginalsWay() throws {
        try #require(access(Proc.binary, X_OK) == 0, "build the scoutfs binary first (swift build --build-tests)")
        let usage = ScoutCommand.usageLines().joined(separator: "\n") + "\n"
        // (ours: a missing or unknown command is a usage error, exit 64, and an unknown one
        // is named with the closest command instead of the whole usage)
        #expect(try Proc.run([Proc.binary]) == (64, usage))
        #expect(try Proc.run([Proc.binary, "walk_inodes"]) == (
            64, "scoutfs: unknown command 'walk_inodes' (did you mean 'walk-inodes'?)\nTry `scoutfs --help' for the list of commands.\n"
        ))
        #expect(try Proc.run([Proc.binary, "walk-inodes"]) == (
            64, "walk-inodes: no index given\nTry `walk-inodes --help' or `walk-inodes --usage' for more information.\n"
        ))
        #expect(try Proc.run([Proc.binary, "release", "--bogus"]) == (
            64, "release: unrecognized option '--bogus'\nTry `release --help' or `release --usage' for more information.\n"
        ))
        #expect(try Proc.run([Proc.binary, "stat", "/"]) == (
            1, "ioctl failed: Inappropriate ioctl for device (25)\nscoutfs: stat failed: Inappropriate ioctl for device (25)\n"
        ))
        // -p, then $SCOUTFS_MOUNT_PATH, then the current directory
        #expect(try Proc.run([Proc.binary, "statfs"], env: ["SCOUTFS_MOUNT_PATH": "/no/such/mount"]) == (
            1, "failed to open '/no/such/mount': No such file or directory (2)\nscoutfs: statfs failed: No such file or directory (2)\n"
        ))
        #expect(try Proc.run([Proc.binary, "df", "-p", "/"], env: ["SCOUTFS_MOUNT_PATH": "/no/such/mount"]) == (
            1, "statfs_more returned -1: error Inappropriate ioctl for device (25)\nscoutfs: df failed: Input/output error (5)\n"
        ))
        #expect(try Proc.run([Proc.binary, "data-wait-err", "-p", "/", "-I", "1", "-V", "1", "-F", "0", "-C", "1", "-O", "read", "-E", "-5"]) == (
            1, "data_wait_err returned -1: error Inappropriate ioctl for device (25)\nscoutfs: data-wait-err failed: Input/output error (5)\n"
        ))
    }
}
