public import ScoutBTree
public import ScoutFormat

/// srch entries and files (the original's srch.c): a file is a radix of parent blocks over
/// srch blocks, each a `SrchBlockHeader` followed by entries encoded as differences from the
/// block's previous entry.
///
/// Entry encoding. A little-endian u16 of lengths (4 bits per field: hash, ino, id) is followed
/// by each field's difference from the previous entry, zigzag-encoded (shifted left one, the
/// sign in bit 0) and stored in as few little-endian bytes as hold it. The first entry of a
/// block is a difference from the zero entry. An entry of a log file is recorded at each
/// create and delete of a `.srch.` xattr: the same (hash, ino, id) seen twice cancels out.
public enum SrchCodec {
    /// Where entries start in a srch block.
    public static let entriesOffset = SrchBlockHeader.encodedSize

    /// Zigzag form of a difference and the bytes it needs.
    @inlinable static func zigzag(_ v: UInt64) -> (UInt64, Int) {
        let z = (v << 1) ^ UInt64(bitPattern: Int64(bitPattern: v) >> 63)
        return (z, (64 - z.leadingZeroBitCount + 7) >> 3)
    }

    /// Encodes `e` after `prev` into bytes (2 to 26 of them).
    public static func encode(_ e: SrchEntry, after prev: SrchEntry) -> [UInt8] {
        var out: [UInt8] = [0, 0]
        var lengths: UInt16 = 0
        for (i, d) in [e.hash &- prev.hash, e.ino &- prev.ino, e.id &- prev.id].enumerated() {
            let (z, n) = zigzag(d)
            lengths |= UInt16(n) << (i * 4)
            for b in 0..<n { out.append(UInt8(truncatingIfNeeded: z >> (b * 8))) }
        }
        out[0] = UInt8(lengths & 0xff)
        out[1] = UInt8(lengths >> 8)
        return out
    }

    /// Decodes the entry at `bytes[off...]` after `prev`: the entry and its encoded length;
    /// nil when it runs past the end.
    public static func decode(_ bytes: UnsafeRawBufferPointer, at off: Int, after prev: SrchEntry) -> (SrchEntry, Int)? {
        guard off + 2 <= bytes.count else { return nil }
        var lengths = UInt16(bytes[off]) | UInt16(bytes[off + 1]) << 8
        var pos = off + 2
        var d: [UInt64] = [0, 0, 0]
        for i in 0..<3 {
            let n = min(8, Int(lengths & 15))
            lengths >>= 4
            guard pos + n <= bytes.count else { return nil }
            var z: UInt64 = 0
            for b in 0..<n { z |= UInt64(bytes[pos + b]) << (b * 8) }
            d[i] = (z >> 1) ^ (0 &- (z & 1))
            pos += n
        }
        return (SrchEntry(hash: prev.hash &+ d[0], ino: prev.ino &+ d[1], id: prev.id &+ d[2]), pos - off)
    }

    /// The entries of a srch block, in their encoded order.
    public static func entries(of b: BlockBuffer) throws(FormatError) -> [SrchEntry] {
        let h = try b.decode(SrchBlockHeader.self)
        var out: [SrchEntry] = []
        out.reserveCapacity(Int(h.entryNr))
        var prev = SrchEntry()
        var pos = entriesOffset
        let end = entriesOffset + Int(h.entryBytes)
        let raw = UnsafeRawBufferPointer(b.bytes)
        for _ in 0..<h.entryNr {
            guard pos <= entriesOffset + SrchBlockHeader.safeBytes, pos < end,
                let (e, n) = decode(raw, at: pos, after: prev)
            else {
                throw FormatError.invalid(structure: "srch block", reason: "entry \(out.count) of \(h.entryNr) runs past the entry bytes")
            }
            out.append(e)
            prev = e
            pos += n
        }
        return out
    }
}

/// Reading and appending to srch files through a block store.
public enum SrchFiles {
    /// The index within a parent at `level` (1 is just above the srch blocks) of logical block `blk`.
    public static func refIndex(_ blk: UInt64, level: Int) -> Int {
        var blk = blk
        var ind: UInt64 = 0
        for _ in 1...level {
            ind = blk % UInt64(SrchParent.refs)
            blk /= UInt64(SrchParent.refs)
        }
        return Int(ind)
    }

    /// The height a file needs to hold logical block `blk`.
    public static func height(for blk: UInt64) -> UInt8 {
        if blk == 0 { return 1 }
        var total = UInt64(SrchParent.refs)
        var h: UInt8 = 2
        while blk >= total {
            h += 1
            total = total.multipliedReportingOverflow(by: UInt64(SrchParent.refs)).partialValue
        }
        return h
    }

    static func magic(_ level: Int) -> BlockMagic { level > 0 ? .srchParent : .srchBlock }

    static func refOffset(_ ind: Int) -> Int { BlockHeader.encodedSize + ind * BlockRef.encodedSize }

