import ScoutFormat
import ScoutTestSupport
import Testing

@testable import ScoutProtocol

@Suite struct NetHeaderTests {
    @Test func layoutMatchesFormatH() throws {
        let h = NetHeader(
            seq: 0x0102_0304_0506_0708, recvSeq: 0x1112_1314_1516_1718, id: 0x2122_2324_2526_2728,
            dataLen: 0x0503, cmd: .statfs, isResponse: true, error: .enospc)
        let b = h.encoded()
        #expect(b.count == 32)
        #expect(Array(b[0..<8]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(b[8..<16]) == [0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11])
        #expect(Array(b[16..<24]) == [0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21])
        #expect(Array(b[24..<26]) == [0x03, 0x05])
        #expect(b[26] == 18)  // SCOUTFS_NET_CMD_STATFS
        #expect(b[27] == 1)  // SCOUTFS_NET_FLAG_RESPONSE
        #expect(b[28] == 4)  // SCOUTFS_NET_ERR_ENOSPC
        #expect(Array(b[29..<32]) == [0, 0, 0])
        // data_len 0x503 is over the limit, so decode must refuse it
        #expect(throws: NetProtocolError.dataTooLong(0x503)) { try NetHeader.decode(b) }
    }

    @Test func roundTripsRandomHeaders() throws {
        var rng = SplitMix64(seed: 0x4e45_5448)
        for _ in 0..<2000 {
            let isResponse = rng.next() & 1 == 1
            let h = NetHeader(
                seq: rng.next() | 1, recvSeq: rng.next(), id: rng.next() | 1,
                dataLen: UInt16(rng.below(NetHeader.maxDataLength + 1)),
                cmd: NetCommand.allCases[rng.below(NetCommand.allCases.count)],
                isResponse: isResponse,
                error: isResponse ? NetWireError.allCases[rng.below(NetWireError.allCases.count)] : .none)
            #expect(try NetHeader.decode(h.encoded()) == h)
        }
    }

    @Test func commandAndErrorNumbersMatchFormatH() {
        #expect(NetCommand.greeting.rawValue == 0)
        #expect(NetCommand.lock.rawValue == 7)
        #expect(NetCommand.openInoMap.rawValue == 13)
        #expect(NetCommand.farewell.rawValue == 19)
        #expect(NetCommand.allCases.count == Int(NetCommand.unknownRaw))
        #expect(NetWireError.enolink.rawValue == 6)
        #expect(NetWireError.allCases.count == Int(NetWireError.unknownRaw))
    }

    static func raw(
        seq: UInt64 = 1, recvSeq: UInt64 = 0, id: UInt64 = 1, len: UInt16 = 0, cmd: UInt8 = 5, flags: UInt8 = 0,
        error: UInt8 = 0
    ) -> [UInt8] {
        var w = ByteWriter()
        w.u64(seq)
        w.u64(recvSeq)
        w.u64(id)
        w.u16(len)
        w.u8(cmd)
        w.u8(flags)
        w.u8(error)
        w.pad(3)
        return w.bytes
    }

    @Test func rejectsWhatTheOriginalRejects() {
        #expect(throws: NetProtocolError.zeroSeq) { try NetHeader.decode(Self.raw(seq: 0)) }
        #expect(throws: NetProtocolError.zeroID) { try NetHeader.decode(Self.raw(id: 0)) }
        #expect(throws: NetProtocolError.unknownCommand(20)) { try NetHeader.decode(Self.raw(cmd: 20)) }
        #expect(throws: NetProtocolError.unknownCommand(255)) { try NetHeader.decode(Self.raw(cmd: 255)) }
        #expect(throws: NetProtocolError.unknownFlags(2)) { try NetHeader.decode(Self.raw(flags: 2)) }
        #expect(throws: NetProtocolError.unknownFlags(0x81)) { try NetHeader.decode(Self.raw(flags: 0x81)) }
        #expect(throws: NetProtocolError.unknownError(7)) { try NetHeader.decode(Self.raw(flags: 1, error: 7)) }
        #expect(throws: NetProtocolError.dataTooLong(1101)) { try NetHeader.decode(Self.raw(len: 1101)) }
        #expect(throws: NetProtocolError.errorOnRequest(.eio)) { try NetHeader.decode(Self.raw(error: 3)) }
        #expect(throws: NetProtocolError.shortHeader(31)) { try NetHeader.decode(Array(Self.raw().prefix(31))) }
        // the limits themselves are fine, and padding is not checked (the original ignores it)
        var padded = Self.raw(len: 1100, flags: 1, error: 6)
        padded[30] = 0xff
        #expect((try? NetHeader.decode(padded))?.dataLen == 1100)
    }

    @Test func garbageNeverTraps() {
        var rng = SplitMix64(seed: 77)
        var decoded = 0
        for _ in 0..<20_000 {
            var b = (0..<32).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            // bias the interesting bytes toward valid values so both paths run
            if rng.next() & 1 == 0 {
                b[26] = UInt8(rng.below(22))
                b[27] = UInt8(rng.below(3))
                b[28] = UInt8(rng.below(8))
                b[25] = UInt8(rng.below(6))
            }
            if let h = try? NetHeader.decode(b) {
                decoded += 1
                #expect(h.encoded().prefix(29) == b.prefix(29))
            }
        }
        #expect(decoded > 0)
    }

    @Test func frameDecodeWaitsForWholeFrame() throws {
        let f = NetFrame(
            header: NetHeader(seq: 3, id: 9, dataLen: 5, cmd: .lock, isResponse: false), payload: [1, 2, 3, 4, 5])
        let bytes = f.encoded() + [0xaa]
        for n in 0..<37 {
            #expect(try NetFrame.decode(Array(bytes.prefix(n))) == nil)
        }
        let got = try #require(try NetFrame.decode(bytes))
        #expect(got.frame == f)
        #expect(got.length == 37)
        // a bad header is refused as soon as its 32 bytes are there, before the payload
        var bad = Array(bytes.prefix(32))
        bad[26] = 99
        #expect(throws: NetProtocolError.unknownCommand(99)) { try NetFrame.decode(bad) }
    }

    @Test func errnoMapping() {
        for e in NetWireError.allCases {
            #expect(NetWireError(errno: e.errno) == e)
            #expect(NetWireError(exactly: e.errno) == e)
        }
        #expect(NetWireError(errno: 0) == NetWireError.none)
        #expect(NetWireError(errno: LinuxErrno.ENOENT) == .enoent)
        #expect(NetWireError(errno: LinuxErrno.ENOLINK).errno == 67)
        // anything else becomes EINVAL, as the original sends it
        #expect(NetWireError(errno: LinuxErrno.ETIMEDOUT) == .einval)
        #expect(NetWireError(errno: -5) == .einval)
        #expect(NetWireError(exactly: LinuxErrno.ETIMEDOUT) == nil)
        #expect(NetErrno.enospc.wire == .enospc)
        #expect(NetErrno(LinuxErrno.EDEADLK).wire == .einval)
    }
}
