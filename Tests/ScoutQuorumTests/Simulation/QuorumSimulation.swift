import ScoutFormat
import ScoutQuorum
import ScoutTestSupport

/// A seeded simulation of a whole quorum: several members running ``QuorumStateMachine`` with
/// a virtual clock, a lossy network, a shared disk of quorum blocks, servers that take random
/// time to start and stop, a fencing agent, crashes, pauses, partitions and unmounts.
///
/// Each member is driven the way the service drives it: one input at a time; actions carried
/// out in order, durability actions (block writes and reads) taking time during which new
/// inputs wait; messages that arrived are handled before a timer that is due (lesson 5).
/// A crash loses everything but the member's quorum block (an in-flight write may or may not
/// land). Fencing kills the fenced mount.
///
/// The run alternates calm phases (no faults; a minority may be kept down or cut off) and
/// chaos phases. Safety is checked after every step (``QuorumInvariants``); liveness in every
/// calm phase: within ``livenessBound`` a single leader with its server up must be followed
/// by every member of the connected majority, and stay so for two seconds.
final class QuorumSimulation {
    enum Event {
        case deliver(to: Int, from: Int, network: Int, bytes: [UInt8])
        case timer(slot: Int, incarnation: Int, generation: Int)
        case ioDone(slot: Int, incarnation: Int)
        case input(slot: Int, incarnation: Int, QuorumInput)
        case server(slot: Int, incarnation: Int, generation: Int, ServerStep)
        case fenceDone(id: Int)
        case restart(slot: Int)
        case pauseEnd(slot: Int)
        case chaos
        case heal(generation: Int)
        case calm
        case chaosPhase
        case calmDeadline(generation: Int)
    }

    enum ServerStep {
        case fenceTimeout, startupDone, startupFailed, stopDone, failOnItsOwn
    }

    enum MemberStatus { case down, running, unmounted }

    enum PendingIO {
        case write(QuorumBlock.Event, UInt64)
        case read
    }

    struct SimServer {
        var generation = 0
        var status = QuorumServerStatus.down
        var term: UInt64 = 0
        var waiting: Set<Int> = []
        var waitingForFences = false
        var active = false
    }

    final class Member {
        let slot: Int
        var incarnation = 0
        var rid: UInt64 = 0
        var status = MemberStatus.down
        var machine: QuorumStateMachine?
        var inbox: [QuorumInput] = []
        var inboxHead = 0
        var actions: [QuorumAction] = []
        var actionHead = 0
        var io: PendingIO?
        var pausedUntil = MonotonicInstant.zero
        var timerDeadline: MonotonicInstant?
        var timerGeneration = 0
        var fencesForStart: [Int] = []
        var server = SimServer()
        var heldDown = false
        var slowDisk = false
        var forcedUnmount = false
        var lastReport = MonotonicInstant.zero
        var unmountRequested = false
        /// The last heartbeat the machine handled: sender and time.
        var lastHeartbeat: (from: Int, at: MonotonicInstant)?

        init(slot: Int) { self.slot = slot }

        var identity: QuorumInvariants.Identity { .init(slot: slot, rid: rid) }
        var pendingInputs: Int { inbox.count - inboxHead }
    }

    struct Conditions {
        var loss = 0.0
        var duplicate = 0.0
        var corrupt = 0.0
        var delayMs: ClosedRange<Double> = 0.1...5
        var longDelay = 0.0
        var longDelayMs: ClosedRange<Double> = 50...500
    }

    enum FenceOutcome { case success, failure }

    struct Fence {
        var request: QuorumFenceRequest
        var requester: Int
        var incarnation: Int
        var outcome: FenceOutcome
        var finished = false
    }

    /// Counts of what happened, summed over seeds to show what the runs exercised.
    struct Stats {
        var events = 0
        var inputs = 0
        var elections = 0
        var leaders = 0
        var crashes = 0
        var fenceKills = 0
        var fencesRequested = 0
        var fenceFailures = 0
        var fenceTimeouts = 0
        var serverStarts = 0
        var serverFailures = 0
        var unmounts = 0
        var partitions = 0
        var pauses = 0
        var invalidMessages = 0
        var duplicateVotes = 0
        var deferredElections = 0
        var newerLeaderOnDisk = 0
        var fenceCheckFailed = 0
        var resignations = 0
        var ignored: [QuorumIgnoredReason: Int] = [:]
        var calmPhases = 0
        var maxTimeToStableNs: UInt64 = 0
        var virtualNs: UInt64 = 0