    /// The srch block `blk` of `f`, read only.
    public static func block(_ store: any MetaBlockStore, _ f: SrchFile, _ blk: UInt64) throws(BlockStoreError) -> BlockBuffer {
        var ref = f.ref
        var level = Int(f.height)
        guard level > 0, blk < f.blocks else { throw .format(FormatError.invalid(structure: "srch file", reason: "block \(blk) past its \(f.blocks) blocks")) }
        while true {
            level -= 1
            if ref.isNull { throw .format(FormatError.invalid(structure: "srch file", reason: "block \(blk) is missing")) }
            let b = try store.read(ref, magic: magic(level))
            if level == 0 { return b }
            let off = refOffset(refIndex(blk, level: level))
            ref = BlockRef(blkno: b.u64(off), seq: b.u64(off + 8))
        }
    }

    /// The srch block `blk` of `f`, dirty (and created, growing the file, when it is new).
    static func dirtyBlock(_ store: any MetaBlockStore, _ f: inout SrchFile, _ blk: UInt64) throws(BlockStoreError) -> BlockBuffer {
        while f.height < height(for: blk) {
            var root = BlockRef()
            let b = try store.dirty(&root, magic: magic(Int(f.height)))
            if f.height > 0 { b.write(f.ref, at: refOffset(0)) }
            f.ref = root
            f.height += 1
        }
        var level = Int(f.height)
        var ref = f.ref
        var parent: (BlockBuffer, Int)? = nil
        while true {
            level -= 1
            let b = try store.dirty(&ref, magic: magic(level))
            if let (p, off) = parent { p.write(ref, at: off) } else { f.ref = ref }
            if level == 0 {
                if blk >= f.blocks { f.blocks = blk + 1 }
                return b
            }
            let off = refOffset(refIndex(blk, level: level))
            parent = (b, off)
            ref = BlockRef(blkno: b.u64(off), seq: b.u64(off + 8))
        }
    }

    /// Appends `e` to the file `f` (a log file, or a sorted file written in order): in its
    /// last block while a full-size entry still fits, else in a new block.
    public static func append(_ store: any MetaBlockStore, _ f: inout SrchFile, _ e: SrchEntry) throws(BlockStoreError) {
        var blk = f.blocks > 1 ? f.blocks - 1 : 0
        var b = try dirtyBlock(store, &f, blk)
        var h = try decodeHeader(b)
        if Int(h.entryBytes) > SrchBlockHeader.safeBytes {
            blk += 1
            b = try dirtyBlock(store, &f, blk)
            h = try decodeHeader(b)
        }
        let bytes = SrchCodec.encode(e, after: h.tail)
        b.write(bytes, at: SrchCodec.entriesOffset + Int(h.entryBytes))
        if h.entryBytes == 0 {
            if blk == 0 {
                f.first = e
                f.last = e
            }
            h.first = e
            h.last = e
        }
        if e < f.first { f.first = e } else if e > f.last { f.last = e }
        if e < h.first { h.first = e } else if e > h.last { h.last = e }
        h.tail = e
        h.entryNr += 1
        h.entryBytes += UInt32(bytes.count)
        f.entries += 1
        // the block header's own fields stay as the store set them
        b.write(Array(h.encoded()[BlockHeader.encodedSize...]), at: BlockHeader.encodedSize)
    }

    static func decodeHeader(_ b: BlockBuffer) throws(BlockStoreError) -> SrchBlockHeader {
        do { return try b.decode(SrchBlockHeader.self) } catch { throw .format(error) }
    }

    /// The refs of every block of `f`, parents included.
    public static func allBlocks(_ store: any MetaBlockStore, _ f: SrchFile) throws(BlockStoreError) -> [BlockRef] {
        var out: [BlockRef] = []
        func walk(_ ref: BlockRef, _ level: Int) throws(BlockStoreError) {
            out.append(ref)
            guard level > 0 else { return }
            let b = try store.read(ref, magic: magic(level))
            for i in 0..<SrchParent.refs {
                let off = refOffset(i)
                let child = BlockRef(blkno: b.u64(off), seq: b.u64(off + 8))
                if !child.isNull { try walk(child, level - 1) }
            }
        }
        if !f.ref.isNull && f.height > 0 { try walk(f.ref, Int(f.height) - 1) }
        return out
    }

    /// Every entry of `f`, block by block.
    public static func forEachEntry(_ store: any MetaBlockStore, _ f: SrchFile, from firstBlock: UInt64 = 0, _ body: (SrchEntry) throws(BlockStoreError) -> Bool) throws(BlockStoreError) {
        var blk = firstBlock
        while blk < f.blocks {
            let b = try block(store, f, blk)
            let es: [SrchEntry]
            do { es = try SrchCodec.entries(of: b) } catch { throw .format(error) }
            for e in es where try !body(e) { return }
            blk += 1
        }
    }
}

