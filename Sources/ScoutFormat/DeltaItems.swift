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
