import ScoutBlockIO
import ScoutFormat

extension Printer {
    /// `print_super_block`.
    mutating func printSuper(_ sb: SuperBlock, buffer: BlockBuffer) {
        output.write("super blkno \(Format.superBlkno)\n")
        printBlockHeader(buffer, blkno: Format.superBlkno, magic: .superBlock)
        var s = ""
        s += "  fmt_vers \(sb.fmtVers) uuid \(sb.uuidString)\n"
        s += "  flags: 0x\(hex(sb.flags, width: 16))\n"
        s += "  next_ino \(sb.nextIno) inode_count \(sb.inodeCount) seq \(sb.seq)\n"
        s += "  total_meta_blocks \(sb.totalMetaBlocks) total_data_blocks \(sb.totalDataBlocks)\n"
        s += "  meta_alloc[0]: \(allocRootString(sb.metaAlloc[0]))\n"
        s += "  meta_alloc[1]: \(allocRootString(sb.metaAlloc[1]))\n"
        s += "  data_alloc: \(allocRootString(sb.dataAlloc))\n"
        s += "  server_meta_avail[0]: \(allocListHeadString(sb.serverMetaAvail[0]))\n"
        s += "  server_meta_avail[1]: \(allocListHeadString(sb.serverMetaAvail[1]))\n"
        s += "  server_meta_freed[0]: \(allocListHeadString(sb.serverMetaFreed[0]))\n"
        s += "  server_meta_freed[1]: \(allocListHeadString(sb.serverMetaFreed[1]))\n"
        s += "  fs_root: \(superRootString(sb.fsRoot))\n"
        s += "  logs_root: \(superRootString(sb.logsRoot))\n"
        s += "  log_merge: \(superRootString(sb.logMerge))\n"
        s += "  mounted_clients: \(superRootString(sb.mountedClients))\n"
        s += "  srch_root: \(superRootString(sb.srchRoot))\n"
        s += "  volume options:\n"
        s += "    set_bits: \(hex(sb.volopt.setBits, width: 16))\n"
        if sb.volopt.setBits & Format.volOptDataAllocZoneBlocksBit != 0 {
            s += "    data_alloc_zone_blocks: \(sb.volopt.dataAllocZoneBlocks)\n"
        }
        s += "  quorum config version \(sb.qconf.version)\n"
        for (i, slot) in sb.qconf.slots.enumerated() where slot.family == InetAddr.familyIPv4 {
            s += "    quorum slot \(rightJustified(String(i), width: 2)): \(slot.ipv4String):\(slot.port)\n"
        }
        output.write(s)
    }

    /// `print_quorum_blocks`: every slot's block, whether the slot is configured or not.
    mutating func printQuorumBlocks() {
        for i in 0..<Format.quorumBlocks {
            let blkno = Format.quorumBlkno + i
            // the original stops at an unreadable quorum block; this carries on with the next
            guard let buf = readBlock(blkno, shift: Format.smallShift) else { continue }
            output.write("quorum blkno \(blkno) (slot \(i))\n")
            printBlockHeader(buf, blkno: blkno, magic: .quorum)
            guard let qb = try? buf.decode(QuorumBlock.self) else { continue }
            var s = "  write_nr \(qb.writeNr)\n"
            for event in QuorumBlock.Event.allCases {
                let ev = qb[event]
                s += "  \(rightJustified(event.name, width: 12)): rid \(hex(ev.rid, width: 16)) term \(ev.term) write_nr \(ev.writeNr) ts \(ev.ts.sec).\(zeroPadded(ev.ts.nsec, width: 8))\n"
            }
            output.write(s)
        }
    }

