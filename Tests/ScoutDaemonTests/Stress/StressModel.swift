import Glibc
import ScoutTestSupport

// The multi-mount fuzzer's pure half: operation kinds, the per-thread generator and model, the
// append record format and tree snapshots. No I/O here: a thread's sequence of steps follows
// from (seed, thread) alone, as long as every step does what the model predicts.

/// The kinds of operation the fuzzer runs; `SCOUT_STRESS_OPS` selects them by these names.
enum StressOp: String, CaseIterable, Sendable, Hashable {
    case create, mkdir, rename, noreplace, exchange, link, unlink, rmdir, write, append, truncate, fallocate, mmap, xattr,
        readdir, fsync
    /// contention in a shared directory: O_CREAT/unlink/rename/mkdir/rmdir/write/readdir of a
    /// small pool of names from every thread, checked only for errors outside the allowed set
    case shared
    /// one thread per mount opens one new name with O_CREAT (no O_EXCL) at the same moment:
    /// every open must succeed and all must get the same inode
    case race

    var weight: Int {
        switch self {
        case .create: 8
        case .mkdir: 4
        case .rename: 5
        case .noreplace, .exchange, .link, .rmdir, .truncate, .fallocate, .readdir: 3
        case .unlink, .mmap, .xattr: 4
        case .write: 10
        case .append: 6
        case .fsync: 2
        case .shared: 8
        case .race: 0  // run by the racer threads, not in the random streams
        }
    }

    /// Parses `SCOUT_STRESS_OPS`: empty means all; `-a,-b` removes kinds from all; `a,b` selects
    /// only those. Unknown names are an error.
    static func parse(_ text: String?) throws(StressConfigError) -> Set<StressOp> {
        guard let text, !text.isEmpty else { return Set(allCases) }
        let words = text.split(separator: ",").map { String($0).trimmingCharacters(in: " ") }.filter { !$0.isEmpty }
        let removing = words.allSatisfy { $0.hasPrefix("-") }
        var set: Set<StressOp> = removing ? Set(allCases) : []
        for w in words {
            let name = w.hasPrefix("-") ? String(w.dropFirst()) : w
            guard let op = StressOp(rawValue: name) else {
                throw StressConfigError(message: "SCOUT_STRESS_OPS: unknown op '\(name)' (known: \(allCases.map(\.rawValue).joined(separator: ",")))")
            }
            if removing { set.remove(op) } else { set.insert(op) }
        }
        return set
    }
}

struct StressConfigError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// What one step does: every path is relative to the seed's directory on a mount.
enum StressAction: Sendable, Equatable {
    case create(String)
    case mkdir(String)
    case rename(String, String, flags: UInt32)
    case link(String, String)
    case unlink(String)
    case rmdir(String)
    case write(String, offset: Int, data: [UInt8])
    case truncate(String, size: Int)
    case fallocate(String, offset: Int, length: Int, keepSize: Bool)
    case mmapWrite(String, offset: Int, data: [UInt8])
    case mmapRead(String)
    case setxattr(String, name: String, value: [UInt8])
    case readdir(String)
    case fsync(String)
    /// appends whole records to a shared append file (in one write(2))
    case append(String, records: [[UInt8]])
    /// shared-area operations: `allowed` lists the errnos contention may legitimately cause
    case sharedCreate(String, data: [UInt8])
    case sharedWrite(String, offset: Int, data: [UInt8])
    case sharedUnlink(String)
    case sharedRename(String, String, flags: UInt32)
    case sharedMkdir(String)
    case sharedRmdir(String)
    case sharedReaddir(String)