        mutating func add(_ o: Stats) {
            events += o.events; inputs += o.inputs; elections += o.elections; leaders += o.leaders
            crashes += o.crashes; fenceKills += o.fenceKills; fencesRequested += o.fencesRequested
            fenceFailures += o.fenceFailures; fenceTimeouts += o.fenceTimeouts; serverStarts += o.serverStarts
            serverFailures += o.serverFailures; unmounts += o.unmounts; partitions += o.partitions
            pauses += o.pauses; invalidMessages += o.invalidMessages; duplicateVotes += o.duplicateVotes
            deferredElections += o.deferredElections; newerLeaderOnDisk += o.newerLeaderOnDisk
            fenceCheckFailed += o.fenceCheckFailed; resignations += o.resignations
            for (k, v) in o.ignored { ignored[k, default: 0] += v }
            calmPhases += o.calmPhases
            maxTimeToStableNs = max(maxTimeToStableNs, o.maxTimeToStableNs)
            virtualNs += o.virtualNs
        }
    }

    static let fsid: UInt64 = 0x5c0f_f5ee_d000_0001
    static let fenceTimeoutNs = UInt64(Format.quorumFenceTimeoutMs) * 1_000_000
    static let inboxLimit = 1000

    let seed: UInt64
    let slots: [Int]
    let memberSet: SlotSet
    let heartbeatTimeoutMs: Int
    let cycles: Int
    /// How long a calm phase may take to settle on a leader with a running server.
    let livenessBound: UInt64
    private(set) var invariants: QuorumInvariants
    private(set) var stats = Stats()
    /// Lines of the trace, when tracing.
    private(set) var trace: [String] = []
    let tracing: Bool

    private var rng: SplitMix64
    private var queue = SimEventQueue<Event>()
    private var members: [Member]
    private var disk: [QuorumBlock]
    private var conditions = Conditions()
    private var groups: [Int]
    private var partitionGeneration = 0
    private var networkGeneration = 0
    private var fences: [Fence] = []
    private var calm = true
    private var calmGroup: [Int] = []
    private var calmStart = MonotonicInstant.zero
    private var calmGeneration = 0
    private var stableSince: MonotonicInstant?
    private var stableTerm: UInt64 = 0
    private var calmPhasesDone = 0
    private var finished = false

    var now: MonotonicInstant { queue.now }

    init(seed: UInt64, tracing: Bool = false) {
        self.seed = seed
        self.tracing = tracing
        var rng = SplitMix64(seed: seed ^ 0x51_ae5d_c0ff_ee00)
        let count = rng.pick([1, 2, 2, 3, 3, 3, 3, 4, 5, 5, 5])
        var pool = Array(0..<Format.quorumMaxSlots)
        var chosen: [Int] = []
        for _ in 0..<count { chosen.append(pool.remove(at: rng.below(pool.count))) }
        slots = chosen.sorted()
        memberSet = SlotSet(slots)
        heartbeatTimeoutMs = rng.pick([2000, 2000, 3000, 4000, 5000, 10000])
        cycles = 2 + rng.below(2)
        livenessBound = UInt64(heartbeatTimeoutMs + 30_000) * 1_000_000
        invariants = QuorumInvariants(votesNeeded: memberSet.count < 3 ? 1 : memberSet.count / 2 + 1)
        members = (0..<Format.quorumMaxSlots).map { Member(slot: $0) }
        groups = Array(repeating: 0, count: Format.quorumMaxSlots)
        disk = (0..<Format.quorumMaxSlots).map {
            QuorumBlock(hdr: BlockHeader(magic: BlockMagic.quorum.rawValue, fsid: Self.fsid, seq: 1, blkno: Format.quorumBlkno + UInt64($0)))
        }
        self.rng = rng
    }

    var votesNeeded: Int { invariants.votesNeeded }

    /// A one-line description of the cluster this seed made.
    var summary: String {
        "seed \(seed): slots \(slots), heartbeat timeout \(heartbeatTimeoutMs) ms, \(cycles) chaos cycles"
    }

    // MARK: - running

