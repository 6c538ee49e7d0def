import Glibc
import ScoutBlockIO
import ScoutFS
import ScoutFormat
import ScoutServer
import ScoutStorage
import ScoutTestSupport
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// Tagged xattrs (`.hide.`, `.totl.`, `.indx.`) on in-process mounts of one server core.
@Suite("Tagged xattrs")
struct XattrTagTests {
    static func errno(_ body: () throws -> Void) -> Int32? {
        do {
            try body()
            return nil
        } catch let e as FSError {
            return e.errno
        } catch {
            return -1
        }
    }

    @Test func tagParsingErrorsAreTheOriginals() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md) = try LogMergeTests.open(tv)
        let vol = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0x1111))
        let f = try vol.makeNode(parent: Format.rootIno, name: b("f"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        func set(_ n: String, _ v: String = "", admin: Bool = true) -> Int32? {
            Self.errno { try vol.setxattr(f.ino, name: b(n), value: b(v), flags: 0, admin: admin) }
        }
        // names
        #expect(set("scoutfs.nottag.x") == FSError.EINVAL)
        #expect(set("scoutfs.hide.hide.x") == FSError.EINVAL)
        #expect(set("scoutfs.totl.srch.totl.x.1.2.3", "1") == FSError.EINVAL)
        #expect(set("scoutfs.totl.indx.x.1.2.3") == FSError.EINVAL)
        #expect(set("scoutfs.totl.x.1.2", "1") == FSError.EINVAL)
        #expect(set("scoutfs.totl.x.1..2", "1") == FSError.EINVAL)
        #expect(set("scoutfs.totl.x.1.2.z", "1") == FSError.EINVAL)
        #expect(set("scoutfs.totl.x.1.2.99999999999999999999999", "1") == FSError.EINVAL)
        #expect(set("scoutfs.indx.x.256.1") == FSError.EINVAL)
        #expect(set("scoutfs.indx.x.1") == FSError.EINVAL)
        // values
        #expect(set("scoutfs.totl.x.1.2.3", "") == FSError.EINVAL)
        #expect(set("scoutfs.totl.x.1.2.3", "+1") == FSError.EINVAL)
        #expect(set("scoutfs.totl.x.1.2.3", "1\n") == FSError.EINVAL)
        #expect(set("scoutfs.totl.x.1.2.3", "-1") == FSError.EINVAL)
        #expect(set("scoutfs.totl.x.1.2.3", "08") == FSError.EINVAL)
        #expect(set("scoutfs.totl.x.1.2.3", "18446744073709551616") == FSError.EINVAL)
        #expect(set("scoutfs.indx.x.1.2", "v") == FSError.EINVAL)
        // capabilities, for every tag and for removal
        #expect(set("scoutfs.hide.x", admin: false) == FSError.EPERM)
        #expect(set("scoutfs.srch.x", admin: false) == FSError.EPERM)
        #expect(Self.errno { try vol.removexattr(f.ino, name: b("scoutfs.hide.x"), admin: false) } == FSError.EPERM)
        // accepted: any order, C number syntax, short scoutfs. names as plain xattrs
        #expect(set("scoutfs.srch.hide.x", "v") == nil)
        #expect(set("scoutfs.hide.totl.x.1.2.3", "0x10") == nil)
        #expect(set("scoutfs.totl.y.1.2.3", "010") == nil)
        #expect(set("scoutfs.indx.hide.x.255.7") == nil)
        #expect(set("scoutfs.hide.") == nil)
        #expect(set("user.plain", "v", admin: false) == nil)
        try vol.sync()
        let t = try vol.readXattrTotals(from: (0, 0, 0), limit: 10)
        #expect(t.count == 1 && t[0].name == (1, 2, 3) && t[0].total == 24 && t[0].count == 2)
        // the same .indx. set again changes nothing; with a value it is EINVAL even then
        #expect(set("scoutfs.indx.hide.x.255.7") == nil)
        #expect(set("scoutfs.indx.hide.x.255.7", "1") == FSError.EINVAL)
        try vol.sync()
        try VolumeCheckTests.expectClean(tv)
    }

    @Test func hiddenXattrsAreListedOnlyByTheirIoctl() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md) = try LogMergeTests.open(tv)
        let vol = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: LocalLink(core: core, rid: 0x1111))
        let f = try vol.makeNode(parent: Format.rootIno, name: b("f"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        let hidden = (0..<40).map { "scoutfs.hide.n\($0)" } + ["scoutfs.srch.hide.s", "scoutfs.hide.totl.t.1.1.1"]
        for n in hidden { try vol.setxattr(f.ino, name: b(n), value: b(n.hasSuffix("1.1.1") ? "5" : "v"), flags: 0) }
        try vol.setxattr(f.ino, name: b("user.a"), value: b("1"), flags: 0)
        try vol.setxattr(f.ino, name: b("scoutfs.srch.s"), value: b("1"), flags: 0)
        #expect(Set(try vol.listxattr(f.ino).map { String(decoding: $0, as: UTF8.self) }) == ["user.a", "scoutfs.srch.s"])
        // all at once, then through the cursor a few bytes at a time: each name once
        let all = try vol.listHiddenXattrs(f.ino, hash: 0, id: 0, bytes: 1 << 20)
        #expect(Set(all.names.map { String(decoding: $0, as: UTF8.self) }) == Set(hidden))
        #expect(try vol.listHiddenXattrs(f.ino, hash: all.hash, id: all.id, bytes: 1 << 20).names.isEmpty)
        var seen: [String] = []
        var pos = (hash: UInt32(0), id: UInt64(0))
        while true {
            let r = try vol.listHiddenXattrs(f.ino, hash: pos.hash, id: pos.id, bytes: 40)
            if r.names.isEmpty { break }
            seen += r.names.map { String(decoding: $0, as: UTF8.self) }
            pos = (r.hash, r.id)
        }
        #expect(seen.sorted() == hidden.sorted())
        #expect(try vol.getxattr(f.ino, name: b("scoutfs.hide.n3")) == b("v"))
        try vol.removexattr(f.ino, name: b("scoutfs.hide.n3"))
        #expect(try vol.listHiddenXattrs(f.ino, hash: 0, id: 0, bytes: 1 << 20).names.count == hidden.count - 1)
        try vol.sync()
        try VolumeCheckTests.expectClean(tv)
    }

    /// A reproducible generator for the random workload.
    struct Rand {
        var s: UInt64
        mutating func next(_ n: Int) -> Int {
            s = s &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((s >> 33) % UInt64(n))
        }
    }

    /// The totals the xattrs make, as the test computes them.
    static func expectedTotals(_ values: [String: [String: UInt64]]) -> [String: (UInt64, UInt64)] {
        var out: [String: (UInt64, UInt64)] = [:]
        for (_, xs) in values {
            for (n, v) in xs {
                let key = n.split(separator: ".").suffix(3).joined(separator: ".")
                let o = out[key] ?? (0, 0)
                out[key] = (o.0 &+ v, o.1 + 1)
            }
        }
        return out.filter { $0.value != (0, 0) }
    }

    static func readTotals(_ vol: Volume) throws -> [String: (UInt64, UInt64)] {
        var out: [String: (UInt64, UInt64)] = [:]
        for t in try vol.readXattrTotals(from: (0, 0, 0), limit: 10_000) { out["\(t.name.0).\(t.name.1).\(t.name.2)"] = (t.total, t.count) }
        return out
    }

    static func expectTotals(_ vol: Volume, _ values: [String: [String: UInt64]], _ what: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let got = try readTotals(vol)
        let want = expectedTotals(values)
        let same = got.count == want.count && got.allSatisfy { k, v in want[k].map { $0 == v } ?? false }
        #expect(same, "\(what): read \(got.sorted { $0.key < $1.key }) expected \(want.sorted { $0.key < $1.key })", sourceLocation: sourceLocation)
    }

    /// Random sets, changes and removals of `.totl.` xattrs on three mounts, with merges
    /// (whole, and partial ones with changes made while they are in flight) in between:
    /// the committed totals always equal the sums of the xattrs' values.
    @Test func totalsEqualTheSumsThroughMergesOnThreeMounts() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md) = try LogMergeTests.open(tv)
        let links = [0x1111, 0x2222, 0x3333].map { LocalLink(core: core, rid: UInt64($0)) }
        let vols = try links.map { try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: $0) }
        // each mount changes its own files (the in-process links share no lock server, so
        // the files are all made by the first mount, which then leaves the directory alone)
        var files: [[UInt64]] = []
        for m in vols.indices {
            files.append(try (0..<6).map { try vols[0].makeNode(parent: Format.rootIno, name: b("m\(m)f\($0)"), mode: UInt32(S_IFREG) | 0o644, caller: me).ino })
        }
        try vols[0].sync()
        let names = ["scoutfs.totl.a.1.1.1", "scoutfs.totl.b.1.1.2", "scoutfs.hide.totl.c.2.0.7", "scoutfs.totl.d.9.18446744073709551615.3", "scoutfs.totl.e.1.1.1"]
            + (0..<40).map { "scoutfs.totl.z.5.\($0).\($0 * 7)" }
        var values: [String: [String: UInt64]] = [:]  // "ino" → name → value
        var rng = Rand(s: 42)
        func work(_ ops: Int, mounts: [Int]) throws {
            for _ in 0..<ops {
                let m = mounts[rng.next(mounts.count)]
                let ino = files[m][rng.next(files[m].count)]
                let n = names[rng.next(names.count)]
                var xs = values["\(ino)"] ?? [:]
                if xs[n] != nil && rng.next(3) == 0 {
                    try vols[m].removexattr(ino, name: b(n))
                    xs[n] = nil
                } else {
                    let v = UInt64(rng.next(1000))
                    try vols[m].setxattr(ino, name: b(n), value: b(rng.next(2) == 0 ? "\(v)" : "0x" + String(v, radix: 16)), flags: 0)
                    xs[n] = v
                }
                values["\(ino)"] = xs
            }
            for m in mounts { try vols[m].sync() }
        }
        for round in 0..<4 {
            try work(120, mounts: [0, 1, 2])
            // enough other items for merges to stop early many times
            for i in 0..<200 {
                try vols[0].setxattr(files[0][1], name: b("user.r\(round).\(i)"), value: [UInt8](repeating: 7, count: 200), flags: 0)
            }
            try vols[0].sync()
            try Self.expectTotals(vols[round % 3], values, "round \(round) before merging")
            // finalize two mounts' trees; the third keeps an open tree that is no merge input
            for m in [0, 1] {
                links[m].forceFinalize = true
                try vols[m].sync(force: true)
                links[m].forceFinalize = false
            }
            if round % 2 == 0 {
                _ = try LogMergeTests.drainMerges(vols[2], core)
                try core.commit()
                try Self.expectTotals(vols[0], values, "round \(round) after a whole merge")
            } else {
                // a partial merge in flight: part of the inputs spliced into the fs root
                let merger = LogMerger(device: md, link: links[2])
                merger.dirtyLimit = 2
                var steps = 0
                while let _ = try merger.mergeOnce() {
                    steps += 1
                    try core.commit()
                    try Self.expectTotals(vols[1], values, "round \(round) partial step \(steps)")
                    if steps % 3 == 1 {
                        // changes while it runs, on every mount (open trees, not inputs)
                        try work(5, mounts: [0, 1, 2])
                        try Self.expectTotals(vols[2], values, "round \(round) partial step \(steps) after changes")
                    }
                    if steps > 2000 { break }
                }
                #expect(steps > 1)
                while try core.freeMergedStep() {}
                try core.commit()
                try Self.expectTotals(vols[0], values, "round \(round) after a partial merge")
            }
        }
        // deleting an inode takes its xattrs out of the totals
        let victim = files[1][0]
        try vols[1].remove(parent: Format.rootIno, name: b("m1f0"), dir: false)
        vols[1].forget(victim, 1)  // the kernel's reference goes: the inode is deleted
        #expect(throws: FSError.self) { try vols[1].getattr(victim) }
        values["\(victim)"] = nil
        try vols[1].sync()
        try Self.expectTotals(vols[0], values, "after deleting an inode")
        // everything merged: the fs root alone holds the totals
        for (m, v) in vols.enumerated() {
            links[m].forceFinalize = true
            try v.sync(force: true)
            links[m].forceFinalize = false
        }
        _ = try LogMergeTests.drainMerges(vols[0], core)
        try core.commit()
        try Self.expectTotals(vols[2], values, "after the last merge")
        for v in vols { try v.sync() }
        try VolumeCheckTests.expectClean(tv)
    }

    @Test func injectedDeltasAddAndNullTotalsVanish() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md) = try LogMergeTests.open(tv)
        let link = LocalLink(core: core, rid: 0x1111)
        let vol = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: link)
        try vol.injectTotlDelta((1, 2, 3), total: 10, count: 1)
        try vol.sync()
        try vol.injectTotlDelta((1, 2, 3), total: 5, count: 1)
        try vol.injectTotlDelta((4, 5, 6), total: -3, count: -1)
        try vol.sync()
        var t = try vol.readXattrTotals(from: (0, 0, 0), limit: 10)
        #expect(t.count == 2)
        #expect(t.first.map { $0.total == 15 && $0.count == 2 } == true)
        #expect(t.last.map { Int64(bitPattern: $0.total) == -3 && Int64(bitPattern: $0.count) == -1 } == true)
        // the merge sums the log tree's delta into nothing: the item goes
        try vol.injectTotlDelta((1, 2, 3), total: -15, count: -2)
        try vol.sync()
        link.forceFinalize = true
        try vol.sync(force: true)
        link.forceFinalize = false
        _ = try LogMergeTests.drainMerges(vol, core)
        try core.commit()
        t = try vol.readXattrTotals(from: (0, 0, 0), limit: 10)
        #expect(t.count == 1 && t[0].name == (4, 5, 6))
        // reading from a position
        #expect(try vol.readXattrTotals(from: (4, 5, 7), limit: 10).isEmpty)
        // check finds the total no xattr makes (deltas injected with no xattr behind them)
        try vol.sync()
        try VolumeCheckTests.expectFound(tv, .item, "4.5.6: -3, -1 but no xattr adds to it")
    }

    /// A total set in one commit and removed in the next leaves a null item in the log
    /// tree: reads show nothing, and the merge writes nothing into the fs root.
    @Test func aTotalRemovedInALaterCommitLeavesNothing() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md) = try LogMergeTests.open(tv)
        let link = LocalLink(core: core, rid: 0x1111)
        let vol = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: link)
        let f = try vol.makeNode(parent: Format.rootIno, name: b("f"), mode: UInt32(S_IFREG) | 0o644, caller: me)
        try vol.setxattr(f.ino, name: b("scoutfs.totl.n.1.2.3"), value: b("9"), flags: 0)
        try vol.sync()
        #expect(try vol.readXattrTotals(from: (0, 0, 0), limit: 10).count == 1)
        try vol.removexattr(f.ino, name: b("scoutfs.totl.n.1.2.3"))
        try vol.sync()
        #expect(try vol.readXattrTotals(from: (0, 0, 0), limit: 10).isEmpty)
        try VolumeCheckTests.expectClean(tv)
        link.forceFinalize = true
        try vol.sync(force: true)
        link.forceFinalize = false
        _ = try LogMergeTests.drainMerges(vol, core)
        try core.commit()
        #expect(try vol.readXattrTotals(from: (0, 0, 0), limit: 10).isEmpty)
        try VolumeCheckTests.expectClean(tv)
    }

    @Test func indexEntriesFollowTheXattrs() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        let (core, md) = try LogMergeTests.open(tv)
        let link = LocalLink(core: core, rid: 0x1111)
        let vol = try Volume(meta: md, dataPath: tv.data, fmtVers: 2, link: link)
        var want: [(UInt8, UInt64, UInt64)] = []
        var inos: [UInt64] = []
        for i in 0..<20 {
            let ino = try vol.makeNode(parent: Format.rootIno, name: b("f\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me).ino
            inos.append(ino)
            try vol.setxattr(ino, name: b("scoutfs.indx.size.\(i % 3).\(1000 - i)"), value: [], flags: 0)
            want.append((UInt8(i % 3), UInt64(1000 - i), ino))
            // two xattrs at one position show once
            try vol.setxattr(ino, name: b("scoutfs.indx.other.\(i % 3).\(1000 - i)"), value: [], flags: 0)
        }
        try vol.sync()
        func read(_ f: (UInt8, UInt64, UInt64) = (0, 0, 0), _ l: (UInt8, UInt64, UInt64) = (255, .max, .max)) throws -> [String] {
            try vol.readXattrIndex(first: (f.0, f.1, f.2), last: (l.0, l.1, l.2), limit: 1000).map { "\($0.major).\($0.minor).\($0.ino)" }
        }
        func text(_ w: [(UInt8, UInt64, UInt64)]) -> [String] { w.sorted { $0 < $1 }.map { "\($0.0).\($0.1).\($0.2)" } }
        #expect(try read() == text(want))
        #expect(try read((1, 0, 0), (1, .max, .max)) == text(want.filter { $0.0 == 1 }))
        // removal, then an inode's deletion, take entries out; merged, the same
        try vol.removexattr(inos[0], name: b("scoutfs.indx.size.0.1000"))
        #expect(try read() == text(want))  // the other xattr keeps the position
        try vol.removexattr(inos[0], name: b("scoutfs.indx.other.0.1000"))
        want.removeAll { $0.2 == inos[0] }
        try vol.remove(parent: Format.rootIno, name: b("f1"), dir: false)
        vol.forget(inos[1], 1)
        want.removeAll { $0.2 == inos[1] }
        try vol.sync()
        #expect(try read() == text(want))
        link.forceFinalize = true
        try vol.sync(force: true)
        link.forceFinalize = false
        _ = try LogMergeTests.drainMerges(vol, core)
        try core.commit()
        #expect(try read() == text(want))
        #expect(try vol.readXattrIndex(first: (0, 0, 0), last: (255, .max, .max), limit: 3).count == 3)
        try VolumeCheckTests.expectClean(tv)
    }
}
