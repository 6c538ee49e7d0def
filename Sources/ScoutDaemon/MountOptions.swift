/// A bad mount option: the message names it; errno EINVAL.
public struct MountOptionError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
    public init(_ m: String) { message = m }
}

/// The original's mount options (`kmod/src/options.c`), checked with its ranges, plus the
/// generic options `mount(8)` passes along.
public struct MountOptions: Equatable, Sendable {
    public var metadevPath: String?
    public var quorumSlotNr: Int?
    public var quorumHeartbeatTimeoutMs = 10_000
    public var tcpKeepaliveTimeoutMs = 24_000
    public var logMergeWaitTimeoutMs = 500
    public var orphanScanDelayMs = 10_000
    public var lockIdleCount = 10_000
    public var inoAllocPerLock = 1024
    public var dataPreallocBlocks: UInt64 = 2048
    public var dataPreallocContigOnly = true
    public var acl = true
    public var readOnly = false
    /// The memory bounds (ours, not the original's): MiB of clean items in the item cache,
    /// MiB of metadata blocks in the block cache, and how many names the kernel may keep
    /// as dentries from this mount. The defaults keep a mount under 1 GiB resident.
    public var itemCacheMiB = 256
    public var blockCacheMiB = 64
    public var kernelDentries = 500_000

    public init() {}

    /// Generic options mount(8) may pass that do not change scoutfs.
    static let generic: Set<String> = [
        "rw", "defaults", "auto", "noauto", "user", "nouser", "users", "_netdev", "nofail", "exec", "noexec",
        "suid", "nosuid", "dev", "nodev", "atime", "noatime", "relatime", "norelatime", "strictatime",
        "nodiratime", "diratime", "async", "sync", "loud", "silent",
    ]

    /// Parses a comma-separated option string.
    public static func parse(_ text: String) throws(MountOptionError) -> MountOptions {
        var o = MountOptions()
        var seen = Set<String>()
        for raw in text.split(separator: ",", omittingEmptySubsequences: true) {
            let opt = String(raw)
            let parts = opt.split(separator: "=", maxSplits: 1).map(String.init)
            let name = parts[0]
            let value = parts.count > 1 ? parts[1] : nil
            func int(_ lo: Int, _ hi: Int) throws(MountOptionError) -> Int {
                guard let v = value, let n = Int(v) else { throw MountOptionError("invalid \(name) value '\(value ?? "")': must be a number") }
                guard n >= lo && n <= hi else { throw MountOptionError("invalid \(name) value \(n): must be between \(lo) and \(hi)") }
                return n
            }
            if value != nil, ["acl", "noacl", "ro"].contains(name) || generic.contains(name) {
                throw MountOptionError("mount option \(name) takes no value")
            }
            switch name {
            case "metadev_path":
                guard let v = value, !v.isEmpty else { throw MountOptionError("metadev_path requires a path") }
                o.metadevPath = v
            case "quorum_slot_nr":
                guard !seen.contains(name) else { throw MountOptionError("quorum_slot_nr may only be given once") }
                o.quorumSlotNr = try int(0, 14)
            case "quorum_heartbeat_timeout_ms": o.quorumHeartbeatTimeoutMs = try int(2000, 60000)
            case "tcp_keepalive_timeout_ms": o.tcpKeepaliveTimeoutMs = try int(3001, Int(Int32.max))
            case "log_merge_wait_timeout_ms": o.logMergeWaitTimeoutMs = try int(100, 60000)
            case "orphan_scan_delay_ms":
                guard !seen.contains(name) else { throw MountOptionError("orphan_scan_delay_ms may only be given once") }
                o.orphanScanDelayMs = try int(100, 60000)
            case "lock_idle_count": o.lockIdleCount = try int(32, 100_000)
            case "ino_alloc_per_lock": o.inoAllocPerLock = try int(1, 1024)
            case "data_prealloc_blocks": o.dataPreallocBlocks = UInt64(try int(1, Int.max))
            case "data_prealloc_contig_only": o.dataPreallocContigOnly = try int(0, 1) == 1
            case "item_cache_mb": o.itemCacheMiB = try int(1, 1 << 20)
            case "block_cache_mb": o.blockCacheMiB = try int(1, 1 << 20)
            case "kernel_dentries": o.kernelDentries = try int(1000, 1_000_000_000)
            case "acl": o.acl = true
            case "noacl": o.acl = false
            case "ro": o.readOnly = true
            default:
                if generic.contains(name) { break }
                throw MountOptionError("unknown mount option '\(opt)'")
            }
            seen.insert(name)
        }
        guard o.metadevPath != nil else { throw MountOptionError("the metadev_path option is required") }
        return o
    }
}
