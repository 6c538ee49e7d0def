import ScoutBTree
import ScoutFormat
import ScoutProtocol

/// What one attempt to delete an orphaned inode came to.
public enum OrphanDeletion: Equatable, Sendable {
    /// Its items are deleted (in this mount's open transaction).
    case deleted
    /// This mount's kernel still holds it: deletion is tried again as it lets go.
    case heldHere
    /// Another mount holds it (its bit is set in the OPEN_INO_MAP answer).
    case heldElsewhere
    /// It is not an orphan (gone already, or linked again).
    case notOrphan
    /// The open inode map or a lock could not be had: the inode may be open somewhere, so it
    /// is left for a later attempt.
    case failed
}

/// Inode deletion across mounts (the original's omap.c client side and inode.c's
/// `try_delete_inode_items` and orphan scan).
///
/// Design note. An inode with nlink 0 has an ORPHAN item. It may be deleted only when no
/// mount's kernel holds it: this mount's bit (`heldLocally`: a lookup reference before FORGET,
/// or an open handle) and the OR of every other mount's bit (OPEN_INO_MAP, asked of the server
/// while this mount holds the inode group's WRITE lock) must both be clear. While that WRITE
/// grant lasts no other mount can take a new reference (a lookup needs a lock, and nothing
/// links an orphan without the WRITE lock), so bits can only clear, and an answer stays good
/// for the grant's write seq (`omapCache`). An answer that cannot be had in time (a mount
/// away, a server recovering) counts as "held": the inode is left for the orphan scan.
///
/// Attempts come from a mount's last FORGET or RELEASE of an inode it saw with nlink 0, and
/// from the orphan scan: every `orphan_scan_delay_ms` each mount reads the orphan items of
/// the stable fs root (GET_ROOTS, no locks: orphans get there by log merging) and tries each
/// one no mount holds.
extension Volume {
    /// This mount's open inode map of `group`: the bits of the inodes its kernel holds.
    public func localOpenInoMap(group: UInt64) -> OpenInoMap {
        state.withLock {
            counters.omapClientRequest += 1
            var map = OpenInoMap(args: OpenInoMapArgs(groupNr: group))
            let base = group << UInt64(OpenInoMap.shift)
            let last = base | UInt64(OpenInoMap.bits - 1)
            // the tables are small next to a group's 1024 inodes on a busy mount, or the reverse:
            // walk the smaller side
            if lookupCounts.count + openCounts.count < OpenInoMap.bits {
                for ino in lookupCounts.keys where ino >= base && ino <= last { map.insert(ino: ino) }
                for ino in openCounts.keys where ino >= base && ino <= last { map.insert(ino: ino) }
            } else {
                for ino in base...last where heldLocally(ino) { map.insert(ino: ino) }
            }
            return map
        }
    }

    /// The OR of the other mounts' maps for `ino`'s group, asked while this mount holds the
    /// group's WRITE lock (the caller does). A cached answer under the same grant is used
    /// when it has `ino`'s bit clear.
    func othersOpenInoMap(_ ino: UInt64) throws(FSError) -> OpenInoMap {
        let group = OpenInoMap.group(ofIno: ino)
        let seq = locks.writeSeq(ofWriteLock: .inode(ino))
        if let seq, let cached = state.withLock({ omapCache[group] }), cached.writeSeq == seq, !cached.map.contains(ino: ino) {
            return cached.map
        }
        state.withLock { counters.omapRequest += 1 }
        let map: OpenInoMap
        do {
            map = try link.openInoMap(group: group)
        } catch {
            state.withLock { counters.omapRequestError += 1 }
            throw error
        }
        guard map.args.groupNr == group else {
            state.withLock { counters.omapRequestError += 1 }
            throw FSError(FSError.EIO, "OPEN_INO_MAP answer for group \(map.args.groupNr), asked \(group)")
        }
        if let seq { state.withLock { omapCache[group] = (seq, map) } }
        return map
    }

