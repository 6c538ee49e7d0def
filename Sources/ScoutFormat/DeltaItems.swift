/// Delta items (the original's `scoutfs_forest_combine_deltas`): items whose versions are
/// summed across trees rather than the newest winning. Which items are deltas is decided by
/// their key zone, as in the original (the format has no flag for it): today only the
/// `.totl.` totals of the xattr totl zone.
public enum DeltaItems {
    /// What combining two versions of a delta item gave.
    public enum Combined: Equatable, Sendable {
        /// The summed value.
        case value([UInt8])
        /// The sum carries nothing (total and count both zero): the item is dropped.
        case null
    }

    /// Whether items with `key` are deltas.
    @inlinable
    public static func isDelta(_ key: Key) -> Bool { key.zone == KeyZone.xattrTotl }

    /// `dst + src` for a delta item; nil when a value has the wrong size (corruption).
    public static func combine(_ dst: [UInt8], _ src: [UInt8]) -> Combined? {
        guard let d = try? XattrTotlValue.decode(dst), let s = try? XattrTotlValue.decode(src),
            dst.count == XattrTotlValue.encodedSize, src.count == XattrTotlValue.encodedSize
        else { return nil }
        let sum = XattrTotlValue(total: d.total &+ s.total, count: d.count &+ s.count)
        return sum.total == 0 && sum.count == 0 ? .null : .value(sum.encoded())
    }
}

/// The original's totl merging (`totl.c`): how a reader resolves the versions of one `.totl.`
/// delta item found in the fs root and the log trees into one total.
///
/// Design note. Log merging writes partial results into the fs root while its input log trees
/// are still in the forest, so an input tree's delta may or may not be in the fs root's item
/// already. The fs item's seq says which: merging gives it the newest seq of the inputs it
/// summed. Input deltas are added when they are newer than the fs item, or when there is no
/// fs item and they create one (a positive count; a merge that summed them to nothing removed
/// the item). Log trees that are not inputs of the merge in flight were never merged, so
/// they are always added (the original's 2026 fixes: the merge seq per input, and the seq
/// update on combining).
public struct TotlMerging {
    /// Where a version was found.
    public enum Source: Sendable {
        case fsRoot
        /// A finalized log tree that the merge in flight takes as an input.
        case mergeInput
        /// Any other log tree (open, or finalized after the merge began).
        case log
    }

    public init() {}

    private var fsSeq: UInt64 = 0
    private var fs = (total: UInt64(0), count: UInt64(0))
    private var inpSeq: UInt64 = 0
    private var inp = (total: UInt64(0), count: UInt64(0))
    private var logSeq: UInt64 = 0
    private var log = (total: UInt64(0), count: UInt64(0))

    public mutating func contribute(_ seq: UInt64, _ value: [UInt8], _ source: Source) {
        guard let v = try? XattrTotlValue.decode(value), value.count == XattrTotlValue.encodedSize else { return }
        switch source {
        case .fsRoot:
            fsSeq = seq
            fs = (v.total, v.count)
        case .mergeInput:
            inpSeq = max(inpSeq, seq)
            inp = (inp.total &+ v.total, inp.count &+ v.count)
        case .log:
            logSeq = max(logSeq, seq)
            log = (log.total &+ v.total, log.count &+ v.count)
        }
    }

    /// The resolved total, or nil when it is nothing (total and count zero).
    public func resolved() -> XattrTotlValue? {
        var t = (total: UInt64(0), count: UInt64(0))
        if fsSeq != 0 { t = fs }
        if (fsSeq != 0 && inpSeq > fsSeq) || (fsSeq == 0 && Int64(bitPattern: inp.count) > 0) {
            t = (t.total &+ inp.total, t.count &+ inp.count)
        }
        if logSeq > 0 { t = (t.total &+ log.total, t.count &+ log.count) }
        return t.total == 0 && t.count == 0 ? nil : XattrTotlValue(total: t.total, count: t.count)
    }
}
