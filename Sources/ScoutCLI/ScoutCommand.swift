import ArgumentParser
import ScoutFormat

#if canImport(Glibc)
import Glibc
#endif

/// The `scoutfs` command: the root of every subcommand, as the original's `cmd_execute`.
public struct ScoutCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "scoutfs",
        abstract: "scoutfs metadata and administration utility",
        subcommands: [MkfsCommand.self, ResizeDevicesCommand.self, ChangeQuorumConfigCommand.self, ChangeFormatVersionCommand.self,
                      PrepareEmptyDataDeviceCommand.self, PrintCommand.self, CheckCommand.self, MountCommand.self, DfCommand.self, StatfsCommand.self, CountersCommand.self, SyncCommand.self,
                      QuorumStatusCommand.self, MountOptionCommand.self, FencedCommand.self,
                      StatCommand.self, WalkInodesCommand.self, SearchXattrsCommand.self, InoPathCommand.self, GetReferringEntriesCommand.self,
                      GetAllocatedInosCommand.self, GetAttrXCommand.self, SetAttrXCommand.self, SetattrCommand.self,
                      ReleaseCommand.self, StageCommand.self, PunchOfflineCommand.self, MoveBlocksCommand.self,
                      DataWaitingCommand.self, DataWaitErrCommand.self, GetFiemapCommand.self, TriggerCommand.self,
                      ListHiddenXattrsCommand.self, ReadXattrTotalsCommand.self, ReadXattrIndexCommand.self,
                      QuotaAddCommand.self, QuotaDelCommand.self, QuotaListCommand.self, QuotaWipeCommand.self, QuotaRestoreCommand.self]
    )

    public init() {}
}

extension ScoutCommand {
    /// This utility's version, printed by `scoutfs --version`.
    public static let version = "0.1.0"

    /// The line `scoutfs --version` prints.
    static var versionLine: String {
        "scoutfs \(version) (scoutfs in Swift; format versions \(Format.versionMin)-\(Format.versionMax))"
    }

    /// Every command's short options that take a value, for `getoptWords`. Every command
    /// reports its usage errors argp's way (`CMD: MSG` and the "Try" line, exit 64), as the
    /// original's do.
    static let argpValueOptions: [String: Set<Character>] = [
        "stat": ["s"], "statfs": ["p", "s"], "df": ["p"], "walk-inodes": ["p"], "ino-path": ["p"],
        "get-referring-entries": ["p"], "get-allocated-inos": ["i", "p"], "get-attr-x": [],
        "set-attr-x": ["m", "d", "v", "n", "f", "c", "r", "s", "t", "p"], "setattr": ["t", "r", "V", "s"],
        "release": ["V", "o", "l"], "stage": ["V", "o", "l"], "punch-offline": ["V", "o", "l"], "move-blocks": ["f", "l", "t"],
        "data-waiting": ["p", "I", "B"], "data-wait-err": ["p", "I", "V", "F", "C", "O", "E"], "get-fiemap": [],
        "mkfs": ["Q", "m", "d", "z", "V"], "print": [], "mount": ["o"], "counters": ["p"], "sync": ["p"],
        "quorum-status": ["p"], "mount-option": ["p"], "fenced": [],
        "resize-devices": ["p", "m", "d"], "change-quorum-config": ["Q"], "change-format-version": ["V"],
        "prepare-empty-data-device": [],
        "list-hidden-xattrs": [], "read-xattr-totals": ["p"], "read-xattr-index": ["p"],
        "quota-add": ["p", "r"], "quota-del": ["p", "r"], "quota-list": ["p"], "quota-wipe": ["p"], "quota-restore": ["p"],
    ]