    /// `print_alloc_list_block`: each block of a list allocator, its blknos as `start,len` runs.
    mutating func printAllocList(_ name: String, ref: BlockRef) {
        var blkno = ref.blkno
        var seen: Set<UInt64> = []
        while blkno != 0 {
            if !seen.insert(blkno).inserted {
                // a damaged next ref pointing back into the list would loop forever
                noteCorrupt(blkno)
                output.write("\(name) alloc_list_block blkno \(blkno)\n  (list loops back to this block, stopped)\n")
                return
            }
            guard let buf = readBlock(blkno, shift: Format.largeShift) else { return }
            output.write("\(name) alloc_list_block blkno \(blkno)\n")
            printBlockHeader(buf, blkno: blkno, magic: .allocList)
            let next = BlockRef(blkno: buf.u64(32), seq: buf.u64(40))
            let start = Int(buf.u32(48))
            let nr = Int(buf.u32(52))
            output.write("  next blkno \(next.blkno) seq \(next.seq) start \(start) nr \(nr)\n")

            let maxBlknos = AllocListBlockHeader.maxBlknos
            if start >= maxBlknos || nr > maxBlknos || start + nr > maxBlknos {
                output.write("  (invalid start and nr fields)\n")
                noteCorrupt(blkno)
            } else if nr > 0 {
                let arrayOffset = AllocListBlockHeader.encodedSize
                func entry(_ i: Int) -> UInt64 { buf.u64(arrayOffset + (start + i) * 8) }
                var line = "  exts: "
                var wid = line.utf8.count
                var runStart: UInt64 = 0
                var runLen: UInt64 = 0
                for i in 0..<nr {
                    if runLen == 0 { runStart = entry(i) }
                    runLen += 1
                    if i == nr - 1 || runStart &+ runLen != entry(i + 1) {
                        if wid >= 72 {
                            line += "\n        "
                            wid = 9
                        }
                        let run = "\(runStart),\(runLen) "
                        line += run
                        wid += run.utf8.count
                        runLen = 0
                    }
                }
                output.write(line + "\n")
            }
            blkno = next.blkno
        }
    }

    /// `print_srch_block`: a srch file block and, for a parent, its children depth first.
    /// `level` is the file's height minus one, so a height of 0 gives -1 as in the original.
    mutating func printSrchBlock(ref: BlockRef, level: Int, depth: Int) {
        let blkno = ref.blkno
        if blkno == 0 { return }
        guard let buf = readBlock(blkno, shift: Format.largeShift) else { return }
        output.write("srch \(level != 0 ? "parent " : "")block blkno \(blkno)\n")
        printBlockHeader(buf, blkno: blkno, magic: level > 0 ? .srchParent : .srchBlock)

        if level > 0 {
            var children: [(Int, BlockRef)] = []
            for i in 0..<SrchParent.refs {
                let off = BlockHeader.encodedSize + i * BlockRef.encodedSize
                let child = BlockRef(blkno: buf.u64(off), seq: buf.u64(off + 8))
                if child.blkno == 0 { continue }
                output.write("  [\(i)]: blkno \(child.blkno) seq \(child.seq)\n")
                children.append((i, child))
            }
            if depth >= Format.btreeMaxHeight {
                noteCorrupt(blkno)
                output.write("  (srch file deeper than \(Format.btreeMaxHeight) levels, children not followed)\n")
                return
            }
            for (_, child) in children {
                printSrchBlock(ref: child, level: level - 1, depth: depth + 1)
            }
            return
        }

        let view = BlockValue(buffer: buf, base: 0, length: buf.size)
        let first = view.srchEntry(32)
        let last = view.srchEntry(56)
        let tail = view.srchEntry(80)
        let entryNr = Int(buf.u32(104))
        let entryBytes = buf.u32(108)
        output.write(
            "  first \(srchEntryString(first)) last \(srchEntryString(last)) tail \(srchEntryString(tail))\n  entry_nr \(entryNr) entry_bytes \(entryBytes)\n"
        )
        guard level == 0 else { return }

        var prev = SrchEntry()
        var pos = 0
        var s = ""
        for i in 0..<entryNr {
            if pos > SrchBlockHeader.safeBytes {
                // the original stops here with EIO, which it never reports
                noteCorrupt(blkno)
                break
            }
            let (entry, size) = decodeSrchEntry(view, at: SrchBlockHeader.encodedSize + pos, prev: prev)
            pos += size
            prev = entry
            s += "  [\(i)]: (\(size)) \(srchEntryString(entry))\n"
            if s.utf8.count > 1 << 16 {
                output.write(s)
                s = ""
            }
        }
        output.write(s)
    }

    /// One delta-encoded srch entry: a u16 of three 4-bit byte counts, then each zigzag-encoded
    /// difference from the previous entry in that many little-endian bytes.
    func decodeSrchEntry(_ view: BlockValue, at off: Int, prev: SrchEntry) -> (SrchEntry, Int) {
        var lengths = view.u16(off)
        var total = 2
        var diffs: [UInt64] = [0, 0, 0]
        for i in 0..<3 {
            let bytes = min(8, Int(lengths & 15))
            var raw: UInt64 = 0
            for b in 0..<bytes { raw |= UInt64(view.u8(off + total + b)) << UInt64(b * 8) }
            diffs[i] = (raw >> 1) ^ (0 &- (raw & 1))
            total += bytes
            lengths >>= 4
        }
        let entry = SrchEntry(hash: prev.hash &+ diffs[0], ino: prev.ino &+ diffs[1], id: prev.id &+ diffs[2])
        return (entry, total)
    }
}
