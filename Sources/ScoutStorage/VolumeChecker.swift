public import ScoutBlockIO
import ScoutBTree
import ScoutFormat
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One inconsistency that `scoutfs check` found.
public struct CheckProblem: Sendable, Equatable, CustomStringConvertible {
    /// What sort of problem it is (tests look for these; the message names the block or key).
    public enum Kind: String, Sendable, CaseIterable {
        /// A device could not be read, or its super block is unusable.
        case superBlock
        /// A metadata block failed verification (magic, crc, fsid, blkno, seq) or could not be read.
        case badBlock
        /// A btree block breaks the btree's rules (level, AVL, key order, parent keys, values).
        case btree
        /// A metadata block is referenced by two structures.
        case referencedTwice
        /// A metadata block is referenced and also listed free.
        case referencedAndFree
        /// A metadata block is listed free twice.
        case freeTwice
        /// A metadata block is neither referenced nor free.
        case lost
        /// A block number lies outside its device or in the reserved header blocks.
        case outsideDevice
        /// An allocator's recorded totals or items disagree with what it holds.
        case allocator
        /// An item's value does not decode for its zone and type, or the item is unknown.
        case item
        /// An inode's own fields are inconsistent (items without an inode, directory size,
        /// symlink size).
        case inode
        /// A dirent, readdir or link backref item without its partners or its inode.
        case dirent
        /// An inode's link count differs from its links.
        case linkCount
        /// A file data extent that is invalid, outside the data device or overlapping another.
        case extent
        /// Data blocks that are neither in a file nor free, or the data totals do not add up.
        case dataAccounting
        /// An orphan item without its inode, or for an inode that still has links; or an
        /// unlinked inode without its orphan item.
        case orphan
        /// A meta_seq or data_seq index item that does not match its inode.
        case seqIndex
    }

    /// What sort of problem it is.
    public var kind: Kind
    /// One line naming the block or key and what is wrong.
    public var message: String

    /// A problem of `kind` described by `message`.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// What a check run counted.
public struct CheckSummary: Sendable, Equatable {
    /// Meta device blocks the allocators manage (total minus the reserved header blocks).
    public var metaBlocks: UInt64 = 0
    /// Metadata blocks referenced by some structure (each counted once).
    public var metaReferenced: UInt64 = 0
    /// Metadata blocks that an allocator lists free.
    public var metaFree: UInt64 = 0
    /// Metadata blocks neither referenced nor free.
    public var metaLost: UInt64 = 0
    /// Data device blocks the allocators manage (total minus the reserved header blocks).
    public var dataBlocks: UInt64 = 0
    /// Data blocks in files' extents (offline extents hold none).
    public var dataInFiles: UInt64 = 0
    /// Data blocks in free extents (data_alloc and every log tree's data_avail and data_freed).
    public var dataFree: UInt64 = 0
    /// Data blocks neither in a file nor free.
    public var dataLost: UInt64 = 0
    /// Btrees walked.
    public var trees = 0
    /// Btree blocks read (each once).
    public var btreeBlocks = 0
    /// Log trees found in logs_root.
    public var logTrees = 0
    /// Mounts recorded in mounted_clients: mounted now, or gone without unmounting and not
    /// yet fenced and reclaimed.
    public var mountedClients = 0
    /// Live fs items after merging the fs root with every log tree.
    public var fsItems = 0
    /// Inode items among them.
    public var inodes = 0
    /// Every problem found (also those beyond `VolumeChecker.keptProblems`).
    public var problems = 0

    /// An empty summary.
    public init() {}
}

/// Progress of a check run, for a progress line.
public struct CheckProgress: Sendable, Equatable {
    /// What is being checked ("allocators", "log trees", "fs items", …).
    public var phase: String
    /// Metadata blocks read so far.
    public var blocksRead: UInt64
    /// Metadata blocks of the device, for a rough fraction.
    public var totalBlocks: UInt64

    /// Progress of `phase` after `blocksRead` of `totalBlocks` blocks.
    public init(phase: String, blocksRead: UInt64, totalBlocks: UInt64) {
        self.phase = phase
        self.blocksRead = blocksRead
        self.totalBlocks = totalBlocks
    }
}

/// `scoutfs check`: an offline consistency check of a whole volume (the original has none).
///
/// It reads every metadata block reachable from the meta device's super block once, never
/// writes, and verifies:
/// - every block (btree blocks of every root, log trees with their item trees, bloom blocks,
///   allocator btrees and list blocks, srch files, log merge items) verifies and is referenced
///   exactly once and is never also free; blocks neither referenced nor free are lost;
/// - each allocator's totals match the extents or blknos it holds, free extents do not
///   overlap and lie inside their device; data in files plus free data is the whole data device;
/// - every btree keeps the btree's rules (`BTreeChecker.checkBlockStructure` per block, plus
///   levels, key ranges and parent keys across blocks), and every item decodes;
/// - the file system items, read as mounts read them (the fs root merged with every log tree's
///   items, the newest version of a key winning and deletion items hiding older ones), agree:
///   see `FSItemChecker`.
///
/// Memory: two bits per metadata block (referenced, free), the data extents, and a few facts
/// per inode and link. A block referenced twice, free twice, or both is named with both of its
/// owners: a second, silent walk notes the first owner of just those blocks.
public final class VolumeChecker {
    /// Problems kept in `problems`; later ones are only counted (and passed to `onProblem`).
    public static let keptProblems = 100_000

