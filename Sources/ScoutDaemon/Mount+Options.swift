import Glibc
import ScoutQuorumService
import Synchronization

/// Mount options on a live mount: our stand-in for the original's sysfs `mount_options/` files.
extension Mount {
    /// Every option with its current value, in the original's names.
    public func liveOptions() -> [(String, String)] {
        let o = options
        let heartbeat = quorum?.status.heartbeatTimeoutMs ?? liveHeartbeatTimeoutMs.withLock { $0 }
        return [
            ("metadev_path", o.metadevPath ?? ""),
            ("quorum_slot_nr", o.quorumSlotNr.map { String($0) } ?? ""),
            ("quorum_heartbeat_timeout_ms", String(heartbeat)),
            ("tcp_keepalive_timeout_ms", String(o.tcpKeepaliveTimeoutMs)),
            ("log_merge_wait_timeout_ms", String(o.logMergeWaitTimeoutMs)),
            ("orphan_scan_delay_ms", String(o.orphanScanDelayMs)),
            ("lock_idle_count", String(o.lockIdleCount)),
            ("ino_alloc_per_lock", String(o.inoAllocPerLock)),
            ("data_prealloc_blocks", String(o.dataPreallocBlocks)),
            ("data_prealloc_contig_only", o.dataPreallocContigOnly ? "1" : "0"),
            ("acl", o.acl ? "1" : "0"),
        ]
    }

    /// Changes an option on the live mount. Today only `quorum_heartbeat_timeout_ms`
    /// (2000...60000) can change; it takes effect at the next heartbeat or timeout.
    ///
    /// - Throws: ENOENT for an unknown name, EINVAL for a bad value or an option that cannot
    ///   change while mounted.
    public func setLiveOption(_ name: String, _ value: String) throws(MountError) {
        guard liveOptions().contains(where: { $0.0 == name }) else {
            throw MountError(ENOENT, "no mount option named '\(name)'")
        }
        guard name == "quorum_heartbeat_timeout_ms" else {
            throw MountError(EINVAL, "mount option \(name) cannot be changed on a live mount")
        }
        let trimmed = value.trimmingWhitespace
        guard let ms = Int(trimmed) else {
            throw MountError(EINVAL, "invalid quorum_heartbeat_timeout_ms value '\(trimmed)': must be a number")
        }
        let (lo, hi) = (2000, 60000)
        guard ms >= lo && ms <= hi else {
            throw MountError(EINVAL, "invalid quorum_heartbeat_timeout_ms value \(ms): must be between \(lo) and \(hi)")
        }
        liveHeartbeatTimeoutMs.withLock { $0 = ms }
        if let quorum {
            let failure: String? = try? Self.blocking { () async -> String? in
                do {
                    try await quorum.setHeartbeatTimeout(milliseconds: ms)
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            if let failure { throw MountError(EINVAL, failure) }
        }
    }
}

extension String {
    var trimmingWhitespace: String {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return String(s)
    }
}
