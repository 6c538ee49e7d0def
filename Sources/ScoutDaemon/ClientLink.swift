import Glibc
import Logging
public import ScoutFS
public import ScoutFormat
public import ScoutNet
import ScoutFUSE
import ScoutProtocol

/// A mount's requests to its server over TCP, as the blocking calls the filesystem threads
/// make (`ServerLink`), and its answers to the server's own requests.
///
/// Lock requests go through the client's ordered lock lanes (`requestLock`), so a grant is
/// never handled after a later invalidation of the same lock. Invalidations and
/// SYNC_LOG_TREES run on their own threads (they may commit) and answer when done, and so
/// do OPEN_INO_MAP requests (the mount's map is read under its state lock).
///
/// Failover. Requests survive a change of server: `NetClient` resends every unanswered
/// request (lock requests, commits, farewell) to the new server after its greeting. The new
/// server first asks for this mount's locks (LOCK_RECOVER), answered at once from the lock
/// table (`recoverBatch`); the resent lock requests are then processed against the
/// recovered grants. A request that times out (`timeout`) fails the filesystem call with EIO.
public final class ClientLink: ServerLink, NetClientHandler, @unchecked Sendable {
    public let client: NetClient
    /// Set once the volume exists; server requests before that have nothing to drop.
    nonisolated(unsafe) public var volume: Volume?
    /// How long one request may take before the filesystem call fails (the original retries
    /// forever; a mount that cannot reach its server for this long reports EIO).
    public var timeout: Duration = .seconds(120)

    public init(client: NetClient) {
        self.client = client
    }

    /// How long an OPEN_INO_MAP request may take (the server answers within its own fan-out
    /// limit); a late answer only delays a deletion.
    public var openInoMapTimeout: Duration = .seconds(30)

    private func call(_ cmd: NetCommand, _ payload: [UInt8], timeout: Duration? = nil) throws(FSError) -> [UInt8] {
        do {
            return try client.requestSync(cmd, payload, timeout: timeout ?? self.timeout)
        } catch {
            throw FSError(error.errno, "\(cmd) request: \(error)")
        }
    }

    private func decode<R: FixedCodable>(_ cmd: NetCommand, _ bytes: [UInt8]) throws(FSError) -> R {
        do {
            return try R.decodePayload(bytes)
        } catch {
            throw FSError(FSError.EIO, "bad \(cmd) reply of \(bytes.count) bytes")
        }
    }

    public func getRoots() throws(FSError) -> ForestRoots {
        let r: NetRoots = try decode(.getRoots, try call(.getRoots, []))
        return ForestRoots(fsRoot: r.fsRoot, logsRoot: r.logsRoot, srchRoot: r.srchRoot)
    }

    public func getLogTrees() throws(FSError) -> LogTrees {
        try decode(.getLogTrees, try call(.getLogTrees, []))
    }

    public func commitLogTrees(_ lt: LogTrees) throws(FSError) {
        _ = try call(.commitLogTrees, lt.encoded())
    }

    public func getLogMerge() throws(FSError) -> LogMergeRequest? {
        do {
            return try decode(.getLogMerge, try call(.getLogMerge, []))
        } catch where error.errno == FSError.ENOENT {
            return nil
        }
    }

    public func commitLogMerge(_ comp: LogMergeComplete) throws(FSError) {
        _ = try call(.commitLogMerge, comp.encoded())
    }

    public func srchGetCompact() throws(FSError) -> SrchCompact {
        try decode(.srchGetCompact, try call(.srchGetCompact, []))
    }

    public func srchCommitCompact(_ sc: SrchCompact) throws(FSError) {
        _ = try call(.srchCommitCompact, sc.encoded())
    }

    public func openInoMap(group: UInt64) throws(FSError) -> OpenInoMap {
        let args = OpenInoMapArgs(groupNr: group)
        return try decode(.openInoMap, try call(.openInoMap, args.encoded(), timeout: openInoMapTimeout))
    }

    public func allocInodes(count: UInt64) throws(FSError) -> (ino: UInt64, nr: UInt64) {
        let r: NetInodeAlloc = try decode(.allocInodes, try call(.allocInodes, NetU64(count).encoded()))
        return (r.ino, r.nr)
    }

