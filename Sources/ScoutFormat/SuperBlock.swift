/// `struct scoutfs_quorum_config` (488 bytes): the version and 15 slot addresses.
public struct QuorumConfig: FixedCodable, Hashable {
    public static let encodedSize = 8 + Format.quorumMaxSlots * InetAddr.encodedSize
    public var version: UInt64
    public var slots: [InetAddr]

    public init(version: UInt64 = 0, slots: [InetAddr] = Array(repeating: InetAddr(), count: Format.quorumMaxSlots)) {
        precondition(slots.count == Format.quorumMaxSlots)
        self.version = version
        self.slots = slots
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        version = try r.u64()
        var s: [InetAddr] = []
        s.reserveCapacity(Format.quorumMaxSlots)
        for _ in 0..<Format.quorumMaxSlots { s.append(try r.read()) }
        slots = s
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(version)
        for s in slots { w.write(s) }
    }

    /// Slots with an address, by number.
    public var configured: [(nr: Int, addr: InetAddr)] {
        slots.enumerated().filter { $0.element.family != InetAddr.familyNone }.map { ($0.offset, $0.element) }
    }
}

/// `struct scoutfs_volume_options` (520 bytes).
public struct VolumeOptions: FixedCodable, Hashable {
    public static let encodedSize = 8 * 65
    public var setBits: UInt64
    public var dataAllocZoneBlocks: UInt64
    /// The 63 spare u64s, kept for round trips.
    public var future: [UInt64]

    public init(setBits: UInt64 = 0, dataAllocZoneBlocks: UInt64 = 0) {
        self.setBits = setBits
        self.dataAllocZoneBlocks = dataAllocZoneBlocks
        self.future = Array(repeating: 0, count: 63)
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        setBits = try r.u64()
        dataAllocZoneBlocks = try r.u64()
        var f: [UInt64] = []
        f.reserveCapacity(63)
        for _ in 0..<63 { f.append(try r.u64()) }
        future = f
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(setBits)
        w.u64(dataAllocZoneBlocks)
        for v in future { w.u64(v) }
    }
}

/// `struct scoutfs_super_block` (1488 bytes), at small block 16 of both devices.
public struct SuperBlock: FixedCodable {
    public static let encodedSize = 1488

    public var hdr: BlockHeader
    public var id: UInt64
    public var fmtVers: UInt64
    public var flags: UInt64
    public var uuid: [UInt8]
    /// The core sequence number.
    public var seq: UInt64
    public var nextIno: UInt64
    public var inodeCount: UInt64
    public var totalMetaBlocks: UInt64
    public var totalDataBlocks: UInt64
    public var qconf: QuorumConfig
    public var metaAlloc: [AllocRoot]
    public var dataAlloc: AllocRoot
    public var serverMetaAvail: [AllocListHead]
    public var serverMetaFreed: [AllocListHead]
    public var fsRoot: BTreeRoot
    public var logsRoot: BTreeRoot
    public var logMerge: BTreeRoot
    public var mountedClients: BTreeRoot
    public var srchRoot: BTreeRoot
    public var volopt: VolumeOptions

    public init(hdr: BlockHeader, fmtVers: UInt64, flags: UInt64, uuid: [UInt8]) {
        self.hdr = hdr
        self.id = 0
        self.fmtVers = fmtVers
        self.flags = flags
        self.uuid = uuid
        self.seq = 0
        self.nextIno = 0
        self.inodeCount = 0
        self.totalMetaBlocks = 0
        self.totalDataBlocks = 0
        self.qconf = QuorumConfig()
        self.metaAlloc = [AllocRoot(), AllocRoot()]
        self.dataAlloc = AllocRoot()
        self.serverMetaAvail = [AllocListHead(), AllocListHead()]
        self.serverMetaFreed = [AllocListHead(), AllocListHead()]
        self.fsRoot = BTreeRoot()
        self.logsRoot = BTreeRoot()
        self.logMerge = BTreeRoot()
        self.mountedClients = BTreeRoot()
        self.srchRoot = BTreeRoot()
        self.volopt = VolumeOptions()
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        hdr = try r.read()
        id = try r.u64()
        fmtVers = try r.u64()
        flags = try r.u64()
        uuid = try r.bytes(Format.uuidBytes)
        seq = try r.u64()
        nextIno = try r.u64()
        inodeCount = try r.u64()
        totalMetaBlocks = try r.u64()
        totalDataBlocks = try r.u64()
        qconf = try r.read()
        metaAlloc = [try r.read(), try r.read()]
        dataAlloc = try r.read()
        serverMetaAvail = [try r.read(), try r.read()]
        serverMetaFreed = [try r.read(), try r.read()]
        fsRoot = try r.read()
        logsRoot = try r.read()
        logMerge = try r.read()
        mountedClients = try r.read()
        srchRoot = try r.read()
        volopt = try r.read()
    }

