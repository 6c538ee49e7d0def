import ScoutTestSupport
import Testing

@testable import ScoutFormat

// MARK: - Seeded randomness

/// The seeded generator with helpers for random field values.
typealias FormatRNG = SplitMix64

extension SplitMix64 {
    mutating func u64() -> UInt64 { next() }
    mutating func u32() -> UInt32 { UInt32(truncatingIfNeeded: next()) }
    mutating func u16() -> UInt16 { UInt16(truncatingIfNeeded: next()) }
    mutating func u8() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in u8() } }
    mutating func u64s(_ n: Int) -> [UInt64] { (0..<n).map { _ in u64() } }
    /// Mostly small values with some edge values, so fields are not all huge.
    mutating func edgy() -> UInt64 {
        switch next() % 6 {
        case 0: return 0
        case 1: return .max
        case 2: return next() % 16
        default: return next()
        }
    }
}

// MARK: - Random structures

enum Gen {
    static func header(_ r: inout FormatRNG) -> BlockHeader {
        BlockHeader(crc: r.u32(), magic: r.u32(), fsid: r.u64(), seq: r.edgy(), blkno: r.edgy())
    }
    static func ref(_ r: inout FormatRNG) -> BlockRef { BlockRef(blkno: r.edgy(), seq: r.edgy()) }
    static func root(_ r: inout FormatRNG) -> BTreeRoot { BTreeRoot(ref: ref(&r), height: r.u8()) }
    static func ts(_ r: inout FormatRNG) -> Timespec { Timespec(sec: r.u64(), nsec: r.u32()) }
    static func inet(_ r: inout FormatRNG) -> InetAddr {
        var a = InetAddr()
        a.family = r.u16()
        a.port = r.u16()
        a.ipv4 = r.u32()
        a.rest = r.bytes(24)
        return a
    }
    static func key(_ r: inout FormatRNG) -> Key {
        Key(zone: r.u8(), first: r.edgy(), type: r.u8(), second: r.edgy(), third: r.edgy(), fourth: r.u8())
    }
    static func listHead(_ r: inout FormatRNG) -> AllocListHead {
        AllocListHead(ref: ref(&r), totalNr: r.u64(), firstNr: r.u32(), flags: r.u32())
    }
    static func allocRoot(_ r: inout FormatRNG) -> AllocRoot {
        AllocRoot(totalLen: r.u64(), flags: r.u32(), root: root(&r))
    }
    static func listBlock(_ r: inout FormatRNG) -> AllocListBlockHeader {
        AllocListBlockHeader(hdr: header(&r), next: ref(&r), start: r.u32(), nr: r.u32())
    }
    static func qconf(_ r: inout FormatRNG) -> QuorumConfig {
        QuorumConfig(version: r.u64(), slots: (0..<Format.quorumMaxSlots).map { _ in inet(&r) })
    }
    static func volopt(_ r: inout FormatRNG) -> VolumeOptions {
        var v = VolumeOptions(setBits: r.u64(), dataAllocZoneBlocks: r.u64())
        v.future = r.u64s(63)
        return v
    }
    static func superBlock(_ r: inout FormatRNG) -> SuperBlock {
        var s = SuperBlock(hdr: header(&r), fmtVers: r.edgy(), flags: r.u64(), uuid: r.bytes(16))
        s.id = r.u64()
        s.seq = r.u64()
        s.nextIno = r.u64()
        s.inodeCount = r.u64()
        s.totalMetaBlocks = r.u64()
        s.totalDataBlocks = r.u64()
        s.qconf = qconf(&r)
        s.metaAlloc = [allocRoot(&r), allocRoot(&r)]
        s.dataAlloc = allocRoot(&r)
        s.serverMetaAvail = [listHead(&r), listHead(&r)]
        s.serverMetaFreed = [listHead(&r), listHead(&r)]
        s.fsRoot = root(&r)
        s.logsRoot = root(&r)
        s.logMerge = root(&r)
        s.mountedClients = root(&r)
        s.srchRoot = root(&r)
        s.volopt = volopt(&r)
        return s
    }
    static func event(_ r: inout FormatRNG) -> QuorumEvent {
        QuorumEvent(writeNr: r.u64(), rid: r.u64(), term: r.u64(), ts: ts(&r))
    }
    static func quorum(_ r: inout FormatRNG) -> QuorumBlock {
        QuorumBlock(hdr: header(&r), writeNr: r.u64(), events: (0..<6).map { _ in event(&r) })
    }
    static func entry(_ r: inout FormatRNG) -> SrchEntry { SrchEntry(hash: r.u64(), ino: r.u64(), id: r.u64()) }
    static func srchFile(_ r: inout FormatRNG) -> SrchFile {
        SrchFile(first: entry(&r), last: entry(&r), ref: ref(&r), blocks: r.u64(), entries: r.u64(), height: r.u8())
    }
    static func compact(_ r: inout FormatRNG) -> SrchCompact {
        SrchCompact(
            metaAvail: listHead(&r), metaFreed: listHead(&r), id: r.u64(), nr: r.u8(), flags: r.u8(),
            out: srchFile(&r),
            inputs: (0..<Format.srchCompactNr).map { _ in SrchCompact.Input(sfl: srchFile(&r), blk: r.u64(), pos: r.u64()) })
    }
    static func logTrees(_ r: inout FormatRNG) -> LogTrees {
        var l = LogTrees()
        l.metaAvail = listHead(&r)
        l.metaFreed = listHead(&r)
        l.itemRoot = root(&r)
        l.bloomRef = ref(&r)
        l.dataAvail = allocRoot(&r)
        l.dataFreed = allocRoot(&r)
        l.srchFile = srchFile(&r)
        l.dataAllocZoneBlocks = r.u64()
        l.dataAllocZones = r.u64s(Format.dataAllocZoneLE64s)
        l.inodeCountDelta = r.u64()
        l.getTransSeq = r.u64()
        l.commitTransSeq = r.u64()
        l.maxItemSeq = r.u64()
        l.finalizeSeq = r.u64()
        l.rid = r.u64()
        l.nr = r.u64()
        l.flags = r.u64()
        return l
    }
    static func inode(_ r: inout FormatRNG) -> Inode {
        var i = Inode()
        i.size = r.u64()
        i.metaSeq = r.u64()
        i.dataSeq = r.u64()
        i.dataVersion = r.u64()
        i.onlineBlocks = r.u64()
        i.offlineBlocks = r.u64()
        i.nextReaddirPos = r.u64()
        i.nextXattrId = r.u64()
        i.version = r.u64()
        i.nlink = r.u32()
        i.uid = r.u32()
        i.gid = r.u32()
        i.mode = r.u32()
        i.rdev = r.u32()
        i.flags = r.u32()
        i.atime = ts(&r)
        i.ctime = ts(&r)
        i.mtime = ts(&r)
        i.crtime = ts(&r)
        i.proj = r.u64()
        return i
    }
}

