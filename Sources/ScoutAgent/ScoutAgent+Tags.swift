import Glibc
public import ScoutIoctl

extension ScoutAgent {
    /// LISTXATTR_HIDDEN: the hidden xattr names that fit `bytes` from the cursor `pos` on,
    /// and the cursor to continue from; an empty list when there are no more.
    public func listxattrHidden(pos: (hash: UInt32, id: UInt64), bytes: Int = 256 * 1024) throws(AgentError) -> (names: [[UInt8]], pos: (hash: UInt32, id: UInt64)) {
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes, 1), alignment: 16)
        defer { buf.deallocate() }
        var arg = ListxattrHiddenArgs(idPos: pos.id, bufPtr: UInt64(UInt(bitPattern: buf.baseAddress)), bufBytes: UInt32(bytes), hashPos: pos.hash).encoded
        let n = Int(try call(.listxattrHidden, &arg))
        guard let a = try? ListxattrHiddenArgs(bytes: arg) else { throw AgentError(command: .listxattrHidden, errno: EIO) }
        let raw = Array(buf[0..<min(n, bytes)])
        let names = raw.split(separator: 0, omittingEmptySubsequences: true).map { Array($0) }
        return (names, (a.hashPos, a.idPos))
    }

    /// READ_XATTR_TOTALS: up to `max` totals from name `pos` on; empty when there are no more.
    public func readXattrTotals(pos: [UInt64], max: Int = 1024 * 1024 / XattrTotal.size) throws(AgentError) -> [XattrTotal] {
        let nr = Swift.max(1, max)
        let (n, bytes) = try callWithBuffer(.readXattrTotals, bytes: nr * XattrTotal.size) { ptr in
            ReadXattrTotalsArgs(posName: pos, totalsPtr: ptr, totalsBytes: UInt64(nr * XattrTotal.size)).encoded
        }
        return try Self.decode(bytes, count: Swift.min(Int(n), nr), .readXattrTotals)
    }

    /// READ_XATTR_INDEX: up to `max` index entries from `first` through `last`.
    public func readXattrIndex(first: XattrIndexEntry, last: XattrIndexEntry, max: Int = 1024) throws(AgentError) -> [XattrIndexEntry] {
        let nr = Swift.max(1, max)
        let (n, bytes) = try callWithBuffer(.readXattrIndex, bytes: nr * XattrIndexEntry.size) { ptr in
            ReadXattrIndexArgs(first: first, last: last, entriesPtr: ptr, entriesNr: UInt64(nr)).encoded
        }
        return try Self.decode(bytes, count: Swift.min(Int(n), nr), .readXattrIndex)
    }

    /// INJECT_TOTL_DELTA: adds a signed (total, count) delta at totl name `name` (tests).
    public func injectTotlDelta(name: [UInt64], total: Int64, count: Int64) throws(AgentError) {
        var arg = InjectTotlDeltaArgs(name: name, total: total, count: count).encoded
        try call(.injectTotlDelta, &arg)
    }
}
