/// `struct scoutfs_srch_entry` (24 bytes).
public struct SrchEntry: FixedCodable, Hashable, Comparable {
    public static let encodedSize = 24
    public var hash: UInt64
    public var ino: UInt64
    public var id: UInt64

    public init(hash: UInt64 = 0, ino: UInt64 = 0, id: UInt64 = 0) {
        self.hash = hash
        self.ino = ino
        self.id = id
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        hash = try r.u64()
        ino = try r.u64()
        id = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(hash)
        w.u64(ino)
        w.u64(id)
    }

    public static func < (a: SrchEntry, b: SrchEntry) -> Bool {
        (a.hash, a.ino, a.id) < (b.hash, b.ino, b.id)
    }
}

/// `struct scoutfs_srch_file` (88 bytes).
public struct SrchFile: FixedCodable, Hashable {
    public static let encodedSize = 88
    public var first: SrchEntry
    public var last: SrchEntry
    public var ref: BlockRef
    public var blocks: UInt64
    public var entries: UInt64
    public var height: UInt8

    public init(first: SrchEntry = SrchEntry(), last: SrchEntry = SrchEntry(), ref: BlockRef = BlockRef(), blocks: UInt64 = 0, entries: UInt64 = 0, height: UInt8 = 0) {
        self.first = first
        self.last = last
        self.ref = ref
        self.blocks = blocks
        self.entries = entries
        self.height = height
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        first = try r.read()
        last = try r.read()
        ref = try r.read()
        blocks = try r.u64()
        entries = try r.u64()
        height = try r.u8()
        try r.skip(7)
    }

    public func encode(to w: inout ByteWriter) {
        w.write(first)
        w.write(last)
        w.write(ref)
        w.u64(blocks)
        w.u64(entries)
        w.u8(height)
        w.pad(7)
    }
}

/// `struct scoutfs_srch_compact` (584 bytes): a persistent compaction in progress.
public struct SrchCompact: FixedCodable {
    public static let encodedSize = 584
    public static let flagLog: UInt8 = 1
    public static let flagSorted: UInt8 = 2
    public static let flagDelete: UInt8 = 4
    public static let flagDone: UInt8 = 16
    public static let flagError: UInt8 = 32

    /// One input file and the position reached in it.
    public struct Input: Hashable, Sendable {
        public var sfl: SrchFile
        public var blk: UInt64
        public var pos: UInt64

        public init(sfl: SrchFile = SrchFile(), blk: UInt64 = 0, pos: UInt64 = 0) {
            self.sfl = sfl
            self.blk = blk
            self.pos = pos
        }
    }

    public var metaAvail: AllocListHead
    public var metaFreed: AllocListHead
    public var id: UInt64
    public var nr: UInt8
    public var flags: UInt8
    public var out: SrchFile
    public var inputs: [Input]

    public init(metaAvail: AllocListHead = AllocListHead(), metaFreed: AllocListHead = AllocListHead(), id: UInt64 = 0, nr: UInt8 = 0, flags: UInt8 = 0, out: SrchFile = SrchFile(), inputs: [Input] = Array(repeating: Input(), count: 4)) {
        self.metaAvail = metaAvail
        self.metaFreed = metaFreed
        self.id = id
        self.nr = nr
        self.flags = flags
        self.out = out
        self.inputs = inputs
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        metaAvail = try r.read()
        metaFreed = try r.read()
        id = try r.u64()
        nr = try r.u8()
        flags = try r.u8()
        try r.skip(6)
        out = try r.read()
        var ins: [Input] = []
        for _ in 0..<Format.srchCompactNr {
            ins.append(Input(sfl: try r.read(), blk: try r.u64(), pos: try r.u64()))
        }
        inputs = ins
    }

    public func encode(to w: inout ByteWriter) {
        w.write(metaAvail)
        w.write(metaFreed)
        w.u64(id)
        w.u8(nr)
        w.u8(flags)
        w.pad(6)
        w.write(out)
        for i in inputs {
            w.write(i.sfl)
            w.u64(i.blk)
            w.u64(i.pos)
        }
    }
}

/// `struct scoutfs_log_trees` (472 bytes): one mount's transaction trees, in `logs_root`.
public struct LogTrees: FixedCodable {
    public static let encodedSize = 472
    public static let flagFinalized: UInt64 = 1

