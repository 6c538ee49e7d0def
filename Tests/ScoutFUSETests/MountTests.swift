import CFuseKernel
import Glibc
import ScoutFUSE
import ScoutTestSupport
import Testing

@Suite("FUSE mounts", .serialized, .enabled(if: FUSETestEnvironment.available), .timeLimit(.minutes(1)))
struct MountTests {
    @Test("files, directories, symlinks, links, attributes through a real mount")
    func basicOperations() throws {
        let fs = MemoryFileSystem()
        let (_, end) = try withMounted(fs) { m in
            #expect(mountType(m.mountpoint) == "fuse.scoutfs")
            // root
            let (root, rootErr) = statPath(m.mountpoint)
            #expect(rootErr == 0)
            #expect(root?.st_ino == 1)
            #expect((root?.st_mode ?? 0) & S_IFMT == S_IFDIR)

            // mkdir with umask applied by the filesystem (DONT_MASK)
            let old = umask(0o022)
            defer { umask(old) }
            #expect(Glibc.mkdir(m.path("d"), 0o777) == 0)
            #expect(statPath(m.path("d")).0.map { $0.st_mode & 0o7777 } == 0o755)
            #expect(Glibc.mkdir(m.path("d"), 0o777) == -1 && errno == EEXIST)

            // create, write, read
            let content = Array("hello, fuse".utf8)
            try writeFile(m.path("d/f"), content)
            #expect(try readFile(m.path("d/f")) == content)
            let st = statPath(m.path("d/f")).0
            #expect(st?.st_size == content.count)
            #expect((st?.st_mode ?? 0) & S_IFMT == S_IFREG)
            #expect(st.map { $0.st_mode & 0o777 } == 0o644)

            // O_TRUNC on open (ATOMIC_O_TRUNC) and append
            try writeFile(m.path("d/f"), Array("xy".utf8))
            #expect(try readFile(m.path("d/f")) == Array("xy".utf8))
            try writeFile(m.path("d/f"), Array("z".utf8), flags: O_WRONLY | O_APPEND)
            #expect(try readFile(m.path("d/f")) == Array("xyz".utf8))

            // symlink / readlink
            #expect(Glibc.symlink("d/f", m.path("s")) == 0)
            var buf = [CChar](repeating: 0, count: 64)
            let n = Glibc.readlink(m.path("s"), &buf, buf.count)
            #expect(n == 3)
            #expect(String(decoding: buf[0..<max(0, n)].map { UInt8(bitPattern: $0) }, as: UTF8.self) == "d/f")
            #expect(try readFile(m.path("s")) == Array("xyz".utf8))

            // hard link
            #expect(Glibc.link(m.path("d/f"), m.path("h")) == 0)
            #expect(statPath(m.path("h")).0?.st_nlink == 2)
            #expect(statPath(m.path("h")).0?.st_ino == statPath(m.path("d/f")).0?.st_ino)

            // mknod (fifo)
            #expect(mkfifo(m.path("p"), 0o600) == 0)
            #expect((statPath(m.path("p")).0?.st_mode ?? 0) & S_IFMT == S_IFIFO)

            // readdir
            #expect(try Set(listDirectory(m.mountpoint)) == ["d", "s", "h", "p"])
            #expect(try listDirectory(m.path("d")) == ["f"])

            // setattr: chmod, chown, truncate, utimensat with UTIME_NOW / UTIME_OMIT / explicit times
            #expect(chmod(m.path("h"), 0o600) == 0)
            #expect(statPath(m.path("h")).0.map { $0.st_mode & 0o7777 } == 0o600)
            #expect(chown(m.path("h"), 1234, 5678) == 0)
            #expect(statPath(m.path("h")).0?.st_uid == 1234)
            #expect(statPath(m.path("h")).0?.st_gid == 5678)
            #expect(truncate(m.path("h"), 10000) == 0)
            #expect(statPath(m.path("h")).0?.st_size == 10000)
            var times = [timespec(tv_sec: 1_000_000, tv_nsec: 123), timespec(tv_sec: 0, tv_nsec: utimeOmit)]
            #expect(utimensat(AT_FDCWD, m.path("h"), &times, 0) == 0)
            let afterSet = statPath(m.path("h")).0
            #expect(afterSet?.st_atim.tv_sec == 1_000_000)
            #expect(afterSet?.st_atim.tv_nsec == 123)
            let mtimeBefore = afterSet?.st_mtim.tv_sec ?? 0
            #expect(mtimeBefore > 1_000_000)  // omitted: unchanged (recent)
            times = [timespec(tv_sec: 0, tv_nsec: utimeNow), timespec(tv_sec: 42, tv_nsec: 0)]
            #expect(utimensat(AT_FDCWD, m.path("h"), &times, 0) == 0)
            let afterNow = statPath(m.path("h")).0
            #expect((afterNow?.st_atim.tv_sec ?? 0) >= time(nil) - 5)
            #expect(afterNow?.st_mtim.tv_sec == 42)

            // fsync, fdatasync, fallocate, SEEK_DATA/SEEK_HOLE
            let fd = open(m.path("h"), O_RDWR)
            #expect(fd >= 0)
            #expect(fsync(fd) == 0)
            #expect(fdatasync(fd) == 0)
            #expect(posix_fallocate(fd, 0, 20000) == 0)
            var fst = Glibc.stat()
            #expect(fstat(fd, &fst) == 0)
            #expect(fst.st_size == 20000)
            #expect(lseek(fd, 100, cfk_seek_data()) == 100)
            #expect(lseek(fd, 100, cfk_seek_hole()) == 20000)
            #expect(lseek(fd, 30000, cfk_seek_data()) == -1 && errno == ENXIO)
            close(fd)
            #expect(fs.count(.fsync) >= 2)
            #expect(fs.count(.fallocate) == 1)
            #expect(fs.count(.lseek) >= 2)

            // statfs
            var sfs = statvfs()
            #expect(statvfs(m.mountpoint, &sfs) == 0)
            #expect(sfs.f_blocks == 1 << 20)
            #expect(sfs.f_bavail == 1 << 18)
            #expect(sfs.f_namemax == 255)

            // unlink, rmdir, errors
            #expect(rmdir(m.path("d")) == -1 && errno == ENOTEMPTY)
            #expect(Glibc.unlink(m.path("d/f")) == 0)
            #expect(statPath(m.path("h")).0?.st_nlink == 1)
            #expect(rmdir(m.path("d")) == 0)
            #expect(statPath(m.path("d")).1 == ENOENT)
            #expect(Glibc.unlink(m.path("nope")) == -1 && errno == ENOENT)
            #expect(rmdir(m.path("h")) == -1 && errno == ENOTDIR)
        }
        // plain fuse: the unmount sends no DESTROY
        #expect(end?.reason == .disconnected)
        #expect(end?.isClean == false)
        #expect(fs.destroyedAt == nil)
    }

