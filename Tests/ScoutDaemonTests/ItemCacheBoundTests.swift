import Glibc
import ScoutFormat
@testable import ScoutFS
import ScoutTestSupport
import Testing

private let me = Caller(uid: 0, gid: 0, pid: 1)
private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

/// The item cache's byte bound: clean items are dropped (CLOCK) and read again correctly,
/// dirty items never are, lock invalidation still drops everything in its range, and a name
/// lookup outside the cache reads single items (no leaf range).
@Suite("Item cache bounded in bytes")
struct ItemCacheBoundTests {
    /// A volume whose root holds `n` committed empty files `f0`...; their inode numbers.
    static func populated(_ n: Int) throws -> (TestVolume, Volume, [UInt64]) {
        let tv = try TestVolume.make()
        let (vol, _) = try tv.mount()
        var inos: [UInt64] = []
        for i in 0..<n {
            inos.append(try vol.makeNode(parent: Format.rootIno, name: b("f\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me).ino)
        }
        try vol.sync(force: true)
        return (tv, vol, inos)
    }

    /// A cache of its own over `vol`'s forest (every lock counts as held), bounded to `limit` bytes.
    static func cache(_ vol: Volume, limit: Int) -> ItemCache {
        let c = ItemCache(forest: vol.forest)
        c.limit = limit
        return c
    }

    @Test func droppedCleanItemsAreReadAgainAndTheBoundHolds() throws {
        let (tv, vol, inos) = try Self.populated(2000)
        defer { TempDir.remove(tv.dir) }
        // the committed values, through a cache with no bound to speak of
        let reference = ItemCache(forest: vol.forest)
        var want: [UInt64: [UInt8]] = [:]
        for ino in inos { want[ino] = try reference.get(Volume.inodeKey(ino)) }
        #expect(want.values.allSatisfy { !$0.isEmpty })

        let c = Self.cache(vol, limit: 32 << 10)
        for round in 0..<3 {
            for ino in inos.shuffled() {
                #expect(try c.get(Volume.inodeKey(ino)) == want[ino], "round \(round), inode \(ino)")
                #expect(c.cleanBytes <= c.limit)
            }
        }
        let s = c.stats
        #expect(s.evicted > 0)
        #expect(s.cleanItems < inos.count)
        // point reads only: no leaf was read as a range
        #expect(s.rangeReads == 0)
        #expect(s.pointReads >= UInt64(inos.count))
    }

    @Test func referencedItemsSurviveASweep() throws {
        let (tv, vol, inos) = try Self.populated(600)
        defer { TempDir.remove(tv.dir) }
        let c = Self.cache(vol, limit: 48 << 10)
        let hot = Volume.inodeKey(inos[0])
        _ = try c.get(hot)
        for ino in inos.dropFirst() {
            _ = try c.get(hot)  // referenced again before each sweep reaches it
            _ = try c.get(Volume.inodeKey(ino))
        }
        let reads = c.stats.pointReads
        _ = try c.get(hot)
        #expect(c.stats.pointReads == reads, "the hot item was dropped")
        #expect(c.stats.evicted > 0)
    }

    @Test func dirtyItemsAreNeverDropped() throws {
        let (tv, vol, inos) = try Self.populated(500)
        defer { TempDir.remove(tv.dir) }
        let c = Self.cache(vol, limit: 8 << 10)
        var dirty: [Key: [UInt8]] = [:]
        for (i, ino) in inos.enumerated() {
            let k = Key(zone: KeyZone.fs, first: ino, type: KeyType.xattr, second: 1, third: UInt64(i))
            let v = [UInt8](repeating: UInt8(truncatingIfNeeded: i), count: 100 + i % 50)
            c.put(k, v)
            dirty[k] = v
            // clean reads in between push the sweep over everything
            _ = try c.get(Volume.inodeKey(inos[(i * 7) % inos.count]))
            #expect(c.cleanBytes <= c.limit)
        }
        #expect(c.stats.evicted > 0)
        #expect(c.dirtyItems().count == dirty.count)
        for (k, v) in dirty { #expect(try c.get(k) == v) }
        // a deletion is dirty too: the committed inode stays hidden whatever is dropped
        let gone = Volume.inodeKey(inos[3])
        c.delete(gone)
        for ino in inos { _ = try c.get(Volume.inodeKey(ino)) }
        #expect(try c.get(gone) == nil)
    }

    @Test func walksWithEvictionReturnEveryItem() throws {
        let (tv, vol, inos) = try Self.populated(1500)
        defer { TempDir.remove(tv.dir) }
        let c = Self.cache(vol, limit: 16 << 10)
        var seen = 0
        var pos = Volume.readdirKey(Format.rootIno, 0)
        let end = Volume.readdirKey(Format.rootIno, .max)
        while let it = try c.next(from: pos, through: end) {
            seen += 1
            // point reads of other items in between may sweep the walk's earlier ranges
            _ = try c.get(Volume.inodeKey(inos[seen % inos.count]))
            if it.key == end { break }
            pos = it.key.incremented()
        }
        #expect(seen == inos.count)
        #expect(c.stats.rangeReads > 0)
    }

    @Test func invalidationDropsEverythingInItsRange() throws {
        let (tv, vol, inos) = try Self.populated(300)
        defer { TempDir.remove(tv.dir) }
        let c = Self.cache(vol, limit: 1 << 30)
        for ino in inos { _ = try c.get(Volume.inodeKey(ino)) }
        _ = try c.next(from: Volume.readdirKey(Format.rootIno, 0), through: Volume.readdirKey(Format.rootIno, .max))
        let before = c.stats
        #expect(before.cleanItems >= inos.count)
        var ranges = Set<LockRange>()
        for ino in inos + [Format.rootIno] { ranges.insert(LockRange.inode(ino)) }
        for r in ranges { c.invalidate(r) }
        let after = c.stats
        #expect(after.cleanItems == 0)
        #expect(after.ranges == 0)
        #expect(c.cleanBytes == 0)
        // and everything reads again from the forest
        let reads = after.pointReads
        for ino in inos.prefix(10) { #expect(try c.get(Volume.inodeKey(ino)) != nil) }
        #expect(c.stats.pointReads == reads + 10)
    }

    @Test func lookupsAfterARemountReadSingleItems() throws {
        let tv = try TestVolume.make()
        defer { TempDir.remove(tv.dir) }
        var inos: [UInt64] = []
        do {
            let (vol, _) = try tv.mount()
            for i in 0..<3000 {
                inos.append(try vol.makeNode(parent: Format.rootIno, name: b("f\(i)"), mode: UInt32(S_IFREG) | 0o644, caller: me).ino)
            }
            try vol.unmount()
        }
        let (vol, _) = try tv.mount(rid: 0x5678)
        vol.itemCacheLimit = 64 << 10
        _ = try vol.lookup(parent: Format.rootIno, name: b("f0"))
        let before = vol.memoryStats().items
        for i in stride(from: 1, to: 3000, by: 7) {
            let a = try vol.lookup(parent: Format.rootIno, name: b("f\(i)"))
            #expect(a.ino == inos[i])
            #expect(a.mode == UInt32(S_IFREG) | 0o644)
        }
        #expect(throws: FSError.self) { try vol.lookup(parent: Format.rootIno, name: b("nope")) }
        let after = vol.memoryStats().items
        #expect(after.rangeReads == before.rangeReads, "a lookup read a leaf's range")
        #expect(after.pointReads > before.pointReads)
        #expect(after.cleanBytes <= after.limit)
        // evicted and read again, still right
        for i in stride(from: 1, to: 3000, by: 7) { #expect(try vol.lookup(parent: Format.rootIno, name: b("f\(i)")).ino == inos[i]) }
        #expect(vol.memoryStats().items.evicted > 0)
    }
}
