import Glibc
import ScoutAlloc
public import ScoutFormat

private let EOVERFLOW: Int32 = 75

/// The inode attributes of GET_ATTR_X / SET_ATTR_X (`struct scoutfs_ioctl_inode_attr_x`).
public struct AttrX: Sendable, Equatable {
    /// `x_mask`: which fields a call is about.
    public struct Mask: OptionSet, Sendable, Equatable {
        public let rawValue: UInt64
        public init(rawValue: UInt64) { self.rawValue = rawValue }
        public static let metaSeq = Mask(rawValue: 1 << 0)
        public static let dataSeq = Mask(rawValue: 1 << 1)
        public static let dataVersion = Mask(rawValue: 1 << 2)
        public static let onlineBlocks = Mask(rawValue: 1 << 3)
        public static let offlineBlocks = Mask(rawValue: 1 << 4)
        public static let ctime = Mask(rawValue: 1 << 5)
        public static let crtime = Mask(rawValue: 1 << 6)
        public static let size = Mask(rawValue: 1 << 7)
        public static let retention = Mask(rawValue: 1 << 8)
        public static let projectID = Mask(rawValue: 1 << 9)
        /// Every bit this version knows.
        public static let all = Mask(rawValue: (1 << 10) - 1)
    }

    /// `x_flags` bit: with SIZE, also create one offline extent over [0, size).
    public static let flagSizeOffline: UInt64 = 1
    /// `bits` bit: the retention flag.
    public static let bitRetention: UInt64 = 1

    public var mask: Mask = []
    public var flags: UInt64 = 0
    public var metaSeq: UInt64 = 0
    public var dataSeq: UInt64 = 0
    public var dataVersion: UInt64 = 0
    public var onlineBlocks: UInt64 = 0
    public var offlineBlocks: UInt64 = 0
    public var ctime = Timespec()
    public var crtime = Timespec()
    public var size: UInt64 = 0
    public var bits: UInt64 = 0
    public var projectID: UInt64 = 0

    public init() {}
}

/// The archive operations (release, stage, punch-offline, move-blocks, attr_x, data waits).
///
/// Design note. Permission checks (CAP_SYS_ADMIN, an fd open for writing, stage's
/// O_APPEND/O_DIRECT/O_DSYNC rules, EXDEV) belong to the caller; the checks here are the
/// original's checks on the arguments and the inode, with its errnos, in its order. Each
/// operation changes nothing before all its checks passed (where the original could stop
/// half way, in punch-offline and move-blocks, this one checks every extent first). After
/// an operation changed blocks, the kernel's caches of the inode are dropped
/// (`kernelInvalidate`) and this mount's waiters on it retry.
extension Volume {
    // MARK: waiting for offline data

    /// Thrown by an operation body (before it changed anything) that met an offline block:
    /// `withDataWait` waits for the registered waiter with no lock held and runs it again.
    struct MustWait: Error {
        let waiter: DataWaiters.Waiter
    }

    private enum WaitOutcome<R> {
        case done(R)
        case wait(DataWaiters.Waiter)
    }

    /// `withLocks`, run again after a wait each time `body` throws `MustWait`.
    func withDataWait<R>(_ inos: [UInt64], write: Bool, hooks: DataWaitHooks?, _ body: () throws -> R) throws(FSError) -> R {
        var blocked = false
        while true {
            var pending: DataWaiters.Waiter?
            let outcome: WaitOutcome<R>
            do {
                outcome = try withLocks(inos, write: write) { () throws -> WaitOutcome<R> in
                    pending = nil
                    do {
                        return .done(try body())
                    } catch let e as MustWait {
                        pending = e.waiter
                        return .wait(e.waiter)
                    }
                }
            } catch {
                if let pending { dataWaiters.cancel(pending) }
                throw error
            }
            switch outcome {
            case .done(let r):
                return r
            case .wait(let w):
                if !blocked {
                    blocked = true
                    hooks?.willBlock()
                }
                try dataWaiters.wait(w, hooks: hooks)
            }
        }
    }

