public import ScoutFormat

/// Keys read as 216-bit unsigned numbers in their sort order (zone, first, type, second,
/// third, fourth), for telling how far apart two keys are.
public enum KeyDistance {
    /// Bits by which the gap below an inserted key must be shorter than the gap above it for
    /// the insertion to count as an append to a run (`BTree.trySplit`).
    public static let appendGapBits = 16
    /// Bits by which an appended key's step from the item below it may exceed that item's step
    /// from the one before it (an inode's first item after the last item of the inode before
    /// it is a step of one inode number, against the step between that inode's own items).
    public static let runStepSlackBits = 6

    /// The key as four 64-bit limbs, least significant first.
    @inlinable
    static func limbs(_ k: Key) -> (UInt64, UInt64, UInt64, UInt64) {
        let l0 = UInt64(k.fourth) | k.third << 8
        let l1 = k.third >> 56 | k.second << 8
        let l2 = k.second >> 56 | UInt64(k.type) << 8 | k.first << 16
        let l3 = k.first >> 48 | UInt64(k.zone) << 16
        return (l0, l1, l2, l3)
    }

    /// The number of bits of `high - low` (0 when equal); `low` must not sort above `high`.
    @inlinable
    public static func bitLength(_ low: Key, _ high: Key) -> Int {
        let a = limbs(high), b = limbs(low)
        let (d0, c0) = a.0.subtractingReportingOverflow(b.0)
        var (d1, c1) = a.1.subtractingReportingOverflow(b.1)
        var c1b = false
        if c0 { (d1, c1b) = d1.subtractingReportingOverflow(1) }
        var (d2, c2) = a.2.subtractingReportingOverflow(b.2)
        var c2b = false
        if c1 || c1b { (d2, c2b) = d2.subtractingReportingOverflow(1) }
        var d3 = a.3 &- b.3
        if c2 || c2b { d3 &-= 1 }
        if d3 != 0 { return 256 - d3.leadingZeroBitCount }
        if d2 != 0 { return 192 - d2.leadingZeroBitCount }
        if d1 != 0 { return 128 - d1.leadingZeroBitCount }
        return 64 - d0.leadingZeroBitCount
    }
}
