import Glibc
import ScoutAlloc
import ScoutBlockIO
import ScoutFormat
import ScoutStorage
import SystemPackage

/// A file extent: `len` logical blocks from `start`, at data blkno `blkno`.
struct FileExtent: Equatable {
    var start: UInt64
    var len: UInt64
    var blkno: UInt64
    var flags: UInt8
    var end: UInt64 { start + len - 1 }
    var unwritten: Bool { flags & DataExtentValue.flagUnwritten != 0 }
    var offline: Bool { flags & DataExtentValue.flagOffline != 0 }
}

/// fallocate(2) modes.
public enum FallocMode {
    public static let keepSize: UInt32 = 0x01
    public static let punchHole: UInt32 = 0x02
    public static let zeroRange: UInt32 = 0x10
}

extension Volume {
    static let bs = UInt64(Format.smallBlockSize)
    /// Longest extent item (the original caps extents so one item never covers too much).
    static let maxExtentBlocks: UInt64 = (128 << 20) >> 12

    static func extentKey(_ ino: UInt64, _ e: FileExtent) -> Key {
        Key(zone: KeyZone.fs, first: ino, type: KeyType.dataExtent, second: e.end, third: e.len)
    }

    /// The extents of `ino` that overlap logical blocks `from...through`, in order.
    func extents(_ ino: UInt64, from: UInt64, through: UInt64) throws(FSError) -> [FileExtent] {
        var out: [FileExtent] = []
        var pos = Key(zone: KeyZone.fs, first: ino, type: KeyType.dataExtent, second: from)
        let end = Key(zone: KeyZone.fs, first: ino, type: KeyType.dataExtent, second: .max, third: .max, fourth: .max)
        while let it = try cache.next(from: pos, through: end) {
            guard it.key.third > 0, it.key.third - 1 <= it.key.second, let v = try? DataExtentValue.decode(it.value) else {
                throw FSError(FSError.EIO, "corrupt extent item \(it.key)")
            }
            let e = FileExtent(start: it.key.second - (it.key.third - 1), len: it.key.third, blkno: v.blkno, flags: v.flags)
            if e.start > through { break }
            out.append(e)
            if it.key == end { break }
            pos = it.key.incremented()
        }
        return out
    }

    private func putExtent(_ ino: UInt64, _ e: FileExtent) {
        cache.put(Self.extentKey(ino, e), DataExtentValue(blkno: e.blkno, flags: e.flags).encoded())
    }

    /// Adds an extent, merging it into its left neighbour when they are contiguous.
    func insertExtent(_ ino: UInt64, _ e: FileExtent) throws(FSError) {
        var e = e
        if e.start > 0, let left = try extents(ino, from: e.start - 1, through: e.start - 1).first,
            left.end == e.start - 1, left.flags == e.flags, left.blkno != 0, left.blkno + left.len == e.blkno,
            left.len + e.len <= Self.maxExtentBlocks
        {
            cache.delete(Self.extentKey(ino, left))
            e = FileExtent(start: left.start, len: left.len + e.len, blkno: left.blkno, flags: e.flags)
        }
        putExtent(ino, e)
    }

    /// What `removeExtents` took away.
    struct Removed {
        /// Blocks that had a data block (written or unwritten).
        var online: UInt64 = 0
        /// Offline blocks.
        var offline: UInt64 = 0
    }

