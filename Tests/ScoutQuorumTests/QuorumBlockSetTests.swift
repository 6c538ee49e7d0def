import ScoutFormat
import ScoutQuorum
import Testing

/// A quorum block of `slot` with the given events set (rid, term).
func quorumBlock(_ slot: Int, _ events: [QuorumBlock.Event: (rid: UInt64, term: UInt64)] = [:]) -> QuorumBlock {
    var b = QuorumBlock(hdr: BlockHeader(magic: BlockMagic.quorum.rawValue, fsid: 1, seq: 1, blkno: Format.quorumBlkno + UInt64(slot)))
    for (event, value) in events.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
        b.writeNr += 1
        b[event] = QuorumEvent(writeNr: b.writeNr, rid: value.rid, term: value.term)
    }
    return b
}

@Suite("Quorum block rules")
struct QuorumBlockSetTests {
    @Test("the greatest term counts only events that were set")
    func greatestTerm() {
        var set = QuorumBlockSet(blocks: [0: quorumBlock(0, [.begin: (1, 4), .term: (1, 7)]), 1: quorumBlock(1, [.elect: (2, 6)])])
        #expect(set.greatestTerm == 7)
        var b = quorumBlock(2)
        b[.term] = QuorumEvent(writeNr: 1, rid: 0, term: 99)  // rid 0: never set
        set[2] = b
        #expect(set.greatestTerm == 7)
        #expect(QuorumBlockSet().greatestTerm == 0)
    }

    @Test("clients connect to the greatest election not yet stopped")
    func serverSlot() throws {
        let set = QuorumBlockSet(blocks: [
            0: quorumBlock(0, [.elect: (1, 5), .stop: (1, 5)]),  // stopped
            1: quorumBlock(1, [.elect: (2, 3)]),  // running, older
            2: quorumBlock(2, [.elect: (3, 4), .stop: (3, 2)]),  // running, newest
            3: quorumBlock(3),
        ])
        let found = try #require(set.serverSlot())
        #expect(found.slot == 2 && found.term == 4)
        let other = try #require(set.serverSlot(excluding: 2))
        #expect(other.slot == 1 && other.term == 3)
        #expect(QuorumBlockSet(blocks: [0: quorumBlock(0, [.elect: (1, 5), .stop: (1, 6)])]).serverSlot() == nil)
    }

    @Test("ties go to the lower slot, as the original walks slots in order")
    func serverSlotTie() throws {
        let set = QuorumBlockSet(blocks: [4: quorumBlock(4, [.elect: (1, 5)]), 2: quorumBlock(2, [.elect: (2, 5)])])
        #expect(try #require(set.serverSlot()).slot == 2)
    }

    @Test("earlier leaders to fence follow the original's rules")
    func fenceTargets() {
        let set = QuorumBlockSet(blocks: [
            // still running: fence
            0: quorumBlock(0, [.elect: (0xa, 8)]),
            // stopped cleanly: nothing
            1: quorumBlock(1, [.elect: (0xb, 5), .fence: (0xb, 5), .stop: (0xb, 5)]),
            // an earlier server that fenced and never stopped, then a newer one elected and running
            2: quorumBlock(2, [.fence: (0xc1, 7), .elect: (0xc2, 9)]),
            // our own mount: never
            3: quorumBlock(3, [.elect: (0xd, 10)]),
            // newer than us: never
            4: quorumBlock(4, [.elect: (0xe, 11)]),
            // below the greatest fence term (7): already fenced
            5: quorumBlock(5, [.elect: (0xf, 4)]),
        ])
        let targets = set.fenceTargets(term: 10, rid: 0xd)
        #expect(
            targets == [
                QuorumFenceRequest(slot: 0, rid: 0xa, term: 8),
                QuorumFenceRequest(slot: 2, rid: 0xc2, term: 9),
                QuorumFenceRequest(slot: 2, rid: 0xc1, term: 7),
            ])
    }

    @Test("one mount elected and fenced in one slot is fenced once")
    func fenceOnce() {
        // FENCE (7) < ELECT (8) of the same rid: both records name the same mount
        let set = QuorumBlockSet(blocks: [0: quorumBlock(0, [.fence: (0xa, 7), .elect: (0xa, 8)])])
        #expect(set.fenceTargets(term: 9, rid: 1) == [QuorumFenceRequest(slot: 0, rid: 0xa, term: 8)])
    }
}
