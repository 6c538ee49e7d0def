import Glibc
import ScoutDaemon
import ScoutTestSupport
import Testing

@testable import ScoutCLI

/// The one style of every command (the built binary): `--version`, unknown commands with a
/// suggestion, `help CMD`, failures as `scoutfs: CMD failed: … STRERROR (ERRNO)` with exit 1,
/// usage errors as argp's with exit 64.
@Suite struct CLIStyleTests {
    static func scoutfs(_ args: String...) throws -> (code: Int32, out: String) {
        try #require(access(Proc.binary, X_OK) == 0, "build the scoutfs binary first (swift build --build-tests)")
        let (code, out) = try Proc.run([Proc.binary] + args, seconds: 30)
        return (code, out)
    }

    static func lines(_ s: String) -> [String] { s.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init) }

    @Test func version() throws {
        let r = try Self.scoutfs("--version")
        #expect(r.code == 0)
        #expect(r.out == ScoutCommand.versionLine + "\n")
        #expect(r.out.hasPrefix("scoutfs \(ScoutCommand.version) "))
    }

    @Test func unknownCommandIsNamedWithTheClosestMatch() throws {
        let typo = try Self.scoutfs("mkf", "-Q", "0,127.0.0.1,5000")
        #expect(typo.code == 64)
        #expect(Self.lines(typo.out) == ["scoutfs: unknown command 'mkf' (did you mean 'mkfs'?)", "Try `scoutfs --help' for the list of commands."])

        let far = try Self.scoutfs("frobnicate")
        #expect(far.code == 64)
        #expect(Self.lines(far.out) == ["scoutfs: unknown command 'frobnicate'", "Try `scoutfs --help' for the list of commands."])

        let option = try Self.scoutfs("--frobnicate")
        #expect(option.code == 64)
        #expect(option.out.hasPrefix("scoutfs: unrecognized option '--frobnicate'\n"))
    }

    @Test func routes() {
        #expect(ScoutCommand.route([]) == .usage)
        #expect(ScoutCommand.route(["-h"]) == .help)
        #expect(ScoutCommand.route(["--version"]) == .version)
        #expect(ScoutCommand.route(["help", "stat", "-x"]) == .command(["stat", "-x", "--help"]))
        #expect(ScoutCommand.route(["stat", "f"]) == .command(["stat", "f"]))
        #expect(ScoutCommand.route(["statz"]) == .unknownCommand("statz", suggestion: "stat"))
        #expect(ScoutCommand.route(["-x", "stat"]) == .unknownOption("-x"))
    }

    @Test func closestCommand() {
        #expect(ScoutCommand.closestCommand(to: "stats") == "stat")
        #expect(ScoutCommand.closestCommand(to: "quorum-stat") == "quorum-status")
        #expect(ScoutCommand.closestCommand(to: "get-atr-x") == "get-attr-x")
        #expect(ScoutCommand.closestCommand(to: "walk") == "walk-inodes")
        #expect(ScoutCommand.closestCommand(to: "frobnicate") == nil)
        #expect(ScoutCommand.closestCommand(to: "x") == nil)
    }

    @Test func helpForACommand() throws {
        let unknown = try Self.scoutfs("help", "frobnicate")
        #expect(unknown.code == 64)
        #expect(unknown.out.hasPrefix("scoutfs: unknown command 'frobnicate'\n"))

        let mkfs = try Self.scoutfs("help", "mkfs")
        #expect(mkfs.code == 0)
        #expect(mkfs.out == (try Self.scoutfs("mkfs", "--help")).out)
        // the devices are two required positionals, and -Q is required
        #expect(mkfs.out.contains("USAGE: scoutfs mkfs -Q NR,ADDR,PORT [-Q NR,ADDR,PORT ...] [<options>] META-DEVICE DATA-DEVICE\n"))
    }

    @Test func topLevelHelpIsGroupedAsTheOriginal() throws {
        let r = try Self.scoutfs("--help")
        #expect(r.code == 0)
        let titles = Self.lines(r.out).filter { $0.hasSuffix(":") && !$0.hasPrefix(" ") }
        #expect(titles == ["Core admin:", "Additional Information:", "Search Acceleration:", "Archival Agent Support:", "Debugging commands:"])
        #expect(try Self.scoutfs("help").out == r.out)
        #expect(try Self.scoutfs("help", "help").out == r.out)

        let none = try Self.scoutfs()
        #expect(none.code == 64)
        #expect(none.out == r.out)
    }

    @Test func failureIsOneLineAndExitsOne() throws {
        let missing = "/nonexistent-\(getpid())/meta.img"
        let r = try Self.scoutfs("print", missing)
        #expect(r.code == 1)
        #expect(r.out == "scoutfs: print failed: cannot open '\(missing)': No such file or directory (\(ENOENT))\n")

        let counters = try Self.scoutfs("counters", "-p", missing)
        #expect(counters.code == 1)
        #expect(counters.out == "scoutfs: counters failed: cannot stat '\(missing)': No such file or directory (\(ENOENT))\n")
    }

    @Test func usageErrorExits64() throws {
        let none = try Self.scoutfs("print")
        #expect(none.code == 64)
        #expect(Self.lines(none.out) == ["print: no metadata device argument given", "Try `print --help' or `print --usage' for more information."])

        let bogus = try Self.scoutfs("mkfs", "--bogus")
        #expect(bogus.code == 64)
        #expect(Self.lines(bogus.out) == ["mkfs: unrecognized option '--bogus'", "Try `mkfs --help' or `mkfs --usage' for more information."])

        let mount = try Self.scoutfs("mount", "-o", "metadev_path=/dev/null")
        #expect(mount.code == 64)
        #expect(mount.out.hasPrefix("mount: "))
    }

    @Test func failureLineFormat() {
        #expect(failureLine("df", ENOENT) == "scoutfs: df failed: No such file or directory (2)")
        #expect(failureLine("sync", EINVAL, detail: "bad") == "scoutfs: sync failed: bad: Invalid argument (22)")
        // a detail that already ends with the error's text does not repeat it
        #expect(failureLine("sync", ENOENT, detail: "x: No such file or directory") == "scoutfs: sync failed: x: No such file or directory (2)")
    }
}

