import ScoutFormat

/// setxattr(2) flags.
public enum XattrFlags {
    public static let create: UInt32 = 1
    public static let replace: UInt32 = 2
}

extension Volume {
    static let xattrMaxValue = 65535
    /// The known namespaces, `user.` first: only its names are refused under retention (the
    /// original's rule; `scoutfs.`, `trusted.` and the ACL names stay changeable).
    static let xattrPrefixes: [[UInt8]] = ["user.", "trusted.", "security.", "system.", "scoutfs."].map { Array($0.utf8) }

    static func xattrKey(_ ino: UInt64, _ hash: UInt32, _ id: UInt64, _ part: UInt8) -> Key {
        Key(zone: KeyZone.fs, first: ino, type: KeyType.xattr, second: UInt64(hash), third: id, fourth: part)
    }

    static func checkXattrName(_ name: [UInt8]) throws(FSError) {
        if name.isEmpty { throw FSError(FSError.EINVAL) }
        if name.count > 255 { throw FSError(FSError.ERANGE) }
        guard xattrPrefixes.contains(where: { name.starts(with: $0) && name.count > $0.count }) else {
            throw FSError(FSError.EOPNOTSUPP)
        }
    }

    /// The xattr `name` of `ino`: its id, its parts' keys and its value; nil when absent.
    func findXattr(_ ino: UInt64, _ name: [UInt8]) throws(FSError) -> (id: UInt64, keys: [Key], value: [UInt8])? {
        let hash = FNV1a.hash32(name)
        var pos = Self.xattrKey(ino, hash, 0, 0)
        let end = Self.xattrKey(ino, hash, .max, .max)
        while let it = try cache.next(from: pos, through: end) {
            let id = it.key.third
            // gather the parts of this id
            var bytes: [UInt8] = []
            var keys: [Key] = []
            var p = Self.xattrKey(ino, hash, id, 0)
            let pend = Self.xattrKey(ino, hash, id, .max)
            while let part = try cache.next(from: p, through: pend) {
                bytes += part.value
                keys.append(part.key)
                if part.key == pend { break }
                p = part.key.incremented()
            }
            guard bytes.count >= XattrHeader.encodedSize, let h = try? XattrHeader.decode(Array(bytes[0..<XattrHeader.encodedSize])),
                bytes.count == XattrHeader.encodedSize + Int(h.nameLen) + Int(h.valLen)
            else {
                throw FSError(FSError.EIO, "corrupt xattr items of inode \(ino) id \(id)")
            }
            let n = Array(bytes[XattrHeader.encodedSize..<(XattrHeader.encodedSize + Int(h.nameLen))])
            if n == name {
                return (id, keys, Array(bytes[(XattrHeader.encodedSize + Int(h.nameLen))...]))
            }
            if id == .max { break }
            pos = Self.xattrKey(ino, hash, id + 1, 0)
        }
        return nil
    }

    public func getxattr(_ ino: UInt64, name: [UInt8]) throws(FSError) -> [UInt8] {
        try Self.checkXattrName(name)
        return try withLocks([ino], write: false) { () throws -> [UInt8] in
            _ = try loadInode(ino)
            guard let x = try findXattr(ino, name) else { throw FSError(FSError.ENODATA) }
            return x.value
        }
    }

    /// setxattr(2). `killSGID` (FUSE_SETXATTR_ACL_KILL_SGID) clears setgid when an access ACL
    /// is set by someone outside the file's group. The POSIX ACL names keep the mode in step
    /// (see `setACL`). Tagged `scoutfs.` names (`XattrTags`) need `admin` (CAP_SYS_ADMIN).
    public func setxattr(_ ino: UInt64, name: [UInt8], value: [UInt8], flags: UInt32, killSGID: Bool = false, admin: Bool = true) throws(FSError) {
        try Self.checkXattrName(name)
        let tags = try XattrTags(name)
        if flags & ~(XattrFlags.create | XattrFlags.replace) != 0 {
            throw FSError(FSError.EINVAL, "setxattr flags 0x\(String(flags, radix: 16)): only XATTR_CREATE and XATTR_REPLACE exist")
        }
        if flags & XattrFlags.create != 0 && flags & XattrFlags.replace != 0 {
            throw FSError(FSError.EINVAL, "setxattr: XATTR_CREATE and XATTR_REPLACE together")
        }
        if value.count > Self.xattrMaxValue { throw FSError(FSError.E2BIG) }
        if !tags.isEmpty && !admin { throw FSError(FSError.EPERM, "tagged xattrs need CAP_SYS_ADMIN") }
        let tagKey = try tagKey(ino, name, tags)
        try withTagLock(tags) { () throws(FSError) in try withLocks([ino], write: true) { () throws -> Void in
            var i = try loadInode(ino)
            if name.starts(with: Self.xattrPrefixes[0]) { try Self.checkRetention(i) }
            let old = try findXattr(ino, name)
            if flags & XattrFlags.create != 0 && old != nil { throw FSError(FSError.EEXIST) }
            if flags & XattrFlags.replace != 0 && old == nil { throw FSError(FSError.ENODATA) }
            if !tags.isEmpty {
                let changed = try applyTagChanges(
                    ino, name: name, tags: tags, tagKey: tagKey, old: old.map { ($0.id, $0.value) }, new: value, newID: i.nextXattrId)
                if !changed { return }
            }
            if PosixACL.isACLName(name) {
                try setACL(ino, &i, name: name, value: value, replacing: old?.keys ?? [], killSGID: killSGID)
            } else {
                putXattr(ino, &i, name: name, value: value, replacing: old?.keys ?? [])
                srchNote(ino, name: name, removing: old?.id, adding: i.nextXattrId - 1)
            }
            i.ctime = Self.now()
            storeInode(ino, &i)
        } }
    }

