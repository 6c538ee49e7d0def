import Glibc
import ScoutFUSE
import ScoutFormat
import ScoutIoctl

/// The archive ioctls: release, stage, punch-offline and move-blocks change a file's data;
/// setattr-more and set-attr-x restore an inode's attributes; data-waiting and data-wait-err
/// see and fail this mount's waiters on offline data. The checks of the original's ioctl.c
/// (capabilities, the handle's open mode, the caller's write permission) are made here, the
/// file's own rules (alignment, type, data_version) by the volume, which also drops the
/// kernel's attributes of the inode at once and its cached pages soon after (on a thread of
/// their own: a reader waiting for offline blocks of the inode holds some of its pages locked
/// until the next stage, which the agent may only send once this ioctl has returned).
extension ScoutFileSystem {
    /// The archive ioctls (RELEASE, STAGE, ...); nil for a command this mount does not serve.
    func archiveIoctl(_ cmd: IoctlCommand, _ c: IoctlCall) throws -> IoctlReply? {
        switch cmd {
        case .release: return try release(c)
        case .stage: return try stage(c)
        case .dataWaiting: return try dataWaiting(c)
        case .setattrMore: return try setattrMore(c)
        case .dataWaitErr: return try dataWaitErr(c)
        case .moveBlocks: return try moveBlocks(c)
        case .setAttrX: return try setAttrX(c)
        case .punchOffline: return try punchOffline(c)
        default: return nil
        }
    }

    private func release(_ c: IoctlCall) throws -> IoctlReply {
        let a = try c.args(ReleaseArgs.self)
        if a.length == 0 { return IoctlReply(result: 0) }
        guard a.offset.addingReportingOverflow(a.length - 1).overflow == false, a.offset & 4095 == 0, a.length & 4095 == 0 else {
            throw FUSEError(EINVAL)
        }
        guard c.writable else { throw FUSEError(EINVAL) }
        try run { () throws(FSError) in try volume.release(c.ino, offset: a.offset, length: a.length, dataVersion: a.dataVersion) }
        return IoctlReply(result: 0)
    }

    /// The most STAGE reads from the caller at a time.
    static let stageChunk = 8 << 20

