import ScoutFormat
import ScoutProtocol

/// Typed requests, one per client→server command (the original's `scoutfs_client_*` calls).
///
/// A successful response must have exactly its structure's size, or `.badResponse` (EMSGSIZE)
/// is thrown, as the original's `sync_response` checks.
extension NetClient {
    /// Sends a request whose response is a `R`.
    public func request<R: FixedCodable>(_ cmd: NetCommand, _ payload: [UInt8], as: R.Type) async throws(NetError) -> R {
        try Self.decode(cmd, try await request(cmd, payload))
    }

    /// Sends a request whose response is empty.
    public func requestEmpty(_ cmd: NetCommand, _ payload: [UInt8]) async throws(NetError) {
        let r = try await request(cmd, payload)
        guard r.isEmpty else { throw .badResponse(cmd, length: r.count) }
    }

    /// Blocking `request(_:_:as:)` for non-async threads.
    @available(*, noasync, message: "blocks the thread; use request(_:_:as:) from async code")
    public func requestSync<R: FixedCodable>(
        _ cmd: NetCommand, _ payload: [UInt8], as: R.Type, timeout: Duration? = nil
    ) throws(NetError) -> R {
        try Self.decode(cmd, try requestSync(cmd, payload, timeout: timeout))
    }

    /// Blocking `requestEmpty` for non-async threads.
    @available(*, noasync, message: "blocks the thread; use requestEmpty(_:_:) from async code")
    public func requestEmptySync(_ cmd: NetCommand, _ payload: [UInt8], timeout: Duration? = nil) throws(NetError) {
        let r = try requestSync(cmd, payload, timeout: timeout)
        guard r.isEmpty else { throw .badResponse(cmd, length: r.count) }
    }

    static func decode<R: FixedCodable>(_ cmd: NetCommand, _ bytes: [UInt8]) throws(NetError) -> R {
        do {
            return try R.decodePayload(bytes)
        } catch {
            throw .badResponse(cmd, length: bytes.count)
        }
    }

    /// ALLOC_INODES: up to `count` inode numbers; `nr == 0` means none are left (the original
    /// turns that into ENOSPC).
    public func allocInodes(count: UInt64) async throws(NetError) -> NetInodeAlloc {
        try await request(.allocInodes, NetU64(count).encoded(), as: NetInodeAlloc.self)
    }

    /// GET_LOG_TREES: the trees and allocators of the next transaction.
    public func getLogTrees() async throws(NetError) -> LogTrees {
        try await request(.getLogTrees, [], as: LogTrees.self)
    }

    /// COMMIT_LOG_TREES: makes the written trees durable.
    public func commitLogTrees(_ lt: LogTrees) async throws(NetError) {
        try await requestEmpty(.commitLogTrees, lt.encoded())
    }

    /// GET_ROOTS: the last stable fs, logs and srch roots.
    public func getRoots() async throws(NetError) -> NetRoots {
        try await request(.getRoots, [], as: NetRoots.self)
    }

    /// GET_LAST_SEQ: the largest transaction seq known to be complete.
    public func getLastSeq() async throws(NetError) -> UInt64 {
        try await request(.getLastSeq, [], as: NetU64.self).value
    }

    /// SRCH_GET_COMPACT: a srch compaction job (`nr == 0`: none).
    public func srchGetCompact() async throws(NetError) -> SrchCompact {
        try await request(.srchGetCompact, [], as: SrchCompact.self)
    }

    /// SRCH_COMMIT_COMPACT: hands in a compaction's result.
    public func srchCommitCompact(_ sc: SrchCompact) async throws(NetError) {
        try await requestEmpty(.srchCommitCompact, sc.encoded())
    }

    /// GET_LOG_MERGE: a merge job (`.remote(.enoent)`: nothing to do).
    public func getLogMerge() async throws(NetError) -> LogMergeRequest {
        try await request(.getLogMerge, [], as: LogMergeRequest.self)
    }

    /// COMMIT_LOG_MERGE: hands in a merged subtree.
    public func commitLogMerge(_ c: LogMergeComplete) async throws(NetError) {
        try await requestEmpty(.commitLogMerge, c.encoded())
    }

    /// OPEN_INO_MAP: which inodes of a 1024-inode group are open on any mount.
    public func openInoMap(group: UInt64) async throws(NetError) -> OpenInoMap {
        try await request(.openInoMap, OpenInoMapArgs(groupNr: group).encoded(), as: OpenInoMap.self)
    }

    /// GET_VOLOPT: the volume options.
    public func getVolopt() async throws(NetError) -> VolumeOptions {
        try await request(.getVolopt, [], as: VolumeOptions.self)
    }

    /// SET_VOLOPT: sets the options whose bits are set in `setBits`.
    public func setVolopt(_ v: VolumeOptions) async throws(NetError) {
        try await requestEmpty(.setVolopt, v.encoded())
    }

    /// CLEAR_VOLOPT: clears the options whose bits are set in `setBits`.
    public func clearVolopt(_ v: VolumeOptions) async throws(NetError) {
        try await requestEmpty(.clearVolopt, v.encoded())
    }

    /// RESIZE_DEVICES: grows the meta and/or data device totals.
    public func resizeDevices(_ r: NetResizeDevices) async throws(NetError) {
        try await requestEmpty(.resizeDevices, r.encoded())
    }

    /// STATFS: free and total blocks and the inode count.
    public func statfs() async throws(NetError) -> NetStatfs {
        try await request(.statfs, [], as: NetStatfs.self)
    }

    /// LOCK (C→S): asks for a mode; `onGrant` gets the server's grant (a `NetLock` with the
    /// granted mode and write_seq) in the lock's ordered lane, in order with the server's
    /// invalidations of the same lock.
    public func requestLock(
        _ lock: NetLock, onGrant: @escaping @Sendable (Result<NetLock, NetError>) async -> Void
    ) {
        submit(.lock, lock.encoded()) { result in
            switch result {
            case .success(let bytes):
                let grant = Result { () throws(NetError) -> NetLock in try NetClient.decode(.lock, bytes) }
                await onGrant(grant)
            case .failure(let e):
                await onGrant(.failure(e))
            }
        }
    }
}
