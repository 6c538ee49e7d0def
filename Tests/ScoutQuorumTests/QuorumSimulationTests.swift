#if canImport(Glibc)
import Glibc
#endif
import ScoutQuorum
import Testing

/// Environment knobs of the simulation: `SCOUT_SIM_SEEDS=N` runs seeds 0..<N (default 300),
/// `SCOUT_SEED=S` replays one seed, `SCOUT_SIM_TRACE=1` prints its trace.
enum SimulationEnvironment {
    static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        return String(cString: raw)
    }

    /// Seeds to run, or a description of a malformed setting.
    static var seeds: Result<[UInt64], SettingError> {
        if let text = value("SCOUT_SEED") {
            guard let seed = UInt64(text) else { return .failure(SettingError(text: "SCOUT_SEED=\(text) is not a u64")) }
            return .success([seed])
        }
        if let text = value("SCOUT_SIM_SEEDS") {
            guard let n = Int(text), n > 0 else { return .failure(SettingError(text: "SCOUT_SIM_SEEDS=\(text) is not a positive count")) }
            return .success((0..<UInt64(n)).map { $0 })
        }
        return .success((0..<300).map { $0 })
    }

    static var tracing: Bool { value("SCOUT_SIM_TRACE").map { $0 != "0" && !$0.isEmpty } ?? false }

    struct SettingError: Error, CustomStringConvertible {
        var text: String
        var description: String { text }
    }
}

@Suite("Quorum simulation")
struct QuorumSimulationTests {
    static let chunks = 8

    @Test("seeded multi-member runs keep every invariant", arguments: 0..<chunks)
    func seeds(chunk: Int) async throws {
        let all = try SimulationEnvironment.seeds.get()
        let mine = all.enumerated().filter { $0.offset % Self.chunks == chunk }.map(\.element)
        let tracing = SimulationEnvironment.tracing && all.count == 1
        var total = QuorumSimulation.Stats()
        for seed in mine {
            // the runs are CPU-bound: let other tests' tasks use the cooperative threads between seeds
            await Task.yield()
            let sim = QuorumSimulation(seed: seed, tracing: tracing)
            sim.run()
            if tracing {
                print(sim.summary)
                for line in sim.trace { print(line) }
            }
            total.add(sim.stats)
            if sim.invariants.violations.isEmpty {
                // every calm phase reached a stable leader
                #expect(sim.stats.calmPhases == sim.cycles + 1, "\(sim.summary)")
            } else {
                let lines = sim.invariants.violations.map(\.description).joined(separator: "\n  ")
                Issue.record("""
                    \(sim.summary) failed:
                      \(lines)
                    replay: SCOUT_SEED=\(seed) SCOUT_SIM_TRACE=1 swift test --filter QuorumSimulationTests
                    """)
            }
        }
        guard !mine.isEmpty else { return }
        print(
            "quorum simulation chunk \(chunk): \(mine.count) seeds, \(total.events) events, \(total.virtualNs / 1_000_000_000) s virtual, "
                + "\(total.elections) candidacies, \(total.leaders) elected, \(total.crashes) crashes, \(total.fenceKills) fence kills, "
                + "\(total.fencesRequested) fences (\(total.fenceFailures) failed, \(total.fenceTimeouts) timed out), "
                + "\(total.serverFailures) server failures, \(total.invalidMessages) invalid datagrams, \(total.duplicateVotes) duplicate votes, "
                + "\(total.newerLeaderOnDisk) newer-leader step-downs, \(total.fenceCheckFailed) unreadable fence checks, "
                + "\(total.deferredElections) deferred elections, max time to a stable leader \(total.maxTimeToStableNs / 1_000_000) ms")
        if mine.count >= 20 {
            #expect(total.leaders > 0)
            #expect(total.crashes > 0)
            #expect(total.fencesRequested > 0)
            #expect(total.invalidMessages > 0)
        }
    }
}
