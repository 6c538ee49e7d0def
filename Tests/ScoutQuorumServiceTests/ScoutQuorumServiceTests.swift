import Logging
import ScoutBlockIO
import ScoutFormat
import ScoutQuorum
import ScoutQuorumService
import ScoutTestSupport
import Testing

@Suite("Quorum service over UDP", .serialized)
struct ScoutQuorumServiceTests {
    @Test("three members elect one leader; it fails over after a crash within timeout + 1 s; the old one rejoins as follower")
    func electFailoverRejoin() async throws {
        let quorum = try TestQuorum(slots: [0, 1, 2], heartbeatTimeoutMs: 2000)
        var members = try [0, 1, 2].map { try quorum.start(slot: $0, rid: 0x100 + UInt64($0)) }

        // one leader, server up, followed by all
        #expect(await waitUntil(timeoutMs: 5000) { TestQuorum.stableLeader(members) != nil }, "\(TestQuorum.describe(members))")
        let first = try #require(TestQuorum.stableLeader(members))
        let firstStatus = members[first].status
        let firstTerm = firstStatus.term
        #expect(members[first].server.starts.map(\.term) == [firstTerm])
        // clients find it in the quorum blocks
        let found = try #require(try quorum.store.currentServer(config: quorum.config))
        #expect(found.slot == first)
        #expect(found.address == quorum.config.slots[first])
        #expect(members.allSatisfy { $0.service.counters.receivedInvalid == 0 })
        #expect(members[first].service.counters.sentHeartbeats > 0)

        // the leader's mount dies: nothing sent, nothing written
        let crashedAt = ScoutQuorumService.now()
        await members[first].service.forceShutdown()
        _ = try? await members[first].task.value
        let rest = members.enumerated().filter { $0.offset != first }.map(\.element)
        #expect(await waitUntil(timeoutMs: 6000) { TestQuorum.stableLeader(rest) != nil })
        let second = try #require(TestQuorum.stableLeader(rest))
        let secondStatus = members[second].status
        #expect(secondStatus.term > firstTerm)
        let electedAt = try #require(secondStatus.electedAt)
        // event times, not wall-clock windows (lesson 23): elected within heartbeat timeout + 1 s
        #expect(electedAt.nanoseconds(since: crashedAt) <= 3_000_000_000, "elected \(electedAt.nanoseconds(since: crashedAt) / 1_000_000) ms after the crash")
        // the new leader's server was told to fence the crashed leader's mount first
        let start = try #require(members[second].server.starts.last)
        #expect(start.term == secondStatus.term)
        #expect(start.fencing.contains { $0.rid == firstStatus.rid && $0.slot == first })

        // the crashed slot comes back with a new mount: a follower of the current leader
        members[first] = try quorum.start(slot: first, rid: 0x200)
        #expect(await waitUntil(timeoutMs: 4000) { TestQuorum.stableLeader(members) == second })
        #expect(members[first].status.role == .follower)
        #expect(members[first].server.starts.isEmpty)
        #expect(members[second].status.term == secondStatus.term, "the rejoining member must not depose the leader")

        // a graceful stop of the leader resigns: the next leader comes quickly, without fencing it
        let leaving = members[second]
        await leaving.service.shutdown()
        try await leaving.task.value
        #expect(leaving.server.stops == [secondStatus.term])
        let block = try quorum.store.read(slot: second)
        #expect(block[.stop].term == secondStatus.term)
        #expect(block[.end].rid == secondStatus.rid)
        let remaining = members.enumerated().filter { $0.offset != second }.map(\.element)
        #expect(await waitUntil(timeoutMs: 3000) { TestQuorum.stableLeader(remaining) != nil })
        let third = try #require(TestQuorum.stableLeader(remaining))
        let thirdStart = try #require(members[third].server.starts.last)
        #expect(!thirdStart.fencing.contains { $0.rid == secondStatus.rid })

        for m in remaining {
            await m.service.shutdown()
            try await m.task.value
            #expect(m.status.lifecycle == .stopped)
        }
    }

    @Test("a single member elects itself and records BEGIN, TERM, ELECT, FENCE, STOP and END")
    func single() async throws {
        let quorum = try TestQuorum(slots: [4])
        let member = try quorum.start(slot: 4, rid: 0xabc)
        #expect(await waitUntil(timeoutMs: 3000) { TestQuorum.stableLeader([member]) == 4 })
        let term = member.status.term
        #expect(term == 1)
        var block = try quorum.store.read(slot: 4)
        #expect(block[.begin].rid == 0xabc)
        #expect(block[.elect].term == term)
        #expect(await waitUntil(timeoutMs: 1000) { (try? quorum.store.read(slot: 4))?[.fence].term == term })
        await member.service.shutdown()
        try await member.task.value
        block = try quorum.store.read(slot: 4)
        #expect(block[.stop].term == term)
        #expect(block[.end].term == term)
        #expect(block.writeNr == block[.end].writeNr)
        #expect(try quorum.store.currentServer(config: quorum.config) == nil)
    }

