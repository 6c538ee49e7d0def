import CFuseKernel
import Glibc

// The fuzzer's I/O half: one step as syscalls on a mountpoint, the checks on another mount,
// tree walks.

/// What a step returned: an errno (0 on success) and, for reads, what it read.
struct StressResult {
    var errno: Int32 = 0
    var call = ""
    var bytes: [UInt8]? = nil
    var names: [String]? = nil

    static func failed(_ call: String, _ e: Int32 = Glibc.errno) -> StressResult { StressResult(errno: e, call: call) }
}

private typealias FallocateFn = @convention(c) (Int32, Int32, Int, Int) -> Int32

/// glibc's fallocate(2) wrapper, which Swift's Glibc module hides behind _GNU_SOURCE.
private let fallocateFn: FallocateFn? = {
    guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "fallocate") else { return nil }
    return unsafeBitCast(sym, to: FallocateFn.self)
}()

private let fallocKeepSize: Int32 = 1

enum StressExecutor {
    /// Runs an action with paths under `base` (the seed's directory on one mount).
    static func perform(_ action: StressAction, base: String) -> StressResult {
        func p(_ rel: String) -> String { base + "/" + rel }
        switch action {
        case .create(let rel):
            let fd = open(p(rel), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o644)
            guard fd >= 0 else { return .failed("open(O_CREAT|O_EXCL)") }
            return closeChecked(fd)
        case .mkdir(let rel), .sharedMkdir(let rel):
            return mkdir(p(rel), 0o755) == 0 ? StressResult() : .failed("mkdir")
        case .rename(let a, let b, let flags), .sharedRename(let a, let b, let flags):
            if flags == 0 { return rename(p(a), p(b)) == 0 ? StressResult() : .failed("rename") }
            let name = flags == renameNoreplace ? "renameat2(RENAME_NOREPLACE)" : "renameat2(RENAME_EXCHANGE)"
            return cfk_renameat2(AT_FDCWD, p(a), AT_FDCWD, p(b), flags) == 0 ? StressResult() : .failed(name)
        case .link(let a, let b):
            return link(p(a), p(b)) == 0 ? StressResult() : .failed("link")
        case .unlink(let rel), .sharedUnlink(let rel):
            return unlink(p(rel)) == 0 ? StressResult() : .failed("unlink")
        case .rmdir(let rel), .sharedRmdir(let rel):
            return rmdir(p(rel)) == 0 ? StressResult() : .failed("rmdir")
        case .write(let rel, let offset, let data), .sharedWrite(let rel, let offset, let data):
            let fd = open(p(rel), O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { return .failed("open(O_WRONLY)") }
            if let e = pwriteAll(fd, data, offset) {
                close(fd)
                return e
            }
            return closeChecked(fd)
        case .sharedCreate(let rel, let data):
            // O_CREAT without O_EXCL: must succeed whoever creates the name first
            let fd = open(p(rel), O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
            guard fd >= 0 else { return .failed("open(O_CREAT)") }
            if let e = pwriteAll(fd, data, 0) {
                close(fd)
                return e
            }
            return closeChecked(fd)
        case .truncate(let rel, let size):
            return truncate(p(rel), off_t(size)) == 0 ? StressResult() : .failed("truncate")
        case .fallocate(let rel, let offset, let length, let keep):
            guard let fallocateFn else { return .failed("dlsym(fallocate)", ENOSYS) }
            let fd = open(p(rel), O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { return .failed("open(O_WRONLY)") }
            if fallocateFn(fd, keep ? fallocKeepSize : 0, offset, length) != 0 {
                let e = StressResult.failed(keep ? "fallocate(KEEP_SIZE)" : "fallocate")
                close(fd)
                return e
            }
            return closeChecked(fd)
        case .mmapWrite(let rel, let offset, let data):
            return mmapWrite(p(rel), offset: offset, data: data)
        case .mmapRead(let rel):
            return mmapRead(p(rel))
        case .setxattr(let rel, let name, let value):
            return setxattr(p(rel), name, value, value.count, 0) == 0 ? StressResult() : .failed("setxattr")
        case .readdir(let rel), .sharedReaddir(let rel):
            do throws(Errno) {
                return StressResult(names: try readDirectory(p(rel)))
            } catch {
                return .failed("readdir", error.code)
            }
        case .fsync(let rel):
            let fd = open(p(rel), O_WRONLY | O_CLOEXEC)
            guard fd >= 0 else { return .failed("open(O_WRONLY)") }
            if fsync(fd) != 0 {
                let e = StressResult.failed("fsync")
                close(fd)
                return e
            }
            return closeChecked(fd)
        case .append(let rel, let records):
            let fd = open(p(rel), O_WRONLY | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else { return .failed("open(O_APPEND)") }
            let bytes = records.flatMap { $0 }
            // one write(2): the records must land whole and together
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if n != bytes.count {
                let e = n < 0 ? StressResult.failed("write(O_APPEND)") : StressResult.failed("write(O_APPEND) short: \(n) of \(bytes.count)", EIO)
                close(fd)
                return e
            }
            return closeChecked(fd)
        }
    }

    private static func closeChecked(_ fd: Int32) -> StressResult {
        close(fd) == 0 ? StressResult() : .failed("close")
    }

    private static func pwriteAll(_ fd: Int32, _ data: [UInt8], _ offset: Int) -> StressResult? {
        var done = 0
        for _ in 0..<64 where done < data.count {
            let n = data.withUnsafeBytes { pwrite(fd, $0.baseAddress! + done, data.count - done, off_t(offset + done)) }
            if n < 0 { return .failed("pwrite") }
            if n == 0 { return .failed("pwrite returned 0", EIO) }
            done += n
        }
        return done == data.count ? nil : .failed("pwrite short", EIO)
    }

    private static func mmapWrite(_ path: String, offset: Int, data: [UInt8]) -> StressResult {
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return .failed("open(O_RDWR)") }
        defer { close(fd) }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = offset / page * page
        let length = offset + data.count - start
        guard let map = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(start)), map != MAP_FAILED else {
            return .failed("mmap(PROT_WRITE, MAP_SHARED)")
        }
        if let e = kernelCopy(into: map + (offset - start), from: data) {
            munmap(map, length)
            return e
        }
        if msync(map, length, MS_SYNC) != 0 {
            let e = StressResult.failed("msync(MS_SYNC)")
            munmap(map, length)
            return e
        }
        return munmap(map, length) == 0 ? StressResult() : .failed("munmap")
    }

    private static func mmapRead(_ path: String) -> StressResult {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failed("open(O_RDONLY)") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return .failed("fstat") }
        let size = Int(st.st_size)
        if size == 0 { return StressResult(bytes: []) }
        guard let map = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), map != MAP_FAILED else {
            return .failed("mmap(PROT_READ, MAP_SHARED)")
        }
        let r = kernelCopy(from: map, count: size)
        munmap(map, size)
        return r
    }

