import ArgumentParser

/// The `scoutfs` command: the root of every subcommand, as the original's `cmd_execute`.
public struct ScoutCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "scoutfs",
        abstract: "scoutfs metadata and administration utility",
        subcommands: [MkfsCommand.self, PrintCommand.self, MountCommand.self, DfCommand.self, StatfsCommand.self, CountersCommand.self, SyncCommand.self,
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