    /// Writes the xattr `name` = `value` of `ino` as a new id, deleting the items of the value
    /// it replaces. The caller stores the inode (its next xattr id moved).
    func putXattr(_ ino: UInt64, _ i: inout Inode, name: [UInt8], value: [UInt8], replacing old: [Key]) {
        for k in old { cache.delete(k) }
        let id = i.nextXattrId
        i.nextXattrId += 1
        let bytes = XattrHeader(valLen: UInt16(value.count), nameLen: UInt8(name.count)).encoded() + name + value
        let hash = FNV1a.hash32(name)
        var off = 0
        var part: UInt8 = 0
        while off < bytes.count {
            let n = min(Format.btreeMaxValueLength, bytes.count - off)
            cache.put(Self.xattrKey(ino, hash, id, part), Array(bytes[off..<(off + n)]))
            off += n
            part += 1
        }
    }

    public func removexattr(_ ino: UInt64, name: [UInt8], admin: Bool = true) throws(FSError) {
        try Self.checkXattrName(name)
        let tags = try XattrTags(name)
        if !tags.isEmpty && !admin { throw FSError(FSError.EPERM, "tagged xattrs need CAP_SYS_ADMIN") }
        let tagKey = try tagKey(ino, name, tags)
        try withTagLock(tags) { () throws(FSError) in try withLocks([ino], write: true) { () throws -> Void in
            var i = try loadInode(ino)
            if name.starts(with: Self.xattrPrefixes[0]) { try Self.checkRetention(i) }
            guard let old = try findXattr(ino, name) else {
                // removing an ACL that is not there succeeds, as on ext4 and tmpfs
                if PosixACL.isACLName(name) { return }
                throw FSError(FSError.ENODATA)
            }
            if !tags.isEmpty {
                _ = try applyTagChanges(ino, name: name, tags: tags, tagKey: tagKey, old: (old.id, old.value), new: nil, newID: old.id)
            }
            for k in old.keys { cache.delete(k) }
            srchNote(ino, name: name, removing: old.id, adding: nil)
            i.ctime = Self.now()
            storeInode(ino, &i)
        } }
    }

    static let capabilityName = Array("security.capability".utf8)

    /// Removes the `security.capability` xattr of `ino` if it has one (a write drops file
    /// capabilities, as the kernel's `cap_inode_killpriv`). Called under `ino`'s write lock;
    /// the caller stores the inode.
    func removeCapability(_ ino: UInt64) throws(FSError) {
        guard let cap = try findXattr(ino, Self.capabilityName) else { return }
        for k in cap.keys { cache.delete(k) }
        srchNote(ino, name: Self.capabilityName, removing: cap.id, adding: nil)
    }

    /// Every xattr name of `ino` except the hidden `scoutfs.hide.` ones.
    public func listxattr(_ ino: UInt64) throws(FSError) -> [[UInt8]] {
        try withLocks([ino], write: false) { () throws -> [[UInt8]] in
            _ = try loadInode(ino)
            var out: [[UInt8]] = []
            var pos = Self.xattrKey(ino, 0, 0, 0)
            let end = Self.xattrKey(ino, .max, .max, .max)
            while let it = try cache.next(from: pos, through: end) {
                if it.key.fourth == 0, it.value.count >= XattrHeader.encodedSize,
                    let h = try? XattrHeader.decode(Array(it.value[0..<XattrHeader.encodedSize])),
                    it.value.count >= XattrHeader.encodedSize + Int(h.nameLen)
                {
                    let n = Array(it.value[XattrHeader.encodedSize..<(XattrHeader.encodedSize + Int(h.nameLen))])
                    if !XattrTags.lenient(n).hide { out.append(n) }
                }
                if it.key == end { break }
                pos = it.key.incremented()
            }
            return out
        }
    }

    // MARK: statfs

    /// Totals from the server, in 4 KiB blocks for data and 64 KiB blocks for metadata.
    public func totals() throws(FSError) -> ServerTotals {
        try link.statfs()
    }

    /// RESIZE_DEVICES, passed to the server.
    public func resizeDevices(metaBlocks: UInt64, dataBlocks: UInt64) throws(FSError) {
        try link.resizeDevices(metaBlocks: metaBlocks, dataBlocks: dataBlocks)
    }
}