    /// getopt's short option syntax, which ArgumentParser lacks, rewritten into separate
    /// words: a value attached to its option (`-V3`) and flags grouped with an option that
    /// takes a value (`-oV3`). The word after an option that takes a value is left alone
    /// (`-E -5`), as is everything after `--`. argp's `--usage` becomes `--help`.
    static func getoptWords(_ args: [String], valueOptions: Set<Character>) -> [String] {
        var out: [String] = []
        var needValue = false
        for (i, a) in args.enumerated() {
            if needValue {
                out.append(a)
                needValue = false
                continue
            }
            if a == "--" {
                out += args[i...]
                break
            }
            if a == "--usage" {
                out.append("--help")
                continue
            }
            guard a.hasPrefix("-"), !a.hasPrefix("--"), a.count > 2 else {
                if a.count == 2, a.hasPrefix("-"), let c = a.last, valueOptions.contains(c) { needValue = true }
                out.append(a)
                continue
            }
            var rest = Substring(a.dropFirst())
            while let c = rest.first {
                rest = rest.dropFirst()
                out.append("-\(c)")
                if valueOptions.contains(c) {
                    if rest.isEmpty { needValue = true } else { out.append(String(rest)) }
                    break
                }
            }
        }
        return out
    }

    /// The argp wording of an ArgumentParser usage message (unknown options, missing values);
    /// other messages are kept.
    static func argpMessage(_ message: String) -> String {
        func quoted(after prefix: String) -> String? {
            guard message.hasPrefix(prefix) else { return nil }
            let rest = message.dropFirst(prefix.count)
            return String(rest.prefix { $0 != "'" && $0 != " " && $0 != "=" })
        }
        if let name = quoted(after: "Unknown option '") {
            return name.hasPrefix("--") ? "unrecognized option '\(name)'" : "invalid option -- '\(name.dropFirst())'"
        }
        if let name = quoted(after: "Missing value for '") {
            return name.hasPrefix("--") ? "option '\(name)' requires an argument" : "option requires an argument -- '\(name.dropFirst())'"
        }
        return message
    }

    /// What the first words of a command line ask for.
    enum Route: Equatable {
        /// No command: the usage on standard error, exit 64.
        case usage
        /// `--help`, `-h`, `-?` or `help`: the usage on standard output, exit 0.
        case help
        /// `--version`.
        case version
        /// A command and its arguments (`help CMD` is `CMD --help`).
        case command([String])
        /// A word that names no command, and the command it is closest to (if any is close).
        case unknownCommand(String, suggestion: String?)
        /// An option before the command.
        case unknownOption(String)
    }

    static func route(_ args: [String]) -> Route {
        guard let first = args.first else { return .usage }
        func named(_ name: String, _ arguments: [String]) -> Route {
            commandTable.contains(where: { $0.name == name })
                ? .command([name] + arguments)
                : .unknownCommand(name, suggestion: closestCommand(to: name))
        }
        switch first {
        case "--help", "-h", "-?":
            return .help
        case "--version":
            return .version
        case "help":
            guard args.count > 1, args[1] != "help" else { return .help }
            return named(args[1], Array(args.dropFirst(2)) + ["--help"])
        default:
            return first.hasPrefix("-") ? .unknownOption(first) : named(first, Array(args.dropFirst()))
        }
    }