    /// Throws `MustWait` (with a waiter registered for the first one) when a block of `ino`
    /// in `first...last` is offline. Call under the inode's cluster lock, before changing anything.
    func waitIfOffline(_ ino: UInt64, _ i: Inode, first: UInt64, last: UInt64, op: DataWaitOp) throws {
        guard i.offlineBlocks > 0, first <= last else { return }
        for e in try extents(ino, from: first, through: last) where e.offline {
            counters.dataWaits += 1
            throw MustWait(waiter: dataWaiters.register(ino: ino, iblock: max(e.start, first), op: op))
        }
    }

    /// DATA_WAITING: this mount's waiters after (afterIno, afterIblock) in (ino, iblock) order,
    /// at most `max`. Tasks waiting on one block for one op are listed once; the ops of one
    /// block are separate entries (in op order) and never split by `max`.
    public func dataWaiting(afterIno: UInt64, afterIblock: UInt64, max: Int) -> [DataWaiterEntry] {
        dataWaiters.list(afterIno: afterIno, afterIblock: afterIblock, max: max)
    }

    /// DATA_WAIT_ERR: fails the waiters of `ino` on blocks [offset/4K, (offset+count-1)/4K]
    /// whose op is in `ops` with errno `err`; returns how many were woken. Arguments the
    /// ioctl rejects with EINVAL (count 0 gives 0 there; unknown op bits, an err outside
    /// 1...4095, a range that wraps) wake nobody here: the caller checks them, and that the
    /// inode is a cached (ESTALE) regular file (EINVAL).
    public func dataWaitErr(ino: UInt64, offset: UInt64, count: UInt64, ops: UInt8, err: Int32) -> Int {
        guard count > 0, ops & ~DataWaitOp.allBits == 0, err > 0, err < 4096 else { return 0 }
        let (end, overflow) = offset.addingReportingOverflow(count - 1)
        if overflow { return 0 }
        return dataWaiters.fail(ino: ino, first: offset / Self.bs, last: end / Self.bs, ops: ops, err: err)
    }

    // MARK: release, stage, punch-offline

    /// Adds an offline extent over `start..<start+len` (a range with no extent), merged with
    /// offline neighbours. Offline extents map no blocks, so they are not cut at
    /// `maxExtentBlocks` (as in the original, one item can cover a whole file).
    func insertOffline(_ ino: UInt64, start: UInt64, len: UInt64) throws(FSError) {
        var e = FileExtent(start: start, len: len, blkno: 0, flags: DataExtentValue.flagOffline)
        if e.start > 0, let left = try extents(ino, from: e.start - 1, through: e.start - 1).first,
            left.end == e.start - 1, left.flags == e.flags, left.blkno == 0
        {
            cache.delete(Self.extentKey(ino, left))
            e = FileExtent(start: left.start, len: left.len + e.len, blkno: 0, flags: e.flags)
        }
        if e.end < UInt64.max, let right = try extents(ino, from: e.end + 1, through: e.end + 1).first,
            right.start == e.end + 1, right.flags == e.flags, right.blkno == 0
        {
            cache.delete(Self.extentKey(ino, right))
            e = FileExtent(start: e.start, len: e.len + right.len, blkno: 0, flags: e.flags)
        }
        cache.put(Self.extentKey(ino, e), DataExtentValue(blkno: 0, flags: e.flags).encoded())
    }

    /// EPERM while `i` is under retention. The original refuses unlink, rename (of the file
    /// or over it), every setattr (chmod, chown, times, truncate, O_TRUNC), write, punch-offline,
    /// move-blocks into the file, `user.` xattr changes and set-attr-x unless it clears
    /// retention; reads, link, release, stage and other xattr namespaces stay allowed. fallocate
    /// is refused here too: the original's fallocate misses the check, but its documented rule
    /// is that nothing about a retained file's contents may change.
    static func checkRetention(_ i: Inode) throws(FSError) {
        if i.flags & Inode.flagRetention != 0 { throw FSError(FSError.EPERM, "the file is under retention") }
    }

