public import ScoutBlockIO
public import ScoutFormat
public import ScoutQuorum
import SystemPackage

/// Reads every slot's quorum block and writes our own, on the metadata device: 4 KiB blocks at
/// small block `Format.quorumBlkno + slot`, verified on read (magic, crc, fsid, blkno) and
/// sealed with their crc on write. A write is synced before it returns.
public struct QuorumBlockStore: Sendable {
    /// The metadata device.
    public let device: any BlockDevice
    /// The filesystem's fsid, checked in every block header.
    public let fsid: UInt64

    public init(device: any BlockDevice, fsid: UInt64) {
        self.device = device
        self.fsid = fsid
    }

    /// The small-block number of a slot's block.
    public static func blkno(slot: Int) -> UInt64 { Format.quorumBlkno + UInt64(slot) }

    /// Reads and verifies one slot's block.
    public func read(slot: Int) throws(QuorumServiceError) -> QuorumBlock {
        guard SlotSet.isValid(slot) else { throw QuorumServiceError(.configuration, "quorum slot \(slot) out of range") }
        let blkno = Self.blkno(slot: slot)
        let buffer = BlockBuffer(size: Format.smallBlockSize)
        do {
            try device.read(into: buffer, at: blkno << UInt64(Format.smallShift))
        } catch {
            throw QuorumServiceError(.blockIO, "reading quorum block \(blkno) of slot \(slot)", errno: error)
        }
        do {
            try buffer.verify(magic: .quorum, fsid: fsid, blkno: blkno, seq: nil)
            return try buffer.decode(QuorumBlock.self)
        } catch {
            throw QuorumServiceError(.invalidBlock, "quorum block \(blkno) of slot \(slot): \(error)")
        }
    }

    /// Reads every given slot's block; blocks that cannot be read or verified are listed in
    /// ``QuorumBlockSet/unreadable``.
    public func readAll(_ slots: SlotSet) -> QuorumBlockSet {
        var set = QuorumBlockSet()
        for slot in slots {
            do {
                set[slot] = try read(slot: slot)
            } catch {
                set.unreadable.insert(slot)
            }
        }
        return set
    }

    /// Sets one event in `slot`'s block (read, verify, change, seal, write, sync): the block's
    /// write_nr goes up by one and the event gets it with our rid, the term and the time.
    ///
    /// - Parameter checkRid: verify first that the block's BEGIN event is ours, which tells that
    ///   no other mount has started in this slot since we did (false only for BEGIN itself).
    /// - Returns: the block as written.
    @discardableResult
    public func update(
        slot: Int, event: QuorumBlock.Event, term: UInt64, rid: UInt64, checkRid: Bool, time: Timespec
    ) throws(QuorumServiceError) -> QuorumBlock {
        var block = try read(slot: slot)
        if checkRid && block[.begin].rid != rid {
            throw QuorumServiceError(
                .slotInUse,
                "quorum block begin rid \(String(block[.begin].rid, radix: 16)) != our rid \(String(rid, radix: 16)), are multiple mounts configured with quorum_slot_nr=\(slot)?"
            )
        }
        block.writeNr += 1
        block[event] = QuorumEvent(writeNr: block.writeNr, rid: rid, term: term, ts: time)
        let buffer = BlockBuffer(size: Format.smallBlockSize)
        buffer.write(block, at: 0)
        buffer.seal()
        let blkno = Self.blkno(slot: slot)
        do {
            try device.write(buffer, at: blkno << UInt64(Format.smallShift))
            try device.sync()
        } catch {
            throw QuorumServiceError(.blockIO, "writing quorum block \(blkno) event \(event.name) term \(term)", errno: error)
        }
        return block
    }

    /// Writes a fresh, empty block for every slot (as mkfs does); for tests and tools.
    public func format() throws(QuorumServiceError) {
        for slot in 0..<Format.quorumMaxSlots {
            let blkno = Self.blkno(slot: slot)
            let buffer = BlockBuffer(size: Format.smallBlockSize)
            buffer.header = BlockHeader(magic: BlockMagic.quorum.rawValue, fsid: fsid, seq: 1, blkno: blkno)
            buffer.seal()
            do {
                try device.write(buffer, at: blkno << UInt64(Format.smallShift))
            } catch {
                throw QuorumServiceError(.blockIO, "writing quorum block \(blkno)", errno: error)
            }
        }
        do {
            try device.sync()
        } catch {
            throw QuorumServiceError(.blockIO, "syncing quorum blocks", errno: error)
        }
    }
}

/// Where a client finds the server.
public struct QuorumServerLocation: Sendable, Hashable, CustomStringConvertible {
    /// The elected leader's slot.
    public var slot: Int
    /// The term it was elected in.
    public var term: UInt64
    /// The slot's address: the server's TCP listener (and the member's UDP socket).
    public var address: InetAddr

    public var description: String { "slot \(slot) term \(term) at \(address)" }
}

extension QuorumBlockStore {
    /// The server clients should connect to, from the quorum blocks of the configured slots:
    /// the greatest ELECT term that is above its slot's STOP term. Nil when no server is
    /// recorded as running. If the guess is stale the connection fails and the client asks again.
    ///
    /// - Throws: when a configured slot's block cannot be read, as the original.
    public func currentServer(config: QuorumConfig) throws(QuorumServiceError) -> QuorumServerLocation? {
        var set = QuorumBlockSet()
        for slot in SlotSet(configuredIn: config) {
            set[slot] = try read(slot: slot)
        }
        guard let found = set.serverSlot() else { return nil }
        return QuorumServerLocation(slot: found.slot, term: found.term, address: config.slots[found.slot])
    }
}