    /// The metadata device.
    public let meta: any BlockDevice
    /// The data device; nil checks only what the meta device says about it.
    public let data: (any BlockDevice)?
    /// Whether the fs items are checked (merged and cross-checked) and the data accounting
    /// done. Off, only the blocks, btrees and allocators are checked: for volumes whose fs
    /// root holds test items rather than a file system.
    public var checkFileSystem = true
    /// Called with each problem as it is found.
    public var onProblem: ((CheckProblem) -> Void)?
    /// Called now and then while the check runs.
    public var onProgress: ((CheckProgress) -> Void)?

    /// Whether `run` also accounts where the referenced blocks go (`usage`).
    public var accountUsage = false
    /// With `accountUsage`: the last run's blocks by structure, leaf fill and items.
    public internal(set) var usage = MetadataUsage()
    /// Usage class names by owner index.
    var usageClasses: [UInt16: String] = [:]

    /// The problems found by the last `run`, the first `keptProblems` of them.
    public private(set) var problems: [CheckProblem] = []
    /// Set when the meta super block is unusable and nothing else could be checked: the errno
    /// of a failed read, `EINVAL` for a device that is not a scoutfs meta device, `EIO` for a
    /// corrupt super block.
    public private(set) var fatalErrno: Int32?
    /// What the last `run` counted.
    public internal(set) var summary = CheckSummary()

    var sb = SuperBlock(hdr: BlockHeader(magic: 0, fsid: 0, seq: 0, blkno: 0), fmtVers: 0, flags: 0, uuid: Array(repeating: 0, count: 16))
    var fsid: UInt64 = 0
    /// The seq of the log merge in flight (0: none): finalized log trees before it are its inputs.
    var mergeStatusSeq: UInt64 = 0
    var totalMeta: UInt64 = 0
    /// One bit a metadata block: referenced by some structure.
    var referenced = BlockBitmap(count: 0)
    /// One bit a metadata block: listed free by some allocator.
    var free = BlockBitmap(count: 0)
    /// The names of the structures and allocators, by index (0 is none).
    var owners: [String] = ["(none)"]
    /// Blocks referenced twice, free twice, or both referenced and free, with the owner that
    /// came second; their first owners are found by a second, silent pass (`nameConflicts`).
    var conflicts: [Conflict] = []
    var conflictsNotKept = 0
    /// During the naming pass: the first referencing and freeing owner of each conflict block.
    var naming: [UInt64: FirstOwners]? = nil
    /// Reports are dropped (the naming pass).
    var silent = false

    struct Conflict {
        var kind: CheckProblem.Kind
        var blkno: UInt64
        var owner: UInt16
    }

    struct FirstOwners {
        var referencing: UInt16 = 0
        var freeing: UInt16 = 0
    }
    /// Referenced blocks that could not be read, verified or walked (their subtrees are
    /// unknown, so lost blocks and missing items are not listed).
    var unreadable = 0
    /// Whether the last `readBlock` met a block already referenced.
    var lastReadWasDuplicate = false
    var phase = ""
    /// Data extents: free ones (owner is an `owners` index) and file ones (ino, iblock).
    var dataRuns: [DataRun] = []

    struct DataRun {
        var start: UInt64
        var len: UInt64
        /// 0 for a free extent.
        var ino: UInt64
        /// File block of a file extent, or the `owners` index of a free one.
        var detail: UInt64
    }

    /// A checker of the volume on `meta` (and its data device, whose super and size are then
    /// checked too). Open the devices read-only.
    public init(meta: any BlockDevice, data: (any BlockDevice)?) {
        self.meta = meta
        self.data = data
    }

    /// Whether some structure walked so far (after `run`: any) references metadata block `blkno`.
    public func isReferenced(_ blkno: UInt64) -> Bool {
        blkno < totalMeta && referenced[Int(blkno)]
    }

    // MARK: - reporting

    func report(_ kind: CheckProblem.Kind, _ message: String) {
        if silent { return }
        let p = CheckProblem(kind, message)
        summary.problems += 1
        if problems.count < Self.keptProblems { problems.append(p) }
        onProblem?(p)
    }

    func owner(_ name: String) -> UInt16 {
        if owners.count >= Int(UInt16.max) { return UInt16.max }
        owners.append(name)
        return UInt16(owners.count - 1)
    }

    func usageClass(_ o: UInt16) -> String {
        if let c = usageClasses[o] { return c }
        let c = MetadataUsage.structureClass(ownerName(o))
        usageClasses[o] = c
        return c
    }

    func ownerName(_ o: UInt16) -> String { o == UInt16.max ? "(many)" : owners[Int(o)] }

    func progress(_ phase: String) {
        if silent { return }
        self.phase = phase
        onProgress?(CheckProgress(phase: phase, blocksRead: summary.metaReferenced, totalBlocks: totalMeta))
    }

    // MARK: - the run

    /// Checks the whole volume; returns the summary (problems are in `problems` and were passed
    /// to `onProblem`). Returns early, with a `.superBlock` problem, when the meta super block
    /// is unusable.
    @discardableResult
    public func run() -> CheckSummary {
        summary = CheckSummary()
        problems = []
        fatalErrno = nil
        owners = ["(none)"]
        unreadable = 0
        dataRuns = []
        conflicts = []
        conflictsNotKept = 0
        usage = MetadataUsage()
        usageClasses = [:]
        guard checkSupers() else { return summary }
        walkMetadata()
        progress("accounting")
        checkMetaAccounting()
        if checkFileSystem { checkDataAccounting() }
        nameConflicts()
        return summary
    }

