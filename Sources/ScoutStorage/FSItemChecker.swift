import ScoutFormat

/// Checks the file system items of a volume against each other: fed the merged live items
/// in key order (`add`), then `finish`. Pure: it does no I/O and reports through a closure.
///
/// The rules are the ones our `Volume` keeps:
/// - every item of an inode number follows that inode's item, and every value decodes for
///   its zone and type (inode of the volume's format version, dirents, xattr headers, data
///   extents, symlink parts, index, orphan, quota and totl items);
/// - each DIRENT (dir, hash, pos) has a READDIR (dir, pos) with the same entry and a
///   LINK_BACKREF (ino, dir, pos) with the same name, and the reverse; each points at an
///   existing inode whose type matches the entry's;
/// - a regular file's (or other non-directory's) nlink is its number of backrefs; a
///   directory's is 2 plus its subdirectories (0 once it is removed); the root has no backref;
///   an inode with nlink 0 has an orphan item, and an orphan item's inode exists with nlink 0;
/// - a directory's i_size is the sum of its entries' name lengths; a symlink's parts hold
///   i_size bytes and a terminating NUL;
/// - the meta_seq index holds exactly one item per inode, at its meta_seq, and the data_seq
///   index one per inode with a non-zero data_seq;
/// - an xattr's parts hold exactly its header, name and value, and its key hashes its name;
/// - an inode's online_blocks and offline_blocks count its extents' blocks;
/// - a file's extents do not overlap each other and online ones lie on the data device.
///   Extents across files and free extents are compared by the caller (`extents`).
struct FSItemChecker {
    let formatVersion: UInt64
    let totalDataBlocks: UInt64
    let report: (CheckProblem.Kind, String) -> Void

    init(formatVersion: UInt64, totalDataBlocks: UInt64, report: @escaping (CheckProblem.Kind, String) -> Void) {
        self.formatVersion = formatVersion
        self.totalDataBlocks = totalDataBlocks
        self.report = report
    }

    struct InodeFacts {
        var nlink: UInt32
        var mode: UInt32
        var size: UInt64
        var metaSeq: UInt64
        var dataSeq: UInt64
        var onlineBlocks: UInt64
        var offlineBlocks: UInt64
        var backrefs: UInt32 = 0
        var subdirs: UInt32 = 0
        var nameBytes: UInt64 = 0
    }

    struct Link: Hashable {
        var ino: UInt64
        var dir: UInt64
        var pos: UInt64
    }

    struct SeqIno: Hashable {
        var seq: UInt64
        var ino: UInt64
    }

    /// An online file extent, for the caller's data accounting.
    struct FileExtent {
        var ino: UInt64
        var iblock: UInt64
        var blkno: UInt64
        var len: UInt64
    }

    var inodes: [UInt64: InodeFacts] = [:]
    /// `.totl.` totals as their items hold them and as the xattrs sum them; `.indx.` items and
    /// the index items the xattrs need (`Key`s of the xattr totl and indx zones).
    var totlItems: [Key: XattrTotlValue] = [:]
    var totlFromXattrs: [Key: XattrTotlValue] = [:]
    var indxItems: Set<Key> = []
    var indxFromXattrs: Set<Key> = []
    /// Links named by dirents: the entry's type and name hash.
    var direntLinks: [Link: (type: UInt8, hash: UInt64)] = [:]
    /// Links named by backrefs: the backref's name hash.
    var backrefLinks: [Link: UInt64] = [:]
    var metaIndex: Set<SeqIno> = []
    var dataIndex: Set<SeqIno> = []
    var orphans: Set<UInt64> = []
    private(set) var extents: [FileExtent] = []

