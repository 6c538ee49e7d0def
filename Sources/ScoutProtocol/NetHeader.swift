import ScoutFormat

/// Why a received message (or a message about to be sent) breaks the protocol.
///
/// Every one of these shuts the connection down, as in the original's `invalid_message()`.
public enum NetProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The header's `seq` is 0.
    case zeroSeq
    /// The header's `id` is 0.
    case zeroID
    /// The command number is not one the protocol knows.
    case unknownCommand(UInt8)
    /// Flag bits other than RESPONSE are set.
    case unknownFlags(UInt8)
    /// The error number is not one the protocol knows.
    case unknownError(UInt8)
    /// `data_len` is above `NetHeader.maxDataLength`.
    case dataTooLong(Int)
    /// A request carries an error (only responses may).
    case errorOnRequest(NetWireError)
    /// A second greeting arrived on one socket.
    case secondGreeting
    /// A greeting request reached a client, or a greeting response reached a server.
    case greetingWrongDirection
    /// Fewer bytes than a header.
    case shortHeader(Int)
    /// A greeting was submitted where none may be sent (an acceptor's request, a connector's
    /// response, or no socket waiting for its greeting).
    case greetingNotAllowed

    public var description: String {
        switch self {
        case .zeroSeq: "message seq is 0"
        case .zeroID: "message id is 0"
        case .unknownCommand(let c): "unknown command \(c)"
        case .unknownFlags(let f): "unknown flags 0x\(String(f, radix: 16))"
        case .unknownError(let e): "unknown error \(e)"
        case .dataTooLong(let n): "data_len \(n) > \(NetHeader.maxDataLength)"
        case .errorOnRequest(let e): "request carries error \(e)"
        case .secondGreeting: "second greeting on one socket"
        case .greetingWrongDirection: "greeting in the wrong direction"
        case .shortHeader(let n): "\(n) bytes, a header needs \(NetHeader.encodedSize)"
        case .greetingNotAllowed: "a greeting cannot be sent here"
        }
    }
}

/// `struct scoutfs_net_header` (32 bytes): precedes every message on the socket.
///
/// Layout: `seq` @0, `recv_seq` @8, `id` @16 (le64 each), `data_len` @24 (le16), `cmd` @26,
/// `flags` @27, `error` @28, 3 bytes of padding @29. A decoded header has passed the original's
/// per-message checks; the per-socket greeting checks are `MessagingState`'s.
public struct NetHeader: Hashable, Sendable, CustomStringConvertible {
    /// Header size in bytes.
    public static let encodedSize = 32
    /// `SCOUTFS_NET_MAX_DATA_LEN`: the largest payload.
    public static let maxDataLength = 1100
    /// `SCOUTFS_NET_FLAG_RESPONSE`.
    public static let flagResponse: UInt8 = 1

    /// The sender's send order (1, 2, ...), per connection.
    public var seq: UInt64
    /// The last seq the sender received from us: a piggy-backed acknowledgement.
    public var recvSeq: UInt64
    /// The request id; a response carries its request's id.
    public var id: UInt64
    /// Payload bytes after the header.
    public var dataLen: UInt16
    public var cmd: NetCommand
    /// True for a response (flag RESPONSE).
    public var isResponse: Bool
    /// Only responses carry errors.
    public var error: NetWireError

    public init(
        seq: UInt64, recvSeq: UInt64 = 0, id: UInt64, dataLen: UInt16, cmd: NetCommand,
        isResponse: Bool, error: NetWireError = .none
    ) {
        self.seq = seq
        self.recvSeq = recvSeq
        self.id = id
        self.dataLen = dataLen
        self.cmd = cmd
        self.isResponse = isResponse
        self.error = error
    }

    /// The flags byte as sent.
    @inlinable public var flags: UInt8 { isResponse ? Self.flagResponse : 0 }

    /// Header plus payload bytes.
    @inlinable public var frameLength: Int { Self.encodedSize + Int(dataLen) }