    @Test("concurrent clients through two reader threads keep their data apart")
    func concurrentClients() throws {
        var config = FUSEConfiguration()
        config.readerThreads = 2
        let fs = MemoryFileSystem()
        try withMounted(fs, configuration: config) { m in
            let root = m.mountpoint
            let threads = (0..<4).map { t in
                TestThread {
                    var failures = 0
                    let dir = "\(root)/t\(t)"
                    if Glibc.mkdir(dir, 0o755) != 0 { return (1, errno) }
                    for i in 0..<50 {
                        let data = [UInt8](repeating: UInt8(truncatingIfNeeded: t * 31 + i), count: 16384 + i)
                        let p = "\(dir)/f\(i)"
                        do {
                            try writeFile(p, data)
                            if try readFile(p) != data { failures += 1 }
                        } catch {
                            failures += 1
                        }
                        if Glibc.rename(p, p + ".r") != 0 { failures += 1 }
                        if Glibc.unlink(p + ".r") != 0 { failures += 1 }
                    }
                    return (failures, 0)
                }
            }
            for t in threads {
                let r = t.join(timeout: .seconds(30))
                #expect(r != nil, "a client did not finish in 30 s")
                #expect(r?.0 == 0)
            }
            let top = try listDirectory(root).sorted()
            #expect(top == ["t0", "t1", "t2", "t3"])
            for t in 0..<4 {
                let left = try listDirectory("\(root)/t\(t)")
                #expect(left.isEmpty)
            }
        }
    }
}
