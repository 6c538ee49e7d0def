import Glibc
import ScoutFormat

// POSIX ACLs. With FUSE_POSIX_ACL the kernel enforces the access ACLs it reads through
// getxattr and caches them (dropped on NOTIFY_INVAL_INODE and after setattr/setxattr); what it
// leaves to the filesystem, as ext4 does it:
//  - setting an access ACL sets the mode's rwx bits from it, and an ACL the mode alone can say
//    is not stored at all;
//  - chmod rewrites the owner, group class (the mask when there is one) and other entries;
//  - a new inode in a directory with a default ACL gets an access ACL made from it, restricted
//    by the mode asked for (no umask then), and a new directory also inherits the default ACL;
//    without a default ACL the umask applies (FUSE_DONT_MASK leaves that to us). Symlinks get
//    neither.

extension PosixACL {
    static func isACLName(_ name: [UInt8]) -> Bool { name == accessName || name == defaultName }
}

/// What a new inode gets from its directory: its mode and the ACLs to store.
struct InheritedACLs {
    var mode: UInt32
    var access: PosixACL?
    var defaults: PosixACL?
}

extension Volume {
    /// The ACL stored as `name` on `ino` (the caller holds its lock); nil when there is none.
    func storedACL(_ ino: UInt64, _ name: [UInt8]) throws(FSError) -> (acl: PosixACL, keys: [Key])? {
        guard let x = try findXattr(ino, name) else { return nil }
        do {
            return (try PosixACL(decoding: x.value), x.keys)
        } catch {
            throw FSError(FSError.EIO, "inode \(ino): stored \(String(decoding: name, as: UTF8.self)) is not an ACL: \(error.message)")
        }
    }

    /// The mode and ACLs of a new inode asking for `mode` in `dir` (the caller holds the
    /// directory's lock).
    func inheritedACLs(dir: UInt64, mode: UInt32, umask: UInt32) throws(FSError) -> InheritedACLs {
        if Self.isLnk(mode) { return InheritedACLs(mode: mode) }
        guard let def = try storedACL(dir, PosixACL.defaultName)?.acl else {
            return InheritedACLs(mode: mode & ~(umask & 0o777))
        }
        var access = def
        let m = access.restrict(creating: mode)
        return InheritedACLs(mode: m, access: access.isEquivalentToMode ? nil : access, defaults: Self.isDir(mode) ? def : nil)
    }

    /// Writes a new inode's inherited ACLs; the caller stores the inode afterwards.
    func storeInheritedACLs(_ ino: UInt64, _ i: inout Inode, _ acls: InheritedACLs) {
        if let d = acls.defaults { putXattr(ino, &i, name: PosixACL.defaultName, value: d.encoded(), replacing: []) }
        if let a = acls.access { putXattr(ino, &i, name: PosixACL.accessName, value: a.encoded(), replacing: []) }
    }

    /// chmod: the access ACL, if any, follows the inode's new mode. The caller stores the inode.
    func chmodACL(_ ino: UInt64, _ i: inout Inode) throws(FSError) {
        guard !Self.isLnk(i.mode), let stored = try storedACL(ino, PosixACL.accessName) else { return }
        var acl = stored.acl
        acl.chmod(i.mode)
        putXattr(ino, &i, name: PosixACL.accessName, value: acl.encoded(), replacing: stored.keys)
    }

    /// setxattr of `system.posix_acl_access` or `system.posix_acl_default` (the caller holds the
    /// lock, checked the flags and stores the inode).
    func setACL(_ ino: UInt64, _ i: inout Inode, name: [UInt8], value: [UInt8], replacing old: [Key], killSGID: Bool) throws(FSError) {
        if Self.isLnk(i.mode) { throw FSError(FSError.EOPNOTSUPP, "inode \(ino): symlinks have no ACLs") }
        let acl = try PosixACL(decoding: value)
        if name == PosixACL.defaultName {
            guard Self.isDir(i.mode) else { throw FSError(FSError.EACCES, "inode \(ino): a default ACL needs a directory") }
            putXattr(ino, &i, name: name, value: acl.encoded(), replacing: old)
            return
        }
        i.mode = acl.mode(from: i.mode)
        if killSGID { i.mode &= ~UInt32(S_ISGID) }
        if acl.isEquivalentToMode {
            for k in old { cache.delete(k) }
        } else {
            putXattr(ino, &i, name: name, value: acl.encoded(), replacing: old)
        }
    }
}
