import ScoutFormat
import ScoutTestSupport
import Testing

@testable import ScoutProtocol

extension SplitMix64 {
    mutating func u8() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in u8() } }
    mutating func key() -> Key {
        Key(zone: u8(), first: next(), type: u8(), second: next(), third: next(), fourth: u8())
    }
    mutating func root() -> BTreeRoot { BTreeRoot(ref: BlockRef(blkno: next(), seq: next()), height: u8()) }
    mutating func mode() -> LockMode { LockMode.allCases[below(LockMode.allCases.count)] }
    mutating func netLock() -> NetLock { NetLock(key: key(), writeSeq: next(), oldMode: mode(), newMode: mode()) }
}

@Suite struct NetPayloadTests {
    /// sizeof() of each structure in format.h.
    @Test func sizesMatchFormatH() {
        #expect(NetGreeting.encodedSize == 40)
        #expect(NetInodeAlloc.encodedSize == 16)
        #expect(NetRoots.encodedSize == 72)
        #expect(NetResizeDevices.encodedSize == 16)
        #expect(NetStatfs.encodedSize == 56)
        #expect(NetLock.encodedSize == 48)
        #expect(NetLockRecover.headerSize == 8)
        #expect(NetLockRecover.maxLocks == 22)
        #expect(OpenInoMapArgs.encodedSize == 16)
        #expect(OpenInoMap.encodedSize == 144)
        #expect(NetU64.encodedSize == 8)
        // the reused ScoutFormat payloads fit one message
        for size in [
            LogTrees.encodedSize, SrchCompact.encodedSize, LogMergeRequest.encodedSize,
            LogMergeComplete.encodedSize, VolumeOptions.encodedSize, NetLockRecover.encodedSize(nr: 22),
        ] {
            #expect(size <= NetHeader.maxDataLength)
        }
    }

    func roundTrip<T: FixedCodable>(_ v: T) throws {
        let b = v.encoded()
        #expect(b.count == T.encodedSize)
        #expect(try T.decodePayload(b) == v)
        #expect(throws: FormatError.self) { try T.decodePayload(b + [0]) }
        #expect(throws: FormatError.self) { try T.decodePayload(Array(b.dropLast())) }
    }

    @Test func roundTrips() throws {
        var r = SplitMix64(seed: 1234)
        for _ in 0..<200 {
            try roundTrip(NetGreeting(fsid: r.next(), fmtVers: r.next(), serverTerm: r.next(), rid: r.next(), flags: r.next()))
            try roundTrip(NetU64(r.next()))
            try roundTrip(NetInodeAlloc(ino: r.next(), nr: r.next()))
            try roundTrip(NetRoots(fsRoot: r.root(), logsRoot: r.root(), srchRoot: r.root()))
            try roundTrip(NetResizeDevices(newTotalMetaBlocks: r.next(), newTotalDataBlocks: r.next()))
            try roundTrip(
                NetStatfs(
                    uuid: r.bytes(16), freeMetaBlocks: r.next(), totalMetaBlocks: r.next(), freeDataBlocks: r.next(),
                    totalDataBlocks: r.next(), inodeCount: r.next()))
            try roundTrip(r.netLock())
            try roundTrip(OpenInoMapArgs(groupNr: r.next(), reqID: r.next()))
            try roundTrip(OpenInoMap(args: OpenInoMapArgs(groupNr: r.next()), bits: (0..<16).map { _ in r.next() }))
            let recover = NetLockRecover(locks: (0..<r.below(23)).map { _ in r.netLock() })
            let rb = recover.encoded()
            #expect(rb.count == NetLockRecover.encodedSize(nr: recover.locks.count))
            #expect(try NetLockRecover.decode(rb) == recover)
        }
    }

    @Test func fieldOffsets() {
        let g = NetGreeting(fsid: 1, fmtVers: 2, serverTerm: 3, rid: 4, flags: NetGreeting.flagQuorum).encoded()
        #expect(g[0] == 1 && g[8] == 2 && g[16] == 3 && g[24] == 4 && g[32] == 2)
        let l = NetLock(key: Key(zone: 9), writeSeq: 0x55, oldMode: .read, newMode: .writeOnly).encoded()
        #expect(l[25] == 9)  // sk_zone is the key's byte 25
        #expect(l[32] == 0x55 && l[40] == 1 && l[41] == 3)
        #expect(Array(l[42..<48]) == [0, 0, 0, 0, 0, 0])
        let s = NetStatfs(
            uuid: Array(repeating: 0xee, count: 16), freeMetaBlocks: 1, totalMetaBlocks: 2, freeDataBlocks: 3,
            totalDataBlocks: 4, inodeCount: 5
        ).encoded()
        #expect(s[15] == 0xee && s[16] == 1 && s[24] == 2 && s[32] == 3 && s[40] == 4 && s[48] == 5)
        let rec = NetLockRecover(locks: [NetLock(key: Key(), oldMode: .null, newMode: .write)]).encoded()
        #expect(rec[0] == 1 && rec[1] == 0 && rec.count == 56 && rec[8 + 41] == 2)
    }

    @Test func rejectsBadPayloads() {
        var l = NetLock(key: Key(), oldMode: .read, newMode: .write).encoded()
        l[41] = 4  // SCOUTFS_LOCK_INVALID
        #expect(throws: FormatError.self) { try NetLock.decodePayload(l) }
        var rec = NetLockRecover(locks: [NetLock(key: Key(), oldMode: .null, newMode: .read)]).encoded()
        rec[0] = 2  // says two locks, carries one
        #expect(throws: FormatError.self) { try NetLockRecover.decode(rec) }
        var big = [UInt8](repeating: 0, count: NetLockRecover.encodedSize(nr: 23))
        big[0] = 23
        #expect(throws: FormatError.self) { try NetLockRecover.decode(big) }
        #expect(throws: FormatError.self) { try NetLockRecover.decode([1]) }
    }

    @Test func garbageNeverTraps() {
        var r = SplitMix64(seed: 99)
        for _ in 0..<3000 {
            let b = r.bytes(r.below(200))
            _ = try? NetGreeting.decodePayload(b)
            _ = try? NetLock.decodePayload(b)
            _ = try? NetStatfs.decodePayload(b)
            _ = try? NetRoots.decodePayload(b)
            _ = try? OpenInoMap.decodePayload(b)
            _ = try? NetLockRecover.decode(b)
        }
        // exact-length garbage decodes (NetLock unless its modes are out of range)
        var ok = 0
        for _ in 0..<500 {
            var b = r.bytes(48)
            b[40] = UInt8(r.below(6))
            b[41] = UInt8(r.below(6))
            if (try? NetLock.decodePayload(b)) != nil { ok += 1 }
        }
        #expect(ok > 0 && ok < 500)
    }

    @Test func openInoMapBits() {
        var m = OpenInoMap(args: OpenInoMapArgs(groupNr: 3))
        m.insert(ino: 3 * 1024 + 65)
        #expect(m.contains(ino: 3 * 1024 + 65))
        #expect(!m.contains(ino: 3 * 1024 + 64))
        #expect(m.bits[1] == 2)
        // test_bit_le: bit 65 is byte 16 + 8, bit 1
        #expect(m.encoded()[16 + 8] == 2)
        var o = OpenInoMap(args: OpenInoMapArgs(groupNr: 3))
        o.insert(ino: 3 * 1024)
        m.formUnion(o)
        #expect(m.contains(ino: 3 * 1024) && OpenInoMap.group(ofIno: 3 * 1024 + 1023) == 3)
    }
}
