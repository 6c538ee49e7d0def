import ScoutBlockIO
import ScoutFormat

extension Printer {
    /// Calls the item printer of `kind`. `value` is nil for parent items (only the key is printed).
    mutating func printItem(_ kind: PrintItemKind, key: Key, seq: UInt64, flags: UInt8, value: BlockValue?) {
        switch kind {
        case .fsItem: printFSItem(key: key, seq: seq, flags: flags, value: value)
        case .logTrees: printLogTreesItem(key: key, value: value)
        case .srchRoot: printSrchRootItem(key: key, value: value)
        case .mountedClient: printMountedClient(key: key, value: value)
        case .logMerge: printLogMergeItem(key: key, value: value)
        case .allocExtent: printAllocItem(key: key)
        case .srchRootFiles: if let value { printSrchRootFiles(key: key, value: value) }
        case .logTreesRoots: if let value { printLogTreesRoots(value: value) }
        }
    }

    // MARK: - fs items

    /// `print_fs_item`: the key line, then the value by zone and type.
    mutating func printFSItem(key: Key, seq: UInt64, flags: UInt8, value: BlockValue?) {
        let deleted = flags & Format.itemFlagDeletion != 0
        output.write("    \(keyString(key)) \(seq) \(deleted ? "d" : "-")\n")
        guard let value, !deleted else { return }

        switch (key.zone, key.type) {
        case (KeyZone.inodeIndex, KeyType.inodeIndexMetaSeq...KeyType.inodeIndexDataSeq):
            output.write("      index: major \(key.second) ino \(key.third)\n")
        case (KeyZone.orphan, KeyType.orphan):
            output.write("    orphan: ino \(key.second)\n")
        case (KeyZone.quota, _):
            printQuotaRule(key: key, value: value)
        case (KeyZone.xattrTotl, _):
            output.write(
                "    xattr totl: \(key.first).\(key.second).\(key.third) = \(signed(value.u64(0))), \(signed(value.u64(8)))\n"
            )
        case (KeyZone.xattrIndx, _):
            // the original prints this one without a newline
            let major = UInt8(truncatingIfNeeded: key.first >> 56)
            let minor = (key.first << 8) | (key.second >> 56)
            let ino = (key.second << 8) | (key.third >> 56)
            let xid = (key.third << 8) | UInt64(key.fourth)
            output.write("    xattr indx: major \(major) minor \(minor) ino \(ino) xid \(xid)")
        case (KeyZone.fs, KeyType.inode):
            printInode(key: key, value: value)
        case (KeyZone.fs, KeyType.xattr):
            printXattr(key: key, value: value)
        case (KeyZone.fs, KeyType.dirent), (KeyZone.fs, KeyType.readdir), (KeyZone.fs, KeyType.linkBackref):
            printDirent(key: key, value: value)
        case (KeyZone.fs, KeyType.symlink):
            printSymlink(key: key, value: value)
        case (KeyZone.fs, KeyType.dataExtent):
            output.write(
                "    extent: ino \(key.first) iblock \(key.second &- key.third &+ 1) len \(key.third) blkno \(value.u64(0)) flags \(hex(value.u8(8)))\n"
            )
        default:
            output.write("      (unknown zone \(key.zone) type \(key.type))\n")
        }
    }

    mutating func printInode(key: Key, value v: BlockValue) {
        // struct scoutfs_inode offsets; proj (160) is read even from a v1 value, as the original does
        output.write(
            "    inode: ino \(key.first) size \(v.u64(0)) version \(v.u64(64)) proj \(v.u64(160)) nlink \(v.u32(72))\n"
        )
        output.write(
            "      uid \(v.u32(76)) gid \(v.u32(80)) mode 0\(octal(v.u32(84))) rdev 0x\(hex(v.u32(88))) flags 0x\(hex(v.u32(92)))\n"
        )
        output.write(
            "      next_readdir_pos \(v.u64(48)) meta_seq \(v.u64(8)) data_seq \(v.u64(16)) data_version \(v.u64(24))\n"
        )
        output.write(
            "      atime \(v.u64(96)).\(zeroPadded(v.u32(104), width: 8)) ctime \(v.u64(112)).\(zeroPadded(v.u32(120), width: 8))\n"
        )
        output.write("      mtime \(v.u64(128)).\(zeroPadded(v.u32(136), width: 8))\n")
    }

    mutating func printQuotaRule(key: Key, value v: BlockValue) {
        // struct scoutfs_quota_rule_val: name_val[3], limit, prio, op, rule_flags, name_source[3], name_flags[3]
        var rule = "[\(v.u8(32))"
        for i in 0..<3 {
            rule += " \(v.u64(i * 8)),\(v.u8(35 + i)),\(hex(v.u8(38 + i)))"
        }
        rule += " \(v.u8(33)) \(v.u64(24)) \(hex(v.u8(34)))]"
        output.write("    quota rule: hash 0x\(hex(key.second, width: 16)) coll_nr \(key.third)\n      \(rule)\n")
    }

