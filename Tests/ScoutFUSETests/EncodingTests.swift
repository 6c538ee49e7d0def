import CFuseKernel
import Glibc
import Testing

@testable import ScoutFUSE

@Suite("FUSE reply encoding")
struct EncodingTests {
    @Test("DirectoryReplyBuffer packs 8-byte aligned dirents and refuses what does not fit")
    func directoryBuffer() {
        let capacity = 100
        let raw = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        defer { raw.deallocate() }
        raw.initializeMemory(as: UInt8.self, repeating: 0xAA, count: capacity)
        var b = DirectoryReplyBuffer(base: raw, capacity: capacity, isPlus: false)
        let r1 = b.append(name: "abc", ino: 5, mode: S_IFDIR | 0o755, nextOffset: 1)
        #expect(r1)  // 24 + 3 -> 32
        let r2 = b.append(name: "0123456789", ino: 6, mode: S_IFLNK, nextOffset: 2)
        #expect(r2)  // 24 + 10 -> 40
        #expect(b.byteCount == 72)
        let r3 = b.append(name: "0123456", ino: 7, mode: S_IFREG, nextOffset: 3)
        #expect(!r3)  // 32 more > 100
        let r4 = b.append(name: "", ino: 7, mode: S_IFREG, nextOffset: 3)
        #expect(!r4)  // empty names are refused
        let r5 = b.append(name: "z", ino: 8, mode: S_IFREG, nextOffset: 3)
        #expect(!r5)  // 32 bytes: 72 + 32 > 100
        #expect(b.recordCount == 2)
        let bytes = UnsafeRawBufferPointer(start: raw, count: capacity)
        #expect(bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self) == 5)
        #expect(bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self) == 1)
        #expect(bytes.loadUnaligned(fromByteOffset: 16, as: UInt32.self) == 3)
        #expect(bytes.loadUnaligned(fromByteOffset: 20, as: UInt32.self) == UInt32(DT_DIR))
        #expect(Array(bytes[24..<27]) == Array("abc".utf8))
        #expect(Array(bytes[27..<32]) == [0, 0, 0, 0, 0])  // padding zeroed
        #expect(bytes.loadUnaligned(fromByteOffset: 32, as: UInt64.self) == 6)
        #expect(bytes.loadUnaligned(fromByteOffset: 52, as: UInt32.self) == UInt32(DT_LNK))
        #expect(Array(bytes[72..<100]) == [UInt8](repeating: 0xAA, count: 28))  // nothing written past the end
    }

    @Test("READDIRPLUS records: entry first, then the dirent")
    func directoryPlusBuffer() {
        let capacity = 400
        let raw = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 8)
        defer { raw.deallocate() }
        var b = DirectoryReplyBuffer(base: raw, capacity: capacity, isPlus: true)
        let e = EntryReply(
            nodeID: 9, generation: 2, attributes: FileAttributes(ino: 9, size: 3, mode: S_IFREG | 0o600),
            entryTimeout: .seconds(5), attributeTimeout: .milliseconds(250))
        let r6 = b.append(name: "f", ino: 9, mode: S_IFREG, nextOffset: 7, entry: e)
        #expect(r6)
        let r7 = b.append(name: "g", ino: 10, mode: S_IFREG, nextOffset: 8, entry: nil)
        #expect(r7)
        #expect(b.byteCount == 2 * 160)
        let r8 = b.append(name: "h", ino: 11, mode: S_IFREG, nextOffset: 9, entry: e)
        #expect(!r8)
        let bytes = UnsafeRawBufferPointer(start: raw, count: capacity)
        let out = bytes.loadUnaligned(as: fuse_entry_out.self)
        #expect(out.nodeid == 9)
        #expect(out.entry_valid == 5)
        #expect(out.attr_valid == 0)
        #expect(out.attr_valid_nsec == 250_000_000)
        #expect(out.attr.mode == S_IFREG | 0o600)
        #expect(bytes.loadUnaligned(fromByteOffset: 128, as: UInt64.self) == 9)
        #expect(bytes.loadUnaligned(fromByteOffset: 136, as: UInt64.self) == 7)
        let second = bytes.loadUnaligned(fromByteOffset: 160, as: fuse_entry_out.self)
        #expect(second.nodeid == 0)  // no entry: a plain dirent for the kernel
    }

    @Test("timeouts: negative durations are zero, nanoseconds split out")
    func timeouts() {
        #expect(Duration.seconds(-3).fuseTimeout == (0, 0))
        #expect(Duration.milliseconds(1500).fuseTimeout == (1, 500_000_000))
        #expect(Duration.nanoseconds(7).fuseTimeout == (0, 7))
        #expect(Duration.zero.fuseTimeout == (0, 0))
    }

    @Test("attributes: negative times keep their bit pattern")
    func attributes() {
        let a = FileAttributes(
            ino: 4, size: 10, blocks: 1, atime: FileTime(seconds: -1, nanoseconds: 5), mode: S_IFREG, nlink: 2,
            uid: 7, gid: 8, rdev: 9, blockSize: 4096)
        let w = a.wire
        #expect(w.atime == UInt64.max)
        #expect(w.atimensec == 5)
        #expect(w.nlink == 2 && w.uid == 7 && w.gid == 8 && w.rdev == 9 && w.blksize == 4096)
    }

    @Test("interrupt table: pending interrupts, handlers, end of session")
    func interruptTable() {
        let t = InterruptTable()
        #expect(t.begin(10) == nil)
        #expect(!t.isInterrupted(10))
        final class Flag: @unchecked Sendable { var hit = 0 }  // only touched on this thread
        let flag = Flag()
        t.setHandler(10) { flag.hit += 1 }
        #expect(t.interrupt(10, by: 11))
        #expect(t.isInterrupted(10))
        #expect(flag.hit == 1)
        #expect(t.interrupt(10, by: 11))  // twice: handler not run again
        #expect(flag.hit == 1)
        t.end(10)
        // unknown target: pending, consumed by its registration
        #expect(!t.interrupt(20, by: 21))
        #expect(t.begin(20) == nil)
        #expect(t.isInterrupted(20))
        t.end(20)
        // stale pending: handed back for EAGAIN on the next registration
        #expect(!t.interrupt(30, by: 31))
        #expect(t.begin(40) == 31)
        #expect(!t.isInterrupted(40))
        #expect(!t.wait(40, timeout: .milliseconds(20)))
        t.endAll()
        #expect(t.isInterrupted(40))
        #expect(t.wait(40, timeout: .seconds(5)))
        let ran = Flag()
        t.setHandler(40) { ran.hit += 1 }
        #expect(ran.hit == 1)
        #expect(t.begin(50) == nil)
        #expect(t.isInterrupted(50))  // after the end, everything counts as interrupted
    }
}
