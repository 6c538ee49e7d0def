/// A POSIX draft ACL in the form the kernel hands to and takes from a filesystem as the value
/// of `system.posix_acl_access` / `system.posix_acl_default`: a little-endian version word (2)
/// followed by 8-byte entries (tag u16, perm u16, id u32).
///
/// The rules are the kernel's (and so ext4's and tmpfs's): an ACL is valid when its entries come
/// in tag order (owner, named users, owning group, named groups, mask, other) with exactly one
/// owner, owning group and other entry, a mask whenever there are named entries, and
/// permissions within rwx. The mode's group bits stand for the mask when there is one, for
/// the owning group otherwise.
struct PosixACL: Equatable, Sendable {
    enum Tag: UInt16, Sendable, Comparable {
        case userObj = 0x01
        case user = 0x02
        case groupObj = 0x04
        case group = 0x08
        case mask = 0x10
        case other = 0x20

        static func < (a: Tag, b: Tag) -> Bool { a.rawValue < b.rawValue }
    }

    struct Entry: Equatable, Sendable {
        var tag: Tag
        /// rwx in the low three bits
        var perm: UInt16
        /// uid or gid for `user`/`group` entries; the kernel writes `undefinedID` for the others
        var id: UInt32
    }

    static let accessName = Array("system.posix_acl_access".utf8)
    static let defaultName = Array("system.posix_acl_default".utf8)
    static let version: UInt32 = 2
    static let undefinedID = UInt32.max

    var entries: [Entry]

    /// Decodes and validates a value; EINVAL (with what is wrong) when it is not a valid ACL.
    init(decoding bytes: [UInt8]) throws(FSError) {
        func invalid(_ why: String) -> FSError { FSError(FSError.EINVAL, "POSIX ACL xattr: \(why)") }
        guard bytes.count >= 4, (bytes.count - 4) % 8 == 0 else {
            throw invalid("\(bytes.count) bytes is not a 4-byte header plus 8-byte entries")
        }
        func u16(_ at: Int) -> UInt16 { UInt16(bytes[at]) | UInt16(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> UInt32 { UInt32(u16(at)) | UInt32(u16(at + 2)) << 16 }
        let v = u32(0)
        guard v == Self.version else { throw invalid("version \(v), expected \(Self.version)") }
        var entries: [Entry] = []
        var at = 4
        while at < bytes.count {
            guard let tag = Tag(rawValue: u16(at)) else { throw invalid("unknown tag 0x\(String(u16(at), radix: 16))") }
            entries.append(Entry(tag: tag, perm: u16(at + 2), id: u32(at + 4)))
            at += 8
        }
        self.entries = entries
        try validate()
    }

    init(entries: [Entry]) {
        self.entries = entries
    }

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(4 + 8 * entries.count)
        func put16(_ v: UInt16) { out += [UInt8(truncatingIfNeeded: v), UInt8(truncatingIfNeeded: v >> 8)] }
        func put32(_ v: UInt32) {
            put16(UInt16(truncatingIfNeeded: v))
            put16(UInt16(truncatingIfNeeded: v >> 16))
        }
        put32(Self.version)
        for e in entries {
            put16(e.tag.rawValue)
            put16(e.perm)
            put32(e.tag == .user || e.tag == .group ? e.id : Self.undefinedID)
        }
        return out
    }

    private func validate() throws(FSError) {
        func invalid(_ why: String) -> FSError { FSError(FSError.EINVAL, "POSIX ACL: \(why)") }
        var previous: Tag?
        var named = false
        for e in entries {
            guard e.perm & ~0o7 == 0 else { throw invalid("permission 0o\(String(e.perm, radix: 8)) beyond rwx") }
            if let p = previous {
                let repeatable = e.tag == .user || e.tag == .group
                guard p < e.tag || (p == e.tag && repeatable) else { throw invalid("entries out of order or repeated") }
            } else {
                guard e.tag == .userObj else { throw invalid("the first entry is not the owner's") }
            }
            if e.tag == .user || e.tag == .group { named = true }
            previous = e.tag
        }
        for required in [Tag.userObj, .groupObj, .other] where !entries.contains(where: { $0.tag == required }) {
            throw invalid("no \(required) entry")
        }
        if named && !entries.contains(where: { $0.tag == .mask }) { throw invalid("named entries without a mask entry") }
    }

    private func index(of tag: Tag) -> Int? { entries.firstIndex { $0.tag == tag } }

    /// Whether the mode bits can say everything this ACL says (no named entries, no mask).
    var isEquivalentToMode: Bool {
        !entries.contains { $0.tag == .user || $0.tag == .group || $0.tag == .mask }
    }

    /// `mode` with its rwx bits as this ACL states them (owner, mask or owning group, other);
    /// type and setuid/setgid/sticky bits kept.
    func mode(from mode: UInt32) -> UInt32 {
        var owner: UInt16 = 0
        var group: UInt16 = 0
        var other: UInt16 = 0
        var mask: UInt16?
        for e in entries {
            switch e.tag {
            case .userObj: owner = e.perm
            case .groupObj: group = e.perm
            case .mask: mask = e.perm
            case .other: other = e.perm
            case .user, .group: break
            }
        }
        let bits = UInt32(owner) << 6 | UInt32(mask ?? group) << 3 | UInt32(other)
        return (mode & ~0o777) | bits
    }

    /// chmod: the owner, group class (mask if any, else owning group) and other entries take
    /// the mode's bits; named entries stay.
    mutating func chmod(_ mode: UInt32) {
        let groupClass: Tag = index(of: .mask) != nil ? .mask : .groupObj
        for i in entries.indices {
            switch entries[i].tag {
            case .userObj: entries[i].perm = UInt16(mode >> 6 & 0o7)
            case .other: entries[i].perm = UInt16(mode & 0o7)
            case groupClass: entries[i].perm = UInt16(mode >> 3 & 0o7)
            default: break
            }
        }
    }

    /// A parent's default ACL applied to a new inode asking for `mode`: each class's entry
    /// keeps only what `mode` grants, and `mode` keeps only what the entries grant (the
    /// group class through the mask when there is one). Returns the new mode.
    mutating func restrict(creating mode: UInt32) -> UInt32 {
        var mode = mode
        let groupClass: Tag = index(of: .mask) != nil ? .mask : .groupObj
        for i in entries.indices {
            let shift: UInt32
            switch entries[i].tag {
            case .userObj: shift = 6
            case .other: shift = 0
            case groupClass: shift = 3
            default: continue
            }
            let allowed = UInt16(mode >> shift & 0o7)
            entries[i].perm &= allowed
            mode &= ~(UInt32(0o7 & ~entries[i].perm) << shift)
        }
        return mode
    }
}