// MARK: - One case per FixedCodable structure

/// A structure under test, erased so that one parameterized test covers them all.
struct Case: Sendable, CustomTestStringConvertible {
    let name: String
    /// The C `sizeof`, computed by hand from format.h.
    let cSize: Int
    let encodedSize: Int
    /// Encodes a random value; decodes it back; returns (bytes, round trip equal).
    let roundTrip: @Sendable (inout FormatRNG) -> (bytes: [UInt8], equal: Bool)
    /// Decodes bytes and, if that worked, re-encodes the value.
    let decode: @Sendable ([UInt8]) throws(FormatError) -> [UInt8]

    var testDescription: String { name }

    static func make<T: FixedCodable>(_: T.Type, _ cSize: Int, _ gen: @escaping @Sendable (inout FormatRNG) -> T) -> Case {
        Case(
            name: String(describing: T.self), cSize: cSize, encodedSize: T.encodedSize,
            roundTrip: { r in
                let v = gen(&r)
                let bytes = v.encoded()
                let back = try? T.decode(bytes)
                return (bytes, back == v)
            },
            decode: { (b: [UInt8]) throws(FormatError) -> [UInt8] in try T.decode(b).encoded() })
    }
}

/// Sizes: sums of the C field sizes (every structure is naturally aligned, so no hidden padding).
let allCases: [Case] = [
    .make(BlockHeader.self, 4 + 4 + 8 + 8 + 8, Gen.header),
    .make(BlockRef.self, 8 + 8, Gen.ref),
    .make(BTreeRoot.self, 16 + 1 + 7, Gen.root),
    .make(Timespec.self, 8 + 4 + 4, Gen.ts),
    .make(InetAddr.self, 2 + 2 + 16 + 4 + 4 + 4, Gen.inet),  // the v6 arm of the union is the larger
    .make(Key.self, 8 * 3 + 3 + 5, Gen.key),
    .make(AllocListHead.self, 16 + 8 + 4 + 4, Gen.listHead),
    .make(AllocRoot.self, 8 + 4 + 4 + 24, Gen.allocRoot),
    .make(AllocListBlockHeader.self, 32 + 16 + 4 + 4, Gen.listBlock),
    .make(QuorumConfig.self, 8 + 15 * 32, Gen.qconf),
    .make(VolumeOptions.self, 8 + 8 + 63 * 8, Gen.volopt),
    // hdr 32, id/fmt_vers/flags 24, uuid 16, 5 u64s 40, qconf 488, meta_alloc 80, data_alloc 40,
    // server avail/freed 128, five btree roots 120, volopt 520
    .make(SuperBlock.self, 32 + 24 + 16 + 40 + 488 + 80 + 40 + 128 + 120 + 520, Gen.superBlock),
    .make(QuorumEvent.self, 8 * 3 + 16, Gen.event),
    .make(QuorumBlock.self, 32 + 8 + 6 * 40, Gen.quorum),
    .make(XattrHeader.self, 2 + 1 + 5, { r in XattrHeader(valLen: r.u16(), nameLen: r.u8()) }),
    .make(DataExtentValue.self, 8 + 1 + 7, { r in DataExtentValue(blkno: r.u64(), flags: r.u8()) }),
    .make(XattrTotlValue.self, 8 + 8, { r in XattrTotlValue(total: r.u64(), count: r.u64()) }),
    .make(QuotaRuleValue.self, 24 + 8 + 1 + 1 + 1 + 3 + 3 + 7, { r in
        QuotaRuleValue(nameVal: r.u64s(3), limit: r.u64(), prio: r.u8(), op: r.u8(), ruleFlags: r.u8(),
                       nameSource: r.bytes(3), nameFlags: r.bytes(3))
    }),
    .make(MountedClientValue.self, 32 + 1 + 7, { r in MountedClientValue(addr: Gen.inet(&r), flags: r.u8()) }),
    .make(SrchEntry.self, 8 * 3, Gen.entry),
    .make(SrchFile.self, 24 + 24 + 16 + 8 + 8 + 1 + 7, Gen.srchFile),
    // two list heads 64, id 8, nr/flags/pad 8, out 88, four inputs of (88 + 8 + 8)
    .make(SrchCompact.self, 64 + 8 + 8 + 88 + 4 * 104, Gen.compact),
    // list heads 64, item root 24, bloom ref 16, two alloc roots 80, srch file 88, zone blocks 8,
    // zones 16 * 8, then 8 u64s
    .make(LogTrees.self, 64 + 24 + 16 + 80 + 88 + 8 + 128 + 64, Gen.logTrees),
    .make(LogMergeStatus.self, 32 + 8 * 3, { r in
        LogMergeStatus(nextRangeKey: Gen.key(&r), nrRequests: r.u64(), nrComplete: r.u64(), seq: r.u64())
    }),
    .make(LogMergeRequest.self, 32 + 32 + 24 + 24 + 32 + 32 + 8 * 4, { r in
        LogMergeRequest(metaAvail: Gen.listHead(&r), metaFreed: Gen.listHead(&r), logsRoot: Gen.root(&r),
                        root: Gen.root(&r), start: Gen.key(&r), end: Gen.key(&r), inputSeq: r.u64(),
                        rid: r.u64(), seq: r.u64(), flags: r.u64())
    }),
    .make(LogMergeComplete.self, 32 + 32 + 24 + 32 * 3 + 8 * 3, { r in
        LogMergeComplete(metaAvail: Gen.listHead(&r), metaFreed: Gen.listHead(&r), root: Gen.root(&r),
                         start: Gen.key(&r), end: Gen.key(&r), remain: Gen.key(&r), rid: r.u64(),
                         seq: r.u64(), flags: r.u64())
    }),
    .make(LogMergeRange.self, 32 + 32, { r in LogMergeRange(start: Gen.key(&r), end: Gen.key(&r)) }),
    .make(LogMergeFreeing.self, 24 + 32 + 8, { r in
        LogMergeFreeing(root: Gen.root(&r), key: Gen.key(&r), seq: r.u64())
    }),
    .make(BloomBlockHeader.self, 32 + 8, { r in BloomBlockHeader(hdr: Gen.header(&r), totalSet: r.u64()) }),
    .make(SrchBlockHeader.self, 32 + 24 * 3 + 4 + 4, { r in
        SrchBlockHeader(hdr: Gen.header(&r), first: Gen.entry(&r), last: Gen.entry(&r), tail: Gen.entry(&r),
                        entryNr: r.u32(), entryBytes: r.u32())
    }),
]