    // the inode number whose items are being read
    var group: UInt64? = nil
    var groupHasInode = false
    var groupReportedNoInode = false
    var groupDirents: [UInt64: Dirent] = [:]
    var groupReaddirs: [UInt64: Dirent] = [:]
    var groupExtentEnd: UInt64? = nil
    var groupSymlinkBytes = 0
    var groupSymlinkParts: UInt64 = 0
    var groupSymlinkLast: UInt8 = 0
    /// The xattr whose parts are being read: name hash, id, the bytes so far, parts seen.
    var groupXattr: (hash: UInt64, id: UInt64, bytes: [UInt8], parts: Int)? = nil
    /// Blocks of the inode's extents: online (with data blocks, unwritten included) and offline.
    var groupOnline: UInt64 = 0
    var groupOffline: UInt64 = 0

    var inodeCount: Int { inodes.count }

    static let sIFMT: UInt32 = 0o170000
    static let sIFDIR: UInt32 = 0o040000
    static let sIFLNK: UInt32 = 0o120000

    static func isDir(_ mode: UInt32) -> Bool { mode & sIFMT == sIFDIR }

    /// The dirent type of a mode, as `Volume` writes it.
    static func dtype(_ mode: UInt32) -> UInt8 {
        switch mode & sIFMT {
        case 0o010000: return Dirent.DType.fifo.rawValue
        case 0o020000: return Dirent.DType.chr.rawValue
        case 0o040000: return Dirent.DType.dir.rawValue
        case 0o060000: return Dirent.DType.blk.rawValue
        case 0o120000: return Dirent.DType.lnk.rawValue
        case 0o140000: return Dirent.DType.sock.rawValue
        default: return Dirent.DType.reg.rawValue
        }
    }

    static func nameText(_ name: [UInt8]) -> String {
        "'" + String(decoding: name, as: UTF8.self) + "'"
    }

    // MARK: - items

    mutating func add(_ key: Key, _ value: [UInt8]) {
        switch key.zone {
        case KeyZone.inodeIndex:
            guard value.isEmpty, key.first == 0, key.fourth == 0 else {
                report(.item, "index item \(key): not an index key with an empty value")
                return
            }
            switch key.type {
            case KeyType.inodeIndexMetaSeq: metaIndex.insert(SeqIno(seq: key.second, ino: key.third))
            case KeyType.inodeIndexDataSeq: dataIndex.insert(SeqIno(seq: key.second, ino: key.third))
            default: report(.item, "index item \(key): unknown index type \(key.type)")
            }
        case KeyZone.orphan:
            guard key.type == KeyType.orphan, value.isEmpty else {
                report(.item, "orphan item \(key): unknown type or a value")
                return
            }
            orphans.insert(key.second)
        case KeyZone.quota:
            if key.type != KeyType.quotaRule || (try? QuotaRuleValue.decode(value)) == nil {
                report(.item, "quota item \(key): not a quota rule (\(value.count)-byte value)")
            }
        case KeyZone.xattrTotl:
            if let v = try? XattrTotlValue.decode(value), value.count == XattrTotlValue.encodedSize {
                totlItems[key] = v
            } else {
                report(.item, "xattr totl item \(key): \(value.count)-byte value")
            }
        case KeyZone.xattrIndx:
            if !value.isEmpty { report(.item, "xattr indx item \(key): \(value.count)-byte value") }
            indxItems.insert(key)
        case KeyZone.fs:
            addFS(key, value)
        default:
            report(.item, "item \(key): zone \(key.zone) does not belong in the fs items")
        }
    }