    public var metaAvail = AllocListHead()
    public var metaFreed = AllocListHead()
    public var itemRoot = BTreeRoot()
    public var bloomRef = BlockRef()
    public var dataAvail = AllocRoot()
    public var dataFreed = AllocRoot()
    public var srchFile = SrchFile()
    public var dataAllocZoneBlocks: UInt64 = 0
    public var dataAllocZones: [UInt64] = Array(repeating: 0, count: Format.dataAllocZoneLE64s)
    public var inodeCountDelta: UInt64 = 0
    public var getTransSeq: UInt64 = 0
    public var commitTransSeq: UInt64 = 0
    public var maxItemSeq: UInt64 = 0
    public var finalizeSeq: UInt64 = 0
    public var rid: UInt64 = 0
    public var nr: UInt64 = 0
    public var flags: UInt64 = 0

    public init() {}

    public init(from r: inout ByteReader) throws(FormatError) {
        metaAvail = try r.read()
        metaFreed = try r.read()
        itemRoot = try r.read()
        bloomRef = try r.read()
        dataAvail = try r.read()
        dataFreed = try r.read()
        srchFile = try r.read()
        dataAllocZoneBlocks = try r.u64()
        var z: [UInt64] = []
        for _ in 0..<Format.dataAllocZoneLE64s { z.append(try r.u64()) }
        dataAllocZones = z
        inodeCountDelta = try r.u64()
        getTransSeq = try r.u64()
        commitTransSeq = try r.u64()
        maxItemSeq = try r.u64()
        finalizeSeq = try r.u64()
        rid = try r.u64()
        nr = try r.u64()
        flags = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.write(metaAvail)
        w.write(metaFreed)
        w.write(itemRoot)
        w.write(bloomRef)
        w.write(dataAvail)
        w.write(dataFreed)
        w.write(srchFile)
        w.u64(dataAllocZoneBlocks)
        for z in dataAllocZones { w.u64(z) }
        w.u64(inodeCountDelta)
        w.u64(getTransSeq)
        w.u64(commitTransSeq)
        w.u64(maxItemSeq)
        w.u64(finalizeSeq)
        w.u64(rid)
        w.u64(nr)
        w.u64(flags)
    }
}

/// `struct scoutfs_log_merge_status` (56 bytes).
public struct LogMergeStatus: FixedCodable {
    public static let encodedSize = 56
    public var nextRangeKey: Key
    public var nrRequests: UInt64
    public var nrComplete: UInt64
    public var seq: UInt64

    public init(nextRangeKey: Key, nrRequests: UInt64, nrComplete: UInt64, seq: UInt64) {
        self.nextRangeKey = nextRangeKey
        self.nrRequests = nrRequests
        self.nrComplete = nrComplete
        self.seq = seq
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        nextRangeKey = try r.read()
        nrRequests = try r.u64()
        nrComplete = try r.u64()
        seq = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.write(nextRangeKey)
        w.u64(nrRequests)
        w.u64(nrComplete)
        w.u64(seq)
    }
}

/// `struct scoutfs_log_merge_request` (208 bytes).
public struct LogMergeRequest: FixedCodable {
    public static let encodedSize = 208
    public static let flagSubtree: UInt64 = 1
    public var metaAvail: AllocListHead
    public var metaFreed: AllocListHead
    public var logsRoot: BTreeRoot
    public var root: BTreeRoot
    public var start: Key
    public var end: Key
    public var inputSeq: UInt64
    public var rid: UInt64
    public var seq: UInt64
    public var flags: UInt64

    public init(metaAvail: AllocListHead, metaFreed: AllocListHead, logsRoot: BTreeRoot, root: BTreeRoot, start: Key, end: Key, inputSeq: UInt64, rid: UInt64, seq: UInt64, flags: UInt64) {
        self.metaAvail = metaAvail
        self.metaFreed = metaFreed
        self.logsRoot = logsRoot
        self.root = root
        self.start = start
        self.end = end
        self.inputSeq = inputSeq
        self.rid = rid
        self.seq = seq
        self.flags = flags
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        metaAvail = try r.read()
        metaFreed = try r.read()
        logsRoot = try r.read()
        root = try r.read()
        start = try r.read()
        end = try r.read()
        inputSeq = try r.u64()
        rid = try r.u64()
        seq = try r.u64()
        flags = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.write(metaAvail)
        w.write(metaFreed)
        w.write(logsRoot)
        w.write(root)
        w.write(start)
        w.write(end)
        w.u64(inputSeq)
        w.u64(rid)
        w.u64(seq)
        w.u64(flags)
    }
}

