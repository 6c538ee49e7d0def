import Glibc
import ScoutBTree
import ScoutBlockIO
import ScoutFS
import ScoutFormat
import ScoutServer
import ScoutStorage
import ScoutTestSupport
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// `.srch.` xattrs through two in-process mounts on one server core: log files, rotation into
/// the srch root, and SEARCH_XATTRS finding every holder.
@Suite("srch xattrs")
struct SrchVolumeTests {
    static let tag = b("scoutfs.srch.archive")

    /// Every inode a search for `name` returns, over as many passes as it takes.
    static func search(_ vol: Volume, _ name: [UInt8], limit: Int = 1_000_000) throws -> [UInt64] {
        var out: [UInt64] = []
        var next: UInt64 = 0
        while true {
            let r = try vol.searchXattrs(name: name, fromIno: next, lastIno: .max, limit: limit)
            out += r.inodes
            if r.done { break }
            guard let last = r.inodes.last else { break }
            next = last + 1
        }
        return out
    }

    static func srchRootFiles(_ core: ServerCore) throws -> Int {
        var n = 0
        try BTree(store: core.txn).forEach(core.txn.superBlock.srchRoot) { bl, off in
            if bl.key(at: off).type == KeyType.srchLog { n += 1 }
            return true
        }
        return n
    }

    @Test func namesWithTheSrchTag() {
        for (n, yes) in [("scoutfs.srch.x", true), ("scoutfs.hide.srch.x", true), ("scoutfs.totl.srch.a.b.c", true),
                         ("scoutfs.hide.x", false), ("user.srch.x", false), ("scoutfs.srchx", false), ("scoutfs.x.srch.y", false)]
        {
            #expect(SrchNames.isSrch(b(n)) == yes, "\(n)")
        }
    }

