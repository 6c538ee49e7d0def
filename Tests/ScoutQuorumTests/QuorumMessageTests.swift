import ScoutFormat
import ScoutQuorum
import Testing

@Suite("Quorum message codec")
struct QuorumMessageTests {
    static let fsid: UInt64 = 0x0123_4567_89ab_cdef
    static let members = SlotSet([0, 3, 14])

    @Test("layout matches struct scoutfs_quorum_message byte for byte", arguments: QuorumMessageType.allCases)
    func layout(type: QuorumMessageType) throws {
        let m = QuorumMessage(fsid: Self.fsid, term: 0x1122_3344_5566_7788, type: type, from: 3)
        let bytes = m.encoded()
        #expect(bytes.count == 32)
        var expected: [UInt8] = []
        for v in [Self.fsid, 0, 0x1122_3344_5566_7788] as [UInt64] {
            for i in 0..<8 { expected.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
        }
        expected += [type.rawValue, 3, 0, 0]
        let crc = CRC32C.checksum(expected)
        for i in 0..<4 { expected.append(UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i)))) }
        #expect(bytes == expected)
        let back = try QuorumMessage.decode(bytes, fsid: Self.fsid, members: Self.members)
        #expect(back == m)
    }

    @Test("type bytes are the original's")
    func typeValues() {
        #expect(QuorumMessageType.requestVote.rawValue == 0)
        #expect(QuorumMessageType.vote.rawValue == 1)
        #expect(QuorumMessageType.heartbeat.rawValue == 2)
        #expect(QuorumMessageType.resignation.rawValue == 3)
        #expect(QuorumMessageType(rawValue: 4) == nil)
    }

    @Test("wrong sizes are rejected", arguments: [0, 1, 31, 33, 64])
    func size(count: Int) {
        let bytes = [UInt8](repeating: 0, count: count)
        #expect(throws: QuorumMessageError.size(count)) {
            try QuorumMessage.decode(bytes, fsid: Self.fsid, members: Self.members)
        }
    }

    @Test("any flipped bit fails the crc", arguments: 0..<32)
    func crc(byte: Int) {
        var bytes = QuorumMessage(fsid: Self.fsid, term: 9, type: .heartbeat, from: 0).encoded()
        bytes[byte] ^= 0x10
        #expect {
            try QuorumMessage.decode(bytes, fsid: Self.fsid, members: Self.members)
        } throws: { error in
            guard let e = error as? QuorumMessageError, case .crc = e else { return false }
            return true
        }
    }

    @Test("another filesystem's message is rejected")
    func fsid() {
        let bytes = QuorumMessage(fsid: 77, term: 9, type: .heartbeat, from: 0).encoded()
        #expect(throws: QuorumMessageError.fsid(expected: Self.fsid, found: 77)) {
            try QuorumMessage.decode(bytes, fsid: Self.fsid, members: Self.members)
        }
    }

    /// A message with a valid crc over arbitrary type and sender bytes.
    static func raw(type: UInt8, from: UInt8, version: UInt64 = 0, pad: UInt8 = 0) -> [UInt8] {
        var bytes = QuorumMessage(fsid: fsid, term: 5, type: .vote, from: 0, version: version).encoded()
        bytes[24] = type
        bytes[25] = from
        bytes[26] = pad
        let crc = CRC32C.checksum(Array(bytes[0..<28]))
        for i in 0..<4 { bytes[28 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
        return bytes
    }

    @Test("invalid type bytes are rejected", arguments: [UInt8(4), 5, 128, 255])
    func type(value: UInt8) {
        #expect(throws: QuorumMessageError.type(value)) {
            try QuorumMessage.decode(Self.raw(type: value, from: 0), fsid: Self.fsid, members: Self.members)
        }
    }

    @Test("senders outside the configured slots are rejected", arguments: [UInt8(1), 2, 13, 15, 200, 255])
    func from(value: UInt8) {
        #expect(throws: QuorumMessageError.from(value)) {
            try QuorumMessage.decode(Self.raw(type: 2, from: value), fsid: Self.fsid, members: Self.members)
        }
    }

    @Test("version and padding are not checked, as the original")
    func lenient() throws {
        let m = try QuorumMessage.decode(Self.raw(type: 1, from: 14, version: 3, pad: 0xff), fsid: Self.fsid, members: Self.members)
        #expect(m.version == 3)
        #expect(m.type == .vote)
        #expect(m.fromSlot == 14)
    }

    @Test("errors describe themselves")
    func descriptions() {
        #expect(QuorumMessageError.size(3).description.contains("3 bytes"))
        #expect(QuorumMessageError.from(9).description.contains("slot 9"))
    }
}

@Suite("Slot sets and time")
struct SlotSetTests {
    @Test func slotSet() {
        var s = SlotSet([3, 0, 14, 15, -1, 3])
        #expect(Array(s) == [0, 3, 14])
        #expect(s.count == 3)
        #expect(!s.contains(15))
        #expect(!s.contains(-1))
        let first = s.insert(7)
        let again = s.insert(7)
        let invalid = s.insert(99)
        #expect(first)
        #expect(!again)
        #expect(!invalid)
        #expect(s.description == "{0,3,7,14}")
    }

    @Test func configuredSlots() {
        var c = QuorumConfig()
        c.slots[2] = InetAddr(ipv4: 0x7f00_0001, port: 5000)
        c.slots[9] = InetAddr(ipv4: 0x7f00_0002, port: 5000)
        var v6 = InetAddr()
        v6.family = InetAddr.familyIPv6
        c.slots[4] = v6
        #expect(Array(SlotSet(configuredIn: c)) == [2, 9])
    }

    @Test func instants() {
        let t = MonotonicInstant.milliseconds(1500)
        #expect(t.nanoseconds == 1_500_000_000)
        #expect(t.advanced(byMilliseconds: 250).nanoseconds == 1_750_000_000)
        #expect(t.nanoseconds(since: .milliseconds(2000)) == 0)
        #expect(MonotonicInstant(nanoseconds: .max).advanced(byNanoseconds: 5).nanoseconds == .max)
        #expect(MonotonicInstant.milliseconds(.max).nanoseconds == .max)
        #expect(t.description == "1.500000000")
    }
}