    /// The command whose name is nearest to `word` (edit distance, ties to the table's
    /// order), or one that starts with it; nil when none is close enough to be a likely typo.
    static func closestCommand(to word: String) -> String? {
        let names = commandTable.map(\.name)
        if word.count >= 3, let p = names.first(where: { $0.hasPrefix(word) }) { return p }
        let scored = names.map { ($0, editDistance(word, $0)) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        return best.1 <= max(1, min(word.count, best.0.count) / 3) ? best.0 : nil
    }

    /// Levenshtein distance over characters.
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty else { return b.count }
        var row = Array(0...b.count)
        for i in 1...a.count {
            var prev = row[0]
            row[0] = i
            for j in stride(from: 1, through: b.count, by: 1) {
                let cur = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] == b[j - 1] ? 0 : 1))
                prev = cur
            }
        }
        return row[b.count]
    }

    /// What standard error shows for a command line that names no command, and the exit
    /// status (nil for the routes that run something).
    static func refusal(_ route: Route) -> (lines: [String], status: Int32)? {
        let tryHelp = "Try `scoutfs --help' for the list of commands."
        switch route {
        case .usage:
            return (usageLines(), 64)
        case .unknownCommand(let name, let suggestion):
            let hint = suggestion.map { " (did you mean '\($0)'?)" } ?? ""
            return (["scoutfs: unknown command '\(name)'\(hint)", tryHelp], 64)
        case .unknownOption(let option):
            return (["scoutfs: unrecognized option '\(option)'", tryHelp], 64)
        case .help, .version, .command:
            return nil
        }
    }

    /// The `scoutfs` executable: routes the command line, parses the command's arguments
    /// (getopt syntax accepted), runs it, and reports every error one way: usage errors as
    /// argp's (`CMD: MSG` and the "Try" line, exit 64), failures as
    /// `scoutfs: CMD failed: [DETAIL: ]STRERROR (ERRNO)` (exit 1; `mount` exits 32, as
    /// mount(8) helpers do).
    public static func mainArgp(_ given: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
        let route = route(given)
        if let (lines, status) = refusal(route) {
            for l in lines { printErr(l) }
            Self.exit(withError: ExitCode(status))
        }
        guard case .command(let words) = route, let name = words.first else {
            print(route == .version ? versionLine : usageLines().joined(separator: "\n"))
            Self.exit()
        }
        let arguments = [name] + getoptWords(Array(words.dropFirst()), valueOptions: argpValueOptions[name] ?? [])
        // ArgumentParser's own errors: help (exit 0), usage errors reworded as argp's; anything
        // else is reported as a failure of the command, never as ArgumentParser's "Error: …"
        func parserError(_ error: any Error) -> Never {
            let code = exitCode(for: error)
            if code == .success || error is ExitCode { Self.exit(withError: error) }
            let first = message(for: error).split(separator: "\n").first.map(String.init) ?? ""
            let failure = code == .validationFailure ? ArgpError.usage(argpMessage(first)) : ArgpError.failed(EIO, "\(error)")
            let (lines, status) = failure.report(command: name)
            for l in lines { printErr(l) }
            Self.exit(withError: ExitCode(status))
        }
        var command: any ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            parserError(error)
        }
        do {
            try command.run()
        } catch let error as ArgpError {
            let (lines, status) = error.report(command: name)
            for l in lines { printErr(l) }
            Self.exit(withError: ExitCode(status))
        } catch let error as ExitCode {
            // a command that printed its own messages
            Self.exit(withError: error)
        } catch {
            // a help request comes back from run()
            parserError(error)
        }
        Self.exit()
    }
}

extension ScoutCommand {
    /// The original's command groups, in its usage's order.
    enum Group: Int, CaseIterable {
        case core, info, search, agent, debug

        var title: String {
            switch self {
            case .core: "Core admin:"
            case .info: "Additional Information:"
            case .search: "Search Acceleration:"
            case .agent: "Archival Agent Support:"
            case .debug: "Debugging commands:"
            }
        }
    }

