import ScoutBTree
import ScoutFormat
import ScoutTestSupport
import Testing

@testable import ScoutAlloc


@Suite struct ExtentAllocatorTests {
    /// Random allocations and frees against a bitmap model: free space, totals and both key
    /// zones always agree, extents never overlap and adjacent frees merge.
    @Test(arguments: [1, 2, 3] as [UInt64])
    func randomAgainstModel(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let store = MemoryBlockStore()
        let alloc = ExtentAllocator(store: store)
        let total: UInt64 = 20_000
        var root = AllocRoot()
        try alloc.free(&root, Extent(start: 100, len: total))
        var free = Set(100..<(100 + total))
        var held: [Extent] = []
        for i in 0..<1500 {
            if rng.next() % 2 == 0 || held.isEmpty {
                let want = 1 + rng.next() % 64
                if let e = try alloc.allocate(&root, count: want) {
                    #expect(e.len >= 1 && e.len <= want)
                    for b in e.start...e.end { #expect(free.remove(b) != nil, "allocated a block that was not free: \(b)") }
                    held.append(e)
                } else {
                    #expect(free.isEmpty)
                }
            } else {
                let e = held.remove(at: Int(rng.next() % UInt64(held.count)))
                try alloc.free(&root, e)
                for b in e.start...e.end { free.insert(b) }
            }
            if i % 50 == 0 { store.commit() }
            #expect(root.totalLen == UInt64(free.count))
        }
        let extents = try alloc.extents(root)
        // merged: no two extents touch, and together they are exactly the free set
        for (a, b) in zip(extents, extents.dropFirst()) { #expect(a.end + 1 < b.start) }
        #expect(Set(extents.flatMap { Array($0.start...$0.end) }) == free)
        try BTreeChecker(store: store).check(root.root)
        // every extent is in the order zone too
        var orderItems = 0
        try BTree(store: store).forEach(root.root, from: Key(zone: KeyZone.freeExtentOrder), through: Key(zone: KeyZone.freeExtentOrder, first: .max, type: .max, second: .max, third: .max, fourth: .max)) { _, _ in
            orderItems += 1
            return true
        }
        #expect(orderItems == extents.count)
    }

    @Test func allocatesFromTheLargestExtentsFront() throws {
        let store = MemoryBlockStore()
        let alloc = ExtentAllocator(store: store)
        var root = AllocRoot()
        try alloc.free(&root, Extent(start: 10, len: 5))
        try alloc.free(&root, Extent(start: 1000, len: 700))
        try alloc.free(&root, Extent(start: 100, len: 60))
        #expect(try alloc.allocate(&root, count: 3) == Extent(start: 1000, len: 3))
        #expect(try alloc.extents(root) == [Extent(start: 10, len: 5), Extent(start: 100, len: 60), Extent(start: 1003, len: 697)])
    }

    @Test func doubleFreeIsRefused() throws {
        let store = MemoryBlockStore()
        let alloc = ExtentAllocator(store: store)
        var root = AllocRoot()
        try alloc.free(&root, Extent(start: 50, len: 10))
        #expect(throws: AllocError.doubleFree(start: 55, len: 10)) { try alloc.free(&root, Extent(start: 55, len: 10)) }
        #expect(throws: AllocError.doubleFree(start: 45, len: 6)) { try alloc.free(&root, Extent(start: 45, len: 6)) }
        #expect(root.totalLen == 10)
    }

    @Test func orderIsFloorLog8() {
        #expect(FreeExtentKey.order(of: 1) == 0)
        #expect(FreeExtentKey.order(of: 7) == 0)
        #expect(FreeExtentKey.order(of: 8) == 1)
        #expect(FreeExtentKey.order(of: 63) == 1)
        #expect(FreeExtentKey.order(of: 64) == 2)
        #expect(FreeExtentKey.order(of: 1533) == 3)
        #expect(FreeExtentKey.order(of: 262_080) == 5)
        #expect(FreeExtentKey.order(of: 4_194_240) == 7)
    }
}

@Suite struct AllocListTests {
    @Test(arguments: [0, 1, 8185, 8186, 20_000])
    func buildAndReadBack(count: Int) throws {
        let store = MemoryBlockStore()
        let blknos = (0..<count).map { UInt64(10_000 + $0 * 3) }
        let need = AllocList.blocksNeeded(count)
        var listBlknos: [UInt64] = []
        var seqs: [UInt64] = []
        var buffers: [BlockBuffer] = []
        for _ in 0..<need {
            var ref = BlockRef()
            buffers.append(try store.dirty(&ref, magic: .allocList))
            listBlknos.append(ref.blkno)
            seqs.append(ref.seq)
        }
        let (head, blocks) = AllocList.build(blknos, at: listBlknos, fsid: store.fsid, seqs: seqs)
        for (dst, src) in zip(buffers, blocks) { dst.bytes.copyMemory(from: UnsafeRawBufferPointer(src.bytes)) }
        #expect(head.totalNr == UInt64(count))
        #expect(head.firstNr == UInt32(min(count, AllocList.perBlock)))
        let (read, chain) = try AllocList.read(head, from: store)
        #expect(read == blknos)
        #expect(chain == listBlknos)
    }

    @Test func inconsistentTotalIsAnError() throws {
        let store = MemoryBlockStore()
        var ref = BlockRef()
        let b = try store.dirty(&ref, magic: .allocList)
        let (head, blocks) = AllocList.build([1, 2, 3], at: [ref.blkno], fsid: store.fsid, seqs: [ref.seq])
        b.bytes.copyMemory(from: UnsafeRawBufferPointer(blocks[0].bytes))
        var bad = head
        bad.totalNr = 4
        #expect(throws: BlockStoreError.self) { try AllocList.read(bad, from: store) }
        // start + nr past the array
        b.setU32(48, UInt32(AllocList.perBlock))
        #expect(throws: BlockStoreError.self) { try AllocList.read(head, from: store) }
    }
}
