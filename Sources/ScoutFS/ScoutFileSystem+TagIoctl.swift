import Glibc
import ScoutFUSE
import ScoutIoctl

/// The tagged-xattr ioctls: LISTXATTR_HIDDEN, READ_XATTR_TOTALS, READ_XATTR_INDEX and
/// INJECT_TOTL_DELTA, with the original's checks and results.
extension ScoutFileSystem {
    func tagIoctl(_ cmd: IoctlCommand, _ c: IoctlCall) throws -> IoctlReply? {
        switch cmd {
        case .listxattrHidden: return try listxattrHidden(c)
        case .readXattrTotals: return try readXattrTotals(c)
        case .readXattrIndex: return try readXattrIndex(c)
        case .injectTotlDelta: return try injectTotlDelta(c)
        default: return nil
        }
    }

    private func listxattrHidden(_ c: IoctlCall) throws -> IoctlReply {
        // inode_permission(MAY_READ): the handle's open mode stands in for it
        var a = try c.args(ListxattrHiddenArgs.self)
        var total = 0
        while a.bufBytes > 0 {
            // a page at a time, as the original copies them
            let room = min(Int(a.bufBytes), 4096)
            let r = try run { () throws(FSError) in try volume.listHiddenXattrs(c.ino, hash: a.hashPos, id: a.idPos, bytes: room) }
            a.hashPos = r.hash
            a.idPos = r.id
            if r.names.isEmpty { break }
            var bytes: [UInt8] = []
            for n in r.names { bytes += n + [0] }
            try c.memory.write(a.bufPtr, bytes)
            a.bufPtr += UInt64(bytes.count)
            a.bufBytes -= UInt32(bytes.count)
            total += bytes.count
        }
        return IoctlReply(result: Int32(total), output: a.encoded)
    }

    private func readXattrTotals(_ c: IoctlCall) throws -> IoctlReply {
        guard c.readable else { throw FUSEError(EBADF) }
        try c.require(.sysAdmin)
        let a = try c.args(ReadXattrTotalsArgs.self)
        guard a.totalsPtr & 7 == 0, a.totalsBytes >= UInt64(XattrTotal.size) else { throw FUSEError(EINVAL) }
        let nr = Int(min(a.totalsBytes, UInt64(Int32.max), UInt64(CallerMemory.maxTransfer)) / UInt64(XattrTotal.size))
        let found = try run { () throws(FSError) in
            try volume.readXattrTotals(from: (a.posName[0], a.posName[1], a.posName[2]), limit: nr)
        }
        var w = IoctlWriter(capacity: found.count * XattrTotal.size)
        for t in found { XattrTotal(name: [t.name.0, t.name.1, t.name.2], total: t.total, count: t.count).encode(&w) }
        try c.memory.write(a.totalsPtr, w.bytes)
        return IoctlReply(result: Int32(found.count))
    }

    private func readXattrIndex(_ c: IoctlCall) throws -> IoctlReply {
        try c.require(.sysAdmin)
        let a = try c.callerArgs(ReadXattrIndexArgs.self)
        let nr = Int(min(a.entriesNr, UInt64(Int32.max), UInt64(CallerMemory.maxTransfer / XattrIndexEntry.size)))
        let f = (a.first.major, a.first.minor, a.first.ino)
        let l = (a.last.major, a.last.minor, a.last.ino)
        if f > l { throw FUSEError(EINVAL) }
        guard nr > 0 else { return IoctlReply(result: 0, output: a.encoded) }
        let found = try run { () throws(FSError) in try volume.readXattrIndex(first: f, last: l, limit: nr) }
        var w = IoctlWriter(capacity: found.count * XattrIndexEntry.size)
        for e in found { XattrIndexEntry(major: e.major, minor: e.minor, ino: e.ino).encode(&w) }
        try c.memory.write(a.entriesPtr, w.bytes)
        return IoctlReply(result: Int32(found.count), output: a.encoded)
    }

    private func injectTotlDelta(_ c: IoctlCall) throws -> IoctlReply {
        try c.require(.sysAdmin)
        let a = try c.args(InjectTotlDeltaArgs.self)
        try run { () throws(FSError) in try volume.injectTotlDelta((a.name[0], a.name[1], a.name[2]), total: a.total, count: a.count) }
        return IoctlReply(result: 0)
    }
}