    // The mapping is copied by the kernel (write(2) from it, read(2) into it through a tmpfile):
    // a fault on a mapping whose FUSE connection is gone then fails the call with EFAULT
    // instead of killing the test process with SIGBUS.
    private static func tmpfile() -> Int32 { open("/tmp", cfk_o_tmpfile() | O_RDWR | O_CLOEXEC, 0o600) }

    private static func kernelCopy(into map: UnsafeMutableRawPointer, from data: [UInt8]) -> StressResult? {
        let t = tmpfile()
        guard t >= 0 else { return .failed("open(/tmp, O_TMPFILE)") }
        defer { close(t) }
        guard data.withUnsafeBytes({ pwrite(t, $0.baseAddress, $0.count, 0) }) == data.count else { return .failed("pwrite(tmpfile)") }
        let n = pread(t, map, data.count, 0)
        return n == data.count ? nil : .failed("store into the mapping (pread into it)", n < 0 ? errno : EIO)
    }

    private static func kernelCopy(from map: UnsafeMutableRawPointer, count: Int) -> StressResult {
        let t = tmpfile()
        guard t >= 0 else { return .failed("open(/tmp, O_TMPFILE)") }
        defer { close(t) }
        let n = pwrite(t, map, count, 0)
        guard n == count else { return .failed("load from the mapping (pwrite from it)", n < 0 ? errno : EIO) }
        var bytes = [UInt8](repeating: 0, count: count)
        guard bytes.withUnsafeMutableBytes({ pread(t, $0.baseAddress, count, 0) }) == count else { return .failed("pread(tmpfile)") }
        return StressResult(bytes: bytes)
    }

    /// The paths (relative to the seed directory) whose state a successful owned action changed.
    static func touched(_ a: StressAction) -> [String] {
        switch a {
        case .rename(let x, let y, _), .link(let x, let y): [x, y]
        case .readdir, .append, .sharedCreate, .sharedWrite, .sharedUnlink, .sharedRename, .sharedMkdir, .sharedRmdir,
            .sharedReaddir:
            []
        default: [a.path]
        }
    }

