import ScoutServer
import Testing

@Suite struct FarewellPolicyTests {
    @Test func nonQuorumMountsLeaveAtOnce() {
        let mounted: [UInt64: Bool] = [1: true, 2: true, 3: true, 10: false]
        #expect(FarewellPolicy.releasable(pending: [10], mounted: mounted, votesNeeded: 2) == [10])
    }

    @Test func quorumMemberLeavesWhileAMajorityStays() {
        let mounted: [UInt64: Bool] = [1: true, 2: true, 3: true]
        #expect(FarewellPolicy.releasable(pending: [2], mounted: mounted, votesNeeded: 2) == [2])
    }

    @Test func lastMajorityWaitsForAllItsMembers() {
        let mounted: [UInt64: Bool] = [1: true, 2: true]
        #expect(FarewellPolicy.releasable(pending: [1], mounted: mounted, votesNeeded: 2) == [])
        #expect(FarewellPolicy.releasable(pending: [1, 2], mounted: mounted, votesNeeded: 2) == [1, 2])
    }

    @Test func lastMajorityWaitsForOtherMountsToLeave() {
        let mounted: [UInt64: Bool] = [1: true, 2: true, 10: false]
        #expect(FarewellPolicy.releasable(pending: [1, 2], mounted: mounted, votesNeeded: 2) == [])
        #expect(FarewellPolicy.releasable(pending: [1, 2, 10], mounted: mounted, votesNeeded: 2) == [1, 2, 10])
    }

    /// A member whose locks are still being recovered cannot go yet: the rest of the last
    /// majority waits for it instead of leaving it alone without a quorum.
    @Test func lastMajorityWaitsForAMemberStillRecovering() {
        let mounted: [UInt64: Bool] = [1: true, 2: true]
        #expect(FarewellPolicy.releasable(pending: [1, 2], mounted: mounted, votesNeeded: 2, recovering: [2]) == [])
        #expect(FarewellPolicy.releasable(pending: [1, 2], mounted: mounted, votesNeeded: 2, recovering: []) == [1, 2])
        // with a majority staying, the others go
        let three: [UInt64: Bool] = [1: true, 2: true, 3: true]
        #expect(FarewellPolicy.releasable(pending: [1, 2], mounted: three, votesNeeded: 2, recovering: [2]) == [1])
    }

    @Test func alreadyProcessedFarewellsAreReleased() {
        #expect(FarewellPolicy.releasable(pending: [7], mounted: [1: true], votesNeeded: 1) == [7])
    }

    @Test func oneOfThreeAtATimeUntilTheLastTwo() {
        // three members leave one by one: the first goes, the last two must go together
        var mounted: [UInt64: Bool] = [1: true, 2: true, 3: true]
        #expect(FarewellPolicy.releasable(pending: [1, 2], mounted: mounted, votesNeeded: 2) == [1])
        mounted[1] = nil
        #expect(FarewellPolicy.releasable(pending: [2], mounted: mounted, votesNeeded: 2) == [])
        #expect(FarewellPolicy.releasable(pending: [2, 3], mounted: mounted, votesNeeded: 2) == [2, 3])
    }
}
