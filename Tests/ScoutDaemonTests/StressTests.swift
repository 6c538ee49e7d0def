import CFuseKernel
import Glibc
import ScoutTestSupport
import Synchronization
import Testing

/// The multi-mount fuzzer's settings, from the environment (see docs/testing.md).
struct StressConfig: Sendable {
    var seeds: [UInt64]
    var perCluster = 10
    var threadsPerMount = 2
    var steps = 120
    var seconds = 20.0
    var opTimeout = 30.0
    var raceRounds = 15
    /// after this many hung seeds the rest are not run (each hang costs a cluster and ~1 min)
    var maxHangs = 1
    var ops = Set(StressOp.allCases)
    var opsText = ""
    static func fromEnvironment() throws -> StressConfig {
        func env(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }
        func int(_ name: String, _ def: Int) -> Int { env(name).flatMap { Int($0) } ?? def }
        var c = StressConfig(seeds: [])
        if let one = env("SCOUT_STRESS_SEED").flatMap({ UInt64($0) }) {
            c.seeds = [one]
        } else {
            let base = UInt64(env("SCOUT_STRESS_BASE").flatMap { UInt64($0) } ?? 1)
            c.seeds = (0..<UInt64(max(1, int("SCOUT_STRESS_SEEDS", 3)))).map { base + $0 }
        }
        c.perCluster = max(1, int("SCOUT_STRESS_PER_CLUSTER", c.perCluster))
        c.threadsPerMount = max(1, min(8, int("SCOUT_STRESS_THREADS", c.threadsPerMount)))
        c.steps = max(1, int("SCOUT_STRESS_STEPS", c.steps))
        c.seconds = Double(max(1, int("SCOUT_STRESS_SECONDS", Int(c.seconds))))
        c.opTimeout = Double(max(1, int("SCOUT_STRESS_OP_TIMEOUT", Int(c.opTimeout))))
        c.raceRounds = max(0, int("SCOUT_STRESS_RACES", c.raceRounds))
        c.maxHangs = max(1, int("SCOUT_STRESS_MAX_HANGS", c.maxHangs))
        c.opsText = env("SCOUT_STRESS_OPS") ?? ""
        c.ops = try StressOp.parse(c.opsText)
        return c
    }

    var workers: Int { 3 * threadsPerMount }

    func replay(_ seed: UInt64) -> String {
        var e = "SCOUT_STRESS_SEED=\(seed)"
        if threadsPerMount != 2 { e += " SCOUT_STRESS_THREADS=\(threadsPerMount)" }
        if steps != 120 { e += " SCOUT_STRESS_STEPS=\(steps)" }
        if raceRounds != 15 { e += " SCOUT_STRESS_RACES=\(raceRounds)" }
        if !opsText.isEmpty { e += " SCOUT_STRESS_OPS=\(opsText)" }
        return e + " swift test --skip-build --filter StressTests"
    }
}

/// A value shared by the fuzzer's threads.
final class Locked<T: Sendable>: Sendable {
    private let m: Mutex<T>
    init(_ v: T) { m = Mutex(v) }
    func with<R>(_ body: (inout T) -> R) -> R { m.withLock { body(&$0) } }
}

/// What a worker leaves behind: its model, its appends, its step counts per kind.
struct WorkerResult: Sendable {
    struct Append: Sendable {
        var file: String
        var seq: Int
        var mount: Int
        var step: Int
        var certain: Bool
    }
    var model = StressModel()
    var appends: [Append] = []
    var okByOp: [StressOp: Int] = [:]
    var failedByOp: [StressOp: Int] = [:]
    var steps = 0
}

/// One seed on a mounted cluster: the random phase, then the checks.
struct StressSeedRun {
    let c: Cluster
    let cfg: StressConfig
    let seed: UInt64
    let connections: [Int]
    let daemons: [pid_t]
    let monitor: StressMonitor
    let results = Locked([Int: WorkerResult]())