    private func stage(_ c: IoctlCall) throws -> IoctlReply {
        let a = try c.args(StageArgs.self)
        guard a.length >= 0, a.offset & 4095 == 0, a.offset.addingReportingOverflow(UInt64(a.length)).overflow == false else {
            throw FUSEError(EINVAL)
        }
        if a.length == 0 { return IoctlReply(result: 0) }
        guard let flags = c.openFlags, c.writable, flags & (O_APPEND | 0o40000 | O_DSYNC) == 0 else { throw FUSEError(EINVAL) }
        var done = 0
        let total = Int(a.length)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: min(total, Self.stageChunk), alignment: 4096)
        defer { buf.deallocate() }
        while done < total {
            let n = min(total - done, Self.stageChunk)
            let chunk = UnsafeMutableRawBufferPointer(rebasing: buf[0..<n])
            try c.memory.read(a.bufPtr + UInt64(done), into: chunk)
            let wrote = try run { () throws(FSError) in
                try volume.stage(c.ino, dataVersion: a.dataVersion, offset: a.offset + UInt64(done), UnsafeRawBufferPointer(chunk))
            }
            done += wrote
            if wrote < n { break }
        }
        return IoctlReply(result: Int32(done))
    }

    private func dataWaiting(_ c: IoctlCall) throws -> IoctlReply {
        let a = try c.args(DataWaitingArgs.self)
        guard a.flags == 0 else { throw FUSEError(EINVAL) }
        guard a.entsNr > 0 else { return IoctlReply(result: 0) }
        let found = volume.dataWaiting(afterIno: a.afterIno, afterIblock: a.afterIblock, max: Int(a.entsNr))
        let ents = found.map { DataWaitingEntry(ino: $0.ino, iblock: $0.iblock, op: $0.op.rawValue) }
        try c.memory.write(a.entsPtr, ents.encoded)
        return IoctlReply(result: Int32(ents.count))
    }

    private func dataWaitErr(_ c: IoctlCall) throws -> IoctlReply {
        try c.require(.sysAdmin)
        let a = try c.args(DataWaitErrArgs.self)
        if a.count == 0 { return IoctlReply(result: 0) }
        // the op must be known bits and err a negative errno (-4095 ... -1)
        guard a.op & ~UInt64(DataWaitOp.allBits) == 0, a.err < 0, a.err >= -4095 else { throw FUSEError(EINVAL) }
        guard a.offset.addingReportingOverflow(a.count - 1).overflow == false else { throw FUSEError(EINVAL) }
        let i: FileAttr
        do {
            i = try volume.getattr(a.ino)
        } catch {
            throw FUSEError(ESTALE)
        }
        guard i.mode & UInt32(S_IFMT) == UInt32(S_IFREG) else { throw FUSEError(EINVAL) }
        let n = volume.dataWaitErr(ino: a.ino, offset: a.offset, count: a.count, ops: UInt8(a.op), err: Int32(-a.err))
        return IoctlReply(result: Int32(n))
    }

    private func setattrMore(_ c: IoctlCall) throws -> IoctlReply {
        guard c.writable else { throw FUSEError(EBADF) }
        let a = try c.args(SetattrMoreArgs.self)
        guard a.flags & ~SetattrMoreArgs.flagOffline == 0 else { throw FUSEError(EINVAL) }
        try c.require(.sysAdmin)
        var x = AttrX()
        x.mask = [.ctime, .crtime, .size]
        if a.dataVersion != 0 { x.mask.insert(.dataVersion) }
        x.dataVersion = a.dataVersion
        x.ctime = Timespec(sec: a.ctimeSec, nsec: a.ctimeNsec)
        x.crtime = Timespec(sec: a.crtimeSec, nsec: a.crtimeNsec)
        x.size = a.size
        if a.flags & SetattrMoreArgs.flagOffline != 0 { x.flags |= InodeAttrX.flagSizeOffline }
        try run { () throws(FSError) in try volume.setAttrX(c.ino, x) }
        return IoctlReply(result: 0)
    }

    private func setAttrX(_ c: IoctlCall) throws -> IoctlReply {
        let a = try c.args(InodeAttrX.self)
        // root first, as the original: a caller without CAP_SYS_ADMIN gets EPERM for any mask
        try c.require(.sysAdmin)
        guard a.mask == 0 || (a.mask & InodeAttrX.maskUnknown == 0 && a.flags & InodeAttrX.flagsUnknown == 0) else { throw FUSEError(EINVAL) }
        var x = AttrX()
        x.mask = AttrX.Mask(rawValue: a.mask)
        x.flags = a.flags
        x.dataVersion = a.dataVersion
        x.ctime = Timespec(sec: a.ctimeSec, nsec: a.ctimeNsec)
        x.crtime = Timespec(sec: a.crtimeSec, nsec: a.crtimeNsec)
        x.size = a.size
        x.bits = a.bits
        x.projectID = a.projectID
        try run { () throws(FSError) in try volume.setAttrX(c.ino, x) }
        return IoctlReply(result: 0)
    }

    private func punchOffline(_ c: IoctlCall) throws -> IoctlReply {
        let a = try c.args(PunchOfflineArgs.self)
        if a.length == 0 { return IoctlReply(result: 0) }
        guard a.offset.addingReportingOverflow(a.length - 1).overflow == false, a.offset & 4095 == 0, a.length & 4095 == 0 else {
            throw FUSEError(EOVERFLOW)
        }
        guard a.flags == 0 else { throw FUSEError(EINVAL) }
        guard c.writable else { throw FUSEError(EINVAL) }
        try requireWritePermission(c.ino, c.context)
        try run { () throws(FSError) in
            try volume.punchOffline(c.ino, offset: a.offset, length: a.length, dataVersion: a.dataVersion, flags: a.flags)
        }
        return IoctlReply(result: 0)
    }

    private func moveBlocks(_ c: IoctlCall) throws -> IoctlReply {
        let a = try c.args(MoveBlocksArgs.self)
        if a.length == 0 { return IoctlReply(result: 0) }
        guard !a.fromOffset.addingReportingOverflow(a.length - 1).overflow, !a.toOffset.addingReportingOverflow(a.length - 1).overflow else {
            throw FUSEError(EOVERFLOW)
        }
        guard a.fromFD <= UInt64(Int32.max) else { throw FUSEError(EBADF) }
        let from = try c.memory.descriptor(Int32(a.fromFD))
        guard c.memory.mountDevice(from.mountID) == deviceNumber else { throw FUSEError(EXDEV) }
        if from.ino == c.ino { throw FUSEError(EINVAL) }
        guard a.flags & ~MoveBlocksArgs.flagStage == 0 else { throw FUSEError(EINVAL) }
        try requireWritePermission(from.ino, c.context)
        try requireWritePermission(c.ino, c.context)
        try run { () throws(FSError) in
            try volume.moveBlocks(
                from: from.ino, fromOffset: a.fromOffset, length: a.length, to: c.ino, toOffset: a.toOffset,
                dataVersion: a.dataVersion, stage: a.flags & MoveBlocksArgs.flagStage != 0)
        }
        return IoctlReply(result: 0)
    }

    /// The caller may write `ino` by its mode bits (root may always), as the original's
    /// `inode_permission(MAY_WRITE)`.
    private func requireWritePermission(_ ino: UInt64, _ ctx: RequestContext) throws {
        if ctx.uid == 0 { return }
        let a = try run { () throws(FSError) in try volume.getattr(ino) }
        let mode = a.mode
        let ok: Bool
        if ctx.uid == a.uid {
            ok = mode & 0o200 != 0
        } else if ctx.gid == a.gid {
            ok = mode & 0o020 != 0
        } else {
            ok = mode & 0o002 != 0
        }
        if !ok { throw FUSEError(EACCES) }
    }
}
