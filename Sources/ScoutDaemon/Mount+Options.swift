import Glibc
import ScoutQuorumService
import Synchronization

/// Mount options on a live mount: our stand-in for the original's sysfs `mount_options/` files.
///
/// Deviation: only `quorum_heartbeat_timeout_ms` changes on a live mount today; the other
/// options the original lets change (prealloc, lock idle count, orphan scan delay, ...) are
/// refused with EINVAL until the parts that read them follow live changes.
extension Mount {
    /// Every option with its current value, in the original's names.
    public func liveOptions() -> [(String, String)] {
        liveOptionValues.withLock { $0 }.controlList
    }

    /// Changes an option on the live mount; a new heartbeat timeout takes effect at the next
    /// heartbeat or timeout.
    ///
    /// - Throws: ENOENT for an unknown name, EINVAL for a bad value or an option that cannot
    ///   change while mounted.
    public func setLiveOption(_ name: String, _ value: String) throws(MountError) {
        guard liveOptions().contains(where: { $0.0 == name }) else {
            throw MountError(ENOENT, "no mount option named '\(name)'")
        }
        guard name == "quorum_heartbeat_timeout_ms" else {
            throw MountError(EINVAL, "mount option \(name) cannot be changed while mounted")
        }
        let current = liveOptionValues.withLock { $0 }
        let next = try current.settingLive(name, value)
        if let quorum {
            let ms = next.quorumHeartbeatTimeoutMs
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
        liveOptionValues.withLock { $0 = next }
    }
}
