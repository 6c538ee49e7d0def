import Glibc
import ScoutFUSE
import ScoutFormat

/// Fencing without an agent, in the one case where it is provably safe: the mount's daemon
/// registered itself on this host (``MountRegistry``) and is gone.
///
/// Rules (docs/cluster.md, "Fencing without an agent"):
/// * Only a rid with a registry entry on this host is considered; a rid of another host (no
///   entry) is always left to the fencing agent. An entry whose boot-surviving copy shows it
///   was registered on this installation (machine id) in an earlier boot (boot id) is gone
///   with that boot: a power cut or a reboot ended its daemon and its mount.
/// * Its daemon is gone when its pid no longer exists, is a zombie, or has another start time
///   (field 22 of `/proc/PID/stat`) than the entry records. An entry without a start time
///   proves nothing. A daemon that is gone writes nothing more: it was the only writer of
///   the mount's devices.
/// * Its FUSE connection is gone with it: the daemon opens `/dev/fuse` close-on-exec and never
///   hands the descriptor on, so its death closes the connection's last descriptor and the
///   kernel aborts it. What can be checked is checked without touching any mount: when the
///   entry's device number still names a fusectl connection that no other running registered
///   mount holds, that connection is the dead one's, and it is aborted (a no-op on an aborted
///   connection); a mount of it still on top of the entry's mountpoint is detached.
///   These steps run under the host-wide fuseblk lock, under which every mount picks its
///   device, mounts and registers that device, so a device number that a new mount reuses is
///   never taken for the dead one's.
/// * The entry is then removed, and the reason returned for the server's log.
///
/// Nothing here makes a system call that can wait for a FUSE daemon: the mount table and
/// fusectl are read, the abort file written, and `umount2(MNT_DETACH)` runs only on a
/// connection that is aborted.
public struct LocalFence: Sendable {
    let registry: MountRegistry

    /// What this host can tell about a rid.
    enum Verdict: Equatable {
        /// No registry entry here: another host's mount, or one that never registered.
        case notHere
        /// Its daemon runs (or cannot be proved gone).
        case running(pid: Int32)
        /// Its daemon is provably gone.
        case gone(MountRegistry.Entry)
        /// Its daemon registered on this host in an earlier boot (a power cut, a reboot): it
        /// ended with that boot, and so did its mount.
        case goneWithAnEarlierBoot(MountRegistry.Entry)
    }

    init(registry: MountRegistry = MountRegistry()) {
        self.registry = registry
    }

    /// What this host knows about `rid`, without changing anything.
    func verdict(rid: UInt64) -> Verdict {
        guard let entry = try? registry.lookup(rid: rid) else {
            return registry.entryOfAnEarlierBoot(rid: rid).map { .goneWithAnEarlierBoot($0) } ?? .notHere
        }
        if entry.pid == getpid() || MountRegistry.isRunning(entry) { return .running(pid: entry.pid) }
        return .gone(entry)
    }

    /// Fences `rid` when its daemon ran here and is provably gone: ends what is left of its
    /// FUSE connection and mount, removes its entry and returns why it counts as fenced.
    /// Nil (nothing changed) otherwise.
    func fence(rid: UInt64) -> String? {
        let entry: MountRegistry.Entry
        switch verdict(rid: rid) {
        case .notHere, .running:
            return nil
        case .goneWithAnEarlierBoot(let e):
            // nothing of it is left to clear: no mount or connection outlives a boot
            registry.unregister(rid: rid)
            return "its daemon (pid \(e.pid)) registered on this host in an earlier boot (boot id \(e.bootID), "
                + "this one \(MountRegistry.currentBootID))"
        case .gone(let e):
            entry = e
        }
        var why = "its daemon (pid \(entry.pid), start time \(entry.pidStart)) on this host is gone"
        let cleared = clearDeadMount(entry)
        if !cleared.isEmpty { why += "; " + cleared.joined(separator: ", ") }
        registry.unregister(rid: rid)
        return why
    }

    /// Ends the FUSE connection and detaches the mount that `entry`'s daemon (gone) left
    /// behind, when they are still its own (see the type's rules). Returns what was done.
    @discardableResult
    func clearDeadMount(_ entry: MountRegistry.Entry) -> [String] {
        let parts = entry.device.split(separator: ":")
        guard parts.count == 2, let major = UInt32(parts[0]), let minor = UInt32(parts[1]) else { return [] }
        return Self.withFuseblkLock { () -> [String] in
            let heldByAnother = registry.entries().contains {
                $0.rid != entry.rid && $0.device == entry.device && MountRegistry.isRunning($0)
            }
            guard !heldByAnother else { return ["its device \(entry.device) now belongs to another mount"] }
            var done: [String] = []
            let id = FUSEMount.connectionID(major: major, minor: minor)
            if FUSEMount.connectionExists(id: id) == true {
                if (try? FUSEMount.abortConnection(id: id)) != nil { done.append("aborted its FUSE connection \(id)") }
            } else {
                done.append("its FUSE connection is gone")
            }
            if let top = FUSEMount.topMount(at: entry.mountpoint), top.major == major, top.minor == minor,
                top.fstype.hasPrefix("fuseblk")
            {
                if umount2(entry.mountpoint, Int32(MNT_DETACH) | Int32(UMOUNT_NOFOLLOW)) == 0 {
                    done.append("detached its dead mount at \(entry.mountpoint)")
                }
            }
            return done
        } ?? ["the fuseblk lock was busy: its dead mount, if any, is left in place"]
    }

    /// The entry of the dead mount on top of `mountpoint`, if that is what is there: the top
    /// mount has the device of an entry for this mountpoint whose daemon is provably gone.
    func deadMount(at mountpoint: String) -> MountRegistry.Entry? {
        let path = MountRegistry.canonical(mountpoint)
        guard let top = FUSEMount.topMount(at: path), top.fstype.hasPrefix("fuseblk") else { return nil }
        let device = "\(top.major):\(top.minor)"
        return registry.entries().first {
            $0.mountpoint == path && $0.device == device && $0.pid != getpid() && !MountRegistry.isRunning($0)
        }
    }

    /// Clears the dead mount on top of `mountpoint` (``deadMount(at:)``) with
    /// ``clearDeadMount(_:)``, keeping its registry entry for the fence. Returns its rid
    /// (`%016llx`) when there was one and it is gone from the mountpoint.
    public static func clearDeadMount(at mountpoint: String) -> String? {
        let fence = LocalFence()
        guard let entry = fence.deadMount(at: mountpoint) else { return nil }
        fence.clearDeadMount(entry)
        return fence.deadMount(at: mountpoint) == nil ? entry.rid.paddedHex : nil
    }

    /// Runs `body` holding the host-wide lock under which mounts choose, mount and register
    /// their fuseblk device (``FuseblkSource/lockPath``); nil when it could not be had within
    /// `seconds`.
    static func withFuseblkLock<R>(seconds: Double = 5, _ body: () -> R) -> R? {
        let fd = open(FuseblkSource.lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return body() }
        defer { close(fd) }
        let tries = Int(seconds * 20)
        for i in 0...tries {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { return body() }
            if i < tries { usleep(50_000) }
        }
        return nil
    }
}
