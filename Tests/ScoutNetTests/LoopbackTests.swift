import NIOCore
import NIOPosix
import ScoutFormat
import ScoutProtocol
import Synchronization
import Testing

@testable import ScoutNet

@Suite(.timeLimit(.minutes(1)))
struct LoopbackTests {
    @Test func requestAndResponse() async throws {
        let handler = TestServerHandler { rid, cmd, payload in
            cmd == .statfs ? .success(payload + rid.bytes) : .failure(.enoent)
        }
        let server = try await startServer(handler)
        let (client, _) = try makeClient(to: server, rid: 0x77)
        let ch = TestClientHandler()
        client.start(handler: ch)
        try await within(.seconds(10)) {
            let r = try await client.request(.statfs, [1, 2, 3])
            #expect(r == [1, 2, 3] + UInt64(0x77).bytes)
            // a remote errno comes back as the same errno
            do throws(NetError) {
                _ = try await client.request(.getRoots, [])
                Issue.record("no error")
            } catch {
                #expect(error == .remote(.enoent) && error.errno == LinuxErrno.ENOENT)
            }
        }
        #expect(client.serverTerm == 1)
        #expect(handler.events.all.prefix(2) == [.greeting(rid: 0x77, term: 0, farewell: false), .greeted(rid: 0x77, firstContact: true)])
        #expect(ch.events.all.first == .connected(serverTerm: 1, newServer: true))
        #expect(await server.clients() == [0x77])
        await client.shutdown()
        await server.shutdown()
    }

    @Test func typedRequests() async throws {
        let server = try await startServer(TestServerHandler { _, cmd, p in
            switch cmd {
            case .allocInodes:
                let n = try! NetU64.decodePayload(p).value
                return .success(NetInodeAlloc(ino: 1000, nr: n).encoded())
            case .getRoots:
                return .success(NetRoots(fsRoot: BTreeRoot(ref: BlockRef(blkno: 5, seq: 6), height: 2)).encoded())
            case .getLastSeq:
                return .success(NetU64(77).encoded())
            case .commitLogTrees, .setVolopt:
                return .success([])
            case .lock:
                var l = try! NetLock.decodePayload(p)
                l.oldMode = l.newMode
                l.writeSeq = 9
                return .success(l.encoded())
            case .statfs:
                return .success([1, 2, 3])  // wrong size
            default:
                return .failure(.enoent)
            }
        })
        let (client, _) = try makeClient(to: server)
        client.start(handler: TestClientHandler())
        let grant = Recorder<NetLock>()
        try await within(.seconds(10)) {
            #expect(try await client.allocInodes(count: 64) == NetInodeAlloc(ino: 1000, nr: 64))
            #expect(try await client.getRoots().fsRoot.ref.blkno == 5)
            #expect(try await client.getLastSeq() == 77)
            try await client.commitLogTrees(LogTrees())
            try await client.setVolopt(VolumeOptions())
            do throws(NetError) {
                _ = try await client.statfs()
                Issue.record("no error")
            } catch {
                #expect(error == .badResponse(.statfs, length: 3) && error.errno == LinuxErrno.EMSGSIZE)
            }
            do throws(NetError) {
                _ = try await client.getLogMerge()
                Issue.record("no error")
            } catch {
                #expect(error == .remote(.enoent))
            }
            client.requestLock(NetLock(key: Key(zone: 2), oldMode: .null, newMode: .write)) { r in
                if case .success(let l) = r { grant.add(l) }
            }
            try await eventually { grant.count == 1 }
        }
        #expect(grant.all.first?.newMode == .write && grant.all.first?.writeSeq == 9)
        await client.shutdown()
        await server.shutdown()
    }

