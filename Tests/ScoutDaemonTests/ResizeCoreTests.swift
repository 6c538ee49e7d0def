import ScoutAlloc
import ScoutBlockIO
import ScoutFormat
import ScoutServer
import ScoutStorage
import ScoutTestSupport
import Testing

/// `ServerCore.resizeDevices`: grow only, within the devices, the new blocks free at once.
@Suite("Server core: RESIZE_DEVICES")
struct ResizeCoreTests {
    @Test func growsAndRefuses() throws {
        let tv = try TestVolume.make(metaSize: 1 << 30, dataSize: 64 << 20)
        defer { TempDir.remove(tv.dir) }
        let core = try tv.openCore()
        let meta0 = core.superBlock.totalMetaBlocks, data0 = core.superBlock.totalDataBlocks
        #expect(meta0 == 16384 && data0 == 16384)
        let before = try core.statfs()

        func refused(_ m: UInt64, _ d: UInt64, devices: (UInt64, UInt64)) {
            var errno: Int32 = 0
            do {
                try core.resizeDevices(metaBlocks: m, dataBlocks: d, metaDeviceBlocks: devices.0, dataDeviceBlocks: devices.1)
            } catch {
                errno = error.errno
            }
            #expect(errno == 22, "\(m) \(d)")
        }
        refused(meta0 - 1, 0, devices: (meta0 * 2, data0 * 2))  // a shrink
        refused(0, data0 - 1, devices: (meta0 * 2, data0 * 2))
        refused(meta0 * 2 + 1, 0, devices: (meta0 * 2, data0 * 2))  // beyond the device
        refused(meta0 + 1, data0 * 2 + 1, devices: (meta0 * 2, data0 * 2))  // one beyond: neither grows
        #expect(try core.statfs() == before)
        // equal totals and zeros change nothing
        try core.resizeDevices(metaBlocks: meta0, dataBlocks: 0, metaDeviceBlocks: meta0, dataDeviceBlocks: data0)
        #expect(try core.statfs() == before)

        try core.resizeDevices(metaBlocks: meta0 + 1000, dataBlocks: data0 * 2, metaDeviceBlocks: meta0 * 2, dataDeviceBlocks: data0 * 2)
        let after = try core.statfs()
        #expect(after.totalMetaBlocks == meta0 + 1000 && after.totalDataBlocks == data0 * 2)
        // less the few blocks the commit's copy-on-write took
        #expect(after.freeMetaBlocks > before.freeMetaBlocks + 1000 - 16 && after.freeMetaBlocks <= before.freeMetaBlocks + 1000)
        #expect(after.freeDataBlocks == before.freeDataBlocks + data0)
        // the new data blocks joined the free extent that ended at the old total
        let extents = try ExtentAllocator(store: core.txn).extents(core.superBlock.dataAlloc)
        #expect(extents.last == Extent(start: Format.dataDevStartBlkno, len: data0 * 2 - Format.dataDevStartBlkno))

        // committed: a new server sees the totals
        let next = try tv.openCore()
        #expect(next.superBlock.totalMetaBlocks == meta0 + 1000 && next.superBlock.totalDataBlocks == data0 * 2)
        #expect(try next.statfs().freeDataBlocks == after.freeDataBlocks)
    }
}
