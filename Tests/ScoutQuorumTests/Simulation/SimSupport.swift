import HeapModule
import ScoutQuorum
import ScoutTestSupport

/// Random helpers for the simulation, over the seeded generator every test uses.
extension SplitMix64 {
    /// True with probability `p`.
    mutating func chance(_ p: Double) -> Bool {
        p > 0 && Double(next() >> 11) / Double(UInt64(1) << 53) < p
    }

    /// Nanoseconds uniformly within `range` milliseconds.
    mutating func ms(_ range: ClosedRange<Double>) -> UInt64 {
        let u = Double(next() >> 11) / Double(UInt64(1) << 53)
        return UInt64((range.lowerBound + (range.upperBound - range.lowerBound) * u) * 1_000_000)
    }

    /// An element of a non-empty array.
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

/// One scheduled happening of the simulation, ordered by time and then by the order it was
/// scheduled in, so runs are deterministic.
struct SimScheduled<Kind>: Comparable {
    var time: MonotonicInstant
    var sequence: UInt64
    var kind: Kind

    static func < (a: Self, b: Self) -> Bool {
        (a.time, a.sequence) < (b.time, b.sequence)
    }

    static func == (a: Self, b: Self) -> Bool {
        a.time == b.time && a.sequence == b.sequence
    }
}

/// A virtual clock and a min-heap of events.
struct SimEventQueue<Kind> {
    private var heap = Heap<SimScheduled<Kind>>()
    private var sequence: UInt64 = 0
    /// The virtual time: the time of the event being processed.
    private(set) var now = MonotonicInstant.zero

    /// Schedules `kind` at `time` (never before now).
    mutating func schedule(_ kind: Kind, at time: MonotonicInstant) {
        sequence += 1
        heap.insert(SimScheduled(time: max(time, now), sequence: sequence, kind: kind))
    }

    /// Schedules `kind` after `nanoseconds`.
    mutating func schedule(_ kind: Kind, afterNanoseconds nanoseconds: UInt64) {
        schedule(kind, at: now.advanced(byNanoseconds: nanoseconds))
    }

    /// Takes the next event and moves the clock to it.
    mutating func next() -> Kind? {
        guard let e = heap.popMin() else { return nil }
        now = e.time
        return e.kind
    }

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }
}
