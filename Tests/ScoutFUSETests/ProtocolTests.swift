import CFuseKernel
import Glibc
import ScoutFUSE
import Synchronization
import SystemPackage
import Testing

private func flag(_ f: Int32) -> UInt64 { UInt64(UInt32(bitPattern: f)) }

/// Protocol-level tests against a fake kernel (a socket pair): no mount, no root needed.
@Suite("FUSE protocol", .timeLimit(.minutes(1)))
struct ProtocolTests {
    @Test("INIT negotiates 7.38, 1 MiB writes, 256 pages and the documented flags")
    func initNegotiation() throws {
        let fs = ProbeFileSystem()
        let k = try FakeKernel(fs)
        let r = try #require(k.initialize(minor: 44, flags: 0xFFFF_FFFF))
        #expect(r.error == 0)
        #expect(r.payload.count == MemoryLayout<fuse_init_out>.size)
        let out = try #require(r.load(fuse_init_out.self))
        #expect(out.major == 7)
        #expect(out.minor == 38)
        #expect(out.max_write == 1 << 20)
        #expect(out.max_pages == 256)
        #expect(out.time_gran == 1)
        #expect(out.max_readahead == 128 << 10)  // capped by the kernel's offer
        let f = UInt64(out.flags)
        for wanted in [
            FUSE_ASYNC_READ, FUSE_ATOMIC_O_TRUNC, FUSE_EXPORT_SUPPORT, FUSE_BIG_WRITES, FUSE_DONT_MASK,
            FUSE_HAS_IOCTL_DIR, FUSE_DO_READDIRPLUS, FUSE_READDIRPLUS_AUTO, FUSE_ASYNC_DIO, FUSE_PARALLEL_DIROPS,
            FUSE_ABORT_ERROR, FUSE_MAX_PAGES, FUSE_CACHE_SYMLINKS, FUSE_EXPLICIT_INVAL_DATA, FUSE_SETXATTR_EXT,
        ] {
            #expect(f & flag(wanted) != 0, "missing flag \(String(wanted, radix: 16))")
        }
        for unwanted in [
            FUSE_POSIX_LOCKS, FUSE_FLOCK_LOCKS, FUSE_SPLICE_READ, FUSE_SPLICE_WRITE, FUSE_SPLICE_MOVE,
            FUSE_WRITEBACK_CACHE, FUSE_AUTO_INVAL_DATA, FUSE_POSIX_ACL, FUSE_HANDLE_KILLPRIV, FUSE_HANDLE_KILLPRIV_V2,
            FUSE_NO_OPEN_SUPPORT, FUSE_INIT_EXT, FUSE_MAP_ALIGNMENT, FUSE_SUBMOUNTS,
        ] {
            #expect(f & flag(unwanted) == 0, "unexpected flag \(String(unwanted, radix: 16))")
        }
        let info = try #require(fs.state.withLock { $0.connection })
        #expect(info.kernelMinor == 44)
        #expect(info.minor == 38)
        #expect(info.flags == f)
        #expect(k.session.connection == info)
    }

    @Test("INIT replies only flags the kernel offered, and honours the configuration")
    func initFlagsSubset() throws {
        var config = FUSEConfiguration()
        config.readdirPlus = .off
        config.posixACL = true
        config.dataInvalidation = .automatic
        config.maxWrite = 256 << 10
        let k = try FakeKernel(ProbeFileSystem(), configuration: config)
        let offered = flag(FUSE_ASYNC_READ) | flag(FUSE_POSIX_ACL) | flag(FUSE_DO_READDIRPLUS) | flag(FUSE_AUTO_INVAL_DATA)
        let out = try #require(k.initialize(flags: offered)?.load(fuse_init_out.self))
        #expect(UInt64(out.flags) == flag(FUSE_ASYNC_READ) | flag(FUSE_POSIX_ACL) | flag(FUSE_AUTO_INVAL_DATA))
        #expect(out.max_write == 256 << 10)
        #expect(out.max_pages == 32)  // MAX_PAGES not offered: the kernel's default
    }

