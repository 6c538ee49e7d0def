import Dispatch
import Glibc
import ScoutBTree
import ScoutBlockIO
import ScoutFS
import ScoutFormat
import ScoutServer
import ScoutStorage
import ScoutTestSupport
import Synchronization
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Log merging through the real server core and client merger, in process.
@Suite("Log merging")
struct LogMergeTests {
    /// The server state and a mount of `tv`, on one core that later mounts share.
    static func open(_ tv: TestVolume) throws -> (ServerCore, MetaDevice) {
        let metaDev = try FileBlockDevice(path: tv.meta, writable: true)
        let md = MetaDevice(device: metaDev, fsid: tv.fsid)
        return (ServerCore(txn: try MetaTransaction(device: md)), md)
    }

    /// The server state and one mount (rid 0x1111) on it.
    static func mount(_ tv: TestVolume) throws -> (ServerCore, MetaDevice, LocalLink, Volume) {
        let (core, md) = try open(tv)
        let link = LocalLink(core: core, rid: 0x1111)
        return (core, md, link, try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: link))
    }

    static func names(_ vol: Volume, _ dir: UInt64) throws -> Set<String> {
        var names: Set<String> = []
        try vol.readdir(dir, offset: 0) { n, _, _, _ in
            names.insert(String(decoding: n, as: UTF8.self))
            return true
        }
        return names.subtracting([".", ".."])
    }

    /// The names of every dirent item in the fs root (what `print` shows of the namespace).
    static func fsRootNames(_ core: ServerCore) throws -> Set<String> {
        var out: Set<String> = []
        try BTree(store: core.txn).forEach(core.txn.superBlock.fsRoot) { bl, off in
            let k = bl.key(at: off)
            if k.zone == KeyZone.fs && k.type == KeyType.dirent {
                if let d = try? Dirent.decode(bl.value(at: off)) { out.insert(String(decoding: d.name, as: UTF8.self)) }
            }
            return true
        }
        return out
    }

    /// A forced commit whose GET_LOG_TREES finalizes every tree and starts a merge (the
    /// `log_merge_force_finalize_ours` trigger).
    static func finalize(_ vol: Volume, _ link: LocalLink) throws {
        link.forceFinalize = true
        defer { link.forceFinalize = false }
        try vol.sync(force: true)
    }

    static func drainMerges(_ vol: Volume, _ core: ServerCore) throws -> Int {
        var n = 0
        while try vol.mergeLogsOnce() {
            n += 1
            #expect(n < 10_000, "merge never finished")
            if n >= 10_000 { break }
        }
        while try core.freeMergedStep() {}
        return n
    }

    @Test func mergedNamespaceMovesIntoTheFsRootAndInputsAreFreed() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md, link, vol) = try Self.mount(tv)
        let root = Format.rootIno
        let d = try vol.makeNode(parent: root, name: b("d"), mode: UInt32(S_IFDIR) | 0o755, caller: me)
        var live: Set<String> = []
        for i in 0..<600 {
            _ = try vol.makeNode(parent: d.ino, name: b("f\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me)
            live.insert("f\(i)")
            if i % 100 == 99 { try vol.sync() }  // several transactions in the tree
        }
        for i in stride(from: 0, to: 600, by: 3) {
            try vol.remove(parent: d.ino, name: b("f\(i)"), dir: false)
            live.remove("f\(i)")
        }
        for i in stride(from: 1, to: 600, by: 3) {
            try vol.rename(parent: d.ino, name: b("f\(i)"), newParent: d.ino, newName: b("r\(i)"), flags: [])
            live.remove("f\(i)")
            live.insert("r\(i)")
        }
        try vol.sync()
        #expect(try Self.fsRootNames(core).isEmpty)
        let logTreesBefore = try core.allLogTrees().count

        try Self.finalize(vol, link)
        #expect(core.counters.logMergeStart == 1)
        let requests = try Self.drainMerges(vol, core)
        #expect(requests >= 1)
        #expect(core.counters.logMergeComplete == 1)
        #expect(try core.mergeStatus() == nil)
        // only the open tree of the mount is left, and nothing is left to free
        let trees = try core.allLogTrees()
        #expect(trees.count == 1 && trees.allSatisfy { $0.flags & LogTrees.flagFinalized == 0 }, "\(logTreesBefore) → \(trees.count)")
        #expect(try core.freeMergedStep() == false)
        #expect(core.counters.logMergeFreedBlocks > 0)
        // the fs root holds exactly the live names: no deleted or renamed-away name
        #expect(try Self.fsRootNames(core) == live.union(["d"]))
        try core.commit()

        // a second mount of the same server reads everything from the merged fs root
        let other = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0x2222))
        #expect(try Self.names(other, d.ino) == live)
        #expect(throws: FSError.self) { try other.lookup(parent: d.ino, name: b("f0")) }
        #expect(try other.lookup(parent: d.ino, name: b("r1")).nlink == 1)
    }

    /// A clean unmount while this mount's log merge sits between its request and the write
    /// of its blocks: the farewell gives the request's pool back to the server, so the merge
    /// must not write into it afterwards (it did: the server's next commits used those blocks
    /// and the super block ended up pointing at the merge's alloc-list and btree blocks). The
    /// unmount closes the lent-blocks gate first: the merge fails with ESHUTDOWN and writes
    /// nothing, no commit follows the final one, and a later mount's writes leave the volume
    /// clean.
    @Test func unmountEndsLentBlockWritesBeforeTheFarewell() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md, link, vol) = try Self.mount(tv)
        let d = try vol.makeNode(parent: Format.rootIno, name: b("d"), mode: UInt32(S_IFDIR) | 0o755, caller: me)
        for i in 0..<400 {
            _ = try vol.makeNode(parent: d.ino, name: b("f\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me)
            if i % 100 == 99 { try vol.sync() }
        }
        try Self.finalize(vol, link)
        let requested = DispatchSemaphore(value: 0)
        link.afterGetLogMerge = {
            requested.signal()
            usleep(300_000)  // the unmount runs now, before this merge writes
        }
        let merged = Mutex<Result<Bool, FSError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().async {
            let r = Result { () throws(FSError) in try vol.mergeLogsOnce() }
            merged.withLock { $0 = r }
            done.signal()
        }
        #expect(requested.wait(timeout: .now() + 10) == .success)
        try vol.unmount()
        #expect(done.wait(timeout: .now() + 10) == .success)
        link.afterGetLogMerge = nil
        let result = merged.withLock { $0 }
        guard case .failure(let e) = result else {
            Issue.record("the merge went on after the unmount began: \(String(describing: result)), events \(link.events)")
            return
        }
        #expect(e.errno == FSError.ESHUTDOWN, "\(e)")
        let farewell = try #require(link.events.firstIndex(of: "farewell"))
        #expect(!link.events[farewell...].contains("merge-done"), "\(link.events)")
        #expect(throws: FSError.self) { try vol.sync(force: true) }
        #expect(try vol.mergeLogsOnce() == false)

        // the server hands the blocks out again: another mount writes, merges and leaves
        let other = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0x2222))
        for i in 0..<400 {
            _ = try other.makeNode(parent: d.ino, name: b("g\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        }
        try other.sync()
        _ = try Self.drainMerges(other, core)
        try other.unmount()
        try VolumeCheckTests.expectClean(tv)
    }

    @Test func newerItemsInActiveTreesBeatMergedOnes() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md, link, vol) = try Self.mount(tv)
        let root = Format.rootIno
        let f = try vol.makeNode(parent: root, name: b("f"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        try vol.setxattr(f.ino, name: b("user.v"), value: b("old"), flags: 0)
        try vol.sync()
        try Self.finalize(vol, link)
        // changed in the new, active tree before the merge of the finalized one runs
        try vol.setxattr(f.ino, name: b("user.v"), value: b("new"), flags: 0)
        try vol.sync()
        _ = try Self.drainMerges(vol, core)
        #expect(core.counters.logMergeComplete == 1)
        let other = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0x2222))
        #expect(try other.getxattr(f.ino, name: b("user.v")) == b("new"))
    }

    @Test func departedMountsTreesAreMergedAndOrphanTreesReclaimed() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md) = try Self.open(tv)
        let root = Format.rootIno
        do {
            let gone = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0xdead))
            try core.addMountedClient(rid: 0xdead, addr: InetAddr(ipv4: 0x7f00_0001, port: 1), quorum: false)
            _ = try gone.makeNode(parent: root, name: b("from-dead"), mode: UInt32(S_IFREG) | 0o644, caller: me)
            try gone.sync()
            // it dies: its mounted_client item goes (as a fence's reclaim would not finish)
            var mc = core.txn.superBlock.mountedClients
            try BTree(store: core.txn).delete(&mc, Key(zone: KeyZone.mountedClient, first: 0xdead))
            core.txn.superBlock.mountedClients = mc
            try core.commit()
        }
        // the next mount's first GET_LOG_TREES reclaims the orphan tree, and a merge of it starts
        let link = LocalLink(core: core, rid: 0x1111)
        let vol = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: link)
        try core.addMountedClient(rid: 0x1111, addr: InetAddr(ipv4: 0x7f00_0001, port: 2), quorum: false)
        #expect(core.counters.orphanLogTreesReclaimed == 1)
        #expect(core.counters.logMergeStart == 1)
        _ = try vol.makeNode(parent: root, name: b("mine"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        try vol.sync()
        _ = try Self.drainMerges(vol, core)
        #expect(try Self.fsRootNames(core) == ["from-dead"])
        // this mount's own tree goes in with the next merge
        try Self.finalize(vol, link)
        _ = try Self.drainMerges(vol, core)
        #expect(core.counters.logMergeComplete == 2)
        #expect(try Self.fsRootNames(core) == ["from-dead", "mine"])
        #expect(try core.allLogTrees().allSatisfy { $0.rid == 0x1111 })
    }

    /// Merges stopped early at a tiny dirty limit hand back their rest (REMAIN) and the merge
    /// still ends with every item; a request whose reply was lost (a mount asks again) and a
    /// failed merge (ERROR) both put their range back.
    @Test func partialStaleAndFailedRequestsAllConverge() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md, link, vol) = try Self.mount(tv)
        let root = Format.rootIno
        var live: Set<String> = []
        for i in 0..<2000 {
            _ = try vol.makeNode(parent: root, name: b("n\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me)
            live.insert("n\(i)")
        }
        try vol.sync()
        try Self.finalize(vol, link)
        #expect(try core.mergeStatus() != nil)

        // a request that is never answered, then asked for again: the first goes back
        let lost = try #require(try core.getLogMerge(rid: 0x1111))
        let again = try #require(try core.getLogMerge(rid: 0x1111))
        #expect(again.start == lost.start && again.seq != lost.seq)
        #expect(try core.mergeStatus()?.nrRequests == 1)
        try VolumeCheckTests.expectClean(tv)  // a request out: its pool is free
        // a failed merge: its range goes back too
        try core.commitLogMerge(rid: 0x1111, LogMergeComplete(
            metaAvail: again.metaAvail, metaFreed: AllocListHead(), root: again.root, start: again.start, end: again.end,
            remain: Key(), rid: 0x1111, seq: again.seq, flags: LogMergeComplete.flagError))
        #expect(core.counters.logMergeErrors == 1)
        #expect(try core.mergeStatus()?.nrRequests == 0)

        let merger = LogMerger(device: md, link: link)
        merger.dirtyLimit = 4
        var partial = 0
        var rounds = 0
        while let done = try merger.mergeOnce() {
            if done.partial { partial += 1 }
            rounds += 1
            if rounds > 5000 { break }
            // completions stored, not spliced yet: they share blocks with the fs root
            if rounds == 3 { try VolumeCheckTests.expectClean(tv) }
        }
        #expect(partial > 1, "\(rounds) requests, \(partial) partial")
        #expect(core.counters.logMergeComplete == 1)
        #expect(try Self.fsRootNames(core) == live)
        while try core.freeMergedStep() {}
        try core.commit()
        try VolumeCheckTests.expectClean(tv)
        let other = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0x2222))
        #expect(try Self.names(other, root) == live)
    }
}
