import Logging
import NIOCore
public import ScoutFS
import ScoutFormat
import ScoutNet
import ScoutProtocol
public import ScoutServer

/// The server's network face: decodes each client request, runs it on `ServerCore` (one at a
/// time: every request ends in a commit) and encodes the answer. Lock requests wait for
/// their grant, which may need invalidation round trips to other mounts first.
final class ServerService: NetServerHandler, @unchecked Sendable {
    // Invariant: `core`, `locks` and `pendingGrants` are only touched with `mutex` held.
    let mutex = PThreadLock()
    let core: ServerCore
    var locks = LockServerState()
    var pendingGrants: [GrantKey: CheckedContinuation<Result<[UInt8], NetErrno>, Never>] = [:]
    let term: UInt64
    let logger: Logger
    /// Set after the listener is up (invalidations go through it).
    nonisolated(unsafe) var server: NetServer?

    struct GrantKey: Hashable {
        var rid: UInt64
        var key: Key
    }

    init(core: ServerCore, term: UInt64, logger: Logger) {
        self.core = core
        self.term = term
        self.logger = logger
    }

    private func locked<R>(_ body: () throws(ServerError) -> R) -> Result<R, NetErrno> {
        mutex.withLock {
            do throws(ServerError) {
                return .success(try body())
            } catch {
                logger.warning("server request failed: \(error)")
                return .failure(NetErrno(error.errno))
            }
        }
    }

    func greeting(_ greeting: NetGreeting, from address: SocketAddress?) async -> Result<NetGreeting, NetErrno> {
        let fsid = mutex.withLock { core.superBlock.hdr.fsid }
        guard greeting.fsid == fsid else { return .failure(NetErrno(22)) }
        guard greeting.fmtVers == mutex.withLock({ core.superBlock.fmtVers }) else { return .failure(NetErrno(22)) }
        return .success(NetGreeting(fsid: fsid, fmtVers: greeting.fmtVers, serverTerm: term, rid: greeting.rid, flags: 0))
    }

    func clientGreeted(rid: UInt64, greeting: NetGreeting, firstContact: Bool) async {
        guard firstContact else { return }
        let quorum = greeting.flags & NetGreeting.flagQuorum != 0
        _ = locked { () throws(ServerError) in try core.addMountedClient(rid: rid, addr: InetAddr(), quorum: quorum) }
    }

    func handle(rid: UInt64, cmd: NetCommand, payload: [UInt8]) async -> Result<[UInt8], NetErrno> {
        do {
            switch cmd {
            case .allocInodes:
                let n = try NetU64.decodePayload(payload).value
                return locked { () throws(ServerError) in
                    let (ino, nr) = try core.allocInodes(count: n)
                    return NetInodeAlloc(ino: ino, nr: nr).encoded()
                }
            case .getLogTrees:
                return locked { () throws(ServerError) in try core.getLogTrees(rid: rid).encoded() }
            case .commitLogTrees:
                var lt = try LogTrees.decodePayload(payload)
                lt.rid = rid
                return locked { () throws(ServerError) in
                    try core.commitLogTrees(lt)
                    return []
                }
            case .getRoots:
                return locked { () throws(ServerError) in
                    let r = core.stableRoots()
                    return NetRoots(fsRoot: r.fsRoot, logsRoot: r.logsRoot, srchRoot: r.srchRoot).encoded()
                }
            case .getLastSeq:
                return locked { () throws(ServerError) in NetU64(try core.lastSeq()).encoded() }
            case .statfs:
                return locked { () throws(ServerError) in
                    let s = try core.statfs()
                    return NetStatfs(
                        uuid: s.uuid, freeMetaBlocks: s.freeMetaBlocks, totalMetaBlocks: s.totalMetaBlocks,
                        freeDataBlocks: s.freeDataBlocks, totalDataBlocks: s.totalDataBlocks, inodeCount: s.inodeCount
                    ).encoded()
                }
            case .farewell:
                let actions = mutex.withLock { locks.removeClient(rid: rid, nextSeq: { core.nextSeq() }) }
                perform(actions)
                return locked { () throws(ServerError) in
                    try core.farewell(rid: rid)
                    return []
                }
            case .lock:
                let req = try NetLock.decodePayload(payload)
                return await withCheckedContinuation { cont in
                    let actions = mutex.withLock { () -> [LockServerState.Action] in
                        pendingGrants[GrantKey(rid: rid, key: req.key)] = cont
                        return locks.request(rid: rid, key: req.key, old: req.oldMode, new: req.newMode, nextSeq: { core.nextSeq() })
                    }
                    perform(actions)
                }
            default:
                return .failure(NetErrno(22))
            }
        } catch {
            logger.warning("bad \(cmd) request from rid \(rid): \(error)")
            return .failure(NetErrno(22))
        }
    }

    /// Carries out lock server actions: grants answer waiting requests, invalidations are
    /// sent and their answers fed back.
    private func perform(_ actions: [LockServerState.Action]) {
        for a in actions {
            switch a {
            case .grant(let rid, let key, let old, let new, let seq):
                let cont = mutex.withLock { pendingGrants.removeValue(forKey: GrantKey(rid: rid, key: key)) }
                cont?.resume(returning: .success(NetLock(key: key, writeSeq: seq, oldMode: old, newMode: new).encoded()))
            case .invalidate(let rid, let key, let from, let to):
                Task {
                    do {
                        _ = try await self.server?.request(rid: rid, .lock, NetLock(key: key, oldMode: from, newMode: to).encoded())
                    } catch {
                        self.logger.warning("lock invalidation of rid \(rid) failed: \(error)")
                    }
                    let next = self.mutex.withLock { self.locks.invalidated(rid: rid, key: key, mode: to, nextSeq: { self.core.nextSeq() }) }
                    self.perform(next)
                }
            }
        }
    }

    func clientGone(rid: UInt64, reason: NetServer.GoneReason) async {
        let actions = mutex.withLock { locks.removeClient(rid: rid, nextSeq: { core.nextSeq() }) }
        perform(actions)
    }
}