/// Little-endian u64 at `off`.
func le64(_ b: [UInt8], _ off: Int) -> UInt64 {
    (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[off + $1]) << (8 * UInt64($1)) }
}

func le32(_ b: [UInt8], _ off: Int) -> UInt32 {
    (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[off + $1]) << (8 * UInt32($1)) }
}

func le16(_ b: [UInt8], _ off: Int) -> UInt16 { UInt16(b[off]) | UInt16(b[off + 1]) << 8 }

// MARK: - Tests

@Suite struct RoundTripTests {
    @Test func everyStructureIsCovered() {
        #expect(allCases.count == 30)
        #expect(Set(allCases.map(\.name)).count == allCases.count)
    }

    @Test(arguments: allCases)
    func sizeMatchesC(_ c: Case) {
        #expect(c.encodedSize == c.cSize, "\(c.name).encodedSize")
        var r = FormatRNG(seed: 1)
        let (bytes, _) = c.roundTrip(&r)
        #expect(bytes.count == c.cSize, "\(c.name) encoded length")
    }

    @Test(arguments: allCases)
    func randomValuesRoundTrip(_ c: Case) throws {
        var r = FormatRNG(seed: 0x5C0 &+ UInt64(c.cSize))
        for i in 0..<500 {
            let (bytes, equal) = c.roundTrip(&r)
            try #require(equal, "\(c.name) iteration \(i)")
            // re-encoding the decoded value gives the same bytes (no field lost or moved)
            let again = try c.decode(bytes)
            try #require(again == bytes, "\(c.name) iteration \(i) re-encode")
        }
    }

    @Test(arguments: allCases)
    func everyTruncationThrowsShort(_ c: Case) throws {
        var r = FormatRNG(seed: 7)
        let (bytes, _) = c.roundTrip(&r)
        for n in 0..<c.cSize {
            let cut = Array(bytes.prefix(n))
            let e = #expect(throws: FormatError.self, "\(c.name) cut to \(n)") { _ = try c.decode(cut) }
            guard case .short(let s, let need, let have) = e else {
                Issue.record("\(c.name) cut to \(n): \(String(describing: e)) is not .short")
                continue
            }
            #expect(s == c.name)
            #expect(have == n)
            #expect(need > n && need <= c.cSize)
        }
        // longer buffers decode from their start
        let longer = bytes + r.bytes(13)
        #expect(try c.decode(longer) == bytes)
    }

    @Test(arguments: allCases)
    func randomGarbageDecodesOrThrowsFormatError(_ c: Case) {
        var r = FormatRNG(seed: 99)
        for _ in 0..<200 {
            let garbage = r.bytes(c.cSize)
            do {
                let re = try c.decode(garbage)
                // only pad bytes may differ, and decoding is then a fixed point
                #expect(re.count == c.cSize)
                #expect((try? c.decode(re)) == re)
            } catch {
                // typed: any failure is a FormatError; these structures have no invalid values
                Issue.record("\(c.name): garbage of the right size threw \(error)")
            }
        }
    }