    mutating func addFS(_ key: Key, _ value: [UInt8]) {
        let ino = key.first
        if group != ino {
            finishGroup()
            group = ino
        }
        if key.type == KeyType.inode {
            guard key.second == 0, key.third == 0, key.fourth == 0 else {
                report(.item, "inode item \(key): extra key fields")
                return
            }
            guard Inode.isValidSize(value.count, version: formatVersion), let i = try? Inode.decode(value) else {
                report(.item, "inode \(ino): \(value.count)-byte inode value for format version \(formatVersion)")
                return
            }
            groupHasInode = true
            inodes[ino] = InodeFacts(
                nlink: i.nlink, mode: i.mode, size: i.size, metaSeq: i.metaSeq, dataSeq: i.dataSeq,
                onlineBlocks: i.onlineBlocks, offlineBlocks: i.offlineBlocks)
            return
        }
        if !groupHasInode && !groupReportedNoInode {
            report(.inode, "ino \(ino): item \(key) but no inode item")
            groupReportedNoInode = true
        }
        switch key.type {
        case KeyType.xattr:
            if value.isEmpty || value.count > Format.btreeMaxValueLength {
                report(.item, "xattr item \(key): \(value.count)-byte value")
                return
            }
            if let x = groupXattr, x.hash != key.second || x.id != key.third { finishXattr() }
            if groupXattr == nil {
                groupXattr = (key.second, key.third, [], 0)
                if key.fourth != 0 { report(.item, "xattr item \(key): parts before \(key.fourth) are missing") }
            } else if Int(key.fourth) != groupXattr!.parts {
                report(.item, "xattr item \(key): part \(key.fourth) after \(groupXattr!.parts) parts")
            }
            groupXattr!.bytes += value
            groupXattr!.parts = Int(key.fourth) + 1
        case KeyType.dirent:
            guard let d = decodeDirent(key, value, "dirent") else { return }
            if d.hash != key.second || d.pos != key.third || d.hash != Dirent.nameHash(d.name) {
                report(.dirent, "dirent \(key) \(Self.nameText(d.name)): holds hash \(hex(d.hash)) pos \(d.pos), the name hashes to \(hex(Dirent.nameHash(d.name)))")
            }
            groupDirents[key.third] = d
            direntLinks[Link(ino: d.ino, dir: ino, pos: key.third)] = (d.type, Dirent.nameHash(d.name))
            if inodes[ino] != nil {
                inodes[ino]!.nameBytes += UInt64(d.name.count)
                if d.type == Dirent.DType.dir.rawValue { inodes[ino]!.subdirs &+= 1 }
            }
        case KeyType.readdir:
            guard let d = decodeDirent(key, value, "readdir") else { return }
            if d.pos != key.second || key.third != 0 {
                report(.dirent, "readdir \(key) \(Self.nameText(d.name)): holds pos \(d.pos)")
            }
            groupReaddirs[key.second] = d
        case KeyType.linkBackref:
            guard let d = decodeDirent(key, value, "link backref") else { return }
            if d.ino != ino || d.pos != key.third {
                report(.dirent, "link backref \(key) \(Self.nameText(d.name)): holds ino \(d.ino) pos \(d.pos)")
            }
            backrefLinks[Link(ino: ino, dir: key.second, pos: key.third)] = Dirent.nameHash(d.name)
            if inodes[ino] != nil { inodes[ino]!.backrefs &+= 1 }
        case KeyType.symlink:
            if value.isEmpty || value.count > Format.btreeMaxValueLength || key.second != groupSymlinkParts {
                report(.item, "symlink item \(key): part \(key.second) of \(value.count) bytes after \(groupSymlinkParts) parts")
            }
            groupSymlinkParts = key.second &+ 1
            groupSymlinkBytes += value.count
            groupSymlinkLast = value.last ?? 0
        case KeyType.dataExtent:
            addExtent(key, value)
        default:
            report(.item, "item \(key): unknown fs item type \(key.type)")
        }
    }

    mutating func decodeDirent(_ key: Key, _ value: [UInt8], _ what: String) -> Dirent? {
        guard let d = try? Dirent.decode(value) else {
            report(.item, "\(what) \(key): \(value.count)-byte value does not decode as a dirent")
            return nil
        }
        return d
    }