    @Test func errnosWithoutAWireValueBecomeEINVAL() async throws {
        let server = try await startServer(TestServerHandler { _, _, _ in .failure(NetErrno(LinuxErrno.EDEADLK)) })
        let (client, _) = try makeClient(to: server)
        client.start(handler: TestClientHandler())
        let r: Result<[UInt8], NetError> = try await within(.seconds(10)) {
            do throws(NetError) { return .success(try await client.request(.statfs, [])) } catch { return .failure(error) }
        }
        #expect(r == .failure(.remote(.einval)))
        // and oversized or greeting requests are refused locally
        let big = try? await client.request(.lock, [UInt8](repeating: 0, count: 1101))
        #expect(big == nil)
        do throws(NetError) { _ = try await client.request(.greeting, []) } catch { #expect(error == .invalid(.greetingNotAllowed)) }
        await client.shutdown()
        await server.shutdown()
    }

    @Test func manyConcurrentRequests() async throws {
        let server = try await startServer(TestServerHandler { _, _, p in
            try? await Task.sleep(for: .microseconds(Int(p[0]) * 10))
            return .success(p)
        })
        let (client, _) = try makeClient(to: server)
        client.start(handler: TestClientHandler())
        let n = 500
        let ok = try await within(.seconds(20)) {
            try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<n {
                    group.addTask {
                        let p = [UInt8(i % 256)] + UInt64(i).bytes
                        return try await client.request(.statfs, p) == p
                    }
                }
                var ok = 0
                for try await r in group where r { ok += 1 }
                return ok
            }
        }
        #expect(ok == n)
        await client.shutdown()
        await server.shutdown()
    }

    /// One request at a time, as a metadata operation waits for its lock or inode grant.
    @Test func sequentialRoundTrips() async throws {
        let server = try await startServer(TestServerHandler { _, _, p in .success(p) })
        let (client, _) = try makeClient(to: server)
        client.start(handler: TestClientHandler())
        let lock = NetLock(key: Key(zone: 1, first: 1), oldMode: .null, newMode: .read).encoded()
        _ = try await within(.seconds(10)) { try await client.request(.statfs, []) }
        let n = 2000
        let clock = ContinuousClock()
        let elapsed = try await within(.seconds(30)) {
            try await clock.measure {
                for _ in 0..<n { _ = try await client.request(.lock, lock) }
            }
        }
        print("sequential round trip: \(elapsed / n) per request over loopback")
        #expect(client.counters.snapshot().messagesReceived >= n)
        await client.shutdown()
        await server.shutdown()
    }

    @Test func serverInitiatedRequests() async throws {
        let server = try await startServer(TestServerHandler { _, _, p in .success(p) })
        let (client, _) = try makeClient(to: server, rid: 5)
        var ch = TestClientHandler()
        ch.onRequest = { req in
            switch req.cmd {
            case .syncLogTrees:
                req.respond(.success([]))
            case .lock:
                // answer later, from another task, as the lock invalidation worker does
                Task {
                    try? await Task.sleep(for: .milliseconds(20))
                    var l = try! NetLock.decodePayload(req.payload)
                    l.oldMode = l.newMode
                    req.respond(.success(l.encoded()))
                }
            default:
                req.respond(.failure(.enospc))
            }
        }
        client.start(handler: ch)
        try await within(.seconds(10)) {
            _ = try await client.request(.statfs, [])  // connected and greeted
            let l = NetLock(key: Key(zone: 3, first: 9), oldMode: .write, newMode: .null)
            let answer = try NetLock.decodePayload(try await server.request(rid: 5, .lock, l.encoded()))
            #expect(answer.oldMode == .null && answer.key == l.key)
            #expect(try await server.request(rid: 5, .syncLogTrees, []) == [])
            do throws(NetError) {
                _ = try await server.request(rid: 5, .openInoMap, [])
                Issue.record("no error")
            } catch {
                #expect(error == .remote(.enospc))
            }
            do throws(NetError) {
                _ = try await server.request(rid: 6, .syncLogTrees, [])
                Issue.record("no error")
            } catch {
                #expect(error == .notConnected)
            }
        }
        await client.shutdown()
        await server.shutdown()
    }

