#if canImport(Glibc)
import Glibc
#endif

/// The volumes the original's mkfs made (`../shared/golden` from the package root), unpacked on demand.
public enum Golden {
    /// The package root, found from this file's path.
    public static let packageRoot: String = {
        var parts = #filePath.split(separator: "/").map(String.init)
        parts.removeLast(3)  // Sources/ScoutTestSupport/Golden.swift
        return "/" + parts.joined(separator: "/")
    }()

    /// The golden archives: `$SCOUT_GOLDEN_DIR`, else `../shared/golden` next to the package,
    /// else `/work/shared/golden` (where a clone elsewhere on this machine finds them).
    public static let directory: String = {
        if let p = getenv("SCOUT_GOLDEN_DIR") { return String(cString: p) }
        let candidates = [packageRoot + "/../shared/golden", "/work/shared/golden"]
        return candidates.first { access($0 + "/one-slot-v2.tar.gz", R_OK) == 0 } ?? candidates[0]
    }()

    /// The golden volume names.
    public static let names = ["one-slot-v1", "one-slot-v2", "three-slots-v2", "zones-five-slots-v2"]

    /// Unpacks `name.tar.gz` (keeping holes) into a new temporary directory and returns the
    /// folder holding meta.img, data.img, ARGS, mkfs.out and print.out.
    public static func unpack(_ name: String) throws -> String {
        let dir = try TempDir.make(prefix: "golden-\(name)")
        let cmd = "tar -xSzf '\(directory)/\(name).tar.gz' -C '\(dir)'"
        guard system(cmd) == 0 else { throw TempDir.Failure(message: "failed: \(cmd)") }
        return dir + "/" + name
    }
}

/// Temporary directories for tests.
public enum TempDir {
    public struct Failure: Error, CustomStringConvertible {
        public var message: String
        public var description: String { message }
    }

    /// Makes a new empty directory under /tmp.
    public static func make(prefix: String) throws -> String {
        var template = Array("/tmp/scoutfs-\(prefix)-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw Failure(message: "mkdtemp failed: errno \(errno)") }
        return String(cString: p)
    }

    /// Makes a sparse file of `size` bytes.
    public static func sparseFile(_ path: String, size: UInt64) throws {
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw Failure(message: "open \(path): errno \(errno)") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else { throw Failure(message: "ftruncate \(path): errno \(errno)") }
    }

    /// Removes a directory tree.
    public static func remove(_ path: String) {
        _ = system("rm -rf '\(path)'")
    }

    /// Reads the first `count` bytes of a file.
    public static func readBytes(_ path: String, count: Int) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw Failure(message: "open \(path): errno \(errno)") }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: count)
        let n = pread(fd, &buf, count, 0)
        guard n >= 0 else { throw Failure(message: "read \(path): errno \(errno)") }
        return Array(buf.prefix(n))
    }

    /// Reads a whole file as text.
    public static func readText(_ path: String) throws -> String {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw Failure(message: "open \(path): errno \(errno)") }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buf, buf.count)
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
