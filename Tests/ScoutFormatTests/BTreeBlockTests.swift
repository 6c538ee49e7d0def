import Foundation
import ScoutTestSupport
import Testing

@testable import ScoutFormat

/// Golden volumes made by the original mkfs live in `../shared/golden` relative to the repo root.
enum Golden {
    static let dir = URL(fileURLWithPath: ScoutTestSupport.Golden.directory)

    /// Unpacks an archive (keeping holes) into a fresh temp dir and returns the folder inside it.
    static func unpack(_ name: String) throws -> URL {
        URL(fileURLWithPath: try ScoutTestSupport.Golden.unpack(name))
    }

    static func readBlock(_ file: FileHandle, byteOffset: UInt64, size: Int) throws -> BlockBuffer {
        try file.seek(toOffset: byteOffset)
        let data = try file.read(upToCount: size) ?? Data()
        let b = BlockBuffer(size: size)
        b.write([UInt8](data), at: 0)
        return b
    }
}

@Suite struct BTreeBlockTests {
    static func key(_ i: UInt64) -> Key { Key(zone: 16, first: i / 7, type: 4, second: i % 7, third: i &* 31) }

    /// Checks an in-block AVL: links, heights, balance, order; returns the in-order offsets.
    static func checkAVL(_ b: BTreeBlock) -> [Int] {
        var out: [Int] = []
        func walk(_ n: Int, _ parent: Int) -> Int {
            if n == 0 { return 0 }
            #expect(b.avlParent(n) == parent)
            let lh = walk(b.avlLeft(n), n)
            out.append(n)
            let rh = walk(b.avlRight(n), n)
            #expect(abs(lh - rh) <= 1)
            #expect(b.avlHeight(n) == 1 + max(lh, rh))
            return 1 + max(lh, rh)
        }
        _ = walk(b.rootItem, 0)
        #expect(out.count == b.nrItems)
        for i in out.indices.dropFirst() { #expect(b.key(at: out[i - 1]) < b.key(at: out[i])) }
        return out
    }

    @Test func emptyBlockInit() {
        let b = BTreeBlock(BlockBuffer(size: Format.largeBlockSize))
        b.initialize(level: 0)
        #expect(b.midFreeLen == 62464)
        b.initialize(level: 1)
        #expect(b.midFreeLen == 65488)
        #expect(b.firstItem() == 0 && b.lastItem() == 0 && b.nrItems == 0)
        #expect(BTreeBlock.hashOffset == 62512)
    }

    @Test func insertAscendingRotates() {
        let b = BTreeBlock(BlockBuffer(size: Format.largeBlockSize))
        b.initialize(level: 0)
        for i in 0..<3 { #expect(b.insert(key: Self.key(UInt64(i)), value: [UInt8(i)]) != nil) }
        // 0,1,2 ascending: a left rotation makes item 1 (offset 104) the root of height 2
        #expect(b.rootItem == 104)
        #expect(b.avlHeight(104) == 2 && b.avlLeft(104) == 48 && b.avlRight(104) == 160)
        #expect(b.totalItemBytes == 3 * 64)
        #expect(b.midFreeLen == 62464 - 3 * 64)
        #expect(b.valueOffset(at: 48) == 62504 && b.valueOffset(at: 160) == 62488)
        _ = Self.checkAVL(b)
    }

    @Test func randomOpsAgainstModel() {
        var rng = SplitMix64(seed: 0xfeed)
        let b = BTreeBlock(BlockBuffer(size: Format.largeBlockSize))
        b.initialize(level: 0)
        var model: [Key: [UInt8]] = [:]
        for step in 0..<6000 {
            let k = Self.key(rng.next() % 400)
            let op = rng.next() % 4
            let len = Int(rng.next() % 120)
            let v = (0..<len).map { UInt8(truncatingIfNeeded: $0 &+ step) }
            let off = b.hashSearch(k)
            #expect((off != 0) == (model[k] != nil))
            if op < 2 {
                if off == 0 {
                    if !b.hasRoom(forValueLength: len) { b.compactValues() }
                    if b.hasRoom(forValueLength: len) {
                        #expect(b.insert(key: k, value: v) != nil)
                        model[k] = v
                    }
                } else {
                    #expect(b.insert(key: k, value: v) == nil)
                }
            } else if op == 2, off != 0 {
                if b.midFreeLen < BTreeBlock.valueBytes(len) { b.compactValues() }
                if b.midFreeLen >= BTreeBlock.valueBytes(len) {
                    b.updateValue(at: off, v)
                    model[k] = v
                }
            } else if off != 0 {
                b.deleteItem(at: off)
                model[k] = nil
            }
            if step % 97 == 0 { b.compactValues() }
            if step % 50 == 0 || step > 5900 {
                let order = Self.checkAVL(b)
                #expect(order.map { b.key(at: $0) } == model.keys.sorted())
                var tot = 0
                for o in order {
                    tot += b.itemBytes(at: o)
                    #expect(b.value(at: o) == model[b.key(at: o)])
                    #expect(b.hashSearch(b.key(at: o)) == o)
                }
                #expect(tot == b.totalItemBytes)
                #expect(b.hashBuckets.filter { $0 != 0 }.count == b.nrItems)
            }
        }
        // navigation
        let keys = model.keys.sorted()
        var o = b.firstItem()
        for k in keys {
            #expect(b.key(at: o) == k)
            o = b.nextItem(o)
        }
        #expect(o == 0)
        o = b.lastItem()
        for k in keys.reversed() {
            #expect(b.key(at: o) == k)
            o = b.prevItem(o)
        }
        #expect(o == 0)
        for i in 0..<400 {
            let k = Self.key(UInt64(i)).incremented()
            let ge = keys.first { $0 >= k }
            let le = keys.last { $0 <= k }
            let a = b.firstItem(atOrAfter: k)
            let p = b.lastItem(atOrBefore: k)
            #expect((a == 0 ? nil : b.key(at: a)) == ge)
            #expect((p == 0 ? nil : b.key(at: p)) == le)
        }
    }

    @Test func mkfsLeafShape() {
        let buf = BlockBuffer(size: Format.largeBlockSize)
        BTreeBlock.buildMkfsLeaf(
            into: buf,
            items: [
                (Key(zone: 4, first: 0, type: 4, second: 0, third: 1), []),
                (Key(zone: 16, first: 1, type: 4), [UInt8](repeating: 7, count: 168)),
            ])
        let b = BTreeBlock(buf)
        #expect(b.itemRoot == 72)
        let i0 = b.item(at: 48), i1 = b.item(at: 104)
        #expect(i0.parent == 72 && i0.left == 0 && i0.right == 0 && i0.height == 1 && i0.valOff == 0)
        #expect(i1.parent == 0 && i1.left == 16 && i1.right == 0 && i1.height == 0)
        #expect(i1.valOff == 62344 && i1.valLen == 168)
        #expect(b.totalItemBytes == 280 && b.midFreeLen == 62184)
        #expect(i0.seq == 1 && i1.seq == 1)
    }

    /// Rebuilds every btree block the original mkfs wrote (fs_root, data_alloc, both meta_alloc
    /// roots) from the items decoded out of the golden block, and compares the whole block
    /// (after copying the header and sealing, so the crc must match too).
    @Test(arguments: ["one-slot-v2", "one-slot-v1", "three-slots-v2", "zones-five-slots-v2"])
    func rebuildGoldenMkfsLeaves(_ name: String) throws {
        let dir = try Golden.unpack(name)
        defer { try? FileManager.default.removeItem(at: dir.deletingLastPathComponent()) }
        let fh = try FileHandle(forReadingFrom: dir.appendingPathComponent("meta.img"))
        defer { try? fh.close() }
        let sbuf = try Golden.readBlock(fh, byteOffset: 65536, size: Format.smallBlockSize)
        let sb: SuperBlock = try sbuf.decode()
        let roots = [sb.fsRoot, sb.dataAlloc.root] + sb.metaAlloc.map(\.root)
        #expect(roots.count == 4)
        for root in roots {
            #expect(root.height == 1)
            let g = try Golden.readBlock(fh, byteOffset: root.ref.blkno * 65536, size: Format.largeBlockSize)
            let gb = BTreeBlock(g)
            #expect(gb.header.magic == BlockMagic.btree.rawValue)
            var items: [(key: Key, value: [UInt8])] = []
            var o = gb.firstItem()
            while o != 0 {
                items.append((gb.key(at: o), gb.value(at: o)))
                o = gb.nextItem(o)
            }
            #expect(items.count == gb.nrItems)
            let r = BlockBuffer(size: Format.largeBlockSize)
            BTreeBlock.buildMkfsLeaf(into: r, items: items)
            r.header = g.header
            r.seal()
            let same = memcmp(r.bytes.baseAddress!, g.bytes.baseAddress!, Format.largeBlockSize) == 0
            #expect(same, "blkno \(root.ref.blkno) of \(name) differs")
            if !same {
                for i in 0..<Format.largeBlockSize where r.u8(i) != g.u8(i) {
                    Issue.record("first difference at byte \(i): \(r.u8(i)) vs \(g.u8(i))")
                    break
                }
            }
        }
    }
}

extension BTreeBlock {
    var header: BlockHeader { buffer.header }
}

