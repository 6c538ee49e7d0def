import ScoutBlockIO
import ScoutFormat
import ScoutTestSupport
import Testing

@testable import ScoutStorage

/// Our mkfs, given the arguments and device sizes of a golden volume, must write the same
/// volume but for fsid, uuid, timestamps and checksums. Checked field by field.
@Suite struct MkfsGoldenTests {
    struct Case: Sendable, CustomStringConvertible {
        var name: String
        var slots: [(Int, String, UInt16)]
        var version: UInt64
        var zone: UInt64
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(name: "one-slot-v2", slots: [(0, "127.0.0.1", 42000)], version: 2, zone: 0),
        Case(name: "one-slot-v1", slots: [(0, "127.0.0.1", 42000)], version: 1, zone: 0),
        Case(name: "three-slots-v2", slots: [(0, "127.0.0.1", 42000), (1, "127.0.0.2", 42001), (2, "127.0.0.3", 42002)], version: 2, zone: 0),
        Case(name: "zones-five-slots-v2", slots: [(0, "127.0.0.1", 42000), (1, "127.0.0.1", 42001), (3, "127.0.0.1", 42003), (7, "127.0.0.1", 42007), (14, "127.0.0.1", 42014)], version: 2, zone: 1_048_576),
    ]

    @Test(arguments: cases)
    func sameVolumeAsTheOriginal(_ c: Case) throws {
        let golden = try Golden.unpack(c.name)
        defer { TempDir.remove(String(golden[..<golden.lastIndex(of: "/")!])) }
        let gMeta = try FileBlockDevice(path: golden + "/meta.img", writable: false)
        let gData = try FileBlockDevice(path: golden + "/data.img", writable: false)
        let gSuper = try MetaDevice.readSuper(from: gMeta)

        let meta = MemoryDevice(size: gMeta.size)
        let data = MemoryDevice(size: gData.size)
        var o = MkfsOptions(metaPath: "meta.img", dataPath: "data.img", slots: [:])
        for (nr, ip, port) in c.slots { o.slots[nr] = InetAddr(ipv4: InetAddr.parseIPv4(ip)!, port: port) }
        o.allowSmallSize = true
        o.formatVersion = c.version
        o.dataAllocZoneBlocks = c.zone
        // the golden root inode's timestamp, so the inode item compares whole
        let gm = MetaDevice(device: gMeta, fsid: gSuper.hdr.fsid, cacheBytes: 0)
        let gRoot = BTreeBlock(try gm.read(gSuper.fsRoot.ref, magic: .btree))
        let inodeOff = gRoot.lastItem()
        let gInode = try Inode.decode(gRoot.value(at: inodeOff))
        var lines: [String] = []
        let ours = try Mkfs.format(
            meta: meta, data: data, o, now: gInode.atime, fsid: 0x1234_5678_9abc_def0,
            uuid: Array(repeating: 7, count: 16), out: { lines.append($0) }, err: { lines.append($0) })

        // the super, field by field
        var a = ours, b = gSuper
        #expect(a.hdr.magic == b.hdr.magic && a.hdr.seq == b.hdr.seq && a.hdr.blkno == b.hdr.blkno)
        a.hdr = b.hdr
        a.uuid = b.uuid
        // slots' unused union bytes hold whatever the original's stack held
        for i in a.qconf.slots.indices { a.qconf.slots[i].rest = b.qconf.slots[i].rest }
        #expect(a.encoded() == b.encoded(), "super differs")
        #expect(a.flags == Format.flagIsMetaBdev)
        let dataSuper = try MetaDevice.readSuper(from: data)
        #expect(dataSuper.flags == 0)

        // every metadata block mkfs writes, byte for byte past the crc and fsid
        let mine = MetaDevice(device: meta, fsid: 0x1234_5678_9abc_def0, cacheBytes: 0)
        let blocks: [(UInt64, BlockMagic)] = [
            (gSuper.fsRoot.ref.blkno, .btree), (gSuper.serverMetaAvail[0].ref.blkno, .allocList),
            (gSuper.dataAlloc.root.ref.blkno, .btree), (gSuper.metaAlloc[0].root.ref.blkno, .btree),
            (gSuper.metaAlloc[1].root.ref.blkno, .btree),
        ]
        for (blkno, magic) in blocks {
            let x = try mine.read(BlockRef(blkno: blkno, seq: 1), magic: magic)
            let y = try gm.read(BlockRef(blkno: blkno, seq: 1), magic: magic)
            #expect(x.read(4, 4) == y.read(4, 4), "magic of blkno \(blkno)")
            #expect(x.read(16, Format.largeBlockSize - 16) == y.read(16, Format.largeBlockSize - 16), "blkno \(blkno) differs")
        }
        // quorum blocks
        for i in 0..<Format.quorumBlocks {
            let x = try mine.readSmall(blkno: Format.quorumBlkno + i, magic: .quorum)
            let y = try gm.readSmall(blkno: Format.quorumBlkno + i, magic: .quorum)
            #expect(x.read(16, Format.smallBlockSize - 16) == y.read(16, Format.smallBlockSize - 16))
        }
        // the summary matches the original's mkfs.out but for fsid and uuid
        let expected = try TempDir.readText(golden + "/mkfs.out").split(separator: "\n").map(String.init)
        #expect(lines.count == expected.count)
        for (l, e) in zip(lines, expected) where !e.contains("fsid:") && !e.contains("uuid:") {
            #expect(l == e)
        }
    }
}
