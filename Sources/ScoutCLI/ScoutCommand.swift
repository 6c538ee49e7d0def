import ArgumentParser

/// The `scoutfs` command: the root of every subcommand, as the original's `cmd_execute`.
public struct ScoutCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "scoutfs",
        abstract: "scoutfs metadata and administration utility",
        subcommands: [MkfsCommand.self, PrintCommand.self, MountCommand.self, DfCommand.self, StatfsCommand.self, CountersCommand.self, SyncCommand.self,
                      QuorumStatusCommand.self, MountOptionCommand.self, FencedCommand.self]
    )

    public init() {}
}