/// A search of every committed srch file for one xattr name's hash (the original's
/// `scoutfs_srch_search_xattrs`): the inodes whose entries do not cancel out.
///
/// Every (ino, id) pair in range is counted by parity (the same pair twice is a create and
/// its delete). A pass returns at most `limit` pairs: when more are left, the pass ends just
/// before the first pair it drops, and the caller continues from the last inode returned.
/// False positives are possible (a pair whose cancelling entry is outside the files read),
/// missed inodes are not.
public struct SrchSearch {
    public struct Pair: Hashable, Comparable, Sendable {
        public var ino: UInt64
        public var id: UInt64
        public static func < (a: Self, b: Self) -> Bool { (a.ino, a.id) < (b.ino, b.id) }
    }

    public let hash: UInt64
    public let start: SrchEntry
    public let end: SrchEntry
    var odd: Set<Pair> = []

    public init(hash: UInt64, from start: SrchEntry, lastIno: UInt64) {
        self.hash = hash
        self.start = start
        end = SrchEntry(hash: hash, ino: lastIno, id: .max)
    }

    mutating func track(_ e: SrchEntry) {
        let p = Pair(ino: e.ino, id: e.id)
        if odd.remove(p) == nil { odd.insert(p) }
    }

    func inRange(_ e: SrchEntry) -> Bool { !(e < start) && !(end < e) }

    /// Searches one file (`sorted`: its entries are in order, so it is entered by binary search
    /// of its blocks and left once past the range).
    public mutating func search(_ store: any MetaBlockStore, _ f: SrchFile, sorted: Bool) throws(BlockStoreError) {
        if f.ref.isNull || f.blocks == 0 || start > f.last || end < f.first { return }
        if !sorted {
            try SrchFiles.forEachEntry(store, f) { e in
                if inRange(e) { track(e) }
                return true
            }
            return
        }
        var lo: Int64 = 0
        var hi = Int64(f.blocks) - 1
        var first = UInt64.max
        while lo <= hi {
            let mid = (lo + hi) >> 1
            let h = try SrchFiles.decodeHeader(try SrchFiles.block(store, f, UInt64(mid)))
            if end < h.first {
                hi = mid - 1
            } else if start > h.last {
                lo = mid + 1
            } else {
                first = min(first, UInt64(mid))
                hi = mid - 1
            }
        }
        if first == .max { return }
        try SrchFiles.forEachEntry(store, f, from: first) { e in
            if e < start { return true }
            if end < e { return false }
            track(e)
            return true
        }
    }

    /// The pass's result: at most `limit` pairs' inodes, ascending without repeats, and
    /// whether nothing was left out before `end`.
    public func result(limit: Int) -> (inodes: [UInt64], complete: Bool) {
        let pairs = odd.sorted()
        var out: [UInt64] = []
        for p in pairs.prefix(limit) where out.last != p.ino { out.append(p.ino) }
        return (out, pairs.count <= limit)
    }
}

extension SrchSearch {
    /// The srch files a search reads: the srch root's log and sorted files (sorted: true) and
    /// every log tree's open log file.
    public static func files<S: MetaBlockStore>(_ store: S, srchRoot: BTreeRoot, logsRoot: BTreeRoot) throws(BlockStoreError) -> [(file: SrchFile, sorted: Bool)] {
        var files: [(SrchFile, Bool)] = []
        let tree = BTree(store: store)
        do {
            try tree.forEach(srchRoot) { b, off in
                let k = b.key(at: off)
                if k.zone == KeyZone.srch, k.type == KeyType.srchLog || k.type == KeyType.srchBlocks,
                    let f = try? SrchFile.decode(b.value(at: off))
                {
                    files.append((f, k.type == KeyType.srchBlocks))
                }
                return true
            }
            try tree.forEach(logsRoot) { b, off in
                if let lt = try? LogTrees.decode(b.value(at: off)), !lt.srchFile.ref.isNull { files.append((lt.srchFile, false)) }
                return true
            }
        } catch {
            if case .store(let e) = error { throw e }
            throw .format(FormatError.invalid(structure: "srch search", reason: "\(error)"))
        }
        return files
    }

    /// One search pass (SEARCH_XATTRS) from `fromIno` through `lastIno`: the inodes of at most
    /// `limit` (ino, id) pairs, and whether the pass reached `lastIno`.
    public static func pass<S: MetaBlockStore>(_ store: S, srchRoot: BTreeRoot, logsRoot: BTreeRoot, hash: UInt64,
                            fromIno: UInt64, lastIno: UInt64, limit: Int = 1_000_000) throws(BlockStoreError) -> (inodes: [UInt64], done: Bool) {
        var s = SrchSearch(hash: hash, from: SrchEntry(hash: hash, ino: fromIno, id: 0), lastIno: lastIno)
        for (f, sorted) in try files(store, srchRoot: srchRoot, logsRoot: logsRoot) {
            try s.search(store, f, sorted: sorted)
        }
        let r = s.result(limit: limit)
        return (r.inodes, r.complete)
    }
}