    /// Every structure from the super block down: marks each block and checks what it holds.
    func walkMetadata() {
        progress("allocators")
        for (i, root) in sb.metaAlloc.enumerated() {
            walkAllocRoot(root, name: "meta_alloc[\(i)]", meta: true)
        }
        walkAllocRoot(sb.dataAlloc, name: "data_alloc", meta: false)
        for (i, head) in sb.serverMetaAvail.enumerated() { walkList(head, name: "server_meta_avail[\(i)]") }
        for (i, head) in sb.serverMetaFreed.enumerated() { walkList(head, name: "server_meta_freed[\(i)]") }

        progress("server trees")
        walkMountedClients()
        walkSrchRoot()
        let merge = walkLogMerge()

        progress("log trees")
        let logTrees = walkLogsRoot()

        progress("fs items")
        if checkFileSystem {
            checkFSItems(logTrees)
        } else {
            walkTree(sb.fsRoot, name: "fs_root", owner("fs_root")) { _ in }
            for (name, lt, _) in logTrees { walkTree(lt.itemRoot, name: name + " items", owner(name + " items")) { _ in } }
        }
        walkMergeResults(completions: merge.completions, freeing: merge.freeing)
    }

    /// Reports the conflicts of the walk with both of their owners: a second walk, silent
    /// and identical to the first, notes the first owner of just those blocks. Only a damaged
    /// volume pays for it; a clean one keeps two bits a block.
    func nameConflicts() {
        guard !conflicts.isEmpty else { return }
        let found = conflicts
        let notKept = conflictsNotKept
        let saved = (summary, problems, dataRuns, unreadable, phase)
        naming = Dictionary(found.map { ($0.blkno, FirstOwners()) }, uniquingKeysWith: { a, _ in a })
        silent = true
        referenced = BlockBitmap(count: Int(totalMeta))
        free = BlockBitmap(count: Int(totalMeta))
        walkMetadata()
        let first = naming ?? [:]
        naming = nil
        silent = false
        (summary, problems, dataRuns, unreadable, phase) = saved
        for c in found {
            let f = first[c.blkno] ?? FirstOwners()
            switch c.kind {
            case .referencedTwice:
                report(c.kind, "meta block \(c.blkno): referenced twice (\(ownerName(f.referencing)), \(ownerName(c.owner)))")
            case .freeTwice:
                report(c.kind, "meta block \(c.blkno): free twice (\(ownerName(f.freeing)), \(ownerName(c.owner)))")
            default:
                report(c.kind, "meta block \(c.blkno): referenced by \(ownerName(f.referencing)) but free in \(ownerName(f.freeing))")
            }
        }
        if notKept > 0 {
            report(.referencedTwice, "\(notKept) more blocks referenced or free more than once, not listed")
        }
    }

    func conflict(_ kind: CheckProblem.Kind, _ blkno: UInt64, _ o: UInt16) {
        if naming != nil { return }
        if conflicts.count < Self.keptProblems {
            conflicts.append(Conflict(kind: kind, blkno: blkno, owner: o))
        } else {
            conflictsNotKept += 1
        }
    }

    // MARK: - super blocks

    func checkSupers() -> Bool {
        let b = BlockBuffer(size: Format.smallBlockSize)
        guard meta.size >= UInt64(Format.superBlkno + 1) << UInt64(Format.smallShift) else {
            report(.superBlock, "meta device: \(meta.size) bytes is too small to hold a super block")
            fatalErrno = EINVAL
            return false
        }
        do {
            try meta.read(into: b, at: Format.superBlkno << UInt64(Format.smallShift))
        } catch {
            report(.superBlock, "meta super block: read failed: errno \(error.rawValue)")
            fatalErrno = error.rawValue
            return false
        }
        do {
            try b.verify(magic: .superBlock, fsid: b.header.fsid, blkno: Format.superBlkno, seq: nil)
            sb = try b.decode(SuperBlock.self)
        } catch {
            report(.superBlock, "meta super block: \(error)")
            fatalErrno = EIO
            return false
        }
        fsid = sb.hdr.fsid
        guard sb.flags & Format.flagIsMetaBdev != 0 else {
            report(.superBlock, "meta super block: the device is a data device (IS_META_BDEV not set)")
            fatalErrno = EINVAL
            return false
        }
        guard sb.fmtVers >= Format.versionMin && sb.fmtVers <= Format.versionMax else {
            report(.superBlock, "meta super block: format version \(sb.fmtVers) is not \(Format.versionMin)...\(Format.versionMax)")
            fatalErrno = EINVAL
            return false
        }
        let deviceBlocks = meta.size >> UInt64(Format.largeShift)
        totalMeta = sb.totalMetaBlocks
        if totalMeta > deviceBlocks {
            report(.superBlock, "meta super block: total_meta_blocks \(totalMeta) but the device holds \(deviceBlocks)")
            totalMeta = deviceBlocks
        }
        if totalMeta <= Format.metaDevStartBlkno {
            report(.superBlock, "meta super block: total_meta_blocks \(sb.totalMetaBlocks) leaves no metadata blocks")
            fatalErrno = EINVAL
            return false
        }
        referenced = BlockBitmap(count: Int(totalMeta))
        free = BlockBitmap(count: Int(totalMeta))
        summary.metaBlocks = totalMeta - Format.metaDevStartBlkno
        summary.dataBlocks = sb.totalDataBlocks > Format.dataDevStartBlkno ? sb.totalDataBlocks - Format.dataDevStartBlkno : 0

        guard let data else { return true }
        let d = BlockBuffer(size: Format.smallBlockSize)
        do {
            try data.read(into: d, at: Format.superBlkno << UInt64(Format.smallShift))
            try d.verify(magic: .superBlock, fsid: fsid, blkno: Format.superBlkno, seq: nil)
            let dsb = try d.decode(SuperBlock.self)
            if dsb.flags & Format.flagIsMetaBdev != 0 {
                report(.superBlock, "data super block: the data device is a meta device (IS_META_BDEV set)")
            }
            if dsb.uuid != sb.uuid {
                report(.superBlock, "data super block: uuid \(dsb.uuidString) is not the meta device's \(sb.uuidString)")
            }
        } catch let e as FormatError {
            report(.superBlock, "data super block: \(e)")
        } catch let e as Errno {
            report(.superBlock, "data super block: read failed: errno \(e.rawValue)")
        } catch {
            report(.superBlock, "data super block: \(error)")
        }
        let dataDeviceBlocks = data.size >> UInt64(Format.smallShift)
        if sb.totalDataBlocks > dataDeviceBlocks {
            report(.superBlock, "meta super block: total_data_blocks \(sb.totalDataBlocks) but the data device holds \(dataDeviceBlocks)")
        }
        return true
    }

