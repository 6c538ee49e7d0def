import Glibc
import ScoutFormat

/// The mounts running on this host, one file per mount: `<run dir>/mounts/<rid %016llx>`
/// with `key=value` lines, so that a fence script can find the daemon of a rid and stop it
/// (`scripts/scoutfs-fence-local`).
///
/// Keys: `rid` (%016llx), `pid` (the daemon), `pid_start` (the daemon's start time in clock
/// ticks since boot, field 22 of `/proc/PID/stat`, so a reused pid is never mistaken for the
/// daemon), `mountpoint`, `device` (the mount's device number `MAJ:MIN`, as `stat` and
/// `/proc/self/mountinfo` show it; it names the FUSE connection), `data_device`,
/// `control_socket`, `pid_namespace` (the pid's namespace: a pid is judged only in its own),
/// `boot_id` and `machine_id` (this host's boot and installation). Values are single lines. A
/// copy of each entry is kept where it survives a reboot (``stateDirectory``).
///
/// Deviation: the original's test fence script finds the mount by reading every
/// `/sys/fs/scoutfs/*/rid`; a FUSE daemon has no sysfs directory, so the daemon records itself
/// here when it mounts and removes the file when it unmounts.
public struct MountRegistry: Sendable {
    /// One mount's record.
    public struct Entry: Sendable, Equatable {
        public var rid: UInt64
        public var pid: Int32
        /// The daemon's start time (`/proc/PID/stat` field 22); 0 when unknown.
        public var pidStart: UInt64
        public var mountpoint: String
        /// The mount's device number as `MAJ:MIN`; empty when unknown.
        public var device: String
        public var dataDevice: String
        public var controlSocket: String
        /// The pid namespace the pid belongs to (`readlink /proc/self/ns/pid`, e.g.
        /// `pid:[4026531836]`); empty when unknown. A pid is only looked up in its own namespace.
        public var pidNamespace: String
        /// The boot the daemon registered in (`/proc/sys/kernel/random/boot_id`) and the
        /// installation (`/etc/machine-id`); empty when unknown.
        public var bootID: String
        public var machineID: String

        public init(
            rid: UInt64, pid: Int32, pidStart: UInt64 = 0, mountpoint: String, device: String = "",
            dataDevice: String, controlSocket: String, pidNamespace: String = MountRegistry.ownPidNamespace,
            bootID: String = MountRegistry.currentBootID, machineID: String = MountRegistry.currentMachineID
        ) {
            self.bootID = bootID
            self.machineID = machineID
            self.rid = rid
            self.pid = pid
            self.pidStart = pidStart
            self.mountpoint = mountpoint
            self.device = device
            self.dataDevice = dataDevice
            self.controlSocket = controlSocket
            self.pidNamespace = pidNamespace
        }
    }

    /// The directory holding the entries: `<run dir>/mounts`.
    public let directory: String
    /// Where a copy of each entry survives a reboot (`<state dir>/mounts`): `/run` is emptied at
    /// boot, and a mount that a power cut ended must still be known as this host's, and as gone
    /// (its boot is over), to the next server (``LocalFence``).
    public let stateDirectory: String

    /// The registry under `runDirectory` (by default ``ControlSocket/directory``:
    /// `$SCOUTFS_RUN_DIR` or `/run/scoutfs`), with its boot-surviving copies under
    /// `$SCOUTFS_STATE_DIR`, else `/var/lib/scoutfs` for the default run directory, else
    /// `<run dir>/state`.
    public init(runDirectory: String = ControlSocket.directory) {
        directory = runDirectory + "/mounts"
        let state: String
        if let v = getenv("SCOUTFS_STATE_DIR"), v.pointee != 0 {
            state = String(cString: v)
        } else if runDirectory == ControlSocket.defaultDirectory {
            state = "/var/lib/scoutfs"
        } else {
            state = runDirectory + "/state"
        }
        stateDirectory = state + "/mounts"
    }

    /// The file of `rid`.
    public func path(rid: UInt64) -> String {
        directory + "/" + Self.hex(rid)
    }

    /// Records this process as the daemon of a mount (`pid_start` is read from /proc; the
    /// mountpoint and device paths are made absolute with ``canonical(_:)``; `device` is the
    /// mount's `st_dev`). Replaces an earlier entry for the same rid. The file appears whole
    /// (written aside, then renamed).
    public func register(
        rid: UInt64, mountpoint: String, device: dev_t, dataDevice: String, controlSocket: String
    ) throws(MountError) {
        let pid = getpid()
        try register(Entry(
            rid: rid, pid: pid, pidStart: Self.startTime(pid: pid) ?? 0,
            mountpoint: Self.canonical(mountpoint), device: Self.deviceNumber(device),
            dataDevice: Self.canonical(dataDevice), controlSocket: controlSocket))
    }

