import ScoutIoctl
import Testing

@Suite("The ioctl ABI matches the original's ioctl.h")
struct IoctlABITests {
    /// The numbers the original's header gives (printed by a C program compiled against it).
    static let numbers: [(IoctlCommand, UInt32, String)] = [
        (.walkInodes, 0x4048e801, "WALK_INODES"),
        (.inoPath, 0x4028e802, "INO_PATH"),
        (.release, 0x4018e803, "RELEASE"),
        (.stage, 0x4020e804, "STAGE"),
        (.statMore, 0x8038e805, "STAT_MORE"),
        (.dataWaiting, 0x4028e806, "DATA_WAITING"),
        (.setattrMore, 0x4030e807, "SETATTR_MORE"),
        (.listxattrHidden, 0xc018e808, "LISTXATTR_HIDDEN"),
        (.searchXattrs, 0x4038e809, "SEARCH_XATTRS"),
        (.statfsMore, 0x8030e80a, "STATFS_MORE"),
        (.dataWaitErr, 0x4030e80b, "DATA_WAIT_ERR"),
        (.allocDetail, 0x4010e80c, "ALLOC_DETAIL"),
        (.moveBlocks, 0x4030e80d, "MOVE_BLOCKS"),
        (.resizeDevices, 0x4010e80e, "RESIZE_DEVICES"),
        (.readXattrTotals, 0x4028e80f, "READ_XATTR_TOTALS"),
        (.getAllocatedInos, 0x4018e810, "GET_ALLOCATED_INOS"),
        (.getReferringEntries, 0x4028e811, "GET_REFERRING_ENTRIES"),
        (.getAttrX, 0x4068e812, "GET_ATTR_X"),
        (.setAttrX, 0x4068e813, "SET_ATTR_X"),
        (.getQuotaRules, 0x8020e814, "GET_QUOTA_RULES"),
        (.addQuotaRule, 0x4030e815, "ADD_QUOTA_RULE"),
        (.delQuotaRule, 0x4030e816, "DEL_QUOTA_RULE"),
        (.readXattrIndex, 0x8048e817, "READ_XATTR_INDEX"),
        (.punchOffline, 0x4020e818, "PUNCH_OFFLINE"),
        (.injectTotlDelta, 0x4028e819, "INJECT_TOTL_DELTA"),
    ]

    @Test func commandNumbersMatchTheHeader() {
        for (cmd, raw, name) in Self.numbers {
            #expect(cmd.rawValue == raw, "\(name)")
            #expect(cmd.description == name)
        }
    }

    @Test func structsPackToTheirSizeAndBack() throws {
        var a = InodeAttrX()
        a.mask = 0x3ff
        a.flags = 1
        a.ctimeSec = 5
        a.ctimeNsec = 6
        a.crtimeNsec = 7
        a.crtimeSec = 8
        a.projectID = 9
        let b = a.encoded
        #expect(b.count == 104)
        #expect(b[64] == 6 && b[68] == 7 && b[72] == 8 && b[96] == 9)
        #expect(try InodeAttrX(bytes: b) == a)

        let w = WalkInodesArgs(first: .init(major: 1, minor: 2, ino: 3), last: .init(major: .max, minor: .max, ino: .max), entriesPtr: 0x1000, nrEntries: 7, index: 1)
        let wb = w.encoded
        #expect(wb.count == 72)
        #expect(wb[0] == 1 && wb[8] == 3 && wb[16] == 2 && wb[48] == 0 && wb[49] == 0x10 && wb[56] == 7 && wb[60] == 1)
        let back = try WalkInodesArgs(bytes: wb)
        #expect(back.first == w.first && back.last == w.last && back.nrEntries == 7 && back.index == 1)
        #expect(throws: IoctlDecodeError.self) { try WalkInodesArgs(bytes: Array(wb.prefix(71))) }
    }

    /// The tagged-xattr structs: sizes of `ioctl.h` and field offsets.
    @Test func tagStructsMatchTheHeader() throws {
        let l = ListxattrHiddenArgs(idPos: 1, bufPtr: 2, bufBytes: 3, hashPos: 4).encoded
        #expect(l.count == 24 && l[0] == 1 && l[8] == 2 && l[16] == 3 && l[20] == 4)
        #expect(try ListxattrHiddenArgs(bytes: l) == ListxattrHiddenArgs(idPos: 1, bufPtr: 2, bufBytes: 3, hashPos: 4))
        let t = ReadXattrTotalsArgs(posName: [1, 2, 3], totalsPtr: 4, totalsBytes: 5).encoded
        #expect(t.count == 40 && t[16] == 3 && t[24] == 4 && t[32] == 5)
        let x = XattrTotal(name: [1, 2, 3], total: 4, count: 5).encoded
        #expect(x.count == 40 && x[24] == 4 && x[32] == 5)
        let e = XattrIndexEntry(major: 7, minor: 8, ino: 9).encoded
        #expect(e.count == 24 && e[0] == 8 && e[8] == 9 && e[16] == 7)
        let r = ReadXattrIndexArgs(first: XattrIndexEntry(major: 1, minor: 2, ino: 3), entriesPtr: 10, entriesNr: 11).encoded
        #expect(r.count == 72 && r[8] == 2 && r[16] == 3 && r[24] == 1 && r[32] == 0xff && r[56] == 10 && r[64] == 11)
        let i = InjectTotlDeltaArgs(name: [1, 2, 3], total: -1, count: 2).encoded
        #expect(i.count == 40 && i[24] == 0xff && i[31] == 0xff && i[32] == 2)
        #expect(try InjectTotlDeltaArgs(bytes: i).total == -1)
        #expect(IoctlCommand.readXattrIndex.size == ReadXattrIndexArgs.size && IoctlCommand.injectTotlDelta.size == InjectTotlDeltaArgs.size)
    }

    @Test func referringEntriesArePaddedTo16Bytes() throws {
        let es = [
            ReferringEntry(dirIno: 1, dirPos: 2, ino: 3, flags: 0, dType: 8, name: Array("a".utf8)),
            ReferringEntry(dirIno: 1, dirPos: 9, ino: 3, flags: ReferringEntry.flagLast, dType: 8, name: Array("longer-name".utf8)),
        ]
        var w = IoctlWriter()
        for e in es { e.encode(&w) }
        #expect(es[0].entryBytes == 32 && es[1].entryBytes == 48)
        #expect(w.bytes.count == 80)
        #expect(w.bytes[29] == UInt8(ascii: "a") && w.bytes[30] == 0)
        #expect(try ReferringEntry.decode(w.bytes, count: 2) == es)
    }

    @Test func walkPositionsCarry() {
        #expect(WalkInodesEntry(major: 1, minor: 0, ino: 5).next == WalkInodesEntry(major: 1, minor: 0, ino: 6))
        #expect(WalkInodesEntry(major: 1, minor: .max, ino: .max).next == WalkInodesEntry(major: 2, minor: 0, ino: 0))
        #expect(WalkInodesEntry(major: .max, minor: .max, ino: .max).next == nil)
    }
}
