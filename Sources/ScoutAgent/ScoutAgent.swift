import ScoutIoctl

#if canImport(Glibc)
import Glibc
#endif

/// An ioctl failed: the command (nil when opening the file failed) and the errno.
public struct AgentError: Error, Sendable, Equatable, CustomStringConvertible {
    public var command: IoctlCommand?
    public var errno: Int32

    public init(command: IoctlCommand?, errno: Int32) {
        self.command = command
        self.errno = errno
    }

    /// `strerror(errno)`.
    public var message: String { String(cString: strerror(errno)) }

    public var description: String { "\(command.map { "\($0)" } ?? "open") failed: \(message) (\(errno))" }
}

/// The change index WALK_INODES walks.
public enum WalkIndex: UInt8, Sendable {
    case metaSeq = 0
    case dataSeq = 1
}

/// A position for the cursor-style ioctls (INO_PATH, GET_REFERRING_ENTRIES): a directory
/// inode and an entry position in it.
public struct DirentCursor: Hashable, Sendable {
    public var dirIno: UInt64
    public var dirPos: UInt64

    public init(dirIno: UInt64 = 0, dirPos: UInt64 = 0) {
        self.dirIno = dirIno
        self.dirPos = dirPos
    }

    /// The position after this one (`dirPos` incremented, carrying into `dirIno`), or nil at
    /// the end of the space.
    public var next: DirentCursor? {
        if dirPos != .max { return DirentCursor(dirIno: dirIno, dirPos: dirPos + 1) }
        if dirIno != .max { return DirentCursor(dirIno: dirIno + 1, dirPos: 0) }
        return nil
    }
}

/// One INO_PATH answer: a path to the inode (relative to the root, without its NUL) and
/// the entry it was found through.
public struct InoPathResult: Hashable, Sendable {
    public var dirIno: UInt64
    public var dirPos: UInt64
    public var path: [UInt8]

    public init(dirIno: UInt64, dirPos: UInt64, path: [UInt8]) {
        self.dirIno = dirIno
        self.dirPos = dirPos
        self.path = path
    }

    /// Where the next INO_PATH call resumes.
    public var cursor: DirentCursor { DirentCursor(dirIno: dirIno, dirPos: dirPos) }
}

/// The private GET_FIEMAP's answer: the header as the filesystem returned it and its
/// `mappedExtents` extents.
public struct FiemapResult: Equatable, Sendable {
    public var header: FiemapHeader
    public var extents: [FiemapExtent]

    public init(header: FiemapHeader, extents: [FiemapExtent]) {
        self.header = header
        self.extents = extents
    }
}

/// The archive-agent ioctls on an open file descriptor of a scoutfs file or directory: each
/// call packs the original's struct in this process's memory (buffers passed as u64
/// pointers), issues `ioctl(2)` and unpacks the answer. Failures throw ``AgentError``.
///
/// The descriptor is borrowed: `ScoutAgent` does not close it unless ``close()`` is called.
public struct ScoutAgent: Sendable {
    public let fd: Int32

    public init(fd: Int32) { self.fd = fd }

    /// Opens `path` with `flags` (O_RDONLY by default; release, stage, punch-offline and
    /// move-blocks need a writable descriptor). Throws the open's errno (with no command).
    public static func open(_ path: String, flags: Int32 = O_RDONLY) throws(AgentError) -> ScoutAgent {
        let fd = Glibc.open(path, flags | O_CLOEXEC)
        guard fd >= 0 else { throw AgentError(command: nil, errno: Glibc.errno) }
        return ScoutAgent(fd: fd)
    }

    public func close() { _ = Glibc.close(fd) }

    // MARK: the ioctl call

    /// Issues `cmd` with `arg` (the struct's bytes, updated in place with what the kernel
    /// wrote back); returns ioctl's non-negative result.
    @discardableResult
    func call(_ cmd: IoctlCommand, _ arg: inout [UInt8]) throws(AgentError) -> Int32 {
        precondition(arg.count >= cmd.size)
        let fd = self.fd
        let r = arg.withUnsafeMutableBytes { ioctl(fd, UInt(cmd.rawValue), $0.baseAddress!) }
        if r < 0 { throw AgentError(command: cmd, errno: Glibc.errno) }
        return r
    }