    /// Runs to the end (or the first violation). Bounded in events and virtual time.
    func run(maxEvents: Int = 3_000_000) {
        for slot in slots {
            queue.schedule(.restart(slot: slot), afterNanoseconds: rng.ms(0...2000))
        }
        queue.schedule(.calm, at: .zero)
        let limit = MonotonicInstant.milliseconds(3_600_000)
        while !finished, invariants.violations.isEmpty, let event = queue.next() {
            stats.events += 1
            if stats.events > maxEvents || now > limit {
                invariants.fail(now, "simulation did not finish within \(maxEvents) events / \(limit)s")
                break
            }
            process(event)
            if calm && !finished { checkCalm() }
        }
        stats.virtualNs = now.nanoseconds
    }

    private func log(_ line: @autoclosure () -> String) {
        if tracing { trace.append("\(now) \(line())") }
    }

    private func process(_ event: Event) {
        switch event {
        case .deliver(let to, let from, let network, let bytes):
            deliver(to: to, from: from, network: network, bytes: bytes)
        case .timer(let slot, let incarnation, let generation):
            let m = members[slot]
            if m.incarnation == incarnation && m.timerGeneration == generation { runMember(m) }
        case .ioDone(let slot, let incarnation):
            ioDone(members[slot], incarnation: incarnation)
        case .input(let slot, let incarnation, let input):
            let m = members[slot]
            guard m.incarnation == incarnation, m.status == .running else { return }
            m.inbox.append(input)
            runMember(m)
        case .server(let slot, let incarnation, let generation, let step):
            let m = members[slot]
            guard m.incarnation == incarnation, m.server.generation == generation, m.status != .down else { return }
            serverStep(m, step)
        case .fenceDone(let id):
            fenceDone(id)
        case .restart(let slot):
            restart(members[slot])
        case .pauseEnd(let slot):
            runMember(members[slot])
        case .chaos:
            if !calm { chaosAction() }
        case .heal(let generation):
            if generation == partitionGeneration {
                log("partition healed")
                groups = Array(repeating: 0, count: Format.quorumMaxSlots)
            }
        case .calm:
            startCalm()
        case .chaosPhase:
            startChaos()
        case .calmDeadline(let generation):
            if calm && generation == calmGeneration && stableSince == nil {
                invariants.fail(now, "no stable leader among \(calmGroup) within \(livenessBound / 1_000_000) ms of the calm phase at \(calmStart)s: \(stateDump())")
            }
        }
    }

    // MARK: - members

    private func runMember(_ m: Member) {
        guard m.status == .running, m.io == nil, now >= m.pausedUntil else { return }
        var steps = 0
        while m.status == .running && m.io == nil {
            steps += 1
            if steps > 100_000 {
                invariants.fail(now, "slot \(m.slot) loop did not settle")
                return
            }
            if m.actionHead < m.actions.count {
                let action = m.actions[m.actionHead]
                m.actionHead += 1
                execute(action, m)
                continue
            }
            m.actions.removeAll(keepingCapacity: true)
            m.actionHead = 0
            guard m.machine != nil else { return }
            if m.inboxHead < m.inbox.count {
                let input = m.inbox[m.inboxHead]
                m.inboxHead += 1
                if m.inboxHead == m.inbox.count {
                    m.inbox.removeAll(keepingCapacity: true)
                    m.inboxHead = 0
                }
                feed(input, m)
                continue
            }
            if let deadline = m.timerDeadline, now >= deadline {
                m.timerDeadline = nil
                feed(.receiveTimedOut, m)
                continue
            }
            return
        }
    }

    private func feed(_ input: QuorumInput, _ m: Member) {
        guard var machine = m.machine else { return }
        let transition = machine.handle(input, now: now)
        m.machine = machine
        stats.inputs += 1
        if let reason = transition.ignored { stats.ignored[reason, default: 0] += 1 }
        if tracing {
            let shown: String
            switch input {
            case .start(let b): shown = "start(greatest term \(b.greatestTerm))"
            case .quorumBlocksRead: shown = "quorumBlocksRead"
            default: shown = "\(input)"
            }
            log("slot \(m.slot)#\(m.incarnation) \(shown) -> \(transition.actions.map(\.description).joined(separator: "; "))\(transition.ignored.map { " ignored \($0)" } ?? "") [term \(machine.term) \(machine.role) vote \(machine.vote)]")
        }
        m.actions.append(contentsOf: transition.actions)
        if case .received(let message) = input, message.type == .heartbeat {
            m.lastHeartbeat = (message.fromSlot, now)
        }
        if case .start = input {
            invariants.started(m.identity, machine: machine, now: now)
        } else {
            invariants.afterStep(m.identity, machine: machine, now: now)
        }
    }

