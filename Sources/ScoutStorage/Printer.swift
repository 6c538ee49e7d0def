public import ScoutBlockIO
import SystemPackage
import ScoutFormat

#if canImport(Glibc)
import Glibc
#endif

/// Options of `scoutfs print`.
public struct PrintOptions: Sendable, Equatable {
    /// `-S`/`--skip-likely-huge`: leave out the allocator btrees, the srch files and `fs_root`.
    public var skipLikelyHuge: Bool

    /// Options with nothing skipped unless asked.
    public init(skipLikelyHuge: Bool = false) {
        self.skipLikelyHuge = skipLikelyHuge
    }
}

/// What a print run found besides its output.
public struct PrintOutcome: Sendable, Equatable {
    /// The first error that the original's `print_volume` would return (a positive errno):
    /// an unreadable block, or `EINVAL` for a data device. Nil when none.
    public var error: Int32?
    /// Blocks that were read but failed verification (crc, magic or structure), in the order met.
    public var corruptBlocks: [UInt64]
    /// Blocks that could not be read at all, in the order met.
    public var unreadableBlocks: [UInt64]

    /// An outcome with nothing wrong.
    public init(error: Int32? = nil, corruptBlocks: [UInt64] = [], unreadableBlocks: [UInt64] = []) {
        self.error = error
        self.corruptBlocks = corruptBlocks
        self.unreadableBlocks = unreadableBlocks
    }

    /// True when nothing was wrong.
    public var isClean: Bool { error == nil && corruptBlocks.isEmpty && unreadableBlocks.isEmpty }

    /// The errno the command fails with: the original's error, else `EIO` when a block was corrupt.
    public var exitErrno: Int32? {
        if let error { return error }
        return corruptBlocks.isEmpty ? nil : EIO
    }
}

/// `scoutfs print`: walks every metadata structure of a meta device and prints it in the
/// original utility's text format (`utils/src/print.c`), line for line.
///
/// Order: super, the 15 quorum blocks, `mounted_clients`, `log_merge`, the server's list
/// allocators, the meta and data allocator btrees, `srch_root`, `logs_root`, the srch files
/// named in `srch_root`, each log tree's allocators, srch file and item tree, then `fs_root`.
/// Btrees are printed breadth first: one pass per level from the root down, each pass walking
/// items in AVL (key) order.
///
/// Deviations from the original, all of which only show on damaged volumes:
/// - btree blocks get the same `(!= crc)` marker that the original prints for other block
///   headers, and a btree block with the wrong magic is reported and not walked;
/// - every walk is bounds checked (AVL links, value offsets, list `next` chains, srch
///   entries), where the original would read out of bounds or loop;
/// - after an unreadable or corrupt block print carries on with its siblings and the rest of
///   the volume, where the original abandons the rest of that btree level or quorum blocks;
/// - the original's leaf walk of `logs_root`/`srch_root` never advances past a parent item
///   (it loops forever on a tree of height 2 or more); this one walks every leaf;
/// - a short read is reported with its blkno (`incomplete pread of blkno N`);
/// - corrupt blocks make the outcome fail (`exitErrno` is `EIO`), where the original exits 0.
public struct Printer<Device: BlockDevice, Output: TextOutputStream, Diagnostics: TextOutputStream> {
    /// The device being printed.
    public let device: Device
    /// The options of this run.
    public let options: PrintOptions
    /// Where the printout goes (the original's stdout).
    public var output: Output
    /// Where read errors and refusals go (the original's stderr).
    public var diagnostics: Diagnostics

    var outcome = PrintOutcome()
    /// Btree blocks already reported as having a bad magic, so each is reported once.
    var reportedBadMagic: Set<UInt64> = []

    /// A printer of `device` that writes to `output` and `diagnostics`.
    public init(device: Device, options: PrintOptions = PrintOptions(), output: Output, diagnostics: Diagnostics) {
        self.device = device
        self.options = options
        self.output = output
        self.diagnostics = diagnostics
    }

