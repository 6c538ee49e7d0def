import Foundation
import ScoutBlockIO
import ScoutFormat
import ScoutTestSupport
import SystemPackage
import Testing

typealias IORNG = SplitMix64

extension SplitMix64 {
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: next()) } }
}

let fsid: UInt64 = 0x5C0F_5C0F

/// A 64 KiB block with a header for (blkno, seq) and a payload derived from both.
func makeBlock(blkno: UInt64, seq: UInt64, magic: BlockMagic = .btree, size: Int = Format.largeBlockSize) -> BlockBuffer {
    let b = BlockBuffer(size: size)
    b.header = BlockHeader(magic: magic.rawValue, fsid: fsid, seq: seq, blkno: blkno)
    var r = IORNG(seed: blkno &* 1000 &+ seq)
    b.write(r.bytes(256), at: 32)
    b.write(r.bytes(256), at: size - 256)
    return b
}

func filled(_ byte: UInt8, size: Int = Format.largeBlockSize) -> BlockBuffer {
    let b = BlockBuffer(size: size)
    b.write([UInt8](repeating: byte, count: size), at: 0)
    return b
}

func bytesOf(_ b: BlockBuffer) -> [UInt8] { b.read(0, b.size) }

func readRaw(_ dev: any BlockDevice, at offset: UInt64, size: Int = Format.largeBlockSize) throws -> [UInt8] {
    let b = BlockBuffer(size: size)
    try dev.read(into: b, at: offset)
    return bytesOf(b)
}

// MARK: - BlockCache

@Suite struct BlockCacheTests {
    @Test func evictsLeastRecentlyUsedFirst() {
        let c = BlockCache(capacity: 3 * 4096)
        for b in UInt64(1)...3 { c.insert(blkno: b, seq: 10 + b, buffer: BlockBuffer(size: 4096)) }
        #expect(c.count == 3 && c.bytes == 3 * 4096)
        // touching 1 makes 2 the least recent
        #expect(c.get(blkno: 1, seq: 11) != nil)
        c.insert(blkno: 4, seq: 14, buffer: BlockBuffer(size: 4096))
        #expect(c.get(blkno: 2, seq: 12) == nil)
        #expect(c.get(blkno: 1, seq: 11) != nil)
        #expect(c.get(blkno: 3, seq: 13) != nil)
        #expect(c.get(blkno: 4, seq: 14) != nil)
        // now 1 is least recent; a double-size block evicts 1 and 3
        c.insert(blkno: 5, seq: 15, buffer: BlockBuffer(size: 8192))
        #expect(c.get(blkno: 1, seq: 11) == nil)
        #expect(c.get(blkno: 3, seq: 13) == nil)
        #expect(c.get(blkno: 4, seq: 14) != nil)
        #expect(c.get(blkno: 5, seq: 15) != nil)
        #expect(c.bytes == 3 * 4096 && c.count == 2)
    }

    @Test func getWithAnotherSeqMisses() throws {
        let c = BlockCache(capacity: 1 << 20)
        let buf = BlockBuffer(size: 4096)
        c.insert(blkno: 9, seq: 5, buffer: buf)
        #expect(c.get(blkno: 9, seq: 4) == nil)
        #expect(c.get(blkno: 9, seq: 6) == nil)
        let hit = try #require(c.get(blkno: 9, seq: 5))
        #expect(hit === buf)
        #expect(c.stats.hits == 1 && c.stats.misses == 2)
        // re-inserting the blkno with a new seq replaces the entry and its bytes
        c.insert(blkno: 9, seq: 6, buffer: BlockBuffer(size: 8192))
        #expect(c.get(blkno: 9, seq: 5) == nil)
        #expect(c.get(blkno: 9, seq: 6) != nil)
        #expect(c.count == 1 && c.bytes == 8192)
        c.remove(blkno: 9)
        c.remove(blkno: 9)
        #expect(c.count == 0 && c.bytes == 0)
    }

