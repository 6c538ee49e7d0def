import Glibc
import Logging
import ScoutFUSE
import ScoutFormat
import ScoutIoctl

/// The original's ioctls (magic 0xE8, `ioctl.h` byte for byte) served over FUSE_IOCTL.
///
/// Design note. FUSE hands a filesystem only restricted ioctls: the kernel copies the
/// `_IOC_SIZE` bytes the command number encodes in (`_IOW`) and back out (`_IOR`), and no more.
/// The original's structs carry u64 pointers to buffers, so those buffers are read and written
/// here in the caller's memory (``CallerMemory``, `process_vm_readv`/`writev` on the request's
/// pid), as are results the original writes back into a `_IOW` struct (GET_ATTR_X). An
/// unmapped pointer is EFAULT for the caller, never a fault here. Permission checks are the
/// original's: capabilities from the caller's effective set, the open mode from the handle the
/// kernel passes (``OpenHandles``). Every struct is decoded and checked before anything
/// changes, and results are copied out only after the operation released its cluster locks.
extension ScoutFileSystem {
    public func ioctl(
        _ context: RequestContext, nodeID: UInt64, fileHandle: UInt64, command: UInt32, argument: UInt64,
        input: RawSpan, outputSize: Int, flags: UInt32
    ) throws -> IoctlReply {
        let cmd = IoctlCommand(rawValue: command)
        guard cmd.type == IoctlCommand.magic else { throw FUSEError(ENOTTY) }
        let inBytes = input.withUnsafeBytes { Array($0) }
        let call = IoctlCall(
            context: context, ino: nodeID, openFlags: handles.flags(fileHandle), argument: argument, input: inBytes,
            memory: CallerMemory(pid: context.pid, servedDevice: deviceNumber))
        do {
            return try serve(cmd, call)
        } catch let e as IoctlDecodeError {
            logger.debug("\(cmd): short argument (\(e.got) of \(e.needed) bytes)")
            throw FUSEError(EINVAL)
        }
    }

    /// One ioctl request: who asked, on what, with which bytes.
    struct IoctlCall {
        let context: RequestContext
        let ino: UInt64
        /// The flags the handle was opened with; nil for a directory handle (read-only).
        let openFlags: Int32?
        let argument: UInt64
        let input: [UInt8]
        let memory: CallerMemory

        var readable: Bool { (openFlags ?? O_RDONLY) & O_ACCMODE != O_WRONLY }
        var writable: Bool { guard let f = openFlags else { return false }; return f & O_ACCMODE != O_RDONLY }

        func require(_ cap: Capabilities) throws(FUSEError) {
            if !memory.effectiveCapabilities().contains(cap) { throw FUSEError(EPERM) }
        }

        func args<T: IoctlStruct>(_: T.Type) throws -> T { try T(bytes: input) }
    }

    private func serve(_ cmd: IoctlCommand, _ c: IoctlCall) throws -> IoctlReply {
        switch cmd {
        case .walkInodes: return try walkInodes(c)
        case .inoPath: return try inoPath(c)
        case .statMore: return try statMore(c)
        case .statfsMore: return try statfsMore(c)
        case .allocDetail: return try allocDetail(c)
        case .getAllocatedInos: return try getAllocatedInos(c)
        case .getReferringEntries: return try getReferringEntries(c)
        case .getAttrX: return try getAttrX(c)
        case .getFiemap: return try getFiemap(c)
        case .resizeDevices: return try resizeDevices(c)
        case .searchXattrs: return try searchXattrs(c)
        default:
            if let r = try archiveIoctl(cmd, c) { return r }
            if let r = try tagIoctl(cmd, c) { return r }
            if let r = try quotaIoctl(cmd, c) { return r }
            throw FUSEError(ENOTTY)
        }
    }

    // MARK: queries

    private func walkInodes(_ c: IoctlCall) throws -> IoctlReply {
        let a = try c.args(WalkInodesArgs.self)
        let type: UInt8
        switch a.index {
        case WalkInodesArgs.metaSeq: type = KeyType.inodeIndexMetaSeq
        case WalkInodesArgs.dataSeq: type = KeyType.inodeIndexDataSeq
        default: throw FUSEError(EINVAL)
        }
        let nr = Int(min(a.nrEntries, UInt32(Int32.max), UInt32(CallerMemory.maxTransfer / WalkInodesEntry.size)))
        guard nr > 0 else { return IoctlReply(result: 0) }
        let found = try run { () throws(FSError) in
            try volume.walkInodes(type: type, first: (a.first.major, a.first.ino), last: (a.last.major, a.last.ino), max: nr)
        }
        // packed in place (millions of entries): major, ino, minor 0 and padding
        let bytes = [UInt8](unsafeUninitializedCapacity: found.count * WalkInodesEntry.size) { buf, n in
            let raw = UnsafeMutableRawBufferPointer(buf)
            for (i, e) in found.enumerated() {
                let off = i * WalkInodesEntry.size
                raw.storeBytes(of: e.major.littleEndian, toByteOffset: off, as: UInt64.self)
                raw.storeBytes(of: e.ino.littleEndian, toByteOffset: off + 8, as: UInt64.self)
                raw.storeBytes(of: UInt64(0), toByteOffset: off + 16, as: UInt64.self)
            }
            n = found.count * WalkInodesEntry.size
        }
        try c.memory.write(a.entriesPtr, bytes)
        return IoctlReply(result: Int32(found.count))
    }