    @Test func decodeAtOffsetInBlockBufferIsBoundsChecked() {
        let b = BlockBuffer(size: 4096)
        #expect(throws: FormatError.self) { _ = try b.decode(SuperBlock.self, at: 4096 - 1000) }
        #expect(throws: FormatError.self) { _ = try b.decode(Key.self, at: 4096 - 31) }
        #expect(throws: FormatError.self) { _ = try b.decode(Key.self, at: 5000) }
        #expect(throws: FormatError.self) { _ = try b.decode(Key.self, at: -1) }
        #expect((try? b.decode(Key.self, at: 4096 - 32)) == Key.zero)
    }

    // MARK: Inode and Dirent

    @Test func inodeSizesAndRoundTrip() throws {
        #expect(Inode.sizeV2 == 9 * 8 + 6 * 4 + 4 * 16 + 8)
        #expect(Inode.sizeV1 == Inode.sizeV2 - 8)
        #expect(Inode.size(forVersion: 1) == 160)
        #expect(Inode.size(forVersion: 2) == 168)
        #expect(Inode.isValidSize(160, version: 1) && Inode.isValidSize(160, version: 2))
        #expect(Inode.isValidSize(168, version: 2) && !Inode.isValidSize(168, version: 1))
        var r = FormatRNG(seed: 0x1a0de)
        for _ in 0..<500 {
            let ino = Gen.inode(&r)
            let v2 = ino.encoded(version: 2)
            let v1 = ino.encoded(version: 1)
            try #require(v2.count == 168 && v1.count == 160)
            try #require(try Inode.decode(v2) == ino)
            var noProj = ino
            noProj.proj = 0
            try #require(try Inode.decode(v1) == noProj)
            try #require(Array(v2.prefix(160)) == v1)
        }
    }

    @Test func inodeFieldOffsets() throws {
        var i = Inode()
        i.size = 0x1111
        i.version = 0x9999
        i.nlink = 0xAAAA
        i.flags = 0xFFFF
        i.atime = Timespec(sec: 0xA7, nsec: 0xA8)
        i.crtime = Timespec(sec: 0xC7, nsec: 0xC8)
        i.proj = 0x1234_5678
        let b = i.encoded(version: 2)
        #expect(le64(b, 0) == 0x1111)
        #expect(le64(b, 64) == 0x9999)
        #expect(le32(b, 72) == 0xAAAA)
        #expect(le32(b, 92) == 0xFFFF)
        #expect(le64(b, 96) == 0xA7 && le32(b, 104) == 0xA8)
        #expect(le64(b, 144) == 0xC7 && le32(b, 152) == 0xC8)
        #expect(le64(b, 160) == 0x1234_5678)
    }

    @Test func inodeInvalidLengthsThrowInvalid() {
        var r = FormatRNG(seed: 3)
        for n in 0...400 where n != 160 && n != 168 {
            let e = #expect(throws: FormatError.self) { _ = try Inode.decode(r.bytes(n)) }
            guard case .invalid(let s, _) = e else {
                Issue.record("inode length \(n): \(String(describing: e))")
                continue
            }
            #expect(s == "Inode")
        }
        for _ in 0..<200 {
            #expect(throws: Never.self) { _ = try Inode.decode(r.bytes(160)) }
            #expect(throws: Never.self) { _ = try Inode.decode(r.bytes(168)) }
        }
    }

    @Test func direntRoundTripAndLayout() throws {
        var r = FormatRNG(seed: 0xd1)
        for _ in 0..<500 {
            let len = Int(r.u64() % 255) + 1
            let d = Dirent(ino: r.u64(), hash: r.u64(), pos: r.u64(), type: r.u8(), name: r.bytes(len))
            let b = d.encoded()
            try #require(b.count == 32 + len)
            try #require(try Dirent.decode(b) == d)
            try #require(le64(b, 0) == d.ino && le64(b, 8) == d.hash && le64(b, 16) == d.pos)
            try #require(b[24] == d.type && b[25..<32].allSatisfy { $0 == 0 })
            try #require(Array(b[32...]) == d.name)
        }
    }

    @Test func direntInvalidLengthsThrowInvalid() {
        var r = FormatRNG(seed: 4)
        for n in Array(0...32) + [32 + 256, 32 + 300, 1000] {
            let e = #expect(throws: FormatError.self) { _ = try Dirent.decode(r.bytes(n)) }
            guard case .invalid(let s, _) = e else {
                Issue.record("dirent length \(n): \(String(describing: e))")
                continue
            }
            #expect(s == "Dirent")
        }
        for n in [33, 40, 32 + 255] {
            #expect(throws: Never.self) { _ = try Dirent.decode(r.bytes(n)) }
        }
    }

    /// Expected values computed independently (a small script) from fnv1a32 and the
    /// fingerprint rule in the original's dir.c.
    @Test(arguments: [
        ("a", UInt64(0x6100_0000_e40c_292c)),
        ("ab", 0x6162_0000_4d25_05ca),
        ("abcd", 0x6162_6364_ce34_79bd),
        ("hello", 0x6865_6c6c_4f9f_2cab),
        ("lost+found", 0x6754_7574_a360_3574),
        ("0123456789abcdefghijklmnopqrstuvwxyzABCD", 0x5446_7541_e7ce_0421),
    ])
    func direntNameHash(_ name: String, _ expected: UInt64) {
        #expect(Dirent.nameHash(Array(name.utf8)) == expected)
    }

    @Test func direntNameHashHighBytesAndLongNames() {
        #expect(Dirent.nameHash([0xff, 0x80, 0x01]) == 0xff80_0100_25aa_d411)
        #expect(Dirent.nameHash([UInt8](repeating: UInt8(ascii: "x"), count: 255)) == 0x0f0f_0f0f_6318_963f)
        #expect(FNV1a.hash32([UInt8]()) == 0x811c_9dc5)
        #expect(FNV1a.hash64(Array("a".utf8)) == 0xaf63_dc4c_8601_ec8c)
    }

