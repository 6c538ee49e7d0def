import Glibc
public import Logging
import ScoutBlockIO
public import ScoutFS
import ScoutFormat
public import ScoutServer
import Synchronization

/// Where a mount's control socket lives: one per mounted filesystem, named by the mount's
/// device number, so the CLI finds it by `stat`ing any path inside the mount.
///
/// The directory is `/run/scoutfs`, or `$SCOUTFS_RUN_DIR` when that is set (the daemon, the
/// CLI, `scoutfs fenced` and `scoutfs-fence-local` all read it; tests use it to run apart).
public enum ControlSocket {
    /// The run directory when `$SCOUTFS_RUN_DIR` is not set.
    public static let defaultDirectory = "/run/scoutfs"
    /// The environment variable that moves the run directory.
    public static let directoryVariable = "SCOUTFS_RUN_DIR"

    /// The run directory: `$SCOUTFS_RUN_DIR`, or `/run/scoutfs`.
    public static var directory: String {
        if let p = getenv(directoryVariable), p.pointee != 0 { return String(cString: p) }
        return defaultDirectory
    }

    /// The control socket of the mount whose files have device number `device`.
    public static func path(device: dev_t, directory: String = ControlSocket.directory) -> String {
        "\(directory)/dev-\(major(device))-\(minor(device)).sock"
    }

    static func major(_ d: dev_t) -> UInt32 { UInt32(truncatingIfNeeded: ((d >> 32) & 0xffff_f000) | ((d >> 8) & 0xfff)) }
    static func minor(_ d: dev_t) -> UInt32 { UInt32(truncatingIfNeeded: ((d >> 12) & 0xffff_ff00) | (d & 0xff)) }