    private func execute(_ action: QuorumAction, _ m: Member) {
        switch action {
        case .writeEvent(let event, let term):
            m.io = .write(event, term)
            queue.schedule(.ioDone(slot: m.slot, incarnation: m.incarnation), afterNanoseconds: ioLatency(m))
        case .readQuorumBlocks:
            m.io = .read
            queue.schedule(.ioDone(slot: m.slot, incarnation: m.incarnation), afterNanoseconds: ioLatency(m))
        case .send(let type, let term, let to):
            send(m, type, term, to: [to], voteFor: to)
        case .broadcast(let type, let term):
            send(m, type, term, to: slots.filter { $0 != m.slot }, voteFor: nil)
        case .requestFence(let request):
            requestFence(request, from: m)
        case .startServer(let term):
            startServer(m, term: term)
        case .stopServer(let term):
            stopServer(m, term: term)
        case .note(let note):
            noted(note, m)
        case .wakeAt(let deadline):
            m.timerDeadline = deadline
            m.timerGeneration += 1
            queue.schedule(.timer(slot: m.slot, incarnation: m.incarnation, generation: m.timerGeneration), at: deadline)
        case .stopped:
            m.machine = nil
            if m.forcedUnmount {
                killServer(m)
            } else if m.server.status != .down {
                invariants.fail(now, "slot \(m.slot) quorum stopped while its server is \(m.server.status)")
            }
            m.status = .unmounted
            m.timerDeadline = nil
            log("slot \(m.slot)#\(m.incarnation) unmounted")
            if !m.heldDown {
                queue.schedule(.restart(slot: m.slot), afterNanoseconds: rng.ms(500...5000))
            }
        }
    }

    private func noted(_ note: QuorumNote, _ m: Member) {
        switch note {
        case .candidate: stats.elections += 1
        case .elected: stats.leaders += 1
        case .duplicateVote: stats.duplicateVotes += 1
        case .electionDeferredServerRunning: stats.deferredElections += 1
        case .newerLeaderOnDisk: stats.newerLeaderOnDisk += 1
        case .fenceCheckFailed: stats.fenceCheckFailed += 1
        case .resigned: stats.resignations += 1
        case .leaderSawGreaterTerm, .termExhausted:
            break
        case .messageFromOwnSlot, .sameTermLeader:
            invariants.fail(now, "slot \(m.slot): \(note) (one mount per slot in the simulation)")
        }
    }

    private func ioLatency(_ m: Member) -> UInt64 {
        if m.slowDisk && rng.chance(0.2) { return rng.ms(100...1500) }
        return rng.ms(0.05...2)
    }

    private func ioDone(_ m: Member, incarnation: Int) {
        guard m.incarnation == incarnation, m.status == .running, let io = m.io else { return }
        m.io = nil
        switch io {
        case .write(let event, let term):
            applyWrite(m, event, term)
        case .read:
            feed(.quorumBlocksRead(readBlocks(mayFail: !calm)), m)
        }
        runMember(m)
    }

    private func applyWrite(_ m: Member, _ event: QuorumBlock.Event, _ term: UInt64) {
        var block = disk[m.slot]
        if event != .begin && block[.begin].rid != m.rid {
            invariants.fail(now, "slot \(m.slot) rid \(m.rid): BEGIN rid \(block[.begin].rid) is not ours")
        }
        block.writeNr += 1
        block[event] = QuorumEvent(
            writeNr: block.writeNr, rid: m.rid, term: term,
            ts: Timespec(sec: now.nanoseconds / 1_000_000_000, nsec: UInt32(now.nanoseconds % 1_000_000_000)))
        disk[m.slot] = block
        if event == .elect { invariants.elected(m.identity, term: term, now: now) }
    }

    private func persistedTerm(_ slot: Int) -> UInt64 {
        disk[slot].events.reduce(0) { $1.rid != 0 ? max($0, $1.term) : $0 }
    }

    private func readBlocks(mayFail: Bool) -> QuorumBlockSet {
        var set = QuorumBlockSet()
        for slot in slots { set[slot] = disk[slot] }
        if mayFail && rng.chance(0.02) {
            let bad = rng.pick(slots)
            set[bad] = nil
            set.unreadable.insert(bad)
        }
        return set
    }