    mutating func addExtent(_ key: Key, _ value: [UInt8]) {
        let ino = key.first
        let end = key.second
        let len = key.third
        guard len > 0, len <= end &+ 1, key.fourth == 0, let v = try? DataExtentValue.decode(value) else {
            report(.extent, "ino \(ino): extent item \(key) is invalid (\(value.count)-byte value)")
            return
        }
        let start = end - (len - 1)
        if let prev = groupExtentEnd, start <= prev {
            report(.extent, "ino \(ino): extent at iblock \(start)+\(len) overlaps the extent ending at iblock \(prev)")
        }
        groupExtentEnd = end
        let known = DataExtentValue.flagOffline | DataExtentValue.flagUnwritten
        if v.flags & ~known != 0 { report(.extent, "ino \(ino): extent at iblock \(start)+\(len) has unknown flags \(hex(v.flags))") }
        if v.flags & DataExtentValue.flagOffline != 0 { groupOffline &+= len } else { groupOnline &+= len }
        if v.blkno == 0 {
            if v.flags & DataExtentValue.flagOffline == 0 {
                report(.extent, "ino \(ino): extent at iblock \(start)+\(len) has no blocks and is not offline")
            }
            return
        }
        if v.flags & DataExtentValue.flagOffline != 0 {
            report(.extent, "ino \(ino): offline extent at iblock \(start)+\(len) has data blocks at \(v.blkno)")
        }
        extents.append(FileExtent(ino: ino, iblock: start, blkno: v.blkno, len: len))
    }

    /// Checks one whole xattr: its header, name and value fill its parts exactly, every part
    /// but the last is full, and the key's hash is the name's.
    mutating func finishXattr() {
        guard let x = groupXattr, let ino = group else { return }
        groupXattr = nil
        let what = "ino \(ino): xattr hash \(hex(x.hash)) id \(x.id)"
        guard x.bytes.count >= XattrHeader.encodedSize, let h = try? XattrHeader.decode(Array(x.bytes.prefix(XattrHeader.encodedSize))) else {
            report(.item, "\(what): \(x.bytes.count) bytes do not hold an xattr header")
            return
        }
        let total = XattrHeader.encodedSize + Int(h.nameLen) + Int(h.valLen)
        guard h.nameLen > 0, x.bytes.count == total else {
            report(.item, "\(what): name of \(h.nameLen) and value of \(h.valLen) bytes in \(x.bytes.count) bytes of parts")
            return
        }
        if x.parts != XattrHeader.partCount(nameLen: Int(h.nameLen), valLen: Int(h.valLen)) {
            report(.item, "\(what): \(total) bytes in \(x.parts) parts")
        }
        let name = Array(x.bytes[XattrHeader.encodedSize..<(XattrHeader.encodedSize + Int(h.nameLen))])
        if UInt64(FNV1a.hash32(name)) != x.hash {
            report(.item, "\(what): name \(Self.nameText(name)) hashes to \(hex(FNV1a.hash32(name)))")
        }
        // what a tagged xattr adds to the totals and the index
        let tags = XattrTags.lenient(name)
        if tags.totl, let n = XattrTagKeys.dottedU64s(name, count: 3) {
            let value = x.bytes[(XattrHeader.encodedSize + Int(h.nameLen))...]
            if let v = XattrTagKeys.parseU64(value) {
                let k = XattrTagKeys.totlKey(n[0], n[1], n[2])
                let o = totlFromXattrs[k] ?? XattrTotlValue(total: 0, count: 0)
                totlFromXattrs[k] = XattrTotlValue(total: o.total &+ v, count: o.count &+ 1)
            } else {
                report(.item, "\(what): totl xattr \(Self.nameText(name)) has a value that is not a u64")
            }
        } else if tags.indx, let n = XattrTagKeys.dottedU64s(name, count: 2), n[0] <= 255 {
            indxFromXattrs.insert(XattrTagKeys.indxKey(major: UInt8(n[0]), minor: n[1], ino: ino, xid: x.id))
        }
    }