    @Test func oversizeBlocksAreNotCached() {
        let c = BlockCache(capacity: 4096)
        c.insert(blkno: 1, seq: 1, buffer: BlockBuffer(size: 4096))
        c.insert(blkno: 2, seq: 1, buffer: BlockBuffer(size: 8192))
        #expect(c.get(blkno: 1, seq: 1) != nil)
        #expect(c.get(blkno: 2, seq: 1) == nil)
        #expect(c.bytes == 4096)
        let none = BlockCache(capacity: 0)
        none.insert(blkno: 1, seq: 1, buffer: BlockBuffer(size: 4096))
        #expect(none.count == 0 && none.bytes == 0)
    }

    /// Random inserts, lookups and removes against a simple LRU model.
    @Test(arguments: [1, 2, 3, 4])
    func staysWithinCapacityAndMatchesLRUModel(seed: UInt64) {
        var r = IORNG(seed: seed)
        let capacity = 10 * 4096 + r.below(3) * 4096
        let c = BlockCache(capacity: capacity)
        // model: most recent first
        var model: [(blkno: UInt64, seq: UInt64, size: Int)] = []
        var buffers: [UInt64: BlockBuffer] = [:]
        for step in 0..<4000 {
            let blkno = UInt64(r.below(40))
            switch r.below(10) {
            case 0..<5:
                let size = [4096, 8192, 16384][r.below(3)]
                let seq = r.next() % 4
                let buf = BlockBuffer(size: size)
                c.insert(blkno: blkno, seq: seq, buffer: buf)
                buffers[blkno] = buf
                model.removeAll { $0.blkno == blkno }
                model.insert((blkno, seq, size), at: 0)
                while model.reduce(0, { $0 + $1.size }) > capacity { model.removeLast() }
            case 5..<9:
                let seq = r.next() % 4
                let got = c.get(blkno: blkno, seq: seq)
                if let i = model.firstIndex(where: { $0.blkno == blkno && $0.seq == seq }) {
                    #expect(got === buffers[blkno], "step \(step)")
                    model.insert(model.remove(at: i), at: 0)
                } else {
                    #expect(got == nil, "step \(step)")
                }
            default:
                c.remove(blkno: blkno)
                model.removeAll { $0.blkno == blkno }
            }
            let modelBytes = model.reduce(0) { $0 + $1.size }
            #expect(c.bytes <= capacity, "step \(step)")
            #expect(c.bytes == modelBytes, "step \(step)")
            #expect(c.count == model.count, "step \(step)")
            if c.count != model.count { return }
        }
    }

    @Test func concurrentUseStaysConsistent() async {
        let c = BlockCache(capacity: 16 * 4096)
        await withTaskGroup(of: Void.self) { g in
            for t in 0..<4 {
                g.addTask {
                    var r = IORNG(seed: UInt64(t))
                    for _ in 0..<2000 {
                        let b = UInt64(r.below(64))
                        if r.below(2) == 0 {
                            c.insert(blkno: b, seq: 1, buffer: BlockBuffer(size: 4096))
                        } else {
                            _ = c.get(blkno: b, seq: 1)
                        }
                    }
                }
            }
        }
        #expect(c.bytes <= 16 * 4096)
        #expect(c.bytes == c.count * 4096)
    }
}

// MARK: - MetaDevice

@Suite struct MetaDeviceTests {
    static let blocks: UInt64 = 32
    static func memory() -> MemoryDevice { MemoryDevice(size: blocks << UInt64(Format.largeShift)) }

