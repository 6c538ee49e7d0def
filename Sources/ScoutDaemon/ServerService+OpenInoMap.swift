import Logging
import ScoutFS
import ScoutFormat
import ScoutNet
import ScoutProtocol
import ScoutServer
import Synchronization

/// The server's OPEN_INO_MAP fan-out (the original's omap.c, server side): a mount deciding
/// whether it may delete an orphan asks for the OR of every other mount's map of the inode's
/// group. The pure part is `OpenInoMapGather`; this is the messaging around it.
extension ServerService {
    /// What the server counted of open inode map requests.
    public var omapCounters: OpenInoMapCounters { mutex.withLock { omapCountersValue } }

    /// OPEN_INO_MAP from `rid`: asks every other mounted client (one request each) and answers
    /// with the OR of their maps, or EIO when one fails or `omapTimeout` passes first (the
    /// asker then leaves the group's orphans for later).
    func openInoMap(rid: UInt64, _ payload: [UInt8]) async -> Result<[UInt8], NetErrno> {
        let args: OpenInoMapArgs
        do {
            args = try OpenInoMapArgs.decodePayload(payload)
        } catch {
            return .failure(.einval)
        }
        let started = mutex.withLock { () -> Result<OpenInoMapGather, NetErrno> in
            guard !stopping else { return .failure(NetErrno(LinuxErrno.ESHUTDOWN)) }
            omapCountersValue.omapRequest += 1
            nextOmapRequestID += 1
            do throws(ServerError) {
                let mounted = try core.mountedClients().keys
                return .success(OpenInoMapGather(groupNr: args.groupNr, reqID: nextOmapRequestID, asking: rid, mounted: mounted))
            } catch {
                logger.warning("OPEN_INO_MAP: mounted clients unreadable: \(error)")
                return .failure(.eio)
            }
        }
        let gather: OpenInoMapGather
        switch started {
        case .success(let g): gather = g
        case .failure(let e): return .failure(e)
        }
        let outcome: OpenInoMapGather.Outcome
        if let done = gather.outcome {
            outcome = done
        } else if let server = await listener() {
            let targets = gather.targets
            let request = gather.map.args.encoded()
            let wait = OpenInoMapWait(gather)
            let timeout = omapTimeout
            mutex.withLock { omapCountersValue.omapRequestSent += UInt64(targets.count) }
            // an event before `start` is kept in the gather and resumes the handler at `start`
            for target in targets {
                Task {
                    do {
                        let bytes = try await server.request(rid: target, .openInoMap, request)
                        if let map = try? OpenInoMap.decodePayload(bytes) {
                            wait.reply(rid: target, map)
                        } else {
                            wait.failed(rid: target)
                        }
                    } catch {
                        wait.failed(rid: target)
                    }
                }
            }
            let timer = Task {
                try? await Task.sleep(for: timeout)
                if !Task.isCancelled { wait.timedOut() }
            }
            outcome = await withCheckedContinuation { wait.start($0) }
            timer.cancel()
        } else {
            return .failure(NetErrno(LinuxErrno.ESHUTDOWN))
        }
        switch outcome {
        case .answered(var map):
            mutex.withLock { omapCountersValue.omapResponse += 1 }
            // the asker's own request id, as the original answers
            map.args = args
            return .success(map.encoded())
        case .unknown(let missing):
            mutex.withLock { omapCountersValue.omapResponseUnknown += 1 }
            logger.info("OPEN_INO_MAP for group \(args.groupNr) from rid \(hex(rid)): rid \(hex(missing)) did not answer")
            return .failure(.eio)
        }
    }
}

/// One fan-out in flight: the replies arrive on their own tasks; the first event that ends
/// the request resumes the waiting handler, once.
final class OpenInoMapWait: Sendable {
    private struct State {
        var gather: OpenInoMapGather
        var cont: CheckedContinuation<OpenInoMapGather.Outcome, Never>?
        var resumed = false
    }

    private let state: Mutex<State>

    init(_ gather: OpenInoMapGather) {
        state = Mutex(State(gather: gather))
    }

    func start(_ cont: CheckedContinuation<OpenInoMapGather.Outcome, Never>) {
        deliver { s in
            s.cont = cont
            return s.gather.outcome
        }
    }

    func reply(rid: UInt64, _ map: OpenInoMap) { deliver { $0.gather.reply(rid: rid, map) } }
    func failed(rid: UInt64) { deliver { $0.gather.failed(rid: rid) } }
    func timedOut() { deliver { $0.gather.timedOut() } }

    private func deliver(_ event: (inout State) -> OpenInoMapGather.Outcome?) {
        let ready = state.withLock { s -> (CheckedContinuation<OpenInoMapGather.Outcome, Never>, OpenInoMapGather.Outcome)? in
            _ = event(&s)
            guard !s.resumed, let cont = s.cont, let outcome = s.gather.outcome else { return nil }
            s.resumed = true
            return (cont, outcome)
        }
        if let (cont, outcome) = ready { cont.resume(returning: outcome) }
    }
}