    /// RELEASE: frees the online blocks of [offset, offset+length) and marks them offline
    /// (offline and sparse regions are skipped). When no online block is left, blocks past
    /// i_size go too. size, times, data_version and data_seq do not change (meta_seq does).
    public func release(_ ino: UInt64, offset: UInt64, length: UInt64, dataVersion: UInt64) throws(FSError) {
        guard length > 0 else { return }
        let (_, overflow) = offset.addingReportingOverflow(length - 1)
        if overflow || offset % Self.bs != 0 || length % Self.bs != 0 { throw FSError(FSError.EINVAL, "release range") }
        let offlineDropped = try withLocks([ino], write: true) { () throws -> Bool in
            var i = try loadInode(ino)
            guard Self.isReg(i.mode) else { throw FSError(FSError.EINVAL, "release of a non-regular file") }
            guard i.dataVersion == dataVersion else { throw FSError(FSError.ESTALE, "data_version \(i.dataVersion), not \(dataVersion)") }
            let first = offset / Self.bs
            let last = (offset + (length - 1)) / Self.bs
            for e in try extents(ino, from: first, through: last) where !e.offline {
                let start = max(e.start, first)
                let n = min(e.end, last) - start + 1
                let r = try removeExtents(ino, from: start, count: n, free: true)
                i.onlineBlocks -= min(i.onlineBlocks, r.online)
                try insertOffline(ino, start: start, len: n)
                i.offlineBlocks += n
            }
            var dropped = false
            if i.onlineBlocks == 0 && i.size > 0 {
                let keep = i.size / Self.bs + (i.size % Self.bs == 0 ? 0 : 1)
                let r = try removeExtents(ino, from: keep, count: .max - keep, free: true)
                i.onlineBlocks -= min(i.onlineBlocks, r.online)
                i.offlineBlocks -= min(i.offlineBlocks, r.offline)
                dropped = r.offline > 0
            }
            storeInode(ino, &i, dataChanged: false)
            return dropped
        }
        if offlineDropped { dataWaiters.wake(ino) }
        kernelInvalidate?([ino])
    }

    /// STAGE: writes `data` at `offset` without changing data_version, data_seq or the times.
    /// The offset is 4K aligned; the end is 4K aligned or i_size, and not past i_size.
    /// Like the original, it fills offline blocks and holes and overwrites online blocks in
    /// place (it never waits for offline blocks). Wakes this mount's waiters on the inode.
    public func stage(_ ino: UInt64, dataVersion: UInt64, offset: UInt64, _ data: UnsafeRawBufferPointer) throws(FSError) -> Int {
        let (end, overflow) = offset.addingReportingOverflow(UInt64(data.count))
        if overflow || offset % Self.bs != 0 { throw FSError(FSError.EINVAL, "stage range") }
        guard data.count > 0 else { return 0 }
        let n = try withLocks([ino], write: true) { () throws -> Int in
            var i = try loadInode(ino)
            guard Self.isReg(i.mode), end <= i.size, end % Self.bs == 0 || end == i.size else {
                throw FSError(FSError.EINVAL, "stage of \(offset)+\(data.count) into a file of \(i.size) bytes")
            }
            guard i.dataVersion == dataVersion else { throw FSError(FSError.ESTALE, "data_version \(i.dataVersion), not \(dataVersion)") }
            try writeBlocks(ino, &i, offset: offset, data)
            storeInode(ino, &i, dataChanged: false)
            return data.count
        }
        dataWaiters.wake(ino)
        kernelInvalidate?([ino])
        return n
    }

