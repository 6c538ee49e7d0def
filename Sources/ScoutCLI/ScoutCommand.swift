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
    /// as the original's: the ones built on ScoutAgent.
    static let argpCommands: Set<String> = [
        "stat", "statfs", "df", "walk-inodes", "ino-path", "get-referring-entries", "get-allocated-inos", "get-attr-x",
        "set-attr-x", "setattr", "release", "stage", "punch-offline", "move-blocks", "data-waiting", "data-wait-err",
        "get-fiemap",
    ]

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
    public static func mainArgp(_ arguments: [String] = Array(CommandLine.arguments.dropFirst())) -> Never {
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
