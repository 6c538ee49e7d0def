import ScoutFormat

/// Where a volume's metadata blocks go, as `VolumeChecker` counted them with `accountUsage`
/// set (`scoutfs check -u`): referenced blocks by structure, each btree's leaf fill, and
/// the items of every btree by zone and type with the bytes they take in their leaves.
///
/// Structures are named without the mount they belong to ("log tree items" sums every log
/// tree's item btree), so a volume with many mounts still gives a short report.
public struct MetadataUsage: Sendable, Equatable {
    /// One btree class's blocks and leaf contents.
    public struct Tree: Sendable, Equatable {
        /// Leaf blocks.
        public var leaves = 0
        /// Parent blocks (every level above the leaves).
        public var parents = 0
        /// The sum of the leaves' `total_item_bytes` (item headers and padded values).
        public var leafItemBytes = 0
        /// The sum of the parents' `total_item_bytes`.
        public var parentItemBytes = 0

        /// The fraction of the leaves' item space (a block less its header and hash table) that
        /// items use.
        public var leafFill: Double {
            leaves == 0 ? 0 : Double(leafItemBytes) / Double(leaves * MetadataUsage.leafItemSpace)
        }
        /// The same for the parents (which have no hash table).
        public var parentFill: Double {
            parents == 0 ? 0 : Double(parentItemBytes) / Double(parents * MetadataUsage.parentItemSpace)
        }
    }

    /// Items of one zone and type in one btree class.
    public struct ItemClass: Hashable, Sendable, Comparable {
        public var tree: String
        public var zone: UInt8
        public var type: UInt8

        public static func < (a: ItemClass, b: ItemClass) -> Bool {
            (a.tree, a.zone, a.type) < (b.tree, b.zone, b.type)
        }
    }

    /// Item count and bytes (56-byte item header plus the value padded to 8 bytes).
    public struct ItemTotals: Sendable, Equatable {
        public var count = 0
        public var bytes = 0
    }

    /// Item space of a leaf: the block less its header and the hash table.
    public static let leafItemSpace = Format.largeBlockSize - BTreeBlock.headerSize - BTreeBlock.hashBytes
    /// Item space of a parent block.
    public static let parentItemSpace = Format.largeBlockSize - BTreeBlock.headerSize

    /// Referenced metadata blocks by structure class.
    public var blocks: [String: Int] = [:]
    /// Btree blocks and leaf fill by btree class.
    public var trees: [String: Tree] = [:]
    /// Leaf items by btree class, zone and type.
    public var items: [ItemClass: ItemTotals] = [:]

    public init() {}

    /// All referenced blocks.
    public var totalBlocks: Int { blocks.values.reduce(0, +) }

    mutating func addBlock(_ structure: String) {
        blocks[structure, default: 0] += 1
    }

    mutating func addBTreeBlock(_ tree: String, _ b: BTreeBlock, order: [Int]) {
        if b.level > 0 {
            trees[tree, default: Tree()].parents += 1
            trees[tree, default: Tree()].parentItemBytes += b.totalItemBytes
            return
        }
        trees[tree, default: Tree()].leaves += 1
        trees[tree, default: Tree()].leafItemBytes += b.totalItemBytes
        for off in order {
            let k = b.key(at: off)
            let c = ItemClass(tree: tree, zone: k.zone, type: k.type)
            items[c, default: ItemTotals()].count += 1
            items[c, default: ItemTotals()].bytes += b.itemBytes(at: off)
        }
    }

    /// The class of an owner name of the checker: the mount's rid and log tree number, and
    /// array indexes, are left out.
    static func structureClass(_ owner: String) -> String {
        var words: [Substring] = []
        var skipNext = false
        for w in owner.split(separator: " ") {
            if skipNext {
                skipNext = false
                continue
            }
            if w == "rid" || w == "nr" {
                skipNext = true
                continue
            }
            // srch file and log merge item keys ("srch file 32.4.1.0.0.0 …")
            if w.first?.isNumber == true || w.hasPrefix("(") || w.hasPrefix("input") { continue }
            if let i = w.firstIndex(of: "[") {
                words.append(w[..<i] + "[]")
            } else {
                words.append(w)
            }
        }
        return words.joined(separator: " ")
    }

