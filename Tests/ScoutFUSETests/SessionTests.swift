import CFuseKernel
import Glibc
import ScoutFUSE
import ScoutTestSupport
import Testing

@Suite("FUSE session lifecycle", .serialized, .enabled(if: FUSETestEnvironment.available), .timeLimit(.minutes(1)))
struct SessionTests {
    /// Time `body` takes.
    private func timed(_ body: () throws -> Void) rethrows -> Duration {
        let clock = ContinuousClock()
        let start = clock.now
        try body()
        return clock.now - start
    }

    @Test("a signal interrupts a blocking operation: FUSE_INTERRUPT reaches it, the caller gets EINTR")
    func interruptBlockingOperation() throws {
        installInterruptingHandler(SIGUSR1)
        let fs = MemoryFileSystem(blockingTimeout: .seconds(20))
        var config = FUSEConfiguration()
        config.readerThreads = 1
        config.maxReaderThreads = 4
        try withMounted(fs, configuration: config) { m in
            let p = m.path("f")
            try writeFile(p, [])
            let thread = TestThread {
                var buf = [UInt8](repeating: 0, count: 16)
                let n = getxattr(p, MemoryFileSystem.blockingXattr, &buf, buf.count)
                return (n, errno)
            }
            try #require(waitUntil(timeout: .seconds(5)) { fs.blockingCalls == 1 }, "the blocking getxattr never arrived")
            // the blocked request made the session start a spare reader
            #expect(waitUntil(timeout: .seconds(5)) { m.session.readerThreadCount == 2 })
            let elapsed = self.timed {
                thread.kill(SIGUSR1)
                let r = thread.join(timeout: .seconds(10))
                #expect(r != nil, "the interrupted call did not return")
                #expect(r?.0 == -1)
                #expect(r?.1 == EINTR)
            }
            #expect(elapsed < .seconds(5))
            // the spare retires once another reader is idle (it needs one more request to notice)
            _ = statPath(m.mountpoint)
            _ = statPath(p)
            #expect(waitUntil(timeout: .seconds(5)) {
                _ = statPath(p)
                return m.session.readerThreadCount == 1
            })
        }
    }

    @Test("without a spare reader the interrupt cannot be read, and the operation runs to its own timeout")
    func interruptNeedsSpareReader() throws {
        installInterruptingHandler(SIGUSR1)
        let fs = MemoryFileSystem(blockingTimeout: .milliseconds(1500))
        var config = FUSEConfiguration()
        config.readerThreads = 1
        config.maxReaderThreads = 1
        try withMounted(fs, configuration: config) { m in
            let p = m.path("f")
            try writeFile(p, [])
            let thread = TestThread {
                var buf = [UInt8](repeating: 0, count: 16)
                let n = getxattr(p, MemoryFileSystem.blockingXattr, &buf, buf.count)
                return (n, errno)
            }
            try #require(waitUntil(timeout: .seconds(5)) { fs.blockingCalls == 1 })
            thread.kill(SIGUSR1)
            let r = thread.join(timeout: .seconds(10))
            #expect(r?.0 == -1)
            #expect(r?.1 == ETIMEDOUT)
            #expect(m.session.readerThreadCount == 1)
        }
    }

    @Test("notifications drop cached attributes and entries (INVAL_INODE, INVAL_ENTRY, DELETE)")
    func notificationsInvalidate() throws {
        let fs = MemoryFileSystem(entryTimeout: .seconds(600), attributeTimeout: .seconds(600))
        let (after, end) = try withMounted(fs) { m in
            let notifier = m.session.notifier
            try writeFile(m.path("f"), Array("12345".utf8))
            #expect(statPath(m.path("f")).0?.st_size == 5)
            let ino = try #require(fs.child(FUSEProtocol.rootNodeID, "f"))

            // attributes: cached until invalidated
            fs.backdoorResize(ino, to: 10)
            let getattrs = fs.count(.getattr)
            #expect(statPath(m.path("f")).0?.st_size == 5)
            #expect(fs.count(.getattr) == getattrs)  // served from the kernel's cache
            #expect(try notifier.invalidateInode(ino))
            #expect(statPath(m.path("f")).0?.st_size == 10)
            // data: page cache dropped too (EXPLICIT_INVAL_DATA keeps it otherwise)
            #expect(try readFile(m.path("f")) == [UInt8](repeating: 7, count: 10))
            fs.backdoorResize(ino, to: 3)
            #expect(try notifier.invalidateInode(ino, offset: 0, length: 0))
            #expect(try readFile(m.path("f")) == [7, 7, 7])

            // entries: cached until invalidated
            fs.backdoorUnlink(FUSEProtocol.rootNodeID, "f")
            #expect(statPath(m.path("f")).1 == 0)
            #expect(try notifier.invalidateEntry(parent: FUSEProtocol.rootNodeID, name: "f"))
            #expect(statPath(m.path("f")).1 == ENOENT)

            // delete
            try writeFile(m.path("g"), [])
            let g = try #require(fs.child(FUSEProtocol.rootNodeID, "g"))
            #expect(statPath(m.path("g")).1 == 0)
            fs.backdoorUnlink(FUSEProtocol.rootNodeID, "g")
            #expect(statPath(m.path("g")).1 == 0)
            #expect(try notifier.delete(parent: FUSEProtocol.rootNodeID, child: g, name: "g"))
            #expect(statPath(m.path("g")).1 == ENOENT)

            // an inode the kernel does not know
            #expect(try notifier.invalidateInode(999_999) == false)
            #expect(throws: FUSEError.invalid) { try notifier.invalidateEntry(parent: 1, name: "") }
            return notifier
        }
        // once the session is over, notifications fail instead of writing to a closed (maybe reused) descriptor
        #expect(end != nil)
        #expect(throws: FUSEError(ENOTCONN)) { try after.invalidateInode(1) }
    }

    @Test("fuseblk: a clean umount sends DESTROY and waits for the reply", .enabled(if: FUSETestEnvironment.loopAvailable))
    func cleanUnmountDestroys() throws {
        let fs = MemoryFileSystem(destroyDelay: .milliseconds(300))
        var unmountTime: Duration = .zero
        var loopPath = ""
        let (_, end) = try withMounted(fs, blockDevice: true) { m in
            loopPath = try #require(m.loop?.path)
            #expect(mountType(m.mountpoint) == "fuseblk.scoutfs")
            let (st, err) = statPath(m.mountpoint)
            #expect(err == 0)
            // st_dev of a fuseblk mount is the loop device
            let (dev, _) = statPath(loopPath)
            #expect(st?.st_dev == dev?.st_rdev)
            try writeFile(m.path("f"), Array("data".utf8))
            unmountTime = try self.timed { try m.mount.unmount() }
            // DESTROY happened before umount returned
            #expect(fs.destroyedAt != nil)
        }
        #expect(unmountTime >= .milliseconds(300), "umount returned before the DESTROY reply")
        #expect(end?.reason == .destroyed)
        #expect(end?.isClean == true)
        // autoclear: the loop device detaches once the mount lets go of it
        let name = String(loopPath.split(separator: "/").last ?? "")
        #expect(waitUntil(timeout: .seconds(5)) { access("/sys/block/\(name)/loop/backing_file", F_OK) != 0 })
    }

    @Test("fuseblk: umount -f sends no DESTROY (unclean end)", .enabled(if: FUSETestEnvironment.loopAvailable))
    func forcedUnmountIsUnclean() throws {
        let fs = MemoryFileSystem()
        let (_, end) = try withMounted(fs, blockDevice: true) { m in
            try writeFile(m.path("f"), Array("data".utf8))
            try m.mount.unmount(.force)
        }
        #expect(end?.reason == .disconnected)
        #expect(end?.isClean == false)
        #expect(fs.destroyedAt == nil)
    }

    @Test("fuseblk: a lazy unmount of an unused mount still ends cleanly", .enabled(if: FUSETestEnvironment.loopAvailable))
    func lazyUnmount() throws {
        let fs = MemoryFileSystem()
        let (_, end) = try withMounted(fs, blockDevice: true) { m in
            try writeFile(m.path("f"), Array("data".utf8))
            try m.mount.unmount(.detach)
            // with nothing open, the superblock goes at once, and the kernel sends DESTROY
            #expect(waitUntil(timeout: .seconds(5)) { fs.destroyedAt != nil })
        }
        #expect(end?.reason == .destroyed)
    }

    @Test("fuseblk: a busy lazy unmount ends only when the last user goes", .enabled(if: FUSETestEnvironment.loopAvailable))
    func busyLazyUnmount() throws {
        let fs = MemoryFileSystem()
        let (_, end) = try withMounted(fs, blockDevice: true) { m in
            try writeFile(m.path("f"), Array("data".utf8))
            let fd = open(m.path("f"), O_RDONLY)
            try #require(fd >= 0)
            try m.mount.unmount(.detach)
            #expect(!FUSEMount.isMounted(m.mountpoint))
            // still served through the open file
            var b = [UInt8](repeating: 0, count: 4)
            #expect(pread(fd, &b, 4, 0) == 4)
            #expect(m.session.wait(timeout: .milliseconds(200)) == nil)
            #expect(fs.destroyedAt == nil)
            close(fd)
            #expect(waitUntil(timeout: .seconds(5)) { fs.destroyedAt != nil })
        }
        #expect(end?.reason == .destroyed)
    }

    @Test("aborting the connection (a daemon crash) ends the session with ECONNABORTED")
    func abortConnection() throws {
        let fs = MemoryFileSystem()
        let (_, end) = try withMounted(fs) { m in
            try writeFile(m.path("f"), [])
            try m.mount.abortConnection()
            let e = m.session.wait(timeout: .seconds(10))
            #expect(e?.reason == .aborted)
            #expect(statPath(m.path("f")).1 == ENOTCONN)
            try m.mount.unmount()
        }
        #expect(end?.reason == .aborted)
        #expect(end?.isClean == false)
    }

    @Test("two fuseblk mounts of one data file, each on its own loop device", .enabled(if: FUSETestEnvironment.loopAvailable))
    func twoMountsOneFile() throws {
        let dir = try TempDir.make(prefix: "fuse2")
        defer { TempDir.remove(dir) }
        let image = dir + "/shared.img"
        try TempDir.sparseFile(image, size: 16 << 20)
        var sessions: [FUSESession<MemoryFileSystem>] = []
        var mounts: [FUSEMount] = []
        defer {
            for m in mounts where FUSEMount.isMounted(m.mountpoint) { try? m.unmount(.forceDetach) }
            for s in sessions { #expect(s.wait(timeout: .seconds(10)) != nil) }
        }
        var devices: [UInt] = []
        for i in 0..<2 {
            let mnt = dir + "/m\(i)"
            #expect(Glibc.mkdir(mnt, 0o755) == 0)
            let loop = try LoopDevice.attach(backingPath: image)
            let (mount, fd) = try FUSEMount.mount(at: mnt, source: .block(devicePath: loop.path))
            loop.releaseHold()
            mounts.append(mount)
            let s = FUSESession(deviceFD: fd, filesystem: MemoryFileSystem())
            sessions.append(s)
            try s.start()
            try #require(s.waitForInitialization(timeout: .seconds(10)) != nil)
            try writeFile(mnt + "/only-\(i)", [])
            devices.append(UInt(statPath(mnt).0?.st_dev ?? 0))
        }
        #expect(devices[0] != devices[1])
        #expect(try listDirectory(dir + "/m0") == ["only-0"])
        #expect(try listDirectory(dir + "/m1") == ["only-1"])
        for m in mounts { try m.unmount() }
        for s in sessions { #expect(s.wait(timeout: .seconds(10))?.reason == .destroyed) }
    }
}