    // MARK: - marking blocks

    /// Whether `blkno` is a metadata block the allocators manage; reports it when not.
    func inside(_ blkno: UInt64, _ what: @autoclosure () -> String) -> Bool {
        if blkno < Format.metaDevStartBlkno || blkno >= totalMeta {
            report(.outsideDevice, "meta block \(blkno): \(what()) is outside the metadata blocks \(Format.metaDevStartBlkno)..<\(totalMeta)")
            return false
        }
        return true
    }

    /// What marking a block as referenced found.
    enum Mark {
        /// Outside the metadata blocks (reported).
        case outside
        /// The block's first reference.
        case first
        /// The block was already referenced (reported unless quiet).
        case duplicate
    }

    /// Records that `owner` references `blkno`. `quiet` leaves a second reference unreported:
    /// for the blocks under a block already reported as referenced twice.
    func markReferenced(_ blkno: UInt64, _ o: UInt16, quiet: Bool = false) -> Mark {
        guard inside(blkno, "referenced by \(ownerName(o))") else { return .outside }
        let i = Int(blkno)
        if naming?[blkno]?.referencing == 0 { naming![blkno]!.referencing = o }
        if referenced.testAndSet(i) {
            if !quiet { conflict(.referencedTwice, blkno, o) }
            return .duplicate
        }
        summary.metaReferenced += 1
        if accountUsage && !silent { usage.addBlock(usageClass(o)) }
        if free[i] { conflict(.referencedAndFree, blkno, o) }
        if summary.metaReferenced & 1023 == 0 { progress(phase) }
        return .first
    }

    /// Records that `owner` lists `blkno` as free.
    func markFree(_ blkno: UInt64, _ o: UInt16) {
        guard inside(blkno, "free in \(ownerName(o))") else { return }
        markFreeInside(blkno, o)
    }

    func markFreeInside(_ blkno: UInt64, _ o: UInt16) {
        let i = Int(blkno)
        if naming?[blkno]?.freeing == 0 { naming![blkno]!.freeing = o }
        if free.testAndSet(i) {
            conflict(.freeTwice, blkno, o)
        } else if referenced[i] {
            conflict(.referencedAndFree, blkno, o)
        }
    }

    /// `markFree` for every block of `lo...hi` (inside the metadata blocks), a word of 64
    /// blocks at a time where none of them is referenced or free yet.
    func markFreeRange(_ lo: UInt64, _ hi: UInt64, _ o: UInt16) {
        var i = Int(lo)
        let last = Int(hi)
        while i <= last {
            if i & 63 == 0 && i + 63 <= last && naming == nil && free.word(i >> 6) == 0 && referenced.word(i >> 6) == 0 {
                free.setWord(i >> 6, .max)
                i += 64
                continue
            }
            markFreeInside(UInt64(i), o)
            i += 1
        }
    }

    /// Marks and reads one 64 KiB block, verified; nil (after reporting) when unusable.
    ///
    /// A block referenced a second time is read again only with `followDuplicate` (btrees and
    /// srch files, whose levels bound the walk), so that what the second owner holds is
    /// accounted too; `lastReadWasDuplicate` tells the caller. Lists stop there, which also
    /// ends a list that loops.
    func readBlock(_ ref: BlockRef, magic: BlockMagic, _ o: UInt16, followDuplicate: Bool = false, quiet: Bool = false) -> BlockBuffer? {
        let mark = markReferenced(ref.blkno, o, quiet: quiet)
        lastReadWasDuplicate = mark == .duplicate
        switch mark {
        case .outside: return nil
        case .duplicate: if !followDuplicate { return nil }
        case .first: break
        }
        let b = BlockBuffer(size: Format.largeBlockSize)
        do {
            try meta.read(into: b, at: ref.blkno << UInt64(Format.largeShift))
        } catch {
            if mark == .first {
                unreadable += 1
                report(.badBlock, "meta block \(ref.blkno): read failed (errno \(error.rawValue)) in \(ownerName(o))")
            }
            return nil
        }
        do {
            try b.verify(magic: magic, fsid: fsid, blkno: ref.blkno, seq: ref.seq)
        } catch {
            if mark == .first {
                unreadable += 1
                report(.badBlock, "meta block \(ref.blkno): \(Self.verifyText(error)) in \(ownerName(o))")
            }
            return nil
        }
        return b
    }

    static func verifyText(_ e: FormatError) -> String {
        switch e {
        case .badMagic(_, let expected, let found):
            return "bad magic \(hex(found, width: 8)), expected \(hex(expected, width: 8))"
        case .badCRC(_, let stored, let computed):
            return "bad checksum \(hex(stored, width: 8)), computed \(hex(computed, width: 8))"
        case .badFSID(_, let expected, let found):
            return "fsid \(hex(found)) is not the volume's \(hex(expected))"
        case .badBlkno(_, let found):
            return "header blkno \(found) is not where it was read"
        case .stale(_, let expectedSeq, let foundSeq):
            return "seq \(foundSeq) does not match the reference's seq \(expectedSeq)"
        default:
            return e.description
        }
    }

