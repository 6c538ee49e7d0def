import CFuseKernel
import Glibc

/// Sends notifications to the kernel on a session's connection: cache invalidations the filesystem decides on
/// (for example when a cluster lock is lost). Usable from any thread.
///
/// Do not send one from inside a request for the same inode or directory: the kernel may wait for locks that request
/// holds (an entry invalidation takes the parent directory's lock; an inode invalidation waits for its pages).
/// Send them from another thread, with at least one reader thread free.
public struct FUSENotifier: Sendable {
    let core: SessionCore

    /// NOTIFY_INVAL_INODE: drop the kernel's cached attributes of `nodeID` and its cached pages in
    /// `offset..<offset+length` (`length` 0 = to the end). `offset` negative = attributes only.
    /// Returns `false` when the kernel does not have the inode cached (nothing to do).
    @discardableResult
    public func invalidateInode(_ nodeID: UInt64, offset: Int64 = 0, length: Int64 = 0) throws(FUSEError) -> Bool {
        var out = fuse_notify_inval_inode_out(ino: nodeID, off: offset, len: length)
        return try withUnsafeBytes(of: &out) { (p) throws(FUSEError) -> Bool in
            try self.send(code: FUSE_NOTIFY_INVAL_INODE, p, name: nil)
        }
    }

    /// NOTIFY_INVAL_ENTRY: drop the kernel's cached entry `name` in `parent` (and the parent's attributes).
    /// `expireOnly` (FUSE_EXPIRE_ONLY, kernels with HAS_EXPIRE_ONLY) only marks the entry expired instead of
    /// dropping it (keeps it usable by processes that have it open as cwd or mount point).
    /// Returns `false` when the kernel does not have the parent cached.
    @discardableResult
    public func invalidateEntry(parent: UInt64, name: [UInt8], expireOnly: Bool = false) throws(FUSEError) -> Bool {
        guard !name.isEmpty, name.count <= 255, !name.contains(0) else { throw FUSEError.invalid }
        var out = fuse_notify_inval_entry_out(
            parent: parent, namelen: UInt32(name.count), flags: expireOnly ? UInt32(FUSE_EXPIRE_ONLY) : 0)
        return try withUnsafeBytes(of: &out) { (p) throws(FUSEError) -> Bool in
            try self.send(code: FUSE_NOTIFY_INVAL_ENTRY, p, name: name)
        }
    }

    /// NOTIFY_INVAL_ENTRY with a UTF-8 name.
    @discardableResult
    public func invalidateEntry(parent: UInt64, name: String, expireOnly: Bool = false) throws(FUSEError) -> Bool {
        try self.invalidateEntry(parent: parent, name: Array(name.utf8), expireOnly: expireOnly)
    }

    /// NOTIFY_DELETE: `name` in `parent`, which pointed to `child`, was deleted (by another node): the kernel drops
    /// the entry and, if the child is cached, marks it deleted (and lets go of it as cwd/mount point).
    /// Returns `false` when the kernel does not have the parent cached.
    @discardableResult
    public func delete(parent: UInt64, child: UInt64, name: [UInt8]) throws(FUSEError) -> Bool {
        guard !name.isEmpty, name.count <= 255, !name.contains(0) else { throw FUSEError.invalid }
        var out = fuse_notify_delete_out(parent: parent, child: child, namelen: UInt32(name.count), padding: 0)
        return try withUnsafeBytes(of: &out) { (p) throws(FUSEError) -> Bool in
            try self.send(code: FUSE_NOTIFY_DELETE, p, name: name)
        }
    }

    /// NOTIFY_DELETE with a UTF-8 name.
    @discardableResult
    public func delete(parent: UInt64, child: UInt64, name: String) throws(FUSEError) -> Bool {
        try self.delete(parent: parent, child: child, name: Array(name.utf8))
    }

    /// NOTIFY_INC_EPOCH (protocol 7.44, Linux 6.16 and later): every dentry the kernel holds
    /// is looked up again before its next use. It takes no kernel lock, so it can be sent from
    /// anywhere, also while requests wait on this filesystem. Returns `false` when the kernel
    /// does not know the notification.
    @discardableResult
    public func incrementEpoch() throws(FUSEError) -> Bool {
        do {
            return try withUnsafeBytes(of: ()) { (p) throws(FUSEError) -> Bool in
                try self.send(code: fuse_notify_code(rawValue: 8), p, name: nil)
            }
        } catch where error.errnoValue == EINVAL {
            return false
        }
    }

    private func send(code: fuse_notify_code, _ body: UnsafeRawBufferPointer, name: [UInt8]?) throws(FUSEError) -> Bool {
        guard self.core.connectionInfo != nil else { throw FUSEError(ENOTCONN) }
        let headerSize = MemoryLayout<fuse_out_header>.size
        let nameSize = name.map { $0.count + 1 } ?? 0
        let total = headerSize + body.count + nameSize
        var h = fuse_out_header(len: UInt32(total), error: Int32(code.rawValue), unique: 0)
        var nul: UInt8 = 0
        let written: (Int, Int32)? = self.core.withDeviceForNotification { fd in
            let n = withUnsafeMutableBytes(of: &h) { hp in
                withUnsafeMutableBytes(of: &nul) { np in
                    (name ?? []).withUnsafeBytes { namep in
                        var iov = (
                            iovec(iov_base: hp.baseAddress, iov_len: headerSize),
                            iovec(iov_base: UnsafeMutableRawPointer(mutating: body.baseAddress), iov_len: body.count),
                            iovec(iov_base: UnsafeMutableRawPointer(mutating: namep.baseAddress), iov_len: namep.count),
                            iovec(iov_base: np.baseAddress, iov_len: 1)
                        )
                        return withUnsafeMutableBytes(of: &iov) { ip in
                            writev(fd, ip.baseAddress!.assumingMemoryBound(to: iovec.self), name == nil ? 2 : 4)
                        }
                    }
                }
            }
            return (n, errno)
        }
        guard let (n, e) = written else { throw FUSEError(ENOTCONN) }
        if n == total { return true }
        if n < 0 && e == ENOENT { return false }
        throw FUSEError(n < 0 ? e : EIO)
    }
}