    @Test func sealedBlocksReadBackVerified() throws {
        let mem = Self.memory()
        let md = MetaDevice(device: mem, fsid: fsid)
        #expect(md.totalLargeBlocks == Self.blocks)
        var expected: [UInt64: [UInt8]] = [:]
        for blkno in UInt64(2)..<Self.blocks {
            let b = makeBlock(blkno: blkno, seq: blkno * 3)
            try md.write(large: b)
            #expect(b.header.crc == b.computeCRC())
            expected[blkno] = bytesOf(b)
        }
        // a fresh device object has an empty cache: every read goes to the device and is verified
        let fresh = MetaDevice(device: mem, fsid: fsid)
        for blkno in UInt64(2)..<Self.blocks {
            let b = try fresh.read(BlockRef(blkno: blkno, seq: blkno * 3), magic: .btree)
            #expect(bytesOf(b) == expected[blkno])
            try b.verify(magic: .btree, fsid: fsid, blkno: blkno, seq: blkno * 3)
        }
        #expect(fresh.cache.count == Int(Self.blocks) - 2)
        // second reads are cache hits returning the same buffer
        let a = try fresh.read(BlockRef(blkno: 5, seq: 15), magic: .btree)
        let again = try fresh.read(BlockRef(blkno: 5, seq: 15), magic: .btree)
        #expect(a === again)
        // the raw bytes on the device are the sealed block
        #expect(try readRaw(mem, at: 5 << 16) == expected[5])
    }

    @Test func wrongSeqThrowsStaleAndIsNotCached() throws {
        let mem = Self.memory()
        try MetaDevice(device: mem, fsid: fsid).write(large: makeBlock(blkno: 4, seq: 7))
        let md = MetaDevice(device: mem, fsid: fsid)
        let e = #expect(throws: BlockIOError.self) { _ = try md.read(BlockRef(blkno: 4, seq: 8), magic: .btree) }
        #expect(e == .format(.stale(blkno: 4, expectedSeq: 8, foundSeq: 7)))
        if case .format(let f) = e { #expect(f.isStale) }
        #expect(md.cache.count == 0)
        // the right seq still works, and then a wrong seq misses the cache and is stale again
        _ = try md.read(BlockRef(blkno: 4, seq: 7), magic: .btree)
        #expect(md.cache.count == 1)
        #expect(throws: BlockIOError.format(.stale(blkno: 4, expectedSeq: 6, foundSeq: 7))) {
            _ = try md.read(BlockRef(blkno: 4, seq: 6), magic: .btree)
        }
    }