    /// `device` as `MAJ:MIN`.
    public static func deviceNumber(_ device: dev_t) -> String {
        "\(ControlSocket.major(device)):\(ControlSocket.minor(device))"
    }

    /// `path` made absolute with its directory's symbolic links resolved, as
    /// `/proc/self/mountinfo` shows a mountpoint. The last component is not followed, so a
    /// mountpoint is never looked up through the mount itself. Unchanged when its directory
    /// cannot be resolved.
    public static func canonical(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        let dir: String
        let base: String
        if let slash = p.lastIndex(of: "/") {
            dir = slash == p.startIndex ? "/" : String(p[..<slash])
            base = String(p[p.index(after: slash)...])
        } else {
            dir = "."
            base = p
        }
        guard !base.isEmpty, base != ".", base != "..", let real = realpath(dir, nil) else { return path }
        defer { free(real) }
        let r = String(cString: real)
        return (r == "/" ? "" : r) + "/" + base
    }

    /// Records an entry as given.
    public func register(_ entry: Entry) throws(MountError) {
        for (name, v) in [("mountpoint", entry.mountpoint), ("device", entry.device), ("data_device", entry.dataDevice),
                          ("control_socket", entry.controlSocket), ("pid_namespace", entry.pidNamespace)]
        where v.contains("\n") || v.contains("\0") {
            throw MountError(EINVAL, "cannot register a mount whose \(name) contains a newline or NUL")
        }
        let text = """
            rid=\(Self.hex(entry.rid))
            pid=\(entry.pid)
            pid_start=\(entry.pidStart)
            mountpoint=\(entry.mountpoint)
            device=\(entry.device)
            data_device=\(entry.dataDevice)
            control_socket=\(entry.controlSocket)
            pid_namespace=\(entry.pidNamespace)
            boot_id=\(entry.bootID)
            machine_id=\(entry.machineID)

            """
        ControlServer.makeDirectories(stateDirectory)
        try? Self.writeFile(text, to: stateDirectory + "/" + Self.hex(entry.rid))
        ControlServer.makeDirectories(directory)
        try Self.writeFile(text, to: path(rid: entry.rid))
    }