    mutating func printXattr(key: Key, value v: BlockValue) {
        output.write(
            "    xattr: ino \(key.first) name_hash \(hex(UInt32(truncatingIfNeeded: key.second), width: 8)) id \(key.third) part \(key.fourth)\n"
        )
        if key.fourth == 0 {
            let nameLen = Int(v.u8(2))
            output.write(
                "      name_len \(nameLen) val_len \(v.u16(0)) name \(printableName(v.bytes(XattrHeader.encodedSize, nameLen)))\n"
            )
        }
    }

    mutating func printDirent(key: Key, value v: BlockValue) {
        // a value shorter than the dirent header leaves a negative name length: no name
        let nameLen = min(v.length - Dirent.headerSize, Format.nameLength)
        let name = printableName(v.bytes(Dirent.headerSize, nameLen))
        output.write(
            "    dirent: dir \(key.first) hash \(hex(v.u64(8), width: 16)) pos \(v.u64(16)) type \(v.u8(24)) ino \(v.u64(0))\n      name \(name)\n"
        )
    }

    mutating func printSymlink(key: Key, value v: BlockValue) {
        var len = v.length
        // the stored target may end in a nul that isn't printed
        if len > 0 && v.u8(len - 1) == 0 { len -= 1 }
        output.write("    symlink: ino \(key.first) nr \(key.second)\n      target \(printableName(v.bytes(0, len)))\n")
    }

    // MARK: - allocator items

    /// `print_alloc_item`: a free extent keyed by end blkno or by order.
    mutating func printAllocItem(key: Key) {
        if key.zone == KeyZone.freeExtentBlkno {
            output.write("    free extent: blkno \(key.first &- key.second &+ 1) len \(key.second) end \(key.first)\n")
        } else {
            output.write("    free extent: blkno \(key.second &- key.third &+ 1) len \(key.third) order \(UInt64.max &- key.first)\n")
        }
    }

    // MARK: - server items

    /// `print_log_trees_item`: a mount's log trees.
    mutating func printLogTreesItem(key: Key, value v: BlockValue?) {
        output.write("    rid \(key.first) nr \(key.second)\n")
        guard let v else { return }
        let itemRoot = v.btreeRoot(64)
        let bloom = v.ref(88)
        var s = ""
        s += "      meta_avail: \(allocListHeadString(v.allocListHead(0)))\n"
        s += "      meta_freed: \(allocListHeadString(v.allocListHead(32)))\n"
        s += "      item_root: height \(itemRoot.height) blkno \(itemRoot.ref.blkno) seq \(itemRoot.ref.seq)\n"
        s += "      bloom_ref: blkno \(bloom.blkno) seq \(bloom.seq)\n"
        s += "      data_avail: \(allocRootString(v.allocRoot(104)))\n"
        s += "      data_freed: \(allocRootString(v.allocRoot(144)))\n"
        s += "      srch_file: \(srchFileString(v.srchFile(184)))\n"
        // after the srch file: zone blocks (272), 16 zone words (280), then the counters (408)
        s += "      inode_count_delta: \(signed(v.u64(408)))\n"
        s += "      get_trans_seq: \(signed(v.u64(416)))\n"
        s += "      commit_trans_seq: \(signed(v.u64(424)))\n"
        s += "      max_item_seq: \(v.u64(432))\n"
        s += "      finalize_seq: \(v.u64(440))\n"
        s += "      rid: \(hex(v.u64(448), width: 16))\n"
        s += "      nr: \(v.u64(456))\n"
        s += "      flags: \(hex(v.u64(464)))\n"
        s += "      data_alloc_zone_blocks: \(v.u64(272))\n"
        s += "      data_alloc_zones: "
        for word in 0..<Format.dataAllocZoneLE64s {
            var zones = v.u64(280 + word * 8)
            while zones != 0 {
                let bit = zones.trailingZeroBitCount
                s += "\(word * 64 + bit) "
                zones &= zones - 1
            }
        }
        s += "\n"
        output.write(s)
    }

    /// `print_srch_root_item`: a srch file, or a pending or busy compaction.
    mutating func printSrchRootItem(key: Key, value v: BlockValue?) {
        output.write("    \(keyString(key))\n")
        guard let v else { return }
        if key.type == KeyType.srchPending || key.type == KeyType.srchBusy {
            if v.length < SrchCompact.encodedSize {
                output.write("      (short srch compact value: val_len \(v.length))\n")
                return
            }
            let nr = Int(v.u8(72))
            output.write(
                "      compact \(key.type == KeyType.srchPending ? "pending" : "busy"): nr \(nr) flags 0x\(hex(v.u8(73)))\n"
            )
            for i in 0..<nr {
                let input = 168 + i * 104
                output.write(
                    "        [\(i)] blk \(v.u64(input + 88)) pos \(v.u64(input + 96)) sfl \(srchFileString(v.srchFile(input)))\n"
                )
            }
        } else {
            if v.length < SrchFile.encodedSize {
                output.write("      (short srch file value: val_len \(v.length))\n")
                return
            }
            output.write("      \(srchFileString(v.srchFile(0)))\n")
        }
    }

