import ScoutAlloc
import ScoutBTree
import ScoutBlockIO
import ScoutFormat
import SystemPackage

/// The blocks a transaction has made writable, and the copy-on-write step both kinds of
/// transaction share (the server's `MetaTransaction` and a mount's `LogTransaction`).
///
/// A block dirtied in this transaction is written in place in memory; any other block is
/// copied to a newly allocated blkno with a new random header seq, and its old blkno is
/// reported as freed. Nothing reaches the device before `writeAll`.
final class DirtyBlocks {
    let device: MetaDevice
    private(set) var blocks: [UInt64: BlockBuffer] = [:]
    private var seqs: any RandomNumberGenerator

    init(device: MetaDevice, seqs: any RandomNumberGenerator) {
        self.device = device
        self.seqs = seqs
    }

    var isEmpty: Bool { blocks.isEmpty }
    var count: Int { blocks.count }

    func read(_ ref: BlockRef, magic: BlockMagic) throws(BlockStoreError) -> BlockBuffer {
        if let b = blocks[ref.blkno] {
            let h = b.header
            guard h.seq == ref.seq else {
                throw .format(.stale(blkno: ref.blkno, expectedSeq: ref.seq, foundSeq: h.seq))
            }
            guard h.magic == magic.rawValue else {
                throw .format(.badMagic(blkno: ref.blkno, expected: magic.rawValue, found: h.magic))
            }
            return b
        }
        do {
            return try device.read(ref, magic: magic)
        } catch {
            throw storeError(error)
        }
    }

    /// Copy-on-write of `ref` into `blkno` (from the caller's allocator). Returns the old blkno
    /// when a committed block was copied (the caller frees it), and the writable block.
    func cow(_ ref: inout BlockRef, magic: BlockMagic, allocate: () throws(BlockStoreError) -> UInt64) throws(BlockStoreError) -> (BlockBuffer, freed: UInt64?) {
        if !ref.isNull, let b = blocks[ref.blkno], b.header.seq == ref.seq {
            return (b, nil)
        }
        let blkno = try allocate()
        let b: BlockBuffer
        var freed: UInt64? = nil
        if ref.isNull {
            b = BlockBuffer(size: Format.largeBlockSize)
        } else {
            b = BlockBuffer(copying: try read(ref, magic: magic))
            freed = ref.blkno
        }
        let seq = newSeq()
        b.header = BlockHeader(magic: magic.rawValue, fsid: device.fsid, seq: seq, blkno: blkno)
        blocks[blkno] = b
        ref = BlockRef(blkno: blkno, seq: seq)
        return (b, freed)
    }

    /// Forgets a block dirtied in this transaction; true if it was one (its blkno was never
    /// written, so it is free again at once).
    func discard(_ blkno: UInt64) -> Bool {
        blocks.removeValue(forKey: blkno) != nil
    }

    /// Adds blocks the caller built at blknos it allocated.
    func adopt(_ bs: [BlockBuffer]) {
        for b in bs { blocks[b.header.blkno] = b }
    }

    /// Writes every dirty block plus `extra`, in blkno order, and forgets them.
    func writeAll(extra: [BlockBuffer] = []) throws(BlockStoreError) {
        do {
            for b in (Array(blocks.values) + extra).sorted(by: { $0.header.blkno < $1.header.blkno }) {
                try device.write(large: b)
            }
        } catch {
            throw storeError(error)
        }
        blocks = [:]
    }

    /// The alloc lists a commit writes: `avail` and `freed` laid out in new list blocks, which
    /// are themselves taken from the end of `avail`. Returns the heads, the avail blknos left
    /// after the list blocks were taken, the list blocks to write and their blknos.
    func layOutLists(avail: [UInt64], freed: [UInt64]) throws(BlockStoreError) -> (
        availHead: AllocListHead, freedHead: AllocListHead, availLeft: [UInt64], blocks: [BlockBuffer], blknos: [UInt64]
    ) {
        var availNow = avail
        var listBlknos: [UInt64] = []
        while listBlknos.count < AllocList.blocksNeeded(availNow.count) + AllocList.blocksNeeded(freed.count) {
            guard let b = availNow.popLast() else { throw .noSpace }
            listBlknos.append(b)
        }
        let freedBlocks = Array(listBlknos.prefix(AllocList.blocksNeeded(freed.count)))
        let availBlocks = Array(listBlknos.dropFirst(freedBlocks.count))
        // the last block taken may leave one more list block than needed; each must hold a blkno
        guard availBlocks.count <= availNow.count else { throw .noSpace }
        let (availHead, availList) = AllocList.build(availNow, at: availBlocks, fsid: device.fsid, seqs: availBlocks.map { _ in newSeq() })
        let (freedHead, freedList) = AllocList.build(freed.sorted(), at: freedBlocks, fsid: device.fsid, seqs: freedBlocks.map { _ in newSeq() })
        return (availHead, freedHead, availNow, availList + freedList, listBlknos)
    }

    func newSeq() -> UInt64 {
        var s: UInt64 = 0
        while s == 0 { s = seqs.next() }
        return s
    }
}

func storeError(_ e: BlockIOError) -> BlockStoreError {
    switch e {
    case .io(let errno, let blkno): return .io(errno: errno.rawValue, blkno: blkno)
    case .format(let f): return .format(f)
    }
}
