import CFuseKernel
import Glibc
import ScoutFUSE
import ScoutTestSupport
import Testing

@Suite("FUSE namespace operations", .serialized, .enabled(if: FUSETestEnvironment.available), .timeLimit(.minutes(1)))
struct NamespaceTests {
    @Test("rename and renameat2 NOREPLACE / EXCHANGE / WHITEOUT")
    func renameFlags() throws {
        try withMounted(MemoryFileSystem()) { m in
            try writeFile(m.path("a"), Array("A".utf8))
            try writeFile(m.path("b"), Array("B".utf8))
            #expect(Glibc.mkdir(m.path("dir"), 0o755) == 0)

            #expect(renameat2(m.path("a"), m.path("b"), flags: 1) == EEXIST)  // RENAME_NOREPLACE
            #expect(try readFile(m.path("a")) == Array("A".utf8))

            #expect(renameat2(m.path("a"), m.path("b"), flags: 2) == 0)  // RENAME_EXCHANGE
            #expect(try readFile(m.path("a")) == Array("B".utf8))
            #expect(try readFile(m.path("b")) == Array("A".utf8))

            #expect(renameat2(m.path("a"), m.path("missing"), flags: 2) == ENOENT)
            #expect(renameat2(m.path("a"), m.path("c"), flags: 4) == EINVAL)  // RENAME_WHITEOUT
            #expect(statPath(m.path("c")).1 == ENOENT)

            #expect(renameat2(m.path("a"), m.path("dir/a2"), flags: 1) == 0)  // NOREPLACE, free target
            #expect(try readFile(m.path("dir/a2")) == Array("B".utf8))
            #expect(statPath(m.path("a")).1 == ENOENT)

            // plain rename replacing a file
            #expect(Glibc.rename(m.path("b"), m.path("dir/a2")) == 0)
            #expect(try readFile(m.path("dir/a2")) == Array("A".utf8))
            #expect(try listDirectory(m.path("dir")) == ["a2"])

            // directory over file / file over non-empty directory
            #expect(Glibc.mkdir(m.path("e"), 0o755) == 0)
            #expect(Glibc.rename(m.path("e"), m.path("dir/a2")) == -1 && errno == ENOTDIR)
            try writeFile(m.path("f"), [])
            #expect(Glibc.rename(m.path("f"), m.path("dir")) == -1 && errno == EISDIR)
            #expect(Glibc.rename(m.path("e"), m.path("dir")) == -1 && (errno == ENOTEMPTY || errno == EEXIST))
            // moving a directory updates link counts
            #expect(Glibc.rename(m.path("e"), m.path("dir/e")) == 0)
            #expect(statPath(m.path("dir")).0?.st_nlink == 3)
            #expect(statPath(m.mountpoint).0?.st_nlink == 3)
        }
    }

