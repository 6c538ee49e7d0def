import ArgumentParser

/// `scoutfs trigger [-p PATH] NAME`: arms a one-shot debugging trigger of the server the mount
/// runs (the original's sysfs trigger files). `log_merge_force_finalize_ours` makes the next
/// finalization decision finalize every log tree however small, so a merge starts at once.
/// `drop_quota_check_cache` is the mount's own: it forgets the quota check results it keeps
/// for 5 s (the original's debugfs file of that name).
struct TriggerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trigger", abstract: "Arm a debugging trigger of the server a mount runs")

    @Option(name: .short, help: ArgumentHelp("A path in the filesystem (default $SCOUTFS_MOUNT_PATH, then .)", valueName: "PATH"))
    var path: String?

    @Argument(help: ArgumentHelp("The trigger: log_merge_force_finalize_ours, srch_force_log_rotate or drop_quota_check_cache", valueName: "NAME"))
    var name: String

    func run() throws {
        _ = try control(mountPath(path), "trigger \(name)")
    }
}