/// The man pages follow the CLI and the mount options: every command has its entry in
/// scoutfs(8), every mount option in scoutfs(5), and the pages name this version.
@Suite struct ManPageTests {
    static func page(_ name: String) throws -> String { try TempDir.readText(Proc.root + "/man/" + name) }

    /// A name as roff writes it: every hyphen escaped.
    static func roff(_ name: String) -> String { name.split(separator: "-", omittingEmptySubsequences: false).joined(separator: "\\-") }

    @Test func everyCommandIsDocumented() throws {
        let text = try Self.page("scoutfs.8")
        for c in ScoutCommand.commandTable {
            let roff = Self.roff(c.name)
            #expect(text.contains("\n.B \(roff) ") || text.contains("\n.B \(roff)\n"), "\(c.name) has no entry in man/scoutfs.8")
        }
    }

    @Test func everyMountOptionIsDocumented() throws {
        let text = try Self.page("scoutfs.5")
        var o = MountOptions()
        o.metadevPath = "/dev/null"
        for (name, _) in o.controlList {
            let roff = Self.roff(name)
            #expect(text.contains(".BI \(roff)= ") || text.contains(".BR \(roff) ") || text.contains("\n.B \(roff)\n"), "\(name) is not in man/scoutfs.5")
        }
        for name in ["noacl", "ro"] { #expect(text.contains(name)) }
    }

    @Test(arguments: ["scoutfs.8", "scoutfs.5", "scoutfs-fenced.8"])
    func pageNamesThisVersion(name: String) throws {
        #expect(try Self.page(name).contains("\"scoutfs in Swift \(ScoutCommand.version)\""))
    }
}