    init(c: Cluster, cfg: StressConfig, seed: UInt64, connections: [Int], daemons: [pid_t]) {
        self.c = c
        self.cfg = cfg
        self.seed = seed
        self.connections = connections
        self.daemons = daemons
        self.monitor = StressMonitor(seed: seed, opTimeout: cfg.opTimeout)
    }

    var dirName: String { "S\(seed)" }
    func base(_ mount: Int) -> String { c.mnt(mount) + "/" + dirName }

    /// Runs one phase under the monitor; a hang aborts the FUSE connections.
    func phase(_ bodies: [(String, @Sendable () -> Void)], seconds: Double) -> StressMonitor.Outcome {
        monitor.run(bodies, seconds: seconds, daemons: daemons, abort: connections)
    }

    /// The failures of this seed; `hung` when the cluster had to be aborted.
    func run() -> (failures: [String], hung: Bool, results: [Int: WorkerResult]) {
        let cfg = cfg
        let seed = seed
        let monitor = monitor
        let b0 = base(0)
        // set up on mount 0: the seed's directory, the threads' own directories, the shared area, append files
        let setup = phase([("stress-setup", {
            monitor.op(0, mount: 0, "setup \(b0)") {
                var dirs = ["", "/s", "/a", "/r"] + (0..<cfg.workers).map { "/t\($0)" }
                dirs += (0..<StressGenerator.sharedDirs).map { "/s/d\($0)" }
                for d in dirs where mkdir(b0 + d, 0o755) != 0 { monitor.fail("seed \(seed): setup mkdir \(b0 + d) on m0: \(Errno(errno))") }
                for i in 0..<StressGenerator.appendFiles {
                    let fd = open(b0 + "/a/log\(i)", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
                    if fd < 0 { monitor.fail("seed \(seed): setup create a/log\(i) on m0: \(Errno(errno))") } else { close(fd) }
                }
            }
        })], seconds: 30)
        if case .hung(let report) = setup { return (monitor.errors + [report], true, [:]) }
        if !monitor.errors.isEmpty { return (monitor.errors, false, [:]) }

        let deadline = monotonicSeconds() + cfg.seconds
        var bodies: [(String, @Sendable () -> Void)] = (0..<cfg.workers).map { w in ("stress-w\(w)", { self.worker(w, deadline: deadline) }) }
        if cfg.ops.contains(.race) && cfg.raceRounds > 0 {
            let race = RaceState()
            bodies += (0..<3).map { m in ("stress-race\(m)", { self.racer(m, state: race) }) }
        }
        if case .hung(let report) = phase(bodies, seconds: cfg.seconds) {
            return (monitor.errors + [report], true, results.with { $0 })
        }
        let res = results.with { $0 }
        if case .hung(let report) = phase([("stress-check", { self.check(res) })], seconds: 60) {
            return (monitor.errors + [report], true, res)
        }
        return (monitor.errors, false, res)
    }

    /// A worker: random steps on random mounts, each checked on another mount afterwards.
    func worker(_ w: Int, deadline: Double) {
        var gen = StressGenerator(seed: seed, thread: w, mounts: 3, ops: cfg.ops)
        var res = WorkerResult()
        var reported = 0
        defer {
            res.model = gen.model
            results.with { $0[w] = res }
        }
        func report(_ m: String) {
            reported += 1
            if reported <= 10 { monitor.fail("seed \(seed) thread \(w): \(m)") }
        }
        for n in 0..<cfg.steps where monotonicSeconds() < deadline {
            let s = gen.next()
            res.steps = n + 1
            let what = "step \(n) \(s.op.rawValue) \(s.action.path)"
            let r = monitor.op(w, mount: s.mount, what) { StressExecutor.perform(s.action, base: base(s.mount)) }
            let failed = "step \(n) \(s.op.rawValue) \(s.action.path) on m\(s.mount): \(r.call) failed: \(Errno(r.errno))"
            if r.errno == ENOTCONN || r.errno == ECONNABORTED {
                // the connection was aborted (a hang elsewhere) or the daemon died: nothing more to learn
                res.failedByOp[s.op, default: 0] += 1
                report(failed)
                return
            }
            switch s.action {
            case .append(let file, let records):
                for rec in records {
                    if let (_, seq) = AppendRecord.parse(rec[...]) {
                        res.appends.append(.init(file: file, seq: seq, mount: s.mount, step: n, certain: r.errno == 0))
                    }
                }
                if r.errno != 0 {
                    res.failedByOp[s.op, default: 0] += 1
                    report(failed)
                } else {
                    res.okByOp[s.op, default: 0] += 1
                }
                continue
            case .sharedCreate, .sharedWrite, .sharedUnlink, .sharedRename, .sharedMkdir, .sharedRmdir, .sharedReaddir:
                if r.errno != 0 && !s.action.allowedErrnos.contains(r.errno) {
                    res.failedByOp[s.op, default: 0] += 1
                    report(failed + " (allowed here: \(s.action.allowedErrnos.map { String(cString: strerror($0)) }))")
                } else {
                    res.okByOp[s.op, default: 0] += 1
                }
                continue
            default:
                break
            }
            // the thread's own subtree: exactly what the model predicts, or the thread stops
            guard r.errno == s.expect else {
                res.failedByOp[s.op, default: 0] += 1
                report(s.expect == 0 ? failed : "step \(n) \(s.op.rawValue) \(s.action.path) on m\(s.mount): \(r.call) returned \(Errno(r.errno)), expected \(Errno(s.expect))")
                return
            }
            // an expected failure (RENAME_NOREPLACE onto an existing name) changes nothing
            if s.expect == 0 { gen.applied(s) }
            var problems: [String] = []
            let root = "t\(w)"
            switch s.action {
            case .readdir(let rel):
                let dir = rel == root ? "" : String(rel.dropFirst(root.count + 1))
                let want = gen.model.children(dir).map { String($0.split(separator: "/").last!) }.sorted()
                if let got = r.names?.sorted(), got != want { problems.append("readdir \(rel) on m\(s.mount): \(got), model \(want)") }
            case .mmapRead(let rel):
                let mp = String(rel.dropFirst(root.count + 1))
                if let ino = gen.model.paths[mp], let want = gen.model.inodes[ino]?.data, let got = r.bytes, got != want {
                    problems.append("mmap read \(rel) on m\(s.mount): \(StressExecutor.firstDifference(got, want))")
                }
            default:
                break
            }
            let contents = ![.xattr, .fsync, .mkdir, .rmdir, .unlink].contains(s.op)
            let model = gen.model
            problems += monitor.op(w, mount: s.check, "check of \(what) on m\(s.check)") {
                StressExecutor.touched(s.action).flatMap { StressExecutor.verify($0, base: base(s.check), model: model, root: root, contents: contents) }
            }
            if !problems.isEmpty {
                res.failedByOp[s.op, default: 0] += 1
                report("step \(n) \(s.op.rawValue) \(s.action.path) done on m\(s.mount), then seen on m\(s.check):\n    " + problems.joined(separator: "\n    "))
                return
            }
            res.okByOp[s.op, default: 0] += 1
        }
    }

    /// The racers: one per mount, each round all open one new name with O_CREAT (no O_EXCL) at
    /// once; every open must succeed and all must see one inode.
    final class RaceState: Sendable {
        let arrived = Atomic<Int>(0)
        let abandoned = Atomic<Bool>(false)
        let inodes = Locked([Int: [Int: UInt64]]())

        /// Waits (bounded) until all three racers reached barrier `n`.
        func barrier(_ n: Int, seconds: Double) -> Bool {
            arrived.add(1, ordering: .sequentiallyConsistent)
            let start = monotonicSeconds()
            while arrived.load(ordering: .sequentiallyConsistent) < 3 * (n + 1) {
                if abandoned.load(ordering: .sequentiallyConsistent) || monotonicSeconds() - start > seconds {
                    abandoned.store(true, ordering: .sequentiallyConsistent)
                    return false
                }
                usleep(200)
            }
            return true
        }
    }

    func racer(_ m: Int, state: RaceState) {
        let slot = cfg.workers + m
        var res = WorkerResult()
        defer { results.with { $0[slot] = res } }
        var rng = SplitMix64(seed: seed &+ 0x5ace_0000 &+ UInt64(m))
        for round in 0..<cfg.raceRounds {
            usleep(UInt32(rng.below(20_000)))
            guard state.barrier(2 * round, seconds: 2 * cfg.opTimeout) else { return }
            let rel = "r/n\(round)"
            let (fd, e, ino) = monitor.op(slot, mount: m, "race round \(round) open(O_CREAT) \(rel)") { () -> (Int32, Int32, UInt64) in
                let fd = open(base(m) + "/" + rel, O_CREAT | O_RDWR | O_CLOEXEC, 0o644)
                let e = errno
                var st = stat()
                if fd >= 0 { fstat(fd, &st) }
                return (fd, e, UInt64(st.st_ino))
            }
            if fd < 0 {
                res.failedByOp[.race, default: 0] += 1
                monitor.fail("seed \(seed) racer m\(m): race round \(round) open(O_CREAT) \(rel) on m\(m) failed: \(Errno(e))")
                if e == ENOTCONN || e == ECONNABORTED {
                    state.abandoned.store(true, ordering: .sequentiallyConsistent)
                    return
                }
            } else {
                close(fd)
                res.okByOp[.race, default: 0] += 1
                state.inodes.with { $0[round, default: [:]][m] = ino }
            }
            guard state.barrier(2 * round + 1, seconds: 2 * cfg.opTimeout) else { return }
            if m == 0, let inos = state.inodes.with({ $0[round] }), Set(inos.values).count > 1 {
                monitor.fail("seed \(seed) racer: race round \(round) \(rel): the mounts' opens got different inodes \(inos.sorted { $0.key < $1.key })")
            }
        }
    }

    /// After the random phase: every mount shows the same tree, each thread's subtree is its
    /// model, and every append landed exactly once, whole.
    func check(_ res: [Int: WorkerResult]) {
        var snaps: [Snapshot] = []
        for m in 0..<3 {
            let b = base(m)
            let snap = monitor.op(0, mount: m, "walk \(b)") { () -> Snapshot? in
                do throws(Errno) { return try StressExecutor.walk(b) } catch {
                    monitor.fail("seed \(seed): walk of \(b) on m\(m): \(error)")
                    return nil
                }
            }
            guard let snap else { return }
            snaps.append(snap)
        }
        for m in 1..<3 {
            let d = snapshotDiff(snaps[0], snaps[m], aName: "m0", bName: "m\(m)")
            if !d.isEmpty { monitor.fail("seed \(seed): mounts disagree after the run:\n    " + d.joined(separator: "\n    ")) }
        }
        for (w, r) in res.sorted(by: { $0.key < $1.key }) {
            var got = snaps[0].filter { $0.key.hasPrefix("t\(w)/") }
            for (k, v) in got where v.type == "d" { got[k] = SnapshotEntry(type: "d", size: -1, nlink: -1, hash: 0, xattrs: v.xattrs) }
            let d = snapshotDiff(got, r.model.snapshot(root: "t\(w)"), aName: "m0", bName: "model")
            if !d.isEmpty { monitor.fail("seed \(seed) thread \(w): subtree differs from the model at the end:\n    " + d.joined(separator: "\n    ")) }
        }
        checkAppends(res)
    }

    func checkAppends(_ res: [Int: WorkerResult]) {
        for i in 0..<StressGenerator.appendFiles {
            let rel = "a/log\(i)"
            let appends = res.flatMap { e in e.value.appends.filter { $0.file == rel }.map { (e.key, $0) } }
            guard !appends.isEmpty else { continue }
            let bytes: [UInt8]
            do throws(Errno) {
                bytes = try monitor.op(0, mount: 0, "read \(rel)") { () throws(Errno) -> [UInt8] in try readAll(base(0) + "/" + rel) }
            } catch {
                monitor.fail("seed \(seed): read \(rel) on m0: \(error)")
                continue
            }
            var problems: [String] = []
            if bytes.count % AppendRecord.size != 0 { problems.append("size \(bytes.count) is not a whole number of \(AppendRecord.size)-byte records") }
            var seen: [String: Int] = [:]
            for off in stride(from: 0, to: bytes.count - bytes.count % AppendRecord.size, by: AppendRecord.size) {
                guard let (w, s) = AppendRecord.parse(bytes[off..<(off + AppendRecord.size)]) else {
                    let text = String(decoding: bytes[off..<(off + AppendRecord.size)].map { $0 < 32 || $0 > 126 ? UInt8(ascii: ".") : $0 }, as: UTF8.self)
                    problems.append("torn or overwritten record at offset \(off): \"\(text)\"")
                    continue
                }
                seen["\(w):\(s)", default: 0] += 1
            }
            let known = Dictionary(appends.map { ("\($0.0):\($0.1.seq)", $0.1) }, uniquingKeysWith: { a, _ in a })
            for (w, a) in appends where a.certain && seen["\(w):\(a.seq)"] == nil {
                problems.append("lost: writer \(w) seq \(a.seq) (step \(a.step) on m\(a.mount), its write returned success)")
            }
            for (key, n) in seen.sorted(by: { $0.key < $1.key }) {
                if n > 1 { problems.append("record \(key) appears \(n) times") }
                if known[key] == nil { problems.append("record \(key) was never appended") }
            }
            if !problems.isEmpty {
                let shown = problems.prefix(15) + (problems.count > 15 ? ["... \(problems.count - 15) more"] : [])
                monitor.fail("seed \(seed): O_APPEND file \(rel) (\(bytes.count) bytes, \(appends.count) records appended):\n    " + shown.joined(separator: "\n    "))
            }
        }
    }
}

/// Walks every mount's whole tree (bounded) under the monitor; nil on a hang or error.
func walkAll(_ c: Cluster, monitor: StressMonitor, connections: [Int], daemons: [pid_t]) -> ([Snapshot]?, String?) {
    let snaps = Locked([Int: Snapshot]())
    let bodies: [(String, @Sendable () -> Void)] = (0..<3).map { m in
        ("stress-walk\(m)", {
            monitor.op(m, mount: m, "walk \(c.mnt(m))") {
                do throws(Errno) {
                    let s = try StressExecutor.walk(c.mnt(m))
                    snaps.with { $0[m] = s }
                } catch {
                    // a failure says whether it lasts (a second walk a moment later) and what
                    // the daemons logged as errors
                    usleep(200_000)
                    let again: String
                    do throws(Errno) {
                        _ = try StressExecutor.walk(c.mnt(m))
                        again = "a second walk 0.2 s later passed"
                    } catch {
                        again = "a second walk 0.2 s later failed too: \(error)"
                    }
                    let logged = c.logs().split(separator: "\n").filter { $0.contains(" error") || $0.contains("warning") }.suffix(20)
                    monitor.fail("walk of \(c.mnt(m)): \(error); \(again); daemon errors and warnings:\n\(logged.joined(separator: "\n"))")
                }
            }
        })
    }
    let outcome = monitor.run(bodies, seconds: 120, daemons: daemons, abort: connections)
    if case .hung(let report) = outcome { return (nil, report) }
    let s = snaps.with { $0 }
    return s.count == 3 ? ((0..<3).map { s[$0]! }, nil) : (nil, nil)
}

@Suite("stress model")
struct StressModelTests {
    @Test func generatorReplaysFromItsSeed() throws {
        let ops = try StressOp.parse("-race")
        var a = StressGenerator(seed: 77, thread: 3, mounts: 3, ops: ops)
        var b = StressGenerator(seed: 77, thread: 3, mounts: 3, ops: ops)
        var kinds = Set<StressOp>()
        for _ in 0..<2000 {
            let (x, y) = (a.next(), b.next())
            #expect(x == y)
            kinds.insert(x.op)
            if x.expect == 0 {
                a.applied(x)
                b.applied(y)
            }
            #expect(a.model.paths.count <= StressModel.maxEntries)
        }
        #expect(kinds == ops, "kinds never drawn: \(ops.subtracting(kinds))")
    }