    @Test func rewrittenBlockMakesOldRefStale() throws {
        let mem = Self.memory()
        let md = MetaDevice(device: mem, fsid: fsid)
        try md.write(large: makeBlock(blkno: 6, seq: 1))
        _ = try md.read(BlockRef(blkno: 6, seq: 1), magic: .btree)
        try md.write(large: makeBlock(blkno: 6, seq: 2))
        #expect(throws: BlockIOError.format(.stale(blkno: 6, expectedSeq: 1, foundSeq: 2))) {
            _ = try md.read(BlockRef(blkno: 6, seq: 1), magic: .btree)
        }
        #expect(try md.read(BlockRef(blkno: 6, seq: 2), magic: .btree).header.seq == 2)
    }

    @Test func flippedPayloadByteThrowsBadCRCAndIsNotCached() throws {
        let mem = Self.memory()
        try MetaDevice(device: mem, fsid: fsid).write(large: makeBlock(blkno: 3, seq: 9))
        let offset: UInt64 = (3 << 16) + 30_000
        var raw = try readRaw(mem, at: offset & ~0xfff, size: 4096)
        raw[Int(offset & 0xfff)] ^= 0x40
        mem.writeBytes(raw, at: offset & ~0xfff)

        let md = MetaDevice(device: mem, fsid: fsid)
        for _ in 0..<2 {
            let e = #expect(throws: BlockIOError.self) { _ = try md.read(BlockRef(blkno: 3, seq: 9), magic: .btree) }
            guard case .format(.badCRC(let blkno, _, _)) = e else {
                Issue.record("flipped byte: \(String(describing: e))")
                return
            }
            #expect(blkno == 3)
            #expect(md.cache.count == 0)
        }
        // corruption wins over staleness
        let e = #expect(throws: BlockIOError.self) { _ = try md.read(BlockRef(blkno: 3, seq: 10), magic: .btree) }
        if case .format(.badCRC) = e {} else { Issue.record("flipped + stale: \(String(describing: e))") }
    }

    @Test func otherVerificationFailures() throws {
        let mem = Self.memory()
        try MetaDevice(device: mem, fsid: fsid).write(large: makeBlock(blkno: 3, seq: 9))
        let md = MetaDevice(device: mem, fsid: fsid)
        #expect(throws: BlockIOError.format(.badMagic(blkno: 3, expected: BlockMagic.bloom.rawValue, found: BlockMagic.btree.rawValue))) {
            _ = try md.read(BlockRef(blkno: 3, seq: 9), magic: .bloom)
        }
        let other = MetaDevice(device: mem, fsid: fsid + 1)
        #expect(throws: BlockIOError.format(.badFSID(blkno: 3, expected: fsid + 1, found: fsid))) {
            _ = try other.read(BlockRef(blkno: 3, seq: 9), magic: .btree)
        }
        // never-written blocks read as zeros: bad magic, not stale
        let e = #expect(throws: BlockIOError.self) { _ = try md.read(BlockRef(blkno: 10, seq: 1), magic: .btree) }
        if case .format(.badMagic) = e {} else { Issue.record("zero block: \(String(describing: e))") }
        // a block copied to another place fails the blkno check
        mem.writeBytes(try readRaw(mem, at: 3 << 16), at: 11 << 16)
        #expect(throws: BlockIOError.format(.badBlkno(expected: 11, found: 3))) {
            _ = try md.read(BlockRef(blkno: 11, seq: 9), magic: .btree)
        }
        #expect(md.cache.count == 0)
    }

    @Test func readingPastTheEndThrowsIO() throws {
        let md = MetaDevice(device: Self.memory(), fsid: fsid)
        for blkno in [Self.blocks, Self.blocks + 1, 1 << 40, UInt64.max >> 16, UInt64.max] {
            let e = #expect(throws: BlockIOError.self) { _ = try md.read(BlockRef(blkno: blkno, seq: 1), magic: .btree) }
            guard case .io(_, let b) = e else {
                Issue.record("blkno \(blkno): \(String(describing: e))")
                continue
            }
            #expect(b == blkno)
            #expect(throws: BlockIOError.self) { _ = try md.readUnverified(largeBlkno: blkno) }
        }
        let smallEnd = (Self.blocks << 16) >> 12
        for blkno in [smallEnd, smallEnd + 1, UInt64.max >> 12, UInt64.max] {
            let e = #expect(throws: BlockIOError.self) { _ = try md.readSmall(blkno: blkno, magic: .quorum) }
            guard case .io(_, let b) = e else {
                Issue.record("small blkno \(blkno): \(String(describing: e))")
                continue
            }
            #expect(b == blkno)
        }
        // the last block is readable (unverified: it was never written)
        #expect(try md.readUnverified(largeBlkno: Self.blocks - 1).size == Format.largeBlockSize)
    }

    @Test func writingPastTheEndThrowsIO() throws {
        let mem = Self.memory()
        let md = MetaDevice(device: mem, fsid: fsid)
        for blkno in [Self.blocks, 1 << 48, UInt64.max] {
            let e = #expect(throws: BlockIOError.self) { try md.write(large: makeBlock(blkno: blkno, seq: 1)) }
            if case .io(_, let b) = e { #expect(b == blkno) } else { Issue.record("large \(blkno): \(String(describing: e))") }
            #expect(md.cache.get(blkno: blkno, seq: 1) == nil)
        }
        let smallEnd = (Self.blocks << 16) >> 12
        for blkno in [smallEnd, 1 << 52, UInt64.max] {
            let e = #expect(throws: BlockIOError.self) { try md.write(small: makeBlock(blkno: blkno, seq: 1, magic: .quorum, size: 4096)) }
            if case .io(_, let b) = e { #expect(b == blkno) } else { Issue.record("small \(blkno): \(String(describing: e))") }
        }
        // nothing wrapped around onto the start of the device
        #expect(try readRaw(mem, at: 0).allSatisfy { $0 == 0 })
    }

    @Test func smallBlocksAndSuperRoundTrip() throws {
        let mem = Self.memory()
        let md = MetaDevice(device: mem, fsid: fsid)
        let q = makeBlock(blkno: Format.quorumBlkno + 2, seq: 1, magic: .quorum, size: Format.smallBlockSize)
        try md.write(small: q)
        let back = try md.readSmall(blkno: Format.quorumBlkno + 2, magic: .quorum)
        #expect(bytesOf(back) == bytesOf(q))
        #expect(throws: BlockIOError.self) { _ = try md.readSmall(blkno: Format.quorumBlkno + 3, magic: .quorum) }

        var sb = SuperBlock(hdr: BlockHeader(magic: BlockMagic.superBlock.rawValue, fsid: fsid, seq: 5, blkno: Format.superBlkno),
                            fmtVers: 2, flags: Format.flagIsMetaBdev, uuid: Array(1...16))
        sb.nextIno = 1024
        sb.totalMetaBlocks = Self.blocks
        sb.fsRoot = BTreeRoot(ref: BlockRef(blkno: 3, seq: 4), height: 1)
        try md.writeSuper(sb)
        let read = try MetaDevice.readSuper(from: mem)
        var expected = sb
        expected.hdr.crc = read.hdr.crc
        #expect(read == expected)
        // the padding after the super's 1488 bytes is zero and covered by the crc
        let raw = try readRaw(mem, at: Format.superBlkno << 12, size: 4096)
        #expect(raw[SuperBlock.encodedSize...].allSatisfy { $0 == 0 })
        #expect(try md.readSmall(blkno: Format.superBlkno, magic: .superBlock).header.seq == 5)
        // a flipped byte in the padding breaks the crc
        var bad = raw
        bad[4000] = 1
        mem.writeBytes(bad, at: Format.superBlkno << 12)
        let e = #expect(throws: BlockIOError.self) { _ = try MetaDevice.readSuper(from: mem) }
        if case .format(.badCRC) = e {} else { Issue.record("super padding: \(String(describing: e))") }
    }

    @Test func tornWriteReadsAsCorruptNotStale() throws {
        let mem = Self.memory()
        try MetaDevice(device: mem, fsid: fsid).write(large: makeBlock(blkno: 8, seq: 1))
        // the rewrite of blkno 8 (the device's first write here) is torn after 100 bytes
        let crash = CrashingDevice(base: mem, crashAt: 0, mode: .tear(bytes: 100))
        try MetaDevice(device: crash, fsid: fsid).write(large: makeBlock(blkno: 8, seq: 2))
        let md = MetaDevice(device: mem, fsid: fsid)
        for seq: UInt64 in [1, 2] {
            let e = #expect(throws: BlockIOError.self) { _ = try md.read(BlockRef(blkno: 8, seq: seq), magic: .btree) }
            if case .format(.badCRC) = e {} else { Issue.record("torn, seq \(seq): \(String(describing: e))") }
        }
    }
}

// MARK: - FileBlockDevice

@Suite struct FileBlockDeviceTests {
    static func tempPath(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("scout-bio-\(name)-\(UUID().uuidString)").path
    }

    static func sparseFile(size: UInt64) throws -> String {
        let path = tempPath("dev")
        let fd = try FileDescriptor.open(FilePath(path), .readWrite, options: [.create, .truncate], permissions: .ownerReadWrite)
        defer { try? fd.close() }
        try fd.resize(to: Int64(size))
        return path
    }

    @Test func sparseFileReadWriteAndSize() throws {
        let size: UInt64 = 64 << 20
        let path = try Self.sparseFile(size: size)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let dev = try FileBlockDevice(path: path, writable: true)
        #expect(dev.size == size)
        // holes read as zeros
        #expect(try readRaw(dev, at: 5 << 16).allSatisfy { $0 == 0 })
        let b = makeBlock(blkno: 7, seq: 3)
        b.seal()
        try dev.write(b, at: 7 << 16)
        try dev.write(filled(0xAB, size: 4096), at: size - 4096)
        try dev.sync()
        #expect(try readRaw(dev, at: 7 << 16) == bytesOf(b))
        #expect(try readRaw(dev, at: size - 4096, size: 4096).allSatisfy { $0 == 0xAB })
        #expect(dev.size == size)

        // through MetaDevice, after reopening read-only
        let ro = try FileBlockDevice(path: path, writable: false)
        #expect(ro.size == size)
        let md = MetaDevice(device: ro, fsid: fsid)
        #expect(bytesOf(try md.read(BlockRef(blkno: 7, seq: 3), magic: .btree)) == bytesOf(b))
        #expect(throws: Errno.self) { try ro.write(b, at: 0) }
    }

    /// A device that grew after it was opened (RESIZE_DEVICES on another mount): a block past
    /// the size measured at open is read once the device is measured again, which MetaDevice
    /// does by itself before refusing a blkno.
    @Test func aGrownDeviceIsMeasuredAgain() throws {
        let path = try Self.sparseFile(size: 1 << 20)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let reader = try FileBlockDevice(path: path, writable: false)
        let md = MetaDevice(device: reader, fsid: fsid)
        #expect(md.totalLargeBlocks == 16)
        #expect(throws: BlockIOError.self) { _ = try md.read(BlockRef(blkno: 20, seq: 1), magic: .btree) }
        #expect(truncate(path, 2 << 20) == 0)
        #expect(try FileBlockDevice.measure(path: path) == 2 << 20)
        let writer = try FileBlockDevice(path: path, writable: true)
        let b = makeBlock(blkno: 20, seq: 1)
        b.seal()
        try writer.write(b, at: 20 << 16)
        try writer.sync()
        #expect(reader.size == 1 << 20)
        #expect(bytesOf(try md.read(BlockRef(blkno: 20, seq: 1), magic: .btree)) == bytesOf(b))
        #expect(reader.size == 2 << 20 && md.totalLargeBlocks == 32)
        #expect(throws: BlockIOError.self) { _ = try md.read(BlockRef(blkno: 32, seq: 1), magic: .btree) }
    }

    @Test func readingPastEndOfFileFails() throws {
        let path = try Self.sparseFile(size: 1 << 20)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let dev = try FileBlockDevice(path: path, writable: false)
        #expect(throws: Errno.ioError) { _ = try readRaw(dev, at: 1 << 20) }
        // straddling the end is a short read
        #expect(throws: Errno.ioError) { _ = try readRaw(dev, at: (1 << 20) - 4096) }
        let md = MetaDevice(device: dev, fsid: fsid)
        let e = #expect(throws: BlockIOError.self) { _ = try md.read(BlockRef(blkno: 16, seq: 1), magic: .btree) }
        if case .io = e {} else { Issue.record("past end: \(String(describing: e))") }
        let e2 = #expect(throws: BlockIOError.self) { _ = try md.readSmall(blkno: UInt64.max, magic: .quorum) }
        if case .io = e2 {} else { Issue.record("huge small blkno: \(String(describing: e2))") }
    }

    @Test func hugeOffsetsThrowInsteadOfTrapping() throws {
        let path = try Self.sparseFile(size: 1 << 20)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let dev = try FileBlockDevice(path: path, writable: true)
        for off in [UInt64(Int64.max), UInt64(Int64.max) + 1, UInt64.max - 4095] {
            #expect(throws: Errno.self) { _ = try readRaw(dev, at: off, size: 4096) }
            #expect(throws: Errno.self) { try dev.write(filled(1, size: 4096), at: off) }
        }
    }

    @Test func missingPathThrowsENOENT() {
        let path = Self.tempPath("missing")
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try FileBlockDevice(path: path, writable: true) }
        #expect(throws: Errno.noSuchFileOrDirectory) { _ = try FileBlockDevice(path: path, writable: false) }
    }

    @Test func directoryIsNotADevice() throws {
        let dir = Self.tempPath("dir")
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(throws: Errno(rawValue: ENODEV)) { _ = try FileBlockDevice(path: dir, writable: false) }
        // open(2) itself refuses to open a directory for writing
        #expect(throws: Errno.isDirectory) { _ = try FileBlockDevice(path: dir, writable: true) }
        // character devices are not block devices either
        #expect(throws: Errno(rawValue: ENODEV)) { _ = try FileBlockDevice(path: "/dev/null", writable: false) }
    }

    /// Reads and writes at any offset and length, from buffers at any address, land where a
    /// byte-array model says (direct I/O bounces what is not aligned).
    @Test func unalignedIOMatchesAModel() throws {
        let size = 1 << 20
        let path = try Self.sparseFile(size: UInt64(size))
        defer { unlink(path) }
        let dev = try FileBlockDevice(path: path, writable: true)
        #expect(dev.direct, "the temporary directory's filesystem should take O_DIRECT")
        var model = [UInt8](repeating: 0, count: size)
        var rng = IORNG(seed: 0xD1EC7)
        for _ in 0..<300 {
            let off = Int(rng.next() % UInt64(size - 1))
            let len = 1 + Int(rng.next() % UInt64(min(size - off, 3 * 4096 + 100)))
            if rng.next() % 2 == 0 {
                let bytes = rng.bytes(len + 1)
                // +1: an address off by one byte from whatever the allocator returned
                try bytes.withUnsafeBytes { raw in
                    try dev.write(UnsafeRawBufferPointer(rebasing: raw[1...]), at: UInt64(off))
                }
                model.replaceSubrange(off..<(off + len), with: bytes[1...])
            } else {
                var got = [UInt8](repeating: 0, count: len + 1)
                try got.withUnsafeMutableBytes { raw in
                    try dev.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[1...]), at: UInt64(off))
                }
                #expect(Array(got[1...]) == Array(model[off..<(off + len)]), "read \(len) at \(off)")
            }
        }
        // what the file holds, read without the device
        let fd = open(path, O_RDONLY)
        defer { close(fd) }
        var all = [UInt8](repeating: 0, count: size)
        #expect(pread(fd, &all, size, 0) == size)
        #expect(all == model)
    }

    /// Two loop devices over one image are two hosts on a shared LUN: each has its own page
    /// cache. A block written through one is read through the other as written, although the
    /// other's page cache still holds the old contents.
    @Test(.enabled(if: getuid() == 0, "needs root for loop devices"))
    func separateLoopDevicesReadEachOthersWrites() throws {
        let path = try Self.sparseFile(size: 8 << 20)
        defer { unlink(path) }
        let a = try Self.loop(path), b = try Self.loop(path)
        defer { Self.detach(a); Self.detach(b) }
        let devA = try FileBlockDevice(path: a, writable: true)
        let devB = try FileBlockDevice(path: b, writable: true)
        #expect(devA.direct && devB.direct)
        try devA.write(filled(1), at: 1 << 16)
        try devA.sync()
        // b's page cache now holds the block as first written
        let buffered = open(b, O_RDONLY)
        defer { close(buffered) }
        var old = [UInt8](repeating: 0, count: 4096)
        #expect(pread(buffered, &old, 4096, 1 << 16) == 4096 && old.allSatisfy { $0 == 1 })
        for round in UInt8(2)..<6 {
            try devA.write(filled(round), at: 1 << 16)
            try devA.sync()
            #expect(try readRaw(devB, at: 1 << 16).allSatisfy { $0 == round }, "round \(round)")
            try devB.write(filled(round + 100), at: 2 << 16)
            #expect(try readRaw(devA, at: 2 << 16).allSatisfy { $0 == round + 100 }, "round \(round)")
        }
        // what a reader through b's page cache gets: the hazard direct I/O avoids
        #expect(pread(buffered, &old, 4096, 1 << 16) == 4096 && old.allSatisfy { $0 == 1 })
    }

    static func loop(_ file: String) throws -> String {
        let pipe = popen("losetup -f --show \(file)", "r")
        defer { if let pipe { pclose(pipe) } }
        var line = [CChar](repeating: 0, count: 256)
        guard let pipe, fgets(&line, 256, pipe) != nil else { throw Errno.ioError }
        let dev = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard dev.hasPrefix("/dev/loop") else { throw Errno.ioError }
        return dev
    }

    static func detach(_ dev: String) {
        if let p = popen("losetup -d \(dev)", "r") { pclose(p) }
    }
}

