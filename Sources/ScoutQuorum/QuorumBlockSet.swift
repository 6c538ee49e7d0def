public import ScoutFormat

/// The quorum blocks of the configured slots as read at one moment, with the rules the
/// original applies to them (`kmod/src/quorum.c`): the greatest term, the slot of the running
/// server, and the earlier leaders a new leader must fence.
///
/// Pure: the caller reads the blocks (the service through its `BlockDevice`, the simulation
/// from its model disk) and hands them over.
public struct QuorumBlockSet: Sendable, Equatable {
    /// Blocks by slot number, for the configured slots that could be read and verified.
    public var blocks: [Int: QuorumBlock]
    /// Configured slots whose block could not be read or failed verification.
    public var unreadable: SlotSet

    /// A set of blocks read by the caller.
    public init(blocks: [Int: QuorumBlock] = [:], unreadable: SlotSet = SlotSet()) {
        self.blocks = blocks
        self.unreadable = unreadable
    }

    /// The block of `slot`, if it was read.
    public subscript(slot: Int) -> QuorumBlock? {
        get { blocks[slot] }
        set { blocks[slot] = newValue }
    }

    /// The greatest term of any event that was ever set (rid != 0) in any block: where a member
    /// starts so that it does not ignore, and then disrupt, the others (4495dbdc).
    public var greatestTerm: UInt64 {
        var term: UInt64 = 0
        for block in blocks.values {
            for event in block.events where event.rid != 0 {
                term = max(term, event.term)
            }
        }
        return term
    }

    /// The greatest ELECT term in any block.
    public var greatestElectTerm: UInt64 {
        blocks.values.reduce(0) { max($0, $1[.elect].term) }
    }

    /// The slot that clients should connect to: among slots whose ELECT term is greater than
    /// their STOP term, the one with the greatest ELECT term (the first such slot on a tie, as the
    /// original walks slots in order). Nil when no server is recorded as running.
    ///
    /// - Parameter excluding: a slot to leave out; a member starting up passes its own slot,
    ///   because a running server recorded there belongs to its own previous mount, which is gone.
    public func serverSlot(excluding: Int? = nil) -> (slot: Int, term: UInt64)? {
        var best: (slot: Int, term: UInt64)?
        for slot in blocks.keys.sorted() where slot != excluding {
            let block = blocks[slot]!
            let elect = block[.elect].term
            if elect > (best?.term ?? 0) && elect > block[.stop].term {
                best = (slot, elect)
            }
        }
        return best
    }

    /// The earlier leaders that the leader of `term`, mounted with `rid`, must fence before its
    /// server may touch the metadata device.
    ///
    /// For every slot an old leader is either the last elected one still recorded as running
    /// (ELECT term > STOP term) or an earlier server that fenced others and was not recorded
    /// as stopped before a later election in that slot (STOP term < FENCE term < ELECT term).
    /// Skipped: terms below the greatest FENCE term of any slot (that leader already fenced
    /// everything older), terms newer than ours, and our own mount. Each mount (rid) appears once.
    public func fenceTargets(term: UInt64, rid: UInt64) -> [QuorumFenceRequest] {
        let fenced = blocks.values.reduce(0) { max($0, $1[.fence].term) }
        var out: [QuorumFenceRequest] = []
        for slot in blocks.keys.sorted() {
            let block = blocks[slot]!
            let elect = block[.elect], fence = block[.fence], stop = block[.stop]
            var old: [QuorumEvent] = []
            if elect.term > stop.term { old.append(elect) }
            if fence.term > stop.term && fence.term < elect.term { old.append(fence) }
            for event in old {
                guard event.term != 0, event.term >= fenced, event.term <= term, event.rid != rid else { continue }
                // a second request for the same mount would be ignored by the fencing agent
                if !out.contains(where: { $0.rid == event.rid }) {
                    out.append(QuorumFenceRequest(slot: slot, rid: event.rid, term: event.term))
                }
            }
        }
        return out
    }
}

/// A request to fence an earlier leader's mount, found in the quorum blocks by a new leader
/// (the original's reason `quorum_block_leader`), addressed to the slot's IP address.
public struct QuorumFenceRequest: Sendable, Hashable, CustomStringConvertible {
    /// The slot the old leader was elected in.
    public var slot: Int
    /// The old leader's mount id.
    public var rid: UInt64
    /// The term it was elected in (or fenced in).
    public var term: UInt64

    public init(slot: Int, rid: UInt64, term: UInt64) {
        self.slot = slot
        self.rid = rid
        self.term = term
    }

    public var description: String { "fence rid \(String(rid, radix: 16)) slot \(slot) term \(term)" }
}