    /// The path the step is about (for reports).
    var path: String {
        switch self {
        case .create(let p), .mkdir(let p), .unlink(let p), .rmdir(let p), .mmapRead(let p), .readdir(let p), .fsync(let p),
            .sharedCreate(let p, _), .sharedUnlink(let p), .sharedMkdir(let p), .sharedRmdir(let p), .sharedReaddir(let p):
            p
        case .rename(let a, let b, _), .link(let a, let b), .sharedRename(let a, let b, _): "\(a) -> \(b)"
        case .write(let p, _, _), .truncate(let p, _), .fallocate(let p, _, _, _), .mmapWrite(let p, _, _),
            .setxattr(let p, _, _), .append(let p, _), .sharedWrite(let p, _, _):
            p
        }
    }

    /// The same action with every path mapped.
    func mapPaths(_ f: (String) -> String) -> StressAction {
        switch self {
        case .create(let p): .create(f(p))
        case .mkdir(let p): .mkdir(f(p))
        case .rename(let a, let b, let flags): .rename(f(a), f(b), flags: flags)
        case .link(let a, let b): .link(f(a), f(b))
        case .unlink(let p): .unlink(f(p))
        case .rmdir(let p): .rmdir(f(p))
        case .write(let p, let o, let d): .write(f(p), offset: o, data: d)
        case .truncate(let p, let size): .truncate(f(p), size: size)
        case .fallocate(let p, let o, let l, let k): .fallocate(f(p), offset: o, length: l, keepSize: k)
        case .mmapWrite(let p, let o, let d): .mmapWrite(f(p), offset: o, data: d)
        case .mmapRead(let p): .mmapRead(f(p))
        case .setxattr(let p, let n, let v): .setxattr(f(p), name: n, value: v)
        case .readdir(let p): .readdir(f(p))
        case .fsync(let p): .fsync(f(p))
        case .append(let p, let r): .append(f(p), records: r)
        case .sharedCreate(let p, let d): .sharedCreate(f(p), data: d)
        case .sharedWrite(let p, let o, let d): .sharedWrite(f(p), offset: o, data: d)
        case .sharedUnlink(let p): .sharedUnlink(f(p))
        case .sharedRename(let a, let b, let flags): .sharedRename(f(a), f(b), flags: flags)
        case .sharedMkdir(let p): .sharedMkdir(f(p))
        case .sharedRmdir(let p): .sharedRmdir(f(p))
        case .sharedReaddir(let p): .sharedReaddir(f(p))
        }
    }

    /// Errnos contention may cause in the shared area; nothing else is acceptable.
    var allowedErrnos: [Int32] {
        switch self {
        case .sharedCreate: [ENOENT]  // its directory was removed by another thread
        case .sharedWrite, .sharedUnlink: [ENOENT]
        case .sharedRename(_, _, let flags): flags == renameNoreplace ? [ENOENT, EEXIST] : [ENOENT]
        case .sharedMkdir: [EEXIST]
        case .sharedRmdir: [ENOENT, ENOTEMPTY]
        default: []
        }
    }
}

let renameNoreplace: UInt32 = 1
let renameExchange: UInt32 = 2

/// One generated step: the kind, the mount that runs it, the mount that checks it afterwards,
/// and the errno the model expects (0: success).
struct StressStep: Sendable, Equatable {
    var op: StressOp
    var mount: Int
    var check: Int
    var action: StressAction
    var expect: Int32 = 0
}