// MARK: - CrashingDevice

@Suite struct CrashingDeviceTests {
    static let size: UInt64 = 16 << 16

    /// A base device whose every large block holds 0xEE, so lost and torn writes are visible.
    static func base() throws -> MemoryDevice {
        let m = MemoryDevice(size: size)
        for blk in UInt64(0)..<16 { try m.write(filled(0xEE), at: blk << 16) }
        return m
    }

    @Test func dropLandsWritesBeforeNAndLosesTheRest() throws {
        let base = try Self.base()
        let dev = CrashingDevice(base: base, crashAt: 3, mode: .drop)
        for i in 0..<6 {
            #expect(dev.crashed == (i > 3))
            try dev.write(filled(UInt8(i + 1)), at: UInt64(i) << 16)
        }
        #expect(dev.writeCount == 6 && dev.crashed)
        for i in 0..<6 {
            let want: UInt8 = i < 3 ? UInt8(i + 1) : 0xEE
            #expect(try readRaw(dev, at: UInt64(i) << 16).allSatisfy { $0 == want }, "block \(i)")
            #expect(try readRaw(base, at: UInt64(i) << 16) == readRaw(dev, at: UInt64(i) << 16))
        }
    }

    @Test(arguments: [0, 1, 31, 4095, 4096, 5000, 65535])
    func tearCutsTheNthWriteAndLosesTheRest(bytes: Int) throws {
        let base = try Self.base()
        let dev = CrashingDevice(base: base, crashAt: 2, mode: .tear(bytes: bytes))
        for i in 0..<5 { try dev.write(filled(UInt8(i + 1)), at: UInt64(i) << 16) }
        #expect(try readRaw(dev, at: 0).allSatisfy { $0 == 1 })
        #expect(try readRaw(dev, at: 1 << 16).allSatisfy { $0 == 2 })
        let torn = try readRaw(dev, at: 2 << 16)
        #expect(torn[..<bytes].allSatisfy { $0 == 3 })
        #expect(torn[bytes...].allSatisfy { $0 == 0xEE })
        #expect(try readRaw(dev, at: 3 << 16).allSatisfy { $0 == 0xEE })
        #expect(try readRaw(dev, at: 4 << 16).allSatisfy { $0 == 0xEE })
    }

    @Test func crashAtZeroAndBeyondTheLastWrite() throws {
        let base = try Self.base()
        let none = CrashingDevice(base: base, crashAt: 0, mode: .drop)
        try none.write(filled(9), at: 0)
        #expect(try readRaw(base, at: 0).allSatisfy { $0 == 0xEE })
        let all = CrashingDevice(base: base, crashAt: 100, mode: .tear(bytes: 10))
        for i in 0..<4 { try all.write(filled(UInt8(i + 1)), at: UInt64(i) << 16) }
        #expect(!all.crashed)
        for i in 0..<4 { #expect(try readRaw(base, at: UInt64(i) << 16).allSatisfy { $0 == UInt8(i + 1) }) }
    }

    @Test func snapshotIsIndependent() throws {
        let base = try Self.base()
        let snap = base.snapshot()
        try base.write(filled(1), at: 0)
        #expect(try readRaw(snap, at: 0).allSatisfy { $0 == 0xEE })
        #expect(try readRaw(base, at: 0).allSatisfy { $0 == 1 })
        #expect(throws: Errno.self) { _ = try readRaw(base, at: Self.size) }
    }
}
