import Glibc
import ScoutBTree
public import ScoutBlockIO
public import ScoutFormat
import ScoutProtocol
import ScoutStorage
import SystemPackage

/// Attributes of an inode as the kernel sees them.
public struct FileAttr: Equatable, Sendable {
    public var ino: UInt64
    public var size: UInt64
    public var blocks: UInt64
    public var atime: Timespec
    public var mtime: Timespec
    public var ctime: Timespec
    public var crtime: Timespec
    public var mode: UInt32
    public var nlink: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var rdev: UInt32
    public var dataVersion: UInt64
    public var metaSeq: UInt64
    public var dataSeq: UInt64
}

/// Counters shown by `scoutfs counters`.
public struct VolumeCounters: Sendable {
    public var commits: UInt64 = 0
    public var commitItems: UInt64 = 0
    /// srch entries committed to this mount's srch log files (`srch_add_entry`).
    public var srchEntries: UInt64 = 0
    /// SEARCH_XATTRS passes (`srch_search_xattrs`).
    public var srchSearches: UInt64 = 0
    /// srch compaction steps done for the server (`srch_compact`).
    public var srchCompactions: UInt64 = 0
    public var forestReads: UInt64 = 0
    public var lockRequests: UInt64 = 0
    public var orphansDeleted: UInt64 = 0
    /// Inode deletion across mounts, in the original's counter names (`inode_deleted`, ...).
    public var inodeDeleted: UInt64 = 0
    public var orphanScan: UInt64 = 0
    public var orphanScanItem: UInt64 = 0
    public var orphanScanCached: UInt64 = 0
    public var orphanScanOmapSet: UInt64 = 0
    public var orphanScanAttempts: UInt64 = 0
    public var orphanScanError: UInt64 = 0
    public var orphanScanEmpty: UInt64 = 0
    /// OPEN_INO_MAP requests this mount sent, failed ones, and the server's requests it answered.
    public var omapRequest: UInt64 = 0
    public var omapRequestError: UInt64 = 0
    public var omapClientRequest: UInt64 = 0
    public var dataBytesWritten: UInt64 = 0
    public var dataBytesRead: UInt64 = 0
    /// Operations that met offline data and waited for it (each retry that waits again counts).
    public var dataWaits: UInt64 = 0
    /// Log merge requests this mount worked on, and the items it merged.
    public var logMergeRequests: UInt64 = 0
    public var logMergeItems: UInt64 = 0
    public var logMergePartial: UInt64 = 0
}

