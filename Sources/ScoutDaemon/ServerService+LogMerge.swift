import Logging
import ScoutFS
import ScoutFormat
import ScoutNet
import ScoutProtocol
import ScoutServer

/// The server's log merging requests and background freeing (the policy is in
/// `ServerCore+LogMerge.swift`; this is the waiting and messaging around it).
extension ServerService {
    /// What the server counted of log merging.
    public var mergeCounters: LogMergeCounters { mutex.withLock { core.counters } }

    /// Runs the finalization decision for a GET_LOG_TREES of `rid` (or a GET_LOG_MERGE, `rid`
    /// nil): mounts with open transactions are asked to commit once, and with `wait` the
    /// caller polls (5 ms growing to 100 ms) until they have or `logMergeWaitTimeout` passed,
    /// as the original does. Errors are logged: a merge that cannot start leaves the mount's
    /// request to go on. Nothing is decided while client recovery is pending.
    func prepareMerge(rid: UInt64?, wait: Bool) async {
        let deadline = ContinuousClock.now + logMergeWaitTimeout
        var delay = 5
        while true {
            let decision = mutex.withLock { () -> FinalizeDecision? in
                // a mount still recovering may have a request in flight to the last server
                // (a commit, the GET_LOG_TREES that opened its transaction): what its tree looks
                // like on disk says nothing about it yet, so nothing is finalized until every
                // mount has recovered or been fenced
                guard !stopping, recovery.isFinished else { return nil }
                do throws(ServerError) {
                    let d = try core.prepareFinalize(rid: rid, force: forceFinalizeFlag)
                    if d.started { forceFinalizeFlag = false }
                    return d
                } catch {
                    logger.error("log merge: finalizing log trees failed: \(error)")
                    return nil
                }
            }
            guard let decision else { return }
            for (orphan, nr) in decision.orphans {
                logger.warning("reclaiming orphan log trees for rid \(hex(orphan)) nr \(nr)")
            }
            if decision.started { logger.info("log merge started") }
            for other in decision.sync {
                Task {
                    guard let server = await self.listener() else { return }
                    _ = try? await server.request(rid: other, .syncLogTrees, [])
                }
            }
            guard decision.wait, wait else { return }
            if ContinuousClock.now >= deadline {
                mutex.withLock { core.counters.logMergeWaitTimeout += 1 }
                return
            }
            try? await Task.sleep(for: .milliseconds(delay))
            delay = min(delay * 3 / 2, 100)
        }
    }

    /// GET_LOG_MERGE: a merge request, or ENOENT when there is no work now.
    func getLogMerge(rid: UInt64) async -> Result<[UInt8], NetErrno> {
        let idle = mutex.withLock { (try? core.mergeStatus()) == nil }
        if idle { await prepareMerge(rid: nil, wait: false) }
        let r = mutex.withLock { () -> Result<[UInt8], NetErrno> in
            guard !stopping else { return .failure(NetErrno(LinuxErrno.ESHUTDOWN)) }
            do throws(ServerError) {
                guard let req = try core.getLogMerge(rid: rid) else { return .failure(NetErrno(LinuxErrno.ENOENT)) }
                return .success(req.encoded())
            } catch {
                logger.error("log merge: request for rid \(hex(rid)) failed: \(error)")
                return .failure(NetErrno(error.errno))
            }
        }
        startFreeingMerged()
        return r
    }

    /// COMMIT_LOG_MERGE: the completion is stored for the next splice.
    func commitLogMerge(rid: UInt64, _ payload: [UInt8]) -> Result<[UInt8], NetErrno> {
        guard let comp = try? LogMergeComplete.decodePayload(payload) else { return .failure(.einval) }
        return mutex.withLock { () -> Result<[UInt8], NetErrno> in
            guard !stopping else { return .failure(NetErrno(LinuxErrno.ESHUTDOWN)) }
            do throws(ServerError) {
                try core.commitLogMerge(rid: rid, comp)
                return .success([])
            } catch {
                logger.error("log merge: completion from rid \(hex(rid)) failed: \(error)")
                return .failure(NetErrno(error.errno))
            }
        }
    }

    /// Frees the blocks of merged input trees in bounded commits, on one task at a time.
    func startFreeingMerged() {
        let start = mutex.withLock { () -> Bool in
            guard !stopping, !freeingMerged else { return false }
            freeingMerged = true
            return true
        }
        guard start else { return }
        Task {
            while true {
                let more = mutex.withLock { () -> Bool in
                    guard !stopping else { return false }
                    do throws(ServerError) {
                        return try core.freeMergedStep()
                    } catch {
                        logger.error("log merge: freeing merged trees failed: \(error)")
                        return false
                    }
                }
                if !more { break }
                await Task.yield()
            }
            mutex.withLock { freeingMerged = false }
        }
    }
}