    /// PUNCH_OFFLINE: the offline extents in [offset, offset+length) become sparse; an online
    /// (or unwritten) extent in the range gives EINVAL and changes nothing. i_size,
    /// data_version and data_seq do not change.
    public func punchOffline(_ ino: UInt64, offset: UInt64, length: UInt64, dataVersion: UInt64, flags: UInt64) throws(FSError) {
        guard length > 0 else { return }
        let (_, overflow) = offset.addingReportingOverflow(length - 1)
        if overflow || offset % Self.bs != 0 || length % Self.bs != 0 { throw FSError(EOVERFLOW, "punch-offline range") }
        if flags != 0 { throw FSError(FSError.EINVAL, "punch-offline flags \(flags)") }
        let punched = try withLocks([ino], write: true) { () throws -> Bool in
            var i = try loadInode(ino)
            guard Self.isReg(i.mode) else { throw FSError(FSError.EINVAL, "punch-offline of a non-regular file") }
            guard i.dataVersion == dataVersion else { throw FSError(FSError.ESTALE, "data_version \(i.dataVersion), not \(dataVersion)") }
            try Self.checkRetention(i)
            let first = offset / Self.bs
            let last = (offset + (length - 1)) / Self.bs
            let exts = try extents(ino, from: first, through: last)
            if let e = exts.first(where: { $0.blkno != 0 }) {
                throw FSError(FSError.EINVAL, "punch-offline: blocks \(e.start)+\(e.len) are online")
            }
            var removed: UInt64 = 0
            for e in exts where e.offline {
                let start = max(e.start, first)
                let r = try removeExtents(ino, from: start, count: min(e.end, last) - start + 1, free: false)
                removed += r.offline
            }
            guard removed > 0 else { return false }
            i.offlineBlocks -= min(i.offlineBlocks, removed)
            storeInode(ino, &i, dataChanged: false)
            return true
        }
        if punched {
            dataWaiters.wake(ino)
            kernelInvalidate?([ino])
        }
    }

    // MARK: move-blocks

    /// The first extent of `ino` that ends at or after `iblock`.
    private func extent(_ ino: UInt64, atOrAfter iblock: UInt64) throws(FSError) -> FileExtent? {
        let pos = Key(zone: KeyZone.fs, first: ino, type: KeyType.dataExtent, second: iblock)
        let end = Key(zone: KeyZone.fs, first: ino, type: KeyType.dataExtent, second: .max, third: .max, fourth: .max)
        guard let it = try cache.next(from: pos, through: end) else { return nil }
        guard it.key.third > 0, it.key.third - 1 <= it.key.second, let v = try? DataExtentValue.decode(it.value) else {
            throw FSError(FSError.EIO, "corrupt extent item \(it.key)")
        }
        return FileExtent(start: it.key.second - (it.key.third - 1), len: it.key.third, blkno: v.blkno, flags: v.flags)
    }