    private func restart(_ m: Member) {
        guard m.status != .running, !m.heldDown, !finished else { return }
        m.incarnation += 1
        m.rid = rng.next() | 1
        m.status = .running
        m.inbox.removeAll()
        m.inboxHead = 0
        m.actions.removeAll()
        m.actionHead = 0
        m.io = nil
        m.timerDeadline = nil
        m.pausedUntil = now
        m.forcedUnmount = false
        m.unmountRequested = false
        m.lastHeartbeat = nil
        m.fencesForStart = []
        m.server = SimServer(generation: m.server.generation + 1)
        let configuration: QuorumMachineConfiguration
        do {
            configuration = try QuorumMachineConfiguration(
                slot: m.slot, members: memberSet, rid: m.rid, heartbeatTimeoutMs: heartbeatTimeoutMs, seed: rng.next())
        } catch {
            invariants.fail(now, "configuration rejected: \(error)")
            return
        }
        m.machine = QuorumStateMachine(configuration: configuration)
        log("slot \(m.slot)#\(m.incarnation) starts, rid \(String(m.rid, radix: 16))")
        feed(.start(readBlocks(mayFail: false)), m)
        runMember(m)
    }

    private func crash(_ m: Member, why: String) {
        guard m.status != .down else { return }
        if m.status == .running, case .write(let event, let term) = m.io, rng.chance(0.5) {
            applyWrite(m, event, term)
        }
        log("slot \(m.slot)#\(m.incarnation) crashes (\(why))")
        killServer(m)
        m.status = .down
        m.machine = nil
        m.io = nil
        m.inbox.removeAll()
        m.inboxHead = 0
        m.actions.removeAll()
        m.actionHead = 0
        m.timerDeadline = nil
        m.fencesForStart = []
        if !m.heldDown {
            queue.schedule(.restart(slot: m.slot), afterNanoseconds: calm ? rng.ms(200...2000) : rng.ms(300...8000))
        }
    }

    // MARK: - network

    private func connected(_ a: Int, _ b: Int) -> Bool { groups[a] == groups[b] }

    private func send(_ m: Member, _ type: QuorumMessageType, _ term: UInt64, to targets: [Int], voteFor: Int?) {
        invariants.sent(m.identity, type: type, term: term, to: voteFor, persistedTerm: persistedTerm(m.slot), now: now)
        let bytes = QuorumMessage(fsid: Self.fsid, term: term, type: type, from: UInt8(m.slot)).encoded()
        for target in targets where target != m.slot {
            guard connected(m.slot, target), !rng.chance(conditions.loss) else { continue }
            let copies = rng.chance(conditions.duplicate) ? 2 : 1
            for _ in 0..<copies {
                var payload = bytes
                if rng.chance(conditions.corrupt) {
                    if rng.chance(0.2) {
                        payload.removeLast(rng.below(32) + 1)
                    } else {
                        payload[rng.below(32)] ^= UInt8(1) << UInt8(rng.below(8))
                    }
                }
                let delay = rng.chance(conditions.longDelay) ? rng.ms(conditions.longDelayMs) : rng.ms(conditions.delayMs)
                queue.schedule(.deliver(to: target, from: m.slot, network: networkGeneration, bytes: payload), afterNanoseconds: delay)
            }
        }
    }

    private func deliver(to: Int, from: Int, network: Int, bytes: [UInt8]) {
        let m = members[to]
        guard network == networkGeneration, connected(from, to), m.status == .running, m.pendingInputs < Self.inboxLimit else { return }
        let message: QuorumMessage
        do {
            message = try QuorumMessage.decode(bytes, fsid: Self.fsid, members: memberSet)
        } catch {
            stats.invalidMessages += 1
            return
        }
        m.inbox.append(.received(message))
        runMember(m)
    }

    // MARK: - servers and fencing

    private func report(_ m: Member, _ status: QuorumServerStatus, term: UInt64) {
        let at = max(now.advanced(byNanoseconds: rng.ms(0...5)), m.lastReport)
        m.lastReport = at
        queue.schedule(.input(slot: m.slot, incarnation: m.incarnation, .serverStatus(status, term: term)), at: at)
    }

