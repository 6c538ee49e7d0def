import NIOCore
import ScoutProtocol
import Testing

@testable import ScoutNet

@Suite struct FrameCodecTests {
    static func frame(seq: UInt64, payload: [UInt8], cmd: NetCommand = .lock) -> NetFrame {
        NetFrame(
            header: NetHeader(seq: seq, recvSeq: seq / 2, id: seq, dataLen: UInt16(payload.count), cmd: cmd, isResponse: false),
            payload: payload)
    }

    @Test func encoderWritesTheWireBytes() throws {
        let f = Self.frame(seq: 7, payload: [1, 2, 3])
        var buf = ByteBuffer()
        NetFrameEncoder.encodeFrame(f, into: &buf)
        #expect(buf.readBytes(length: buf.readableBytes) == f.encoded())
    }

    @Test func decoderReassemblesFragments() throws {
        let frames = (1...20).map { i in Self.frame(seq: UInt64(i), payload: Array(repeating: UInt8(i), count: i * 50)) }
        let bytes = frames.flatMap { $0.encoded() }
        // feed in uneven pieces into one accumulating buffer, as ByteToMessageHandler does
        var buffer = ByteBuffer()
        var got: [NetFrame] = []
        var at = 0
        var piece = 1
        while at < bytes.count {
            let end = min(bytes.count, at + piece)
            buffer.writeBytes(bytes[at..<end])
            at = end
            piece = piece * 3 % 97 + 1
            while let f = try NetFrameDecoder.decodeFrame(&buffer) { got.append(f) }
        }
        #expect(got == frames)
        #expect(buffer.readableBytes == 0)
    }

    @Test func decoderRefusesBadHeaderBeforeItsPayload() throws {
        var bad = Self.frame(seq: 1, payload: [1, 2, 3]).encoded()
        bad[27] = 0x80  // unknown flag
        var buf = ByteBuffer(bytes: bad.prefix(32))
        #expect(throws: NetProtocolError.unknownFlags(0x80)) { try NetFrameDecoder.decodeFrame(&buf) }
    }

    @Test func oversizedLengthIsRefusedAtOnce() throws {
        var bad = Self.frame(seq: 1, payload: []).encoded()
        bad[24] = 0xff
        bad[25] = 0xff
        var buf = ByteBuffer(bytes: bad)
        #expect(throws: NetProtocolError.dataTooLong(0xffff)) { try NetFrameDecoder.decodeFrame(&buf) }
        #expect(buf.readableBytes == 32)  // nothing consumed
    }
}