    @Test("extended attributes: size query, ERANGE, create/replace, list, remove")
    func xattrs() throws {
        try withMounted(MemoryFileSystem()) { m in
            let p = m.path("x")
            try writeFile(p, [])
            let value = Array("some value".utf8)
            #expect(setxattr(p, "user.k1", value, value.count, 0) == 0)
            #expect(setxattr(p, "user.k1", value, value.count, Int32(XATTR_CREATE)) == -1 && errno == EEXIST)
            #expect(setxattr(p, "user.k2", value, 3, Int32(XATTR_REPLACE)) == -1 && errno == ENODATA)
            #expect(setxattr(p, "user.k2", value, 3, 0) == 0)
            #expect(setxattr(p, "scoutfs.hide.tag", value, 1, 0) == 0)

            #expect(getxattr(p, "user.k1", nil, 0) == value.count)  // size query
            var small = [UInt8](repeating: 0, count: 4)
            #expect(getxattr(p, "user.k1", &small, small.count) == -1 && errno == ERANGE)
            var buf = [UInt8](repeating: 0, count: 64)
            let n = getxattr(p, "user.k1", &buf, buf.count)
            #expect(n == value.count)
            #expect(Array(buf[0..<max(0, n)]) == value)
            #expect(getxattr(p, "user.none", &buf, buf.count) == -1 && errno == ENODATA)

            let size = listxattr(p, nil, 0)
            #expect(size == "scoutfs.hide.tag\0user.k1\0user.k2\0".utf8.count)
            var list = [CChar](repeating: 0, count: 128)
            let ln = listxattr(p, &list, list.count)
            let names = list[0..<max(0, ln)].split(separator: 0).map { String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self) }
            #expect(names == ["scoutfs.hide.tag", "user.k1", "user.k2"])
            var tiny = [CChar](repeating: 0, count: 5)
            #expect(listxattr(p, &tiny, tiny.count) == -1 && errno == ERANGE)

            #expect(removexattr(p, "user.k1") == 0)
            #expect(removexattr(p, "user.k1") == -1 && errno == ENODATA)
            #expect(getxattr(p, "user.k1", nil, 0) == -1 && errno == ENODATA)
        }
    }

    @Test("O_TMPFILE then linkat gives the file a name")
    func tmpfile() throws {
        let fs = MemoryFileSystem()
        try withMounted(fs) { m in
            let fd = open(m.mountpoint, cfk_o_tmpfile() | O_RDWR, 0o600)
            try #require(fd >= 0, "O_TMPFILE: errno \(errno)")
            defer { close(fd) }
            let data = Array("anonymous".utf8)
            #expect(data.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == data.count)
            var st = Glibc.stat()
            #expect(fstat(fd, &st) == 0)
            #expect(st.st_nlink == 0)
            #expect(try listDirectory(m.mountpoint).isEmpty)
            #expect(fs.count(.tmpfile) == 1)

            #expect(linkat(fd, "", AT_FDCWD, m.path("named"), atEmptyPath) == 0, "linkat: errno \(errno)")
            #expect(try listDirectory(m.mountpoint) == ["named"])
            #expect(try readFile(m.path("named")) == data)
            #expect(statPath(m.path("named")).0?.st_nlink == 1)
            #expect(statPath(m.path("named")).0?.st_ino == st.st_ino)
        }
    }

    @Test("large directories list every entry once", arguments: [FUSEConfiguration.ReaddirPlus.off, .always, .adaptive])
    func largeDirectory(mode: FUSEConfiguration.ReaddirPlus) throws {
        var config = FUSEConfiguration()
        config.readdirPlus = mode
        let fs = MemoryFileSystem()
        let count = 2000
        try withMounted(fs, configuration: config) { m in
            #expect(Glibc.mkdir(m.path("big"), 0o755) == 0)
            var expected = Set<String>()
            for i in 0..<count {
                // names of varying length exercise record padding
                let name = "entry-\(i)-" + String(repeating: "x", count: i % 37)
                let fd = open(m.path("big/" + name), O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
                #expect(fd >= 0)
                close(fd)
                expected.insert(name)
            }
            let listed = try listDirectory(m.path("big"))
            #expect(listed.count == count)
            #expect(Set(listed) == expected)
            let dirCalls = fs.count(.readdir) + fs.count(.readdirplus)
            #expect(dirCalls > 2)  // the listing needed several replies: the buffer filled and stopped
            switch mode {
            case .off: #expect(fs.count(.readdirplus) == 0)
            case .always: #expect(fs.count(.readdir) == 0)
            case .adaptive: #expect(dirCalls > 0)
            }
        }
    }

    @Test("large reads and writes use 1 MiB requests and round-trip the data")
    func largeIO() throws {
        let fs = MemoryFileSystem(openFlags: [.directIO])
        try withMounted(fs) { m in
            var rng = SplitMix64(seed: 42)
            let size = 3 << 20 + 12345
            var data = [UInt8](repeating: 0, count: size)
            data.withUnsafeMutableBytes { raw in
                for i in stride(from: 0, to: size - 7, by: 8) { raw.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self) }
            }
            let info = try #require(m.session.connection)
            #expect(info.maxWrite == 1 << 20)
            #expect(info.maxPages == 256)
            try writeFile(m.path("big"), data)
            #expect(fs.writeSizes.max() == 1 << 20)
            #expect(try readFile(m.path("big")) == data)
            #expect(statPath(m.path("big")).0?.st_size == size)
        }
    }
}