    private func startServer(_ m: Member, term: UInt64) {
        stats.serverStarts += 1
        invariants.serverStarted(m.identity, term: term, now: now)
        if m.server.status != .down {
            invariants.fail(now, "slot \(m.slot) asked to start a server while one is \(m.server.status)")
        }
        m.server.generation += 1
        m.server.status = .starting
        m.server.term = term
        m.server.active = false
        let requested = m.fencesForStart
        m.fencesForStart = []
        report(m, .starting, term: term)
        if requested.contains(where: { fences[$0].finished && fences[$0].outcome == .failure }) {
            queue.schedule(.server(slot: m.slot, incarnation: m.incarnation, generation: m.server.generation, .startupFailed), afterNanoseconds: 0)
            return
        }
        m.server.waiting = Set(requested.filter { !fences[$0].finished })
        if m.server.waiting.isEmpty {
            fencesDone(m)
        } else {
            m.server.waitingForFences = true
            queue.schedule(.server(slot: m.slot, incarnation: m.incarnation, generation: m.server.generation, .fenceTimeout), afterNanoseconds: Self.fenceTimeoutNs)
        }
    }

    private func fencesDone(_ m: Member) {
        m.server.waitingForFences = false
        m.server.active = true
        invariants.serverActive(m.identity, term: m.server.term, now: now)
        let fails = !calm && rng.chance(0.05)
        queue.schedule(.server(slot: m.slot, incarnation: m.incarnation, generation: m.server.generation, fails ? .startupFailed : .startupDone), afterNanoseconds: rng.ms(50...3000))
    }

    private func stopServer(_ m: Member, term: UInt64) {
        guard m.server.term == term, m.server.status == .starting || m.server.status == .up else { return }
        m.server.generation += 1
        m.server.waiting = []
        m.server.waitingForFences = false
        m.server.status = .stopping
        report(m, .stopping, term: term)
        let delay = rng.chance(0.1) ? rng.ms(3000...6000) : rng.ms(0...3000)
        queue.schedule(.server(slot: m.slot, incarnation: m.incarnation, generation: m.server.generation, .stopDone), afterNanoseconds: delay)
    }

    private func serverStep(_ m: Member, _ step: ServerStep) {
        let generation = m.server.generation
        switch step {
        case .fenceTimeout:
            guard m.server.waitingForFences else { return }
            stats.fenceTimeouts += 1
            m.server.waitingForFences = false
            m.server.waiting = []
            failServer(m)
        case .startupFailed:
            guard m.server.status == .starting else { return }
            failServer(m)
        case .startupDone:
            guard m.server.status == .starting else { return }
            m.server.status = .up
            report(m, .up, term: m.server.term)
            if !calm && rng.chance(0.1) {
                queue.schedule(.server(slot: m.slot, incarnation: m.incarnation, generation: generation, .failOnItsOwn), afterNanoseconds: rng.ms(1000...20000))
            }
        case .failOnItsOwn:
            guard !calm, m.server.status == .up else { return }
            failServer(m)
        case .stopDone:
            guard m.server.status == .stopping else { return }
            m.server.status = .down
            if m.server.active { invariants.serverInactive(m.identity) }
            m.server.active = false
            report(m, .down, term: m.server.term)
        }
    }

    private func failServer(_ m: Member) {
        stats.serverFailures += 1
        m.server.status = .stopping
        report(m, .stopping, term: m.server.term)
        queue.schedule(.server(slot: m.slot, incarnation: m.incarnation, generation: m.server.generation, .stopDone), afterNanoseconds: rng.ms(0...500))
    }

    private func killServer(_ m: Member) {
        if m.server.active { invariants.serverInactive(m.identity) }
        m.server = SimServer(generation: m.server.generation + 1)
    }

    private func requestFence(_ request: QuorumFenceRequest, from m: Member) {
        stats.fencesRequested += 1
        guard let machine = m.machine, request.term <= machine.term, request.rid != m.rid else {
            invariants.fail(now, "slot \(m.slot) asked to fence \(request) from term \(m.machine?.term ?? 0)")
            return
        }
        let delay: UInt64
        var outcome = FenceOutcome.success
        if calm {
            delay = rng.ms(50...3000)
        } else if rng.chance(0.05) {
            outcome = .failure
            delay = rng.ms(100...3000)
        } else if rng.chance(0.1) {
            delay = rng.ms(10_000...20_000)
        } else {
            delay = rng.ms(50...5000)
        }
        fences.append(Fence(request: request, requester: m.slot, incarnation: m.incarnation, outcome: outcome))
        m.fencesForStart.append(fences.count - 1)
        queue.schedule(.fenceDone(id: fences.count - 1), afterNanoseconds: delay)
    }

