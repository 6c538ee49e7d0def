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
