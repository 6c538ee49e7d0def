public import ScoutFormat

/// A set of quorum slot numbers (0..<15) as a bit mask.
///
/// Used for the configured members and for the votes a candidate has collected, as the
/// original's single-word vote bitmap.
public struct SlotSet: Sendable, Hashable, Sequence, CustomStringConvertible {
    /// Bit `n` set: slot `n` is in the set.
    public private(set) var bits: UInt16

    /// The empty set.
    public init() { bits = 0 }

    /// The set of the given slots; numbers outside 0..<15 are dropped.
    public init(_ slots: some Sequence<Int>) {
        bits = 0
        for s in slots { insert(s) }
    }

    /// The slots a quorum configuration gives an IPv4 address (the only family the original
    /// treats as present).
    public init(configuredIn config: QuorumConfig) {
        bits = 0
        for (nr, addr) in config.slots.enumerated() where addr.family == InetAddr.familyIPv4 {
            insert(nr)
        }
    }

    /// Whether `slot` is a valid slot number (0..<15).
    public static func isValid(_ slot: Int) -> Bool {
        slot >= 0 && slot < Format.quorumMaxSlots
    }

    /// Whether the set holds `slot`; false for numbers outside 0..<15.
    public func contains(_ slot: Int) -> Bool {
        Self.isValid(slot) && bits & (1 << UInt16(slot)) != 0
    }

    /// Adds `slot`; returns false when it was already present or is not a valid slot number.
    @discardableResult
    public mutating func insert(_ slot: Int) -> Bool {
        guard Self.isValid(slot), !contains(slot) else { return false }
        bits |= 1 << UInt16(slot)
        return true
    }

    /// Number of slots in the set.
    public var count: Int { bits.nonzeroBitCount }

    /// True when no slot is in the set.
    public var isEmpty: Bool { bits == 0 }

    /// Iterates the slots in increasing order.
    public struct Iterator: IteratorProtocol {
        var rest: UInt16

        public mutating func next() -> Int? {
            guard rest != 0 else { return nil }
            let n = rest.trailingZeroBitCount
            rest &= rest - 1
            return n
        }
    }

    public func makeIterator() -> Iterator { Iterator(rest: bits) }

    /// `{0,2,4}`.
    public var description: String {
        "{" + map(String.init).joined(separator: ",") + "}"
    }
}