    // MARK: - allocators

    /// A list allocator: its list blocks are referenced, its blknos free (with
    /// `skipReferenced`, those not referenced elsewhere).
    func walkList(_ head: AllocListHead, name: String, skipReferenced: Bool = false) {
        let listOwner = owner(name + " list block")
        let freeName = owner(name)
        var ref = head.ref
        var count: UInt64 = 0
        var blocks = 0
        var first = true
        while !ref.isNull {
            guard let b = readBlock(ref, magic: .allocList, listOwner) else { return }
            blocks += 1
            guard let lh = try? b.decode(AllocListBlockHeader.self), lh.isValid else {
                report(.allocator, "meta block \(ref.blkno): \(name) list block start \(b.u32(48)) nr \(b.u32(52)) outside its array")
                return
            }
            if first && lh.nr != head.firstNr {
                report(.allocator, "\(name): first_nr \(head.firstNr) but its first block holds \(lh.nr)")
            }
            first = false
            for i in 0..<Int(lh.nr) {
                let blkno = b.u64(AllocListBlockHeader.encodedSize + (Int(lh.start) + i) * 8)
                if skipReferenced && isReferenced(blkno) { continue }
                markFree(blkno, freeName)
            }
            count += UInt64(lh.nr)
            ref = lh.next
        }
        if count != head.totalNr {
            report(.allocator, "\(name): total_nr \(head.totalNr) but its \(blocks) list blocks hold \(count)")
        }
    }

    /// An extent allocator btree: its blocks are referenced; its extents free (meta blocks in
    /// the bitmap, data extents kept for the data accounting).
    func walkAllocRoot(_ root: AllocRoot, name: String, meta isMeta: Bool) {
        let treeOwner = owner(name + " btree")
        let freeName = owner(name)
        var byBlkno: [(end: UInt64, len: UInt64)] = []
        var byOrder: Set<[UInt64]> = []
        walkTree(root.root, name: name, treeOwner) { item in
            let k = item.key
            if item.flags & Format.itemFlagDeletion != 0 || !item.value.isEmpty {
                self.report(.item, "\(name) item \(k): free extent item with flags \(item.flags) and a \(item.value.count)-byte value")
            }
            switch k.zone {
            case KeyZone.freeExtentBlkno:
                guard k.second > 0, k.second <= k.first &+ 1 else {
                    self.report(.allocator, "\(name) item \(k): invalid free extent (end \(k.first) len \(k.second))")
                    return
                }
                byBlkno.append((k.first, k.second))
            case KeyZone.freeExtentOrder:
                guard k.third > 0, k.third <= k.second &+ 1, ~k.first == FreeExtentKey.order(of: k.third) else {
                    self.report(.allocator, "\(name) item \(k): invalid free extent order item")
                    return
                }
                byOrder.insert([k.second, k.third])
            default:
                self.report(.item, "\(name) item \(k): not a free extent item")
            }
        }
        var total: UInt64 = 0
        var prevEnd: UInt64? = nil
        for e in byBlkno {
            let start = e.end - (e.len - 1)
            if byOrder.remove([e.end, e.len]) == nil {
                report(.allocator, "\(name): free extent \(start)+\(e.len) has no order item")
            }
            if let p = prevEnd, start <= p {
                report(.allocator, "\(name): free extent \(start)+\(e.len) overlaps the one ending at \(p)")
            }
            prevEnd = e.end
            total &+= e.len
            if isMeta {
                if start < Format.metaDevStartBlkno || e.end >= totalMeta {
                    report(.outsideDevice, "\(name): free extent \(start)+\(e.len) is outside the metadata blocks \(Format.metaDevStartBlkno)..<\(totalMeta)")
                }
                let lo = max(start, Format.metaDevStartBlkno)
                let hi = min(e.end, totalMeta &- 1)
                if lo <= hi { markFreeRange(lo, hi, freeName) }
            } else {
                dataRuns.append(DataRun(start: start, len: e.len, ino: 0, detail: UInt64(freeName)))
            }
        }
        for o in byOrder.sorted(by: { $0[0] < $1[0] }) {
            report(.allocator, "\(name): order item for free extent \(o[0] - (o[1] - 1))+\(o[1]) has no blkno item")
        }
        if total != root.totalLen {
            report(.allocator, "\(name): total_len \(root.totalLen) but its extents hold \(total) blocks")
        }
    }

    // MARK: - server trees

    func walkMountedClients() {
        let o = owner("mounted_clients")
        walkTree(sb.mountedClients, name: "mounted_clients", o) { item in
            self.summary.mountedClients += 1
            if item.key.zone != KeyZone.mountedClient || item.value.count != MountedClientValue.encodedSize {
                self.report(.item, "mounted_clients item \(item.key): not a mounted client (\(item.value.count)-byte value)")
            }
        }
    }

    func walkSrchRoot() {
        let o = owner("srch_root")
        var files: [(Key, SrchFile)] = []
        var compacts: [(Key, SrchCompact)] = []
        walkTree(sb.srchRoot, name: "srch_root", o) { item in
            let k = item.key
            guard k.zone == KeyZone.srch else {
                self.report(.item, "srch_root item \(k): not a srch item")
                return
            }
            switch k.type {
            case KeyType.srchBusy, KeyType.srchPending:
                if let c = try? SrchCompact.decode(item.value) { compacts.append((k, c)) } else { self.report(.item, "srch_root item \(k): compaction value does not decode") }
            case KeyType.srchLog, KeyType.srchBlocks:
                if let f = try? SrchFile.decode(item.value) { files.append((k, f)) } else { self.report(.item, "srch_root item \(k): srch file value does not decode") }
            default:
                self.report(.item, "srch_root item \(k): unknown srch item type")
            }
        }
        for (k, f) in files { walkSrchFile(f, name: "srch file \(k)") }
        for (k, c) in compacts {
            walkList(c.metaAvail, name: "srch compact \(k) meta_avail")
            walkList(c.metaFreed, name: "srch compact \(k) meta_freed")
            if c.flags & SrchCompact.flagDelete != 0 {
                // the output is a file item already; the inputs wait to be freed
                for i in 0..<Int(c.nr) { walkSrchFile(c.inputs[i].sfl, name: "srch compact \(k) input \(i)") }
            } else {
                walkSrchFile(c.out, name: "srch compact \(k) output")
            }
        }
    }

