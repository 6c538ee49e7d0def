import NIOCore
import ScoutProtocol

/// Splits the byte stream into `NetFrame`s, validating each header as soon as its 32 bytes arrive.
///
/// An invalid header throws its `NetProtocolError`; the connection handler behind this decoder
/// counts it, logs it and closes the connection, as the original's receive worker does.
public struct NetFrameDecoder: ByteToMessageDecoder, Sendable {
    public typealias InboundOut = NetFrame

    public init() {}

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let frame = try Self.decodeFrame(&buffer) else { return .needMoreData }
        context.fireChannelRead(Self.wrapInboundOut(frame))
        return .continue
    }

    /// Bytes left over after the peer closed are a partial message; they are dropped.
    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        return .needMoreData
    }

    /// Reads one whole frame from the front of `buffer`, or nothing when more bytes are needed.
    ///
    /// - Throws: `NetProtocolError` for an invalid header (nothing is consumed then).
    @inlinable
    public static func decodeFrame(_ buffer: inout ByteBuffer) throws(NetProtocolError) -> NetFrame? {
        guard buffer.readableBytes >= NetHeader.encodedSize else { return nil }
        let header: Result<NetHeader, NetProtocolError> = buffer.withUnsafeReadableBytes { raw in
            Result { () throws(NetProtocolError) -> NetHeader in try NetHeader.decode(raw) }
        }
        let h = try header.get()
        guard buffer.readableBytes >= h.frameLength else { return nil }
        buffer.moveReaderIndex(forwardBy: NetHeader.encodedSize)
        let payload = h.dataLen == 0 ? [] : buffer.readBytes(length: Int(h.dataLen)) ?? []
        return NetFrame(header: h, payload: payload)
    }
}

/// Writes a `NetFrame` as its 32 header bytes and its payload.
public struct NetFrameEncoder: MessageToByteEncoder, Sendable {
    public typealias OutboundIn = NetFrame

    public init() {}

    public func encode(data: NetFrame, out: inout ByteBuffer) {
        Self.encodeFrame(data, into: &out)
    }

    /// Appends `frame` to `out`.
    @inlinable
    public static func encodeFrame(_ frame: NetFrame, into out: inout ByteBuffer) {
        let h = frame.header
        out.reserveCapacity(minimumWritableBytes: h.frameLength)
        out.writeInteger(h.seq, endianness: .little)
        out.writeInteger(h.recvSeq, endianness: .little)
        out.writeInteger(h.id, endianness: .little)
        out.writeInteger(UInt16(frame.payload.count), endianness: .little)
        out.writeInteger(h.cmd.rawValue)
        out.writeInteger(h.flags)
        out.writeInteger(h.error.rawValue)
        out.writeRepeatingByte(0, count: 3)
        out.writeBytes(frame.payload)
    }
}