    /// The totl items hold exactly the sums of the `.totl.` xattrs (none where they sum to
    /// nothing), and the indx items are exactly those of the `.indx.` xattrs.
    mutating func finishTags() {
        var reported = 0
        for (k, v) in totlFromXattrs.sorted(by: { $0.key < $1.key }) where !(v.total == 0 && v.count == 0) && reported < 10 {
            if totlItems[k] != v {
                reported += 1
                let got = totlItems[k].map { "\(Int64(bitPattern: $0.total)), \(Int64(bitPattern: $0.count))" } ?? "no item"
                report(.item, "xattr totl \(k.first).\(k.second).\(k.third): xattrs sum to \(v.total), \(v.count), the item holds \(got)")
            }
        }
        for (k, v) in totlItems.sorted(by: { $0.key < $1.key }) where totlFromXattrs[k] == nil && reported < 10 {
            reported += 1
            report(.item, "xattr totl \(k.first).\(k.second).\(k.third): \(Int64(bitPattern: v.total)), \(Int64(bitPattern: v.count)) but no xattr adds to it")
        }
        for k in indxItems.subtracting(indxFromXattrs).sorted().prefix(10) {
            let f = XattrTagKeys.indxFields(k)
            report(.item, "xattr indx \(f.major).\(f.minor) ino \(f.ino) xid \(f.xid): no such .indx. xattr")
        }
        for k in indxFromXattrs.subtracting(indxItems).sorted().prefix(10) {
            let f = XattrTagKeys.indxFields(k)
            report(.item, "ino \(f.ino): .indx. xattr id \(f.xid) at \(f.major).\(f.minor) has no index item")
        }
    }

    /// Checks that need all of one inode number's items.
    mutating func finishGroup() {
        guard let ino = group else { return }
        finishXattr()
        for (pos, d) in groupDirents.sorted(by: { $0.key < $1.key }) {
            guard let r = groupReaddirs.removeValue(forKey: pos) else {
                report(.dirent, "dir \(ino): dirent \(Self.nameText(d.name)) (pos \(pos)) has no readdir item")
                continue
            }
            if r.ino != d.ino || r.name != d.name || r.type != d.type || r.hash != d.hash {
                report(.dirent, "dir \(ino): readdir item at pos \(pos) (\(Self.nameText(r.name)) ino \(r.ino)) differs from its dirent (\(Self.nameText(d.name)) ino \(d.ino))")
            }
        }
        for (pos, r) in groupReaddirs.sorted(by: { $0.key < $1.key }) {
            report(.dirent, "dir \(ino): readdir item \(Self.nameText(r.name)) (pos \(pos)) has no dirent")
        }
        if let i = inodes[ino] {
            if !groupDirents.isEmpty && !Self.isDir(i.mode) {
                report(.dirent, "ino \(ino): holds dirents but is not a directory (mode \(String(i.mode, radix: 8)))")
            }
            if i.mode & Self.sIFMT == Self.sIFLNK {
                if UInt64(groupSymlinkBytes) != i.size &+ 1 || groupSymlinkLast != 0 {
                    report(.inode, "ino \(ino): symlink of size \(i.size) has \(groupSymlinkBytes) bytes of target parts")
                }
            } else if groupSymlinkParts > 0 {
                report(.inode, "ino \(ino): symlink items but not a symlink (mode \(String(i.mode, radix: 8)))")
            }
            if i.onlineBlocks != groupOnline || i.offlineBlocks != groupOffline {
                report(.inode, "inode \(ino): online_blocks \(i.onlineBlocks) offline_blocks \(i.offlineBlocks) but its extents hold \(groupOnline) online and \(groupOffline) offline")
            }
        }
        group = nil
        groupHasInode = false
        groupReportedNoInode = false
        groupDirents = [:]
        groupReaddirs = [:]
        groupExtentEnd = nil
        groupSymlinkBytes = 0
        groupSymlinkParts = 0
        groupSymlinkLast = 0
        groupOnline = 0
        groupOffline = 0
    }

    // MARK: - across inodes

