import ScoutFormat

extension XattrTags {
    /// The tags of `name`; throws EINVAL for an untagged `scoutfs.` name or a repeated tag.
    public init(_ name: [UInt8]) throws(FSError) {
        guard let t = XattrTags.parse(name) else {
            throw FSError(FSError.EINVAL, "xattr \(String(decoding: name, as: UTF8.self)): a scoutfs. name without a tag, or a tag twice")
        }
        self = t
    }
}

extension Volume {
    /// The totl key of a `.totl.` name, or the indx key (xattr id 0) of an `.indx.` name;
    /// EINVAL when the name's trailing numbers do not parse.
    func tagKey(_ ino: UInt64, _ name: [UInt8], _ tags: XattrTags) throws(FSError) -> Key? {
        if tags.totl && tags.indx { throw FSError(FSError.EINVAL, "an xattr cannot be both totl. and indx.") }
        if tags.totl {
            guard let n = XattrTagKeys.dottedU64s(name, count: 3) else {
                throw FSError(FSError.EINVAL, "totl xattr name needs three trailing dotted u64s")
            }
            return XattrTagKeys.totlKey(n[0], n[1], n[2])
        }
        if tags.indx {
            if fmtVers < Format.versionIndxTag {
                throw FSError(FSError.EOPNOTSUPP, "indx xattrs need format version \(Format.versionIndxTag)")
            }
            guard let n = XattrTagKeys.dottedU64s(name, count: 2), n[0] <= UInt64(UInt8.max) else {
                throw FSError(FSError.EINVAL, "indx xattr name needs trailing dotted major (0-255) and minor")
            }
            return XattrTagKeys.indxKey(major: UInt8(n[0]), minor: n[1], ino: ino, xid: 0)
        }
        return nil
    }

    /// Runs `body` holding the WRITE_ONLY zone lock a `.totl.` or `.indx.` name needs (taken
    /// before the inode lock: the zones sort before the fs zone).
    func withTagLock<R>(_ tags: XattrTags, _ body: () throws(FSError) -> R) throws(FSError) -> R {
        let range: LockRange? = tags.totl ? .xattrTotl : tags.indx ? .xattrIndx : nil
        guard let range else { return try body() }
        try locks.acquire(range, .writeOnly)
        defer { locks.release(range, .writeOnly) }
        return try body()
    }

    /// The tag items a change of xattr `name` of `ino` makes (the original's part of
    /// `scoutfs_xattr_set_locked`): `old` is the existing xattr (id and value), `new` the
    /// value being set (nil: removal), `newID` the id a created xattr gets. Returns false when
    /// nothing is to change (an `.indx.` xattr set again). Checks come before any change.
    func applyTagChanges(
        _ ino: UInt64, name: [UInt8], tags: XattrTags, tagKey: Key?, old: (id: UInt64, value: [UInt8])?, new: [UInt8]?,
        newID: UInt64
    ) throws(FSError) -> Bool {
        var delta = (total: UInt64(0), count: UInt64(bitPattern: Int64((new != nil ? 1 : 0) - (old != nil ? 1 : 0))))
        if tags.totl, let old {
            guard let v = XattrTagKeys.parseU64(old.value[...]) else { throw FSError(FSError.EINVAL, "stored totl value does not parse") }
            delta.total &-= v
        }
        if tags.indx {
            if let new, !new.isEmpty { throw FSError(FSError.EINVAL, "indx xattrs have no value") }
            if old != nil && new != nil { return false }
        }
        if tags.totl, let new {
            guard let v = XattrTagKeys.parseU64(new[...]) else { throw FSError(FSError.EINVAL, "totl xattr value is not a u64") }
            delta.total &+= v
        }
        if tags.indx, var k = tagKey {
            let f = XattrTagKeys.indxFields(k)
            k = XattrTagKeys.indxKey(major: f.major, minor: f.minor, ino: ino, xid: old?.id ?? newID)
            if new != nil { cache.put(k, []) } else { cache.delete(k) }
        }
        if tags.srch && !(old != nil && new != nil) {
            appendSrchEntry(name: name, ino: ino, id: old?.id ?? newID)
        }
        if tags.totl, let k = tagKey, delta.total != 0 || delta.count != 0 {
            try cache.addDelta(k, XattrTotlValue(total: delta.total, count: delta.count).encoded())
        }
        return true
    }

    /// Hook for `.srch.` xattrs: where a set or removal appends an entry to this mount's srch
    /// log (the original's `scoutfs_forest_srch_add`). Not implemented here.
    func appendSrchEntry(name: [UInt8], ino: UInt64, id: UInt64) {}