    /// Checks `rel` on a mount against the model's entry (`thread root` + path): presence,
    /// type, size, link count, contents, xattrs. Returns the mismatches.
    static func verify(_ rel: String, base: String, model: StressModel, root: String, contents: Bool) -> [String] {
        let mp = String(rel.dropFirst(root.count + 1))
        var st = stat()
        let rc = lstat(base + "/" + rel, &st)
        let e = errno
        guard let ino = model.paths[mp], let node = model.inodes[ino] else {
            return rc == 0 ? ["\(rel) exists (mode \(String(st.st_mode, radix: 8)), size \(st.st_size)) but the model has it removed"]
                : e == ENOENT ? [] : ["lstat \(rel): \(Errno(e)) (the model has it absent)"]
        }
        guard rc == 0 else { return ["lstat \(rel): \(Errno(e)) (the model has a \(node.isDir ? "directory" : "file"))"] }
        var out: [String] = []
        let isDir = st.st_mode & S_IFMT == S_IFDIR
        if isDir != node.isDir { return ["\(rel) is \(isDir ? "a directory" : "not a directory") (mode \(String(st.st_mode, radix: 8))); the model has \(node.isDir ? "a directory" : "a file")"] }
        if !node.isDir {
            if Int(st.st_size) != node.data.count { out.append("\(rel): size \(st.st_size), model \(node.data.count)") }
            if Int(st.st_nlink) != model.nlink(ino) { out.append("\(rel): nlink \(st.st_nlink), model \(model.nlink(ino))") }
            if contents {
                do throws(Errno) {
                    let got = try readAll(base + "/" + rel)
                    if got != node.data { out.append("\(rel): contents differ: \(firstDifference(got, node.data))") }
                } catch {
                    out.append("read \(rel): \(error)")
                }
            }
        }
        for (name, value) in node.xattrs {
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = getxattr(base + "/" + rel, name, &buf, buf.count)
            if n < 0 {
                out.append("getxattr \(rel) \(name): \(Errno(errno))")
            } else if Array(buf[0..<n]) != value {
                out.append("getxattr \(rel) \(name): \(n) bytes differ from the \(value.count) set")
            }
        }
        return out
    }

    static func firstDifference(_ got: [UInt8], _ want: [UInt8]) -> String {
        let i = zip(got, want).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, want.count)
        return "got \(got.count) bytes, expected \(want.count); first difference at byte \(i)"
    }

    /// A tree under `base` as every mount must show it (paths relative to `base`; bounded).
    static func walk(_ base: String, maxEntries: Int = 200_000) throws(Errno) -> Snapshot {
        var out: Snapshot = [:]
        var queue = [""]
        var i = 0
        while i < queue.count, out.count < maxEntries {
            let rel = queue[i]
            i += 1
            let dir = rel.isEmpty ? base : base + "/" + rel
            let names: [String]
            do throws(Errno) { names = try readDirectory(dir) } catch { throw Errno(error.code, path: dir, call: "readdir") }
            for name in names.sorted() {
                let r = rel.isEmpty ? name : rel + "/" + name
                let path = base + "/" + r
                var st = stat()
                guard lstat(path, &st) == 0 else { throw Errno(errno, path: path, call: "lstat") }
                let fmt = st.st_mode & S_IFMT
                var entry = SnapshotEntry(type: "o", size: Int(st.st_size), nlink: Int(st.st_nlink), hash: 0, xattrs: try xattrs(path))
                if fmt == S_IFDIR {
                    entry.type = "d"
                    queue.append(r)
                } else if fmt == S_IFREG {
                    entry.type = "f"
                    do throws(Errno) { entry.hash = fnv1a(try readAll(path)) } catch { throw Errno(error.code, path: path, call: "read") }
                } else if fmt == S_IFLNK {
                    entry.type = "l"
                }
                out[r] = entry
            }
        }
        return out
    }

    static func xattrs(_ path: String) throws(Errno) -> [String: UInt64] {
        var list = [CChar](repeating: 0, count: 16 << 10)
        let n = llistxattr(path, &list, list.count)
        guard n >= 0 else { throw Errno(errno) }
        var out: [String: UInt64] = [:]
        for nameBytes in list[0..<n].split(separator: 0) {
            let name = String(decoding: nameBytes.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            var buf = [UInt8](repeating: 0, count: 64 << 10)
            let m = lgetxattr(path, name, &buf, buf.count)
            guard m >= 0 else { throw Errno(errno) }
            out[name] = fnv1a(Array(buf[0..<m]))
        }
        return out
    }
}
