import ScoutBTree
import ScoutFormat
import ScoutStorage
import ScoutTestSupport
import Testing

/// srch entry and block encoding against the original's format.h and srch.c layout.
@Suite("srch encoding")
struct SrchEncodingTests {
    @Test func structureSizesAreTheOriginals() {
        #expect(SrchEntry.encodedSize == 24)
        #expect(SrchFile.encodedSize == 88)
        #expect(SrchBlockHeader.encodedSize == 112)
        #expect(SrchCompact.encodedSize == 584)
        #expect(SrchParent.refs == (65536 - 32) / 16)
        // SCOUTFS_SRCH_BLOCK_SAFE_BYTES: block size - header - a full-size entry (2 + 3 * 8)
        #expect(SrchBlockHeader.safeBytes == 65536 - 112 - 26)
        #expect(Format.srchLogBlockLimit == 16)
    }

    @Test func knownEncodings() {
        // (1, 2, 3) after zero: zigzag 2, 4, 6 in one byte each, lengths 0x111
        #expect(SrchCodec.encode(SrchEntry(hash: 1, ino: 2, id: 3), after: SrchEntry()) == [0x11, 0x01, 2, 4, 6])
        // an equal entry is only the lengths word
        let e = SrchEntry(hash: 0xdead_beef, ino: 77, id: 9)
        #expect(SrchCodec.encode(e, after: e) == [0, 0])
        // a negative difference: -1 is zigzag 1
        #expect(SrchCodec.encode(SrchEntry(hash: 5, ino: 4, id: 0), after: SrchEntry(hash: 5, ino: 5, id: 0)) == [0x10, 0x00, 1])
        // the largest difference takes 8 bytes
        let big = SrchCodec.encode(SrchEntry(hash: 1 << 63, ino: 0, id: 0), after: SrchEntry())
        #expect(big.count == 10 && big[0] == 8)
    }

    @Test func randomEntriesRoundTrip() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 {
            func r() -> UInt64 {
                switch UInt8.random(in: 0...3, using: &rng) {
                case 0: return UInt64.random(in: 0...255, using: &rng)
                case 1: return UInt64.random(in: 0...UInt64.max, using: &rng)
                case 2: return UInt64.max - UInt64.random(in: 0...255, using: &rng)
                default: return UInt64.random(in: 0...(1 << 40), using: &rng)
                }
            }
            let prev = SrchEntry(hash: r(), ino: r(), id: r())
            let e = SrchEntry(hash: r(), ino: r(), id: r())
            let bytes = SrchCodec.encode(e, after: prev)
            #expect(bytes.count >= 2 && bytes.count <= Format.srchEntryMaxBytes)
            let d = bytes.withUnsafeBytes { SrchCodec.decode($0, at: 0, after: prev) }
            #expect(d?.0 == e && d?.1 == bytes.count)
        }
    }

    @Test func appendedFilesReadBackAcrossBlocksAndParents() throws {
        let store = MemoryBlockStore()
        var f = SrchFile()
        var written: [SrchEntry] = []
        // enough random entries for several blocks (so a parent level)
        for i in 0..<12_000 {
            let e = SrchEntry(hash: UInt64.random(in: 0...UInt64.max), ino: UInt64(i % 700 + 1000), id: UInt64(i))
            try SrchFiles.append(store, &f, e)
            written.append(e)
        }
        #expect(f.entries == UInt64(written.count))
        #expect(f.blocks > 1 && f.height == 2)
        #expect(f.first == written.min() && f.last == written.max())
        var read: [SrchEntry] = []
        try SrchFiles.forEachEntry(store, f) { e in
            read.append(e)
            return true
        }
        #expect(read == written)
        // each block's header bounds its entries and keeps a full-size entry's room
        for blk in 0..<f.blocks {
            let b = try SrchFiles.block(store, f, blk)
            let h = try b.decode(SrchBlockHeader.self)
            let es = try SrchCodec.entries(of: b)
            #expect(b.header.magic == BlockMagic.srchBlock.rawValue)
            #expect(Int(h.entryNr) == es.count && h.first == es.min() && h.last == es.max() && h.tail == es.last)
            #expect(Int(h.entryBytes) <= SrchBlockHeader.safeBytes + Format.srchEntryMaxBytes)
        }
    }

    @Test func heightsAndRefIndexesFollowTheRadix() {
        let n = UInt64(SrchParent.refs)
        #expect(SrchFiles.height(for: 0) == 1)
        #expect(SrchFiles.height(for: 1) == 2)
        #expect(SrchFiles.height(for: n - 1) == 2)
        #expect(SrchFiles.height(for: n) == 3)
        #expect(SrchFiles.refIndex(n + 5, level: 1) == 5)
        #expect(SrchFiles.refIndex(n + 5, level: 2) == 1)
    }

    @Test func searchCancelsPairsAndCutsPasses() throws {
        let store = MemoryBlockStore()
        var f = SrchFile()
        let h: UInt64 = 0xabc
        // ino 10 created and deleted; 11 and 12 created; another hash on 13
        for e in [SrchEntry(hash: h, ino: 10, id: 1), SrchEntry(hash: h, ino: 11, id: 1), SrchEntry(hash: 7, ino: 13, id: 1),
                  SrchEntry(hash: h, ino: 10, id: 1), SrchEntry(hash: h, ino: 12, id: 4)]
        {
            try SrchFiles.append(store, &f, e)
        }
        var s = SrchSearch(hash: h, from: SrchEntry(hash: h, ino: 0, id: 0), lastIno: .max)
        try s.search(store, f, sorted: false)
        #expect(s.result(limit: 10).inodes == [11, 12] && s.result(limit: 10).complete)
        #expect(s.result(limit: 1).inodes == [11] && !s.result(limit: 1).complete)
    }
}
