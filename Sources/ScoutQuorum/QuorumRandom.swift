/// SplitMix64, the seeded generator kept inside the state machine so that an election replays
/// exactly from its seed. The service seeds it from the slot number and entropy.
struct QuorumRandom: Sendable, Hashable {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }

    /// A value in `0..<bound` (`bound` > 0).
    mutating func below(_ bound: UInt64) -> UInt64 {
        next() % bound
    }
}
