import ScoutBTree
import ScoutBlockIO
import ScoutFormat
import ScoutProtocol
import Synchronization
import SystemPackage

/// A read-only view of committed metadata blocks.
final class ReadOnlyStore: MetaBlockStore {
    let device: MetaDevice

    init(device: MetaDevice) { self.device = device }

    func read(_ ref: BlockRef, magic: BlockMagic) throws(BlockStoreError) -> BlockBuffer {
        do {
            return try device.read(ref, magic: magic)
        } catch {
            switch error {
            case .io(let e, let b): throw .io(errno: e.rawValue, blkno: b)
            case .format(let f): throw .format(f)
            }
        }
    }

    func dirty(_ ref: inout BlockRef, magic: BlockMagic) throws(BlockStoreError) -> BlockBuffer {
        throw .io(errno: 30, blkno: ref.blkno)  // EROFS: readers never write
    }

    func free(_ ref: BlockRef) throws(BlockStoreError) {
        throw .io(errno: 30, blkno: ref.blkno)
    }
}

/// Reads items from the forest: the fs root plus every mount's log tree whose bloom filter
/// may hold the lock, merged by item seq (the original's forest.c).
///
/// Design note. A read returns the items of the leaf covering a key in every tree, cut to the
/// narrowest range all those leaves cover and to the lock's range, so the caller can cache
/// the result as complete for that range. The newest version of a key (highest seq) wins; a
/// deletion item hides older versions. A stale block (freed and reused after the roots were
/// sampled) makes the reader fetch new roots and retry, for as long as the roots it gets are
/// new: busy mounts commit, and the server reuses their freed blocks, faster than a loaded
/// reader may get through one read. A stale block under the same fs and logs roots as the
/// last stale one is corruption (EIO), as in the original's `scoutfs_block_check_stale`.
final class Forest {
    let device: MetaDevice
    let link: any ServerLink
    private let store: ReadOnlyStore
    private var roots: ForestRoots?
    /// The roots last asked for (set before their log trees are walked, which may go stale).
    private var sampled: ForestRoots?
    private var logTrees: [(root: BTreeRoot, bloom: BlockRef, finalized: Bool)] = []
    /// Bumped by every lock grant; roots sampled before the latest grant may miss what another
    /// mount committed before giving up its lock, so they are sampled again.
    let grants = GrantGeneration()
    private var rootsGeneration: UInt64 = 0

    init(device: MetaDevice, link: any ServerLink) {
        self.device = device
        self.link = link
        self.store = ReadOnlyStore(device: device)
    }

    /// Forgets the sampled roots: the next read asks the server again.
    func invalidateRoots() { roots = nil }

    private func loadRoots() throws(FSError) {
        let generation = grants.value
        let r = try link.getRoots()
        sampled = r
        var trees: [(BTreeRoot, BlockRef, Bool)] = []
        let tree = BTree(store: store)
        do {
            try tree.forEach(r.logsRoot) { b, off in
                if let lt = try? LogTrees.decode(b.value(at: off)), lt.itemRoot.height > 0 {
                    trees.append((lt.itemRoot, lt.bloomRef, lt.flags & LogTrees.flagFinalized != 0))
                }
                return true
            }
        } catch {
            throw .btree(error)
        }
        roots = r
        logTrees = trees
        rootsGeneration = generation
    }

    /// How many root samples a read may find stale blocks under before it gives up (EIO).
    static let staleRetries = 100

    /// The merged items of the range around `key`, within `lock`.
    func read(_ key: Key, lock: LockRange) throws(FSError) -> (start: Key, end: Key, items: [(Key, [UInt8])]) {
        try retryingStale(key) { () throws(FSError) in try readOnce(key, lock: lock) }
    }

    /// Runs `body` again with fresh roots while it meets stale blocks under new roots; EIO when
    /// the same roots go stale twice.
    private func retryingStale<R>(_ key: Key, _ body: () throws(FSError) -> R) throws(FSError) -> R {
        var staleUnder: ForestRoots?
        for _ in 0..<Self.staleRetries {
            do {
                return try body()
            } catch where error.errno == FSError.ESTALE {
                guard let used = sampled else { throw error }
                if let last = staleUnder, last.fsRoot.ref == used.fsRoot.ref, last.logsRoot.ref == used.logsRoot.ref {
                    throw FSError(FSError.EIO, "stale block twice under the same roots reading \(key): \(error.message)")
                }
                staleUnder = used
                roots = nil
            }
        }
        throw FSError(FSError.EIO, "stale blocks under \(Self.staleRetries) samples of the roots reading \(key)")
    }

