import NIOCore
import NIOPosix
import ScoutFormat
import ScoutProtocol
import Testing

@testable import ScoutNet

/// Collects what a raw socket receives and notices when it closes.
final class RawSocket: ChannelInboundHandler, @unchecked Sendable {
    // only touched on the channel's loop, and read after close
    typealias InboundIn = ByteBuffer
    var received: [UInt8] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var b = unwrapInboundIn(data)
        received += b.readBytes(length: b.readableBytes) ?? []
    }

    static func connect(port: Int) async throws -> (any Channel, RawSocket) {
        let raw = RawSocket()
        let ch = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { ch in ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandler(raw) } }
            .connect(host: "127.0.0.1", port: port).get()
        return (ch, raw)
    }
}

@Suite(.timeLimit(.minutes(1)))
struct InvalidInputTests {
    static func greetingFrame(seq: UInt64 = 1, id: UInt64 = 1, response: Bool = false) -> [UInt8] {
        let g = NetGreeting(fsid: testFSID, fmtVers: testVers, rid: 0x99).encoded()
        return NetFrame(
            header: NetHeader(seq: seq, id: id, dataLen: UInt16(g.count), cmd: .greeting, isResponse: response), payload: g
        ).encoded()
    }

    static func expectClosed(server: NetServer, sending bytes: [UInt8]) async throws -> [UInt8] {
        let before = server.counters.snapshot().invalidMessages
        let (ch, raw) = try await RawSocket.connect(port: server.port)
        try await ch.writeAndFlush(ByteBuffer(bytes: bytes))
        try await within(.seconds(5), "server closes the socket") { try await ch.closeFuture.get() }
        try await eventually { server.counters.snapshot().invalidMessages == before + 1 }
        return try await ch.eventLoop.submit { raw.received }.get()
    }

    @Test func serverClosesOnGarbage() async throws {
        let server = try await startServer(TestServerHandler { _, _, p in .success(p) })
        var bad = Self.greetingFrame()
        bad[26] = 77  // unknown command
        _ = try await Self.expectClosed(server: server, sending: bad)
        var zero = Self.greetingFrame()
        for i in 0..<8 { zero[i] = 0 }  // seq 0
        _ = try await Self.expectClosed(server: server, sending: zero)
        // a greeting response sent to a server
        _ = try await Self.expectClosed(server: server, sending: Self.greetingFrame(response: true))
        // too long
        var long = Self.greetingFrame()
        long[24] = 0x4d
        long[25] = 0x04  // 1101
        _ = try await Self.expectClosed(server: server, sending: long)
        await server.shutdown()
    }

    @Test func serverClosesOnSecondGreeting() async throws {
        let server = try await startServer(TestServerHandler { _, _, p in .success(p) })
        let got = try await Self.expectClosed(
            server: server, sending: Self.greetingFrame() + Self.greetingFrame(seq: 2, id: 2))
        _ = got
        await server.shutdown()
    }

    @Test func rawGreetingGetsAWireCompatibleAnswer() async throws {
        let server = try await startServer(TestServerHandler(term: 42) { _, _, p in .success(p) })
        let (ch, raw) = try await RawSocket.connect(port: server.port)
        try await ch.writeAndFlush(ByteBuffer(bytes: Self.greetingFrame(seq: 5, id: 3)))
        try await eventually { (try? await ch.eventLoop.submit { raw.received.count }.get()) == 72 }
        let bytes = try await ch.eventLoop.submit { raw.received }.get()
        let h = try NetHeader.decode(bytes)
        #expect(h.isResponse && h.cmd == .greeting && h.id == 3 && h.error == .none && h.dataLen == 40)
        let g = try NetGreeting.decodePayload(Array(bytes[32...]))
        #expect(g.serverTerm == 42 && g.rid == 0x99 && g.fsid == testFSID)
        // a wrong fsid is answered with EINVAL and no payload, then closed
        let (ch2, raw2) = try await RawSocket.connect(port: server.port)
        var wrong = Self.greetingFrame()
        wrong[32] ^= 0xff
        try await ch2.writeAndFlush(ByteBuffer(bytes: wrong))
        try await within(.seconds(5)) { try await ch2.closeFuture.get() }
        let answer = try await ch2.eventLoop.submit { raw2.received }.get()
        let h2 = try NetHeader.decode(answer)
        #expect(h2.error == .einval && h2.dataLen == 0 && answer.count == 32)
        ch.close(promise: nil)
        await server.shutdown()
    }

    @Test func clientClosesOnGarbageAndReconnects() async throws {
        // a fake server that answers every connection with garbage
        let accepted = Recorder<Int>()
        let fake = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { ch in
                accepted.add(1)
                return ch.eventLoop.makeCompletedFuture {
                    ch.writeAndFlush(ByteBuffer(bytes: [UInt8](repeating: 0xff, count: 64)), promise: nil)
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let (client, _) = try makeClient(to: nil, address: AddressBox(fake.localAddress))
        client.start(handler: TestClientHandler())
        try await eventually { client.counters.snapshot().invalidMessages >= 2 && accepted.count >= 2 }
        await client.shutdown()
        try await fake.close()
    }
}