    /// Prints the whole volume (`print_volume`) and returns what went wrong, if anything.
    public mutating func printVolume() -> PrintOutcome {
        outcome = PrintOutcome()
        reportedBadMagic = []
        guard let superBuf = readBlock(Format.superBlkno, shift: Format.smallShift) else {
            return outcome
        }
        let sb: SuperBlock
        do {
            sb = try superBuf.decode(SuperBlock.self)
        } catch {
            // cannot happen for a 4 KiB buffer, but never trap on it
            outcome.error = EIO
            return outcome
        }
        printSuper(sb, buffer: superBuf)

        guard sb.flags & Format.flagIsMetaBdev != 0 else {
            diagnostics.write("**** Printing from data device is not allowed ****\n")
            setError(EINVAL)
            return outcome
        }

        printQuorumBlocks()

        printBTree("mounted_clients", root: sb.mountedClients, item: .mountedClient)
        printBTree("log_merge", root: sb.logMerge, item: .logMerge)

        for (i, head) in sb.serverMetaAvail.enumerated() {
            printAllocList("server_meta_avail[\(i)]", ref: head.ref)
        }
        for (i, head) in sb.serverMetaFreed.enumerated() {
            printAllocList("server_meta_freed[\(i)]", ref: head.ref)
        }

        if !options.skipLikelyHuge {
            for (i, root) in sb.metaAlloc.enumerated() {
                printBTree("meta_alloc[\(i)]", root: root.root, item: .allocExtent)
            }
            printBTree("data_alloc", root: sb.dataAlloc.root, item: .allocExtent)
        }

        printBTree("srch_root", root: sb.srchRoot, item: .srchRoot)
        printBTree("logs_root", root: sb.logsRoot, item: .logTrees)

        if !options.skipLikelyHuge {
            walkLeafItems(ref: sb.srchRoot.ref, item: .srchRootFiles)
        }
        walkLeafItems(ref: sb.logsRoot.ref, item: .logTreesRoots)

        if !options.skipLikelyHuge {
            printBTree("fs_root", root: sb.fsRoot, item: .fsItem)
        }
        return outcome
    }

    // MARK: - reading and verifying blocks

    /// Reads one block, reporting failures as the original's `read_block` does; nil on failure.
    mutating func readBlock(_ blkno: UInt64, shift: Int) -> BlockBuffer? {
        let size = 1 << shift
        let buf = BlockBuffer(size: size)
        let (offset, overflow) = blkno.multipliedReportingOverflow(by: UInt64(size))
        if overflow || offset > device.size || device.size - offset < UInt64(size) {
            diagnostics.write("incomplete pread of blkno \(blkno)\n")
            noteUnreadable(blkno, errno: EINVAL)
            return nil
        }
        do {
            try device.read(into: buf, at: offset)
        } catch {
            let code = error.rawValue
            diagnostics.write("read blkno \(blkno) returned -1: \(Self.errorString(code)) (\(code))\n")
            noteUnreadable(blkno, errno: code)
            return nil
        }
        return buf
    }

    mutating func noteUnreadable(_ blkno: UInt64, errno code: Int32) {
        outcome.unreadableBlocks.append(blkno)
        setError(code)
    }

    /// Keeps the first error, as `if (err && !ret) ret = err` does.
    mutating func setError(_ code: Int32) {
        if outcome.error == nil { outcome.error = code }
    }

    mutating func noteCorrupt(_ blkno: UInt64) {
        if !outcome.corruptBlocks.contains(blkno) { outcome.corruptBlocks.append(blkno) }
    }

    /// `print_block_header`: the header line, with `(!= computed)` after a crc that doesn't match.
    /// A crc or magic mismatch marks the block corrupt.
    mutating func printBlockHeader(_ buf: BlockBuffer, blkno: UInt64, magic: BlockMagic) {
        let h = buf.header
        let computed = buf.computeCRC()
        var valid = ""
        if computed != h.crc {
            valid = "(!= \(hex(computed, width: 8))) "
            noteCorrupt(blkno)
        } else if h.magic != magic.rawValue {
            noteCorrupt(blkno)
        }
        output.write(
            "  hdr: crc \(hex(h.crc, width: 8)) \(valid)magic \(hex(h.magic, width: 8)) fsid \(hex(h.fsid)) blkno \(h.blkno) seq \(h.seq)\n"
        )
    }

    /// The C library's text for an errno.
    public static func errorString(_ code: Int32) -> String {
        guard let s = strerror(code) else { return "Unknown error \(code)" }
        return String(cString: s)
    }
}