    @Test("INIT from a newer major version asks the kernel to retry; a too old minor is refused")
    func initVersions() throws {
        let k = try FakeKernel(ProbeFileSystem())
        let r = try #require(k.initialize(major: 8))
        #expect(r.error == 0)
        #expect(r.payload.count == 8)
        #expect(r.load(fuse_init_out.self) == nil)
        #expect(r.payload == bytesOf(UInt32(7)) + bytesOf(UInt32(38)))
        // then the real INIT works
        #expect(k.initialize()?.error == 0)

        let old = try FakeKernel(ProbeFileSystem())
        #expect(old.initialize(minor: 22)?.error == EPROTO)
        let end = old.session.wait(timeout: .seconds(5))
        #expect(end?.reason == .failed(EPROTO))
    }

    @Test("requests before INIT get EIO")
    func beforeInit() throws {
        let fs = ProbeFileSystem()
        let k = try FakeKernel(fs)
        #expect(k.call(.lookup, args: cString("x"))?.error == EIO)
        #expect(fs.state.withLock { $0.names.isEmpty })
    }

    @Test("LOOKUP reply: entry, generation, timeouts and attributes on the wire")
    func lookupReply() throws {
        let fs = ProbeFileSystem()
        let k = try FakeKernel(fs)
        _ = k.initialize()
        let r = try #require(k.call(.lookup, node: 1, args: cString("name")))
        #expect(r.error == 0)
        #expect(r.payload.count == MemoryLayout<fuse_entry_out>.size)
        let e = try #require(r.load(fuse_entry_out.self))
        #expect(e.nodeid == 77)
        #expect(e.generation == 3)
        #expect(e.entry_valid == 1)
        #expect(e.entry_valid_nsec == 500_000_000)
        #expect(e.attr_valid == 2)
        #expect(e.attr.ino == 77)
        #expect(e.attr.size == 5)
        #expect(e.attr.mode == S_IFREG | 0o644)
        #expect(fs.state.withLock { $0.names } == ["name"])
    }

    @Test("errors map to errno: FUSEError, Errno, ErrnoConvertible, anything else EIO")
    func errorMapping() throws {
        struct Custom: ErrnoConvertible { var errnoValue: Int32 { ESTALE } }
        struct Opaque: Error {}
        let cases: [((any Error & Sendable)?, Int32)] = [
            (FUSEError.noEntry, ENOENT), (Errno.tooManyOpenFiles, EMFILE), (Custom(), ESTALE), (Opaque(), EIO),
            (FUSEError(0), EIO), (FUSEError(-5), EIO), (FUSEError(5000), EIO),
        ]
        for (error, expected) in cases {
            let k = try FakeKernel(ProbeFileSystem(lookupError: error))
            _ = k.initialize()
            #expect(k.call(.lookup, args: cString("x"))?.error == expected, "\(String(describing: error))")
        }
        #expect(FUSEError.errno(for: FUSEError(ENOSPC)) == ENOSPC)
    }

    @Test("malformed requests get an error reply and never reach the filesystem")
    func malformedRequests() throws {
        let fs = ProbeFileSystem()
        let k = try FakeKernel(fs)
        _ = k.initialize()
        // a name without NUL
        #expect(k.call(.lookup, args: Array("abc".utf8))?.error == EINVAL)
        // a struct cut short
        #expect(k.call(.setattr, args: [1, 2, 3])?.error == EINVAL)
        // WRITE claiming more data than it carries
        var w = fuse_write_in()
        w.size = 100
        #expect(k.call(.write, args: bytesOf(w) + [1, 2, 3])?.error == EINVAL)
        // header length disagreeing with the message
        let u = k.request(.lookup, args: cString("x"), lengthDelta: 8)
        let r = k.receive()
        #expect(r?.unique == u)
        #expect(r?.error == EIO)
        // too short to be a request: ignored, and the session keeps going
        k.sendRaw([1, 2, 3])
        // unknown and unsupported opcodes
        #expect(k.call(FUSEOpcode(rawValue: 9999))?.error == ENOSYS)
        #expect(k.call(.getlk, args: [UInt8](repeating: 0, count: MemoryLayout<fuse_lk_in>.size))?.error == ENOSYS)
        #expect(k.call(.bmap)?.error == ENOSYS)
        // defaults: ENOSYS for getattr on a filesystem without it, ENOTTY for ioctl
        #expect(k.call(.getattr, args: [UInt8](repeating: 0, count: 16))?.error == ENOSYS)
        #expect(k.call(.ioctl, args: [UInt8](repeating: 0, count: MemoryLayout<fuse_ioctl_in>.size))?.error == ENOTTY)
        #expect(fs.state.withLock { $0.names.isEmpty && $0.writes.isEmpty && $0.changes.isEmpty })
        // still alive
        #expect(k.call(.lookup, args: cString("ok"))?.error == 0)
    }