/// One mount of a volume: the client half of scoutfs (item cache, transactions, locks) and
/// the POSIX operations on top of it.
///
/// Design note. Every operation first takes the cluster locks it needs (`withLocks`), then
/// the state lock, then changes items in the cache; a commit writes the dirty items into this
/// mount's log btree with blocks from its own allocators, writes them, and hands the roots to
/// the server (COMMIT_LOG_TREES), which makes them durable before it replies. A commit runs
/// on fsync, on `sync`, every `commitInterval` seconds, when the dirty items could exhaust
/// the metadata pool, and before a lock with dirty items is given up. An operation that finds
/// it needs another inode's lock (a name resolved to an inode) throws `needLocks` before it
/// changes anything, and is run again with the larger set, locks taken in key order.
///
/// Orphan items are written under the orphan zone's WRITE_ONLY lock (`withLocks(orphans:)`),
/// which every mount may hold at once; nothing reads the zone under a lock (the orphan scan
/// reads the stable fs root), so that lock is never invalidated in normal operation.
///
/// Deviations from the original: one state lock serialises the mount's item operations
/// (FUSE sends few concurrent requests on two cores, measured); seq index items are
/// written without taking their WRITE_ONLY cluster locks yet.
public final class Volume: @unchecked Sendable {
    // Invariant: every mutable property below is only touched with `state` held.
    let state = PThreadLock()
    public let meta: MetaDevice
    /// The data device (direct I/O: see `FileBlockDevice`).
    let data: FileBlockDevice
    /// Whether the data device bypasses this host's page cache (see `FileBlockDevice.direct`).
    public var dataDeviceIsDirect: Bool { data.direct }
    let dataBlocks: UInt64
    let link: any ServerLink
    let cache: ItemCache
    let forest: Forest
    let locks: LockClient
    var txn: LogTransaction
    /// The cluster locks (and their mode) of the operation running under the state lock.
    var opLocks: Set<LockRange> = []
    var opWrite = false
    /// The operation running under the state lock holds the orphan zone's WRITE_ONLY lock.
    var opOrphanLock = false
    /// `txn` was committed and the next transaction is not open yet: a lock invalidation
    /// answers the server before it asks for the next one (GET_LOG_TREES), so the mount
    /// waiting for the lock does not wait for that server commit as well. Everything that
    /// touches `txn` opens it first (`openIfNeeded`).
    var needsOpen = false
    var inoNext: UInt64 = 0
    var inoEnd: UInt64 = 0
    var dataDirty = false
    /// srch entries of this transaction, appended to the log tree's srch file at commit.
    var srchPending: [SrchEntry] = []
    /// The quota rules in memory and recent check results (`Volume+Quota.swift`).
    var quota = QuotaCache()
    public let fmtVers: UInt64
    public let fsid: UInt64
    public internal(set) var counters = VolumeCounters()
    /// Open handles per inode (files unlinked while open survive until the last release).
    var openCounts: [UInt64: Int] = [:]
    /// Kernel lookup references per inode.
    var lookupCounts: [UInt64: UInt64] = [:]
    /// Inodes seen with nlink 0 (unlinked here, or loaded so): their deletion is tried
    /// when this mount's last open handle and kernel reference go.
    var pendingDelete: Set<UInt64> = []
    /// The last OPEN_INO_MAP answer per inode group, with the write seq of the WRITE grant
    /// it was asked under (the original keeps it in the lock's data). While that grant
    /// lasts no other mount can take a new reference to an inode of the group, so a clear
    /// bit stays clear.
    var omapCache: [UInt64: (writeSeq: UInt64, map: OpenInoMap)] = [:]
    /// Called (outside the state lock) after a lock is lost, with the inodes whose kernel
    /// caches must be dropped.
    public var kernelInvalidate: (@Sendable ([UInt64]) -> Void)?
    var lastCommit = monotonicSeconds()
    public var commitInterval: Double = 10
    /// How long an allocation waits for other mounts to return data space before ENOSPC.
    public var dataRefillWait: Double = 5
    private var failed: FSError?
    /// The GET_LAST_SEQ the forest's roots were last reloaded for by a walk of the change indexes.
    var walkRootsSeq: UInt64 = 0
    /// This mount's tasks waiting for offline data (they have their own lock).
    let dataWaiters = DataWaiters()
    /// This mount's log merge worker (it has no state of its own between requests).
    let merger: LogMerger
    /// Writes into blocks the server lent (merge and srch compaction pools) pass through it;
    /// `unmount` closes it before the farewell.
    let lentBlocks = LentBlocksGate()
    /// The final commit of a clean unmount is done: no commit may follow (the farewell hands
    /// this mount's allocators back to the server).
    var departed = false

    /// Mounts: takes this mount's log tree and allocators (GET_LOG_TREES) and commits them back unchanged.
    public init(meta: MetaDevice, dataPath: String, fmtVers: UInt64, link: any ServerLink) throws(FSError) {
        self.meta = meta
        self.fsid = meta.fsid
        self.fmtVers = fmtVers
        self.link = link
        do {
            data = try FileBlockDevice(path: dataPath, writable: true)
        } catch {
            throw FSError(error.rawValue, "open data device \(dataPath)")
        }
        let size = data.size
        dataBlocks = size / UInt64(Format.smallBlockSize)
        forest = Forest(device: meta, link: link)
        merger = LogMerger(device: meta, link: link, gate: lentBlocks)
        cache = ItemCache(forest: forest)
        locks = LockClient(link: GrantWatchingLink(link, grants: forest.grants))
        let lt = try link.getLogTrees()
        do {
            txn = try LogTransaction(device: meta, logTrees: lt)
        } catch {
            throw .store(error)
        }
        locks.onInvalidate = { [unowned self] range, to in self.lockInvalidated(range, to) }
        cache.isHeld = { [unowned self] r in self.opLocks.contains(r) }
        // the mount's first transaction is committed empty at once: left open, its seq would
        // hold GET_LAST_SEQ back for as long as this mount does not write
        try state.withLock { () throws(FSError) in try commitLocked(force: true) }
    }