    // MARK: Field offsets against format.h

    @Test func superBlockOffsets() throws {
        var r = FormatRNG(seed: 11)
        let s = Gen.superBlock(&r)
        let b = s.encoded()
        #expect(le32(b, 0) == s.hdr.crc && le32(b, 4) == s.hdr.magic && le64(b, 8) == s.hdr.fsid)
        #expect(le64(b, 16) == s.hdr.seq && le64(b, 24) == s.hdr.blkno)
        #expect(le64(b, 32) == s.id)
        #expect(le64(b, 40) == s.fmtVers)
        #expect(le64(b, 48) == s.flags)
        #expect(Array(b[56..<72]) == s.uuid)
        #expect(le64(b, 72) == s.seq)
        #expect(le64(b, 80) == s.nextIno)
        #expect(le64(b, 88) == s.inodeCount)
        #expect(le64(b, 96) == s.totalMetaBlocks)
        #expect(le64(b, 104) == s.totalDataBlocks)
        #expect(le64(b, 112) == s.qconf.version)
        #expect(le16(b, 120) == s.qconf.slots[0].family && le16(b, 122) == s.qconf.slots[0].port)
        #expect(le32(b, 124) == s.qconf.slots[0].ipv4)
        #expect(le16(b, 120 + 14 * 32) == s.qconf.slots[14].family)
        #expect(le64(b, 600) == s.metaAlloc[0].totalLen)
        #expect(le32(b, 608) == s.metaAlloc[0].flags)
        #expect(le64(b, 616) == s.metaAlloc[0].root.ref.blkno)
        #expect(b[632] == s.metaAlloc[0].root.height)
        #expect(le64(b, 640) == s.metaAlloc[1].totalLen)
        #expect(le64(b, 680) == s.dataAlloc.totalLen)
        #expect(le64(b, 720) == s.serverMetaAvail[0].ref.blkno)
        #expect(le64(b, 752) == s.serverMetaAvail[1].ref.blkno)
        #expect(le64(b, 784) == s.serverMetaFreed[0].ref.blkno)
        #expect(le64(b, 816) == s.serverMetaFreed[1].ref.blkno)
        #expect(le64(b, 848) == s.fsRoot.ref.blkno)
        #expect(le64(b, 872) == s.logsRoot.ref.blkno)
        #expect(le64(b, 896) == s.logMerge.ref.blkno)
        #expect(le64(b, 920) == s.mountedClients.ref.blkno)
        #expect(le64(b, 944) == s.srchRoot.ref.blkno)
        #expect(b[960] == s.srchRoot.height)
        #expect(le64(b, 968) == s.volopt.setBits)
        #expect(le64(b, 976) == s.volopt.dataAllocZoneBlocks)
        #expect(le64(b, 984) == s.volopt.future[0])
        #expect(le64(b, 1480) == s.volopt.future[62])
        #expect(b.count == 1488)
        // and it fits in the 4 KiB block it lives in
        #expect(SuperBlock.encodedSize <= Format.smallBlockSize)
    }

    @Test func logTreesOffsets() {
        var r = FormatRNG(seed: 12)
        let l = Gen.logTrees(&r)
        let b = l.encoded()
        #expect(le64(b, 0) == l.metaAvail.ref.blkno)
        #expect(le64(b, 16) == l.metaAvail.totalNr && le32(b, 24) == l.metaAvail.firstNr)
        #expect(le64(b, 32) == l.metaFreed.ref.blkno)
        #expect(le64(b, 64) == l.itemRoot.ref.blkno && b[80] == l.itemRoot.height)
        #expect(le64(b, 88) == l.bloomRef.blkno && le64(b, 96) == l.bloomRef.seq)
        #expect(le64(b, 104) == l.dataAvail.totalLen)
        #expect(le64(b, 144) == l.dataFreed.totalLen)
        #expect(le64(b, 184) == l.srchFile.first.hash)
        #expect(le64(b, 232) == l.srchFile.ref.blkno)
        #expect(le64(b, 272) == l.dataAllocZoneBlocks)
        #expect(le64(b, 280) == l.dataAllocZones[0])
        #expect(le64(b, 400) == l.dataAllocZones[15])
        #expect(le64(b, 408) == l.inodeCountDelta)
        #expect(le64(b, 416) == l.getTransSeq)
        #expect(le64(b, 424) == l.commitTransSeq)
        #expect(le64(b, 432) == l.maxItemSeq)
        #expect(le64(b, 440) == l.finalizeSeq)
        #expect(le64(b, 448) == l.rid)
        #expect(le64(b, 456) == l.nr)
        #expect(le64(b, 464) == l.flags)
    }

    @Test func keyByteLayout() {
        let k = Key(zone: 0x5a, first: 0x0102_0304_0506_0708, type: 0xa5, second: 0x1112_1314_1516_1718,
                    third: 0x2122_2324_2526_2728, fourth: 0x77)
        let b = k.encoded()
        #expect(b.count == 32)
        #expect(le64(b, 0) == k.first)
        #expect(b[0] == 0x08)  // little-endian
        #expect(le64(b, 8) == k.second)
        #expect(le64(b, 16) == k.third)
        #expect(b[24] == 0x77)
        #expect(b[25] == 0x5a)
        #expect(b[26] == 0xa5)
        #expect(b[27..<32].allSatisfy { $0 == 0 })
    }

