import ScoutBTree
import ScoutFormat
import ScoutStorage

extension ServerCore {
    static func srchKey(_ type: UInt8, _ major: UInt64, _ minor: UInt64 = 0) -> Key {
        Key(zone: KeyZone.srch, type: type, second: major, third: minor)
    }

    /// Moves a mount's srch log file into the srch root once it reached
    /// `Format.srchLogBlockLimit` blocks (always with `force`, for a tree being finalized):
    /// it is keyed by its root blkno, and the mount starts a new file. Left uncommitted.
    func rotateSrchLog(_ lt: inout LogTrees, force: Bool) throws(ServerError) {
        let f = lt.srchFile
        guard !f.ref.isNull, force || f.blocks >= UInt64(Format.srchLogBlockLimit) else { return }
        var root = txn.superBlock.srchRoot
        do {
            try BTree(store: txn).force(&root, Self.srchKey(KeyType.srchLog, f.ref.blkno), f.encoded())
        } catch {
            throw .btree(error)
        }
        txn.superBlock.srchRoot = root
        lt.srchFile = SrchFile()
        srchForceRotate = false
        counters.srchRotateLog += 1
    }
}
