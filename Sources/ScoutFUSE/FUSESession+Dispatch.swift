import CFuseKernel
import Glibc
import Logging
import Synchronization

// Opcode dispatch: parse a request, call the filesystem, reply exactly once.

private let inHeaderSize = MemoryLayout<fuse_in_header>.size

// FATTR_* (setattr valid bits)
private let fattrMode: UInt32 = 1 << 0
private let fattrUID: UInt32 = 1 << 1
private let fattrGID: UInt32 = 1 << 2
private let fattrSize: UInt32 = 1 << 3
private let fattrAtime: UInt32 = 1 << 4
private let fattrMtime: UInt32 = 1 << 5
private let fattrFH: UInt32 = 1 << 6
private let fattrAtimeNow: UInt32 = 1 << 7
private let fattrMtimeNow: UInt32 = 1 << 8
private let fattrLockOwner: UInt32 = 1 << 9
private let fattrCtime: UInt32 = 1 << 10
private let fattrKillSUIDGID: UInt32 = 1 << 11

extension FUSESession {
    /// Serves one request read from the device.
    func handle(_ request: UnsafeRawBufferPointer, reply: ReplyWriter) {
        guard request.count >= inHeaderSize else {
            self.core.logger.warning("short FUSE request", metadata: ["bytes": "\(request.count)"])
            return
        }
        let h = request.loadUnaligned(as: fuse_in_header.self)
        let op = FUSEOpcode(rawValue: h.opcode)
        let extLength = Int(h.total_extlen) * 8
        guard Int(h.len) == request.count, Int(h.len) >= inHeaderSize + extLength else {
            if op != .forget && op != .batchForget && op != .interrupt { reply.error(h.unique, EIO) }
            return
        }
        let args = UnsafeRawBufferPointer(rebasing: request[inHeaderSize..<(request.count - extLength)])

        // Requests without a reply, or outside the interrupt table.
        switch op {
        case .forget:
            if args.count >= MemoryLayout<fuse_forget_in>.size {
                let f = args.loadUnaligned(as: fuse_forget_in.self)
                self.filesystem.forget(nodeID: h.nodeid, lookups: f.nlookup)
            }
            return
        case .batchForget:
            self.batchForget(args)
            return
        case .interrupt:
            if args.count >= MemoryLayout<fuse_interrupt_in>.size {
                let target = args.loadUnaligned(as: fuse_interrupt_in.self).unique
                self.core.interrupts.interrupt(target, by: h.unique)
            }
            return
        case .notifyReply:
            return
        case .initialize:
            self.initialize(h, args, reply: reply)
            return
        case .destroy:
            self.filesystem.destroy()
            self.core.markDestroyed()
            reply.ok(h.unique)
            return
        default:
            break
        }
        guard self.core.initialized.load(ordering: .acquiring) else {
            reply.error(h.unique, EIO)
            return
        }

        if let requeue = self.core.interrupts.begin(h.unique) {
            reply.error(requeue, EAGAIN)
        }
        defer { self.core.interrupts.end(h.unique) }
        let ctx = RequestContext(
            unique: h.unique, nodeID: h.nodeid, uid: h.uid, gid: h.gid, pid: h.pid, opcode: op, core: self.core)
        do {
            try self.dispatch(op, h, args, ctx, reply)
        } catch {
            let errno = FUSEError.errno(for: error)
            if errno == EIO {
                // never silent: an I/O error reaches an application
                self.core.logger.error("\(op) of node \(h.nodeid) failed with EIO: \(error)")
            }
            reply.error(h.unique, errno)
        }
    }

    private func batchForget(_ args: UnsafeRawBufferPointer) {
        var r = RequestReader(args)
        guard let b = try? r.read(fuse_batch_forget_in.self) else { return }
        let one = MemoryLayout<fuse_forget_one>.size
        let count = min(Int(b.count), r.remaining / one)
        for _ in 0..<count {
            guard let f = try? r.read(fuse_forget_one.self) else { return }
            self.filesystem.forget(nodeID: f.nodeid, lookups: f.nlookup)
        }
    }