    // MARK: locking

    struct NeedLocks: Error {
        var inos: [UInt64]
    }

    /// Runs `body` holding WRITE (or READ) on the inode groups of `inos` and the state lock;
    /// with `orphans`, also WRITE_ONLY on the orphan zone (an operation that may create or
    /// delete orphan items: unlink, rename over a name, O_TMPFILE, linking one, deletion).
    func withLocks<R>(_ inos: [UInt64], write: Bool, orphans: Bool = false, _ body: () throws -> R) throws(FSError) -> R {
        var want = Set(inos.map { LockRange.inode($0) })
        let mode: LockMode = write ? .write : .read
        var needRules = false
        var rounds = 0
        var ruleReads = 0
        while rounds < 16 && ruleReads <= 256 {
            // a quota check found no rules in memory: read them with no lock held (another
            // mount changing rules meanwhile makes it read them again, as the original does)
            if needRules {
                ruleReads += 1
                try loadQuotaRules()
                needRules = false
            }
            // key order: the orphan zone sorts before the fs zone
            let sorted = want.sorted()
            var taken: [LockRange] = []
            var orphanTaken = false
            defer {
                for r in taken { locks.release(r, mode) }
                if orphanTaken { locks.release(.orphan, .writeOnly) }
            }
            if orphans {
                try locks.acquire(.orphan, .writeOnly)
                orphanTaken = true
            }
            for r in sorted {
                try locks.acquire(r, mode)
                taken.append(r)
            }
            do {
                return try underLocks(Set(taken), write: write, orphan: orphanTaken, body)
            } catch let e as NeedLocks {
                for ino in e.inos { want.insert(.inode(ino)) }
                rounds += 1
                continue
            } catch is NeedQuotaRules {
                needRules = true
                continue
            } catch let e as FSError {
                throw e
            } catch {
                throw FSError(FSError.EIO, "\(error)")
            }
        }
        throw FSError(FSError.EAGAIN, "locks kept changing")
    }

    /// Runs `body` under the state lock for an operation that already acquired `taken` (in
    /// `mode` write or read) and, with `orphan`, the orphan lock: what `withLocks` does once
    /// it holds its locks. A caller holding a lock across several bodies (deletion holds the
    /// inode group across the OPEN_INO_MAP request) uses this rather than acquiring it again:
    /// an acquire waits behind an invalidation in progress, and that invalidation waits for
    /// the caller's own hold to end.
    func underLocks<R>(_ taken: Set<LockRange>, write: Bool, orphan: Bool, _ body: () throws -> R) throws -> R {
        state.lock()
        opLocks = taken
        opWrite = write
        opOrphanLock = orphan
        defer {
            opLocks = []
            opOrphanLock = false
            state.unlock()
        }
        if let failed { throw failed }
        // a transaction opens (and takes its seq) only when an operation may write:
        // an open transaction holds GET_LAST_SEQ back, so one left open by reads on an
        // idle mount would keep every mount's walk-inodes from seeing new changes
        if write { try openIfNeeded() }
        let r = try body()
        try maybeCommit()
        return r
    }

    /// Throws `NeedLocks` unless this mount holds the group lock of `ino` in `write` mode.
    ///
    /// Only the locks this operation acquired count: a lock the mount holds for others can be
    /// invalidated at any moment, and what the operation read under it would be stale.
    func requireLock(_ ino: UInt64, write: Bool) throws(NeedLocks) {
        if !opLocks.contains(.inode(ino)) || (write && !opWrite) { throw NeedLocks(inos: [ino]) }
    }

    private func lockInvalidated(_ range: LockRange, _ to: LockMode) {
        var inos: [UInt64] = []
        state.withLock {
            if to != .write, cache.hasDirty(in: range) {
                do throws(FSError) {
                    try commitLocked()
                } catch {
                    failed = error
                }
            }
            if to == .null {
                cache.invalidate(range)
                if range == .quota { quota.invalidate() }
                if range.start.zone == KeyZone.fs {
                    inos = lookupCounts.keys.filter { range.contains(Key(zone: KeyZone.fs, first: $0)) }
                    if range.contains(Key(zone: KeyZone.fs, first: Format.rootIno)) { inos.append(Format.rootIno) }
                }
            }
        }
        if !inos.isEmpty { kernelInvalidate?(inos) }
        // another mount may be about to stage (or release) these inodes' data: waiters retry
        if range.start.zone == KeyZone.fs {
            dataWaiters.wake { range.contains(Key(zone: KeyZone.fs, first: $0)) }
        }
    }