/// Deterministic file contents: `count` bytes of a SplitMix64 stream.
func stressPattern(seed: UInt64, count: Int) -> [UInt8] {
    var rng = SplitMix64(seed: seed)
    var out: [UInt8] = []
    out.reserveCapacity(count + 8)
    while out.count < count {
        let v = rng.next()
        for i in 0..<8 where out.count < count { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }
    return out
}

/// FNV-1a, 64 bits: the contents hash of snapshots.
func fnv1a(_ bytes: [UInt8]) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for b in bytes { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
    return h
}

/// Zero-padded decimal.
func padded(_ v: Int, _ width: Int) -> String {
    let s = String(v)
    return String(repeating: "0", count: max(0, width - s.count)) + s
}

/// Append records: 48 bytes, `A<writer 4>:<seq 7>:<fnv of the prefix 16 hex>:<pad>\n`, so a
/// torn, doubled or foreign record is recognised.
enum AppendRecord {
    static let size = 48

    static func make(writer: Int, seq: Int) -> [UInt8] {
        let head = "A\(padded(writer, 4)):\(padded(seq, 7)):"
        let hash = fnv1a(Array(head.utf8)).paddedHexString
        var bytes = Array((head + hash + ":").utf8)
        while bytes.count < size - 1 { bytes.append(UInt8(ascii: "x")) }
        bytes.append(UInt8(ascii: "\n"))
        return bytes
    }

    /// (writer, seq) of a whole, valid record; nil for anything else.
    static func parse(_ r: ArraySlice<UInt8>) -> (writer: Int, seq: Int)? {
        guard r.count == size, r.first == UInt8(ascii: "A") else { return nil }
        let text = String(decoding: r, as: UTF8.self)
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 4, let w = Int(parts[0].dropFirst()), let s = Int(parts[1]) else { return nil }
        return Array(r) == make(writer: w, seq: s) ? (w, s) : nil
    }
}

extension UInt64 {
    var paddedHexString: String {
        let s = String(self, radix: 16)
        return String(repeating: "0", count: 16 - s.count) + s
    }
}

/// One entry of a tree snapshot: what every mount must agree on.
struct SnapshotEntry: Sendable, Equatable, CustomStringConvertible {
    var type: Character  // f, d, l, o(ther)
    var size: Int
    var nlink: Int
    var hash: UInt64
    var xattrs: [String: UInt64]

    var description: String {
        let x = xattrs.keys.sorted().map { "\($0)=\(xattrs[$0]!.paddedHexString)" }.joined(separator: ",")
        return "\(type) size \(size) nlink \(nlink) hash \(hash.paddedHexString) xattrs [\(x)]"
    }
}

typealias Snapshot = [String: SnapshotEntry]

/// The differences of two snapshots, at most `limit` lines.
func snapshotDiff(_ a: Snapshot, _ b: Snapshot, aName: String, bName: String, limit: Int = 20) -> [String] {
    var out: [String] = []
    for path in Set(a.keys).union(b.keys).sorted() where a[path] != b[path] {
        if out.count == limit {
            out.append("...")
            break
        }
        out.append("\(path): \(aName) \(a[path].map(String.init(describing:)) ?? "absent"); \(bName) \(b[path].map(String.init(describing:)) ?? "absent")")
    }
    return out
}

/// A thread's own subtree: what it must look like on every mount.
struct StressModel: Sendable {
    struct Inode: Sendable {
        var isDir: Bool
        var data: [UInt8] = []
        var xattrs: [String: [UInt8]] = [:]
    }

    /// path (relative to the thread's directory) → inode number
    var paths: [String: Int] = [:]
    var inodes: [Int: Inode] = [:]
    var nextIno = 1
    var nextName = 0

    static let maxSize = 256 << 10
    static let maxEntries = 60

    func isDir(_ p: String) -> Bool { paths[p].flatMap { inodes[$0]?.isDir } ?? false }
    func nlink(_ ino: Int) -> Int { paths.values.filter { $0 == ino }.count }
    var files: [String] { paths.keys.filter { !isDir($0) }.sorted() }
    var dirs: [String] { paths.keys.filter { isDir($0) }.sorted() }
    func children(_ dir: String) -> [String] {
        let prefix = dir.isEmpty ? "" : dir + "/"
        return paths.keys.filter { $0.hasPrefix(prefix) && !$0.dropFirst(prefix.count).contains("/") }.sorted()
    }
    func emptyDirs() -> [String] { dirs.filter { children($0).isEmpty } }
    func depth(_ p: String) -> Int { p.split(separator: "/").count }

    /// Applies a step that succeeded.
    mutating func apply(_ a: StressAction) {
        switch a {
        case .create(let p):
            paths[p] = nextIno
            inodes[nextIno] = Inode(isDir: false)
            nextIno += 1
        case .mkdir(let p):
            paths[p] = nextIno
            inodes[nextIno] = Inode(isDir: true)
            nextIno += 1
        case .rename(let from, let to, let flags):
            let moved = subtree(from)
            if flags == renameExchange {
                let other = subtree(to)
                for (p, _) in moved { paths[p] = nil }
                for (p, _) in other { paths[p] = nil }
                for (p, ino) in moved { paths[to + p.dropFirst(from.count)] = ino }
                for (p, ino) in other { paths[from + p.dropFirst(to.count)] = ino }
            } else if let old = paths[to], old == paths[from] {
                // two links of one inode: rename(2) does nothing and succeeds
            } else {
                if let old = paths[to] { drop(to, ino: old) }
                for (p, _) in moved { paths[p] = nil }
                for (p, ino) in moved { paths[to + p.dropFirst(from.count)] = ino }
            }
        case .link(let from, let to):
            paths[to] = paths[from]
        case .unlink(let p), .rmdir(let p):
            if let ino = paths[p] { drop(p, ino: ino) }
        case .write(let p, let offset, let data), .mmapWrite(let p, let offset, let data):
            modify(p) { d in
                if d.count < offset + data.count { d += [UInt8](repeating: 0, count: offset + data.count - d.count) }
                d.replaceSubrange(offset..<(offset + data.count), with: data)
            }
        case .truncate(let p, let size):
            modify(p) { d in
                if d.count > size { d.removeLast(d.count - size) } else { d += [UInt8](repeating: 0, count: size - d.count) }
            }
        case .fallocate(let p, let offset, let length, let keep):
            if !keep { modify(p) { d in if d.count < offset + length { d += [UInt8](repeating: 0, count: offset + length - d.count) } } }
        case .setxattr(let p, let name, let value):
            if let ino = paths[p] { inodes[ino]?.xattrs[name] = value }
        case .mmapRead, .readdir, .fsync, .append, .sharedCreate, .sharedWrite, .sharedUnlink, .sharedRename, .sharedMkdir,
            .sharedRmdir, .sharedReaddir:
            break
        }
    }

    private mutating func drop(_ p: String, ino: Int) {
        for (q, _) in subtree(p) { paths[q] = nil }
        if !paths.values.contains(ino) { inodes[ino] = nil }
    }

    private mutating func modify(_ p: String, _ body: (inout [UInt8]) -> Void) {
        guard let ino = paths[p], var node = inodes[ino] else { return }
        body(&node.data)
        inodes[ino] = node
    }

    /// The path and everything under it.
    func subtree(_ p: String) -> [(String, Int)] {
        paths.filter { $0.key == p || $0.key.hasPrefix(p + "/") }.map { ($0.key, $0.value) }
    }

    /// The snapshot every mount must show of this subtree (paths prefixed with `root/`).
    func snapshot(root: String) -> Snapshot {
        var out: Snapshot = [:]
        for (p, ino) in paths {
            guard let node = inodes[ino] else { continue }
            let x = node.xattrs.mapValues { fnv1a($0) }
            out[root + "/" + p] = node.isDir
                ? SnapshotEntry(type: "d", size: -1, nlink: -1, hash: 0, xattrs: x)
                : SnapshotEntry(type: "f", size: node.data.count, nlink: nlink(ino), hash: fnv1a(node.data), xattrs: x)
        }
        return out
    }
}

/// A thread's generator: its PRNG, its model, and the shared-area and append bookkeeping.
struct StressGenerator: Sendable {
    let seed: UInt64
    let thread: Int
    let mounts: Int
    let ops: [StressOp]
    let root: String  // the thread's own directory, relative to the seed's directory
    var rng: SplitMix64
    var model = StressModel()
    var appendSeq = 0
    var patternCounter: UInt64 = 0

    static let appendFiles = 3
    static let sharedNames = 6
    static let sharedDirs = 3

    init(seed: UInt64, thread: Int, mounts: Int, ops: Set<StressOp>) {
        self.seed = seed
        self.thread = thread
        self.mounts = mounts
        self.ops = StressOp.allCases.filter { ops.contains($0) && $0.weight > 0 }
        self.root = "t\(thread)"
        // one independent stream per (seed, thread)
        var mix = SplitMix64(seed: seed ^ (UInt64(thread + 1) &* 0x9e37_79b9_7f4a_7c15))
        self.rng = SplitMix64(seed: mix.next())
    }

    private mutating func pattern(_ count: Int) -> [UInt8] {
        patternCounter += 1
        return stressPattern(seed: seed &* 31 &+ UInt64(thread) << 40 &+ patternCounter, count: count)
    }

    /// Applies a step of this thread's that succeeded to its model (paths relative to its directory).
    mutating func applied(_ step: StressStep) {
        model.apply(step.action.mapPaths { $0 == root ? "" : String($0.dropFirst(root.count + 1)) })
    }

    private mutating func pick<T>(_ xs: [T]) -> T? { xs.isEmpty ? nil : xs[rng.below(xs.count)] }

    private mutating func newName(_ prefix: String) -> String {
        model.nextName += 1
        let parents = [""] + model.dirs.filter { model.depth($0) < 3 }
        let parent = pick(parents) ?? ""
        return (parent.isEmpty ? "" : parent + "/") + prefix + String(model.nextName)
    }

    private func full(_ p: String) -> String { root + "/" + p }

    /// True when `a` is `b` or under it.
    private func within(_ a: String, _ b: String) -> Bool { a == b || a.hasPrefix(b + "/") }

    /// The next step. Kinds whose preconditions do not hold are re-drawn (bounded); when none
    /// fits, a readdir of the thread's root.
    mutating func next() -> StressStep {
        let total = ops.reduce(0) { $0 + $1.weight }
        let mount = rng.below(mounts)
        let check = rng.below(mounts)
        for _ in 0..<16 where total > 0 {
            var r = rng.below(total)
            var op = ops[0]
            for o in ops {
                if r < o.weight {
                    op = o
                    break
                }
                r -= o.weight
            }
            if let (action, expect) = action(for: op) {
                return StressStep(op: op, mount: mount, check: check, action: action, expect: expect)
            }
        }
        return StressStep(op: .readdir, mount: mount, check: check, action: .readdir(root))
    }

    private mutating func action(for op: StressOp) -> (StressAction, Int32)? {
        let full = model.paths.count < StressModel.maxEntries
        switch op {
        case .create:
            guard full else { return nil }
            return (.create(self.full(newName("f"))), 0)
        case .mkdir:
            guard full else { return nil }
            return (.mkdir(self.full(newName("d"))), 0)
        case .rename, .noreplace:
            guard let from = pick(model.paths.keys.sorted()) else { return nil }
            let replace = op == .rename && rng.below(3) == 0
            if replace {
                // onto an existing file (a file) or an empty directory (a directory), never its own subtree
                let targets = (model.isDir(from) ? model.emptyDirs() : model.files).filter { !within($0, from) && !within(from, $0) }
                guard let to = pick(targets) else { return nil }
                return (.rename(self.full(from), self.full(to), flags: 0), 0)
            }
            if op == .noreplace, rng.below(4) == 0, let to = pick(model.paths.keys.filter { $0 != from }.sorted()) {
                return (.rename(self.full(from), self.full(to), flags: renameNoreplace), EEXIST)
            }
            var to = newName(model.isDir(from) ? "d" : "f")
            if within(to, from) { to = (model.isDir(from) ? "d" : "f") + String(model.nextName) }
            return (.rename(self.full(from), self.full(to), flags: op == .noreplace ? renameNoreplace : 0), 0)
        case .exchange:
            let all = model.paths.keys.sorted()
            guard let a = pick(all), let b = pick(all.filter { !within($0, a) && !within(a, $0) }) else { return nil }
            return (.rename(self.full(a), self.full(b), flags: renameExchange), 0)
        case .link:
            guard full, let f = pick(model.files) else { return nil }
            return (.link(self.full(f), self.full(newName("f"))), 0)
        case .unlink:
            guard let f = pick(model.files) else { return nil }
            return (.unlink(self.full(f)), 0)
        case .rmdir:
            guard let d = pick(model.emptyDirs()) else { return nil }
            return (.rmdir(self.full(d)), 0)
        case .write:
            guard let f = pick(model.files) else { return nil }
            let len = 1 + rng.below(rng.below(2) == 0 ? 512 : 32 << 10)
            let off = rng.below(4) == 0 ? (rng.below(StressModel.maxSize / 4096 - 8)) * 4096 : rng.below(StressModel.maxSize - len)
            return (.write(self.full(f), offset: off, data: pattern(len)), 0)
        case .append:
            let file = "a/log\(rng.below(Self.appendFiles))"
            let n = 1 + rng.below(3)
            var records: [[UInt8]] = []
            for _ in 0..<n {
                records.append(AppendRecord.make(writer: thread, seq: appendSeq))
                appendSeq += 1
            }
            return (.append(file, records: records), 0)
        case .truncate:
            guard let f = pick(model.files) else { return nil }
            return (.truncate(self.full(f), size: rng.below(StressModel.maxSize)), 0)
        case .fallocate:
            guard let f = pick(model.files) else { return nil }
            let len = 1 + rng.below(64 << 10)
            return (.fallocate(self.full(f), offset: rng.below(StressModel.maxSize - len), length: len, keepSize: rng.below(2) == 0), 0)
        case .mmap:
            guard let f = pick(model.files), let ino = model.paths[f], let size = model.inodes[ino]?.data.count, size > 0 else { return nil }
            if rng.below(2) == 0 { return (.mmapRead(self.full(f)), 0) }
            let off = rng.below(size)
            let len = 1 + rng.below(min(size - off, 16 << 10))
            return (.mmapWrite(self.full(f), offset: off, data: pattern(len)), 0)
        case .xattr:
            guard let p = pick(model.paths.keys.sorted()) else { return nil }
            return (.setxattr(self.full(p), name: "user.k\(rng.below(4))", value: pattern(1 + rng.below(200))), 0)
        case .readdir:
            let d = pick([""] + model.dirs) ?? ""
            return (.readdir(d.isEmpty ? root : self.full(d)), 0)
        case .fsync:
            guard let f = pick(model.files) else { return nil }
            return (.fsync(self.full(f)), 0)
        case .shared:
            return (sharedAction(), 0)
        case .race:
            return nil
        }
    }

    private mutating func sharedAction() -> StressAction {
        func name(_ g: inout StressGenerator) -> String {
            if g.rng.below(3) == 0 { return "s/d\(g.rng.below(Self.sharedDirs))/n\(g.rng.below(Self.sharedNames))" }
            return "s/n\(g.rng.below(Self.sharedNames))"
        }
        switch rng.below(8) {
        case 0, 1: return .sharedCreate(name(&self), data: pattern(1 + rng.below(4096)))
        case 2: return .sharedWrite(name(&self), offset: rng.below(64 << 10), data: pattern(1 + rng.below(8192)))
        case 3: return .sharedUnlink(name(&self))
        case 4:
            let flags: UInt32 = [0, 0, renameNoreplace][rng.below(3)]
            return .sharedRename("s/n\(rng.below(Self.sharedNames))", "s/n\(rng.below(Self.sharedNames))", flags: flags)
        case 5: return .sharedMkdir("s/d\(rng.below(Self.sharedDirs))")
        case 6: return .sharedRmdir("s/d\(rng.below(Self.sharedDirs))")
        default: return .sharedReaddir("s")
        }
    }
}