    public func encode(to w: inout ByteWriter) {
        w.write(hdr)
        w.u64(id)
        w.u64(fmtVers)
        w.u64(flags)
        w.bytes(uuid)
        w.u64(seq)
        w.u64(nextIno)
        w.u64(inodeCount)
        w.u64(totalMetaBlocks)
        w.u64(totalDataBlocks)
        w.write(qconf)
        for a in metaAlloc { w.write(a) }
        w.write(dataAlloc)
        for a in serverMetaAvail { w.write(a) }
        for a in serverMetaFreed { w.write(a) }
        w.write(fsRoot)
        w.write(logsRoot)
        w.write(logMerge)
        w.write(mountedClients)
        w.write(srchRoot)
        w.write(volopt)
    }

    /// The uuid in its usual 8-4-4-4-12 text form.
    public var uuidString: String { Self.formatUUID(uuid) }

    /// Formats 16 bytes as 8-4-4-4-12 lower-case hex.
    public static func formatUUID(_ u: [UInt8]) -> String {
        var s = ""
        for (i, b) in u.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { s += "-" }
            let h = String(b, radix: 16)
            s += h.count == 1 ? "0" + h : h
        }
        return s
    }
}

/// One event of a quorum block (40 bytes): write_nr, rid, term, timestamp.
public struct QuorumEvent: FixedCodable, Hashable {
    public static let encodedSize = 40
    public var writeNr: UInt64
    public var rid: UInt64
    public var term: UInt64
    public var ts: Timespec

    public init(writeNr: UInt64 = 0, rid: UInt64 = 0, term: UInt64 = 0, ts: Timespec = Timespec()) {
        self.writeNr = writeNr
        self.rid = rid
        self.term = term
        self.ts = ts
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        writeNr = try r.u64()
        rid = try r.u64()
        term = try r.u64()
        ts = try r.read()
    }

    public func encode(to w: inout ByteWriter) {
        w.u64(writeNr)
        w.u64(rid)
        w.u64(term)
        w.write(ts)
    }
}

/// `struct scoutfs_quorum_block` (280 bytes), one a slot at small blocks 17...31.
public struct QuorumBlock: FixedCodable {
    public static let encodedSize = 32 + 8 + 6 * QuorumEvent.encodedSize

    /// Event slots in the block, in on-disk order.
    public enum Event: Int, CaseIterable, Sendable {
        case begin, term, elect, fence, stop, end

        /// The name the original's print uses.
        public var name: String {
            switch self {
            case .begin: "begin"
            case .term: "term"
            case .elect: "elect"
            case .fence: "fence"
            case .stop: "stop"
            case .end: "end"
            }
        }
    }

    public var hdr: BlockHeader
    public var writeNr: UInt64
    public var events: [QuorumEvent]

    public init(hdr: BlockHeader, writeNr: UInt64 = 0, events: [QuorumEvent] = Array(repeating: QuorumEvent(), count: 6)) {
        self.hdr = hdr
        self.writeNr = writeNr
        self.events = events
    }

    public init(from r: inout ByteReader) throws(FormatError) {
        hdr = try r.read()
        writeNr = try r.u64()
        var e: [QuorumEvent] = []
        for _ in 0..<6 { e.append(try r.read()) }
        events = e
    }

    public func encode(to w: inout ByteWriter) {
        w.write(hdr)
        w.u64(writeNr)
        for e in events { w.write(e) }
    }

    public subscript(event: Event) -> QuorumEvent {
        get { events[event.rawValue] }
        set { events[event.rawValue] = newValue }
    }
}
