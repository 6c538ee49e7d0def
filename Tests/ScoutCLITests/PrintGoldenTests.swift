import Foundation
import Testing

@testable import ScoutCLI
import ScoutStorage
import ScoutTestSupport

/// `scoutfs print` against volumes made by the original mkfs, and against damaged copies of them.
@Suite struct PrintGoldenTests {
    static let goldenNames = ["one-slot-v1", "one-slot-v2", "three-slots-v2", "zones-five-slots-v2"]

    /// The package root: the first directory above this file that holds Package.swift.
    static func packageRoot(from file: String = #filePath) throws -> URL {
        var dir = URL(fileURLWithPath: file).deletingLastPathComponent()
        while dir.path != "/" {
            if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
                return dir
            }
            dir = dir.deletingLastPathComponent()
        }
        throw GoldenError("no Package.swift above \(file)")
    }

    /// `../shared/golden` next to the package.
    static func goldenDir() throws -> URL {
        URL(fileURLWithPath: Golden.directory).standardizedFileURL
    }

    struct GoldenError: Error, CustomStringConvertible {
        let description: String
        init(_ d: String) { description = d }
    }

    /// A fresh temp dir holding the unpacked golden volume `name` (meta.img, data.img, print.out).
    final class GoldenVolume {
        let root: URL
        let dir: URL

        convenience init(_ name: String) throws {
            try self.init(name, archive: PrintGoldenTests.goldenDir().appendingPathComponent("\(name).tar.gz"))
        }

        init(_ name: String, archive: URL) throws {
            guard FileManager.default.fileExists(atPath: archive.path) else {
                throw GoldenError("missing golden archive \(archive.path)")
            }
            root = FileManager.default.temporaryDirectory.appendingPathComponent("scoutfs-print-\(name)-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
            let tar = Process()
            tar.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            tar.arguments = ["tar", "-xSzf", archive.path, "-C", root.path]
            try tar.run()
            tar.waitUntilExit()
            guard tar.terminationStatus == 0 else { throw GoldenError("tar failed on \(archive.path)") }
            dir = root.appendingPathComponent(name)
        }

        deinit { try? FileManager.default.removeItem(at: root) }

        var meta: String { dir.appendingPathComponent("meta.img").path }
        var data: String { dir.appendingPathComponent("data.img").path }
        func expectedLines(_ file: String = "print.out") throws -> [String] {
            try lines(String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8))
        }

        /// XORs one byte of the meta image.
        func flipByte(at offset: UInt64) throws {
            let h = try FileHandle(forUpdating: URL(fileURLWithPath: meta))
            defer { try? h.close() }
            try h.seek(toOffset: offset)
            let b = try h.read(upToCount: 1) ?? Data([0])
            try h.seek(toOffset: offset)
            try h.write(contentsOf: Data([b[0] ^ 0x5a]))
        }
    }

    static func lines(_ s: String) -> [String] {
        var l = s.components(separatedBy: "\n")
        if l.last == "" { l.removeLast() }
        return l
    }

    struct Run {
        var status: Int32
        var out: String
        var err: String
        var lines: [String] { PrintGoldenTests.lines(out) }
    }

    static func runPrint(_ path: String, skip: Bool = false) -> Run {
        var out = ""
        var err = ""
        let status = PrintCommand.execute(path: path, options: PrintOptions(skipLikelyHuge: skip), output: &out, diagnostics: &err)
        return Run(status: status, out: out, err: err)
    }

    /// The first line where the two differ, described, or nil when equal.
    static func firstDifference(_ got: [String], _ want: [String]) -> String? {
        for i in 0..<max(got.count, want.count) {
            let g = i < got.count ? got[i] : "<end of output>"
            let w = i < want.count ? want[i] : "<end of output>"
            if g != w { return "line \(i + 1):\n  got:  \(g.debugDescription)\n  want: \(w.debugDescription)" }
        }
        return nil
    }

    @Test(arguments: goldenNames)
    func printMatchesOriginal(name: String) throws {
        let vol = try GoldenVolume(name)
        let run = Self.runPrint(vol.meta)
        let want = try vol.expectedLines()
        let diff = Self.firstDifference(run.lines, want)
        #expect(diff == nil, "\(name): \(diff ?? "")")
        #expect(run.status == 0)
        #expect(run.err == "")
    }

    @Test(arguments: goldenNames)
    func skipLikelyHugeLeavesOutAllocatorsAndFSRoot(name: String) throws {
        let vol = try GoldenVolume(name)
        let run = Self.runPrint(vol.meta, skip: true)
        let want = try vol.expectedLines()
        // in a fresh volume everything after the server lists is the allocators and fs_root
        let cut = try #require(want.firstIndex { $0.hasPrefix("meta_alloc[0] btree blkno") })
        #expect(Self.firstDifference(run.lines, Array(want[..<cut])) == nil)
        #expect(run.status == 0)
    }

    /// A volume with every item type print knows (fs items of all zones and types, log trees
    /// with list and extent allocators and a srch file, srch files and compactions, log merge
    /// items, mounted clients, parent blocks), made by `Tests/Fixtures/make-print-synthetic.py`,
    /// with the original's output. Its short values make both read past them in the same way.
    @Test(arguments: [false, true])
    func printMatchesOriginalOnEveryItemType(skip: Bool) throws {
        let archive = try Self.packageRoot().appendingPathComponent("Tests/Fixtures/print-synthetic.tar.gz")
        let vol = try GoldenVolume("print-synthetic", archive: archive)
        let run = Self.runPrint(vol.meta, skip: skip)
        let want = try vol.expectedLines(skip ? "print-S.out" : "print.out")
        let diff = Self.firstDifference(run.lines, want)
        #expect(diff == nil, "print-synthetic\(skip ? " -S" : ""): \(diff ?? "")")
        // the over-read srch refs and a list block with bad start/nr are reported as corrupt
        #expect(run.status == 1)
        #expect(run.err.contains("corrupt blocks: "))
    }

    @Test func corruptBlocksAreReportedAndPrintCarriesOn() throws {
        let vol = try GoldenVolume("three-slots-v2")
        let want = try vol.expectedLines()
        let allocLine = try #require(want.first { $0.hasPrefix("  meta_alloc[0]: blkno ") })
        let allocBlkno = try #require(UInt64(allocLine.split(separator: " ")[2]))

        // a byte in the unused middle of each block: only the crc can notice
        try vol.flipByte(at: 18 * 4096 + 2000)
        try vol.flipByte(at: allocBlkno * 65536 + 30000)

        let run = Self.runPrint(vol.meta)
        let got = run.lines
        #expect(got.count == want.count)

        let q = try #require(got.firstIndex(of: "quorum blkno 18 (slot 1)"))
        #expect(got[q + 1].hasPrefix("  hdr: crc "))
        #expect(got[q + 1].contains("(!= "))
        #expect(got[q + 1].contains(" blkno 18 seq 1"))

        let a = try #require(got.firstIndex(of: "meta_alloc[0] btree blkno \(allocBlkno)"))
        #expect(got[a + 1].contains("(!= "))

        // every other line is as the original prints it, through to the end
        for (i, line) in want.enumerated() where i != q + 1 && i != a + 1 && i < got.count {
            #expect(got[i] == line, "line \(i + 1)")
        }
        #expect(got.last == want.last)
        #expect(run.status == 1)
        #expect(run.err.contains("corrupt blocks: 18 \(allocBlkno)"))
        #expect(run.err.hasSuffix("scoutfs: print failed: Input/output error (5)\n"))
    }

    @Test func unreadableBlocksAreReportedAndPrintCarriesOn() throws {
        let vol = try GoldenVolume("one-slot-v2")
        let want = try vol.expectedLines()
        // cut the device off at meta_alloc[0]'s block: it and meta_alloc[1] can't be read
        let allocLine = try #require(want.first { $0.hasPrefix("  meta_alloc[0]: blkno ") })
        let allocBlkno = try #require(UInt64(allocLine.split(separator: " ")[2]))
        #expect(truncate(vol.meta, off_t(allocBlkno * 65536)) == 0)

        let run = Self.runPrint(vol.meta)
        #expect(run.status == 1)
        #expect(run.err.contains("incomplete pread of blkno \(allocBlkno)\n"))
        #expect(run.err.hasSuffix("scoutfs: print failed: Invalid argument (22)\n"))
        #expect(!run.out.contains("meta_alloc[0] btree"))
        // the rest is still printed
        #expect(run.out.contains("data_alloc btree blkno"))
        #expect(run.lines.last == want.last)
    }

    /// One error, one line (the original prints the failed open on a line of its own first).
    @Test func missingDeviceFailsOnOneLine() {
        let run = Self.runPrint("/nonexistent/meta.img")
        #expect(run.status == 1)
        #expect(run.out == "")
        #expect(run.err == "scoutfs: print failed: cannot open '/nonexistent/meta.img': No such file or directory (2)\n")
    }

    @Test func dataDeviceIsRefusedAfterItsSuper() throws {
        let vol = try GoldenVolume("one-slot-v1")
        let run = Self.runPrint(vol.data)
        #expect(run.status == 1)
        #expect(run.out.hasPrefix("super blkno 16\n"))
        #expect(!run.out.contains("quorum blkno"))
        #expect(run.err == "**** Printing from data device is not allowed ****\nscoutfs: print failed: Invalid argument (22)\n")
    }
}
