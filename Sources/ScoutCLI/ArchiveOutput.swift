import ScoutAgent
import ScoutIoctl

#if canImport(Glibc)
import Glibc
#endif

/// The archive commands' output: pure functions from typed ioctl results to the lines the
/// original's printf formats produce.
enum ArchiveOutput {
    // MARK: walk-inodes

    /// `%-20s %-20s %-10s %-20s` of "#", "major", "minor", "ino".
    static let walkInodesHeader = leftJustified("#", 20) + " " + leftJustified("major", 20) + " " + leftJustified("minor", 10) + " "
        + leftJustified("ino", 20)

    /// The lines for `entries` when `total` were printed before: the header before every
    /// 25th row, then `%-20llu %-20llu %-10u %-20llu` (row number, major, minor, ino).
    static func walkInodesLines(_ entries: [WalkInodesEntry], total: UInt64) -> [String] {
        var bytes: [UInt8] = []
        appendWalkInodesLines(entries, total: total, to: &bytes)
        return String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).dropLast().map(String.init)
    }

    /// The same lines, each ending in a newline, appended as bytes (a walk prints millions).
    static func appendWalkInodesLines(_ entries: [WalkInodesEntry], total: UInt64, to out: inout [UInt8]) {
        let header = Array(walkInodesHeader.utf8)
        for (i, e) in entries.enumerated() {
            let n = total + UInt64(i)
            if n % 25 == 0 {
                out += header
                out.append(10)
            }
            appendLeftJustified(n, 20, to: &out)
            out.append(32)
            appendLeftJustified(e.major, 20, to: &out)
            out.append(32)
            appendLeftJustified(UInt64(e.minor), 10, to: &out)
            out.append(32)
            appendLeftJustified(e.ino, 20, to: &out)
            out.append(10)
        }
    }

    /// `%-Nllu` of `v`: its digits written in place, then spaces to `width`.
    static func appendLeftJustified(_ v: UInt64, _ width: Int, to out: inout [UInt8]) {
        var digits = 1
        var n = v
        while n >= 10 {
            n /= 10
            digits += 1
        }
        let start = out.count
        out.append(contentsOf: repeatElement(32, count: max(width, digits)))
        out.withUnsafeMutableBufferPointer { p in
            var x = v
            var i = start + digits - 1
            repeat {
                p[i] = UInt8(ascii: "0") + UInt8(x % 10)
                x /= 10
                i -= 1
            } while x > 0
        }
    }

    // MARK: stat and statfs

    static let statFields = ["meta_seq", "data_seq", "data_version", "online_blocks", "offline_blocks", "crtime"]
    static let statfsFields = ["fsid", "rid", "committed_seq", "total_meta_blocks", "total_data_blocks"]

    /// One STAT_MORE field's value, or nil for an unknown name.
    static func statValue(_ s: StatMore, _ field: String) -> String? {
        switch field {
        case "meta_seq": return String(s.metaSeq)
        case "data_seq": return String(s.dataSeq)
        case "data_version": return String(s.dataVersion)
        case "online_blocks": return String(s.onlineBlocks)
        case "offline_blocks": return String(s.offlineBlocks)
        case "crtime": return "\(s.crtimeSec).\(zeroPadded(s.crtimeNsec, 9))"
        default: return nil
        }
    }

    /// One STATFS_MORE field's value, or nil for an unknown name.
    static func statfsValue(_ s: StatfsMore, _ field: String) -> String? {
        switch field {
        case "fsid": return hex16(s.fsid)
        case "rid": return hex16(s.rid)
        case "committed_seq": return String(s.committedSeq)
        case "total_meta_blocks": return String(s.totalMetaBlocks)
        case "total_data_blocks": return String(s.totalDataBlocks)
        default: return nil
        }
    }

    /// `%-17s value` for every field, or the bare value of `single`.
    static func fieldLines(fields: [String], single: String?, value: (String) -> String?) -> [String] {
        if let single { return [value(single) ?? ""] }
        return fields.map { leftJustified($0, 17) + " " + (value($0) ?? "") }
    }

    static func statLines(_ s: StatMore, single: String? = nil) -> [String] {
        fieldLines(fields: statFields, single: single) { statValue(s, $0) }
    }

    static func statfsLines(_ s: StatfsMore, single: String? = nil) -> [String] {
        fieldLines(fields: statfsFields, single: single) { statfsValue(s, $0) }
    }

    // MARK: data-waiting

    /// The op bits as the original's OP_FMT triple: each set bit's name, followed by a comma
    /// when any more significant bit (known or not) is set too.
    static func opString(_ op: UInt8) -> String {
        var s = ""
        for (bit, name) in [(DataWaitingEntry.opRead, "read"), (DataWaitingEntry.opWrite, "write"), (DataWaitingEntry.opChangeSize, "change_size")]
        where op & bit != 0 {
            s += name
            if op & ~(bit << 1 &- 1) != 0 { s += "," }
        }
        return s
    }

    static func dataWaitingLine(_ e: DataWaitingEntry) -> String {
        "ino \(e.ino) iblock \(e.iblock) ops \(opString(e.op))"
    }

    static func dataWaitErrLine(_ found: Int) -> String { "data_wait_err found \(found) waiters." }

    // MARK: ino-path and get-referring-entries

    /// `%.*s` of the path.
    static func inoPathLine(_ r: InoPathResult) -> [UInt8] {
        if let nul = r.path.firstIndex(of: 0) { return Array(r.path[..<nul]) }
        return r.path
    }

    /// `dir D pos P type T name N`.
    static func referringEntryLine(_ e: ReferringEntry) -> [UInt8] {
        let name = e.name.firstIndex(of: 0).map { Array(e.name[..<$0]) } ?? e.name
        return Array("dir \(e.dirIno) pos \(e.dirPos) type \(e.dType) name ".utf8) + name
    }

    // MARK: get-attr-x

    /// `label: value` for each attribute in the mask, or the bare value when the mask has
    /// a single bit. Times are `sec.nsec` (nsec unpadded), retention 0 or 1.
    static func attrXLines(_ x: InodeAttrX) -> [String] {
        let labelled = x.mask.nonzeroBitCount > 1
        var out: [String] = []
        func pr(_ bit: UInt64, _ label: String, _ value: String) {
            guard x.mask & bit != 0 else { return }
            out.append(labelled ? "\(label): \(value)" : value)
        }
        pr(InodeAttrX.maskMetaSeq, "meta_seq", String(x.metaSeq))
        pr(InodeAttrX.maskDataSeq, "data_seq", String(x.dataSeq))
        pr(InodeAttrX.maskDataVersion, "data_version", String(x.dataVersion))
        pr(InodeAttrX.maskOnlineBlocks, "online_blocks", String(x.onlineBlocks))
        pr(InodeAttrX.maskOfflineBlocks, "offline_blocks", String(x.offlineBlocks))
        pr(InodeAttrX.maskCtime, "ctime", "\(x.ctimeSec).\(x.ctimeNsec)")
        pr(InodeAttrX.maskCrtime, "crtime", "\(x.crtimeSec).\(x.crtimeNsec)")
        pr(InodeAttrX.maskSize, "size", String(x.size))
        pr(InodeAttrX.maskRetention, "retention", x.bits & InodeAttrX.bitRetention != 0 ? "1" : "0")
        pr(InodeAttrX.maskProjectID, "project_id", String(x.projectID))
        return out
    }

    // MARK: get-fiemap

    /// Which offsets a fiemap line shows: both (the default), `-P` physical or `-L` logical.
    enum FiemapOffsets: Equatable {
        case both, physical, logical
    }

    /// `N: offset: L [P] length: LEN flags: OUL`, in blocks of `blockSize` unless `bytes`.
    static func fiemapLine(_ n: UInt64, _ e: FiemapExtent, blockSize: UInt64, bytes: Bool, offsets: FiemapOffsets) -> String {
        var p = e.physical
        var l = e.logical
        var len = e.length
        if !bytes && blockSize > 0 {
            p /= blockSize
            l /= blockSize
            len /= blockSize
        }
        let off: String
        switch offsets {
        case .logical: off = "\(l) "
        case .physical: off = "\(p) "
        case .both: off = "\(l) \(p) "
        }
        let flags = (e.flags & FiemapExtent.flagUnknown != 0 ? "O" : ".") + (e.flags & FiemapExtent.flagUnwritten != 0 ? "U" : ".")
            + (e.flags & FiemapExtent.flagLast != 0 ? "L" : ".")
        return "\(n): offset: \(off)length: \(len) flags: \(flags)"
    }

    static func fiemapTotal(_ n: UInt64) -> String { "extents: \(n)" }

    // MARK: df

    static let metaBlockSize: UInt64 = 64 * 1024
    static let dataBlockSize: UInt64 = 4 * 1024

    /// The original's BASE_SIZE_FMT ("%.2f%s" of a float divided down by 1024 with B, KB, …).
    static func baseSize(_ bytes: UInt64) -> String {
        var x = Float(bytes)
        var i = 0
        let suffixes = ["B", "KB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
        while x >= 1024 {
            x /= 1024
            i += 1
        }
        return cFormat("%.2f", [Double(x)]) + suffixes[min(i, suffixes.count - 1)]
    }

    /// The df table: free blocks summed from the allocators (meta free less the reserve),
    /// cells right-aligned to their column's widest, each followed by two spaces.
    static func dfLines(_ sfm: StatfsMore, _ entries: [AllocDetailEntry], human: Bool) -> [String] {
        var metaFree: UInt64 = 0
        var dataFree: UInt64 = 0
        for e in entries {
            if e.meta { metaFree &+= e.blocks } else { dataFree &+= e.blocks }
        }
        metaFree = metaFree >= sfm.reservedMetaBlocks ? metaFree - sfm.reservedMetaBlocks : 0
        func row(_ type: String, _ size: String, _ total: UInt64, _ free: UInt64, _ bs: UInt64) -> [String] {
            let used = total &- free
            let cells = human ? [baseSize(total &* bs), baseSize(used &* bs), baseSize(free &* bs)] : [String(total), String(used), String(free)]
            let pct = total == 0 ? "0" : String(used &* 100 / total)
            return [type, size] + cells + [pct]
        }
        let rows = [
            ["Type", "Size", "Total", "Used", "Free", "Use%"],
            row("MetaData", "64KB", sfm.totalMetaBlocks, metaFree, metaBlockSize),
            row("Data", "4KB", sfm.totalDataBlocks, dataFree, dataBlockSize),
        ]
        var wid = [Int](repeating: 0, count: 6)
        for r in rows { for (c, cell) in r.enumerated() { wid[c] = max(wid[c], min(cell.count, 19)) } }
        return rows.map { r in r.enumerated().map { rightJustified(String($0.element.prefix(19)), wid[$0.offset]) + "  " }.joined() }
    }
}