    /// A name for an item's zone and type.
    public static func itemName(zone: UInt8, type: UInt8) -> String {
        switch (zone, type) {
        case (KeyZone.inodeIndex, KeyType.inodeIndexMetaSeq): return "meta_seq index"
        case (KeyZone.inodeIndex, KeyType.inodeIndexDataSeq): return "data_seq index"
        case (KeyZone.orphan, _): return "orphan"
        case (KeyZone.quota, _): return "quota rule"
        case (KeyZone.xattrTotl, _): return "xattr totl"
        case (KeyZone.xattrIndx, _): return "xattr indx"
        case (KeyZone.fs, KeyType.inode): return "inode"
        case (KeyZone.fs, KeyType.xattr): return "xattr"
        case (KeyZone.fs, KeyType.dirent): return "dirent"
        case (KeyZone.fs, KeyType.readdir): return "readdir"
        case (KeyZone.fs, KeyType.linkBackref): return "link backref"
        case (KeyZone.fs, KeyType.symlink): return "symlink"
        case (KeyZone.fs, KeyType.dataExtent): return "data extent"
        case (KeyZone.logTrees, _): return "log trees"
        case (KeyZone.mountedClient, _): return "mounted client"
        case (KeyZone.srch, _): return "srch"
        case (KeyZone.freeExtentBlkno, _): return "free extent by blkno"
        case (KeyZone.freeExtentOrder, _): return "free extent by order"
        default: return "zone \(zone) type \(type)"
        }
    }

    /// `x` with one decimal, rounded half away from zero.
    static func fixed1(_ x: Double) -> String {
        let tenths = Int((x * 10).rounded())
        return "\(tenths / 10).\(abs(tenths % 10))"
    }

    /// The report `scoutfs check -u` prints; `perFile` divides bytes by a file count.
    public func reportLines(perFile files: Int? = nil) -> [String] {
        let bs = Format.largeBlockSize
        func kib(_ bytes: Int) -> String { Self.fixed1(Double(bytes) / 1024) }
        func per(_ bytes: Int) -> String {
            guard let files, files > 0 else { return "" }
            return ", \(Self.fixed1(Double(bytes) / Double(files))) bytes/file"
        }
        var out: [String] = []
        out.append("metadata blocks by structure (64 KiB each):")
        for (name, n) in blocks.sorted(by: { ($1.value, $0.key) < ($0.value, $1.key) }) {
            out.append("  \(name): \(n) blocks, \(kib(n * bs)) KiB\(per(n * bs))")
        }
        out.append("  total: \(totalBlocks) blocks, \(kib(totalBlocks * bs)) KiB\(per(totalBlocks * bs))")
        out.append("btrees (leaf fill: item bytes over the leaves' item space):")
        for (name, t) in trees.sorted(by: { $0.key < $1.key }) {
            out.append(
                "  \(name): \(t.leaves) leaves, \(t.parents) parents, leaf fill \(Self.fixed1(t.leafFill * 100))%, "
                    + "parent fill \(Self.fixed1(t.parentFill * 100))%")
        }
        out.append("leaf items by tree, zone and type (count, bytes with 56-byte headers):")
        for (c, t) in items.sorted(by: { $0.key < $1.key }) {
            out.append(
                "  \(c.tree): \(Self.itemName(zone: c.zone, type: c.type)): \(t.count) items, \(kib(t.bytes)) KiB, "
                    + "\(Self.fixed1(Double(t.bytes) / Double(max(t.count, 1)))) bytes/item\(per(t.bytes))")
        }
        return out
    }
}