    private func fenceDone(_ id: Int) {
        fences[id].finished = true
        let fence = fences[id]
        let requester = members[fence.requester]
        let wanted = requester.incarnation == fence.incarnation && requester.status == .running
            && (requester.server.waiting.contains(id) || requester.fencesForStart.contains(id))
        guard wanted else { return }
        if fence.outcome == .failure {
            stats.fenceFailures += 1
            log("fence \(fence.request) failed")
            if requester.server.waiting.contains(id) {
                requester.server.waiting = []
                requester.server.waitingForFences = false
                failServer(requester)
            }
            return
        }
        log("fenced \(fence.request)")
        invariants.fence(rid: fence.request.rid)
        for m in members where m.rid == fence.request.rid && m.status != .down {
            stats.fenceKills += 1
            crash(m, why: "fenced")
        }
        if requester.server.waiting.remove(id) != nil && requester.server.waiting.isEmpty && requester.server.waitingForFences {
            fencesDone(requester)
        }
    }

    // MARK: - phases

    private func startCalm() {
        calm = true
        calmGeneration += 1
        calmStart = now
        stableSince = nil
        conditions = Conditions(loss: 0, duplicate: 0.02, corrupt: 0, delayMs: 0.1...5, longDelay: 0)
        networkGeneration += 1
        partitionGeneration += 1
        groups = Array(repeating: 0, count: Format.quorumMaxSlots)
        // maybe keep a minority down or cut off
        var excluded: [Int] = []
        let spare = slots.count - votesNeeded
        if spare > 0 && rng.chance(0.35) {
            var pool = slots
            for _ in 0..<(1 + rng.below(spare)) { excluded.append(pool.remove(at: rng.below(pool.count))) }
        }
        let isolate = slots.count >= 3 && rng.chance(0.5)
        calmGroup = slots.filter { !excluded.contains($0) }
        log("calm phase, group \(calmGroup), \(isolate ? "isolated" : "down") \(excluded)")
        for slot in slots {
            let m = members[slot]
            m.slowDisk = false
            if excluded.contains(slot) {
                if isolate {
                    groups[slot] = 1
                } else {
                    m.heldDown = true
                    crash(m, why: "kept down for the calm phase")
                }
            } else {
                m.heldDown = false
                if m.pausedUntil > now { m.pausedUntil = now }
                if m.status != .running {
                    queue.schedule(.restart(slot: slot), afterNanoseconds: rng.ms(0...1000))
                } else {
                    runMember(m)
                }
            }
        }
        queue.schedule(.calmDeadline(generation: calmGeneration), afterNanoseconds: livenessBound)
    }

    private func checkCalm() {
        var leaderTerm: UInt64?
        var leaderSlot = -1
        var leaders = 0
        var stable = true
        for slot in calmGroup {
            let m = members[slot]
            guard m.status == .running, !m.unmountRequested, let machine = m.machine, machine.lifecycle == .running else {
                stable = false
                break
            }
            if machine.isLeader && m.server.status == .up && machine.server == .running(term: machine.term, status: .up, stopRequested: false) {
                leaders += 1
                leaderTerm = machine.term
                leaderSlot = slot
            }
        }
        // everyone follows the one leader (a member restarted above its term follows it too)
        // and has heard it since the calm phase began
        if stable, leaders == 1, let term = leaderTerm {
            for slot in calmGroup {
                let m = members[slot]
                let heard = slot == leaderSlot || (m.lastHeartbeat.map { $0.from == leaderSlot && $0.at >= calmStart } ?? false)
                guard heard, let machine = m.machine, machine.leader == leaderSlot, machine.term >= term else {
                    stable = false
                    break
                }
            }
        } else {
            stable = false
        }
        if let since = stableSince {
            if !stable || leaderTerm != stableTerm {
                invariants.fail(now, "calm phase lost its leader of term \(stableTerm) (stable since \(since)s): \(stateDump())")
                return
            }
            if now.nanoseconds(since: since) >= 2_000_000_000 {
                endCalm()
            }
        } else if stable, let term = leaderTerm {
            stableSince = now
            stableTerm = term
            let took = now.nanoseconds(since: calmStart)
            stats.maxTimeToStableNs = max(stats.maxTimeToStableNs, took)
            log("stable: leader of term \(term) after \(took / 1_000_000) ms")
        }
    }