    /// Undoes the tag items of one xattr of an inode being deleted (the original's
    /// `scoutfs_xattr_drop`): `first` is the xattr's first part (header, name, value start).
    func dropTagItems(_ ino: UInt64, id: UInt64, first: [UInt8]) throws(FSError) {
        guard first.count >= XattrHeader.encodedSize, let h = try? XattrHeader.decode(Array(first[0..<XattrHeader.encodedSize])),
            first.count >= XattrHeader.encodedSize + Int(h.nameLen)
        else { return }
        let name = Array(first[XattrHeader.encodedSize..<(XattrHeader.encodedSize + Int(h.nameLen))])
        let tags = XattrTags.lenient(name)
        guard !tags.isEmpty, let key = try? tagKey(ino, name, tags) ?? nil else {
            if tags.srch { appendSrchEntry(name: name, ino: ino, id: id) }
            return
        }
        let value = Array(first[(XattrHeader.encodedSize + Int(h.nameLen))...])
        _ = try applyTagChanges(ino, name: name, tags: tags, tagKey: key, old: (id, value), new: nil, newID: id)
    }

    // MARK: reading tag items

    /// Every hidden (`.hide.`) xattr name of `ino` from the position `hash`/`id` on, as many
    /// as fit `bytes` (each with its NUL); returns them and the position to continue from
    /// (the original's `scoutfs_list_xattrs` with `show_hidden`).
    public func listHiddenXattrs(_ ino: UInt64, hash: UInt32, id: UInt64, bytes: Int) throws(FSError) -> (names: [[UInt8]], hash: UInt32, id: UInt64) {
        try withLocks([ino], write: false) { () throws -> ([[UInt8]], UInt32, UInt64) in
            _ = try loadInode(ino)
            var out: [[UInt8]] = []
            var total = 0
            var pos = Self.xattrKey(ino, hash, id, 0)
            var h = hash
            var i = id
            let end = Self.xattrKey(ino, .max, .max, .max)
            while let it = try cache.next(from: pos, through: end) {
                if it.key.fourth == 0, it.value.count >= XattrHeader.encodedSize,
                    let hd = try? XattrHeader.decode(Array(it.value[0..<XattrHeader.encodedSize])),
                    it.value.count >= XattrHeader.encodedSize + Int(hd.nameLen)
                {
                    let n = Array(it.value[XattrHeader.encodedSize..<(XattrHeader.encodedSize + Int(hd.nameLen))])
                    if XattrTags.lenient(n).hide {
                        if total + n.count + 1 > bytes { break }
                        out.append(n)
                        total += n.count + 1
                    }
                    h = UInt32(truncatingIfNeeded: it.key.second)
                    i = it.key.third &+ 1
                }
                if it.key == end { break }
                pos = it.key.incremented()
            }
            return (out, h, i)
        }
    }

    /// Up to `limit` committed totals from `a.b.c` on, in name order (READ_XATTR_TOTALS).
    public func readXattrTotals(from name: (UInt64, UInt64, UInt64), limit: Int) throws(FSError) -> [(name: (UInt64, UInt64, UInt64), total: UInt64, count: UInt64)] {
        // committed blocks only: no cluster lock and no state lock (as the merge worker)
        let items = try forest.scanCommitted(from: XattrTagKeys.totlKey(name.0, name.1, name.2), through: LockRange.xattrTotl.end, limit: limit)
        return items.compactMap { it in
            guard let v = try? XattrTotlValue.decode(it.value) else { return nil }
            return ((it.key.first, it.key.second, it.key.third), v.total, v.count)
        }
    }

    /// Up to `limit` committed index entries from `first` through `last` (major, minor,
    /// inode), duplicates (several xattrs at one position) folded (READ_XATTR_INDEX).
    public func readXattrIndex(
        first: (major: UInt8, minor: UInt64, ino: UInt64), last: (major: UInt8, minor: UInt64, ino: UInt64), limit: Int
    ) throws(FSError) -> [(major: UInt8, minor: UInt64, ino: UInt64)] {
        var from = XattrTagKeys.indxKey(major: first.major, minor: first.minor, ino: first.ino, xid: 0)
        let through = XattrTagKeys.indxKey(major: last.major, minor: last.minor, ino: last.ino, xid: .max)
        var out: [(major: UInt8, minor: UInt64, ino: UInt64)] = []
        while out.count < limit && from <= through {
            let items = try forest.scanCommitted(from: from, through: through, limit: max(limit - out.count, 64))
            guard let lastItem = items.last else { break }
            for it in items {
                let f = XattrTagKeys.indxFields(it.key)
                if let p = out.last, p.major == f.major, p.minor == f.minor, p.ino == f.ino { continue }
                if out.count == limit { break }
                out.append((f.major, f.minor, f.ino))
            }
            if lastItem.key == through { break }
            from = lastItem.key.incremented()
        }
        return out
    }

    /// Adds a (total, count) delta at totl key `a.b.c` with no checks (INJECT_TOTL_DELTA,
    /// for tests).
    public func injectTotlDelta(_ name: (UInt64, UInt64, UInt64), total: Int64, count: Int64) throws(FSError) {
        let tags = XattrTags(totl: true)
        try withTagLock(tags) { () throws(FSError) in
            try state.withLock { () throws(FSError) in
                try openIfNeeded()
                if total != 0 || count != 0 {
                    try cache.addDelta(
                        XattrTagKeys.totlKey(name.0, name.1, name.2),
                        XattrTotlValue(total: UInt64(bitPattern: total), count: UInt64(bitPattern: count)).encoded())
                }
                try maybeCommit()
            }
        }
    }
}