    /// Issues `cmd` with the struct `make` builds around a zeroed `bytes`-byte buffer's
    /// address; returns ioctl's result and the buffer's contents.
    func callWithBuffer(
        _ cmd: IoctlCommand, bytes: Int, _ make: (UInt64) -> [UInt8]
    ) throws(AgentError) -> (Int32, [UInt8]) {
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes, 1), alignment: 16)
        defer { buf.deallocate() }
        buf.initializeMemory(as: UInt8.self, repeating: 0)
        var arg = make(UInt64(UInt(bitPattern: buf.baseAddress)))
        let r = try call(cmd, &arg)
        return (r, Array(buf[0..<bytes]))
    }

    static func decode<T: IoctlStruct>(_ bytes: [UInt8], count: Int, _ cmd: IoctlCommand) throws(AgentError) -> [T] {
        do {
            return try T.array(bytes, count: count)
        } catch {
            throw AgentError(command: cmd, errno: EIO)
        }
    }

    // MARK: change indexes

    /// WALK_INODES: up to `max` inodes of `index` from `first` to `last` (inclusive). An
    /// empty answer means there are no more. Resume from `result.last!.next`.
    public func walkInodes(
        index: WalkIndex, first: WalkInodesEntry, last: WalkInodesEntry, max: Int = 128
    ) throws(AgentError) -> [WalkInodesEntry] {
        let nr = Swift.max(1, Swift.min(max, Int(UInt32.max) / WalkInodesEntry.size))
        let (n, bytes) = try callWithBuffer(.walkInodes, bytes: nr * WalkInodesEntry.size) { ptr in
            WalkInodesArgs(first: first, last: last, entriesPtr: ptr, nrEntries: UInt32(nr), index: index.rawValue).encoded
        }
        return try Self.decode(bytes, count: Swift.min(Int(n), nr), .walkInodes)
    }

    /// Every inode of `index` from `first` to `last`, fetched `batch` at a time, following
    /// the original's cursor rule (resume from the last returned position + 1).
    public func changes(index: WalkIndex, from first: WalkInodesEntry, to last: WalkInodesEntry, batch: Int = 128) -> WalkInodesSequence {
        WalkInodesSequence(agent: self, index: index, first: first, last: last, batch: batch)
    }

    // MARK: srch

    /// SEARCH_XATTRS: one pass for the `.srch.` xattr `name` from `next` through `last`: up to
    /// `max` inodes that may hold it, and whether the pass reached `last` (the END flag).
    /// Continue from the last inode returned + 1 until `end`.
    public func searchXattrs(name: [UInt8], next: UInt64, last: UInt64 = .max, max: Int = 1_000_000) throws(AgentError) -> (inodes: [UInt64], end: Bool) {
        let nr = Swift.max(1, max)
        let nameRoom = (name.count + 7) & ~7
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: nameRoom + nr * 8, alignment: 16)
        defer { buf.deallocate() }
        buf.initializeMemory(as: UInt8.self, repeating: 0)
        for (i, b) in name.enumerated() { buf[i] = b }
        let base = UInt64(UInt(bitPattern: buf.baseAddress))
        var arg = SearchXattrsArgs(nextIno: next, lastIno: last, namePtr: base, inodesPtr: base + UInt64(nameRoom),
                                   nrInodes: UInt64(nr), nameBytes: UInt16(truncatingIfNeeded: name.count)).encoded
        let n = Int(try call(.searchXattrs, &arg))
        let flags: SearchXattrsArgs
        do { flags = try SearchXattrsArgs(bytes: arg) } catch { throw AgentError(command: .searchXattrs, errno: EIO) }
        var out: [UInt64] = []
        out.reserveCapacity(n)
        for i in 0..<Swift.min(n, nr) {
            out.append(UInt64(littleEndian: buf.loadUnaligned(fromByteOffset: nameRoom + i * 8, as: UInt64.self)))
        }
        return (out, flags.outputFlags & SearchXattrsArgs.oflagEnd != 0)
    }

    // MARK: paths and entries

    /// INO_PATH: one path to `ino` found from `cursor`; throws ENOENT when there is none.
    public func inoPath(ino: UInt64, cursor: DirentCursor = DirentCursor()) throws(AgentError) -> InoPathResult {
        let resultBytes = InoPathResultHeader.size + Int(PATH_MAX)
        let (_, bytes) = try callWithBuffer(.inoPath, bytes: resultBytes) { ptr in
            InoPathArgs(ino: ino, dirIno: cursor.dirIno, dirPos: cursor.dirPos, resultPtr: ptr, resultBytes: UInt16(resultBytes)).encoded
        }
        let h: InoPathResultHeader
        do { h = try InoPathResultHeader(bytes: bytes) } catch { throw AgentError(command: .inoPath, errno: EIO) }
        var path = Array(bytes[InoPathResultHeader.size..<InoPathResultHeader.size + Swift.min(Int(h.pathBytes), Int(PATH_MAX))])
        if let nul = path.firstIndex(of: 0) { path.removeSubrange(nul...) }
        return InoPathResult(dirIno: h.dirIno, dirPos: h.dirPos, path: path)
    }

    /// Every path to `ino` (INO_PATH until ENOENT).
    public func inoPaths(ino: UInt64) throws(AgentError) -> [InoPathResult] {
        var out: [InoPathResult] = []
        var cursor: DirentCursor? = DirentCursor()
        while let c = cursor {
            let r: InoPathResult
            do {
                r = try inoPath(ino: ino, cursor: c)
            } catch where error.errno == ENOENT {
                break
            }
            out.append(r)
            cursor = r.cursor.next
        }
        return out
    }

    /// GET_REFERRING_ENTRIES: the directory entries that refer to `ino` from `cursor`,
    /// into a `bufferBytes` buffer. The last entry of all has ``ReferringEntry/flagLast``.
    public func getReferringEntries(
        ino: UInt64, cursor: DirentCursor = DirentCursor(), bufferBytes: Int = Int(PATH_MAX) * 1024
    ) throws(AgentError) -> [ReferringEntry] {
        let (n, bytes) = try callWithBuffer(.getReferringEntries, bytes: bufferBytes) { ptr in
            GetReferringEntriesArgs(ino: ino, dirIno: cursor.dirIno, dirPos: cursor.dirPos, entriesPtr: ptr, entriesBytes: UInt64(bufferBytes)).encoded
        }
        do {
            return try ReferringEntry.decode(bytes, count: Int(n))
        } catch {
            throw AgentError(command: .getReferringEntries, errno: EIO)
        }
    }

    /// Every entry that refers to `ino`, following the cursor until the last.
    public func allReferringEntries(ino: UInt64, bufferBytes: Int = Int(PATH_MAX) * 1024) throws(AgentError) -> [ReferringEntry] {
        var out: [ReferringEntry] = []
        var cursor: DirentCursor? = DirentCursor()
        while let c = cursor {
            let batch = try getReferringEntries(ino: ino, cursor: c, bufferBytes: bufferBytes)
            guard let last = batch.last else { break }
            for e in batch {
                out.append(e)
                if e.flags & ReferringEntry.flagLast != 0 { return out }
            }
            cursor = DirentCursor(dirIno: last.dirIno, dirPos: last.dirPos).next
        }
        return out
    }

    /// GET_ALLOCATED_INOS: allocated inode numbers from `start`, at most `max` of them
    /// (the original asks for one lock group, 1024).
    public func getAllocatedInos(start: UInt64, max: Int = 1024) throws(AgentError) -> [UInt64] {
        let nr = Swift.max(1, max)
        let (n, bytes) = try callWithBuffer(.getAllocatedInos, bytes: nr * 8) { ptr in
            GetAllocatedInosArgs(startIno: start, inosPtr: ptr, inosBytes: UInt64(nr * 8)).encoded
        }
        var r = IoctlReader(bytes)
        var out: [UInt64] = []
        for _ in 0..<Swift.min(Int(n), nr) {
            do { out.append(try r.u64()) } catch { throw AgentError(command: .getAllocatedInos, errno: EIO) }
        }
        return out
    }

    // MARK: data

    /// RELEASE: makes `length` bytes from `offset` offline (the file's data version must be
    /// `dataVersion`). Needs a writable descriptor.
    public func release(offset: UInt64, length: UInt64, dataVersion: UInt64) throws(AgentError) {
        var arg = ReleaseArgs(offset: offset, length: length, dataVersion: dataVersion).encoded
        try call(.release, &arg)
    }

    /// STAGE: writes `buffer` at `offset` of an offline region; returns the bytes written.
    public func stage(dataVersion: UInt64, offset: UInt64, buffer: UnsafeRawBufferPointer) throws(AgentError) -> Int {
        let len = Int32(clamping: buffer.count)
        var arg = StageArgs(
            dataVersion: dataVersion, bufPtr: UInt64(UInt(bitPattern: buffer.baseAddress)), offset: offset, length: len
        ).encoded
        return Int(try call(.stage, &arg))
    }

    /// STAGE from an array.
    public func stage(dataVersion: UInt64, offset: UInt64, bytes: [UInt8]) throws(AgentError) -> Int {
        let r: Result<Int, AgentError> = bytes.withUnsafeBytes { b in
            Result { () throws(AgentError) -> Int in try stage(dataVersion: dataVersion, offset: offset, buffer: b) }
        }
        return try r.get()
    }

    /// PUNCH_OFFLINE: removes offline extents in the range, leaving a sparse hole.
    public func punchOffline(offset: UInt64, length: UInt64, dataVersion: UInt64) throws(AgentError) {
        var arg = PunchOfflineArgs(offset: offset, length: length, dataVersion: dataVersion, flags: 0).encoded
        try call(.punchOffline, &arg)
    }

    /// MOVE_BLOCKS, issued on this (the destination) descriptor: moves `length` bytes of
    /// extents from `fromFD` at `fromOffset` to `toOffset` here.
    public func moveBlocks(
        from fromFD: Int32, fromOffset: UInt64, length: UInt64, toOffset: UInt64, dataVersion: UInt64 = 0, stage: Bool = false
    ) throws(AgentError) {
        var arg = MoveBlocksArgs(
            fromFD: UInt64(UInt32(bitPattern: fromFD)), fromOffset: fromOffset, length: length, toOffset: toOffset,
            dataVersion: dataVersion, flags: stage ? MoveBlocksArgs.flagStage : 0
        ).encoded
        try call(.moveBlocks, &arg)
    }

    /// DATA_WAITING: up to `max` operations waiting for offline data after `afterIno` and
    /// `afterIblock`. Resume after the last entry returned.
    public func dataWaiting(afterIno: UInt64, afterIblock: UInt64, max: Int = 16) throws(AgentError) -> [DataWaitingEntry] {
        let nr = Swift.max(1, Swift.min(max, Int(UInt16.max)))
        let (n, bytes) = try callWithBuffer(.dataWaiting, bytes: nr * DataWaitingEntry.size) { ptr in
            DataWaitingArgs(flags: 0, afterIno: afterIno, afterIblock: afterIblock, entsPtr: ptr, entsNr: UInt16(nr)).encoded
        }
        return try Self.decode(bytes, count: Swift.min(Int(n), nr), .dataWaiting)
    }

    /// DATA_WAIT_ERR: fails the waiters on `ino` for `op` (a DWO bit) in the range with
    /// `err` (negative errno); returns how many it found.
    public func dataWaitErr(ino: UInt64, dataVersion: UInt64, offset: UInt64, count: UInt64, op: UInt8, err: Int64) throws(AgentError) -> Int {
        var arg = DataWaitErrArgs(ino: ino, dataVersion: dataVersion, offset: offset, count: count, op: UInt64(op), err: err).encoded
        return Int(try call(.dataWaitErr, &arg))
    }

    // MARK: attributes

    /// STAT_MORE.
    public func statMore() throws(AgentError) -> StatMore {
        var arg = StatMore().encoded
        try call(.statMore, &arg)
        do { return try StatMore(bytes: arg) } catch { throw AgentError(command: .statMore, errno: EIO) }
    }

    /// SETATTR_MORE: restores an empty file's data version, size (offline) and times.
    public func setattrMore(_ args: SetattrMoreArgs) throws(AgentError) {
        var arg = args.encoded
        try call(.setattrMore, &arg)
    }

    /// GET_ATTR_X: the attributes in `mask` (the fields not asked for are zero).
    public func getAttrX(mask: UInt64) throws(AgentError) -> InodeAttrX {
        var iax = InodeAttrX()
        iax.mask = mask
        var arg = iax.encoded
        try call(.getAttrX, &arg)
        do { return try InodeAttrX(bytes: arg) } catch { throw AgentError(command: .getAttrX, errno: EIO) }
    }

    /// SET_ATTR_X: sets the attributes in `attrs.mask`, all or nothing.
    public func setAttrX(_ attrs: InodeAttrX) throws(AgentError) {
        var arg = attrs.encoded
        try call(.setAttrX, &arg)
    }

    // MARK: the volume

    /// STATFS_MORE.
    public func statfsMore() throws(AgentError) -> StatfsMore {
        var arg = StatfsMore().encoded
        try call(.statfsMore, &arg)
        do { return try StatfsMore(bytes: arg) } catch { throw AgentError(command: .statfsMore, errno: EIO) }
    }

    /// RESIZE_DEVICES: asks the server to grow the volume to the devices' new totals.
    public func resizeDevices(_ rd: ResizeDevices) throws(AgentError) {
        var arg = rd.encoded
        try call(.resizeDevices, &arg)
    }

    /// ALLOC_DETAIL: every allocator's free blocks. Starts with room for `initialCount`
    /// entries and grows by a quarter on EOVERFLOW, as the original's df does.
    public func allocDetail(initialCount: Int = 4096 / AllocDetailEntry.size) throws(AgentError) -> [AllocDetailEntry] {
        var nr = Swift.max(1, initialCount)
        while true {
            do {
                let (n, bytes) = try callWithBuffer(.allocDetail, bytes: nr * AllocDetailEntry.size) { ptr in
                    AllocDetailArgs(entriesPtr: ptr, entriesNr: UInt64(nr)).encoded
                }
                return try Self.decode(bytes, count: Swift.min(Int(n), nr), .allocDetail)
            } catch where error.errno == EOVERFLOW && error.command == .allocDetail {
                nr += Swift.max(1, nr >> 2)
            }
        }
    }

    /// The private GET_FIEMAP: up to `maxExtents` extents of the file from `start`.
    public func getFiemap(start: UInt64, length: UInt64 = .max, flags: UInt32 = 0, maxExtents: Int) throws(AgentError) -> FiemapResult {
        let nr = Swift.max(0, maxExtents)
        let total = FiemapHeader.size + nr * FiemapExtent.size
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: total, alignment: 16)
        defer { buf.deallocate() }
        buf.initializeMemory(as: UInt8.self, repeating: 0)
        let header = FiemapHeader(start: start, length: length, flags: flags, mappedExtents: 0, extentCount: UInt32(nr)).encoded
        buf.copyBytes(from: header)
        let fd = self.fd
        let r = ioctl(fd, UInt(IoctlCommand.getFiemap.rawValue), buf.baseAddress!)
        if r < 0 { throw AgentError(command: .getFiemap, errno: Glibc.errno) }
        let bytes = Array(buf)
        do {
            let h = try FiemapHeader(bytes: Array(bytes[0..<FiemapHeader.size]))
            let count = Swift.min(Int(h.mappedExtents), nr)
            let extents = try FiemapExtent.array(Array(bytes[FiemapHeader.size...]), count: count)
            return FiemapResult(header: h, extents: extents)
        } catch {
            throw AgentError(command: .getFiemap, errno: EIO)
        }
    }
}