    /// `print_mounted_client_entry`.
    mutating func printMountedClient(key: Key, value v: BlockValue?) {
        let rid = hex(key.first, width: 16)
        guard let v else {
            output.write("    rid \(rid)\n")
            return
        }
        if v.length < MountedClientValue.encodedSize {
            output.write("    rid \(rid) (short mounted client value: val_len \(v.length))\n")
            return
        }
        let addr = InetAddr(ipv4: v.u32(4), port: 0)
        output.write("    rid \(rid) ipv4_addr \(addr.ipv4String) flags 0x\(hex(v.u8(32)))\n")
    }

    /// `print_log_merge_item`: parent items print nothing.
    mutating func printLogMergeItem(key: Key, value v: BlockValue?) {
        guard let v else { return }
        let need: Int
        switch key.zone {
        case KeyZone.logMergeStatus: need = LogMergeStatus.encodedSize
        case KeyZone.logMergeRange: need = LogMergeRange.encodedSize
        case KeyZone.logMergeRequest: need = LogMergeRequest.encodedSize
        case KeyZone.logMergeComplete: need = LogMergeComplete.encodedSize
        case KeyZone.logMergeFreeing: need = LogMergeFreeing.encodedSize
        default:
            output.write("    (unknown log merge key zone \(key.zone))\n")
            return
        }
        if v.length < need {
            output.write("    (short log merge value: zone \(key.zone) val_len \(v.length))\n")
            return
        }
        switch key.zone {
        case KeyZone.logMergeStatus:
            output.write(
                "    status: next_range_key \(keyString(v.key(0))) nr_req \(v.u64(32)) nr_comp \(v.u64(40)) seq \(v.u64(48))\n"
            )
        case KeyZone.logMergeRange:
            output.write("    range: start \(keyString(v.key(0))) end \(keyString(v.key(32)))\n")
        case KeyZone.logMergeRequest:
            // both roots are labelled logs_root, as in the original
            output.write(
                "    request: logs_root \(btreeRootString(v.btreeRoot(64))) logs_root \(btreeRootString(v.btreeRoot(88))) start \(keyString(v.key(112))) end \(keyString(v.key(144))) input_seq \(v.u64(176)) rid \(hex(v.u64(184), width: 16)) seq \(v.u64(192)) flags 0x\(hex(v.u64(200)))\n"
            )
        case KeyZone.logMergeComplete:
            output.write(
                "    complete: root \(btreeRootString(v.btreeRoot(64))) start \(keyString(v.key(88))) end \(keyString(v.key(120))) remain \(keyString(v.key(152))) rid \(hex(v.u64(184), width: 16)) seq \(v.u64(192)) flags \(hex(v.u64(200)))\n"
            )
        default:
            output.write(
                "    freeing: root \(btreeRootString(v.btreeRoot(0))) key \(keyString(v.key(24))) seq \(v.u64(56))\n"
            )
        }
    }

    // MARK: - following items to the structures they reference

    /// `print_log_trees_roots`: a log tree's list allocators, data allocators, srch file and items.
    mutating func printLogTreesRoots(value v: BlockValue) {
        // the original doesn't print the bloom block either
        printAllocList("lt_meta_avail", ref: v.allocListHead(0).ref)
        printAllocList("lt_meta_freed", ref: v.allocListHead(32).ref)
        printBTree("data_avail", root: v.allocRoot(104).root, item: .allocExtent)
        printBTree("data_freed", root: v.allocRoot(144).root, item: .allocExtent)
        let srch = v.srchFile(184)
        printSrchBlock(ref: srch.ref, level: Int(srch.height) - 1, depth: 0)
        printBTree("", root: v.btreeRoot(64), item: .fsItem)
    }

    /// `print_srch_root_files`: the blocks of a srch file, or of a compaction's input files.
    mutating func printSrchRootFiles(key: Key, value v: BlockValue) {
        if key.type == KeyType.srchPending || key.type == KeyType.srchBusy {
            let nr = Int(v.u8(72))
            for i in 0..<nr {
                let sfl = v.srchFile(168 + i * 104)
                printSrchBlock(ref: sfl.ref, level: Int(sfl.height) - 1, depth: 0)
            }
        } else {
            let sfl = v.srchFile(0)
            printSrchBlock(ref: sfl.ref, level: Int(sfl.height) - 1, depth: 0)
        }
    }
}
