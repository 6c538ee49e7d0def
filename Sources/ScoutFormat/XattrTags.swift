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

    public static let prefix = Array("scoutfs.".utf8)
    public static let tagLength = 5

    public init(hide: Bool = false, srch: Bool = false, totl: Bool = false, indx: Bool = false) {
        self.hide = hide
        self.srch = srch
        self.totl = totl
        self.indx = indx
    }

    /// The tags of `name`; nil for an untagged `scoutfs.` name or a repeated tag (EINVAL).
    public static func parse(_ name: [UInt8]) -> XattrTags? {
        var t = XattrTags()
        guard name.count >= prefix.count + tagLength + 1, name.starts(with: prefix) else { return t }
        var pos = prefix.count
        var found = false
        while true {
            let tag = name.count >= pos + tagLength ? name[pos..<(pos + tagLength)] : []
            switch String(decoding: tag, as: UTF8.self) {
            case "hide.":
                if t.hide { return nil }
                t.hide = true
            case "srch.":
                if t.srch { return nil }
                t.srch = true
            case "totl.":
                if t.totl { return nil }
                t.totl = true
            case "indx.":
                if t.indx { return nil }
                t.indx = true
            default:
                return found ? t : nil
            }
            pos += tagLength
            found = true
        }
    }

    /// The tags of `name`, or none when it does not parse (what listing and deletion use).
    public static func lenient(_ name: [UInt8]) -> XattrTags { parse(name) ?? XattrTags() }
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

