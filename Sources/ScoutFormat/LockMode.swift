/// Cluster lock modes (`SCOUTFS_LOCK_*`).
public enum LockMode: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case null = 0
    case read = 1
    case write = 2
    case writeOnly = 3

    /// Whether holders on two different mounts may hold `self` and `other` at once.
    public func compatible(with other: LockMode) -> Bool {
        switch (self, other) {
        case (.null, _), (_, .null): return true
        case (.read, .read), (.writeOnly, .writeOnly): return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .null: return "NULL"
        case .read: return "READ"
        case .write: return "WRITE"
        case .writeOnly: return "WRITE_ONLY"
        }
    }
}
