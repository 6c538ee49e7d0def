import NIOCore
import ScoutProtocol
import Synchronization

/// Runs work items with the same key one after another, in submission order, and items with
/// different keys concurrently (the original's ordered proc work lists, hashed by lock key).
///
/// A lane starts one task when work arrives on an idle lane; the task drains the lane and ends.
final class OrderedLanes: Sendable {
    typealias Work = @Sendable () async -> Void

    private struct LaneState: Sendable {
        var queue = CircularBuffer<Work>(initialCapacity: 8)
        var running = false
    }

    private final class Lane: Sendable {
        let state = Mutex(LaneState())
    }

    private let lanes: [Lane]

    init(count: Int) {
        lanes = (0..<max(1, count)).map { _ in Lane() }
    }

    /// Queues `work` behind earlier work with the same key.
    func enqueue(key: UInt64, _ work: @escaping Work) {
        let lane = lanes[Int(key % UInt64(lanes.count))]
        let start = lane.state.withLock { s in
            s.queue.append(work)
            if s.running { return false }
            s.running = true
            return true
        }
        if start {
            Task { await Self.drain(lane) }
        }
    }

    private static func drain(_ lane: Lane) async {
        while let work = lane.state.withLock({ s -> Work? in
            if s.queue.isEmpty {
                s.running = false
                return nil
            }
            return s.queue.removeFirst()
        }) {
            await work()
        }
    }
}

/// Ordering keys: messages that must be processed in order get the same key.
public enum NetOrdering {
    /// LOCK messages (a grant response, an invalidation request) keyed by their lock's key, as the
    /// original client orders them; everything else is unordered.
    @Sendable
    public static func lockKey(_ cmd: NetCommand, _ payload: [UInt8]) -> UInt64? {
        guard cmd == .lock, payload.count == NetLock.encodedSize else { return nil }
        // FNV-1a over the 32 key bytes
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for i in 0..<32 {
            h ^= UInt64(payload[i])
            h &*= 0x0000_0100_0000_01b3
        }
        return h
    }
}