    /// A srch file: parent blocks of refs down to the entry blocks.
    func walkSrchFile(_ f: SrchFile, name: String) {
        if f.ref.isNull { return }
        let o = owner(name)
        func walk(_ ref: BlockRef, level: Int, depth: Int, quiet: Bool) {
            guard let b = readBlock(ref, magic: level > 0 ? .srchParent : .srchBlock, o, followDuplicate: true, quiet: quiet) else { return }
            let quiet = quiet || lastReadWasDuplicate
            guard level > 0 else { return }
            if depth >= Format.btreeMaxHeight {
                report(.btree, "meta block \(ref.blkno): \(name) deeper than \(Format.btreeMaxHeight) levels")
                return
            }
            for i in 0..<SrchParent.refs {
                let off = BlockHeader.encodedSize + i * BlockRef.encodedSize
                let child = BlockRef(blkno: b.u64(off), seq: b.u64(off + 8))
                if !child.isNull { walk(child, level: level - 1, depth: depth + 1, quiet: quiet) }
            }
        }
        walk(f.ref, level: Int(f.height) - 1, depth: 0, quiet: false)
    }

    /// log_merge: its own tree, the pools of requests out (free blocks), and what must wait
    /// for the fs root to be walked (`walkMergeResults`): completions and freeing items.
    func walkLogMerge() -> (completions: [(LogMergeComplete, String)], freeing: [(LogMergeFreeing, String)]) {
        let o = owner("log_merge")
        var lists: [(AllocListHead, String)] = []
        var completions: [(LogMergeComplete, String)] = []
        var freeing: [(LogMergeFreeing, String)] = []
        walkTree(sb.logMerge, name: "log_merge", o) { item in
            let k = item.key
            switch k.zone {
            case KeyZone.logMergeStatus:
                if let st = try? LogMergeStatus.decode(item.value) {
                    self.mergeStatusSeq = st.seq
                } else {
                    self.report(.item, "log_merge item \(k): status does not decode")
                }
            case KeyZone.logMergeRange:
                if (try? LogMergeRange.decode(item.value)) == nil { self.report(.item, "log_merge item \(k): range does not decode") }
            case KeyZone.logMergeRequest:
                // its logs_root and root are copies of roots walked elsewhere
                if let r = try? LogMergeRequest.decode(item.value) {
                    lists += [(r.metaAvail, "log_merge request \(k) meta_avail"), (r.metaFreed, "log_merge request \(k) meta_freed")]
                } else {
                    self.report(.item, "log_merge item \(k): request does not decode")
                }
            case KeyZone.logMergeComplete:
                if let c = try? LogMergeComplete.decode(item.value) {
                    completions.append((c, "log_merge complete \(k)"))
                } else {
                    self.report(.item, "log_merge item \(k): complete does not decode")
                }
            case KeyZone.logMergeFreeing:
                if let f = try? LogMergeFreeing.decode(item.value) {
                    freeing.append((f, "log_merge freeing \(k) root"))
                } else {
                    self.report(.item, "log_merge item \(k): freeing does not decode")
                }
            default:
                self.report(.item, "log_merge item \(k): not a log merge item")
            }
        }
        for (head, name) in lists { walkList(head, name: name) }
        return (completions, freeing)
    }

    /// After the fs root is walked: a completion's subtree shares every block it did not copy
    /// with the fs root (only its copies are its own), and its freed list names the fs-root
    /// blocks it copied (still referenced until the splice) and its pool's old list blocks
    /// (free); a freeing item's tree is walked only where its blocks are not freed yet.
    func walkMergeResults(completions: [(LogMergeComplete, String)], freeing: [(LogMergeFreeing, String)]) {
        for (c, name) in completions {
            walkList(c.metaAvail, name: name + " meta_avail")
            walkList(c.metaFreed, name: name + " meta_freed", skipReferenced: true)
            walkTree(c.root, name: name + " root", owner(name + " root"), stopAtReferenced: true, subtreeRoot: true) { _ in }
        }
        for (f, name) in freeing {
            walkTree(f.root, name: name, owner(name), floor: f.key) { _ in }
        }
    }