    mutating func finish() {
        finishGroup()
        finishTags()
        for (link, entry) in direntLinks.sorted(by: { ($0.key.dir, $0.key.pos) < ($1.key.dir, $1.key.pos) }) {
            guard let target = inodes[link.ino] else {
                report(.dirent, "dir \(link.dir): dirent at pos \(link.pos) points at ino \(link.ino), which has no inode")
                continue
            }
            if Self.dtype(target.mode) != entry.type {
                report(.dirent, "dir \(link.dir): dirent at pos \(link.pos) has type \(entry.type), ino \(link.ino) has mode \(String(target.mode, radix: 8))")
            }
            guard let backHash = backrefLinks[link] else {
                report(.dirent, "ino \(link.ino): no link backref for its dirent in dir \(link.dir) at pos \(link.pos)")
                continue
            }
            if backHash != entry.hash {
                report(.dirent, "ino \(link.ino): link backref for dir \(link.dir) pos \(link.pos) names another name than its dirent")
            }
        }
        for link in backrefLinks.keys.sorted(by: { ($0.ino, $0.dir, $0.pos) < ($1.ino, $1.dir, $1.pos) }) where direntLinks[link] == nil {
            report(.dirent, "ino \(link.ino): link backref to dir \(link.dir) pos \(link.pos) has no dirent")
        }

        for (ino, i) in inodes.sorted(by: { $0.key < $1.key }) {
            let expected: UInt64
            let what: String
            if Self.isDir(i.mode) {
                expected = (ino == Format.rootIno || i.backrefs > 0) ? 2 + UInt64(i.subdirs) : 0
                what = i.backrefs == 0 && ino != Format.rootIno ? "no entry (removed)" : "\(i.subdirs) subdirectories"
                if i.size != i.nameBytes {
                    report(.inode, "dir \(ino): size \(i.size) but its entries' names hold \(i.nameBytes) bytes")
                }
                if ino == Format.rootIno && i.backrefs > 0 {
                    report(.linkCount, "dir \(ino): the root directory has \(i.backrefs) link backrefs")
                } else if i.backrefs > 1 {
                    report(.linkCount, "dir \(ino): \(i.backrefs) link backrefs (a directory has one)")
                }
            } else {
                expected = UInt64(i.backrefs)
                what = "\(i.backrefs) backref\(i.backrefs == 1 ? "" : "s")"
            }
            if UInt64(i.nlink) != expected {
                report(.linkCount, "inode \(ino): nlink \(i.nlink) but \(what)")
            }
            if i.nlink == 0 && !orphans.contains(ino) {
                report(.orphan, "inode \(ino): nlink 0 without an orphan item")
            }
            if !metaIndex.contains(SeqIno(seq: i.metaSeq, ino: ino)) {
                report(.seqIndex, "inode \(ino): no meta_seq index item for its meta_seq \(i.metaSeq)")
            }
            if i.dataSeq != 0 && !dataIndex.contains(SeqIno(seq: i.dataSeq, ino: ino)) {
                report(.seqIndex, "inode \(ino): no data_seq index item for its data_seq \(i.dataSeq)")
            }
        }
        for ino in orphans.sorted() {
            guard let i = inodes[ino] else {
                report(.orphan, "orphan item for ino \(ino): no inode")
                continue
            }
            if i.nlink != 0 { report(.orphan, "orphan item for ino \(ino): its inode has nlink \(i.nlink)") }
        }
        for (index, name, seqOf) in [(metaIndex, "meta_seq", \InodeFacts.metaSeq), (dataIndex, "data_seq", \InodeFacts.dataSeq)] {
            for e in index.sorted(by: { ($0.seq, $0.ino) < ($1.seq, $1.ino) }) {
                guard let i = inodes[e.ino] else {
                    report(.seqIndex, "\(name) index item seq \(e.seq) ino \(e.ino): no inode")
                    continue
                }
                if i[keyPath: seqOf] != e.seq {
                    report(.seqIndex, "\(name) index item seq \(e.seq) ino \(e.ino): the inode's \(name) is \(i[keyPath: seqOf])")
                }
            }
        }
    }
}