    /// MOVE_BLOCKS (issued on `to`): moves the extents of `from` in [fromOffset,
    /// fromOffset+length) to `to` at `toOffset`, without copying. Offsets are 4K aligned and
    /// so is the length unless it ends at from's i_size. Without `stage`, the destination
    /// range must have no extents (EINVAL), neither file may have offline blocks (ENODATA),
    /// and both files get new ctime, mtime, data_version and data_seq. With `stage`, each
    /// moved extent must land inside one offline extent of `to` (EINVAL; ENOENT when `to`
    /// has no extent there or after), `dataVersion` must be to's (ESTALE), and only `from`
    /// gets new times, data_version and data_seq. Sparse source regions are not moved.
    /// All checks happen before any change.
    public func moveBlocks(
        from: UInt64, fromOffset: UInt64, length: UInt64, to: UInt64, toOffset: UInt64, dataVersion: UInt64, stage: Bool
    ) throws(FSError) {
        guard length > 0 else { return }
        if fromOffset.addingReportingOverflow(length - 1).overflow || toOffset.addingReportingOverflow(length - 1).overflow {
            throw FSError(EOVERFLOW, "move-blocks range")
        }
        if from == to { throw FSError(FSError.EINVAL, "move-blocks within one file") }
        let moved = try withLocks([from, to], write: true) { () throws -> Bool in
            var src = try loadInode(from)
            var dst = try loadInode(to)
            if !stage { try Self.checkRetention(dst) }
            if fromOffset % Self.bs != 0 || toOffset % Self.bs != 0 || (length % Self.bs != 0 && fromOffset + length != src.size) {
                throw FSError(FSError.EINVAL, "move-blocks alignment")
            }
            if stage && dataVersion != dst.dataVersion {
                throw FSError(FSError.ESTALE, "data_version \(dst.dataVersion), not \(dataVersion)")
            }
            let fromIblock = fromOffset / Self.bs
            let toIblock = toOffset / Self.bs
            if fromOffset >= src.size { return false }
            let bytes = min(length, src.size - fromOffset)
            let count = bytes / Self.bs + (bytes % Self.bs == 0 ? 0 : 1)
            if Self.isDir(src.mode) || Self.isDir(dst.mode) { throw FSError(FSError.EISDIR) }
            if !Self.isReg(src.mode) || !Self.isReg(dst.mode) { throw FSError(FSError.EINVAL, "move-blocks of a non-regular file") }
            if src.offlineBlocks > 0 || (dst.offlineBlocks > 0 && !stage) {
                throw FSError(FSError.ENODATA, "move-blocks with offline blocks")
            }
            // every check first
            let lastFrom = fromIblock + count - 1
            var pieces: [(piece: FileExtent, toStart: UInt64)] = []
            for e in try extents(from, from: fromIblock, through: lastFrom) {
                let start = max(e.start, fromIblock)
                let len = min(e.end, lastFrom) - start + 1
                let piece = FileExtent(start: start, len: len, blkno: e.blkno + (start - e.start), flags: e.flags)
                let toStart = toIblock + (start - fromIblock)
                if stage {
                    guard let d = try extent(to, atOrAfter: toStart) else {
                        throw FSError(FSError.ENOENT, "move-blocks stage: no destination extent at block \(toStart)")
                    }
                    if !(d.start <= toStart && d.end >= toStart + len - 1) || !d.offline {
                        throw FSError(FSError.EINVAL, "move-blocks stage: destination blocks \(toStart)+\(len) are not offline")
                    }
                } else if try !extents(to, from: toStart, through: toStart + len - 1).isEmpty {
                    throw FSError(FSError.EINVAL, "move-blocks: destination blocks \(toStart)+\(len) exist")
                }
                pieces.append((piece, toStart))
            }
            for (p, toStart) in pieces {
                let r = try removeExtents(from, from: p.start, count: p.len, free: false)
                src.onlineBlocks -= min(src.onlineBlocks, r.online)
                if stage {
                    let d = try removeExtents(to, from: toStart, count: p.len, free: false)
                    dst.offlineBlocks -= min(dst.offlineBlocks, d.offline)
                }
                try insertExtent(to, FileExtent(start: toStart, len: p.len, blkno: p.blkno, flags: p.flags))
                dst.onlineBlocks += p.len
                // the moved extent may extend i_size, keeping the source's partial last block
                var toSize = (toStart + p.len) * Self.bs
                if toSize > dst.size {
                    let fromEnd = (p.start + p.len) * Self.bs
                    if fromEnd > src.size { toSize -= fromEnd - src.size }
                    dst.size = max(dst.size, toSize)
                }
            }
            let now = Self.now()
            if !stage {
                dst.ctime = now
                dst.mtime = now
                dst.dataVersion &+= 1
            }
            src.ctime = now
            src.mtime = now
            src.dataVersion &+= 1
            storeInode(from, &src, dataChanged: true)
            storeInode(to, &dst, dataChanged: !stage)
            return true
        }
        guard moved else { return }
        if stage { dataWaiters.wake(to) }
        kernelInvalidate?([from, to])
    }

    // MARK: attr_x

    /// GET_ATTR_X: every field, filled from the inode (RETENTION and PROJECT_ID only on a
    /// format v2 volume; `mask` says which fields are set).
    public func getAttrX(_ ino: UInt64) throws(FSError) -> AttrX {
        try withLocks([ino], write: false) { () throws -> AttrX in
            let i = try loadInode(ino)
            var a = AttrX()
            a.mask = fmtVers >= 2 ? .all : AttrX.Mask.all.subtracting([.retention, .projectID])
            a.metaSeq = i.metaSeq
            a.dataSeq = i.dataSeq
            a.dataVersion = i.dataVersion
            a.onlineBlocks = i.onlineBlocks
            a.offlineBlocks = i.offlineBlocks
            a.ctime = i.ctime
            a.crtime = i.crtime
            a.size = i.size
            if fmtVers >= 2 {
                a.bits = i.flags & Inode.flagRetention != 0 ? AttrX.bitRetention : 0
                a.projectID = i.proj
            }
            return a
        }
    }