    /// Removes logical blocks `from..<from+count` from `ino`'s extents; their data blocks go
    /// to the freed pool when `free`.
    @discardableResult
    func removeExtents(_ ino: UInt64, from: UInt64, count: UInt64, free: Bool) throws(FSError) -> Removed {
        guard count > 0 else { return Removed() }
        let last = count == .max || count > .max - from ? UInt64.max : from + count - 1
        var removed = Removed()
        for e in try extents(ino, from: from, through: last) {
            cache.delete(Self.extentKey(ino, e))
            let cutStart = max(e.start, from)
            let cutEnd = min(e.end, last)
            if e.start < cutStart {
                putExtent(ino, FileExtent(start: e.start, len: cutStart - e.start, blkno: e.blkno, flags: e.flags))
            }
            if cutEnd < e.end {
                let off = cutEnd + 1 - e.start
                putExtent(ino, FileExtent(start: cutEnd + 1, len: e.end - cutEnd, blkno: e.blkno == 0 ? 0 : e.blkno + off, flags: e.flags))
            }
            let n = cutEnd - cutStart + 1
            if e.offline {
                removed.offline += n
            } else if e.blkno != 0 {
                removed.online += n
                if free {
                    do {
                        try ExtentAllocator(store: txn).free(&txn.logTrees.dataFreed, Extent(start: e.blkno + (cutStart - e.start), len: n))
                    } catch {
                        throw .alloc(error)
                    }
                }
            }
        }
        return removed
    }

    /// Up to `count` contiguous free data blocks.
    ///
    /// When this transaction's data_avail is empty the transaction is committed: the next
    /// GET_LOG_TREES returns what this mount freed and refills the pool (the original's
    /// ENOBUFS retry). When the server has nothing either, the space is in other mounts'
    /// pools or freed in their open transactions: the server asks them to commit, and this
    /// retries for up to `dataRefillWait` seconds before it gives up with ENOSPC.
    func allocData(_ count: UInt64) throws(FSError) -> (blkno: UInt64, len: UInt64) {
        let start = monotonicSeconds()
        var delay: UInt32 = 20_000
        var committed = false
        while true {
            let ext: Extent?
            do {
                ext = try ExtentAllocator(store: txn).allocate(&txn.logTrees.dataAvail, count: min(count, Self.maxExtentBlocks))
            } catch {
                throw .alloc(error)
            }
            if let ext { return (ext.start, ext.len) }
            if committed {
                if monotonicSeconds() - start >= dataRefillWait { throw FSError(FSError.ENOSPC, "data device full") }
                usleep(delay)
                delay = min(delay * 2, 500_000)
            }
            try commitLocked(force: true, reopen: true)
            committed = true
        }
    }

    // MARK: device I/O

    func pwriteAll(_ buf: UnsafeRawBufferPointer, at off: UInt64) throws(FSError) {
        do {
            try data.write(buf, at: off)
        } catch {
            throw FSError(error.rawValue, "data device write at \(off)")
        }
        dataDirty = true
        counters.dataBytesWritten += UInt64(buf.count)
    }

    func preadAll(_ buf: UnsafeMutableRawBufferPointer, at off: UInt64) throws(FSError) {
        do {
            try data.read(into: buf, at: off)
        } catch {
            throw FSError(error.rawValue, "data device read at \(off)")
        }
        counters.dataBytesRead += UInt64(buf.count)
    }

