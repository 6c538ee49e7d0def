import CFuseKernel
import Glibc

/// The memory and credentials of the process behind a request (its pid from the request
/// header), for ioctls whose structs carry pointers: FUSE copies only the `_IOC_SIZE` bytes of
/// a restricted ioctl, so the buffers behind the pointers are read and written here with
/// `process_vm_readv`/`process_vm_writev`, which check the caller's mappings: an address it
/// has not mapped (or not writable, for a write) gives `EFAULT`, never a crash here.
///
/// Memory that the caller mapped from a file of the mount this daemon serves (`servedDevice`)
/// is refused with `EFAULT`: moving it would fault its pages in through a FUSE request to this
/// very daemon, a system call into its own mount that waits for itself (and keeps a killed
/// daemon in state D for ever).
public struct CallerMemory: Sendable {
    public let pid: pid_t
    /// The `st_dev` of the mount the daemon serves (glibc's makedev encoding); 0 when unknown.
    public let servedDevice: UInt64
    /// The largest buffer one call moves (a bound on what a caller can make the daemon allocate).
    public static let maxTransfer = 64 << 20

    public init(pid: UInt32, servedDevice: UInt64 = 0) {
        self.pid = pid_t(bitPattern: pid)
        self.servedDevice = servedDevice
    }

    /// Fills `buffer` from `address` in the caller.
    public func read(_ address: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FUSEError) {
        try transfer(address, buffer.baseAddress, buffer.count, toCaller: false)
    }

    /// Writes `bytes` at `address` in the caller.
    public func write(_ address: UInt64, _ bytes: [UInt8]) throws(FUSEError) {
        let r = bytes.withUnsafeBytes { raw in Result { () throws(FUSEError) in try write(address, raw) } }
        try r.get()
    }

    /// Writes `buffer` at `address` in the caller.
    public func write(_ address: UInt64, _ buffer: UnsafeRawBufferPointer) throws(FUSEError) {
        try transfer(address, UnsafeMutableRawPointer(mutating: buffer.baseAddress), buffer.count, toCaller: true)
    }