    @Test("invalid datagrams are counted and dropped; a failed server start does not stop quorum")
    func invalidAndFailedStart() async throws {
        let quorum = try TestQuorum(slots: [3])
        let member = try quorum.start(slot: 3, rid: 0x33, server: FakeServer(startDelayMs: 20, failStarts: true))
        #expect(await waitUntil(timeoutMs: 2000) { member.status.lifecycle == .running })
        let host = "127.0.0.4"
        let port = quorum.config.slots[3].port
        sendUDP([1, 2, 3], host: host, port: port)
        sendUDP(QuorumMessage(fsid: 999, term: 1, type: .heartbeat, from: 0).encoded(), host: host, port: port)
        sendUDP(QuorumMessage(fsid: TestQuorum.fsid, term: 1, type: .heartbeat, from: 7).encoded(), host: host, port: port)
        #expect(await waitUntil(timeoutMs: 2000) { member.service.counters.receivedInvalid == 3 })
        // every start fails; the member resigns and stands again, still running
        #expect(await waitUntil(timeoutMs: 3000) { member.server.starts.count >= 3 })
        #expect(member.status.lifecycle == .running)
        #expect(member.service.counters.resignations >= 2)
        #expect(member.status.failure == nil)
        await member.service.shutdown()
        try await member.task.value
    }

    @Test("a second mount on the same slot is detected by the BEGIN rid and stops the first")
    func slotInUse() async throws {
        let quorum = try TestQuorum(slots: [5])
        let first = try quorum.start(slot: 5, rid: 0x51)
        #expect(await waitUntil(timeoutMs: 3000) { first.status.isLeader })
        // another mount takes the slot (and writes its BEGIN)
        _ = try quorum.store.update(slot: 5, event: .begin, term: 9, rid: 0x52, checkRid: false, time: Timespec())
        await first.service.shutdown()  // END needs our BEGIN
        await #expect {
            try await first.task.value
        } throws: { error in
            (error as? QuorumServiceError)?.code == .slotInUse
        }
        #expect(first.status.failure != nil)
        #expect(first.status.lifecycle == .stopped)
    }

    @Test("an unreadable block of our own slot fails the start")
    func badOwnBlock() async throws {
        let quorum = try TestQuorum(slots: [6])
        let offset = QuorumBlockStore.blkno(slot: 6) << UInt64(Format.smallShift)
        quorum.device.writeBytes([0xff, 0xff], at: offset + 100)
        let member = try quorum.start(slot: 6, rid: 0x66)
        await #expect {
            try await member.task.value
        } throws: { error in
            (error as? QuorumServiceError)?.code == .invalidBlock
        }
        #expect(member.status.lifecycle == .stopped)
    }

    @Test("bad configurations and options are typed errors")
    func configuration() throws {
        let quorum = try TestQuorum(slots: [0, 1])
        let logger = Logger(label: "quorum-test")
        func make(_ change: (inout QuorumServiceConfiguration) -> Void) -> QuorumServiceError? {
            var c = quorum.configuration(slot: 0, rid: 1)
            change(&c)
            do {
                _ = try ScoutQuorumService(configuration: c, device: quorum.device, delegate: FakeServer(), logger: logger)
                return nil
            } catch {
                return error
            }
        }
        #expect(make { $0.slot = 2 }?.code == .configuration)
        #expect(make { $0.rid = 0 }?.code == .configuration)
        #expect(make { $0.heartbeatTimeoutMs = 1000 }?.code == .configuration)
        #expect(make { $0.quorumConfig.slots[1] = $0.quorumConfig.slots[0] }?.code == .configuration)
        #expect(make { $0.quorumConfig.slots[1] = InetAddr(ipv4: 0xe000_0001, port: 5000) }?.code == .configuration)
        #expect(make { $0.quorumConfig.slots[1].port = 0 }?.code == .configuration)
        #expect(make { $0.quorumConfig.slots[1].port = 65535 }?.code == .configuration)
        #expect(make { _ in } == nil)
    }

    @Test("the heartbeat timeout changes at run time within its limits")
    func heartbeatOption() async throws {
        let quorum = try TestQuorum(slots: [7], heartbeatTimeoutMs: 5000)
        let member = try quorum.start(slot: 7, rid: 0x77)
        await #expect(throws: QuorumServiceError.self) { try await member.service.setHeartbeatTimeout(milliseconds: 61_000) }
        // set before or after the start, it applies once running
        try await member.service.setHeartbeatTimeout(milliseconds: 2500)
        #expect(await waitUntil(timeoutMs: 2000) { member.status.lifecycle == .running && member.status.heartbeatTimeoutMs == 2500 })
        try await member.service.setHeartbeatTimeout(milliseconds: 2600)
        #expect(member.status.heartbeatTimeoutMs == 2600)
        await member.service.shutdown()
        try await member.task.value
        // a stopped service ignores further input
        try await member.service.setHeartbeatTimeout(milliseconds: 3000)
        #expect(member.status.heartbeatTimeoutMs == 2600)
    }

    @Test("a service shut down before it runs stops at once")
    func shutdownBeforeRun() async throws {
        let quorum = try TestQuorum(slots: [8])
        let service = try ScoutQuorumService(
            configuration: quorum.configuration(slot: 8, rid: 8), device: quorum.device, delegate: FakeServer(), logger: Logger(label: "t"))
        await service.shutdown()
        try await service.run()
        #expect(service.status.lifecycle == .stopped)
        #expect(try quorum.store.read(slot: 8)[.begin].rid == 0)
    }
}