    @Test("RENAME2: flags pass through, WHITEOUT and NOREPLACE|EXCHANGE are EINVAL")
    func rename2Flags() throws {
        let fs = ProbeFileSystem()
        let k = try FakeKernel(fs)
        _ = k.initialize()
        func rename2(_ flags: UInt32) -> Int32? {
            let a = fuse_rename2_in(newdir: 5, flags: flags, padding: 0)
            return k.call(.rename2, args: bytesOf(a) + cString("from") + cString("to"))?.error
        }
        #expect(rename2(0) == 0)
        #expect(rename2(1) == 0)
        #expect(rename2(2) == 0)
        #expect(rename2(4) == EINVAL)
        #expect(rename2(3) == EINVAL)
        #expect(rename2(8) == EINVAL)
        #expect(k.call(.rename, args: bytesOf(fuse_rename_in(newdir: 1)) + cString("a") + cString("b"))?.error == 0)
        let seen = fs.state.withLock { $0.renames.map { "\($0.0)>\($0.1):\($0.2.rawValue)" } }
        #expect(seen == ["from>to:0", "from>to:1", "from>to:2", "a>b:0"])
    }

    @Test("SETATTR bits become SetAttributes (NOW, OMIT, size, fh, ctime)")
    func setattrParsing() throws {
        let fs = ProbeFileSystem()
        let k = try FakeKernel(fs)
        _ = k.initialize()
        var a = fuse_setattr_in()
        a.valid = (1 << 0) | (1 << 3) | (1 << 4) | (1 << 7) | (1 << 5) | (1 << 6) | (1 << 10)
        a.mode = 0o100600
        a.size = 4096
        a.mtime = UInt64(bitPattern: -5)
        a.mtimensec = 9
        a.ctime = 77
        a.fh = 12
        #expect(k.call(.setattr, node: 9, args: bytesOf(a))?.error == 0)
        a = fuse_setattr_in()
        a.valid = (1 << 1) | (1 << 2) | (1 << 11)
        a.uid = 1000
        a.gid = 2000
        #expect(k.call(.setattr, node: 9, args: bytesOf(a))?.error == 0)
        let c = fs.state.withLock { $0.changes }
        try #require(c.count == 2)
        #expect(c[0].mode == 0o100600)
        #expect(c[0].size == 4096)
        #expect(c[0].atime == .now)
        #expect(c[0].mtime == .set(FileTime(seconds: -5, nanoseconds: 9)))
        #expect(c[0].ctime == FileTime(seconds: 77))
        #expect(c[0].fileHandle == 12)
        #expect(c[0].uid == nil && c[0].gid == nil && !c[0].killSUIDGID)
        #expect(c[1] == SetAttributes(uid: 1000, gid: 2000, killSUIDGID: true))
    }

    @Test("GETXATTR size queries and ERANGE are answered by the session")
    func getxattrSizes() throws {
        let k = try FakeKernel(ProbeFileSystem())
        _ = k.initialize()
        func get(_ size: UInt32) -> FakeKernel<ProbeFileSystem>.Reply? {
            k.call(.getxattr, args: bytesOf(fuse_getxattr_in(size: size, padding: 0)) + cString("user.x"))
        }
        #expect(get(0)?.load(fuse_getxattr_out.self)?.size == 10)
        #expect(get(4)?.error == ERANGE)
        #expect(get(10)?.payload == Array("0123456789".utf8))
        #expect(get(100)?.payload == Array("0123456789".utf8))
    }