    /// SET_ATTR_X (SETATTR_MORE maps onto it): the original's `set_attr_x`, all checks before
    /// any change. An empty mask does nothing; unknown mask or flag bits give EINVAL;
    /// RETENTION and PROJECT_ID need format v2 (EOPNOTSUPP). The seq and block-count fields
    /// are ignored. size and data_version only on a regular file whose data_version is 0, a
    /// given data_version must not be 0, a non-zero size needs a non-zero data_version, and
    /// SIZE_OFFLINE needs a non-zero size and a file without blocks: it creates one offline
    /// extent over [0, size). A retained file only takes a call that clears retention (EPERM).
    public func setAttrX(_ ino: UInt64, _ a: AttrX) throws(FSError) {
        guard !a.mask.isEmpty else { return }
        if !AttrX.Mask.all.isSuperset(of: a.mask) || a.flags & ~AttrX.flagSizeOffline != 0 {
            throw FSError(FSError.EINVAL, "unknown attr_x mask or flags")
        }
        if fmtVers < 2 && !a.mask.isDisjoint(with: [.retention, .projectID]) {
            throw FSError(FSError.EOPNOTSUPP, "retention and project ids need format version 2")
        }
        let sizeOffline = a.flags & AttrX.flagSizeOffline != 0
        try withLocks([ino], write: true) { () throws -> Void in
            var i = try loadInode(ino)
            let setsVersion = a.mask.contains(.dataVersion)
            let setsSize = a.mask.contains(.size)
            if setsVersion && a.dataVersion == 0 { throw FSError(FSError.EINVAL, "data_version 0") }
            if (setsSize || setsVersion) && (!Self.isReg(i.mode) || i.dataVersion != 0) {
                throw FSError(FSError.EINVAL, "size and data_version only on a new regular file")
            }
            if setsSize && a.size > 0 && (!setsVersion || a.dataVersion == 0) {
                throw FSError(FSError.EINVAL, "a size needs a data_version")
            }
            if sizeOffline && (!setsSize || a.size == 0) { throw FSError(FSError.EINVAL, "SIZE_OFFLINE needs a size") }
            if a.mask.contains(.retention) && !Self.isReg(i.mode) { throw FSError(FSError.EINVAL, "retention on a non-regular file") }
            if i.flags & Inode.flagRetention != 0 && !(a.mask.contains(.retention) && a.bits & AttrX.bitRetention == 0) {
                throw FSError(FSError.EPERM, "the file is under retention")
            }
            if sizeOffline && (i.onlineBlocks > 0 || i.offlineBlocks > 0) {
                throw FSError(FSError.EINVAL, "SIZE_OFFLINE on a file with blocks")
            }
            if sizeOffline {
                let count = a.size / Self.bs + (a.size % Self.bs == 0 ? 0 : 1)
                cache.put(
                    Self.extentKey(ino, FileExtent(start: 0, len: count, blkno: 0, flags: DataExtentValue.flagOffline)),
                    DataExtentValue(blkno: 0, flags: DataExtentValue.flagOffline).encoded())
                i.offlineBlocks += count
            }
            if setsVersion { i.dataVersion = a.dataVersion }
            if setsSize { i.size = a.size }
            if a.mask.contains(.ctime) { i.ctime = a.ctime }
            if a.mask.contains(.crtime) { i.crtime = a.crtime }
            if a.mask.contains(.retention) {
                i.flags = a.bits & AttrX.bitRetention != 0 ? i.flags | Inode.flagRetention : i.flags & ~Inode.flagRetention
            }
            if a.mask.contains(.projectID) { i.proj = a.projectID }
            // a restored data_version comes with a data_seq (the original: never 0 with it)
            storeInode(ino, &i, dataChanged: setsVersion)
        }
        kernelInvalidate?([ino])
    }
}