    /// Decodes and validates a header from the first 32 bytes of `raw`.
    ///
    /// - Throws: `NetProtocolError` for a short buffer or any field the original rejects
    ///   (seq or id 0, unknown command, flags or error, data_len over 1100, an error on a request).
    @inlinable
    public static func decode(_ raw: UnsafeRawBufferPointer) throws(NetProtocolError) -> NetHeader {
        guard raw.count >= encodedSize else { throw .shortHeader(raw.count) }
        return try validate(
            seq: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            recvSeq: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            id: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            dataLen: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 24, as: UInt16.self)),
            cmd: raw[26], flags: raw[27], error: raw[28])
    }

    /// Decodes and validates a header from the start of `bytes`.
    public static func decode(_ bytes: [UInt8]) throws(NetProtocolError) -> NetHeader {
        let r: Result<NetHeader, NetProtocolError> = bytes.withUnsafeBytes { raw in
            Result { () throws(NetProtocolError) -> NetHeader in try decode(raw) }
        }
        return try r.get()
    }

    /// The original's per-message checks on raw field values, in its order.
    @inlinable
    public static func validate(
        seq: UInt64, recvSeq: UInt64, id: UInt64, dataLen: UInt16, cmd rawCmd: UInt8, flags: UInt8,
        error rawError: UInt8
    ) throws(NetProtocolError) -> NetHeader {
        if seq == 0 { throw .zeroSeq }
        if id == 0 { throw .zeroID }
        guard let cmd = NetCommand(rawValue: rawCmd) else { throw .unknownCommand(rawCmd) }
        if flags & ~flagResponse != 0 { throw .unknownFlags(flags) }
        guard let error = NetWireError(rawValue: rawError) else { throw .unknownError(rawError) }
        if Int(dataLen) > maxDataLength { throw .dataTooLong(Int(dataLen)) }
        let isResponse = flags & flagResponse != 0
        if !isResponse && error != .none { throw .errorOnRequest(error) }
        return NetHeader(
            seq: seq, recvSeq: recvSeq, id: id, dataLen: dataLen, cmd: cmd, isResponse: isResponse, error: error)
    }

    /// Appends the 32 header bytes.
    @inlinable
    public func encode(to w: inout ByteWriter) {
        w.u64(seq)
        w.u64(recvSeq)
        w.u64(id)
        w.u16(dataLen)
        w.u8(cmd.rawValue)
        w.u8(flags)
        w.u8(error.rawValue)
        w.pad(3)
    }

    /// The 32 header bytes.
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: Self.encodedSize)
        encode(to: &w)
        return w.bytes
    }

    public var description: String {
        "\(isResponse ? "resp" : "req") \(cmd) seq \(seq) recv_seq \(recvSeq) id \(id) len \(dataLen)"
            + (error == .none ? "" : " err \(error)")
    }
}

/// One message: a header and its payload (`payload.count == header.dataLen`).
public struct NetFrame: Hashable, Sendable, CustomStringConvertible {
    public var header: NetHeader
    public var payload: [UInt8]

    public init(header: NetHeader, payload: [UInt8]) {
        self.header = header
        self.payload = payload
    }

    /// Header and payload bytes, as sent on the socket.
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: header.frameLength)
        header.encode(to: &w)
        w.bytes(payload)
        return w.bytes
    }

    /// Decodes the first frame of `bytes`: nil when more bytes are needed, else the frame and
    /// the bytes it used. The header is validated as soon as its 32 bytes are there.
    public static func decode(_ bytes: [UInt8]) throws(NetProtocolError) -> (frame: NetFrame, length: Int)? {
        guard bytes.count >= NetHeader.encodedSize else { return nil }
        let header = try NetHeader.decode(bytes)
        guard bytes.count >= header.frameLength else { return nil }
        return (NetFrame(header: header, payload: Array(bytes[NetHeader.encodedSize..<header.frameLength])), header.frameLength)
    }

    public var description: String { header.description }
}