/// `struct scoutfs_log_merge_complete` (208 bytes).
public struct LogMergeComplete: FixedCodable {
    public static let encodedSize = 208
    public static let flagError: UInt64 = 1
    public static let flagRemain: UInt64 = 2
    public var metaAvail: AllocListHead
    public var metaFreed: AllocListHead
    public var root: BTreeRoot
    public var start: Key
    public var end: Key
    public var remain: Key
    public var rid: UInt64
    public var seq: UInt64
    public var flags: UInt64

    public init(metaAvail: AllocListHead, metaFreed: AllocListHead, root: BTreeRoot, start: Key, end: Key, remain: Key, rid: UInt64, seq: UInt64, flags: UInt64) {
        self.metaAvail = metaAvail
        self.metaFreed = metaFreed
        self.root = root
        self.start = start
        self.end = end
        self.remain = remain
        self.rid = rid
        self.seq = seq
        self.flags = flags
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        metaAvail = try r.read()
        metaFreed = try r.read()
        root = try r.read()
        start = try r.read()
        end = try r.read()
        remain = try r.read()
        rid = try r.u64()
        seq = try r.u64()
        flags = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.write(metaAvail)
        w.write(metaFreed)
        w.write(root)
        w.write(start)
        w.write(end)
        w.write(remain)
        w.u64(rid)
        w.u64(seq)
        w.u64(flags)
    }
}

/// `struct scoutfs_log_merge_range` (64 bytes).
public struct LogMergeRange: FixedCodable {
    public static let encodedSize = 64
    public var start: Key
    public var end: Key

    public init(start: Key, end: Key) {
        self.start = start
        self.end = end
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        start = try r.read()
        end = try r.read()
    }

    public func encode(to w: inout ByteWriter) {
        w.write(start)
        w.write(end)
    }
}

/// `struct scoutfs_log_merge_freeing` (64 bytes).
public struct LogMergeFreeing: FixedCodable {
    public static let encodedSize = 64
    public var root: BTreeRoot
    public var key: Key
    public var seq: UInt64

    public init(root: BTreeRoot, key: Key, seq: UInt64) {
        self.root = root
        self.key = key
        self.seq = seq
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        root = try r.read()
        key = try r.read()
        seq = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.write(root)
        w.write(key)
        w.u64(seq)
    }
}

/// Header of `struct scoutfs_bloom_block` (40 bytes); the bit words follow.
public struct BloomBlockHeader: FixedCodable {
    public static let encodedSize = 40
    public var hdr: BlockHeader
    public var totalSet: UInt64

    public init(hdr: BlockHeader, totalSet: UInt64) {
        self.hdr = hdr
        self.totalSet = totalSet
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        hdr = try r.read()
        totalSet = try r.u64()
    }

    public func encode(to w: inout ByteWriter) {
        w.write(hdr)
        w.u64(totalSet)
    }
}

/// Header of `struct scoutfs_srch_block` (112 bytes); delta-encoded entries follow.
public struct SrchBlockHeader: FixedCodable {
    public static let encodedSize = 112
    /// A full-size entry can still start at this byte count of entries.
    public static let safeBytes = Format.largeBlockSize - encodedSize - Format.srchEntryMaxBytes
    public var hdr: BlockHeader
    public var first: SrchEntry
    public var last: SrchEntry
    public var tail: SrchEntry
    public var entryNr: UInt32
    public var entryBytes: UInt32

    public init(hdr: BlockHeader, first: SrchEntry = SrchEntry(), last: SrchEntry = SrchEntry(), tail: SrchEntry = SrchEntry(), entryNr: UInt32 = 0, entryBytes: UInt32 = 0) {
        self.hdr = hdr
        self.first = first
        self.last = last
        self.tail = tail
        self.entryNr = entryNr
        self.entryBytes = entryBytes
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        hdr = try r.read()
        first = try r.read()
        last = try r.read()
        tail = try r.read()
        entryNr = try r.u32()
        entryBytes = try r.u32()
    }

    public func encode(to w: inout ByteWriter) {
        w.write(hdr)
        w.write(first)
        w.write(last)
        w.write(tail)
        w.u32(entryNr)
        w.u32(entryBytes)
    }
}

/// A srch parent block is a header and this many refs.
public enum SrchParent {
    public static let refs = (Format.largeBlockSize - BlockHeader.encodedSize) / BlockRef.encodedSize
}
