import ArgumentParser
import ScoutBlockIO
import ScoutStorage
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// `scoutfs check META-DEVICE DATA-DEVICE`: an offline consistency check of an unmounted
/// volume (the original has none). Opens both devices read-only, prints each problem on its
/// own line and a summary line, and exits 0 when the volume is consistent, 1 when it is not or
/// cannot be read (`scoutfs: check failed: …`).
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check the consistency of an unmounted volume"
    )

    @Argument(help: ArgumentHelp("The metadata device", valueName: "META-DEVICE"))
    var metaDevice: String

    @Argument(help: ArgumentHelp("The data device", valueName: "DATA-DEVICE"))
    var dataDevice: String

    @Flag(name: [.customShort("u"), .customLong("metadata-usage")], help: "Also print where the metadata blocks go")
    var usage = false

    func run() throws {
        var out = FileDescriptorOutputStream(fd: STDOUT_FILENO, bufferLimit: 1 << 16)
        var err = FileDescriptorOutputStream(fd: STDERR_FILENO, bufferLimit: 0)
        let code = Self.execute(
            metaPath: metaDevice, dataPath: dataDevice, output: &out, diagnostics: &err, progress: isatty(STDERR_FILENO) != 0,
            usage: usage)
        out.flush()
        if code != 0 { throw ExitCode(code) }
    }

    /// Opens the devices read-only and checks the volume; returns the exit status. With `usage`,
    /// the summary is followed by where the referenced metadata blocks go (per inode too).
    /// With `progress`, a line on `diagnostics` is rewritten as the check goes, once it has
    /// taken more than `progressAfter` seconds, and erased at the end.
    static func execute<O: TextOutputStream, E: TextOutputStream>(
        metaPath: String, dataPath: String, output: inout O, diagnostics: inout E, progress: Bool, progressAfter: Double = 1,
        usage: Bool = false
    ) -> Int32 {
        func failed(_ code: Int32) -> Int32 {
            diagnostics.write("scoutfs: check failed: \(String(cString: strerror(code))) (\(code))\n")
            return 1
        }
        var devices: [FileBlockDevice] = []
        for (path, which) in [(metaPath, "meta"), (dataPath, "data")] {
            do {
                let d = try FileBlockDevice(path: path, writable: false)
                // a device file's cached pages may predate what another host wrote
                _ = posix_fadvise(d.fd.rawValue, 0, off_t(clamping: d.size), POSIX_FADV_DONTNEED)
                devices.append(d)
            } catch {
                diagnostics.write("failed to open \(which) device '\(path)': \(String(cString: strerror(error.rawValue))) (\(error.rawValue))\n")
                return failed(error.rawValue)
            }
        }

        let checker = VolumeChecker(meta: devices[0], data: devices[1])
        checker.accountUsage = usage
        // the callbacks write into copies of the streams, which are handed back afterwards
        var out = output
        var diag = diagnostics
        checker.onProblem = { out.write($0.message + "\n") }
        let start = monotonicNow()
        var shown = false
        var lastShown = 0.0
        if progress {
            checker.onProgress = { p in
                let now = monotonicNow()
                guard now - start >= progressAfter, now - lastShown > 0.2 else { return }
                lastShown = now
                shown = true
                let pct = p.totalBlocks > 0 ? min(100, p.blocksRead * 100 / p.totalBlocks) : 0
                diag.write("\rcheck: \(p.phase), \(p.blocksRead) metadata blocks read (\(pct)% of the device)\u{1b}[K")
            }
        }
        let summary = checker.run()
        checker.onProblem = nil
        checker.onProgress = nil
        if shown { diag.write("\r\u{1b}[K") }
        output = out
        diagnostics = diag

        if let e = checker.fatalErrno {
            // the meta super block is unusable: nothing else could be checked
            return failed(e)
        }
        let s = summary
        if s.mountedClients > 0 {
            diagnostics.write("check: note: \(s.mountedClients) mount\(s.mountedClients == 1 ? " is" : "s are") recorded in mounted_clients: a volume that is mounted changes while it is checked, and one left by a crash keeps its mounts' log trees until they are fenced and reclaimed\n")
        }
        output.write(
            "check: \(s.problems == 0 ? "clean" : "\(s.problems) problem\(s.problems == 1 ? "" : "s") found"): "
                + "meta \(s.metaReferenced) referenced + \(s.metaFree) free + \(s.metaLost) lost of \(s.metaBlocks) blocks, "
                + "data \(s.dataInFiles) in files + \(s.dataFree) free + \(s.dataLost) lost of \(s.dataBlocks) blocks, "
                + "\(s.inodes) inodes, \(s.fsItems) fs items, \(s.btreeBlocks) btree blocks in \(s.trees) trees, \(s.logTrees) log trees\n")
        if usage {
            for line in checker.usage.reportLines(perFile: s.inodes) { output.write(line + "\n") }
        }
        return s.problems == 0 ? 0 : 1
    }

    static func monotonicNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
