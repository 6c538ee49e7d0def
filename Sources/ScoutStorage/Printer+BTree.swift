import ScoutBlockIO
import ScoutFormat

/// Which item printer a btree walk calls for each item (the original's `print_item_func`s).
enum PrintItemKind {
    case fsItem
    case logTrees
    case srchRoot
    case mountedClient
    case logMerge
    case allocExtent
    /// Follows each srch_root item to its srch file blocks.
    case srchRootFiles
    /// Follows each log_trees item to its allocators, srch file and item tree.
    case logTreesRoots
}

/// In-order positions of the items of one btree block, walked through the AVL links as the
/// original's `avl_first`/`avl_next` do.
///
/// Note: `BTreeBlock` has no AVL navigation yet (another change is adding `first`/`next`);
/// until it has, this private walk does the same and also checks every link, so a damaged
/// block ends the walk instead of reading out of bounds or looping.
struct AVLWalk {
    /// Absolute byte offsets of the items, in key order.
    var offsets: [Int] = []
    /// False when a link was out of bounds or the walk did not terminate.
    var intact = true

    init(_ buf: BlockBuffer) {
        let maxItems = (buf.size - BTreeBlock.headerSize) / BTreeBlock.itemSize

        // An AVL link is an offset from the item_root field; 0 means none.
        func node(_ link: UInt16) -> Int? {
            if link == 0 { return nil }
            return BTreeBlock.avlRootOffset + Int(link)
        }
        func valid(_ off: Int) -> Bool {
            off >= BTreeBlock.headerSize && off + BTreeBlock.itemSize <= buf.size
                && (off - BTreeBlock.headerSize) % BTreeBlock.itemSize == 0
        }
        func parent(_ off: Int) -> UInt16 { buf.u16(off) }
        func left(_ off: Int) -> UInt16 { buf.u16(off + 2) }
        func right(_ off: Int) -> UInt16 { buf.u16(off + 4) }

        var steps = 0
        func step(_ off: Int) -> Bool {
            steps += 1
            return valid(off) && steps <= 4 * maxItems + 4
        }

        // avl_first: leftmost node from the root
        guard var cur = node(buf.u16(BTreeBlock.avlRootOffset)) else { return }
        guard step(cur) else {
            intact = false
            return
        }
        while let l = node(left(cur)) {
            guard step(l) else {
                intact = false
                return
            }
            cur = l
        }

        while true {
            offsets.append(cur)
            if offsets.count > maxItems {
                intact = false
                return
            }
            // avl_next: leftmost of the right subtree, else the first ancestor we are left of
            if let r = node(right(cur)) {
                guard step(r) else {
                    intact = false
                    return
                }
                cur = r
                while let l = node(left(cur)) {
                    guard step(l) else {
                        intact = false
                        return
                    }
                    cur = l
                }
                continue
            }
            var child = cur
            while true {
                guard let p = node(parent(child)) else { return }
                guard step(p) else {
                    intact = false
                    return
                }
                if node(right(p)) == child {
                    child = p
                    continue
                }
                cur = p
                break
            }
        }
    }
}

extension Printer {
    /// `print_btree`: one pass per level, from the root's level down to the leaves.
    mutating func printBTree(_ which: String, root: BTreeRoot, item kind: PrintItemKind) {
        var level = Int(root.height) - 1
        while level >= 0 {
            if !printBTreeBlock(which, ref: root.ref, item: kind, level: UInt8(level), depth: 0) {
                break
            }
            level -= 1
        }
    }

    /// Reads a btree block and checks its magic; nil (after reporting) when unusable.
    mutating func readBTreeBlock(_ which: String, blkno: UInt64) -> BlockBuffer? {
        guard let buf = readBlock(blkno, shift: Format.largeShift) else { return nil }
        let magic = buf.header.magic
        if magic != BlockMagic.btree.rawValue {
            noteCorrupt(blkno)
            if reportedBadMagic.insert(blkno).inserted {
                output.write(
                    "\(which) btree blkno \(blkno)\n  (bad btree block magic \(hex(magic, width: 8)), crc \(hex(buf.header.crc, width: 8)), block not walked)\n"
                )
            }
            return nil
        }
        if buf.computeCRC() != buf.header.crc { noteCorrupt(blkno) }
        return buf
    }