    /// Moves `count` bytes between `local` and the caller's `address`, in as many calls as
    /// the kernel needs.
    private func transfer(_ address: UInt64, _ local: UnsafeMutableRawPointer?, _ count: Int, toCaller: Bool) throws(FUSEError) {
        guard count > 0, let local else { return }
        guard address != 0, address <= UInt64(Int.max) - UInt64(count) else { throw FUSEError(EFAULT) }
        guard !mapsServedFile(address, count) else { throw FUSEError(EFAULT) }
        var done = 0
        while done < count {
            var mine = iovec(iov_base: local + done, iov_len: count - done)
            var theirs = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(address) + UInt(done)), iov_len: count - done)
            let n = toCaller ? cfk_process_vm_writev(pid, &mine, 1, &theirs, 1) : cfk_process_vm_readv(pid, &mine, 1, &theirs, 1)
            if n < 0 {
                if errno == EINTR { continue }
                throw FUSEError(errno == ESRCH ? ESRCH : EFAULT)
            }
            if n == 0 { throw FUSEError(EFAULT) }
            done += Int(n)
        }
    }

    /// Whether any of `[address, address + count)` is mapped from a file on the served device
    /// (`/proc/PID/maps`: `start-end perms offset MAJ:MIN inode path`, the device in hex).
    private func mapsServedFile(_ address: UInt64, _ count: Int) -> Bool {
        guard servedDevice != 0 else { return false }
        let d = servedDevice
        let major = (d >> 32) & 0xffff_f000 | (d >> 8) & 0xfff
        let minor = (d >> 12) & 0xffff_ff00 | d & 0xff
        let end = address + UInt64(count)
        for l in procLines("maps") ?? [] {
            let fields = l.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count >= 5 else { continue }
            let range = fields[0].split(separator: "-")
            let dev = fields[3].split(separator: ":")
            guard range.count == 2, let lo = UInt64(range[0], radix: 16), let hi = UInt64(range[1], radix: 16),
                dev.count == 2, let ma = UInt64(dev[0], radix: 16), let mi = UInt64(dev[1], radix: 16)
            else { continue }
            if lo < end && address < hi && ma == major && mi == minor { return true }
        }
        return false
    }

    /// The lines of `/proc/PID/<name>` (read without touching any file the daemon serves);
    /// nil when it cannot be opened.
    private func procLines(_ name: String) -> [Substring]? {
        guard let f = fopen("/proc/\(pid)/\(name)", "r") else { return nil }
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var cap: size_t = 0
        defer { free(line) }
        var text = ""
        while getline(&line, &cap, f) > 0 { text += String(cString: line!) }
        return text.split(separator: "\n")
    }

    /// The `name: value` fields of a /proc file, values trimmed.
    private func procFields(_ name: String) -> [Substring: String]? {
        guard let lines = procLines(name) else { return nil }
        var out: [Substring: String] = [:]
        for l in lines {
            let parts = l.split(separator: ":", maxSplits: 1)
            if parts.count == 2 { out[parts[0]] = parts[1].trimmingCharacters(in: " \t") }
        }
        return out
    }

    /// The caller's effective capability set, from capget(2) (`CapEff` of `/proc/PID/status`
    /// when that fails for another reason than the caller being gone); empty when it is gone.
    /// capget is what keeps tagged xattr changes cheap: generating, reading and parsing the
    /// status file on every call cost about 0.6 ms (measured: user.x 12400 setxattrs/s,
    /// scoutfs.srch.x 1350/s with the status file; see docs/performance.md).
    public func effectiveCapabilities() -> Capabilities {
        var eff: UInt64 = 0
        if cfk_capget_effective(pid, &eff) == 0 { return Capabilities(rawValue: eff) }
        if errno == ESRCH { return [] }
        return Capabilities(rawValue: procFields("status")?["CapEff"].flatMap { UInt64($0, radix: 16) } ?? 0)
    }

    /// The open flags (`O_ACCMODE`, `O_APPEND`, `O_DIRECT`, ...) and inode number of the
    /// caller's descriptor `fd`, from `/proc/PID/fdinfo/FD` (read without touching the file,
    /// which may live on the mount this daemon serves). Also the mount id the file is on.
    public func descriptor(_ fd: Int32) throws(FUSEError) -> (flags: Int32, ino: UInt64, mountID: Int) {
        guard fd >= 0, let fields = procFields("fdinfo/\(fd)"), let flags = fields["flags"].flatMap({ Int32($0, radix: 8) }),
            let ino = fields["ino"].flatMap({ UInt64($0) }), let mnt = fields["mnt_id"].flatMap({ Int($0) })
        else { throw FUSEError(EBADF) }
        return (flags, ino, mnt)
    }

    /// The `st_dev` of the caller's mount `mountID` (from its mountinfo, glibc's makedev
    /// encoding); nil when the caller has no such mount.
    public func mountDevice(_ mountID: Int) -> UInt64? {
        for l in procLines("mountinfo") ?? [] {
            let fields = l.split(separator: " ", maxSplits: 3)
            guard fields.count >= 3, Int(fields[0]) == mountID else { continue }
            let mm = fields[2].split(separator: ":")
            guard mm.count == 2, let ma = UInt64(mm[0]), let mi = UInt64(mm[1]) else { return nil }
            return (ma & 0xffff_f000) << 32 | (ma & 0xfff) << 8 | (mi & 0xffff_ff00) << 12 | (mi & 0xff)
        }
        return nil
    }
}

/// A set of Linux capabilities.
public struct Capabilities: OptionSet, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let dacReadSearch = Capabilities(rawValue: 1 << 2)
    public static let sysAdmin = Capabilities(rawValue: 1 << 21)
}

extension StringProtocol {
    func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}