    /// SEARCH_XATTRS: one pass of at most 10⁶ srch entries; the inodes go to the caller's
    /// array and `output_flags` (END when the pass reached `last_ino` and every inode found
    /// fit) is written in place.
    private func searchXattrs(_ c: IoctlCall) throws -> IoctlReply {
        guard c.readable else { throw FUSEError(EBADF) }
        try c.require(.sysAdmin)
        let a = try c.args(SearchXattrsArgs.self)
        guard a.nameBytes <= 255 else { throw FUSEError(EINVAL) }
        if a.nrInodes == 0 || a.lastIno < a.nextIno { return IoctlReply(result: 0) }
        let nameBuf = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(a.nameBytes), alignment: 8)
        defer { nameBuf.deallocate() }
        try c.memory.read(a.namePtr, into: nameBuf)
        let name = Array(nameBuf)
        guard Volume.isSrchName(name) else { throw FUSEError(EINVAL) }
        let r = try run { () throws(FSError) in try volume.searchXattrs(name: name, fromIno: a.nextIno, lastIno: a.lastIno) }
        // the result is an int: no more than that many inodes, whatever the array holds
        let room = Int(min(a.nrInodes, UInt64(Int32.max), UInt64(CallerMemory.maxTransfer / 8)))
        let inos = r.inodes.prefix(room)
        var w = IoctlWriter(capacity: inos.count * 8)
        for i in inos { w.u64(i) }
        try c.memory.write(a.inodesPtr, w.bytes)
        let flags: UInt64 = r.done && inos.count == r.inodes.count ? SearchXattrsArgs.oflagEnd : 0
        var fw = IoctlWriter(capacity: 8)
        fw.u64(flags)
        try c.memory.write(c.argument + UInt64(SearchXattrsArgs.outputFlagsOffset), fw.bytes)
        return IoctlReply(result: Int32(inos.count))
    }

    private func inoPath(_ c: IoctlCall) throws -> IoctlReply {
        try c.require(.dacReadSearch)
        let a = try c.args(InoPathArgs.self)
        let r = try run { () throws(FSError) in try volume.inoPath(a.ino, dirIno: a.dirIno, dirPos: a.dirPos) }
        // the path and its NUL must fit after the result header
        guard InoPathResultHeader.size + r.path.count + 1 <= Int(a.resultBytes) else { throw FUSEError(ENAMETOOLONG) }
        let header = InoPathResultHeader(dirIno: r.dirIno, dirPos: r.dirPos, pathBytes: UInt16(r.path.count + 1))
        try c.memory.write(a.resultPtr, header.encoded + r.path + [0])
        return IoctlReply(result: 0)
    }

    private func statMore(_ c: IoctlCall) throws -> IoctlReply {
        let x = try run { () throws(FSError) in try volume.getAttrX(c.ino) }
        var s = StatMore()
        s.metaSeq = x.metaSeq
        s.dataSeq = x.dataSeq
        s.dataVersion = x.dataVersion
        s.onlineBlocks = x.onlineBlocks
        s.offlineBlocks = x.offlineBlocks
        s.crtimeSec = x.crtime.sec
        s.crtimeNsec = x.crtime.nsec
        return IoctlReply(result: 0, output: s.encoded)
    }

    private func statfsMore(_ c: IoctlCall) throws -> IoctlReply {
        var s = StatfsMore()
        try run { () throws(FSError) in
            let t = try volume.totals()
            s.fsid = volume.fsid
            s.rid = rid
            s.committedSeq = try volume.committedSeq()
            s.totalMetaBlocks = t.totalMetaBlocks
            s.totalDataBlocks = t.totalDataBlocks
            s.reservedMetaBlocks = try volume.reservedMetaBlocks()
        }
        return IoctlReply(result: 0, output: s.encoded)
    }

    /// The original's checks (a readable handle, CAP_SYS_ADMIN), then the server decides.
    private func resizeDevices(_ c: IoctlCall) throws -> IoctlReply {
        guard c.readable else { throw FUSEError(EBADF) }
        try c.require(.sysAdmin)
        let rd = try c.args(ResizeDevices.self)
        try run { () throws(FSError) in
            try volume.resizeDevices(metaBlocks: rd.newTotalMetaBlocks, dataBlocks: rd.newTotalDataBlocks)
        }
        return IoctlReply(result: 0, output: [])
    }

    private func allocDetail(_ c: IoctlCall) throws -> IoctlReply {
        let a = try c.args(AllocDetailArgs.self)
        let all = try run { () throws(FSError) in try volume.allocDetail() }
        // the original copies entries until the caller's array is full, then fails
        let fit = Int(min(a.entriesNr, UInt64(all.count)))
        let entries = all.prefix(fit).map { AllocDetailEntry(id: $0.id, blocks: $0.blocks, meta: $0.meta, avail: $0.avail) }
        try c.memory.write(a.entriesPtr, Array(entries).encoded)
        if fit < all.count { throw FUSEError(EOVERFLOW) }
        return IoctlReply(result: Int32(fit))
    }

    private func getAllocatedInos(_ c: IoctlCall) throws -> IoctlReply {
        guard c.readable else { throw FUSEError(EBADF) }
        try c.require(.sysAdmin)
        let a = try c.args(GetAllocatedInosArgs.self)
        guard a.inosPtr & 7 == 0, a.inosBytes >= 8 else { throw FUSEError(EINVAL) }
        let max = Int(min(a.inosBytes / 8, Format.lockInodeGroupNr))
        let inos = try run { () throws(FSError) in try volume.allocatedInos(start: a.startIno, max: max) }
        var w = IoctlWriter(capacity: inos.count * 8)
        for i in inos { w.u64(i) }
        try c.memory.write(a.inosPtr, w.bytes)
        return IoctlReply(result: Int32(inos.count))
    }

    private func getReferringEntries(_ c: IoctlCall) throws -> IoctlReply {
        try c.require(.dacReadSearch)
        let a = try c.args(GetReferringEntriesArgs.self)
        let room = Int(min(a.entriesBytes, UInt64(CallerMemory.maxTransfer)))
        // each record takes at least 32 bytes: one more than fits tells whether the list goes on
        let (found, more) = try run { () throws(FSError) in
            try volume.referringEntries(a.ino, dirIno: a.dirIno, dirPos: a.dirPos, max: room / 32 + 1)
        }
        var w = IoctlWriter()
        var nr = 0
        for (n, d) in found.enumerated() {
            let last = n == found.count - 1 && !more
            let e = ReferringEntry(dirIno: d.dirIno, dirPos: d.dirPos, ino: d.ino, flags: last ? ReferringEntry.flagLast : 0, dType: d.dType, name: d.name)
            if w.bytes.count + e.entryBytes > room {
                if nr == 0 { throw FUSEError(EINVAL) }
                break
            }
            e.encode(&w)
            nr += 1
        }
        try c.memory.write(a.entriesPtr, w.bytes)
        return IoctlReply(result: Int32(nr))
    }

    private func getAttrX(_ c: IoctlCall) throws -> IoctlReply {
        let a = try c.args(InodeAttrX.self)
        guard a.mask & InodeAttrX.maskUnknown == 0, a.flags & InodeAttrX.flagsUnknown == 0 else { throw FUSEError(EINVAL) }
        let v = try run { () throws(FSError) in try volume.getAttrX(c.ino) }
        // only the fields asked for (the rest stay zero), as the original fills them
        let m = AttrX.Mask(rawValue: a.mask)
        var x = InodeAttrX()
        x.mask = a.mask
        x.flags = a.flags
        if m.contains(.metaSeq) { x.metaSeq = v.metaSeq }
        if m.contains(.dataSeq) { x.dataSeq = v.dataSeq }
        if m.contains(.dataVersion) { x.dataVersion = v.dataVersion }
        if m.contains(.onlineBlocks) { x.onlineBlocks = v.onlineBlocks }
        if m.contains(.offlineBlocks) { x.offlineBlocks = v.offlineBlocks }
        if m.contains(.ctime) {
            x.ctimeSec = v.ctime.sec
            x.ctimeNsec = v.ctime.nsec
        }
        if m.contains(.crtime) {
            x.crtimeSec = v.crtime.sec
            x.crtimeNsec = v.crtime.nsec
        }
        if m.contains(.size) { x.size = v.size }
        if m.contains(.retention) { x.bits = v.bits }
        if m.contains(.projectID) { x.projectID = v.projectID }
        // _IOW: the kernel copies nothing back, so the struct is written in place
        try c.memory.write(c.argument, Array(x.encoded.prefix(InodeAttrX.filledBytes(mask: a.mask))))
        return IoctlReply(result: 0)
    }

    private func getFiemap(_ c: IoctlCall) throws -> IoctlReply {
        var h = try c.args(FiemapHeader.self)
        let room = Int(min(h.extentCount, UInt32(CallerMemory.maxTransfer / FiemapExtent.size)))
        let found = try run { () throws(FSError) in try volume.fiemap(c.ino, start: h.start, length: h.length, max: max(room, 1)) }
        if room == 0 {
            // a count of 0 asks only how many extents there are (the kernel's fiemap rule)
            h.mappedExtents = UInt32(found.count)
            return IoctlReply(result: 0, output: h.encoded)
        }
        let exts = found.map {
            FiemapExtent(
                logical: $0.logical, physical: $0.physical, length: $0.length,
                flags: ($0.offline ? FiemapExtent.flagUnknown : 0) | ($0.unwritten ? FiemapExtent.flagUnwritten : 0)
                    | ($0.last ? FiemapExtent.flagLast : 0))
        }
        try c.memory.write(c.argument + UInt64(FiemapHeader.size), exts.encoded)
        h.mappedExtents = UInt32(exts.count)
        return IoctlReply(result: 0, output: h.encoded)
    }
}
