import CFuseKernel

/// Packs directory records into a READDIR or READDIRPLUS reply, up to the size the kernel asked for.
///
/// For READDIR it writes `struct fuse_dirent` records; for READDIRPLUS (``isPlus``) `struct fuse_direntplus`
/// records, each with an entry. ``append(name:ino:mode:nextOffset:entry:)`` returns `false` when the record
/// does not fit; the filesystem then stops and the kernel asks again from that record's offset.
///
/// Lookup counts with READDIRPLUS: every record appended (returned `true`) with a non-nil `entry` whose
/// `nodeID` is not 0 and whose name is not `.` or `..` counts as one lookup of that node, exactly like a
/// LOOKUP reply. A record that did not fit counts nothing.
public struct DirectoryReplyBuffer: ~Copyable {
    private let base: UnsafeMutableRawPointer
    private let capacity: Int
    /// Bytes used so far.
    public private(set) var byteCount: Int = 0
    /// Records appended so far.
    public private(set) var recordCount: Int = 0
    /// Whether this is a READDIRPLUS reply (records carry entries: attributes and a lookup).
    public let isPlus: Bool

    init(base: UnsafeMutableRawPointer, capacity: Int, isPlus: Bool) {
        self.base = base
        self.capacity = capacity
        self.isPlus = isPlus
    }

    /// Appends one record.
    /// - Parameters:
    ///   - name: the entry's name (no NUL, not empty).
    ///   - ino: the inode number shown in `d_ino`.
    ///   - mode: the file type bits (`S_IFDIR`, ...); permission bits are ignored.
    ///   - nextOffset: the offset the kernel passes back to continue *after* this record (`d_off`).
    ///   - entry: READDIRPLUS only: the entry (attributes, timeouts); nil = no lookup (kernel treats the record
    ///     as a plain dirent). Ignored for READDIR.
    /// - Returns: `false` if the record does not fit (nothing was written).
    public mutating func append(
        name: UnsafeRawBufferPointer, ino: UInt64, mode: UInt32, nextOffset: UInt64, entry: EntryReply? = nil
    ) -> Bool {
        let header = self.isPlus ? MemoryLayout<fuse_entry_out>.size + 24 : 24
        let size = (header + name.count + 7) & ~7
        guard name.count > 0, self.byteCount + size <= self.capacity else { return false }
        let p = self.base + self.byteCount
        var at = 0
        if self.isPlus {
            let out = entry?.wire ?? fuse_entry_out()
            p.storeBytes(of: out, as: fuse_entry_out.self)
            at = MemoryLayout<fuse_entry_out>.size
        }
        let dirent = p + at
        dirent.storeBytes(of: ino, toByteOffset: 0, as: UInt64.self)
        dirent.storeBytes(of: nextOffset, toByteOffset: 8, as: UInt64.self)
        dirent.storeBytes(of: UInt32(name.count), toByteOffset: 16, as: UInt32.self)
        dirent.storeBytes(of: (mode & 0o170000) >> 12, toByteOffset: 20, as: UInt32.self)
        if let src = name.baseAddress {
            (dirent + 24).copyMemory(from: src, byteCount: name.count)
        }
        let pad = size - header - name.count
        if pad > 0 { (dirent + 24 + name.count).initializeMemory(as: UInt8.self, repeating: 0, count: pad) }
        self.byteCount += size
        self.recordCount += 1
        return true
    }

    /// Appends one record whose name is given as bytes.
    public mutating func append(name: [UInt8], ino: UInt64, mode: UInt32, nextOffset: UInt64, entry: EntryReply? = nil) -> Bool {
        name.withUnsafeBytes { self.append(name: $0, ino: ino, mode: mode, nextOffset: nextOffset, entry: entry) }
    }

    /// Appends one record whose name is given as a string (UTF-8).
    public mutating func append(name: String, ino: UInt64, mode: UInt32, nextOffset: UInt64, entry: EntryReply? = nil) -> Bool {
        var name = name
        return name.withUTF8 {
            self.append(name: UnsafeRawBufferPointer($0), ino: ino, mode: mode, nextOffset: nextOffset, entry: entry)
        }
    }
}
