import Logging
import ScoutBlockIO
import ScoutFormat
import ScoutQuorum
import ScoutQuorumService
import ScoutTestSupport
import Testing

@Suite("Quorum service on a volume made by the original mkfs", .serialized)
struct GoldenQuorumTests {
    @Test("three members elect a leader on the original's quorum blocks; every block stays valid")
    func threeSlots() async throws {
        let dir = try Golden.unpack("three-slots-v2")
        defer { TempDir.remove(dir) }
        let device = try FileBlockDevice(path: dir + "/meta.img", writable: true)
        let sb = try MetaDevice.readSuper(from: device)
        let store = QuorumBlockStore(device: device, fsid: sb.hdr.fsid)
        let members = SlotSet(configuredIn: sb.qconf)
        #expect(Array(members) == [0, 1, 2])
        let before = store.readAll(members)
        #expect(before.unreadable.isEmpty)
        #expect(before.greatestTerm == 0)
        #expect(try store.currentServer(config: sb.qconf) == nil)

        // the golden addresses, on ports free now
        var qconf = sb.qconf
        for slot in members {
            qconf.slots[slot].port = freeUDPPort(host: qconf.slots[slot].ipv4String)
        }
        var logger = Logger(label: "golden-quorum")
        logger.logLevel = .critical
        var running: [TestQuorum.Member] = []
        for slot in members {
            let c = QuorumServiceConfiguration(fsid: sb.hdr.fsid, slot: slot, rid: 0x900 + UInt64(slot), quorumConfig: qconf, heartbeatTimeoutMs: 2000)
            let server = FakeServer()
            let service = try ScoutQuorumService(configuration: c, device: device, delegate: server, logger: logger)
            service.start()
            running.append(TestQuorum.Member(service: service, server: server, task: Task { try await service.run() }))
        }
        #expect(await waitUntil(timeoutMs: 5000) { TestQuorum.stableLeader(running) != nil }, "\(TestQuorum.describe(running))")
        let leader = try #require(TestQuorum.stableLeader(running))
        let found = try #require(try store.currentServer(config: sb.qconf))
        #expect(found.slot == leader)
        #expect(found.address == sb.qconf.slots[leader])
        for m in running {
            await m.service.shutdown()
            try await m.task.value
        }
        // what we wrote verifies as the original reads it: header, crc, events
        let after = store.readAll(members)
        #expect(after.unreadable.isEmpty)
        for slot in members {
            let block = try #require(after[slot])
            #expect(block[.begin].rid == 0x900 + UInt64(slot))
            #expect(block[.end].rid == 0x900 + UInt64(slot))
            #expect(block.hdr.seq == before[slot]?.hdr.seq)
        }
        #expect(try store.currentServer(config: sb.qconf) == nil)
    }
}