/// Every inode in a range of a change index, fetched in batches (a synchronous sequence: the
/// ioctls block). Iteration stops at the end of the range or at the first error, which
/// ``WalkInodesSequence/Iterator/error`` then holds; ``WalkInodesSequence/Iterator/position``
/// is where a later walk should resume (save it to walk "all changes since").
public struct WalkInodesSequence: Sequence, Sendable {
    public let agent: ScoutAgent
    public let index: WalkIndex
    public let first: WalkInodesEntry
    public let last: WalkInodesEntry
    public let batch: Int

    public struct Iterator: IteratorProtocol {
        let agent: ScoutAgent
        let index: WalkIndex
        let last: WalkInodesEntry
        let batch: Int
        var buffered: [WalkInodesEntry] = []
        var at = 0
        var done = false
        /// The next position to ask for (after the last inode returned): where a later walk
        /// resumes. Nil only when the last returned position was the largest possible.
        public private(set) var position: WalkInodesEntry?
        /// The error that ended the iteration, if any.
        public private(set) var error: AgentError?

        public mutating func next() -> WalkInodesEntry? {
            if at == buffered.count {
                guard !done, let p = position, error == nil, p <= last else { return nil }
                do {
                    buffered = try agent.walkInodes(index: index, first: p, last: last, max: batch)
                } catch {
                    self.error = error
                    return nil
                }
                at = 0
                guard let l = buffered.last else {
                    done = true
                    return nil
                }
                position = l.next
            }
            defer { at += 1 }
            return buffered[at]
        }
    }

    public func makeIterator() -> Iterator {
        Iterator(agent: agent, index: index, last: last, batch: batch, position: first)
    }
}