    private func endCalm() {
        calm = false
        calmPhasesDone += 1
        stats.calmPhases += 1
        if calmPhasesDone > cycles {
            finished = true
            return
        }
        queue.schedule(.chaosPhase, afterNanoseconds: 0)
    }

    private func startChaos() {
        calm = false
        log("chaos phase")
        conditions = randomConditions()
        partitionGeneration += 1
        groups = Array(repeating: 0, count: Format.quorumMaxSlots)
        for slot in slots {
            let m = members[slot]
            if m.heldDown {
                m.heldDown = false
                queue.schedule(.restart(slot: slot), afterNanoseconds: rng.ms(0...3000))
            }
        }
        queue.schedule(.chaos, afterNanoseconds: rng.ms(100...1500))
        queue.schedule(.calm, afterNanoseconds: rng.ms(10_000...30_000))
    }

    private func randomConditions() -> Conditions {
        var c = Conditions()
        c.loss = rng.pick([0, 0, 0.01, 0.05, 0.2, 0.5])
        c.duplicate = rng.pick([0, 0.02, 0.1])
        c.corrupt = rng.pick([0, 0.001, 0.01])
        c.delayMs = 0.1...rng.pick([1, 5, 30])
        c.longDelay = rng.pick([0, 0.01, 0.05])
        c.longDelayMs = 50...Double(min(2000, heartbeatTimeoutMs / 2))
        return c
    }

    private func chaosAction() {
        queue.schedule(.chaos, afterNanoseconds: rng.ms(100...2500))
        let running = slots.filter { members[$0].status == .running }
        switch rng.below(100) {
        case 0..<20:
            guard !running.isEmpty else { return }
            stats.crashes += 1
            crash(members[rng.pick(running)], why: "chaos")
        case 20..<30:
            guard !running.isEmpty else { return }
            let m = members[rng.pick(running)]
            let until = now.advanced(byNanoseconds: rng.ms(200...Double(heartbeatTimeoutMs) * 1.5))
            stats.pauses += 1
            log("slot \(m.slot) pauses until \(until)")
            m.pausedUntil = max(m.pausedUntil, until)
            queue.schedule(.pauseEnd(slot: m.slot), at: m.pausedUntil)
        case 30..<42:
            guard slots.count > 1, groups.allSatisfy({ $0 == 0 }) else { return }
            stats.partitions += 1
            partitionGeneration += 1
            var any = [false, false]
            for slot in slots {
                groups[slot] = rng.below(2)
                any[groups[slot]] = true
            }
            if !(any[0] && any[1]) { groups[slots[0]] = 1 - groups[slots[0]] }
            log("partition \(slots.map { "\($0):\(groups[$0])" })")
            queue.schedule(.heal(generation: partitionGeneration), afterNanoseconds: rng.ms(1000...Double(heartbeatTimeoutMs) * 2))
        case 42..<57:
            conditions = randomConditions()
        case 57..<65:
            let up = running.filter { members[$0].server.status == .up }
            guard !up.isEmpty else { return }
            failServer(members[rng.pick(up)])
        case 65..<73:
            guard !running.isEmpty else { return }
            let m = members[rng.pick(running)]
            guard m.machine?.lifecycle == .running, !m.unmountRequested else { return }
            stats.unmounts += 1
            m.forcedUnmount = rng.chance(0.25)
            m.unmountRequested = true
            log("slot \(m.slot) unmounts\(m.forcedUnmount ? " (forced)" : "")")
            m.inbox.append(m.forcedUnmount ? .forcedShutdown : .shutdown)
            runMember(m)
        case 73..<81:
            guard !running.isEmpty else { return }
            let m = members[rng.pick(running)]
            let ms = rng.chance(0.2) ? rng.pick([0, 1999, 60_001, -5]) : 2000 + rng.below(heartbeatTimeoutMs - 1999)
            m.inbox.append(.setHeartbeatTimeout(milliseconds: ms))
            runMember(m)
        case 81..<88:
            let m = members[rng.pick(slots)]
            m.slowDisk.toggle()
        default:
            break
        }
    }

    private func stateDump() -> String {
        slots.map { slot in
            let m = members[slot]
            guard let machine = m.machine else { return "\(slot):\(m.status)" }
            return "\(slot):term \(machine.term) \(machine.role) server \(m.server.status)/\(machine.server) pending \(m.pendingInputs)"
        }.joined(separator: ", ")
    }
}