    /// The log trees items, each with its allocators, bloom block and srch file walked.
    func walkLogsRoot() -> [(name: String, lt: LogTrees, bloom: BlockBuffer?)] {
        let o = owner("logs_root")
        var out: [(name: String, lt: LogTrees)] = []
        walkTree(sb.logsRoot, name: "logs_root", o) { item in
            let k = item.key
            guard k.zone == KeyZone.logTrees, let lt = try? LogTrees.decode(item.value) else {
                self.report(.item, "logs_root item \(k): not a log trees item (\(item.value.count)-byte value)")
                return
            }
            if lt.rid != k.first || lt.nr != k.second {
                self.report(.item, "logs_root item \(k): holds rid \(hex(lt.rid)) nr \(lt.nr)")
            }
            out.append(("log tree rid \(hex(k.first)) nr \(k.second)", lt))
        }
        summary.logTrees = out.count
        var blooms: [BlockBuffer?] = []
        for (name, lt) in out {
            blooms.append(nil)
            walkList(lt.metaAvail, name: name + " meta_avail")
            walkList(lt.metaFreed, name: name + " meta_freed")
            walkAllocRoot(lt.dataAvail, name: name + " data_avail", meta: false)
            walkAllocRoot(lt.dataFreed, name: name + " data_freed", meta: false)
            if !lt.bloomRef.isNull {
                if let b = readBlock(lt.bloomRef, magic: .bloom, owner(name + " bloom block")),
                    let h = try? b.decode(BloomBlockHeader.self)
                {
                    blooms[blooms.count - 1] = b
                    var set: UInt64 = 0
                    for off in stride(from: BloomBlockHeader.encodedSize, to: Format.largeBlockSize, by: 8) {
                        set += UInt64(b.u64(off).nonzeroBitCount)
                    }
                    if set != h.totalSet {
                        report(.item, "meta block \(lt.bloomRef.blkno): \(name) bloom block total_set \(h.totalSet) but \(set) bits are set")
                    }
                }
            }
            walkSrchFile(lt.srchFile, name: name + " srch file")
        }
        return zip(out, blooms).map { ($0.0.name, $0.0.lt, $0.1) }
    }

    // MARK: - fs items

    /// Merges the fs root with every log tree's items, as reads do, and checks them.
    func checkFSItems(_ logTrees: [(name: String, lt: LogTrees, bloom: BlockBuffer?)]) {
        var cursors: [TreeCursor] = [TreeCursor(checker: self, root: sb.fsRoot, name: "fs_root", owner: owner("fs_root"))]
        // each tree's bloom block: items a log tree holds must be in its bloom filter, or
        // mounts never read them (the fs root has none)
        var blooms: [(name: String, block: BlockBuffer?, missed: Int)] = [("fs_root", nil, 0)]
        // how delta items of each tree count (`TotlMerging`)
        var sources: [TotlMerging.Source] = [.fsRoot]
        for (name, lt, bloom) in logTrees {
            let input = lt.flags & LogTrees.flagFinalized != 0 && (mergeStatusSeq == 0 || lt.finalizeSeq < mergeStatusSeq)
            sources.append(input ? .mergeInput : .log)
            let itemsName = name + " items"
            cursors.append(TreeCursor(checker: self, root: lt.itemRoot, name: itemsName, owner: owner(itemsName)))
            blooms.append((name, bloom, 0))
            if bloom == nil && lt.itemRoot.height > 0 && !lt.bloomRef.isNull {
                // unreadable: already reported
                blooms[blooms.count - 1].missed = Int.max
            } else if bloom == nil && lt.itemRoot.height > 0 {
                report(.item, "\(name): items but no bloom block (mounts never read them)")
                blooms[blooms.count - 1].missed = Int.max
            }
        }
        var fs = FSItemChecker(formatVersion: sb.fmtVers, totalDataBlocks: sb.totalDataBlocks) { [unowned self] kind, msg in
            self.report(kind, msg)
        }
        var heads: [LeafItem?] = cursors.indices.map { cursors[$0].next() }
        var reportedSeqs = 0
        while true {
            // the least key, and the newest version of it (the first tree wins a tie, as in Forest)
            var least = -1
            for i in heads.indices {
                guard let h = heads[i] else { continue }
                if least < 0 || h.key < heads[least]!.key { least = i }
            }
            guard least >= 0 else { break }
            let k = heads[least]!.key
            var newest = least
            for i in heads.indices where i != least {
                if let h = heads[i], h.key == k, h.seq > heads[newest]!.seq { newest = i }
            }
            var it = heads[newest]!
            if DeltaItems.isDelta(k) {
                // summed across the trees as readers resolve them, not newest-wins
                var m = TotlMerging()
                for i in heads.indices {
                    if let h = heads[i], h.key == k, h.flags & Format.itemFlagDeletion == 0 {
                        if h.value.count != XattrTotlValue.encodedSize { report(.item, "xattr totl item \(k): \(h.value.count)-byte value") }
                        m.contribute(h.seq, h.value, sources[i])
                    }
                }
                if let v = m.resolved() {
                    it.value = v.encoded()
                    it.flags = 0
                } else {
                    it.flags = Format.itemFlagDeletion
                }
            }
            if it.seq > sb.seq && reportedSeqs < 10 {
                reportedSeqs += 1
                report(.item, "item \(it.key): seq \(it.seq) above the super block's seq \(sb.seq)")
            }
            if it.flags & Format.itemFlagDeletion == 0 {
                summary.fsItems += 1
                fs.add(it.key, it.value)
            }
            for i in heads.indices where heads[i]?.key == k {
                if let bloom = blooms[i].block, blooms[i].missed < 10, !Bloom.test(bloom, LockRange.covering(k).start) {
                    blooms[i].missed += 1
                    report(.item, "\(blooms[i].name): item \(k) is not in its bloom filter (mounts never read it)")
                }
                heads[i] = cursors[i].next()
            }
        }
        fs.finish()
        if unreadable == 0 && fs.inodes[Format.rootIno] == nil {
            report(.inode, "inode \(Format.rootIno): the root directory has no inode item")
        }
        summary.inodes = fs.inodeCount
        if let highest = fs.inodes.keys.max(), highest >= sb.nextIno {
            report(.inode, "inode \(highest): at or above the super block's next_ino \(sb.nextIno)")
        }
        if unreadable == 0 && UInt64(fs.inodeCount) != sb.inodeCount {
            report(.inode, "super block: inode_count \(sb.inodeCount) but the fs items hold \(fs.inodeCount) inodes")
        }
        for e in fs.extents {
            dataRuns.append(DataRun(start: e.blkno, len: e.len, ino: e.ino, detail: e.iblock))
        }
    }