    /// Called by the link when the server asks for a lock to be dropped.
    public func invalidateLock(key: Key, from: LockMode? = nil, to: LockMode) {
        locks.invalidate(LockRange.covering(key), from: from, to: to)
    }

    /// Called by the link when a new server asks for this mount's locks (LOCK_RECOVER): up
    /// to `limit` held locks from `key` on, in key order.
    public func locksForRecovery(from key: Key, limit: Int) -> [RecoveredLock] {
        locks.recoveryBatch(from: key, limit: limit)
    }

    // MARK: transactions

    /// The seq written into this transaction's items.
    var itemSeq: UInt64 { max(txn.logTrees.getTransSeq, locks.highestWriteSeq) }

    /// Commits when the dirty items could exhaust the metadata pool, or hold more than 64 MiB.
    func maybeCommit() throws(FSError) {
        let needed = cache.dirtyCount * 2 + txn.dirtyCount + 64 + srchPending.count / 1024
        if needed > txn.avail.count / 2 || cache.dirtyBytes > 64 << 20 {
            try commitLocked()
        }
    }

    /// Commits the current transaction (fsync, sync, timer). `force` (the server's
    /// SYNC_LOG_TREES) commits even an empty one, so the server takes back this mount's
    /// unused allocators at the next GET_LOG_TREES.
    public func sync(force: Bool = false) throws(FSError) {
        try state.withLock { () throws(FSError) in
            if let failed { throw failed }
            try commitLocked(force: force)
        }
    }

    /// Commits if the timer is due; called by the daemon's commit thread.
    public func commitIfDue() {
        state.withLock {
            if !departed && monotonicSeconds() - lastCommit >= commitInterval {
                do throws(FSError) {
                    try commitLocked()
                } catch {
                    failed = error
                }
            }
        }
    }

    /// Opens the next transaction if the last commit left it for later.
    func openIfNeeded() throws(FSError) {
        guard needsOpen else { return }
        let next = try link.getLogTrees()
        do {
            txn = try LogTransaction(device: meta, logTrees: next)
        } catch {
            failed = .store(error)
            throw .store(error)
        }
        needsOpen = false
    }