    /// `print_btree_block`: prints the block if it is at `level`, else descends to that level.
    /// Returns false when the block could not be used (the original's error return).
    @discardableResult
    mutating func printBTreeBlock(_ which: String, ref: BlockRef, item kind: PrintItemKind, level: UInt8, depth: Int) -> Bool {
        let blkno = ref.blkno
        guard let buf = readBTreeBlock(which, blkno: blkno) else { return false }
        let bt = BTreeBlock(buf)
        let h = buf.header

        if bt.level == level {
            let computed = buf.computeCRC()
            let valid = computed == h.crc ? "" : "(!= \(hex(computed, width: 8))) "
            output.write("\(which) btree blkno \(blkno)\n")
            output.write("  crc \(hex(h.crc, width: 8)) \(valid)fsid \(hex(h.fsid)) seq \(h.seq) blkno \(h.blkno) \n")
            output.write("  total_item_bytes \(bt.totalItemBytes) mid_free_len \(bt.midFreeLen)\n")
            output.write("  level \(bt.level) nr_items \(bt.nrItems) item_root.node \(bt.itemRoot)\n")
            if bt.level == 0 { printLeafItemHash(bt) }
        }

        let walk = AVLWalk(buf)
        for (i, off) in walk.offsets.enumerated() {
            let item = bt.item(at: off)
            let value = BlockValue(buffer: buf, base: Int(item.valOff), length: Int(item.valLen))

            if level < bt.level {
                let child = value.ref(0)
                if child.blkno != 0 {
                    if depth >= Format.btreeMaxHeight {
                        noteCorrupt(blkno)
                        output.write("  (btree deeper than \(Format.btreeMaxHeight) levels under blkno \(blkno), not followed)\n")
                        continue
                    }
                    printBTreeBlock(which, ref: child, item: kind, level: level, depth: depth + 1)
                }
                continue
            }

            output.write(
                "  [\(i)] off \(off) par \(item.parent) l \(item.left) r \(item.right) h \(item.height) vo \(item.valOff) vl \(item.valLen)\n"
            )
            if level != 0 {
                // print_block_ref: the key through the item printer, then the child ref
                printItem(kind, key: item.key, seq: 0, flags: 0, value: nil)
                let child = value.ref(0)
                output.write("    ref blkno \(child.blkno) seq \(child.seq)\n")
            } else {
                printItem(kind, key: item.key, seq: item.seq, flags: item.flags, value: value)
            }
        }
        if !walk.intact {
            noteCorrupt(blkno)
            if bt.level == level {
                output.write("  (item tree of btree blkno \(blkno) is corrupt, walk stopped)\n")
            }
        }
        return true
    }

    /// `print_leaf_item_hash`: the populated buckets, wrapped as the original wraps them.
    mutating func printLeafItemHash(_ bt: BTreeBlock) {
        var line = "  item hash: "
        var col = 13
        var nr = 0
        for i in 0..<BTreeBlock.hashNr {
            let b = bt.buffer.u16(BTreeBlock.hashOffset + i * 2)
            if b == 0 { continue }
            nr += 1
            let entry = "\(i),\(b) "
            col += entry.utf8.count
            if col >= 78 {
                line += "\n   "
                col = 3
            }
            line += entry
        }
        if col != 3 { line += "\n" }
        output.write(line)
        output.write("    (\(nr) / \(BTreeBlock.hashNr) populated, \(nr * 100 / BTreeBlock.hashNr)% load)\n")
    }

    /// `print_btree_leaf_items`: calls the item printer for every leaf item under `ref`, with
    /// no block output of its own.
    mutating func walkLeafItems(ref: BlockRef, item kind: PrintItemKind, depth: Int = 0) {
        if ref.blkno == 0 { return }
        guard let buf = readBTreeBlock("", blkno: ref.blkno) else { return }
        let bt = BTreeBlock(buf)
        let walk = AVLWalk(buf)
        if !walk.intact { noteCorrupt(ref.blkno) }
        for off in walk.offsets {
            let item = bt.item(at: off)
            let value = BlockValue(buffer: buf, base: Int(item.valOff), length: Int(item.valLen))
            if bt.level > 0 {
                if depth >= Format.btreeMaxHeight {
                    noteCorrupt(ref.blkno)
                    continue
                }
                walkLeafItems(ref: value.ref(0), item: kind, depth: depth + 1)
            } else {
                printItem(kind, key: item.key, seq: item.seq, flags: item.flags, value: value)
            }
        }
    }
}
