import CFuseKernel

// Conversions between the public reply types and the kernel's structs.

extension Duration {
    /// Seconds and nanoseconds for a FUSE timeout field (negative durations become zero).
    @inline(__always)
    var fuseTimeout: (seconds: UInt64, nanoseconds: UInt32) {
        let (s, atto) = self.components
        if s < 0 || (s == 0 && atto <= 0) { return (0, 0) }
        return (UInt64(s), UInt32(clamping: atto / 1_000_000_000))
    }
}

extension FileAttributes {
    @inline(__always)
    var wire: fuse_attr {
        fuse_attr(
            ino: self.ino, size: self.size, blocks: self.blocks,
            atime: UInt64(bitPattern: self.atime.seconds), mtime: UInt64(bitPattern: self.mtime.seconds),
            ctime: UInt64(bitPattern: self.ctime.seconds),
            atimensec: self.atime.nanoseconds, mtimensec: self.mtime.nanoseconds,
            ctimensec: self.ctime.nanoseconds,
            mode: self.mode, nlink: self.nlink, uid: self.uid, gid: self.gid, rdev: self.rdev,
            blksize: self.blockSize, flags: 0)
    }
}

extension EntryReply {
    @inline(__always)
    var wire: fuse_entry_out {
        let e = self.entryTimeout.fuseTimeout
        let a = self.attributeTimeout.fuseTimeout
        return fuse_entry_out(
            nodeid: self.nodeID, generation: self.generation, entry_valid: e.seconds, attr_valid: a.seconds,
            entry_valid_nsec: e.nanoseconds, attr_valid_nsec: a.nanoseconds, attr: self.attributes.wire)
    }
}

extension AttributeReply {
    @inline(__always)
    var wire: fuse_attr_out {
        let t = self.timeout.fuseTimeout
        return fuse_attr_out(attr_valid: t.seconds, attr_valid_nsec: t.nanoseconds, dummy: 0, attr: self.attributes.wire)
    }
}

extension OpenReply {
    @inline(__always)
    var wire: fuse_open_out {
        fuse_open_out(fh: self.fileHandle, open_flags: self.flags.rawValue, padding: 0)
    }
}

extension FileSystemStatistics {
    var wire: fuse_statfs_out {
        var st = fuse_kstatfs()
        st.blocks = self.blocks
        st.bfree = self.freeBlocks
        st.bavail = self.availableBlocks
        st.files = self.files
        st.ffree = self.freeFiles
        st.bsize = self.blockSize
        st.namelen = self.nameLength
        st.frsize = self.fragmentSize
        return fuse_statfs_out(st: st)
    }
}
