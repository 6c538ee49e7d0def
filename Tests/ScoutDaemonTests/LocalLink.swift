import Glibc
import ScoutBlockIO
import ScoutFS
import ScoutFormat
import ScoutProtocol
import ScoutServer
import ScoutStorage
import ScoutTestSupport

/// A ServerLink that calls a ServerCore in process (no network): lets the client/server split
/// be tested without sockets.
final class LocalLink: ServerLink, @unchecked Sendable {
    // Invariant: `core` and `lockState` are only used inside `mutex`.
    let mutex: UnsafeMutablePointer<pthread_mutex_t> = {
        let m = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(m, nil)
        return m
    }()
    let core: ServerCore
    var lockState = LockServerState()
    let rid: UInt64

    init(core: ServerCore, rid: UInt64) {
        self.core = core
        self.rid = rid
    }

    private func run<R>(_ body: () throws(ServerError) -> R) throws(FSError) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        do {
            return try body()
        } catch {
            throw FSError(error.errno, error.message)
        }
    }

    /// Roots GET_ROOTS answers with, first in first out, before the server's own.
    var rootsQueue: [ForestRoots] = []

    func getRoots() throws(FSError) -> ForestRoots {
        try run { () throws(ServerError) in
            if !rootsQueue.isEmpty { return rootsQueue.removeFirst() }
            let r = core.stableRoots()
            return ForestRoots(fsRoot: r.fsRoot, logsRoot: r.logsRoot, srchRoot: r.srchRoot)
        }
    }
    /// Every GET_LOG_TREES finalizes this mount's tree however small (the force trigger).
    var forceFinalize = false

    func getLogTrees() throws(FSError) -> LogTrees {
        try run { () throws(ServerError) in
            _ = try core.prepareFinalize(rid: rid, force: forceFinalize)
            return try core.getLogTrees(rid: rid)
        }
    }
    /// Called (outside the server's mutex) after GET_LOG_MERGE handed out a request.
    var afterGetLogMerge: (@Sendable () -> Void)?
    /// What this mount sent, in order: `merge-request`, `merge-done`, `merge-error`, `farewell`.
    private(set) var events: [String] = []

    func getLogMerge() throws(FSError) -> LogMergeRequest? {
        let req = try run { () throws(ServerError) -> LogMergeRequest? in
            if try core.mergeStatus() == nil { _ = try core.prepareFinalize(rid: nil, force: false) }
            let req = try core.getLogMerge(rid: rid)
            if req != nil { events.append("merge-request") }
            return req
        }
        if req != nil { afterGetLogMerge?() }
        return req
    }
    func commitLogMerge(_ comp: LogMergeComplete) throws(FSError) {
        try run { () throws(ServerError) in
            events.append(comp.flags & LogMergeComplete.flagError != 0 ? "merge-error" : "merge-done")
            try core.commitLogMerge(rid: rid, comp)
        }
    }
    func srchGetCompact() throws(FSError) -> SrchCompact { try run { () throws(ServerError) in try core.getSrchCompact(rid: rid) } }
    func srchCommitCompact(_ sc: SrchCompact) throws(FSError) { try run { () throws(ServerError) in try core.commitSrchCompact(rid: rid, sc) } }
    /// How many of the next COMMIT_LOG_TREES the server makes durable and then loses the answer to.
    var lostCommitAnswers = 0

    func commitLogTrees(_ lt: LogTrees) throws(FSError) {
        try run { () throws(ServerError) in
            try core.commitLogTrees(lt)
            if lostCommitAnswers > 0 {
                lostCommitAnswers -= 1
                throw ServerError(errno: 110, "request timed out")
            }
        }
    }
    func allocInodes(count: UInt64) throws(FSError) -> (ino: UInt64, nr: UInt64) { try run { () throws(ServerError) in try core.allocInodes(count: count) } }
    func lock(key: Key, old: LockMode, new: LockMode) throws(FSError) -> UInt64 {
        try run { () throws(ServerError) -> UInt64 in
            let acts = lockState.request(rid: rid, key: key, old: old, new: new, nextSeq: { core.nextSeq() })
            for a in acts { if case .grant(_, _, _, _, let seq) = a { return seq } }
            throw ServerError(errno: 5, "lock not granted at once in a single-mount test")
        }
    }
    func lastSeq() throws(FSError) -> UInt64 { try run { () throws(ServerError) in try core.lastSeq() } }
    func statfs() throws(FSError) -> ServerTotals {
        try run { () throws(ServerError) in
            let s = try core.statfs()
            return ServerTotals(uuid: s.uuid, totalMetaBlocks: s.totalMetaBlocks, freeMetaBlocks: s.freeMetaBlocks, totalDataBlocks: s.totalDataBlocks, freeDataBlocks: s.freeDataBlocks, inodeCount: s.inodeCount)
        }
    }
    func farewell() throws(FSError) {
        try run { () throws(ServerError) in
            events.append("farewell")
            try core.farewell(rid: rid)
        }
    }

    /// Inodes "other mounts" hold, for tests of deletion across mounts.
    var remoteHeld: Set<UInt64> = []
    /// Other in-process mounts whose maps are ORed in.
    var otherVolumes: [Volume] = []
    /// The server could not hear from every mount in time.
    var omapFails = false
    private(set) var omapRequests = 0

    func openInoMap(group: UInt64) throws(FSError) -> OpenInoMap {
        omapRequests += 1
        if omapFails { throw FSError(FSError.EIO, "a mount did not answer OPEN_INO_MAP") }
        var map = OpenInoMap(args: OpenInoMapArgs(groupNr: group))
        for ino in remoteHeld where OpenInoMap.group(ofIno: ino) == group { map.insert(ino: ino) }
        for v in otherVolumes { map.formUnion(v.localOpenInoMap(group: group)) }
        return map
    }
}

/// A freshly made volume on sparse temp files.
struct TestVolume {
    let dir: String
    let meta: String
    let data: String
    let fsid: UInt64

    static func make(metaSize: UInt64 = 2 << 30, dataSize: UInt64 = 2 << 30) throws -> TestVolume {
        let dir = try TempDir.make(prefix: "scoutfs-vol")
        let meta = dir + "/meta"
        let data = dir + "/data"
        try TempDir.sparseFile(meta, size: metaSize)
        try TempDir.sparseFile(data, size: dataSize)
        var o = MkfsOptions(metaPath: meta, dataPath: data, slots: [0: InetAddr(ipv4: 0x7f00_0001, port: 12000)])
        o.allowSmallSize = true
        o.force = true
        let fsid = UInt64.random(in: 1...UInt64.max)
        try Mkfs.run(o, now: Timespec(sec: 1), fsid: fsid, uuid: Array(repeating: 7, count: 16), out: { _ in }, err: { _ in })
        return TestVolume(dir: dir, meta: meta, data: data, fsid: fsid)
    }

    /// Opens the server state and one mount on it.
    func mount(rid: UInt64 = 0x1234) throws -> (Volume, LocalLink) {
        let metaDev = try FileBlockDevice(path: meta, writable: true)
        let md = MetaDevice(device: metaDev, fsid: fsid)
        let core = ServerCore(txn: try MetaTransaction(device: md))
        let link = LocalLink(core: core, rid: rid)
        let vol = try Volume(meta: md, dataPath: data, fmtVers: 2, link: link)
        return (vol, link)
    }
}
