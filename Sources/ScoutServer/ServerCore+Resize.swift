import ScoutAlloc
import ScoutFormat
import ScoutStorage

/// RESIZE_DEVICES: growing the volume into devices that grew.
///
/// Design note. As the original's `server_resize_devices`: a total of 0, or equal to the
/// current one, leaves that device alone; a smaller total (a shrink) or one larger than the
/// device holds now is EINVAL and changes nothing. The new blocks, from the old total to the
/// new, become one free extent: in `meta_alloc[0]` (the original's `server->meta_avail`) and
/// `data_alloc`, which merge it with a free extent that ends at the old total. The super's
/// totals change in the same commit, so statfs shows them as soon as the request is answered.
/// The devices are measured again for each request (the original reads the block devices'
/// sizes, which a grown loop device or LV shows at once).
extension ServerCore {
    /// Grows the device totals to `metaBlocks` 64 KiB and `dataBlocks` 4 KiB blocks (0: leave
    /// that device as it is) and commits.
    ///
    /// - Parameters:
    ///   - metaDeviceBlocks: the metadata device's size now, in 64 KiB blocks.
    ///   - dataDeviceBlocks: the data device's size now, in 4 KiB blocks.
    public func resizeDevices(
        metaBlocks: UInt64, dataBlocks: UInt64, metaDeviceBlocks: UInt64, dataDeviceBlocks: UInt64
    ) throws(ServerError) {
        let sb = txn.superBlock
        let metaTotal = metaBlocks == sb.totalMetaBlocks ? 0 : metaBlocks
        let dataTotal = dataBlocks == sb.totalDataBlocks ? 0 : dataBlocks
        guard metaTotal != 0 || dataTotal != 0 else { return }
        if (metaTotal != 0 && metaTotal < sb.totalMetaBlocks) || (dataTotal != 0 && dataTotal < sb.totalDataBlocks) {
            throw ServerError(
                errno: 22,
                "resize to \(metaBlocks) meta and \(dataBlocks) data blocks would shrink the volume "
                    + "(\(sb.totalMetaBlocks) meta, \(sb.totalDataBlocks) data blocks)")
        }
        if metaTotal > metaDeviceBlocks || dataTotal > dataDeviceBlocks {
            throw ServerError(
                errno: 22,
                "resize to \(metaBlocks) meta and \(dataBlocks) data blocks is beyond the devices "
                    + "(\(metaDeviceBlocks) meta, \(dataDeviceBlocks) data blocks)")
        }
        let alloc = ExtentAllocator(store: txn)
        let before = (meta: sb.metaAlloc, data: sb.dataAlloc)
        do {
            if metaTotal != 0 {
                try alloc.free(&txn.superBlock.metaAlloc[0], Extent(start: sb.totalMetaBlocks, len: metaTotal - sb.totalMetaBlocks))
            }
            if dataTotal != 0 {
                try alloc.free(&txn.superBlock.dataAlloc, Extent(start: sb.totalDataBlocks, len: dataTotal - sb.totalDataBlocks))
            }
        } catch {
            // the allocator roots go back to what they were: nothing of the resize is committed
            txn.superBlock.metaAlloc = before.meta
            txn.superBlock.dataAlloc = before.data
            throw .alloc(error)
        }
        if metaTotal != 0 { txn.superBlock.totalMetaBlocks = metaTotal }
        if dataTotal != 0 { txn.superBlock.totalDataBlocks = dataTotal }
        try commit()
    }
}