    /// The trees a read within `lock` consults: the fs root, and each log tree whose bloom
    /// filter may hold the lock, with their merge classes.
    private func sources(_ lock: LockRange) throws(FSError) -> (roots: [BTreeRoot], classes: [TotlMerging.Source]) {
        if roots == nil || rootsGeneration != grants.value { try loadRoots() }
        guard let roots else { throw FSError(FSError.EIO, "no roots") }
        var sources: [BTreeRoot] = [roots.fsRoot]
        // a plain read counts every finalized tree as a merge input (the original passes no
        // merge seq here); only delta items care
        var classes: [TotlMerging.Source] = [.fsRoot]
        for lt in logTrees {
            if lt.bloom.isNull { continue }
            let bloom: BlockBuffer
            do {
                bloom = try store.read(lt.bloom, magic: .bloom)
            } catch {
                throw .store(error)
            }
            if Bloom.test(bloom, lock.start) {
                sources.append(lt.root)
                classes.append(lt.finalized ? .mergeInput : .log)
            }
        }
        return (sources, classes)
    }

    private func readOnce(_ key: Key, lock: LockRange) throws(FSError) -> (start: Key, end: Key, items: [(Key, [UInt8])]) {
        let tree = BTree(store: store)
        var start = lock.start
        var end = lock.end
        let (sources, classes) = try sources(lock)
        var leaves: [[BTreeItem]] = []
        leaves.reserveCapacity(sources.count)
        for root in sources {
            let leaf: BTreeLeafRange
            do {
                leaf = try tree.leafRange(root, key)
            } catch {
                throw .btree(error)
            }
            if start < leaf.start { start = leaf.start }
            if leaf.end < end { end = leaf.end }
            leaves.append(leaf.items)
        }
        return (start, end, Self.merge(leaves, from: start, through: end, sources: classes))
    }

    /// The newest version of `key` (nil: no tree holds it, or the newest is a deletion): one
    /// hashed search of a leaf per tree, no range read. Not for delta items (their versions
    /// are summed, not replaced).
    func lookup(_ key: Key, lock: LockRange) throws(FSError) -> [UInt8]? {
        precondition(!DeltaItems.isDelta(key))
        return try retryingStale(key) { () throws(FSError) -> [UInt8]? in
            let tree = BTree(store: store)
            var best: BTreeItem? = nil
            for root in try sources(lock).roots {
                do throws(BTreeError) {
                    if let it = try tree.lookup(root, key), best == nil || it.seq > best!.seq { best = it }
                } catch {
                    throw .btree(error)
                }
            }
            guard let best, best.flags & Format.itemFlagDeletion == 0 else { return nil }
            return best.value
        }
    }

    /// The first live item in `from...through` (newest versions, deletions skipped), found by
    /// seeking each tree to it: the leaves on the way, no range read. nil when there is none,
    /// or when more than `skipLimit` deleted keys had to be stepped over (`exhausted`: read
    /// the range instead). Not for delta items.
    func first(from: Key, through: Key, lock: LockRange, skipLimit: Int = 16) throws(FSError) -> (item: (key: Key, value: [UInt8])?, exhausted: Bool) {
        precondition(!DeltaItems.isDelta(from) && !DeltaItems.isDelta(through))
        return try retryingStale(from) { () throws(FSError) -> ((key: Key, value: [UInt8])?, Bool) in
            let tree = BTree(store: store)
            let roots = try sources(lock).roots
            var pos = from
            for _ in 0...skipLimit {
                var best: BTreeItem? = nil
                for root in roots {
                    do throws(BTreeError) {
                        guard let it = try tree.next(root, pos), it.key <= through else { continue }
                        if best == nil || it.key < best!.key || (it.key == best!.key && it.seq > best!.seq) { best = it }
                    } catch {
                        throw .btree(error)
                    }
                }
                guard let b = best else { return (nil, false) }
                if b.flags & Format.itemFlagDeletion == 0 { return ((b.key, b.value), false) }
                if b.key >= through { return (nil, false) }
                pos = b.key.incremented()
            }
            return (nil, true)
        }
    }

