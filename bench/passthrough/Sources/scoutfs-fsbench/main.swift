import CPassthrough
// Settings are written once before any worker thread starts (hence nonisolated(unsafe)).
import Glibc

// scoutfs-fsbench DIR [--files N] [--mib M] [--threads T] [--drop-caches]
// Small-file metadata and streaming data rates in DIR (a FUSE mount or a native directory, to compare).
// Phases: create+close, stat (twice), readdir, 4 KiB write, 4 KiB read, unlink, then M MiB streamed write and read
// in 1 MiB requests.

func usage() -> Never {
    eprint("usage: scoutfs-fsbench DIR [--files N] [--mib M] [--threads T] [--drop-caches]\n")
    exit(2)
}

nonisolated(unsafe) var files = 10000
nonisolated(unsafe) var mib = 256
nonisolated(unsafe) var threads = 1
nonisolated(unsafe) var dropCaches = false
var dir: String?
var args = CommandLine.arguments.dropFirst()
while let a = args.popFirst() {
    switch a {
    case "--files": files = args.popFirst().flatMap { Int($0) } ?? { usage() }()
    case "--mib": mib = args.popFirst().flatMap { Int($0) } ?? { usage() }()
    case "--threads": threads = args.popFirst().flatMap { Int($0) } ?? { usage() }()
    case "--drop-caches": dropCaches = true
    default:
        if a.hasPrefix("-") || dir != nil { usage() }
        dir = a
    }
}
guard let dir, files > 0, mib >= 0, threads >= 1 else { usage() }

nonisolated(unsafe) let work = "\(dir)/fsbench-\(getpid())"
guard mkdir(work, 0o755) == 0 else {
    eprint("fsbench: mkdir \(work): errno \(errno)\n")
    exit(1)
}

let clock = ContinuousClock()
func phase(_ name: String, count: Int, unit: String = "ops", _ body: () -> Int) {
    let start = clock.now
    let failures = body()
    let t = clock.now - start
    let s = Double(t.components.seconds) + Double(t.components.attoseconds) / 1e18
    let rate = Double(count) / s
    let text = rate >= 100 ? String(Int(rate)) : String(rate)
    print("\(name + String(repeating: " ", count: max(0, 22 - name.count))) \(text) \(unit)/s  (\(count) in \(Int(s * 1000)) ms\(failures > 0 ? ", \(failures) FAILED" : ""))")
}

for t in 0..<threads { mkdir("\(work)/t\(t)", 0o755) }
nonisolated(unsafe) let names = (0..<files).map { "\(work)/t\($0 % threads)/f\($0)" }
/// The names thread `t` works on.
@Sendable func slice(_ t: Int) -> [String] { stride(from: t, to: files, by: threads).map { names[$0] } }

/// Runs `body(t)` on `threads` threads at once and sums the failures.
func parallel(_ body: @escaping @Sendable (Int) -> Int) -> Int {
    if threads == 1 { return body(0) }
    final class Box: @unchecked Sendable {
        let body: @Sendable (Int) -> Int
        let t: Int
        var result = 0
        init(_ b: @escaping @Sendable (Int) -> Int, _ t: Int) { body = b; self.t = t }
    }
    let boxes = (0..<threads).map { Box(body, $0) }
    var tids: [pthread_t] = []
    for b in boxes {
        var tid = pthread_t()
        pthread_create(&tid, nil, { arg in
            let b = Unmanaged<Box>.fromOpaque(arg!).takeUnretainedValue()
            b.result = b.body(b.t)
            return nil
        }, Unmanaged.passUnretained(b).toOpaque())
        tids.append(tid)
    }
    for t in tids { pthread_join(t, nil) }
    return boxes.reduce(0) { $0 + $1.result }
}
phase("create+close", count: files) { parallel { t in
    var bad = 0
    for n in slice(t) {
        let fd = cpt_open3(n, O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        if fd < 0 { bad += 1 } else { close(fd) }
    }
    return bad
} }
for pass in 1...2 {
    phase("stat (pass \(pass))", count: files) { parallel { t in
        var st = stat()
        var bad = 0
        for n in slice(t) where stat(n, &st) != 0 { bad += 1 }
        return bad
    } }
}
phase("readdir (entries)", count: files) { parallel { t in
    guard let d = opendir("\(work)/t\(t)") else { return 1 }
    var n = 0
    while readdir(d) != nil { n += 1 }
    closedir(d)
    return n == slice(t).count + 2 ? 0 : 1
} }
nonisolated(unsafe) let block = [UInt8](repeating: 0x5A, count: 4096)
phase("write 4 KiB", count: files) { parallel { t in
    var bad = 0
    for n in slice(t) {
        let fd = cpt_open3(n, O_WRONLY | O_CLOEXEC, 0)
        if fd < 0 || block.withUnsafeBytes({ write(fd, $0.baseAddress, 4096) }) != 4096 { bad += 1 }
        if fd >= 0 { close(fd) }
    }
    return bad
} }
phase("read 4 KiB", count: files) { parallel { t in
    var buf = [UInt8](repeating: 0, count: 4096)
    var bad = 0
    for n in slice(t) {
        let fd = cpt_open3(n, O_RDONLY | O_CLOEXEC, 0)
        if fd < 0 || read(fd, &buf, 4096) != 4096 { bad += 1 }
        if fd >= 0 { close(fd) }
    }
    return bad
} }
phase("unlink", count: files) { parallel { t in
    var bad = 0
    for n in slice(t) where unlink(n) != 0 { bad += 1 }
    return bad
} }

if mib > 0 {
    let big = "\(work)/stream"
    let chunk = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
    defer { chunk.deallocate() }
    chunk.initializeMemory(as: UInt8.self, repeating: 0xA5, count: 1 << 20)
    phase("stream write (MiB)", count: mib, unit: "MiB") {
        let fd = cpt_open3(big, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return 1 }
        defer { close(fd) }
        var bad = 0
        for _ in 0..<mib where write(fd, chunk, 1 << 20) != 1 << 20 { bad += 1 }
        if fsync(fd) != 0 { bad += 1 }
        return bad
    }
    if dropCaches {
        let fd = open("/proc/sys/vm/drop_caches", O_WRONLY)
        if fd >= 0 {
            _ = write(fd, "3", 1)
            close(fd)
        }
    }
    phase("stream read (MiB)", count: mib, unit: "MiB") {
        let fd = cpt_open3(big, O_RDONLY | O_CLOEXEC, 0)
        guard fd >= 0 else { return 1 }
        defer { close(fd) }
        var bad = 0
        for _ in 0..<mib where read(fd, chunk, 1 << 20) != 1 << 20 { bad += 1 }
        return bad
    }
    unlink(big)
}
for t in 0..<threads { rmdir("\(work)/t\(t)") }
rmdir(work)

/// Writes to standard error (the C `stderr` global is not concurrency-safe in Swift 6).
func eprint(_ text: String) {
    var text = text
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