    @Test func opsSelection() throws {
        #expect(try StressOp.parse("-append,-mmap") == Set(StressOp.allCases).subtracting([.append, .mmap]))
        #expect(try StressOp.parse("create,write") == [.create, .write])
        #expect(throws: StressConfigError.self) { try StressOp.parse("bogus") }
    }

    @Test func appendRecordsRoundTrip() {
        let r = AppendRecord.make(writer: 12, seq: 3456)
        #expect(r.count == AppendRecord.size)
        #expect(AppendRecord.parse(r[...])?.writer == 12)
        #expect(AppendRecord.parse(r[...])?.seq == 3456)
        var torn = r
        torn[20] ^= 1
        #expect(AppendRecord.parse(torn[...]) == nil)
    }

    @Test func modelRenamesSubtreesAndExchanges() {
        var m = StressModel()
        m.apply(.mkdir("d1"))
        m.apply(.create("d1/f2"))
        m.apply(.create("f3"))
        m.apply(.write("f3", offset: 2, data: [1, 2]))
        m.apply(.rename("d1", "d4", flags: 0))
        #expect(m.paths.keys.sorted() == ["d4", "d4/f2", "f3"])
        m.apply(.rename("d4", "f3", flags: renameExchange))
        #expect(m.isDir("f3") && m.paths["f3/f2"] != nil && !m.isDir("d4"))
        #expect(m.inodes[m.paths["d4"]!]!.data == [0, 0, 1, 2])
        m.apply(.link("d4", "f5"))
        #expect(m.nlink(m.paths["f5"]!) == 2)
        m.apply(.unlink("d4"))
        #expect(m.nlink(m.paths["f5"]!) == 1)
    }
}

extension RealMounts {
    /// The multi-mount fuzzer: three mounts, several threads each doing random operations on
    /// random mounts (see docs/testing.md). `make stress SEEDS=N` runs many seeds.
    @Suite(.serialized, .enabled(if: MountEnv.usable, "needs root, /dev/fuse and a built scoutfs"))
    struct StressTests {
        @Test func multiMountFuzz() throws {
            let cfg = try StressConfig.fromEnvironment()
            print("stress: seeds \(cfg.seeds.first!)...\(cfg.seeds.last!) (\(cfg.seeds.count)), \(cfg.threadsPerMount) threads per mount, \(cfg.steps) steps per thread, ops \(cfg.ops.count == StressOp.allCases.count ? "all" : cfg.ops.map(\.rawValue).sorted().joined(separator: ","))")
            var failedSeeds: [UInt64] = []
            var ok: [StressOp: Int] = [:]
            var failed: [StressOp: Int] = [:]
            var failedKinds: [StressOp: [UInt64]] = [:]
            var next = 0
            var hangs = 0
            let started = monotonicSeconds()
            // bounded: each batch runs at least one seed
            for _ in 0..<cfg.seeds.count where next < cfg.seeds.count && hangs < cfg.maxHangs {
                let batch = Array(cfg.seeds[next..<min(cfg.seeds.count, next + cfg.perCluster)])
                let c = try Cluster.make()
                defer { c.cleanup() }
                try c.mount([0, 1, 2])
                let conns = fuseConnections((0..<3).map { c.mnt($0) })
                #expect(conns.count == 3, "FUSE connections of the mounts: \(conns)")
                let connIDs = Array(conns.values)
                let daemons = registeredDaemons(runDir: c.dir + "/run")
                #expect(daemons.count == 3, "registered daemons: \(daemons)")
                var hung = false
                for seed in batch {
                    next += 1
                    let t0 = monotonicSeconds()
                    let run = StressSeedRun(c: c, cfg: cfg, seed: seed, connections: connIDs, daemons: daemons)
                    let (failures, h, res) = run.run()
                    hung = h
                    let steps = res.values.reduce(0) { $0 + $1.steps }
                    for r in res.values {
                        ok.merge(r.okByOp, uniquingKeysWith: +)
                        failed.merge(r.failedByOp, uniquingKeysWith: +)
                        for k in r.failedByOp.keys where failedKinds[k]?.last != seed { failedKinds[k, default: []].append(seed) }
                    }
                    print("stress seed \(seed): \(steps) steps, \(failures.count) failures, \(Int(monotonicSeconds() - t0)) s")
                    if !failures.isEmpty {
                        failedSeeds.append(seed)
                        Issue.record("stress seed \(seed) failed (replay: \(cfg.replay(seed))):\n\(failures.joined(separator: "\n"))")
                    }
                    if hung { break }
                }
                if hung {
                    hangs += 1
                    continue
                }
                // every mount, and a remount, end with the same tree and contents
                let monitor = StressMonitor(seed: batch[0], opTimeout: cfg.opTimeout)
                let (before, report) = walkAll(c, monitor: monitor, connections: connIDs, daemons: daemons)
                if let report {
                    Issue.record("final walk: \(report)")
                    hangs += 1
                    continue
                }
                if let before {
                    for m in 1..<3 {
                        let d = snapshotDiff(before[0], before[m], aName: "m0", bName: "m\(m)")
                        #expect(d.isEmpty, "seeds \(batch): mounts disagree at the end:\n\(d.joined(separator: "\n"))")
                    }
                } else {
                    Issue.record("seeds \(batch): final walk failed (the remount is still checked): \(monitor.errors)")
                }
                #expect(c.unmount([0, 1, 2]) == 0, "unmount\n\(c.logs())")
                let check = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
                #expect(check.0 == 0, "seeds \(batch): check after unmounting:\n\(check.1)")
                try c.mount([0, 1, 2])
                let conns2 = Array(fuseConnections((0..<3).map { c.mnt($0) }).values)
                let daemons2 = registeredDaemons(runDir: c.dir + "/run")
                let (after, report2) = walkAll(c, monitor: monitor, connections: conns2, daemons: daemons2)
                if let report2 { Issue.record("walk after remount: \(report2)") }
                if let after {
                    // against the tree before the remount, or (when that walk failed) each other
                    let reference = before?[0] ?? after[0]
                    for m in 0..<3 {
                        let d = snapshotDiff(reference, after[m], aName: before == nil ? "after remount m0" : "before remount m0", bName: "after remount m\(m)")
                        #expect(d.isEmpty, "seeds \(batch): the remount differs:\n\(d.joined(separator: "\n"))")
                    }
                }
                #expect(monitor.errors.isEmpty, "\(monitor.errors)")
                #expect(c.unmount([0, 1, 2]) == 0, "unmount\n\(c.logs())")
                let check2 = MountEnv.sh("\(c.bin) check \(c.dir)/meta \(c.dir)/data")
                #expect(check2.0 == 0, "seeds \(batch): check after the remount's unmount:\n\(check2.1)")
            }
            let kinds = StressOp.allCases.filter { ok[$0] != nil || failed[$0] != nil }
            let counts = kinds.map { "\($0.rawValue) \(ok[$0] ?? 0)/\(failed[$0] ?? 0)" }.joined(separator: ", ")
            print("stress: \(cfg.seeds.count) seeds in \(Int(monotonicSeconds() - started)) s; per op kind ok/failed: \(counts)")
            for (k, seeds) in failedKinds.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                print("stress: \(k.rawValue) failed in seeds \(seeds.prefix(30).map(String.init).joined(separator: " "))")
            }
            if next < cfg.seeds.count {
                print("stress: \(hangs) hung seeds (SCOUT_STRESS_MAX_HANGS=\(cfg.maxHangs)): seeds \(cfg.seeds[next...].map(String.init).joined(separator: " ")) not run")
            }
            if !failedSeeds.isEmpty { print("stress: failing seeds: \(failedSeeds.map(String.init).joined(separator: " "))") }
        }
    }
}