    @Test func otherOffsets() {
        var r = FormatRNG(seed: 13)
        let q = Gen.quorum(&r)
        let qb = q.encoded()
        #expect(le64(qb, 32) == q.writeNr)
        #expect(le64(qb, 40) == q[.begin].writeNr && le64(qb, 48) == q[.begin].rid && le64(qb, 56) == q[.begin].term)
        #expect(le64(qb, 64) == q[.begin].ts.sec && le32(qb, 72) == q[.begin].ts.nsec)
        #expect(le64(qb, 40 + 5 * 40) == q[.end].writeNr)

        let c = Gen.compact(&r)
        let cb = c.encoded()
        #expect(le64(cb, 64) == c.id && cb[72] == c.nr && cb[73] == c.flags)
        #expect(le64(cb, 80) == c.out.first.hash)
        #expect(cb[80 + 80] == c.out.height)
        #expect(le64(cb, 168) == c.inputs[0].sfl.first.hash)
        #expect(le64(cb, 168 + 88) == c.inputs[0].blk && le64(cb, 168 + 96) == c.inputs[0].pos)
        #expect(le64(cb, 168 + 3 * 104) == c.inputs[3].sfl.first.hash)
        #expect(le64(cb, 576) == c.inputs[3].pos)

        let ar = Gen.allocRoot(&r)
        let ab = ar.encoded()
        #expect(le32(ab, 8) == ar.flags && ab[12..<16].allSatisfy { $0 == 0 } && le64(ab, 16) == ar.root.ref.blkno)

        let sb = SrchBlockHeader(hdr: Gen.header(&r), first: Gen.entry(&r), last: Gen.entry(&r),
                                 tail: Gen.entry(&r), entryNr: r.u32(), entryBytes: r.u32()).encoded()
        #expect(le32(sb, 104) != 0 || le32(sb, 108) != 0)
        #expect(SrchBlockHeader.safeBytes == 65536 - 112 - 26)
        #expect(SrchParent.refs == (65536 - 32) / 16)
        #expect(AllocListBlockHeader.maxBlknos == 8185)

        let qr = QuotaRuleValue(nameVal: [1, 2, 3], limit: 4, prio: 5, op: 6, ruleFlags: 7,
                                nameSource: [8, 9, 10], nameFlags: [11, 12, 13]).encoded()
        #expect(le64(qr, 16) == 3 && le64(qr, 24) == 4)
        #expect(Array(qr[32..<41]) == [5, 6, 7, 8, 9, 10, 11, 12, 13])
        #expect(qr[41..<48].allSatisfy { $0 == 0 })

        let mc = MountedClientValue(addr: InetAddr(ipv4: 0x7f00_0001, port: 5000), flags: 1).encoded()
        #expect(le16(mc, 0) == 1 && le16(mc, 2) == 5000 && le32(mc, 4) == 0x7f00_0001 && mc[32] == 1)
    }

    @Test func paddingIsWrittenAsZeros() {
        var r = FormatRNG(seed: 14)
        let root = BTreeRoot(ref: Gen.ref(&r), height: 0xff).encoded()
        #expect(root[16] == 0xff && root[17..<24].allSatisfy { $0 == 0 })
        let ts = Timespec(sec: .max, nsec: .max).encoded()
        #expect(ts[12..<16].allSatisfy { $0 == 0 })
        let x = XattrHeader(valLen: 0xffff, nameLen: 0xff).encoded()
        #expect(x == [0xff, 0xff, 0xff, 0, 0, 0, 0, 0])
    }

    // MARK: Keys

    static func tuple(_ k: Key) -> (UInt8, UInt64, UInt8, UInt64, UInt64, UInt8) {
        (k.zone, k.first, k.type, k.second, k.third, k.fourth)
    }

    @Test func keyOrderIsZoneFirstTypeSecondThirdFourth() {
        // each field dominates every later one
        let lo = Key(zone: 1, first: 9, type: 9, second: 9, third: 9, fourth: 9)
        #expect(lo < Key(zone: 2, first: 0, type: 0, second: 0, third: 0, fourth: 0))
        #expect(lo < Key(zone: 1, first: 10, type: 0, second: 0, third: 0, fourth: 0))
        #expect(lo < Key(zone: 1, first: 9, type: 10, second: 0, third: 0, fourth: 0))
        #expect(lo < Key(zone: 1, first: 9, type: 9, second: 10, third: 0, fourth: 0))
        #expect(lo < Key(zone: 1, first: 9, type: 9, second: 9, third: 10, fourth: 0))
        #expect(lo < Key(zone: 1, first: 9, type: 9, second: 9, third: 9, fourth: 10))
        #expect(!(lo < lo))
        // type is compared after first even though it is stored after fourth
        #expect(Key(zone: 16, first: 1, type: 28) < Key(zone: 16, first: 2, type: 4))

        var r = FormatRNG(seed: 21)
        for _ in 0..<5000 {
            var a = Gen.key(&r)
            var b = Gen.key(&r)
            // make near-equal keys common so later fields get compared
            if r.u64() % 2 == 0 {
                b = a
                switch r.u64() % 6 {
                case 0: b.zone = r.u8()
                case 1: b.first = r.edgy()
                case 2: b.type = r.u8()
                case 3: b.second = r.edgy()
                case 4: b.third = r.edgy()
                default: b.fourth = r.u8()
                }
            }
            if r.u64() % 7 == 0 { a = b }
            #expect((a < b) == (Self.tuple(a) < Self.tuple(b)))
            #expect((a == b) == (Self.tuple(a) == Self.tuple(b)))
        }
        #expect(Key.zero < Key.max)
    }