    @Test func twoMountsRotationsAndSearchFindEveryHolder() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md) = try LogMergeTests.open(tv)
        let a = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0xa))
        let root = Format.rootIno
        let da = try a.makeNode(parent: root, name: b("a"), mode: UInt32(S_IFDIR) | 0o755, caller: me).ino
        let db = try a.makeNode(parent: root, name: b("b"), mode: UInt32(S_IFDIR) | 0o755, caller: me).ino
        try a.sync()
        let bvol = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0xb))

        var holders: Set<UInt64> = []
        var other: Set<UInt64> = []
        for (vol, dir) in [(a, da), (bvol, db)] {
            var inos: [UInt64] = []
            for i in 0..<1500 {
                let ino = try vol.makeNode(parent: dir, name: b("f\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me).ino
                inos.append(ino)
                try vol.setxattr(ino, name: Self.tag, value: b("v\(i)"), flags: 0)
                if i % 5 == 0 {
                    try vol.setxattr(ino, name: b("scoutfs.srch.other"), value: [], flags: 0)
                    other.insert(ino)
                }
                if i % 500 == 499 {
                    // a forced rotation at the next commit: the log file moves to the srch root
                    core.srchForceRotate = true
                    try vol.sync()
                }
            }
            for (i, ino) in inos.enumerated() {
                if i % 3 == 0 {
                    try vol.removexattr(ino, name: Self.tag)
                } else {
                    holders.insert(ino)
                    // replacing a value keeps the inode found
                    if i % 7 == 0 { try vol.setxattr(ino, name: Self.tag, value: b("new"), flags: 0) }
                }
            }
        }
        try a.sync()
        try bvol.sync()
        #expect(try Self.srchRootFiles(core) >= 4)
        #expect(try core.currentLogTrees(rid: 0xa)?.srchFile.entries ?? 0 > 0)
        for vol in [a, bvol] {
            let found = try Self.search(vol, Self.tag)
            #expect(found == found.sorted() && Set(found).count == found.count)
            // with cancelled entries exact here: every holder, nothing else
            #expect(Set(found) == holders)
            #expect(Set(try Self.search(vol, b("scoutfs.srch.other"))) == other)
            // passes of a few entries each still find every holder
            #expect(Set(try Self.search(vol, Self.tag, limit: 97)) == holders)
        }
        #expect(try Self.search(a, b("scoutfs.srch.nothing")).isEmpty)

        // a deleted inode's srch xattrs log their removal as the inode's items go
        let gone = try a.makeNode(parent: da, name: b("gone"), mode: UInt32(S_IFREG) | 0o644, caller: me).ino
        try a.setxattr(gone, name: Self.tag, value: [], flags: 0)
        try a.sync()
        #expect(try Self.search(a, Self.tag).contains(gone))
        try a.remove(parent: da, name: b("gone"), dir: false)
        let before = a.counters.inodeDeleted
        a.forget(gone, 1)  // the kernel's last reference goes: the inode is deleted
        #expect(a.counters.inodeDeleted == before + 1)
        try a.sync()
        #expect(try !Self.search(a, Self.tag).contains(gone))
        #expect(Set(try Self.search(a, Self.tag)) == holders)

        // a departing mount's open log file is rotated as its tree is finalized
        try bvol.unmount()
        #expect(try Set(Self.search(a, Self.tag)) == holders)
        try a.unmount()
        try core.commit()
        let c = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0xc))
        #expect(try Set(Self.search(c, Self.tag)) == holders)
        try c.unmount()
        try VolumeCheckTests.expectClean(tv)
    }

    static func srchRootTypes(_ core: ServerCore) throws -> [UInt8: Int] {
        var n: [UInt8: Int] = [:]
        try BTree(store: core.txn).forEach(core.txn.superBlock.srchRoot) { bl, off in
            n[bl.key(at: off).type, default: 0] += 1
            return true
        }
        return n
    }

    /// Sixteen rotated log files compact into sorted files (four at a time, then the four
    /// sorted ones into one), cancelled pairs are dropped, the inputs' blocks are freed, and
    /// every search before, between and after the steps finds exactly the holders.
    @Test func compactionMergesLogFilesIntoSortedFilesAndSearchStaysExact() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md) = try LogMergeTests.open(tv)
        let a = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0xa))
        let d = try a.makeNode(parent: Format.rootIno, name: b("d"), mode: UInt32(S_IFDIR) | 0o755, caller: me).ino
        var inos: [UInt64] = []
        var holders: Set<UInt64> = []
        for round in 0..<16 {
            for i in 0..<200 {
                let ino = try a.makeNode(parent: d, name: b("f\(round)-\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me).ino
                inos.append(ino)
                try a.setxattr(ino, name: Self.tag, value: [], flags: 0)
                holders.insert(ino)
            }
            // deletions of earlier rounds' tags land in later files
            for ino in inos.prefix(round * 200).filter({ $0 % 5 == UInt64(round % 5) }) where holders.contains(ino) {
                try a.removexattr(ino, name: Self.tag)
                holders.remove(ino)
            }
            core.srchForceRotate = true
            try a.sync()
        }
        #expect(try Self.srchRootTypes(core)[KeyType.srchLog] == 16)
        #expect(Set(try Self.search(a, Self.tag)) == holders)
        var steps = 0
        while try a.srchCompactOnce() {
            steps += 1
            #expect(Set(try Self.search(a, Self.tag)) == holders, "after step \(steps)")
            if steps > 40 { break }
        }
        // four log merges and their deletions, then one sorted merge and its deletion
        #expect(steps == 10)
        #expect(core.counters.srchCompactCommit == 5)
        let types = try Self.srchRootTypes(core)
        #expect(types[KeyType.srchLog] == nil && types[KeyType.srchBlocks] == 1 && types[KeyType.srchBusy] == nil && types[KeyType.srchPending] == nil, "\(types)")
        // the sorted file holds only entries that did not cancel: one per holder
        var files: [SrchFile] = []
        try BTree(store: core.txn).forEach(core.txn.superBlock.srchRoot) { bl, off in
            if let f = try? SrchFile.decode(bl.value(at: off)) { files.append(f) }
            return true
        }
        #expect(files.first?.entries == UInt64(holders.count))
        #expect(Set(try Self.search(a, Self.tag)) == holders)
        try a.unmount()
        try core.commit()
        try VolumeCheckTests.expectClean(tv)
    }

    /// A merge of sorted files that stops every few dirty blocks resumes from its inputs'
    /// positions (over several SRCH_GET_COMPACTs) and writes the same entries as a merge in
    /// one go: every search between the steps is complete, the check is clean.
    @Test func sortedMergesResumeFromTheirPositions() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md) = try LogMergeTests.open(tv)
        let a = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0xa))
        let f = try a.makeNode(parent: Format.rootIno, name: b("f"), mode: UInt32(S_IFREG) | 0o644, caller: me).ino
        // distinct names, so random hashes: about 5000 entries a block
        var names: [[UInt8]] = []
        var held: Set<[UInt8]> = []
        for round in 0..<16 {
            for i in 0..<1500 {
                let n = b("scoutfs.srch.r\(round)-\(i)")
                try a.setxattr(f, name: n, value: [], flags: 0)
                names.append(n)
                held.insert(n)
            }
            // some deletions cancel within a file, some across files
            for n in names.suffix(3000).enumerated().filter({ $0.offset % 7 == 0 }).map(\.element) where held.contains(n) {
                try a.removexattr(f, name: n)
                held.remove(n)
            }
            core.srchForceRotate = true
            try a.sync()
        }
        var steps = 0
        var partial = 0
        while try a.srchCompactOnce(dirtyLimit: 2) {
            steps += 1
            if try Self.srchRootTypes(core)[KeyType.srchPending] != nil { partial += 1 }
            if steps > 200 { break }
        }
        #expect(partial > 2, "the sorted merge stopped and resumed")
        let types = try Self.srchRootTypes(core)
        #expect(types[KeyType.srchLog] == nil && types[KeyType.srchBlocks] == 1 && types[KeyType.srchPending] == nil, "\(types)")
        var file = SrchFile()
        try BTree(store: core.txn).forEach(core.txn.superBlock.srchRoot) { bl, off in
            if let sf = try? SrchFile.decode(bl.value(at: off)) { file = sf }
            return true
        }
        #expect(file.entries == UInt64(held.count) && file.blocks >= 2, "\(file.blocks) blocks")
        for n in names.shuffled().prefix(300) {
            #expect(try Self.search(a, n) == (held.contains(n) ? [f] : []))
        }
        try a.unmount()
        try core.commit()
        try VolumeCheckTests.expectClean(tv)
    }

    /// A mount that took compaction work and died (no SRCH_COMMIT_COMPACT) loses nothing:
    /// reclaiming it puts the work back as pending, another mount finishes it, and every
    /// search meanwhile still finds every holder.
    @Test func compactionOfADepartedMountIsFinishedByAnother() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md) = try LogMergeTests.open(tv)
        let a = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0xa))
        var holders: Set<UInt64> = []
        for round in 0..<4 {
            for i in 0..<100 {
                let ino = try a.makeNode(parent: Format.rootIno, name: b("f\(round)-\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me).ino
                try a.setxattr(ino, name: Self.tag, value: [], flags: 0)
                holders.insert(ino)
            }
            core.srchForceRotate = true
            try a.sync()
        }
        // rid 0xd takes the work and is gone before committing it
        let dead = LocalLink(core: core, rid: 0xd)
        let sc = try dead.srchGetCompact()
        #expect(sc.nr == 4)
        #expect(try Self.srchRootTypes(core)[KeyType.srchBusy] == 1)
        #expect(try core.getSrchCompact(rid: 0xa).nr == 0, "the busy inputs are not handed out twice")
        #expect(Set(try Self.search(a, Self.tag)) == holders)
        try core.reclaim(rid: 0xd)
        #expect(try Self.srchRootTypes(core)[KeyType.srchPending] == 1)
        var steps = 0
        while try a.srchCompactOnce() { steps += 1 }
        #expect(steps == 2)
        let types = try Self.srchRootTypes(core)
        #expect(types[KeyType.srchLog] == nil && types[KeyType.srchBlocks] == 1 && types[KeyType.srchPending] == nil && types[KeyType.srchBusy] == nil, "\(types)")
        #expect(Set(try Self.search(a, Self.tag)) == holders)
        try a.unmount()
        try core.commit()
        try VolumeCheckTests.expectClean(tv)
    }

    @Test func logFilesRotateAtTheOriginalsSize() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md) = try LogMergeTests.open(tv)
        let a = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0xa))
        let f = try a.makeNode(parent: Format.rootIno, name: b("f"), mode: UInt32(S_IFREG) | 0o644, caller: me).ino
        // distinct names: each set and delete is one entry of a random hash (about 13 bytes)
        var sets = 0
        while try Self.srchRootFiles(core) == 0 {
            for _ in 0..<5000 {
                let n = b("scoutfs.srch.n\(sets)")
                try a.setxattr(f, name: n, value: [], flags: 0)
                try a.removexattr(f, name: n)
                sets += 1
            }
            try a.sync()
            #expect(sets < 200_000)
            if sets >= 200_000 { break }
        }
        // 16 blocks of about 5000 entries
        #expect(core.counters.srchRotateLog == 1)
        #expect(sets > 16 * 4000 / 2)
        try a.unmount()
        try core.commit()
        try VolumeCheckTests.expectClean(tv)
    }
}