    /// Serves an opcode. Every path either replies (success) or throws (the caller replies the errno).
    private func dispatch(
        _ op: FUSEOpcode, _ h: fuse_in_header, _ args: UnsafeRawBufferPointer, _ ctx: RequestContext,
        _ reply: ReplyWriter
    ) throws {
        let fs = self.filesystem
        let node = h.nodeid
        let unique = h.unique
        var r = RequestReader(args)
        switch op {
        case .lookup:
            let name = try r.name()
            reply.value(unique, try fs.lookup(ctx, parent: node, name: name).wire)

        case .getattr:
            let a = try r.read(fuse_getattr_in.self)
            let fh: UInt64? = a.getattr_flags & UInt32(FUSE_GETATTR_FH) != 0 ? a.fh : nil
            reply.value(unique, try fs.getattr(ctx, nodeID: node, fileHandle: fh).wire)

        case .setattr:
            let a = try r.read(fuse_setattr_in.self)
            reply.value(unique, try fs.setattr(ctx, nodeID: node, changes: Self.changes(a)).wire)

        case .readlink:
            let target = try fs.readlink(ctx, nodeID: node)
            target.withUnsafeBytes { reply.bytes(unique, $0) }

        case .symlink:
            let name = try r.name()
            let target = try r.name()
            reply.value(unique, try fs.symlink(ctx, parent: node, name: name, target: target).wire)

        case .mknod:
            let a = try r.read(fuse_mknod_in.self)
            let name = try r.name()
            reply.value(unique, try fs.mknod(ctx, parent: node, name: name, mode: a.mode, rdev: a.rdev, umask: a.umask).wire)

        case .mkdir:
            let a = try r.read(fuse_mkdir_in.self)
            let name = try r.name()
            reply.value(unique, try fs.mkdir(ctx, parent: node, name: name, mode: a.mode, umask: a.umask).wire)

        case .unlink:
            let name = try r.name()
            try fs.unlink(ctx, parent: node, name: name)
            reply.ok(unique)

        case .rmdir:
            let name = try r.name()
            try fs.rmdir(ctx, parent: node, name: name)
            reply.ok(unique)

        case .rename, .rename2:
            let newParent: UInt64
            let flags: RenameFlags
            if op == .rename {
                newParent = try r.read(fuse_rename_in.self).newdir
                flags = []
            } else {
                let a = try r.read(fuse_rename2_in.self)
                newParent = a.newdir
                flags = RenameFlags(rawValue: a.flags)
                let known: RenameFlags = [.noReplace, .exchange]
                if flags.contains(.whiteout) || !known.isSuperset(of: flags)
                    || flags.isSuperset(of: [.noReplace, .exchange])
                {
                    throw FUSEError.invalid
                }
            }
            let name = try r.name()
            let newName = try r.name()
            try fs.rename(ctx, parent: node, name: name, newParent: newParent, newName: newName, flags: flags)
            reply.ok(unique)

        case .link:
            let a = try r.read(fuse_link_in.self)
            let newName = try r.name()
            reply.value(unique, try fs.link(ctx, nodeID: a.oldnodeid, newParent: node, newName: newName).wire)

        case .open:
            let a = try r.read(fuse_open_in.self)
            let kill = a.open_flags & UInt32(FUSE_OPEN_KILL_SUIDGID) != 0
            reply.value(unique, try fs.open(ctx, nodeID: node, flags: Int32(bitPattern: a.flags), killSUIDGID: kill).wire)

        case .read:
            let a = try r.read(fuse_read_in.self)
            let count = min(Int(a.size), reply.buffers.outCapacity)
            let buffer = UnsafeMutableRawBufferPointer(start: reply.buffers.outData, count: count)
            let n = try fs.read(
                ctx, nodeID: node, fileHandle: a.fh, offset: a.offset, into: buffer, flags: Int32(bitPattern: a.flags))
            guard n >= 0, n <= count else { throw FUSEError.io }
            reply.inPlace(unique, count: n)

        case .write:
            let a = try r.read(fuse_write_in.self)
            let data = try r.bytes(Int(a.size))
            let n = try fs.write(
                ctx, nodeID: node, fileHandle: a.fh, offset: a.offset, data: data.bytes,
                writeFlags: WriteFlags(rawValue: a.write_flags), flags: Int32(bitPattern: a.flags))
            guard n >= 0, n <= Int(a.size) else { throw FUSEError.io }
            reply.value(unique, fuse_write_out(size: UInt32(n), padding: 0))

        case .statfs:
            reply.value(unique, try fs.statfs(ctx, nodeID: node).wire)

        case .release:
            let a = try r.read(fuse_release_in.self)
            try fs.release(
                ctx, nodeID: node, fileHandle: a.fh, flags: Int32(bitPattern: a.flags),
                flush: a.release_flags & UInt32(FUSE_RELEASE_FLUSH) != 0)
            reply.ok(unique)

        case .releasedir:
            let a = try r.read(fuse_release_in.self)
            try fs.releasedir(ctx, nodeID: node, fileHandle: a.fh, flags: Int32(bitPattern: a.flags))
            reply.ok(unique)

        case .fsync:
            let a = try r.read(fuse_fsync_in.self)
            try fs.fsync(ctx, nodeID: node, fileHandle: a.fh, dataOnly: a.fsync_flags & UInt32(FUSE_FSYNC_FDATASYNC) != 0)
            reply.ok(unique)

        case .fsyncdir:
            let a = try r.read(fuse_fsync_in.self)
            try fs.fsyncdir(ctx, nodeID: node, fileHandle: a.fh, dataOnly: a.fsync_flags & UInt32(FUSE_FSYNC_FDATASYNC) != 0)
            reply.ok(unique)

        case .setxattr:
            let ext = (self.core.connectionInfo?.flags ?? 0) & UInt64(FUSE_SETXATTR_EXT) != 0
            let a = try r.readPrefix(
                fuse_setxattr_in.self, zero: fuse_setxattr_in(),
                size: ext ? MemoryLayout<fuse_setxattr_in>.size : Int(FUSE_COMPAT_SETXATTR_IN_SIZE))
            let name = try r.name()
            let value = try r.bytes(Int(a.size))
            try fs.setxattr(
                ctx, nodeID: node, name: name, value: value.bytes, flags: Int32(bitPattern: a.flags),
                killSGID: a.setxattr_flags & UInt32(FUSE_SETXATTR_ACL_KILL_SGID) != 0)
            reply.ok(unique)

        case .getxattr:
            let a = try r.read(fuse_getxattr_in.self)
            let name = try r.name()
            let value = try fs.getxattr(ctx, nodeID: node, name: name)
            if a.size == 0 {
                reply.value(unique, fuse_getxattr_out(size: UInt32(value.count), padding: 0))
            } else if value.count > Int(a.size) {
                throw FUSEError.range
            } else {
                value.withUnsafeBytes { reply.bytes(unique, $0) }
            }

        case .listxattr:
            let a = try r.read(fuse_getxattr_in.self)
            let names = try fs.listxattr(ctx, nodeID: node)
            var total = 0
            for n in names { total += n.count + 1 }
            if a.size == 0 {
                reply.value(unique, fuse_getxattr_out(size: UInt32(total), padding: 0))
            } else if total > Int(a.size) || total > reply.buffers.outCapacity {
                throw FUSEError.range
            } else {
                var at = reply.buffers.outData
                for n in names {
                    n.withUnsafeBytes { at.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
                    at += n.count
                    at.storeBytes(of: 0, as: UInt8.self)
                    at += 1
                }
                reply.inPlace(unique, count: total)
            }

        case .removexattr:
            let name = try r.name()
            try fs.removexattr(ctx, nodeID: node, name: name)
            reply.ok(unique)

        case .flush:
            let a = try r.read(fuse_flush_in.self)
            try fs.flush(ctx, nodeID: node, fileHandle: a.fh, lockOwner: a.lock_owner)
            reply.ok(unique)

        case .opendir:
            let a = try r.read(fuse_open_in.self)
            reply.value(unique, try fs.opendir(ctx, nodeID: node, flags: Int32(bitPattern: a.flags)).wire)

        case .readdir, .readdirplus:
            let a = try r.read(fuse_read_in.self)
            var buffer = DirectoryReplyBuffer(
                base: reply.buffers.outData, capacity: min(Int(a.size), reply.buffers.outCapacity),
                isPlus: op == .readdirplus)
            try fs.readdir(ctx, nodeID: node, fileHandle: a.fh, offset: a.offset, into: &buffer)
            reply.inPlace(unique, count: buffer.byteCount)

        case .access:
            let a = try r.read(fuse_access_in.self)
            try fs.access(ctx, nodeID: node, mask: Int32(bitPattern: a.mask))
            reply.ok(unique)

        case .create:
            let a = try r.read(fuse_create_in.self)
            let name = try r.name()
            let c = try fs.create(
                ctx, parent: node, name: name, mode: a.mode, umask: a.umask, flags: Int32(bitPattern: a.flags))
            Self.replyCreate(unique, c, reply)

        case .tmpfile:
            let a = try r.read(fuse_create_in.self)
            let c = try fs.tmpfile(ctx, parent: node, mode: a.mode, umask: a.umask, flags: Int32(bitPattern: a.flags))
            Self.replyCreate(unique, c, reply)

        case .fallocate:
            let a = try r.read(fuse_fallocate_in.self)
            try fs.fallocate(
                ctx, nodeID: node, fileHandle: a.fh, offset: a.offset, length: a.length, mode: Int32(bitPattern: a.mode))
            reply.ok(unique)

        case .lseek:
            let a = try r.read(fuse_lseek_in.self)
            let off = try fs.lseek(ctx, nodeID: node, fileHandle: a.fh, offset: a.offset, whence: Int32(bitPattern: a.whence))
            reply.value(unique, fuse_lseek_out(offset: off))

        case .copyFileRange:
            let a = try r.read(fuse_copy_file_range_in.self)
            let n = try fs.copyFileRange(
                ctx, nodeID: node, fileHandle: a.fh_in, offset: a.off_in, outNodeID: a.nodeid_out,
                outFileHandle: a.fh_out, outOffset: a.off_out, length: a.len, flags: a.flags)
            guard n >= 0, n <= UInt32.max else { throw FUSEError.io }
            reply.value(unique, fuse_write_out(size: UInt32(n), padding: 0))

        case .ioctl:
            let a = try r.read(fuse_ioctl_in.self)
            let input = try r.bytes(min(Int(a.in_size), r.remaining))
            let out = try fs.ioctl(
                ctx, nodeID: node, fileHandle: a.fh, command: a.cmd, argument: a.arg, input: input.bytes,
                outputSize: Int(a.out_size), flags: a.flags)
            guard out.output.count <= Int(a.out_size) else { throw FUSEError.io }
            let o = fuse_ioctl_out(result: out.result, flags: 0, in_iovs: 0, out_iovs: 0)
            out.output.withUnsafeBytes { reply.value(unique, o, then: $0) }

        default:
            // GETLK/SETLK/SETLKW (locks are not negotiated), BMAP, POLL, SETUPMAPPING, REMOVEMAPPING, SYNCFS, unknown.
            throw FUSEError.notImplemented
        }
    }

    private static func replyCreate(_ unique: UInt64, _ c: CreateReply, _ reply: ReplyWriter) {
        let entrySize = MemoryLayout<fuse_entry_out>.size
        reply.buffers.outData.storeBytes(of: c.entry.wire, as: fuse_entry_out.self)
        (reply.buffers.outData + entrySize).storeBytes(of: c.open.wire, as: fuse_open_out.self)
        reply.inPlace(unique, count: entrySize + MemoryLayout<fuse_open_out>.size)
    }

    static func changes(_ a: fuse_setattr_in) -> SetAttributes {
        let v = a.valid
        var c = SetAttributes()
        if v & fattrMode != 0 { c.mode = a.mode }
        if v & fattrUID != 0 { c.uid = a.uid }
        if v & fattrGID != 0 { c.gid = a.gid }
        if v & fattrSize != 0 { c.size = a.size }
        if v & fattrAtimeNow != 0 {
            c.atime = .now
        } else if v & fattrAtime != 0 {
            c.atime = .set(FileTime(seconds: Int64(bitPattern: a.atime), nanoseconds: a.atimensec))
        }
        if v & fattrMtimeNow != 0 {
            c.mtime = .now
        } else if v & fattrMtime != 0 {
            c.mtime = .set(FileTime(seconds: Int64(bitPattern: a.mtime), nanoseconds: a.mtimensec))
        }
        if v & fattrCtime != 0 { c.ctime = FileTime(seconds: Int64(bitPattern: a.ctime), nanoseconds: a.ctimensec) }
        if v & fattrFH != 0 { c.fileHandle = a.fh }
        if v & fattrLockOwner != 0 { c.lockOwner = a.lock_owner }
        c.killSUIDGID = v & fattrKillSUIDGID != 0
        return c
    }
}
