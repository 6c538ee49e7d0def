import ScoutFormat

/// The type byte of a quorum message (`SCOUTFS_QUORUM_MSG_*`).
public enum QuorumMessageType: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// A candidate asks for votes in its new term.
    case requestVote = 0
    /// A follower gives its vote for the term to a candidate.
    case vote = 1
    /// The leader tells members it is alive, delaying their elections.
    case heartbeat = 2
    /// The leader of the term tells members it has stopped, so they elect at once.
    case resignation = 3

    public var description: String {
        switch self {
        case .requestVote: "request_vote"
        case .vote: "vote"
        case .heartbeat: "heartbeat"
        case .resignation: "resignation"
        }
    }
}

/// Why a datagram is not a valid quorum message (the original counts all of them as
/// `quorum_recv_invalid` and drops them).
public enum QuorumMessageError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The datagram is not exactly 32 bytes.
    case size(Int)
    /// The crc32c over the first 28 bytes is not the stored one.
    case crc(stored: UInt32, computed: UInt32)
    /// The message is for another filesystem.
    case fsid(expected: UInt64, found: UInt64)
    /// The type byte is not one of the four message types.
    case type(UInt8)
    /// The sender's slot number is not a configured slot.
    case from(UInt8)

    public var description: String {
        switch self {
        case .size(let n): "quorum message of \(n) bytes, expected \(QuorumMessage.encodedSize)"
        case .crc(let s, let c): "quorum message crc \(hex(s)) != computed \(hex(c))"
        case .fsid(let e, let f): "quorum message fsid \(String(f, radix: 16)) != \(String(e, radix: 16))"
        case .type(let t): "quorum message type \(t) is invalid"
        case .from(let f): "quorum message from slot \(f), which is not configured"
        }
    }

    private func hex(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }
}

/// `struct scoutfs_quorum_message` (32 bytes, little-endian): the UDP datagram of the election.
///
/// | offset | field |
/// |---|---|
/// | 0 | fsid (u64) |
/// | 8 | version (u64, always 0) |
/// | 16 | term (u64) |
/// | 24 | type (u8) |
/// | 25 | from: the sender's slot (u8) |
/// | 26 | padding (2 bytes, zero) |
/// | 28 | crc32c (seed ~0, not inverted) over bytes 0..<28 (u32) |
///
/// The format has no "to" field: a message is addressed by the UDP destination, the slot's
/// address in the super block's quorum config. Like the original, the decoder checks size, crc,
/// fsid, type and sender slot, and accepts any version and padding (the version is reserved for
/// membership changes).
public struct QuorumMessage: Sendable, Hashable, CustomStringConvertible {
    /// Size of the datagram.
    public static let encodedSize = 32
    /// Bytes covered by the crc.
    static let crcOffset = 28

    /// The filesystem's fsid.
    public var fsid: UInt64
    /// Always 0 when sent.
    public var version: UInt64
    /// The sender's term.
    public var term: UInt64
    /// What the message says.
    public var type: QuorumMessageType
    /// The sender's slot number (0..<15).
    public var from: UInt8

    /// A message from slot `from`.
    public init(fsid: UInt64, term: UInt64, type: QuorumMessageType, from: UInt8, version: UInt64 = 0) {
        self.fsid = fsid
        self.version = version
        self.term = term
        self.type = type
        self.from = from
    }

    /// The sender's slot as an `Int`.
    public var fromSlot: Int { Int(from) }

    /// The 32 bytes to send, with the crc.
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: Self.encodedSize)
        w.u64(fsid)
        w.u64(version)
        w.u64(term)
        w.u8(type.rawValue)
        w.u8(from)
        w.pad(2)
        let crc = w.bytes.withUnsafeBytes { CRC32C.checksum($0) }
        w.u32(crc)
        return w.bytes
    }

    /// Decodes and validates a received datagram.
    ///
    /// - Parameters:
    ///   - bytes: the datagram.
    ///   - fsid: our filesystem's fsid.
    ///   - members: the configured slots; a sender outside them is invalid.
    /// - Throws: the first check that failed, in the original's order: size, crc, fsid, type, sender.
    public static func decode(
        _ bytes: UnsafeRawBufferPointer, fsid: UInt64, members: SlotSet
    ) throws(QuorumMessageError) -> QuorumMessage {
        guard bytes.count == encodedSize else { throw .size(bytes.count) }
        func u64(_ off: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: off, as: UInt64.self)) }
        let stored = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: crcOffset, as: UInt32.self))
        let computed = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<crcOffset]))
        guard stored == computed else { throw .crc(stored: stored, computed: computed) }
        let found = u64(0)
        guard found == fsid else { throw .fsid(expected: fsid, found: found) }
        guard let type = QuorumMessageType(rawValue: bytes[24]) else { throw .type(bytes[24]) }
        let from = bytes[25]
        guard members.contains(Int(from)) else { throw .from(from) }
        return QuorumMessage(fsid: found, term: u64(16), type: type, from: from, version: u64(8))
    }

    /// Decodes and validates a received datagram held in an array.
    public static func decode(_ bytes: [UInt8], fsid: UInt64, members: SlotSet) throws(QuorumMessageError) -> QuorumMessage {
        let result: Result<QuorumMessage, QuorumMessageError> = bytes.withUnsafeBytes { raw in
            Result { () throws(QuorumMessageError) -> QuorumMessage in try decode(raw, fsid: fsid, members: members) }
        }
        return try result.get()
    }

    /// `heartbeat term 7 from 2`.
    public var description: String { "\(type) term \(term) from \(from)" }
}
