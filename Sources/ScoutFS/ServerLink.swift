public import ScoutFormat
public import ScoutProtocol

/// The roots a mount reads the forest through (GET_ROOTS).
public struct ForestRoots: Equatable, Sendable {
    public var fsRoot: BTreeRoot
    public var logsRoot: BTreeRoot
    public var srchRoot: BTreeRoot

    public init(fsRoot: BTreeRoot = BTreeRoot(), logsRoot: BTreeRoot = BTreeRoot(), srchRoot: BTreeRoot = BTreeRoot()) {
        self.fsRoot = fsRoot
        self.logsRoot = logsRoot
        self.srchRoot = srchRoot
    }
}

/// The server's statfs answer.
public struct ServerTotals: Equatable, Sendable {
    public var uuid: [UInt8]
    public var totalMetaBlocks: UInt64
    public var freeMetaBlocks: UInt64
    public var totalDataBlocks: UInt64
    public var freeDataBlocks: UInt64
    public var inodeCount: UInt64

    public init(uuid: [UInt8], totalMetaBlocks: UInt64, freeMetaBlocks: UInt64, totalDataBlocks: UInt64, freeDataBlocks: UInt64, inodeCount: UInt64) {
        self.uuid = uuid
        self.totalMetaBlocks = totalMetaBlocks
        self.freeMetaBlocks = freeMetaBlocks
        self.totalDataBlocks = totalDataBlocks
        self.freeDataBlocks = freeDataBlocks
        self.inodeCount = inodeCount
    }
}

/// The requests a mount sends its server (the original's client.c), called synchronously from
/// filesystem threads. Implemented over TCP by the daemon, and in process by tests.
public protocol ServerLink: AnyObject, Sendable {
    func getRoots() throws(FSError) -> ForestRoots
    func getLogTrees() throws(FSError) -> LogTrees
    func commitLogTrees(_ lt: LogTrees) throws(FSError)
    func allocInodes(count: UInt64) throws(FSError) -> (ino: UInt64, nr: UInt64)
    /// Asks for `new` on the lock named `key`; returns the grant's write seq.
    func lock(key: Key, old: LockMode, new: LockMode) throws(FSError) -> UInt64
    func lastSeq() throws(FSError) -> UInt64
    func statfs() throws(FSError) -> ServerTotals
    func farewell() throws(FSError)
    /// GET_LOG_MERGE: a piece of merge work, nil when the server has none now.
    func getLogMerge() throws(FSError) -> LogMergeRequest?
    /// COMMIT_LOG_MERGE: hands the merged subtree back.
    func commitLogMerge(_ comp: LogMergeComplete) throws(FSError)
    /// OPEN_INO_MAP: the OR of every other mount's open inode map of inode group `group`.
    /// Throws when the server could not hear from every mount in time: callers then treat
    /// every inode of the group as held.
    func openInoMap(group: UInt64) throws(FSError) -> OpenInoMap
    /// RESIZE_DEVICES: grows the volume's device totals (0 leaves a device as it is).
    func resizeDevices(metaBlocks: UInt64, dataBlocks: UInt64) throws(FSError)
    /// SRCH_GET_COMPACT: srch compaction work (`nr` 0 when there is none).
    func srchGetCompact() throws(FSError) -> SrchCompact
    /// SRCH_COMMIT_COMPACT: hands a compaction's progress or result back.
    func srchCommitCompact(_ sc: SrchCompact) throws(FSError)
}

extension ServerLink {
    /// Links that cannot resize (test links) refuse it.
    public func resizeDevices(metaBlocks: UInt64, dataBlocks: UInt64) throws(FSError) {
        throw FSError(FSError.EOPNOTSUPP)
    }
    public func srchGetCompact() throws(FSError) -> SrchCompact { SrchCompact() }
    public func srchCommitCompact(_ sc: SrchCompact) throws(FSError) { throw FSError(FSError.EOPNOTSUPP, "this link serves no srch compaction") }
}