    /// LOCK requests for one key reach the client handler one at a time, in the server's order;
    /// other keys run alongside.
    @Test func lockMessagesAreOrderedPerKey() async throws {
        let server = try await startServer(TestServerHandler { _, _, p in .success(p) })
        let (client, _) = try makeClient(to: server, rid: 8)
        let seen = Recorder<(key: UInt64, id: UInt64)>()
        let inFlight = Mutex<[UInt64: Int]>([:])
        let overlap = Atomic<Int>(0)
        var ch = TestClientHandler()
        ch.onRequest = { req in
            let l = try! NetLock.decodePayload(req.payload)
            let k = l.key.first
            inFlight.withLock { m in
                m[k, default: 0] += 1
                if m[k]! > 1 { overlap.add(1, ordering: .relaxed) }
            }
            seen.add((k, req.id))  // ids follow the order the server sent them in
            try? await Task.sleep(for: .microseconds(Int(l.writeSeq % 7) * 300))
            inFlight.withLock { $0[k]! -= 1 }
            req.respond(.success(req.payload))
        }
        client.start(handler: ch)
        try await within(.seconds(20)) {
            _ = try await client.request(.statfs, [])
            // the server submits in order per key from one task per key
            try await withThrowingTaskGroup(of: Void.self) { group in
                for key in UInt64(0)..<4 {
                    group.addTask {
                        try await withThrowingTaskGroup(of: Void.self) { inner in
                            for seq in UInt64(1)...40 {
                                let l = NetLock(key: Key(zone: 1, first: key), writeSeq: seq, oldMode: .read, newMode: .null)
                                // submission order is fixed by awaiting each send's hop in order
                                inner.addTask { _ = try await server.request(rid: 8, .lock, l.encoded()) }
                                try await Task.sleep(for: .microseconds(200))
                            }
                            try await inner.waitForAll()
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        #expect(overlap.load(ordering: .relaxed) == 0)
        #expect(seen.count == 160)
        for key in UInt64(0)..<4 {
            let ids = seen.all.filter { $0.key == key }.map(\.id)
            #expect(ids == ids.sorted(), "key \(key) out of order")
        }
        await client.shutdown()
        await server.shutdown()
    }

    /// Sockets break while requests are in flight both ways: nothing is lost, and nothing is
    /// processed twice.
    @Test func reconnectResendsExactlyOnce() async throws {
        let processed = Mutex<[UInt64: Int]>([:])
        let server = try await startServer(TestServerHandler { _, _, p in
            processed.withLock { $0[UInt64(bytes: p), default: 0] += 1 }
            try? await Task.sleep(for: .milliseconds(Int(UInt64(bytes: p) % 20)))
            return .success(p)
        })
        let (client, _) = try makeClient(to: server, rid: 9)
        let clientProcessed = Mutex<[UInt64: Int]>([:])
        var ch = TestClientHandler()
        ch.onRequest = { req in
            clientProcessed.withLock { $0[UInt64(bytes: req.payload), default: 0] += 1 }
            req.respond(.success(req.payload))
        }
        client.start(handler: ch)
        let n = 300
        try await within(.seconds(30)) {
            _ = try await client.request(.statfs, UInt64(1_000_000).bytes)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<n {
                    group.addTask {
                        // spread the requests over the time the sockets break
                        try await Task.sleep(for: .microseconds(i * 600))
                        let p = UInt64(i).bytes
                        let r = try await client.request(.statfs, p)
                        #expect(r == p)
                    }
                    group.addTask {
                        try await Task.sleep(for: .microseconds(i * 600))
                        let p = UInt64(500_000 + i).bytes
                        let r = try await server.request(rid: 9, .syncLogTrees, p)
                        #expect(r == p)
                    }
                }
                group.addTask {
                    for k in 0..<8 {
                        try await Task.sleep(for: .milliseconds(25))
                        if k % 2 == 0 {
                            await client.dropConnectionForTesting()
                        } else {
                            await server.dropConnectionForTesting(rid: 9)
                        }
                    }
                }
                try await group.waitForAll()
            }
        }
        let counts = processed.withLock { $0 }
        #expect((0..<n).allSatisfy { counts[UInt64($0)] == 1 })
        let ccounts = clientProcessed.withLock { $0 }
        #expect((0..<n).allSatisfy { ccounts[UInt64(500_000 + $0)] == 1 })
        let stats = client.counters.snapshot()
        #expect(stats.connections >= 5)
        // more frames went out than one per message: some were resent on a new socket
        #expect(stats.messagesSent > 2 * n + 1 + stats.connections)
        // the same server kept the client: never a second first contact
        #expect(server.counters.snapshot().greetingFailures == 0)
        await client.shutdown()
        await server.shutdown()
    }

    @Test func failoverToANewServerResendsRequests() async throws {
        let gate = Mutex<Bool>(false)
        let a = try await startServer(TestServerHandler(term: 1) { _, _, p in
            // server A never answers the held request
            if p == [0xee] {
                while !gate.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(5)) }
            }
            return .success(p)
        })
        let b = TestServerHandler(term: 2) { _, _, p in .success([0xbb] + p) }
        let (client, box) = try makeClient(to: a, rid: 0x33)
        let ch = TestClientHandler()
        client.start(handler: ch)
        try await within(.seconds(20)) {
            #expect(try await client.request(.statfs, [1]) == [1])
            async let held = client.request(.statfs, [0xee])
            try await eventually { await a.isConnected(rid: 0x33) }
            try await Task.sleep(for: .milliseconds(50))
            // A dies; B takes over at another address
            let serverB = try await startServer(b)
            box.set(try SocketAddress(ipAddress: "127.0.0.1", port: serverB.port))
            await a.shutdown()
            #expect(try await held == [0xbb, 0xee])
            #expect(client.serverTerm == 2)
            await client.shutdown()
            await serverB.shutdown()
        }
        gate.withLock { $0 = true }
        #expect(ch.events.all.contains(.connected(serverTerm: 2, newServer: true)))
        // B saw a reconnecting client (term 1) for the first time
        #expect(b.events.all.first == .greeting(rid: 0x33, term: 1, farewell: false))
        #expect(b.events.all.contains(.greeted(rid: 0x33, firstContact: true)))
    }

    /// The greeting hook runs before the client's requests, and may itself wait on the client
    /// (lock recovery) without deadlocking.
    @Test func greetingHookRunsFirstAndMayAwaitTheClient() async throws {
        let order = Recorder<String>()
        let serverRef = Late<NetServer>()
        var h = TestServerHandler { _, _, p in
            order.add("request")
            return .success(p)
        }
        h.onGreeted = { rid in
            let answer = try? await serverRef.get?.request(rid: rid, .lockRecover, Key().encoded())
            order.add("recovered \(answer?.count ?? -1)")
        }
        let handler = h
        let server = try await startServer(handler)
        serverRef.set(server)
        let (client, _) = try makeClient(to: server, rid: 0x66)
        var ch = TestClientHandler()
        ch.onRequest = { req in
            req.respond(.success(NetLockRecover(locks: []).encoded()))
        }
        client.start(handler: ch)
        // queued before the connection exists, so it goes out right behind the greeting
        let r = try await within(.seconds(10)) { try await client.request(.statfs, [1]) }
        #expect(r == [1])
        #expect(order.all == ["recovered 8", "request"])
        await client.shutdown()
        await server.shutdown()
    }

    @Test func farewellEndsTheClient() async throws {
        let handler = TestServerHandler { _, cmd, p in cmd == .farewell ? .success([]) : .success(p) }
        let server = try await startServer(handler)
        let (client, _) = try makeClient(to: server, rid: 0x44)
        client.start(handler: TestClientHandler())
        try await within(.seconds(10)) {
            _ = try await client.request(.statfs, [])
            try await client.farewell()
            try await eventually { handler.events.all.contains(.gone(rid: 0x44, reason: .farewell)) }
            do throws(NetError) {
                _ = try await client.request(.statfs, [])
                Issue.record("request after farewell")
            } catch {
                #expect(error == .shutdown)
            }
        }
        #expect(await server.clients().isEmpty)
        await server.shutdown()
    }

    @Test func farewellWithoutAnyServerReturnsAtOnce() async throws {
        let (client, _) = try makeClient(to: nil)
        client.start(handler: TestClientHandler())
        try await within(.seconds(5)) { try await client.farewell() }
    }

    @Test func clientThatStaysAwayIsGone() async throws {
        let handler = TestServerHandler { _, _, p in .success(p) }
        let server = try await startServer(handler, reconnectTimeout: .milliseconds(300))
        let (client, _) = try makeClient(to: server, rid: 0x55)
        client.start(handler: TestClientHandler())
        try await within(.seconds(10)) {
            _ = try await client.request(.statfs, [])
            // a request the client will never answer
            async let pending: Void = {
                do throws(NetError) {
                    _ = try await server.request(rid: 0x55, .lockRecover, Key().encoded())
                } catch {
                    #expect(error == .notConnected)
                }
            }()
            await client.shutdown()  // no farewell
            try await eventually { handler.events.all.contains(.gone(rid: 0x55, reason: .reconnectTimedOut)) }
            await pending
        }
        #expect(handler.events.all.contains(.disconnected(rid: 0x55)))
        #expect(await server.clients().isEmpty)
        await server.shutdown()
    }

    /// A client whose state the server dropped may not come back to the same server.
    @Test func forgottenClientIsRefused() async throws {
        let handler = TestServerHandler { _, _, p in .success(p) }
        let server = try await startServer(handler)
        let (client, _) = try makeClient(to: server, rid: 0x88)
        client.start(handler: TestClientHandler())
        try await within(.seconds(10)) {
            _ = try await client.request(.statfs, [])
            async let pending: Void = {
                do throws(NetError) {
                    _ = try await server.request(rid: 0x88, .lockRecover, Key().encoded())
                } catch {
                    #expect(error == .notConnected)
                }
            }()
            await server.forget(rid: 0x88)
            await pending
            try await eventually { server.counters.snapshot().greetingFailures >= 2 }
        }
        // it kept trying with the term it knew, and never became a client again
        #expect(handler.events.all.filter { $0 == .greeting(rid: 0x88, term: 1, farewell: false) }.count >= 2)
        #expect(await server.clients().isEmpty)
        #expect(!handler.events.all.contains { if case .gone = $0 { true } else { false } })
        await client.shutdown()
        await server.shutdown()
    }

    @Test func refusedGreetingIsRetried() async throws {
        var refusing = TestServerHandler { _, _, p in .success(p) }
        refusing.refuse = .einval
        let handler = refusing
        let server = try await startServer(handler)
        let (client, _) = try makeClient(to: server)
        let ch = TestClientHandler()
        client.start(handler: ch)
        let req = Task { try await client.request(.statfs, [1]) }
        try await eventually { handler.events.count >= 3 }
        #expect(ch.events.all.contains(.greetingFailed(.remote(.einval))))
        #expect(client.counters.snapshot().greetingFailures >= 2)
        await client.shutdown()
        let r = await req.result
        #expect((try? r.get()) == nil)
        await server.shutdown()
    }

    @Test func blockingRequestFromAPlainThread() async throws {
        let server = try await startServer(TestServerHandler { _, cmd, p in
            if cmd == .getLogMerge {
                try? await Task.sleep(for: .seconds(30))  // answers too late for the timeout
            }
            return .success(p)
        })
        let (client, _) = try makeClient(to: server)
        client.start(handler: TestClientHandler())
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        try await within(.seconds(15)) {
            let r = try await pool.runIfActive { try client.requestSync(.statfs, [4, 5]) }
            #expect(r == [4, 5])
            let timed: NetError? = try await pool.runIfActive { () -> NetError? in
                do throws(NetError) {
                    _ = try client.requestSync(.getLogMerge, [], timeout: .milliseconds(200))
                    return nil
                } catch { return error }
            }
            #expect(timed == .timedOut)
            // on an event-loop thread it refuses instead of deadlocking
            let onLoop: NetError? = try await MultiThreadedEventLoopGroup.singleton.next().submit { () -> NetError? in
                do throws(NetError) {
                    _ = try client.requestSync(.statfs, [])
                    return nil
                } catch { return error }
            }.get()
            #expect(onLoop == .calledOnEventLoop)
        }
        try await pool.shutdownGracefully()
        await client.shutdown()
        await server.shutdown()
    }
}
