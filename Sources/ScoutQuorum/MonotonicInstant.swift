/// A point on a monotonic clock, in nanoseconds since an arbitrary origin.
///
/// The election state machine never reads a clock: every input carries the current instant as
/// one of these, so tests and the simulation make time whatever they need. The service reads
/// `CLOCK_MONOTONIC`. All arithmetic saturates instead of trapping.
public struct MonotonicInstant: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Nanoseconds since the clock's origin.
    public var nanoseconds: UInt64

    /// An instant `nanoseconds` after the origin.
    public init(nanoseconds: UInt64) {
        self.nanoseconds = nanoseconds
    }

    /// An instant `milliseconds` after the origin.
    public static func milliseconds(_ milliseconds: UInt64) -> MonotonicInstant {
        MonotonicInstant(nanoseconds: milliseconds.multipliedReportingOverflow(by: 1_000_000).overflow ? .max : milliseconds * 1_000_000)
    }

    /// The clock's origin.
    public static let zero = MonotonicInstant(nanoseconds: 0)

    /// This instant moved `nanoseconds` later (saturating).
    public func advanced(byNanoseconds nanoseconds: UInt64) -> MonotonicInstant {
        let (sum, overflow) = self.nanoseconds.addingReportingOverflow(nanoseconds)
        return MonotonicInstant(nanoseconds: overflow ? .max : sum)
    }

    /// This instant moved `milliseconds` later (saturating).
    public func advanced(byMilliseconds milliseconds: UInt64) -> MonotonicInstant {
        let (ns, overflow) = milliseconds.multipliedReportingOverflow(by: 1_000_000)
        return advanced(byNanoseconds: overflow ? .max : ns)
    }

    /// Nanoseconds from `earlier` to this instant, zero when `earlier` is not earlier.
    public func nanoseconds(since earlier: MonotonicInstant) -> UInt64 {
        nanoseconds > earlier.nanoseconds ? nanoseconds - earlier.nanoseconds : 0
    }

    public static func < (a: MonotonicInstant, b: MonotonicInstant) -> Bool {
        a.nanoseconds < b.nanoseconds
    }

    /// Seconds with nanoseconds, as `12.000250000`.
    public var description: String {
        let frac = String(nanoseconds % 1_000_000_000)
        return "\(nanoseconds / 1_000_000_000)." + String(repeating: "0", count: 9 - frac.count) + frac
    }
}