    /// Every control socket in `directory` (`*.sock`, sockets only), sorted by path. Empty
    /// when the directory does not exist.
    public static func sockets(in directory: String = ControlSocket.directory) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var out: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard name.hasSuffix(".sock") else { continue }
            let path = directory + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFSOCK else { continue }
            out.append(path)
        }
        return out.sorted()
    }

    /// Sends one command line and returns (status line, body). Status "OK" or "ERR <errno> <message>".
    /// Connecting, sending and each read give up after `timeoutSeconds` (a stopped daemon
    /// cannot hang the caller).
    public static func request(
        path: String, _ line: String, timeoutSeconds: Int = 120
    ) throws(MountError) -> (ok: Bool, errno: Int32, body: String) {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw MountError(errno, "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        setTimeouts(fd, seconds: timeoutSeconds)
        var addr = sockaddr_un()
        guard fill(&addr, path) else { throw MountError(ENAMETOOLONG, "socket path too long: \(path)") }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw MountError(errno, "cannot reach the mount's control socket \(path): \(String(cString: strerror(errno)))") }
        let out = Array((line + "\n").utf8)
        let sent = out.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        guard sent == out.count else { throw MountError(errno == 0 ? EIO : errno, "cannot send to the control socket \(path)") }
        var reply: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n < 0 { throw MountError(errno, "no reply from the control socket \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            reply += buf[0..<n]
        }
        guard !reply.isEmpty else { throw MountError(EIO, "empty reply from the control socket \(path)") }
        let text = String(decoding: reply, as: UTF8.self)
        let (status, body) = text.firstIndex(of: "\n").map { (String(text[..<$0]), String(text[text.index(after: $0)...])) } ?? (text, "")
        if status == "OK" { return (true, 0, body) }
        let parts = status.split(separator: " ", maxSplits: 2)
        let e = parts.count > 1 ? Int32(parts[1]) ?? EIO : EIO
        return (false, e, parts.count > 2 ? String(parts[2]) : status)
    }

    static func fill(_ addr: inout sockaddr_un, _ path: String) -> Bool {
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return true
    }

    static func setTimeouts(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: max(1, seconds), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
}

/// What the control socket reports beyond the volume, filled in by the mount. Every member
/// has a default, so a server works without them (no fences, not a quorum member, no live
/// options).
public struct ControlSources: Sendable {
    /// This mount's rid.
    public var rid: UInt64
    /// The fence request table of the server this mount runs; nil when it runs none.
    public var fences: @Sendable () -> FenceRequests?
    /// The text of `quorum-status` (``ScoutQuorumService/QuorumStatusText``); nil when this
    /// mount is not a quorum member.
    public var quorumStatus: @Sendable () -> String?
    /// The mount options as (name, value), in the order to list them.
    public var mountOptions: @Sendable () -> [(String, String)]
    /// Changes a live mount option; the name is one that ``mountOptions`` lists. Throws
    /// EINVAL (with the reason) for a value out of range or an option that cannot change.
    public var setMountOption: @Sendable (String, String) throws(MountError) -> Void
    /// The counters of the server this mount runs (none when it runs none).
    public var serverCounters: @Sendable () -> [(String, UInt64)]
    /// Arms a one-shot trigger of the server this mount runs; false when it runs none or the
    /// name is not a trigger.
    public var trigger: @Sendable (String) -> Bool
    /// The names the kernel may hold as dentries from this mount, their bound and how many
    /// were given back (nil before the FUSE session exists).
    public var kernelNames: @Sendable () -> (names: Int, max: Int, pruned: UInt64, failed: UInt64, lastErrno: Int32)? = { nil }

    public init(
        rid: UInt64 = 0,
        fences: @escaping @Sendable () -> FenceRequests? = { nil },
        quorumStatus: @escaping @Sendable () -> String? = { nil },
        mountOptions: @escaping @Sendable () -> [(String, String)] = { [] },
        setMountOption: @escaping @Sendable (String, String) throws(MountError) -> Void = { name, _ throws(MountError) in
            throw MountError(EINVAL, "mount option \(name) cannot be changed while mounted")
        },
        serverCounters: @escaping @Sendable () -> [(String, UInt64)] = { [] },
        trigger: @escaping @Sendable (String) -> Bool = { _ in false }
    ) {
        self.serverCounters = serverCounters
        self.trigger = trigger
        self.rid = rid
        self.fences = fences
        self.quorumStatus = quorumStatus
        self.mountOptions = mountOptions
        self.setMountOption = setMountOption
    }
}

/// Serves a mount's control socket, one text command per connection: the command line in,
/// `OK\n<body>` or `ERR <errno> <message>\n` out. It is our stand-in for the original's sysfs
/// directory and ioctls. Callers are identified by SO_PEERCRED.
///
/// Commands and bodies (every body line ends in a newline):
/// - `df`, `statfs`: `name value` lines (meta_total, meta_free, data_total, data_free,
///   inode_count, fsid, rid, uuid, committed_seq).
/// - `counters`: `name value` lines.
/// - `sync`: commits the open transaction (root or the daemon's owner).
/// - `rid`: the mount's rid, `%016llx`.
/// - `fence-list`: one line per fence request of the server this mount runs, by rid:
///   `RID IPV4 REASON ELAPSED_SECS FENCED ERROR`, separated by single spaces; RID is
///   `%016llx`, IPV4 a dotted quad, REASON `client_recovery`, `client_reconnect` or
///   `quorum_block_leader`, FENCED and ERROR `0` or `1`. Empty when there are none or this
///   mount runs no server.
/// - `fence-answer RID fenced|error`: the agent's answer (root only). RID in hex, with or
///   without `0x`. ENOENT when there is no such request (or no server here), EINVAL for
///   bad input.
/// - `quorum-status`: the member's status (see `QuorumStatusText`); ENOENT when this mount
///   is not a quorum member.
/// - `mount-option`: every option as `name value` lines; `mount-option NAME`: its value;
///   `mount-option NAME VALUE`: changes it (root only). ENOENT for an unknown name.
///
/// Deviation: the original's fence files are writable by root, and "any write" sets the flag;
/// here the answer must name `fenced` or `error`.
public final class ControlServer: Sendable {
    /// The socket's path.
    public let path: String
    let fd: Int32
    let volume: Volume?
    let sources: ControlSources
    let logger: Logger
    private let stopped = Atomic<Bool>(false)
    private let exited = ExitLatch()
    /// Connections being served.
    private let active = Atomic<Int>(0)

    private init(fd: Int32, path: String, volume: Volume?, sources: ControlSources, logger: Logger) {
        self.fd = fd
        self.path = path
        self.volume = volume
        self.sources = sources
        self.logger = logger
    }

    /// Serves the control socket of the mount with device number `device` in the run
    /// directory (``ControlSocket/directory``).
    public static func start(
        device: dev_t, volume: Volume?, sources: ControlSources = ControlSources(), logger: Logger
    ) throws(MountError) -> ControlServer {
        try start(path: ControlSocket.path(device: device), volume: volume, sources: sources, logger: logger)
    }

    /// Serves a control socket at `path` (its directory is made if missing; a stale socket
    /// there is replaced). Without a volume, `df`, `statfs`, `counters` and `sync` fail with
    /// ENODEV.
    public static func start(
        path: String, volume: Volume?, sources: ControlSources = ControlSources(), logger: Logger
    ) throws(MountError) -> ControlServer {
        if let slash = path.lastIndex(of: "/"), slash != path.startIndex {
            makeDirectories(String(path[..<slash]))
        }
        unlink(path)
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw MountError(errno, "control socket") }
        var addr = sockaddr_un()
        guard ControlSocket.fill(&addr, path) else {
            close(fd)
            throw MountError(ENAMETOOLONG, "control socket path too long: \(path)")
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0, listen(fd, 16) == 0 else {
            let e = errno
            close(fd)
            throw MountError(e, "cannot bind control socket \(path): \(String(cString: strerror(e)))")
        }
        chmod(path, 0o666)
        let s = ControlServer(fd: fd, path: path, volume: volume, sources: sources, logger: logger)
        ClientLink.onThread { s.serve() }
        return s
    }

    /// Stops serving, removes the socket, and waits (up to 5 s in all) for the commands
    /// under way to finish.
    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        unlink(path)
        shutdown(fd, Int32(SHUT_RDWR))
        let deadline = monotonicSeconds() + 5
        exited.wait(seconds: 5)
        while active.load(ordering: .acquiring) > 0 && monotonicSeconds() < deadline { usleep(10_000) }
    }

    private func serve() {
        defer {
            close(fd)
            exited.signal()
        }
        while !stopped.load(ordering: .acquiring) {
            let c = accept(fd, nil, nil)
            if c < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                return
            }
            // Up to `maxThreads` commands run at once, each on its own thread, so a long
            // `sync` does not hold up the fencing agent's `fence-list`; past that, the
            // accepting thread serves the connection itself (callers wait in the backlog).
            if active.add(1, ordering: .acquiringAndReleasing).newValue <= Self.maxThreads {
                ClientLink.onThread {
                    self.serveConnection(c)
                    self.active.subtract(1, ordering: .acquiringAndReleasing)
                }
            } else {
                serveConnection(c)
                active.subtract(1, ordering: .acquiringAndReleasing)
            }
        }
    }

    static let maxThreads = 4

    private func serveConnection(_ c: Int32) {
        defer { close(c) }
        ControlSocket.setTimeouts(c, seconds: 5)
        // struct ucred: pid, uid, gid (needs _GNU_SOURCE in C, so read it as three int32s)
        var cred: (pid: Int32, uid: UInt32, gid: UInt32) = (0, UInt32.max, UInt32.max)
        var len = socklen_t(12)
        guard getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 else { return }
        let line = Self.readLine(c)
        let reply = handle(line, uid: cred.uid)
        let bytes = Array(reply.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { write(c, $0.baseAddress! + off, $0.count - off) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            off += n
        }
    }

    /// Reads up to the first newline (or EOF, or 4 KiB).
    static func readLine(_ c: Int32) -> String {
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while data.count < 4096 && !data.contains(10) {
            let n = read(c, &buf, 4096 - data.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            data += buf[0..<n]
        }
        if let nl = data.firstIndex(of: 10) { data.removeSubrange(nl...) }
        return String(decoding: data, as: UTF8.self).trimmingSuffixNewline()
    }

    /// The memory counters: the item cache, the block cache and the kernel's node and name
    /// tables as this mount tracks them.
    private func memoryCounters(_ volume: Volume) -> [String] {
        let m = volume.memoryStats()
        let blocks = volume.meta.cache
        var out = [
            "item_cache_clean_items \(m.items.cleanItems)", "item_cache_clean_bytes \(m.items.cleanBytes)",
            "item_cache_limit_bytes \(m.items.limit)", "item_cache_ranges \(m.items.ranges)",
            "item_cache_dirty_items \(m.items.dirtyItems)", "item_cache_dirty_bytes \(m.items.dirtyBytes)",
            "item_cache_evicted \(m.items.evicted)", "item_cache_range_reads \(m.items.rangeReads)",
            "item_cache_point_reads \(m.items.pointReads)",
            "block_cache_bytes \(blocks.bytes)", "block_cache_limit_bytes \(blocks.capacity)",
            "kernel_inodes \(m.kernelInodes)", "open_inodes \(m.openInodes)",
        ]
        if let k = sources.kernelNames() {
            out += [
                "kernel_dentries \(k.names)", "kernel_dentries_max \(k.max)", "kernel_dentries_pruned \(k.pruned)",
                "kernel_dentries_prune_failed \(k.failed)", "kernel_dentries_prune_errno \(k.lastErrno)",
            ]
        }
        return out
    }

    /// The reply to one command line from a caller with user id `uid`.
    func handle(_ line: String, uid: uid_t) -> String {
        let words = line.split(separator: " ").map(String.init)
        guard let cmd = words.first else { return Self.err(EINVAL, "empty command") }
        let args = Array(words.dropFirst())
        do throws(FSError) {
            switch cmd {
            case "df", "statfs":
                guard let volume else { return Self.noVolume }
                let t = try volume.totals()
                let uuid = t.uuid.map { $0.paddedHex }.joined()
                return Self.ok([
                    "meta_total \(t.totalMetaBlocks)", "meta_free \(t.freeMetaBlocks)",
                    "data_total \(t.totalDataBlocks)", "data_free \(t.freeDataBlocks)",
                    "inode_count \(t.inodeCount)", "fsid \(volume.fsid.paddedHex)",
                    "rid \(sources.rid.paddedHex)",
                    "uuid \(uuid)", "committed_seq \(try volume.committedSeq())",
                ])
            case "counters":
                guard let volume else { return Self.noVolume }
                let c = volume.counters
                return Self.ok([
                    "commits \(c.commits)", "commit_items \(c.commitItems)",
                    "srch_add_entry \(c.srchEntries)", "srch_search_xattrs \(c.srchSearches)", "srch_compact \(c.srchCompactions)", "orphans_deleted \(c.orphansDeleted)",
                    "data_bytes_read \(c.dataBytesRead)", "data_bytes_written \(c.dataBytesWritten)",
                    "data_waits \(c.dataWaits)", "log_merge_requests \(c.logMergeRequests)",
                    "log_merge_items \(c.logMergeItems)", "log_merge_partial \(c.logMergePartial)",
                    "inode_deleted \(c.inodeDeleted)", "orphan_scan \(c.orphanScan)",
                    "orphan_scan_item \(c.orphanScanItem)", "orphan_scan_cached \(c.orphanScanCached)",
                    "orphan_scan_omap_set \(c.orphanScanOmapSet)", "orphan_scan_attempts \(c.orphanScanAttempts)",
                    "orphan_scan_error \(c.orphanScanError)", "orphan_scan_empty \(c.orphanScanEmpty)",
                    "omap_request \(c.omapRequest)", "omap_request_error \(c.omapRequestError)",
                    "omap_client_request \(c.omapClientRequest)",
                ] + memoryCounters(volume) + sources.serverCounters().map { "\($0.0) \($0.1)" })
            case "trigger":
                guard uid == 0 else { return Self.err(EPERM, "only root may arm triggers") }
                guard args.count == 1 else { return Self.err(EINVAL, "usage: trigger NAME") }
                // the mount's own (the original's debugfs drop_quota_check_cache)
                if args[0] == "drop_quota_check_cache" {
                    guard let volume else { return Self.noVolume }
                    volume.dropQuotaCheckCache()
                    return "OK\n"
                }
                guard ["log_merge_force_finalize_ours", "srch_force_log_rotate"].contains(args[0]) else { return Self.err(EINVAL, "unknown trigger \(args[0])") }
                guard sources.trigger(args[0]) else { return Self.err(ENOENT, "this mount runs no server") }
                return "OK\n"
            case "sync":
                guard uid == 0 || uid == getuid() else { return Self.err(EPERM, "only root or the mount's owner may sync") }
                guard let volume else { return Self.noVolume }
                try volume.sync()
                return "OK\n"
            case "rid":
                guard args.isEmpty else { return Self.err(EINVAL, "rid takes no arguments") }
                return Self.ok([sources.rid.paddedHex])
            case "fence-list":
                guard args.isEmpty else { return Self.err(EINVAL, "fence-list takes no arguments") }
                return Self.ok(fenceList())
            case "fence-answer":
                return fenceAnswer(args, uid: uid)
            case "quorum-status":
                guard args.isEmpty else { return Self.err(EINVAL, "quorum-status takes no arguments") }
                guard let text = sources.quorumStatus() else {
                    return Self.err(ENOENT, "this mount is not a quorum member (no quorum_slot_nr)")
                }
                return "OK\n" + text + (text.isEmpty || text.hasSuffix("\n") ? "" : "\n")
            case "mount-option":
                return mountOption(args, uid: uid)
            default:
                return Self.err(EINVAL, "unknown command \(cmd)")
            }
        } catch {
            return Self.err(error.errno, error.message)
        }
    }

    func fenceList() -> [String] {
        guard let table = sources.fences() else { return [] }
        let now = table.now
        return table.list().map { r in
            "\(r.ridString) \(r.ipv4String) \(r.reason.rawValue) \(r.elapsedSeconds(now: now)) \(r.fenced ? 1 : 0) \(r.error ? 1 : 0)"
        }
    }

    func fenceAnswer(_ args: [String], uid: uid_t) -> String {
        guard args.count == 2 else { return Self.err(EINVAL, "usage: fence-answer RID fenced|error") }
        guard let rid = Self.parseRid(args[0]) else {
            return Self.err(EINVAL, "invalid rid '\(args[0])': expected up to 16 hex digits")
        }
        let fenced: Bool
        switch args[1] {
        case "fenced": fenced = true
        case "error": fenced = false
        default: return Self.err(EINVAL, "invalid answer '\(args[1])': expected fenced or error")
        }
        guard uid == 0 else { return Self.err(EPERM, "only root may answer fence requests") }
        guard let table = sources.fences(), table.answer(rid: rid, fenced: fenced) else {
            return Self.err(ENOENT, "no fence request for rid \(rid.paddedHex)")
        }
        logger.notice("fence request answered", metadata: ["fenced_rid": "\(rid.paddedHex)", "answer": "\(args[1])"])
        return "OK\n"
    }

    func mountOption(_ args: [String], uid: uid_t) -> String {
        let options = sources.mountOptions()
        switch args.count {
        case 0:
            return Self.ok(options.map { "\($0.0) \($0.1)" })
        case 1, 2:
            let name = args[0]
            guard let current = options.first(where: { $0.0 == name }) else {
                return Self.err(ENOENT, "unknown mount option '\(name)'")
            }
            if args.count == 1 { return Self.ok([current.1]) }
            guard uid == 0 else { return Self.err(EPERM, "only root may change mount options") }
            do throws(MountError) {
                try sources.setMountOption(name, args[1])
            } catch {
                return Self.err(error.errno, error.message)
            }
            logger.notice("mount option changed", metadata: ["option": "\(name)", "value": "\(args[1])"])
            return "OK\n"
        default:
            return Self.err(EINVAL, "usage: mount-option [NAME [VALUE]]")
        }
    }

    /// A rid as the CLI and agents write it: 1 to 16 hex digits, optionally after `0x`.
    static func parseRid(_ s: String) -> UInt64? {
        let digits = s.hasPrefix("0x") || s.hasPrefix("0X") ? String(s.dropFirst(2)) : s
        guard !digits.isEmpty, digits.count <= 16 else { return nil }
        return UInt64(digits, radix: 16)
    }

    static func ok(_ lines: [String]) -> String {
        "OK\n" + lines.map { $0 + "\n" }.joined()
    }

    static func err(_ e: Int32, _ message: String) -> String {
        "ERR \(e) \(message.replacing("\n", with: " "))\n"
    }

    static var noVolume: String { err(ENODEV, "this control socket serves no volume") }

    static func makeDirectories(_ dir: String) {
        var prefix = dir.hasPrefix("/") ? "" : "."
        for part in dir.split(separator: "/") {
            prefix += "/" + part
            mkdir(prefix, 0o755)
        }
    }
}

/// Set once by a finishing thread; others wait for it with a time limit.
final class ExitLatch: Sendable {
    private let lock = PThreadLock()
    private let done = Atomic<Bool>(false)

    func signal() {
        lock.withLock {
            done.store(true, ordering: .releasing)
            lock.broadcast()
        }
    }

    func wait(seconds: Double) {
        let deadline = monotonicSeconds() + seconds
        lock.withLock {
            while !done.load(ordering: .acquiring) {
                let left = deadline - monotonicSeconds()
                if left <= 0 { return }
                _ = lock.wait(seconds: left)
            }
        }
    }
}

// MARK: - mount options on the control socket

extension MountOptions {
    /// The options `scoutfs mount-option` changes while mounted (the original's writable
    /// sysfs `mount_options/` files).
    public static let liveNames: [String] = [
        "data_prealloc_blocks", "data_prealloc_contig_only", "ino_alloc_per_lock", "lock_idle_count",
        "log_merge_wait_timeout_ms", "orphan_scan_delay_ms", "quorum_heartbeat_timeout_ms",
    ]

    /// The options as the control socket lists them, by name: the original's sysfs
    /// `mount_options/` files (`quorum_slot_nr` is -1 for a non-member), plus
    /// `tcp_keepalive_timeout_ms` and `acl` (0/1) and the memory bounds, which cannot change.
    public var controlList: [(String, String)] {
        [
            ("acl", acl ? "1" : "0"),
            ("block_cache_mb", "\(blockCacheMiB)"),
            ("data_prealloc_blocks", "\(dataPreallocBlocks)"),
            ("data_prealloc_contig_only", dataPreallocContigOnly ? "1" : "0"),
            ("ino_alloc_per_lock", "\(inoAllocPerLock)"),
            ("item_cache_mb", "\(itemCacheMiB)"),
            ("kernel_dentries", "\(kernelDentries)"),
            ("lock_idle_count", "\(lockIdleCount)"),
            ("log_merge_wait_timeout_ms", "\(logMergeWaitTimeoutMs)"),
            ("metadev_path", metadevPath ?? ""),
            ("orphan_scan_delay_ms", "\(orphanScanDelayMs)"),
            ("quorum_heartbeat_timeout_ms", "\(quorumHeartbeatTimeoutMs)"),
            ("quorum_slot_nr", "\(quorumSlotNr ?? -1)"),
            ("tcp_keepalive_timeout_ms", "\(tcpKeepaliveTimeoutMs)"),
        ]
    }

    /// These options with the live option `name` set to `value`, checked with the same
    /// ranges as at mount. Throws EINVAL naming the problem: an option that cannot change
    /// while mounted, or a bad value.
    public func settingLive(_ name: String, _ value: String) throws(MountError) -> MountOptions {
        guard Self.liveNames.contains(name) else {
            throw MountError(EINVAL, "mount option \(name) cannot be changed while mounted")
        }
        guard !value.isEmpty, !value.contains(","), !value.contains("=") else {
            throw MountError(EINVAL, "invalid \(name) value '\(value)'")
        }
        let parsed: MountOptions
        do {
            parsed = try MountOptions.parse("metadev_path=x,\(name)=\(value)")
        } catch {
            throw MountError(EINVAL, error.message)
        }
        var out = self
        switch name {
        case "data_prealloc_blocks": out.dataPreallocBlocks = parsed.dataPreallocBlocks
        case "data_prealloc_contig_only": out.dataPreallocContigOnly = parsed.dataPreallocContigOnly
        case "ino_alloc_per_lock": out.inoAllocPerLock = parsed.inoAllocPerLock
        case "lock_idle_count": out.lockIdleCount = parsed.lockIdleCount
        case "log_merge_wait_timeout_ms": out.logMergeWaitTimeoutMs = parsed.logMergeWaitTimeoutMs
        case "orphan_scan_delay_ms": out.orphanScanDelayMs = parsed.orphanScanDelayMs
        default: out.quorumHeartbeatTimeoutMs = parsed.quorumHeartbeatTimeoutMs
        }
        return out
    }
}

extension String {
    func trimmingSuffixNewline() -> String {
        var s = self
        while s.hasSuffix("\n") || s.hasSuffix("\r") { s.removeLast() }
        return s
    }
}