    /// Deletes the orphan `ino` if no mount holds it: takes the orphan and inode group locks,
    /// checks nlink, this mount's bit and the OPEN_INO_MAP answer, then deletes its items.
    public func tryDeleteOrphan(_ ino: UInt64) -> OrphanDeletion {
        if state.withLock({ heldLocally(ino) }) { return .heldHere }
        let group = LockRange.inode(ino)
        do {
            // held across the map request and the deletion: no new reference can appear; the
            // bodies run with these holds (`underLocks`), never acquiring them again
            try locks.acquire(.orphan, .writeOnly)
            defer { locks.release(.orphan, .writeOnly) }
            // the tagged xattrs' totals and index entries go with the inode (key order)
            try locks.acquire(.xattrTotl, .writeOnly)
            defer { locks.release(.xattrTotl, .writeOnly) }
            try locks.acquire(.xattrIndx, .writeOnly)
            defer { locks.release(.xattrIndx, .writeOnly) }
            try locks.acquire(group, .write)
            defer { locks.release(group, .write) }
            let held: Set<LockRange> = [group]
            let orphaned = try underLocks(held, write: false, orphan: true) { () throws -> Bool in
                guard let v = try cache.get(Self.inodeKey(ino)), let i = try? Inode.decode(v) else { return false }
                return i.nlink == 0
            }
            guard orphaned else {
                state.withLock { _ = pendingDelete.remove(ino) }
                return .notOrphan
            }
            if try othersOpenInoMap(ino).contains(ino: ino) { return .heldElsewhere }
            return try underLocks(held, write: true, orphan: true) { () throws -> OrphanDeletion in
                if heldLocally(ino) { return .heldHere }
                let before = counters.inodeDeleted
                try deleteInode(ino)
                return counters.inodeDeleted > before ? .deleted : .notOrphan
            }
        } catch {
            return .failed
        }
    }

    /// One orphan scan (the original's orphan scan worker): tries every orphan item of the
    /// stable fs root that no mount holds. At most `limit` items per scan, and it ends early
    /// once `stopping` says so (an unmount) or a map request fails; returns whether work is
    /// left (an orphan still held, or an attempt that failed).
    @discardableResult
    public func scanOrphans(limit: Int = 100_000, stopping: () -> Bool = { false }) -> Bool {
        state.withLock { counters.orphanScan += 1 }
        var workLeft = false
        var failed = false
        var maps: (group: UInt64, map: OpenInoMap)? = nil
        do {
            let found = try forest.stableOrphans(limit: limit)
            for ino in found {
                if stopping() {
                    workLeft = true
                    break
                }
                let held = state.withLock { () -> Bool in
                    counters.orphanScanItem += 1
                    if heldLocally(ino) {
                        counters.orphanScanCached += 1
                        return true
                    }
                    return false
                }
                if held {
                    workLeft = true
                    continue
                }
                // a first look without locks, one request per group: mounts that hold the
                // inode try deletion themselves as they let go
                let group = OpenInoMap.group(ofIno: ino)
                if maps?.group != group {
                    state.withLock { counters.omapRequest += 1 }
                    do {
                        maps = (group, try link.openInoMap(group: group))
                    } catch {
                        state.withLock { counters.omapRequestError += 1 }
                        throw error
                    }
                }
                if let m = maps?.map, m.contains(ino: ino) {
                    state.withLock { counters.orphanScanOmapSet += 1 }
                    workLeft = true
                    continue
                }
                state.withLock { counters.orphanScanAttempts += 1 }
                switch tryDeleteOrphan(ino) {
                case .deleted, .notOrphan: break
                case .heldHere, .heldElsewhere: workLeft = true
                case .failed:
                    workLeft = true
                    failed = true
                }
            }
        } catch {
            workLeft = true
            failed = true
        }
        state.withLock {
            if failed { counters.orphanScanError += 1 }
            if !workLeft { counters.orphanScanEmpty += 1 }
        }
        return workLeft
    }
}

extension Forest {
    /// The inode numbers of the orphan items in the stable fs root (a fresh GET_ROOTS), in
    /// order, at most `limit`. Reads committed blocks only, without locks or the item cache.
    func stableOrphans(limit: Int) throws(FSError) -> [UInt64] {
        try FSError.retryingStale("reading orphan items") { () throws(FSError) in
            let roots = try link.getRoots()
            var out: [UInt64] = []
            do throws(BTreeError) {
                try BTree(store: ReadOnlyStore(device: device)).forEach(
                    roots.fsRoot, from: LockRange.orphan.start, through: LockRange.orphan.end
                ) { b, off in
                    let k = b.key(at: off)
                    if k.type == KeyType.orphan, b.flags(at: off) & Format.itemFlagDeletion == 0 { out.append(k.second) }
                    return out.count < limit
                }
            } catch {
                throw .btree(error)
            }
            return out
        }
    }
}