    /// Every subcommand for the usage text: the original's group, argument summary and
    /// description (ours for the commands the original does not have).
    static let commandTable: [(name: String, group: Group, args: String, doc: String)] = [
        ("change-format-version", .core, "META-DEVICE DATA-DEVICE", "Change format version of an existing ScoutFS filesystem"),
        ("change-quorum-config", .core, "META-DEVICE", "Change quorum slots and addresses of an existing ScoutFS filesystem"),
        ("get-attr-x", .agent, "FILE", "get extensible file attributes"),
        ("set-attr-x", .agent, "FILE", "Set extensible file attributes"),
        ("counters", .info, "[-p PATH]", "Show a mount's counters"),
        ("df", .core, "", "Show metadata and data block usage"),
        ("fenced", .core, "[--config FILE]", "Run the fencing agent: carry out the fence requests of this host's servers"),
        ("get-fiemap", .debug, "FILE", "Print fiemap extent mapping"),
        ("get-allocated-inos", .debug, "(null)", "Print allocated inode numbers from starting inode number"),
        ("get-referring-entries", .search, "INODE-NUM", "Print directory entries that refer to inode number"),
        ("list-hidden-xattrs", .info, "FILE", "Print the names of hidden xattrs on a file"),
        ("read-xattr-index", .info, "FIRST-ENTRY LAST-ENTRY", "Search and print inode numbers indexed by their .indx. xattrs"),
        ("read-xattr-totals", .info, "", "Print global value totals of .totl. xattrs"),
        ("ino-path", .search, "INODE-NUM", "Print paths that refer to inode number"),
        ("mkfs", .core, "META-DEVICE DATA-DEVICE", "Initialize a new ScoutFS filesystem"),
        ("mount", .core, "-o metadev_path=META[,...] DATA-DEV MOUNTPOINT", "Mount a scoutfs volume through FUSE"),
        ("mount-option", .info, "[-p PATH] [NAME [VALUE]]", "Show or change a mount's options while it is mounted"),
        ("move-blocks", .agent, "FROM_FILE --from-offset OFFSET --length LENGTH TO_FILE --to-offset OFFSET",
         "Move a fixed-size region of extents from one regular file to another"),
        ("prepare-empty-data-device", .core, "META-DEVICE DATA-DEVICE", "Prepare empty data device for use with an existing ScoutFS filesystem"),
        ("print", .debug, "META-DEV", "Print metadata structures"),
        ("check", .debug, "META-DEVICE DATA-DEVICE", "Check the consistency of an unmounted volume"),
        ("punch-offline", .agent, "PATH", "Make a (sparse) hole in the file at offset and with length"),
        ("quota-add", .core, "", "Add quota rule"),
        ("quota-del", .core, "", "Delete quota rule"),
        ("quota-list", .core, "", "List quota rules"),
        ("quota-wipe", .core, "", "Delete all quota rules"),
        ("quota-restore", .core, "", "Restore quota rules from list output on stdin"),
        ("quorum-status", .info, "[-p PATH]", "Show a quorum member mount's election status and quorum counters"),
        ("search-xattrs", .info, "XATTR-NAME", "Print inode numbers of inodes which may have given xattr"),
        ("setattr", .agent, "FILE", "Set attributes on newly-created zero-length file"),
        ("stage", .agent, "ARCHIVE-FILE STAGE-FILE --data-version VERSION", "Write archive file contents to an offline file"),
        ("release", .agent, "FILE --data-version VERSION", "Mark file region offline and free extents"),
        ("resize-devices", .core, "", "Online resize of metadata and/or data devices"),
        ("stat", .info, "FILE", "Show ScoutFS extra inode information"),
        ("statfs", .info, "", "Show ScoutFS file system information"),
        ("sync", .core, "[-p PATH]", "Commit a mount's transaction"),
        ("data-waiting", .agent, "--inode INODE-NUM --block BLOCK-NUM", "Print operations waiting for data blocks"),
        ("data-wait-err", .agent, "--inode INODE-NUM --version VER-NUM --offset OFF-NUM --count COUNT --op OP --err ERR",
         "Return error from matching waiters"),
        ("walk-inodes", .search, "<meta_seq|data_seq> FIRST-ENTRY LAST-ENTRY", "Print range of indexed inodes"),
        ("trigger", .debug, "[-p PATH] NAME", "Arm a debugging trigger of the server a mount runs"),
    ]

    /// The original's usage (printed on standard error when no command or an unknown one is
    /// given): each group's commands, names right-aligned to the longest of all.
    static func usageLines() -> [String] {
        var out = [
            "usage: scoutfs <command> [<args>]", "", "Selected fs defaults to current working directory.",
            "See <command> --help for more details.", "", "Supported format version: \(Format.versionMin)-\(Format.versionMax)",
        ]
        let width = commandTable.map(\.name.count).max() ?? 0
        for g in Group.allCases {
            out += ["", g.title]
            for c in commandTable where c.group == g {
                out.append("  " + rightJustified(c.name, width) + " " + c.args)
                out.append("  " + String(repeating: " ", count: width) + " " + c.doc)
            }
        }
        return out
    }
}
