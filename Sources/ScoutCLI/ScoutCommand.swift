import ArgumentParser
import ScoutFormat

/// The `scoutfs` command: the root of every subcommand, as the original's `cmd_execute`.
public struct ScoutCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "scoutfs",
        abstract: "scoutfs metadata and administration utility",
        subcommands: [MkfsCommand.self, PrintCommand.self, CheckCommand.self, MountCommand.self, DfCommand.self, StatfsCommand.self, CountersCommand.self, SyncCommand.self,
                      QuorumStatusCommand.self, MountOptionCommand.self, FencedCommand.self,
                      StatCommand.self, WalkInodesCommand.self, InoPathCommand.self, GetReferringEntriesCommand.self,
                      GetAllocatedInosCommand.self, GetAttrXCommand.self, SetAttrXCommand.self, SetattrCommand.self,
                      ReleaseCommand.self, StageCommand.self, PunchOfflineCommand.self, MoveBlocksCommand.self,
                      DataWaitingCommand.self, DataWaitErrCommand.self, GetFiemapCommand.self]
    )

    public init() {}
}

extension ScoutCommand {
    /// The commands whose usage errors are argp's (`CMD: MSG` and the "Try" line, exit 64),
    /// as the original's: the ones built on ScoutAgent, with their short options that take a
    /// value.
    static let argpValueOptions: [String: Set<Character>] = [
        "stat": ["s"], "statfs": ["p", "s"], "df": ["p"], "walk-inodes": ["p"], "ino-path": ["p"],
        "get-referring-entries": ["p"], "get-allocated-inos": ["i", "p"], "get-attr-x": [],
        "set-attr-x": ["m", "d", "v", "n", "f", "c", "r", "s", "t", "p"], "setattr": ["t", "r", "V", "s"],
        "release": ["V", "o", "l"], "stage": ["V", "o", "l"], "punch-offline": ["V", "o", "l"], "move-blocks": ["f", "l", "t"],
        "data-waiting": ["p", "I", "B"], "data-wait-err": ["p", "I", "V", "F", "C", "O", "E"], "get-fiemap": [],
    ]

    static var argpCommands: Set<String> { Set(argpValueOptions.keys) }

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

    /// `ScoutCommand.main()`, except that the archive commands report ArgumentParser's usage
    /// errors the original's (argp's) way.
    public static func mainArgp(_ given: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
        guard let first = given.first, commandTable.contains(where: { $0.name == first }) else {
            if let first = given.first { printErr("scoutfs: unrecognized command: '\(first)'") }
            for l in usageLines() { printErr(l) }
            Self.exit(withError: ExitCode(1))
        }
        var arguments = given
        if let name = given.first, let values = argpValueOptions[name] {
            arguments = [name] + getoptWords(Array(given.dropFirst()), valueOptions: values)
        }
        var command: any ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            if let name = arguments.first, argpCommands.contains(name), exitCode(for: error) == .validationFailure {
                let first = message(for: error).split(separator: "\n").first.map(String.init) ?? ""
                printErr("\(name): \(argpMessage(first))")
                printErr("Try `\(name) --help' or `\(name) --usage' for more information.")
                Self.exit(withError: ExitCode(64))
            }
            Self.exit(withError: error)
        }
        do {
            try command.run()
        } catch {
            Self.exit(withError: error)
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
        ("get-attr-x", .agent, "FILE", "get extensible file attributes"),
        ("set-attr-x", .agent, "FILE", "Set extensible file attributes"),
        ("counters", .info, "[-p PATH]", "Show a mount's counters"),
        ("df", .core, "", "Show metadata and data block usage"),
        ("fenced", .core, "[--config FILE]", "Run the fencing agent: carry out the fence requests of this host's servers"),
        ("get-fiemap", .debug, "FILE", "Print fiemap extent mapping"),
        ("get-allocated-inos", .debug, "(null)", "Print allocated inode numbers from starting inode number"),
        ("get-referring-entries", .search, "INODE-NUM", "Print directory entries that refer to inode number"),
        ("ino-path", .search, "INODE-NUM", "Print paths that refer to inode number"),
        ("mkfs", .core, "META-DEVICE DATA-DEVICE", "Initialize a new ScoutFS filesystem"),
        ("mount", .core, "-o metadev_path=META[,...] DATA-DEV MOUNTPOINT", "Mount a scoutfs volume through FUSE"),
        ("mount-option", .info, "[-p PATH] [NAME [VALUE]]", "Show or change a mount's options while it is mounted"),
        ("move-blocks", .agent, "FROM_FILE --from-offset OFFSET --length LENGTH TO_FILE --to-offset OFFSET",
         "Move a fixed-size region of extents from one regular file to another"),
        ("print", .debug, "META-DEV", "Print metadata structures"),
        ("check", .debug, "META-DEVICE DATA-DEVICE", "Check the consistency of an unmounted volume"),
        ("punch-offline", .agent, "PATH", "Make a (sparse) hole in the file at offset and with length"),
        ("quorum-status", .info, "[-p PATH]", "Show a quorum member mount's election status and quorum counters"),
        ("setattr", .agent, "FILE", "Set attributes on newly-created zero-length file"),
        ("stage", .agent, "ARCHIVE-FILE STAGE-FILE --data-version VERSION", "Write archive file contents to an offline file"),
        ("release", .agent, "FILE --data-version VERSION", "Mark file region offline and free extents"),
        ("stat", .info, "FILE", "Show ScoutFS extra inode information"),
        ("statfs", .info, "", "Show ScoutFS file system information"),
        ("sync", .core, "[-p PATH]", "Commit a mount's transaction"),
        ("data-waiting", .agent, "--inode INODE-NUM --block BLOCK-NUM", "Print operations waiting for data blocks"),
        ("data-wait-err", .agent, "--inode INODE-NUM --version VER-NUM --offset OFF-NUM --count COUNT --op OP --err ERR",
         "Return error from matching waiters"),
        ("walk-inodes", .search, "<meta_seq|data_seq> FIRST-ENTRY LAST-ENTRY", "Print range of indexed inodes"),
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
