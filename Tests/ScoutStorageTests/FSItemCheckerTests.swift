import ScoutFormat
import Testing

@testable import ScoutStorage

/// The fs item rules of `scoutfs check` on hand-made item streams.
@Suite struct FSItemCheckerTests {
    static let dirMode: UInt32 = 0o040755
    static let regMode: UInt32 = 0o100644

    /// Builds the items of a small tree in key order and runs the checker over them.
    struct Items {
        var items: [Key: [UInt8]] = [:]

        mutating func inode(_ ino: UInt64, mode: UInt32, nlink: UInt32, size: UInt64 = 0, metaSeq: UInt64 = 1, dataSeq: UInt64 = 0, online: UInt64 = 0) {
            var i = Inode()
            i.mode = mode
            i.nlink = nlink
            i.size = size
            i.metaSeq = metaSeq
            i.dataSeq = dataSeq
            i.onlineBlocks = online
            items[Key(zone: KeyZone.fs, first: ino, type: KeyType.inode)] = i.encoded(version: 2)
            items[Key(zone: KeyZone.inodeIndex, type: KeyType.inodeIndexMetaSeq, second: metaSeq, third: ino)] = []
            if dataSeq != 0 { items[Key(zone: KeyZone.inodeIndex, type: KeyType.inodeIndexDataSeq, second: dataSeq, third: ino)] = [] }
        }

        /// A complete link: dirent, readdir and backref.
        mutating func link(dir: UInt64, _ name: String, ino: UInt64, type: Dirent.DType, pos: UInt64, readdirName: String? = nil) {
            let n = Array(name.utf8)
            let hash = Dirent.nameHash(n)
            let d = Dirent(ino: ino, hash: hash, pos: pos, type: type.rawValue, name: n).encoded()
            items[Key(zone: KeyZone.fs, first: dir, type: KeyType.dirent, second: hash, third: pos)] = d
            let rn = readdirName.map { Array($0.utf8) } ?? n
            items[Key(zone: KeyZone.fs, first: dir, type: KeyType.readdir, second: pos)] =
                Dirent(ino: ino, hash: Dirent.nameHash(rn), pos: pos, type: type.rawValue, name: rn).encoded()
            items[Key(zone: KeyZone.fs, first: ino, type: KeyType.linkBackref, second: dir, third: pos)] = d
        }

        mutating func extent(_ ino: UInt64, iblock: UInt64, len: UInt64, blkno: UInt64) {
            items[Key(zone: KeyZone.fs, first: ino, type: KeyType.dataExtent, second: iblock + len - 1, third: len)] =
                DataExtentValue(blkno: blkno).encoded()
        }

        func check() -> [CheckProblem] {
            var found: [CheckProblem] = []
            var c = FSItemChecker(formatVersion: 2, totalDataBlocks: 1 << 20) { found.append(CheckProblem($0, $1)) }
            for (k, v) in items.sorted(by: { $0.key < $1.key }) { c.add(k, v) }
            c.finish()
            return found
        }
    }

    /// The root with a subdirectory holding a file linked twice.
    static func tree() -> Items {
        var t = Items()
        t.inode(1, mode: dirMode, nlink: 3, size: 3)
        t.inode(2000, mode: dirMode, nlink: 2, size: 5)
        t.inode(2001, mode: regMode, nlink: 2, dataSeq: 4, online: 3)
        t.link(dir: 1, "sub", ino: 2000, type: .dir, pos: 2)
        t.link(dir: 2000, "a", ino: 2001, type: .reg, pos: 2)
        t.link(dir: 2000, "bcde", ino: 2001, type: .reg, pos: 3)
        t.extent(2001, iblock: 0, len: 3, blkno: 100)
        return t
    }

    @Test func aConsistentTreeHasNoProblem() {
        #expect(Self.tree().check() == [])
    }

    @Test func aDirentWhoseTypeIsNotItsInodes() {
        var t = Self.tree()
        t.link(dir: 1, "sub", ino: 2000, type: .reg, pos: 2)
        let p = t.check()
        #expect(p.contains { $0.kind == .dirent && $0.message == "dir 1: dirent at pos 2 has type 4, ino 2000 has mode 40755" }, "\(p)")
        // the directory no longer counts as a subdirectory of the root
        #expect(p.contains { $0.kind == .linkCount && $0.message == "inode 1: nlink 3 but 0 subdirectories" }, "\(p)")
    }

    @Test func aDirectoryLinkedTwice() {
        var t = Self.tree()
        t.link(dir: 1, "again", ino: 2000, type: .dir, pos: 3)
        t.inode(1, mode: Self.dirMode, nlink: 4, size: 8)
        #expect(t.check().map(\.message) == ["dir 2000: 2 link backrefs (a directory has one)"])
    }

    @Test func aReaddirItemNamingAnotherEntry() {
        var t = Self.tree()
        t.link(dir: 2000, "a", ino: 2001, type: .reg, pos: 2, readdirName: "z")
        #expect(t.check().map(\.message) == ["dir 2000: readdir item at pos 2 ('z' ino 2001) differs from its dirent ('a' ino 2001)"])
    }

    @Test func extentsOverlappingInAFile() {
        var t = Self.tree()
        t.extent(2001, iblock: 2, len: 2, blkno: 200)
        t.inode(2001, mode: Self.regMode, nlink: 2, dataSeq: 4, online: 5)
        #expect(t.check().map(\.message) == ["ino 2001: extent at iblock 2+2 overlaps the extent ending at iblock 2"])
    }

    @Test func itemsOfAMissingInodeAndForeignZones() {
        var t = Self.tree()
        t.items[Key(zone: KeyZone.fs, first: 5000, type: KeyType.xattr)] = [1]
        t.items[Key(zone: KeyZone.lock, first: 1)] = []
        let p = t.check().map(\.message)
        #expect(p.contains("ino 5000: item 16.5000.8.0.0.0 but no inode item"), "\(p)")
        #expect(p.contains("item 20.1.0.0.0.0: zone 20 does not belong in the fs items"), "\(p)")
    }
}