    /// Writes `text` to `final` whole (aside, then renamed).
    private static func writeFile(_ text: String, to final: String) throws(MountError) {
        let temp = final + ".tmp.\(getpid())"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let e = errno
            throw MountError(e, "cannot write mount registry entry \(temp): \(String(cString: strerror(e)))")
        }
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                let e = n < 0 ? errno : EIO
                close(fd)
                unlink(temp)
                throw MountError(e, "cannot write mount registry entry \(temp): \(String(cString: strerror(e)))")
            }
            off += n
        }
        close(fd)
        guard rename(temp, final) == 0 else {
            let e = errno
            unlink(temp)
            throw MountError(e, "cannot write mount registry entry \(final): \(String(cString: strerror(e)))")
        }
    }

    /// Removes the entry of `rid` and its boot-surviving copy (nothing happens when there is
    /// none).
    public func unregister(rid: UInt64) {
        unlink(path(rid: rid))
        unlink(stateDirectory + "/" + Self.hex(rid))
    }

    /// The boot-surviving copy of `rid`'s entry when it was registered on this installation
    /// in an earlier boot (its boot id differs from this boot's; both ids known): its daemon
    /// ended with that boot. Nil otherwise.
    public func entryOfAnEarlierBoot(rid: UInt64) -> Entry? {
        guard let e = try? Self.readEntry(stateDirectory + "/" + Self.hex(rid)), !e.bootID.isEmpty, !e.machineID.isEmpty,
            !Self.currentBootID.isEmpty, e.bootID != Self.currentBootID, e.machineID == Self.currentMachineID
        else { return nil }
        return e
    }

    /// The entry of `rid`; nil when there is none. Throws EINVAL for an unreadable or
    /// malformed file.
    public func lookup(rid: UInt64) throws(MountError) -> Entry? {
        try Self.readEntry(path(rid: rid))
    }

    private static func readEntry(_ p: String) throws(MountError) -> Entry? {
        let fd = open(p, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            let e = errno
            if e == ENOENT { return nil }
            throw MountError(e, "cannot read mount registry entry \(p): \(String(cString: strerror(e)))")
        }
        defer { close(fd) }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while data.count < 1 << 20 {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data += buf[0..<n]
        }
        return try Self.parse(String(decoding: data, as: UTF8.self), path: p)
    }

    /// Every entry (malformed files are skipped), by rid.
    public func entries() -> [Entry] {
        guard let dir = opendir(directory) else { return [] }
        var rids: [UInt64] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name.count == 16, let rid = UInt64(name, radix: 16) { rids.append(rid) }
        }
        closedir(dir)
        return rids.sorted().compactMap { try? lookup(rid: $0) }
    }

    static func parse(_ text: String, path: String) throws(MountError) -> Entry {
        var fields: [String: String] = [:]
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        guard let ridText = fields["rid"], let rid = UInt64(ridText, radix: 16),
              let pidText = fields["pid"], let pid = Int32(pidText), pid > 0,
              let mountpoint = fields["mountpoint"]
        else {
            throw MountError(EINVAL, "malformed mount registry entry \(path)")
        }
        return Entry(
            rid: rid, pid: pid, pidStart: fields["pid_start"].flatMap { UInt64($0) } ?? 0,
            mountpoint: mountpoint, device: fields["device"] ?? "", dataDevice: fields["data_device"] ?? "",
            controlSocket: fields["control_socket"] ?? "", pidNamespace: fields["pid_namespace"] ?? "",
            bootID: fields["boot_id"] ?? "", machineID: fields["machine_id"] ?? "")
    }

    /// Whether the daemon of `entry` still runs: its pid exists, has the recorded start time
    /// (a reused pid is another process), and is not a zombie. A zombie main thread alone
    /// is no zombie process: a daemon whose main thread exited runs on while any other of
    /// its threads does. An entry without a start time counts as running: nothing can prove
    /// it gone.
    public static func isRunning(_ entry: Entry) -> Bool {
        guard entry.pidStart != 0 else { return true }
        // a pid of another pid namespace says nothing here
        guard entry.pidNamespace.isEmpty || entry.pidNamespace == ownPidNamespace else { return true }
        guard let (state, start) = stateAndStartTime(pid: entry.pid), start == entry.pidStart else { return false }
        return !isDead(state) || anyThreadLives(pid: entry.pid)
    }

    static func isDead(_ state: Character) -> Bool { state == "Z" || state == "X" || state == "x" }

    /// Whether any thread of `pid` (`/proc/PID/task/*`) is neither a zombie nor dead.
    static func anyThreadLives(pid: Int32) -> Bool {
        guard let dir = opendir("/proc/\(pid)/task") else { return false }
        defer { closedir(dir) }
        // bounded by the process's thread count
        while let e = readdir(dir) {
            let name = withUnsafeBytes(of: e.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let tid = Int32(name), let state = stateAndStartTime(path: "/proc/\(pid)/task/\(tid)/stat")?.state else { continue }
            if !isDead(state) { return true }
        }
        return false
    }

    /// This boot's id (`/proc/sys/kernel/random/boot_id`); empty when unreadable.
    public static let currentBootID = firstLine("/proc/sys/kernel/random/boot_id")

    /// This installation's id (`/etc/machine-id`); empty when unreadable.
    public static let currentMachineID = firstLine("/etc/machine-id")

    static func firstLine(_ path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { return "" }
        return String(decoding: buf[0..<n].prefix { $0 != 10 }, as: UTF8.self)
    }

    /// This process's pid namespace (`readlink /proc/self/ns/pid`); empty when unreadable.
    public static var ownPidNamespace: String {
        var buf = [CChar](repeating: 0, count: 64)
        let n = readlink("/proc/self/ns/pid", &buf, buf.count - 1)
        guard n > 0 else { return "" }
        return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Field 22 of `/proc/PID/stat` (start time in clock ticks after boot); nil when the
    /// process does not exist.
    public static func startTime(pid: Int32) -> UInt64? {
        stateAndStartTime(pid: pid)?.start
    }

    /// Fields 3 (state) and 22 (start time) of `/proc/PID/stat`; nil when the process does not
    /// exist.
    static func stateAndStartTime(pid: Int32) -> (state: Character, start: UInt64)? {
        stateAndStartTime(path: "/proc/\(pid)/stat")
    }

    /// Fields 3 and 22 of a `/proc` stat file (a process's or one of its threads').
    static func stateAndStartTime(path: String) -> (state: Character, start: UInt64)? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buf, buf.count)
        guard n > 0 else { return nil }
        let text = String(decoding: buf[0..<n], as: UTF8.self)
        // the command name is in parentheses and may hold spaces: fields restart after the last ')'
        guard let close = text.lastIndex(of: ")") else { return nil }
        let rest = text[text.index(after: close)...].split(separator: " ")
        // rest[0] is field 3 (state), so field 22 is rest[19]
        guard rest.count > 19, let state = rest[0].first, let start = UInt64(rest[19]) else { return nil }
        return (state, start)
    }

    static func hex(_ v: UInt64) -> String { v.paddedHex }
}