    @Test func keyIncrementCarries() {
        let k = Key(zone: 3, first: 4, type: 5, second: 6, third: 7, fourth: 8)
        #expect(k.incremented() == Key(zone: 3, first: 4, type: 5, second: 6, third: 7, fourth: 9))
        #expect(Key(zone: 3, first: 4, type: 5, second: 6, third: 7, fourth: .max).incremented()
                == Key(zone: 3, first: 4, type: 5, second: 6, third: 8, fourth: 0))
        #expect(Key(zone: 3, first: 4, type: 5, second: 6, third: .max, fourth: .max).incremented()
                == Key(zone: 3, first: 4, type: 5, second: 7, third: 0, fourth: 0))
        #expect(Key(zone: 3, first: 4, type: 5, second: .max, third: .max, fourth: .max).incremented()
                == Key(zone: 3, first: 4, type: 6, second: 0, third: 0, fourth: 0))
        #expect(Key(zone: 3, first: 4, type: .max, second: .max, third: .max, fourth: .max).incremented()
                == Key(zone: 3, first: 5, type: 0, second: 0, third: 0, fourth: 0))
        #expect(Key(zone: 3, first: .max, type: .max, second: .max, third: .max, fourth: .max).incremented()
                == Key(zone: 4, first: 0, type: 0, second: 0, third: 0, fourth: 0))
        #expect(Key.max.incremented() == Key.zero)
        // a carry stops at the first field that does not wrap
        #expect(Key(zone: 3, first: .max, type: 5, second: .max, third: 7, fourth: .max).incremented()
                == Key(zone: 3, first: .max, type: 5, second: .max, third: 8, fourth: 0))
    }

    @Test func keyDecrementBorrows() {
        let k = Key(zone: 3, first: 4, type: 5, second: 6, third: 7, fourth: 8)
        #expect(k.decremented() == Key(zone: 3, first: 4, type: 5, second: 6, third: 7, fourth: 7))
        #expect(Key(zone: 3, first: 4, type: 5, second: 6, third: 7, fourth: 0).decremented()
                == Key(zone: 3, first: 4, type: 5, second: 6, third: 6, fourth: .max))
        #expect(Key(zone: 3, first: 4, type: 5, second: 6).decremented()
                == Key(zone: 3, first: 4, type: 5, second: 5, third: .max, fourth: .max))
        #expect(Key(zone: 3, first: 4, type: 5).decremented()
                == Key(zone: 3, first: 4, type: 4, second: .max, third: .max, fourth: .max))
        #expect(Key(zone: 3, first: 4).decremented()
                == Key(zone: 3, first: 3, type: .max, second: .max, third: .max, fourth: .max))
        #expect(Key(zone: 3).decremented()
                == Key(zone: 2, first: .max, type: .max, second: .max, third: .max, fourth: .max))
        #expect(Key.zero.decremented() == Key.max)
    }

    @Test func keyIncrementIsTheSuccessor() {
        var r = FormatRNG(seed: 22)
        for _ in 0..<5000 {
            let k = Gen.key(&r)
            let up = k.incremented()
            let down = k.decremented()
            #expect(up.decremented() == k)
            #expect(down.incremented() == k)
            if k != .max { #expect(k < up) } else { #expect(up == .zero) }
            if k != .zero { #expect(down < k) } else { #expect(down == .max) }
        }
    }

    // MARK: crc32c

    /// Bit-at-a-time reference, independent of the table code.
    static func slowCRC(_ seed: UInt32, _ bytes: [UInt8]) -> UInt32 {
        var c = seed
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        }
        return c
    }

    @Test func crc32cCheckValue() {
        let check = Array("123456789".utf8)
        // the standard crc32c check value is 0xE3069283 (with final inversion); the raw form is its complement
        #expect(CRC32C.checksum(check) == 0x1CF9_6D7C)
        #expect(~CRC32C.checksum(check) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8]()) == 0xFFFF_FFFF)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == ~0x8A91_36AA)
    }

    @Test func crc32cMatchesBitwiseReferenceAndChains() {
        var r = FormatRNG(seed: 31)
        for len in Array(0...40) + [63, 64, 65, 4092, 4096] {
            let bytes = r.bytes(len)
            #expect(CRC32C.checksum(bytes) == Self.slowCRC(~0, bytes), "length \(len)")
            let cut = len == 0 ? 0 : Int(r.u64() % UInt64(len + 1))
            let a = Array(bytes[..<cut]), b = Array(bytes[cut...])
            let chained = b.withUnsafeBytes { CRC32C.update(CRC32C.checksum(a), $0) }
            #expect(chained == CRC32C.checksum(bytes))
        }
        // unaligned starts take the same path
        let big = r.bytes(1000)
        big.withUnsafeBytes { raw in
            for start in 0..<9 {
                let sub = UnsafeRawBufferPointer(rebasing: raw[start...])
                #expect(CRC32C.checksum(sub) == Self.slowCRC(~0, Array(big[start...])))
            }
        }
    }

    @Test func crc32cTablesAndInstructionAgree() {
        var r = FormatRNG(seed: 37)
        for len in Array(0...33) + [4095, 65536] {
            let bytes = r.bytes(len)
            let seed = UInt32(truncatingIfNeeded: r.u64())
            bytes.withUnsafeBytes { raw in
                let tables = raw.baseAddress.map { CRC32C.updateWithTables(seed, $0, len) } ?? seed
                #expect(tables == Self.slowCRC(seed, bytes), "tables, length \(len)")
                #expect(CRC32C.update(seed, raw) == tables, "length \(len), instruction \(CRC32C.hardware)")
            }
        }
    }

    // MARK: Block verification

    static let fsid: UInt64 = 0xF51D_F51D
    static func sealedBlock(size: Int = Format.largeBlockSize, magic: BlockMagic = .btree, fsid: UInt64 = fsid,
                            seq: UInt64 = 42, blkno: UInt64 = 7) -> BlockBuffer {
        let b = BlockBuffer(size: size)
        b.header = BlockHeader(magic: magic.rawValue, fsid: fsid, seq: seq, blkno: blkno)
        var r = FormatRNG(seed: seq)
        b.write(r.bytes(size - 64), at: 64)
        b.seal()
        return b
    }

    @Test func verifyAcceptsASealedBlock() throws {
        for size in [Format.smallBlockSize, Format.largeBlockSize] {
            let b = Self.sealedBlock(size: size)
            try b.verify(magic: .btree, fsid: Self.fsid, blkno: 7, seq: 42)
            try b.verify(magic: .btree, fsid: Self.fsid, blkno: 7, seq: nil)
            #expect(b.header.crc == CRC32C.checksum(b.read(4, size - 4)))
        }
    }

    @Test func verifyReportsEachFailureDistinctly() {
        let b = Self.sealedBlock()
        #expect(throws: FormatError.badMagic(blkno: 7, expected: BlockMagic.allocList.rawValue, found: BlockMagic.btree.rawValue)) {
            try b.verify(magic: .allocList, fsid: Self.fsid, blkno: 7, seq: 42)
        }
        #expect(throws: FormatError.badFSID(blkno: 7, expected: 1, found: Self.fsid)) {
            try b.verify(magic: .btree, fsid: 1, blkno: 7, seq: 42)
        }
        #expect(throws: FormatError.badBlkno(expected: 8, found: 7)) {
            try b.verify(magic: .btree, fsid: Self.fsid, blkno: 8, seq: 42)
        }
        let stale = #expect(throws: FormatError.stale(blkno: 7, expectedSeq: 41, foundSeq: 42)) {
            try b.verify(magic: .btree, fsid: Self.fsid, blkno: 7, seq: 41)
        }
        #expect(stale?.isStale == true)

        let stored = b.header.crc
        b.setU8(40_000, b.u8(40_000) ^ 0x10)
        let e = #expect(throws: FormatError.self) { try b.verify(magic: .btree, fsid: Self.fsid, blkno: 7, seq: 42) }
        guard case .badCRC(let blkno, let s, let c) = e else {
            Issue.record("flipped payload: \(String(describing: e))")
            return
        }
        #expect(blkno == 7 && s == stored && c != stored)
        // a block torn by a writer still writing it: the reference may be stale
        #expect(e?.isStale == true)
        #expect(FormatError.short(structure: "block", need: 2, have: 1).isStale == false)
        #expect(FormatError.invalid(structure: "item", reason: "bad").isStale == false)

        // a flipped crc byte is a crc failure too
        let b2 = Self.sealedBlock()
        b2.setU8(0, b2.u8(0) ^ 1)
        let e2 = #expect(throws: FormatError.self) { try b2.verify(magic: .btree, fsid: Self.fsid, blkno: 7, seq: 42) }
        if case .badCRC = e2 {} else { Issue.record("flipped crc: \(String(describing: e2))") }
    }

    @Test func corruptionIsReportedBeforeStaleness() {
        // a torn block whose header carries an old seq must look corrupt, not stale
        let torn = Self.sealedBlock()
        torn.setU8(100, torn.u8(100) &+ 1)
        let e1 = #expect(throws: FormatError.self) { try torn.verify(magic: .btree, fsid: Self.fsid, blkno: 7, seq: 43) }
        if case .badCRC = e1 {} else { Issue.record("torn + stale: \(String(describing: e1))") }

        // a foreign filesystem's block at the same place
        let foreign = Self.sealedBlock(fsid: 0xBAD)
        let e2 = #expect(throws: FormatError.self) { try foreign.verify(magic: .btree, fsid: Self.fsid, blkno: 7, seq: 43) }
        if case .badFSID = e2 {} else { Issue.record("foreign + stale: \(String(describing: e2))") }

        // a block written for another blkno
        let moved = Self.sealedBlock(blkno: 9)
        let e3 = #expect(throws: FormatError.self) { try moved.verify(magic: .btree, fsid: Self.fsid, blkno: 7, seq: 43) }
        if case .badBlkno = e3 {} else { Issue.record("misplaced + stale: \(String(describing: e3))") }

        // another block type, and zeros (never written)
        let other = Self.sealedBlock(magic: .bloom)
        let e4 = #expect(throws: FormatError.self) { try other.verify(magic: .btree, fsid: Self.fsid, blkno: 7, seq: 43) }
        if case .badMagic = e4 {} else { Issue.record("other magic + stale: \(String(describing: e4))") }
        let zeros = BlockBuffer(size: Format.largeBlockSize)
        let e5 = #expect(throws: FormatError.self) { try zeros.verify(magic: .btree, fsid: Self.fsid, blkno: 7, seq: 43) }
        if case .badMagic = e5 {} else { Issue.record("zeros: \(String(describing: e5))") }
    }

    @Test func headerAccessorMatchesCodable() throws {
        var r = FormatRNG(seed: 41)
        let b = BlockBuffer(size: Format.smallBlockSize)
        for _ in 0..<100 {
            let h = Gen.header(&r)
            b.header = h
            #expect(b.header == h)
            #expect(try b.decode(BlockHeader.self) == h)
            #expect(b.read(0, 32) == h.encoded())
        }
    }
}
