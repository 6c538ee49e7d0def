import Glibc
import ScoutFUSE
import Testing

/// Rough request rates through the in-memory filesystem (debug build; printed, for the report). Each check can fail:
/// uncached stats must reach the filesystem, cached ones must not.
@Suite("FUSE throughput", .serialized, .enabled(if: FUSETestEnvironment.available), .timeLimit(.minutes(1)))
struct ThroughputTests {
    private func rate(for duration: Duration, _ body: () -> Void) -> (count: Int, perSecond: Double) {
        let clock = ContinuousClock()
        let start = clock.now
        var n = 0
        while clock.now - start < duration {
            for _ in 0..<100 { body() }
            n += 100
        }
        let elapsed = clock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        return (n, Double(n) / seconds)
    }

    @Test("stat rates: uncached (TTL 0) and cached, one and two reader threads", arguments: [1, 2])
    func statRates(readers: Int) throws {
        var config = FUSEConfiguration()
        config.readerThreads = readers
        let uncached = MemoryFileSystem(entryTimeout: .zero, attributeTimeout: .zero)
        try withMounted(uncached, configuration: config) { m in
            try writeFile(m.path("f"), [])
            let before = uncached.count(.getattr) + uncached.count(.lookup)
            let (n, r) = self.rate(for: .milliseconds(500)) { _ = statPath(m.path("f")) }
            let requests = uncached.count(.getattr) + uncached.count(.lookup) - before
            print("stat TTL 0, \(readers) reader(s): \(Int(r)) stat/s, \(Double(requests) / Double(n)) requests/stat")
            #expect(requests >= n)
        }
        let cached = MemoryFileSystem(entryTimeout: .seconds(600), attributeTimeout: .seconds(600))
        try withMounted(cached, configuration: config) { m in
            try writeFile(m.path("f"), [])
            _ = statPath(m.path("f"))
            let before = cached.count(.getattr) + cached.count(.lookup)
            let (_, r) = self.rate(for: .milliseconds(300)) { _ = statPath(m.path("f")) }
            print("stat cached, \(readers) reader(s): \(Int(r)) stat/s")
            #expect(cached.count(.getattr) + cached.count(.lookup) == before)
        }
    }

    @Test("create+close and unlink rates")
    func createUnlinkRates() throws {
        let fs = MemoryFileSystem(entryTimeout: .seconds(1), attributeTimeout: .seconds(1))
        try withMounted(fs) { m in
            var i = 0
            let (n, r) = self.rate(for: .milliseconds(500)) {
                let fd = open(m.path("c\(i)"), O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
                if fd >= 0 { close(fd) }
                i += 1
            }
            print("create+close: \(Int(r))/s")
            let clock = ContinuousClock()
            let start = clock.now
            var failed = 0
            for j in 0..<n where Glibc.unlink(m.path("c\(j)")) != 0 { failed += 1 }
            let t = clock.now - start
            let seconds = Double(t.components.seconds) + Double(t.components.attoseconds) / 1e18
            print("unlink: \(Int(Double(n) / seconds))/s")
            #expect(failed == 0)
            #expect(fs.count(.create) == n)
            #expect(fs.count(.unlink) == n)
        }
    }
}