    @Test("WRITE data reaches the filesystem page-aligned and is acknowledged")
    func writeAlignment() throws {
        let fs = ProbeFileSystem()
        let k = try FakeKernel(fs)
        _ = k.initialize()
        var w = fuse_write_in()
        w.offset = 8192
        w.size = 5000
        let data = (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let r = k.call(.write, node: 4, args: bytesOf(w) + data)
        #expect(r?.error == 0)
        #expect(r?.load(fuse_write_out.self)?.size == 5000)
        let writes = fs.state.withLock { $0.writes }
        #expect(writes.count == 1)
        #expect(writes.first?.offset == 8192)
        #expect(writes.first?.data == data)
        #expect(writes.first?.aligned == true)
    }

    @Test("FORGET and BATCH_FORGET reach the filesystem and get no reply")
    func forgets() throws {
        let fs = ProbeFileSystem()
        let k = try FakeKernel(fs)
        _ = k.initialize()
        k.request(.forget, node: 42, args: bytesOf(fuse_forget_in(nlookup: 3)))
        var batch = bytesOf(fuse_batch_forget_in(count: 3, dummy: 0))
        batch += bytesOf(fuse_forget_one(nodeid: 5, nlookup: 1)) + bytesOf(fuse_forget_one(nodeid: 6, nlookup: 2))
        k.request(.batchForget, args: batch)  // claims 3, carries 2: the 2 are applied
        // the next reply is for this request: nothing was replied to the forgets
        let u = k.request(.lookup, args: cString("sync"))
        #expect(k.receive()?.unique == u)
        let f = fs.state.withLock { $0.forgets.map { "\($0.0):\($0.1)" } }
        #expect(f == ["42:3", "5:1", "6:2"])
    }

    @Test("an INTERRUPT read before its target is kept; a stale one is answered EAGAIN")
    func interruptOrdering() throws {
        let fs = ProbeFileSystem()
        var config = FUSEConfiguration()
        config.readerThreads = 1
        let k = try FakeKernel(fs, configuration: config)
        _ = k.initialize()
        // interrupt for unique 100 arrives first (its own unique has the interrupt bit)
        k.request(.interrupt, args: bytesOf(fuse_interrupt_in(unique: 100)), unique: 101)
        k.request(.lookup, args: cString("target"), unique: 100)
        #expect(k.receive()?.unique == 100)
        // a stale interrupt (target already answered) comes back with EAGAIN on the next request
        k.request(.interrupt, args: bytesOf(fuse_interrupt_in(unique: 100)), unique: 103)
        k.request(.lookup, args: cString("next"), unique: 200)
        let a = k.receive()
        let b = k.receive()
        #expect(a?.unique == 103)
        #expect(a?.error == EAGAIN)
        #expect(b?.unique == 200)
        #expect(fs.state.withLock { $0.interruptedAtStart } == [true, false])
    }

    @Test("READDIRPLUS records carry entries and stop at the requested size")
    func readdirPlusRecords() throws {
        let k = try FakeKernel(ProbeFileSystem())
        _ = k.initialize()
        var a = fuse_read_in()
        a.offset = 10
        a.size = 500
        let r = try #require(k.call(.readdirplus, node: 1, args: bytesOf(a)))
        #expect(r.error == 0)
        #expect(r.payload.count <= 500)
        // parse: fuse_entry_out (128) + dirent (24) + name, padded to 8
        var at = 0
        var offsets: [UInt64] = []
        while at < r.payload.count {
            let e = r.payload.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: at, as: fuse_entry_out.self) }
            let d = at + MemoryLayout<fuse_entry_out>.size
            let ino = r.payload.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: d, as: UInt64.self) }
            let off = r.payload.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: d + 8, as: UInt64.self) }
            let len = Int(r.payload.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: d + 16, as: UInt32.self) })
            let type = r.payload.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: d + 20, as: UInt32.self) }
            let name = String(decoding: r.payload[(d + 24)..<(d + 24 + len)], as: UTF8.self)
            #expect(e.nodeid == ino)
            #expect(type == UInt32(DT_REG))
            #expect(name == "n\(off - 1)")
            offsets.append(off)
            at = (d + 24 + len + 7) & ~7
        }
        #expect(at == r.payload.count)
        #expect(offsets.first == 11)
        #expect(offsets.count == 500 / (128 + 24 + 8))  // 3 records of 160 bytes fit in 500
    }

    @Test("DESTROY calls the filesystem and replies; then the end counts as clean")
    func destroy() throws {
        let fs = ProbeFileSystem()
        let k = try FakeKernel(fs)
        _ = k.initialize()
        let r = k.call(.destroy)
        #expect(r?.error == 0)
        #expect(r?.payload.isEmpty == true)
        #expect(fs.state.withLock { $0.destroyed })
        k.close()
        let end = k.session.wait(timeout: .seconds(5))
        #expect(end?.reason == .destroyed)
        #expect(end?.isClean == true)
        #expect((end?.requests ?? 0) >= 2)
    }
}

