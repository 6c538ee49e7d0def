public import ScoutBTree
public import ScoutFormat

/// Alloc list blocks: chains of 64 KiB blocks each holding up to 8185 block numbers, described by
/// an `AllocListHead`. A transaction's metadata allocations come from an *avail* list and its
/// frees go to a *freed* list; both are held in memory while the transaction runs and laid out
/// again as list blocks when it commits.
public enum AllocList {
    /// Block numbers one list block holds.
    public static let perBlock = AllocListBlockHeader.maxBlknos

    /// Every blkno in the list, first block first, and the list blocks themselves.
    ///
    /// Checks each block's `start`/`nr` and that the chain's counts add up to `total_nr`.
    public static func read(
        _ head: AllocListHead, from store: some MetaBlockStore
    ) throws(BlockStoreError) -> (blknos: [UInt64], listBlocks: [UInt64]) {
        var out: [UInt64] = []
        out.reserveCapacity(Int(min(head.totalNr, 1 << 24)))
        var blocks: [UInt64] = []
        var ref = head.ref
        while !ref.isNull {
            if blocks.count > Int(head.totalNr / UInt64(perBlock)) + 1 {
                throw .format(.invalid(structure: "AllocListBlock", reason: "chain from blkno \(head.ref.blkno) is longer than total_nr \(head.totalNr) needs"))
            }
            let b = try store.read(ref, magic: .allocList)
            let lh: AllocListBlockHeader
            do {
                lh = try b.decode(AllocListBlockHeader.self)
            } catch {
                throw .format(error)
            }
            guard lh.isValid else {
                throw .format(.invalid(structure: "AllocListBlock", reason: "blkno \(ref.blkno): start \(lh.start) nr \(lh.nr) outside the array"))
            }
            for i in 0..<Int(lh.nr) {
                out.append(b.u64(AllocListBlockHeader.encodedSize + (Int(lh.start) + i) * 8))
            }
            blocks.append(ref.blkno)
            ref = lh.next
        }
        guard UInt64(out.count) == head.totalNr else {
            throw .format(.invalid(structure: "AllocListHead", reason: "blocks hold \(out.count) blknos, total_nr is \(head.totalNr)"))
        }
        return (out, blocks)
    }

    /// How many list blocks `count` blknos need.
    public static func blocksNeeded(_ count: Int) -> Int {
        (count + perBlock - 1) / perBlock
    }

    /// Lays `blknos` out in list blocks stored at `at`, chained in order, with the given header
    /// seqs. With exactly `blocksNeeded` list blocks they are filled in order;
    /// with more (each must still get a blkno) the blknos are spread evenly. Returns the head and the blocks.
    public static func build(
        _ blknos: [UInt64], at listBlknos: [UInt64], fsid: UInt64, seqs: [UInt64], flags: UInt32 = 0
    ) -> (head: AllocListHead, blocks: [BlockBuffer]) {
        precondition(listBlknos.count >= blocksNeeded(blknos.count) && listBlknos.count <= max(blknos.count, 0))
        precondition(seqs.count == listBlknos.count)
        let k = listBlknos.count
        var blocks: [BlockBuffer] = []
        var next = BlockRef()
        var firstNr: UInt32 = 0
        // build from the tail so each block can point at the next one
        for i in stride(from: listBlknos.count - 1, through: 0, by: -1) {
            // full blocks first when the count is the minimum, else spread evenly
            let dense = k == blocksNeeded(blknos.count)
            let lo = dense ? i * perBlock : blknos.count * i / k
            let hi = dense ? min(lo + perBlock, blknos.count) : blknos.count * (i + 1) / k
            let b = BlockBuffer(size: Format.largeBlockSize)
            let h = AllocListBlockHeader(
                hdr: BlockHeader(magic: BlockMagic.allocList.rawValue, fsid: fsid, seq: seqs[i], blkno: listBlknos[i]),
                next: next, start: 0, nr: UInt32(hi - lo))
            b.write(h, at: 0)
            for (j, v) in blknos[lo..<hi].enumerated() {
                b.setU64(AllocListBlockHeader.encodedSize + j * 8, v)
            }
            blocks.append(b)
            next = BlockRef(blkno: listBlknos[i], seq: seqs[i])
            firstNr = UInt32(hi - lo)
        }
        let head = AllocListHead(ref: next, totalNr: UInt64(blknos.count), firstNr: blknos.isEmpty ? 0 : firstNr, flags: flags)
        return (head, blocks.reversed())
    }
}
