import Glibc
@testable import ScoutDaemon
import ScoutTestSupport
import Testing

/// The memory bounds' mount options: ranges, defaults and messages naming the option.
@Suite("Memory bound mount options")
struct MemoryBoundOptionTests {
    @Test func defaultsKeepTheCachesUnderAGiB() throws {
        let o = try MountOptions.parse("metadev_path=/m")
        #expect(o.itemCacheMiB == 256)
        #expect(o.blockCacheMiB == 64)
        #expect(o.kernelDentries == 500_000)
        // the two caches, the server's block cache and ~150 bytes per name the kernel holds
        #expect(o.itemCacheMiB + 2 * o.blockCacheMiB + o.kernelDentries * 150 / (1 << 20) < 512)
    }

    @Test func valuesAreParsedAndListed() throws {
        let o = try MountOptions.parse("metadev_path=/m,item_cache_mb=32,block_cache_mb=8,kernel_dentries=2000")
        #expect(o.itemCacheMiB == 32)
        #expect(o.blockCacheMiB == 8)
        #expect(o.kernelDentries == 2000)
        let list = Dictionary(uniqueKeysWithValues: o.controlList)
        #expect(list["item_cache_mb"] == "32")
        #expect(list["block_cache_mb"] == "8")
        #expect(list["kernel_dentries"] == "2000")
    }

    @Test(arguments: [
        ("item_cache_mb=0", "invalid item_cache_mb value 0: must be between 1 and 1048576"),
        ("item_cache_mb=lots", "invalid item_cache_mb value 'lots': must be a number"),
        ("item_cache_mb", "invalid item_cache_mb value '': must be a number"),
        ("block_cache_mb=1048577", "invalid block_cache_mb value 1048577: must be between 1 and 1048576"),
        ("block_cache_mb=-1", "invalid block_cache_mb value -1: must be between 1 and 1048576"),
        ("kernel_dentries=999", "invalid kernel_dentries value 999: must be between 1000 and 1000000000"),
        ("kernel_dentries=1e6", "invalid kernel_dentries value '1e6': must be a number"),
    ])
    func badValuesNameTheOption(_ option: String, _ message: String) {
        #expect(throws: MountOptionError(message)) { try MountOptions.parse("metadev_path=/m,\(option)") }
    }

    @Test func theBoundsCannotChangeWhileMounted() throws {
        let o = try MountOptions.parse("metadev_path=/m")
        for name in ["item_cache_mb", "block_cache_mb", "kernel_dentries"] {
            #expect(throws: MountError.self) { try o.settingLive(name, "100") }
        }
    }
}

/// A real mount with small bounds: its own counters stay within them while every file of
/// many more than fit still reads back, before and after a remount.
extension RealMounts {
@Suite("Memory bounds on a real mount", .serialized, .enabled(if: MountEnv.usable), .timeLimit(.minutes(5)))
struct MemoryBoundMountTests {
    static func counters(_ v: MountedVolume) -> [String: Int] {
        let (rc, out) = MountEnv.sh("timeout 10 env SCOUTFS_RUN_DIR=\(v.dir)/run \(MountEnv.binary) counters -p \(v.mnt)")
        guard rc == 0 else { return [:] }
        var c: [String: Int] = [:]
        for line in out.split(separator: "\n") {
            let w = line.split(separator: " ")
            if w.count == 2, let n = Int(w[1]) { c[String(w[0])] = n }
        }
        return c
    }

    static func content(_ i: Int) -> [UInt8] { Array("file \(i) of the bounded mount\n".utf8) + [UInt8](repeating: UInt8(i & 0xff), count: i % 300) }

    @Test func countersStayWithinTheBoundsAndEveryFileReadsBack() throws {
        let v = try MountedVolume.make()
        defer { v.cleanup() }
        let options = "item_cache_mb=1,block_cache_mb=1,kernel_dentries=1000"
        try v.mount(options: options)
        let dir = v.mnt + "/d"
        #expect(mkdir(dir, 0o755) == 0)
        let files = 6000
        var peak: [String: Int] = [:]
        func sample() throws {
            let c = Self.counters(v)
            try #require(c["item_cache_limit_bytes"] == 1 << 20, "counters: \(c)")
            #expect(c["item_cache_clean_bytes"]! <= c["item_cache_limit_bytes"]!)
            #expect(c["block_cache_bytes"]! <= c["block_cache_limit_bytes"]!)
            for k in ["item_cache_clean_bytes", "kernel_dentries", "kernel_inodes"] { peak[k] = max(peak[k] ?? 0, c[k] ?? 0) }
        }
        for i in 0..<files {
            try writeFile("\(dir)/f\(i)", Self.content(i), fsync: false)
            if i % 1000 == 999 { try sample() }
        }
        #expect(MountEnv.sh("timeout 30 env SCOUTFS_RUN_DIR=\(v.dir)/run \(MountEnv.binary) sync -p \(v.mnt)").0 == 0)
        for i in 0..<files where readFile("\(dir)/f\(i)") != Self.content(i) {
            Issue.record("f\(i) reads back wrong")
            break
        }
        try sample()
        // the kernel was asked to forget the oldest names, and its FORGETs came back
        let settled = waitFor(seconds: 20) {
            let c = Self.counters(v)
            return (c["kernel_dentries"] ?? .max) <= 1000 && (c["kernel_inodes"] ?? .max) <= 2000
        }
        let c = Self.counters(v)
        #expect(settled != nil, "kernel tables did not shrink: \(c)")
        // (a lock given up drops its names too, invalidated as before, without counting here)
        #expect(c["kernel_dentries_pruned"]! >= 1000)
        #expect(c["kernel_dentries_prune_failed"] == 0)
        #expect(c["item_cache_evicted"]! > 0)
        #expect(c["kernel_dentries_max"] == 1000)

        // a remount reads them all again, through the same small bounds
        #expect(v.unmount() == 0)
        try v.mount(options: options)
        for i in 0..<files where readFile("\(dir)/f\(i)") != Self.content(i) {
            Issue.record("f\(i) reads back wrong after a remount")
            break
        }
        try sample()
        #expect(peak["item_cache_clean_bytes"]! <= 1 << 20)
        #expect(v.unmount() == 0)
    }
}
}
