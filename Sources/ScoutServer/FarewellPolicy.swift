/// Which pending farewells the server may answer now (the original's farewell worker rule).
///
/// Answers to mounts that are not quorum members go out at once. Quorum members are held
/// back while answering them would leave fewer quorum mounts than an election needs,
/// unless the only mounts left are quorum members that have all asked to leave: they are
/// then answered together, so the last majority never strands one of its members without a
/// server to say farewell to.
public enum FarewellPolicy {
    /// - Parameters:
    ///   - pending: rids whose FAREWELL waits for an answer, in arrival order.
    ///   - mounted: every mounted client (rid → is a quorum member). A pending rid that is not
    ///     listed here was already processed (by this or an earlier server) and is released.
    ///   - votesNeeded: the votes an election needs with the configured slots.
    ///   - recovering: rids whose farewell cannot be answered yet (a new server is still
    ///     recovering their locks). Their requests do not count until they can go: releasing
    ///     the others of a last majority without them would strand them without a quorum.
    /// - Returns: the rids to answer now, in arrival order.
    public static func releasable(
        pending allPending: [UInt64], mounted: [UInt64: Bool], votesNeeded: Int, recovering: Set<UInt64> = []
    ) -> [UInt64] {
        let pending = allPending.filter { !recovering.contains($0) }
        var quorumMounts = mounted.values.filter { $0 }.count
        let otherMounts = mounted.values.filter { !$0 }.count
        var quorumRequests = pending.filter { mounted[$0] == true }.count
        var release = Set<UInt64>()
        var remainingOthers = otherMounts
        for rid in pending {
            switch mounted[rid] {
            case nil: release.insert(rid)
            case false?:
                release.insert(rid)
                remainingOthers -= 1
            case true?: break
            }
        }
        for rid in pending where mounted[rid] == true {
            if quorumMounts > votesNeeded || (quorumRequests == quorumMounts && remainingOthers == 0) {
                release.insert(rid)
                quorumMounts -= 1
                quorumRequests -= 1
            }
        }
        return pending.filter { release.contains($0) }
    }
}