    /// The newest version (highest seq) of each key in `from...through` across `leaves`
    /// (each in key order), deletions dropped, in key order: a k-way merge, no hashing.
    ///
    /// Delta items (`DeltaItems`) are not newest-wins: their versions are resolved as the
    /// original's totl merging does (`TotlMerging`), from each tree's `sources` class (the
    /// fs root, a merge input, another log tree; all logs when not given).
    static func merge(_ leaves: [[BTreeItem]], from: Key, through: Key, sources: [TotlMerging.Source]? = nil) -> [(Key, [UInt8])] {
        var pos = leaves.map { items in items.partitioningIndex { $0.key >= from } }
        var out: [(Key, [UInt8])] = []
        let live = leaves.indices.filter { pos[$0] < leaves[$0].count && leaves[$0][pos[$0]].key <= through }
        let hasDeltas = DeltaItems.isDelta(from) || DeltaItems.isDelta(through)
        if live.count <= 1 && !hasDeltas {
            // one tree has items here (the usual case): no merging, only deletions dropped
            guard let n = live.first else { return out }
            let items = leaves[n]
            var i = pos[n]
            while i < items.count && items[i].key <= through {
                if items[i].flags & Format.itemFlagDeletion == 0 { out.append((items[i].key, items[i].value)) }
                i += 1
            }
            return out
        }
        while true {
            // the least key at the trees' positions, and the newest tree holding it
            var least = -1
            for n in live where pos[n] < leaves[n].count {
                if least < 0 || leaves[n][pos[n]].key < leaves[least][pos[least]].key { least = n }
            }
            guard least >= 0 else { break }
            let k = leaves[least][pos[least]].key
            guard k <= through else { break }
            if DeltaItems.isDelta(k) {
                var m = TotlMerging()
                for n in live where pos[n] < leaves[n].count && leaves[n][pos[n]].key == k {
                    let it = leaves[n][pos[n]]
                    if it.flags & Format.itemFlagDeletion == 0 { m.contribute(it.seq, it.value, sources?[n] ?? (n == 0 ? .fsRoot : .log)) }
                }
                if let v = m.resolved() { out.append((k, v.encoded())) }
                for n in live where pos[n] < leaves[n].count && leaves[n][pos[n]].key == k { pos[n] += 1 }
                continue
            }
            var newest = least
            for n in live where pos[n] < leaves[n].count && leaves[n][pos[n]].key == k {
                if leaves[n][pos[n]].seq > leaves[newest][pos[newest]].seq { newest = n }
            }
            let it = leaves[newest][pos[newest]]
            if it.flags & Format.itemFlagDeletion == 0 { out.append((k, it.value)) }
            for n in live where pos[n] < leaves[n].count && leaves[n][pos[n]].key == k { pos[n] += 1 }
        }
        return out
    }
}

/// A count of lock grants, readable from any thread.
final class GrantGeneration: Sendable {
    private let count = Atomic<UInt64>(0)
    var value: UInt64 { count.load(ordering: .acquiring) }
    func bump() { count.add(1, ordering: .releasing) }
}

/// The server link as the lock client sees it: every grant bumps the forest's grant
/// generation, so the next read samples the roots again (the original refreshes a lock's
/// view of the forest when the lock is granted).
final class GrantWatchingLink: ServerLink {
    let link: any ServerLink
    let grants: GrantGeneration

    init(_ link: any ServerLink, grants: GrantGeneration) {
        self.link = link
        self.grants = grants
    }

    func getRoots() throws(FSError) -> ForestRoots { try link.getRoots() }
    func getLogTrees() throws(FSError) -> LogTrees { try link.getLogTrees() }
    func commitLogTrees(_ lt: LogTrees) throws(FSError) { try link.commitLogTrees(lt) }
    func allocInodes(count: UInt64) throws(FSError) -> (ino: UInt64, nr: UInt64) { try link.allocInodes(count: count) }
    func lock(key: Key, old: LockMode, new: LockMode) throws(FSError) -> UInt64 {
        let seq = try link.lock(key: key, old: old, new: new)
        grants.bump()
        return seq
    }
    func lastSeq() throws(FSError) -> UInt64 { try link.lastSeq() }
    func statfs() throws(FSError) -> ServerTotals { try link.statfs() }
    func farewell() throws(FSError) { try link.farewell() }
    func getLogMerge() throws(FSError) -> LogMergeRequest? { try link.getLogMerge() }
    func commitLogMerge(_ comp: LogMergeComplete) throws(FSError) { try link.commitLogMerge(comp) }
    func openInoMap(group: UInt64) throws(FSError) -> OpenInoMap { try link.openInoMap(group: group) }
    func srchGetCompact() throws(FSError) -> SrchCompact { try link.srchGetCompact() }
    func srchCommitCompact(_ sc: SrchCompact) throws(FSError) { try link.srchCommitCompact(sc) }
    func resizeDevices(metaBlocks: UInt64, dataBlocks: UInt64) throws(FSError) {
        try link.resizeDevices(metaBlocks: metaBlocks, dataBlocks: dataBlocks)
    }
}

extension Forest {
    /// The smallest key after `key` (inclusive) through `through` that any tree holds, deletion
    /// items included (a hint for skipping empty ranges: the caller reads what is there).
    func nextKey(after key: Key, through: Key) throws(FSError) -> Key? {
        if roots == nil { try loadRoots() }
        guard let roots else { return nil }
        let tree = BTree(store: store)
        var best: Key? = nil
        for root in [roots.fsRoot] + logTrees.map(\.root) {
            do {
                if let it = try tree.next(root, key), it.key <= through, best == nil || it.key < best! { best = it.key }
            } catch {
                throw .btree(error)
            }
        }
        return best
    }
}

extension Array {
    /// The index of the first element for which `belongs` is true, in an array where it is
    /// false for a prefix and true for the rest (binary search).
    func partitioningIndex(where belongs: (Element) -> Bool) -> Int {
        var lo = 0
        var hi = count
        while lo < hi {
            let mid = (lo + hi) / 2
            if belongs(self[mid]) { hi = mid } else { lo = mid + 1 }
        }
        return lo
    }
}