    /// Writes `data` (the file bytes at `fileOff`) into `nblocks` data blocks from `blkno` that
    /// map logical blocks from `lblk`. Partial edge blocks are read first when `existing`,
    /// else zero-filled.
    private func writeRun(_ data: UnsafeRawBufferPointer, fileOff: UInt64, lblk: UInt64, nblocks: UInt64, blkno: UInt64, existing: Bool) throws(FSError) {
        let runStart = lblk * Self.bs
        let runEnd = runStart + nblocks * Self.bs
        let from = max(fileOff, runStart)
        let to = min(fileOff + UInt64(data.count), runEnd)
        if from == runStart && to == runEnd {
            try pwriteAll(UnsafeRawBufferPointer(rebasing: data[Int(from - fileOff)..<Int(to - fileOff)]), at: blkno * Self.bs)
            return
        }
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(runEnd - runStart), alignment: 4096)
        defer { buf.deallocate() }
        memset(buf.baseAddress!, 0, buf.count)
        if existing {
            if from > runStart {
                try preadAll(UnsafeMutableRawBufferPointer(rebasing: buf[0..<Int(Self.bs)]), at: blkno * Self.bs)
            }
            if to < runEnd {
                let lastOff = Int(runEnd - runStart - Self.bs)
                try preadAll(UnsafeMutableRawBufferPointer(rebasing: buf[lastOff..<buf.count]), at: blkno * Self.bs + UInt64(lastOff))
            }
        }
        memcpy(buf.baseAddress! + Int(from - runStart), data.baseAddress! + Int(from - fileOff), Int(to - from))
        try pwriteAll(UnsafeRawBufferPointer(buf), at: blkno * Self.bs)
    }

    // MARK: operations

    /// Counts an open of `ino` (truncating it for O_TRUNC); returns whether the file has
    /// offline blocks. `killSUIDGID` (a truncating open by a caller without CAP_FSETID,
    /// FUSE_OPEN_KILL_SUIDGID) clears setuid, and setgid when group-executable.
    @discardableResult
    public func open(_ ino: UInt64, truncate: Bool, killSUIDGID: Bool = false) throws(FSError) -> Bool {
        try withLocks([ino], write: truncate) { () throws -> Bool in
            var i = try loadInode(ino)
            // O_TRUNC is a setattr of the size, refused under retention even on an empty file
            if truncate && Self.isReg(i.mode) { try Self.checkRetention(i) }
            if truncate && Self.isReg(i.mode) && (i.size > 0 || (killSUIDGID && Self.killsSUIDGID(i.mode))) {
                try self.truncate(ino, &i, to: 0)
                let now = Self.now()
                i.mtime = now
                i.ctime = now
                if killSUIDGID { i.mode = Self.killedSUIDGID(i.mode) }
                storeInode(ino, &i, dataChanged: true)
            }
            openCounts[ino, default: 0] += 1
            return i.offlineBlocks > 0
        }
    }

    public func release(_ ino: UInt64) {
        let maybe = state.withLock { () -> Bool in
            let c = openCounts[ino] ?? 0
            if c <= 1 { openCounts[ino] = nil } else { openCounts[ino] = c - 1 }
            return pendingDelete.contains(ino)
        }
        if maybe { deleteIfUnused(ino) }
    }

    /// Writes `data` at `offset`, or at the end of the file as every mount sees it when
    /// `append` (O_APPEND: the kernel's offset comes from its own cached size, which another
    /// mount's appends make stale; the end is read under the inode's write lock here).
    ///
    /// While any block inside i_size is offline the write waits (op `write`) for it to be
    /// staged: data_version is per inode, and a write would make every later stage of the
    /// file fail with ESTALE. Offline blocks past i_size are overwritten. A data quota that
    /// was reached refuses the write (EDQUOT) unless `quota` is false (the kernel writing
    /// back pages of a shared mapping, which the original never refuses).
    ///
    /// Privileges go as the kernel would take them away (the mount handles HANDLE_KILLPRIV_V2,
    /// so the kernel leaves it here and asks for no `security.capability` per write):
    /// `killSUIDGID` (FUSE_WRITE_KILL_SUIDGID, a writer without CAP_FSETID) clears setuid, and
    /// setgid when group-executable; `security.capability` goes with every write.
    public func write(
        _ ino: UInt64, offset requested: UInt64, _ data: UnsafeRawBufferPointer, append: Bool = false,
        killSUIDGID: Bool = false, hooks: DataWaitHooks? = nil, quota: Bool = true
    ) throws(FSError) -> Int {
        guard data.count > 0 else { return 0 }
        return try withDataWait([ino], write: true, hooks: hooks) { () throws -> Int in
            var i = try loadInode(ino)
            guard Self.isReg(i.mode) else { throw FSError(FSError.EINVAL) }
            try Self.checkRetention(i)
            let offset = append ? i.size : requested
            let (end, overflow) = offset.addingReportingOverflow(UInt64(data.count))
            if overflow || end > UInt64(Int64.max) { throw FSError(FSError.EFBIG) }
            if quota { try checkDataQuota(i) }
            if i.size > 0 { try waitIfOffline(ino, i, first: 0, last: (i.size - 1) / Self.bs, op: .write) }
            try writeBlocks(ino, &i, offset: offset, data)
            if killSUIDGID { i.mode = Self.killedSUIDGID(i.mode) }
            try removeCapability(ino)
            if end > i.size { i.size = end }
            let now = Self.now()
            i.mtime = now
            i.ctime = now
            i.dataVersion &+= 1
            storeInode(ino, &i, dataChanged: true)
            return data.count
        }
    }

    /// Whether `killedSUIDGID` changes `mode`.
    static func killsSUIDGID(_ mode: UInt32) -> Bool { killedSUIDGID(mode) != mode }

    /// `mode` without setuid, and without setgid when it is group-executable (the VFS's rule
    /// for a write or truncate by a caller without CAP_FSETID; setgid without group execute
    /// marks mandatory locking and stays).
    static func killedSUIDGID(_ mode: UInt32) -> UInt32 {
        var m = mode & ~UInt32(S_ISUID)
        if m & UInt32(S_IXGRP) != 0 { m &= ~UInt32(S_ISGID) }
        return m
    }

    /// Writes `data` at `offset` into the file's blocks: online blocks are overwritten in
    /// place (unwritten ones become written), holes and offline blocks get new blocks. Only
    /// the block counts of `i` change. Returns the number of offline blocks filled.
    @discardableResult
    func writeBlocks(_ ino: UInt64, _ i: inout ScoutFormat.Inode, offset: UInt64, _ data: UnsafeRawBufferPointer) throws(FSError) -> UInt64 {
        let end = offset + UInt64(data.count)
        let first = offset / Self.bs
        let last = (end - 1) / Self.bs
        var filled: UInt64 = 0
        var pos = first
        while pos <= last {
            let exts = try extents(ino, from: pos, through: last)
            if let e = exts.first, e.start <= pos, !e.offline {
                let n = min(e.end, last) - pos + 1
                let pblk = e.blkno + (pos - e.start)
                try writeRun(data, fileOff: offset, lblk: pos, nblocks: n, blkno: pblk, existing: !e.unwritten)
                if e.unwritten {
                    try removeExtents(ino, from: pos, count: n, free: false)
                    try insertExtent(ino, FileExtent(start: pos, len: n, blkno: pblk, flags: 0))
                }
                pos += n
                continue
            }
            // a hole (or offline blocks being filled) up to the next extent
            var holeEnd = last
            if let e = exts.first(where: { $0.start > pos }) { holeEnd = min(holeEnd, e.start - 1) }
            let offline = exts.first.map { $0.start <= pos && $0.offline } ?? false
            if offline, let e = exts.first { holeEnd = min(holeEnd, e.end) }
            let (blkno, n) = try allocData(holeEnd - pos + 1)
            if offline {
                let r = try removeExtents(ino, from: pos, count: n, free: false)
                i.offlineBlocks -= min(i.offlineBlocks, r.offline)
                filled += r.offline
            }
            try writeRun(data, fileOff: offset, lblk: pos, nblocks: n, blkno: blkno, existing: false)
            try insertExtent(ino, FileExtent(start: pos, len: n, blkno: blkno, flags: 0))
            i.onlineBlocks += n
            pos += n
        }
        return filled
    }

    public func read(_ ino: UInt64, offset: UInt64, size: Int, hooks: DataWaitHooks? = nil) throws(FSError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: max(0, size))
        let r = out.withUnsafeMutableBytes { raw in Result { () throws(FSError) -> Int in try read(ino, offset: offset, into: raw, hooks: hooks) } }
        out.removeSubrange(try r.get()...)
        return out
    }

    /// Reads up to `buffer.count` bytes at `offset` into `buffer`; returns the count (short at EOF).
    /// Waits (op `read`) while a block it returns (inside i_size) is offline.
    public func read(
        _ ino: UInt64, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer, hooks: DataWaitHooks? = nil
    ) throws(FSError) -> Int {
        try withDataWait([ino], write: false, hooks: hooks) { () throws -> Int in
            let i = try loadInode(ino)
            if Self.isDir(i.mode) { throw FSError(FSError.EISDIR) }
            guard offset < i.size, buffer.count > 0 else { return 0 }
            let n = Int(min(UInt64(buffer.count), i.size - offset))
            let first = offset / Self.bs
            let last = (offset + UInt64(n) - 1) / Self.bs
            try waitIfOffline(ino, i, first: first, last: last, op: .read)
            memset(buffer.baseAddress!, 0, n)
            for e in try extents(ino, from: first, through: last) where !e.unwritten {
                if e.offline { throw FSError(FSError.EIO, "inode \(ino): data is offline") }
                let from = max(e.start * Self.bs, offset)
                let to = min((e.end + 1) * Self.bs, offset + UInt64(n))
                guard from < to else { continue }
                let dev = e.blkno * Self.bs + (from - e.start * Self.bs)
                try preadAll(UnsafeMutableRawBufferPointer(rebasing: buffer[Int(from - offset)..<Int(to - offset)]), at: dev)
            }
            return n
        }
    }

    /// Changes the size; blocks past the new end (offline ones too) are freed and the tail of
    /// a partial last block is zeroed on the device so a later extension reads zeros.
    /// Callers wait for offline blocks first (`waitIfOffline`, op `changeSize`).
    func truncate(_ ino: UInt64, _ i: inout ScoutFormat.Inode, to size: UInt64) throws(FSError) {
        if size < i.size {
            let keep = (size + Self.bs - 1) / Self.bs
            let removed = try removeExtents(ino, from: keep, count: .max - keep, free: true)
            i.onlineBlocks -= min(i.onlineBlocks, removed.online)
            i.offlineBlocks -= min(i.offlineBlocks, removed.offline)
            // readers of the removed offline blocks retry and find them gone
            if removed.offline > 0 { dataWaiters.wake(ino) }
            if size % Self.bs != 0 { try zeroInBlock(ino, from: size, to: min(i.size, keep * Self.bs)) }
        }
        i.size = size
        i.dataVersion &+= 1
    }

    /// Frees every data block of `ino` (when it is deleted).
    func truncateBlocks(_ ino: UInt64, from: UInt64) throws(FSError) {
        try removeExtents(ino, from: from, count: .max - from, free: true)
    }

    /// Zeroes file bytes `from..<to` (inside one block) when that block is written.
    private func zeroInBlock(_ ino: UInt64, from: UInt64, to: UInt64) throws(FSError) {
        guard from < to else { return }
        let lblk = from / Self.bs
        precondition(to <= (lblk + 1) * Self.bs)
        guard let e = try extents(ino, from: lblk, through: lblk).first, e.start <= lblk, !e.unwritten, !e.offline else { return }
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(to - from), alignment: 8)
        defer { zeros.deallocate() }
        memset(zeros.baseAddress!, 0, zeros.count)
        try pwriteAll(UnsafeRawBufferPointer(zeros), at: (e.blkno + lblk - e.start) * Self.bs + from % Self.bs)
    }

    /// fallocate(2). Punching or zeroing waits (op `write`) while any block inside i_size is
    /// offline, like a write (it changes data_version); growing i_size waits (op
    /// `changeSize`) likewise. Allocating with KEEP_SIZE never waits and leaves offline
    /// blocks offline.
    public func fallocate(_ ino: UInt64, mode: UInt32, offset: UInt64, length: UInt64, hooks: DataWaitHooks? = nil) throws(FSError) {
        guard length > 0 else { throw FSError(FSError.EINVAL) }
        let known = FallocMode.keepSize | FallocMode.punchHole | FallocMode.zeroRange
        if mode & ~known != 0 { throw FSError(FSError.EOPNOTSUPP) }
        if mode & FallocMode.punchHole != 0 && mode & FallocMode.keepSize == 0 { throw FSError(FSError.EOPNOTSUPP) }
        let (end, overflow) = offset.addingReportingOverflow(length)
        if overflow || end > UInt64(Int64.max) { throw FSError(FSError.EFBIG) }
        try withDataWait([ino], write: true, hooks: hooks) { () throws -> Void in
            var i = try loadInode(ino)
            guard Self.isReg(i.mode) else { throw FSError(Self.isDir(i.mode) ? FSError.EISDIR : FSError.ENODEV) }
            try Self.checkRetention(i)
            if mode & FallocMode.punchHole == 0 { try checkDataQuota(i) }
            let changesData = mode & (FallocMode.punchHole | FallocMode.zeroRange) != 0
            let grows = mode & FallocMode.keepSize == 0 && end > i.size
            if (changesData || grows) && i.size > 0 {
                try waitIfOffline(ino, i, first: 0, last: (i.size - 1) / Self.bs, op: changesData ? .write : .changeSize)
            }
            if changesData {
                let firstFull = (offset + Self.bs - 1) / Self.bs
                let endFull = end / Self.bs
                if endFull > firstFull {
                    let removed = try removeExtents(ino, from: firstFull, count: endFull - firstFull, free: true)
                    i.onlineBlocks -= min(i.onlineBlocks, removed.online)
                    i.offlineBlocks -= min(i.offlineBlocks, removed.offline)
                    if removed.offline > 0 { dataWaiters.wake(ino) }
                }
                if offset % Self.bs != 0 { try zeroInBlock(ino, from: offset, to: min(end, firstFull * Self.bs)) }
                if end % Self.bs != 0 && endFull >= firstFull { try zeroInBlock(ino, from: endFull * Self.bs, to: end) }
            }
            if mode & FallocMode.punchHole == 0 {
                // allocate unwritten extents over the holes
                var pos = offset / Self.bs
                let last = (end - 1) / Self.bs
                while pos <= last {
                    let exts = try extents(ino, from: pos, through: last)
                    if let e = exts.first, e.start <= pos {
                        pos = e.end + 1
                        continue
                    }
                    var holeEnd = last
                    if let e = exts.first { holeEnd = min(holeEnd, e.start - 1) }
                    let (blkno, n) = try allocData(holeEnd - pos + 1)
                    try insertExtent(ino, FileExtent(start: pos, len: n, blkno: blkno, flags: DataExtentValue.flagUnwritten))
                    i.onlineBlocks += n
                    pos += n
                }
            }
            i.ctime = Self.now()
            if changesData {
                i.mtime = i.ctime
                i.dataVersion &+= 1
            }
            if grows {
                // the contents changed size: data_version is per inode (as in the original)
                i.size = end
                if !changesData { i.dataVersion &+= 1 }
            }
            storeInode(ino, &i, dataChanged: true)
        }
    }

    /// SEEK_DATA (3) and SEEK_HOLE (4).
    public func seek(_ ino: UInt64, offset: UInt64, whence: Int32) throws(FSError) -> UInt64 {
        try withLocks([ino], write: false) { () throws -> UInt64 in
            let i = try loadInode(ino)
            guard offset < i.size else { throw FSError(FSError.ENXIO) }
            var pos = offset / Self.bs
            let last = (i.size - 1) / Self.bs
            if whence == 3 {
                for e in try extents(ino, from: pos, through: last) where !e.unwritten {
                    return max(offset, e.start * Self.bs)
                }
                throw FSError(FSError.ENXIO)
            }
            for e in try extents(ino, from: pos, through: last) where !e.unwritten {
                if e.start > pos { break }
                pos = e.end + 1
            }
            return min(max(offset, pos * Self.bs), i.size)
        }
    }
}
