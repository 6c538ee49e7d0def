import ScoutFormat

/// The tags of a `scoutfs.` xattr name (the original's `scoutfs_xattr_parse_tags`).
///
/// Design note. A name is tagged when it starts with `scoutfs.` followed by at least one of
/// `hide.`, `srch.`, `totl.`, `indx.` (each at most once, in any order) and then at least one
/// more byte. As in the original, a `scoutfs.` name too short to hold a tag and a byte is
/// not parsed and behaves as a plain xattr; a longer one without a tag is EINVAL.
public struct XattrTags: Equatable, Sendable {
    public var hide = false
    public var srch = false
    public var totl = false
    public var indx = false

    public var isEmpty: Bool { !(hide || srch || totl || indx) }

    static let prefix = Array("scoutfs.".utf8)
    static let tagLength = 5

    /// The tags of `name`; throws EINVAL for an untagged `scoutfs.` name or a repeated tag.
    public init(_ name: [UInt8]) throws(FSError) {
        guard name.count >= Self.prefix.count + Self.tagLength + 1, name.starts(with: Self.prefix) else { return }
        var pos = Self.prefix.count
        var found = false
        while true {
            let tag = name.count >= pos + Self.tagLength ? name[pos..<(pos + Self.tagLength)] : []
            switch String(decoding: tag, as: UTF8.self) {
            case "hide.":
                if hide { throw Self.invalid(name, "hide. twice") }
                hide = true
            case "srch.":
                if srch { throw Self.invalid(name, "srch. twice") }
                srch = true
            case "totl.":
                if totl { throw Self.invalid(name, "totl. twice") }
                totl = true
            case "indx.":
                if indx { throw Self.invalid(name, "indx. twice") }
                indx = true
            default:
                if !found { throw Self.invalid(name, "a scoutfs. name without a tag") }
                return
            }
            pos += Self.tagLength
            found = true
        }
    }

    /// The tags of `name`, or none when it does not parse (what listing and deletion use).
    static func lenient(_ name: [UInt8]) -> XattrTags { (try? XattrTags(name)) ?? XattrTags() }

    private static func invalid(_ name: [UInt8], _ why: String) -> FSError {
        FSError(FSError.EINVAL, "xattr \(String(decoding: name, as: UTF8.self)): \(why)")
    }
}

/// `.totl.` and `.indx.` names and values (the original's `parse_totl_u64`,
/// `parse_dotted_u64s` and the totl/indx key layouts of `format.h`).
public enum XattrTagKeys {
    /// Longest u64 text accepted (octal U64_MAX).
    static let maxU64Text = 23

    /// A u64 in C's base-0 syntax (`0x` hex, leading `0` octal, else decimal), without the
    /// `+` and trailing newline `kstrtoull` would take; nil when it does not parse.
    public static func parseU64(_ text: ArraySlice<UInt8>) -> UInt64? {
        guard text.count > 0, text.count <= maxU64Text, text.first != UInt8(ascii: "+"), text.last != UInt8(ascii: "\n") else {
            return nil
        }
        // the original copies the bytes into a C string: it ends at the first NUL
        var s = text.prefix { $0 != 0 }
        // kstrtoull takes one trailing newline (rejected above unless a NUL came first)
        if s.last == UInt8(ascii: "\n") { s = s.dropLast() }
        guard !s.isEmpty else { return nil }
        var radix: UInt64 = 10
        if s.count >= 2, s.first == UInt8(ascii: "0"), s.dropFirst().first == UInt8(ascii: "x") || s.dropFirst().first == UInt8(ascii: "X") {
            radix = 16
            s = s.dropFirst(2)
            guard !s.isEmpty else { return nil }
        } else if s.first == UInt8(ascii: "0") {
            radix = 8
        }
        var v: UInt64 = 0
        for c in s {
            let d: UInt64
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt64(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt64(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt64(c - UInt8(ascii: "A") + 10)
            default: return nil
            }
            guard d < radix else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: radix)
            let (a, o2) = m.addingReportingOverflow(d)
            if o1 || o2 { return nil }
            v = a
        }
        return v
    }

    /// The last `count` dot-separated u64s of `name`, in order; nil when there are fewer or
    /// one does not parse.
    public static func dottedU64s(_ name: [UInt8], count: Int) -> [UInt64]? {
        var out = [UInt64](repeating: 0, count: count)
        var u = count - 1
        var end = name.count
        var i = name.count - 1
        while u >= 0 && i >= 0 {
            if name[i] == UInt8(ascii: ".") {
                guard let v = parseU64(name[(i + 1)..<end]) else { return nil }
                out[u] = v
                u -= 1
                end = i
            }
            i -= 1
        }
        return u == -1 ? out : nil
    }

    /// The totl item key of total `a.b.c`.
    public static func totlKey(_ a: UInt64, _ b: UInt64, _ c: UInt64) -> Key {
        Key(zone: KeyZone.xattrTotl, first: a, second: b, third: c)
    }

    /// The indx item key of `major.minor` for xattr `xid` of `ino`: the fields are spread over
    /// the key so that keys sort by major, minor, inode and xattr id.
    public static func indxKey(major: UInt8, minor: UInt64, ino: UInt64, xid: UInt64) -> Key {
        Key(
            zone: KeyZone.xattrIndx, first: UInt64(major) << 56 | minor >> 8, second: minor << 56 | ino >> 8,
            third: ino << 56 | xid >> 8, fourth: UInt8(truncatingIfNeeded: xid))
    }

    /// The fields of an indx item key.
    public static func indxFields(_ k: Key) -> (major: UInt8, minor: UInt64, ino: UInt64, xid: UInt64) {
        (UInt8(k.first >> 56), k.first << 8 | k.second >> 56, k.second << 8 | k.third >> 56, k.third << 8 | UInt64(k.fourth))
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
        let items = try state.withLock { () throws(FSError) in
            try forest.scanCommitted(from: XattrTagKeys.totlKey(name.0, name.1, name.2), through: LockRange.xattrTotl.end, limit: limit)
        }
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
            let items = try state.withLock { () throws(FSError) in
                try forest.scanCommitted(from: from, through: through, limit: max(limit - out.count, 64))
            }
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

extension XattrTags {
    init(hide: Bool = false, srch: Bool = false, totl: Bool = false, indx: Bool = false) {
        self.hide = hide
        self.srch = srch
        self.totl = totl
        self.indx = indx
    }
}
