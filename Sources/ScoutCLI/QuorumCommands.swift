import ArgumentParser
import Glibc

/// `-p PATH`, or `$SCOUTFS_MOUNT_PATH`, or the current directory (the original's intended
/// fallback order; its own environment fallback is broken).
func mountPath(_ given: String?) -> String {
    if let given { return given }
    if let p = getenv("SCOUTFS_MOUNT_PATH"), p.pointee != 0 { return String(cString: p) }
    return "."
}

/// `scoutfs quorum-status [-p PATH]`: the quorum status of the mount holding PATH (the
/// original's sysfs `quorum/status` file), with its quorum counters.
struct QuorumStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quorum-status",
        abstract: "Show a quorum member mount's election status and quorum counters"
    )

    @Option(name: .short, help: ArgumentHelp("A path in the filesystem (default $SCOUTFS_MOUNT_PATH, then .)", valueName: "PATH"))
    var path: String?

    func run() throws {
        print(try control(mountPath(path), "quorum-status"), terminator: "")
    }
}

/// `scoutfs mount-option [-p PATH] [NAME [VALUE]]`: lists the mount options of the mount
/// holding PATH (`name value` lines), prints one, or changes a live one (root only). Our
/// stand-in for the original's sysfs `mount_options/` files.
struct MountOptionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount-option",
        abstract: "Show or change a mount's options while it is mounted",
        discussion: """
            Without NAME, prints every option as "name value". With NAME, prints its value. \
            With NAME and VALUE, changes the option (root only), within its mount-time range; \
            only quorum_heartbeat_timeout_ms can change while mounted today.
            """
    )

    @Option(name: .short, help: ArgumentHelp("A path in the filesystem (default $SCOUTFS_MOUNT_PATH, then .)", valueName: "PATH"))
    var path: String?

    @Argument(help: ArgumentHelp("The option's name", valueName: "NAME"))
    var name: String?

    @Argument(help: ArgumentHelp("The new value", valueName: "VALUE"))
    var value: String?

    func run() throws {
        for word in [name, value].compactMap({ $0 }) where word.isEmpty || word.contains(where: { $0 == " " || $0 == "\n" || $0 == "\t" }) {
            throw ArgpError.usage("names and values cannot be empty or hold white space: '\(word)'")
        }
        let command = (["mount-option"] + [name, value].compactMap { $0 }).joined(separator: " ")
        print(try control(mountPath(path), command), terminator: "")
    }
}