    public func lock(key: Key, old: LockMode, new: LockMode) throws(FSError) -> UInt64 {
        let done = PThreadLock()
        nonisolated(unsafe) var result: Result<NetLock, NetError>?
        client.requestLock(NetLock(key: key, oldMode: old, newMode: new)) { r in
            done.withLock {
                result = r
                done.broadcast()
            }
        }
        let deadline = monotonicSeconds() + Double(timeout.components.seconds)
        return try done.withLock { () throws(FSError) -> UInt64 in
            while result == nil {
                if monotonicSeconds() > deadline { throw FSError(FSError.EIO, "lock \(key) not granted") }
                done.wait(seconds: 1)
            }
            switch result! {
            case .success(let grant): return grant.writeSeq
            case .failure(let e): throw FSError(e.errno, "lock request: \(e)")
            }
        }
    }

    public func lastSeq() throws(FSError) -> UInt64 {
        let r: NetU64 = try decode(.getLastSeq, try call(.getLastSeq, []))
        return r.value
    }

    public func statfs() throws(FSError) -> ServerTotals {
        let s: NetStatfs = try decode(.statfs, try call(.statfs, []))
        return ServerTotals(
            uuid: s.uuid, totalMetaBlocks: s.totalMetaBlocks, freeMetaBlocks: s.freeMetaBlocks,
            totalDataBlocks: s.totalDataBlocks, freeDataBlocks: s.freeDataBlocks, inodeCount: s.inodeCount)
    }

    public func resizeDevices(metaBlocks: UInt64, dataBlocks: UInt64) throws(FSError) {
        _ = try call(.resizeDevices, NetResizeDevices(newTotalMetaBlocks: metaBlocks, newTotalDataBlocks: dataBlocks).encoded())
    }

    public func farewell() throws(FSError) {
        let done = PThreadLock()
        nonisolated(unsafe) var result: Result<Void, NetError>?
        let client = self.client
        Task {
            let r: Result<Void, NetError>
            do throws(NetError) {
                try await client.farewell()
                r = .success(())
            } catch {
                r = .failure(error)
            }
            done.withLock {
                result = r
                done.broadcast()
            }
        }
        try done.withLock { () throws(FSError) in
            let deadline = monotonicSeconds() + 60
            while result == nil {
                if monotonicSeconds() > deadline { throw FSError(FSError.EIO, "farewell not answered") }
                done.wait(seconds: 1)
            }
            if case .failure(let e) = result! { throw FSError(e.errno, "farewell: \(e)") }
        }
    }

    // MARK: NetClientHandler

    public func handleRequest(_ request: NetIncomingRequest) async {
        switch request.cmd {
        case .lock:
            guard let nl = try? NetLock.decodePayload(request.payload) else {
                request.respond(.failure(NetErrno(22)))
                return
            }
            let vol = volume
            Self.onThread {
                vol?.invalidateLock(key: nl.key, from: nl.oldMode, to: nl.newMode)
                request.respond(.success(nl.encoded()))
            }
        case .syncLogTrees:
            let vol = volume
            Self.onThread {
                try? vol?.sync(force: true)
                request.respond(.success([]))
            }
        case .lockRecover:
            request.respond(Self.recoverBatch(request.payload, volume: volume))
        case .openInoMap:
            // the server asks for this mount's bits of a group (for another mount's deletion)
            guard let args = try? OpenInoMapArgs.decodePayload(request.payload) else {
                request.respond(.failure(NetErrno(22)))
                return
            }
            guard let vol = volume else {
                // still opening: the kernel holds nothing yet
                request.respond(.success(OpenInoMap(args: args).encoded()))
                return
            }
            Self.onThread {
                var map = vol.localOpenInoMap(group: args.groupNr)
                map.args = args
                request.respond(.success(map.encoded()))
            }
        default:
            request.respond(.failure(NetErrno(22)))
        }
    }

    /// The answer to a new server's LOCK_RECOVER {key}: up to 22 of the mount's locks from
    /// `key` on, each as {key, write_seq, old = new = the mode held}; an empty batch ends
    /// recovery. Without a volume yet (the mount is still opening) no lock is held.
    static func recoverBatch(_ payload: [UInt8], volume: Volume?) -> Result<[UInt8], NetErrno> {
        guard let key = try? Key.decodePayload(payload) else { return .failure(NetErrno(22)) }
        let held = volume?.locksForRecovery(from: key, limit: NetLockRecover.maxLocks) ?? []
        let batch = held.map { NetLock(key: $0.key, writeSeq: $0.writeSeq, oldMode: $0.mode, newMode: $0.mode) }
        return .success(NetLockRecover(locks: batch).encoded())
    }

    /// Runs blocking work on a new thread, off the network event loops and the async pool.
    static func onThread(_ body: @escaping @Sendable () -> Void) {
        Threads.detached(name: "scoutfs-work", body)
    }
}