    // MARK: - accounting

    func checkMetaAccounting() {
        var freeCount: UInt64 = 0
        var lost: UInt64 = 0
        // runs of lost blocks, the first ones kept for the report
        var runs: [(UInt64, UInt64)] = []
        var runCount = 0
        let keptRuns = 10_000
        let start = Int(Format.metaDevStartBlkno)
        let end = Int(totalMeta)
        var runStart = -1
        func endRun(_ lastLost: Int) {
            runCount += 1
            if runs.count < keptRuns { runs.append((UInt64(runStart), UInt64(lastLost))) }
            runStart = -1
        }
        for w in (start >> 6)...((end - 1) >> 6) {
            // the bits of this word inside start..<end
            let lo = max(start, w << 6)
            let hi = min(end, (w + 1) << 6)
            let valid: UInt64 = (hi - lo == 64 ? .max : ((1 << UInt64(hi - lo)) - 1)) << UInt64(lo & 63)
            let f = free.word(w) & valid
            let lostBits = ~(referenced.word(w) | free.word(w)) & valid
            freeCount += UInt64(f.nonzeroBitCount)
            lost += UInt64(lostBits.nonzeroBitCount)
            if lostBits == 0 {
                if runStart >= 0 { endRun(lo - 1) }
                continue
            }
            if lostBits == valid && runStart >= 0 { continue }
            for i in lo..<hi {
                if lostBits & (1 << UInt64(i & 63)) != 0 {
                    if runStart < 0 { runStart = i }
                } else if runStart >= 0 {
                    endRun(i - 1)
                }
            }
        }
        if runStart >= 0 { endRun(end - 1) }
        summary.metaFree = freeCount
        summary.metaLost = lost
        if unreadable > 0 {
            if lost > 0 {
                report(.lost, "\(lost) meta blocks neither referenced nor free, not listed: \(unreadable) referenced blocks could not be read or walked and may reference them")
            }
            return
        }
        for (s, e) in runs {
            report(.lost, s == e ? "meta block \(s): lost (neither referenced nor free)" : "meta blocks \(s)-\(e): lost (neither referenced nor free, \(e - s + 1) blocks)")
        }
        if runCount > runs.count {
            report(.lost, "\(runCount - runs.count) more runs of lost meta blocks not listed")
        }
    }

    func checkDataAccounting() {
        let first = Format.dataDevStartBlkno
        let last = sb.totalDataBlocks
        var runs = dataRuns
        dataRuns = []
        runs.sort { $0.start < $1.start || ($0.start == $1.start && $0.len < $1.len) }
        func name(_ r: DataRun) -> String {
            r.ino == 0 ? "free in \(ownerName(UInt16(r.detail)))" : "ino \(r.ino) iblock \(r.detail)"
        }
        var reach = first  // the first block not yet covered by a run
        var reachRun: DataRun? = nil
        var lostRuns = 0
        for r in runs {
            if r.ino == 0 { summary.dataFree &+= r.len } else { summary.dataInFiles &+= r.len }
            let end = r.start &+ r.len
            if r.start < first || end > last || end < r.start {
                report(r.ino == 0 ? .allocator : .extent, "data blocks \(r.start)+\(r.len) (\(name(r))): outside the data blocks \(first)..<\(last)")
                continue
            }
            if r.start < reach, let prev = reachRun {
                report(r.ino == 0 && prev.ino == 0 ? .allocator : .extent,
                       "data blocks \(r.start)+\(r.len) (\(name(r))) overlap data blocks \(prev.start)+\(prev.len) (\(name(prev)))")
            } else if r.start > reach {
                lostRuns += 1
                if lostRuns <= 1000 && unreadable == 0 {
                    report(.dataAccounting, "data blocks \(reach)-\(r.start - 1): lost (neither in a file nor free, \(r.start - reach) blocks)")
                }
                summary.dataLost += r.start - reach
            }
            if end > reach {
                reach = end
                reachRun = r
            }
        }
        if reach < last {
            summary.dataLost += last - reach
            lostRuns += 1
            if unreadable == 0 {
                report(.dataAccounting, "data blocks \(reach)-\(last - 1): lost (neither in a file nor free, \(last - reach) blocks)")
            }
        }
        if unreadable > 0 && summary.dataLost > 0 {
            report(.dataAccounting, "\(summary.dataLost) data blocks neither in a file nor free, not listed: \(unreadable) referenced metadata blocks could not be read or walked and may reference them")
        } else if lostRuns > 1000 {
            report(.dataAccounting, "\(lostRuns - 1000) more runs of lost data blocks not listed")
        }
        if unreadable == 0, last > first, summary.dataInFiles &+ summary.dataFree != last - first {
            report(.dataAccounting, "data blocks: \(summary.dataInFiles) in files + \(summary.dataFree) free = \(summary.dataInFiles &+ summary.dataFree), the device has \(last - first)")
        }
    }
}

/// One bit for each metadata block.
struct BlockBitmap {
    private var words: [UInt64]

    init(count: Int) {
        words = Array(repeating: 0, count: (count + 63) / 64)
    }

    subscript(i: Int) -> Bool { words[i >> 6] & (1 << UInt64(i & 63)) != 0 }

    /// Sets bit `i`; returns whether it was set already.
    mutating func testAndSet(_ i: Int) -> Bool {
        let m: UInt64 = 1 << UInt64(i & 63)
        let was = words[i >> 6] & m != 0
        words[i >> 6] |= m
        return was
    }

    func word(_ w: Int) -> UInt64 { words[w] }

    mutating func setWord(_ w: Int, _ v: UInt64) { words[w] = v }
}