    /// Commits the transaction. The next one opens when an operation next writes, or at
    /// once with `reopen` (for an operation that goes on writing after the commit).
    func commitLocked(force: Bool = false, reopen: Bool = false) throws(FSError) {
        if departed { throw FSError(FSError.ESHUTDOWN, "the mount has made its final commit and is leaving") }
        lastCommit = monotonicSeconds()
        if needsOpen && !force { return }
        try openIfNeeded()
        if !force && cache.dirtyCount == 0 && !dataDirty && txn.dirtyCount == 0 && srchPending.isEmpty { return }
        let seq = itemSeq
        let items = cache.dirtyItems()
        let tree = BTree(store: txn)
        var lt = txn.logTrees
        var root = lt.itemRoot
        var bloomKeys = Set<Key>()
        do throws(BTreeError) {
            for (k, v) in items {
                if let v {
                    try tree.force(&root, k, v, seq: seq, flags: 0)
                } else {
                    try tree.force(&root, k, [], seq: seq, flags: Format.itemFlagDeletion)
                }
                bloomKeys.insert(LockRange.covering(k).start)
            }
            // delta items add to this log tree's version from earlier commits
            for (k, v) in cache.dirtyDeltas() {
                var value = v
                if let old = try tree.lookup(root, k), old.flags & Format.itemFlagDeletion == 0 {
                    switch DeltaItems.combine(old.value, v) {
                    case .value(let b): value = b
                    // kept as a null item, as the original does: merging drops it
                    case .null: value = XattrTotlValue(total: 0, count: 0).encoded()
                    case nil: throw BTreeError.corrupt("delta item \(k): \(old.value.count)-byte value")
                    }
                }
                try tree.force(&root, k, value, seq: seq, flags: 0)
                bloomKeys.insert(LockRange.covering(k).start)
            }
        } catch {
            throw .btree(error)
        }
        if !bloomKeys.isEmpty {
            var bref = lt.bloomRef
            do {
                let b = try txn.dirty(&bref, magic: .bloom)
                for k in bloomKeys { Bloom.set(b, k) }
            } catch {
                throw .store(error)
            }
            lt.bloomRef = bref
        }
        if !srchPending.isEmpty {
            var f = lt.srchFile
            do {
                for e in srchPending { try SrchFiles.append(txn, &f, e) }
            } catch {
                throw .store(error)
            }
            lt.srchFile = f
        }
        lt.itemRoot = root
        if !items.isEmpty || !cache.deltas.isEmpty { lt.maxItemSeq = max(lt.maxItemSeq, seq) }
        lt.dataAvail = txn.logTrees.dataAvail
        lt.dataFreed = txn.logTrees.dataFreed
        txn.logTrees = lt
        if dataDirty {
            do { try data.sync() } catch { throw FSError(error.rawValue, "fsync of the data device") }
            dataDirty = false
        }
        let written: LogTrees
        do {
            written = try txn.write()
        } catch {
            failed = .store(error)
            throw .store(error)
        }
        do {
            try link.commitLogTrees(written)
        } catch {
            // the server may have made this commit durable and only its answer was lost: the
            // blocks and lists just written are then the server's, and writing this transaction
            // again would overwrite them. It is never written again: the mount fails, as the
            // original's does when its commit cannot finish (the link already resends across
            // a change of server).
            failed = error
            throw error
        }
        counters.srchEntries += UInt64(srchPending.count)
        srchPending = []
        counters.commits += 1
        counters.commitItems += UInt64(items.count + cache.deltas.count)
        cache.committed()
        forest.invalidateRoots()
        needsOpen = true
        if reopen { try openIfNeeded() }
    }

    /// Does one piece of log merge work the server hands out; false when it had none. Runs
    /// without the state lock: merging touches only the fs root's blocks and the request's pool.
    public func mergeLogsOnce() throws(FSError) -> Bool {
        guard let done = try merger.mergeOnce() else { return false }
        state.withLock {
            counters.logMergeRequests += 1
            counters.logMergeItems += UInt64(done.items)
            if done.partial { counters.logMergePartial += 1 }
        }
        return true
    }

    /// The bound on the item cache's clean bytes (the `item_cache_mb` mount option): clean
    /// items past it are dropped, least recently used first.
    public var itemCacheLimit: Int {
        get { state.withLock { cache.limit } }
        set { state.withLock { cache.limit = newValue } }
    }

    /// The item cache's sizes and counts, and how many inodes the kernel holds a lookup
    /// reference or an open handle on (the `counters` of the control socket).
    public func memoryStats() -> (items: ItemCacheStats, kernelInodes: Int, openInodes: Int) {
        state.withLock { (cache.stats, lookupCounts.count, openCounts.count) }
    }

    /// The largest transaction seq known to be complete (GET_LAST_SEQ).
    public func committedSeq() throws(FSError) -> UInt64 { try link.lastSeq() }

    /// Final commit and farewell (a clean unmount). Background writes into lent blocks end
    /// first (a merge or compaction in progress finishes its write), and no commit follows the
    /// final one: after the farewell the server owns every block this mount was given.
    public func unmount() throws(FSError) {
        lentBlocks.close()
        try state.withLock { () throws(FSError) in
            if let failed { throw failed }
            try commitLocked()
            departed = true
        }
        try link.farewell()
    }

    // MARK: inode numbers

    func allocInode() throws(FSError) -> UInt64 {
        if inoNext >= inoEnd {
            let (ino, nr) = try link.allocInodes(count: Format.lockInodeGroupNr * 10)
            if nr == 0 { throw FSError(FSError.ENOSPC, "inode numbers exhausted") }
            inoNext = ino
            inoEnd = ino + nr
        }
        defer { inoNext += 1 }
        return inoNext
    }

    // MARK: time

    static func now() -> Timespec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Timespec(sec: UInt64(ts.tv_sec), nsec: UInt32(ts.tv_nsec))
    }
}
