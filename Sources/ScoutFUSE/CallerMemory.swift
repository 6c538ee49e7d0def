import CFuseKernel
import Glibc

/// The memory and credentials of the process behind a request (its pid from the request
/// header), for ioctls whose structs carry pointers: FUSE copies only the `_IOC_SIZE` bytes of
/// a restricted ioctl, so the buffers behind the pointers are read and written here with
/// `process_vm_readv`/`process_vm_writev`, which check the caller's mappings: an address it
/// has not mapped (or not writable, for a write) gives `EFAULT`, never a crash here.
public struct CallerMemory: Sendable {
    public let pid: pid_t
    /// The largest buffer one call moves (a bound on what a caller can make the daemon allocate).
    public static let maxTransfer = 64 << 20

    public init(pid: UInt32) { self.pid = pid_t(bitPattern: pid) }

    /// `count` bytes at `address` in the caller.
    public func read(_ address: UInt64, count: Int) throws(FUSEError) -> [UInt8] {
        guard count > 0 else { return [] }
        guard count <= Self.maxTransfer else { throw FUSEError(EINVAL) }
        guard address != 0, address <= UInt64(Int.max) - UInt64(count) else { throw FUSEError(EFAULT) }
        var out = [UInt8](repeating: 0, count: count)
        let r = out.withUnsafeMutableBytes { raw in Result { () throws(FUSEError) in try read(address, into: raw) } }
        try r.get()
        return out
    }

    /// Fills `buffer` from `address` in the caller.
    public func read(_ address: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FUSEError) {
        guard buffer.count > 0 else { return }
        guard address != 0, address <= UInt64(Int.max) - UInt64(buffer.count) else { throw FUSEError(EFAULT) }
        var done = 0
        while done < buffer.count {
            var local = iovec(iov_base: buffer.baseAddress! + done, iov_len: buffer.count - done)
            var remote = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(address) + UInt(done)), iov_len: buffer.count - done)
            let n = cfk_process_vm_readv(pid, &local, 1, &remote, 1)
            if n < 0 {
                if errno == EINTR { continue }
                throw FUSEError(errno == ESRCH ? ESRCH : EFAULT)
            }
            if n == 0 { throw FUSEError(EFAULT) }
            done += Int(n)
        }
    }

    /// Writes `bytes` at `address` in the caller.
    public func write(_ address: UInt64, _ bytes: [UInt8]) throws(FUSEError) {
        let r = bytes.withUnsafeBytes { raw in Result { () throws(FUSEError) in try write(address, raw) } }
        try r.get()
    }

    /// Writes `buffer` at `address` in the caller.
    public func write(_ address: UInt64, _ buffer: UnsafeRawBufferPointer) throws(FUSEError) {
        guard buffer.count > 0 else { return }
        guard address != 0, address <= UInt64(Int.max) - UInt64(buffer.count) else { throw FUSEError(EFAULT) }
        var done = 0
        while done < buffer.count {
            var local = iovec(iov_base: UnsafeMutableRawPointer(mutating: buffer.baseAddress! + done), iov_len: buffer.count - done)
            var remote = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(address) + UInt(done)), iov_len: buffer.count - done)
            let n = cfk_process_vm_writev(pid, &local, 1, &remote, 1)
            if n < 0 {
                if errno == EINTR { continue }
                throw FUSEError(errno == ESRCH ? ESRCH : EFAULT)
            }
            if n == 0 { throw FUSEError(EFAULT) }
            done += Int(n)
        }
    }

    /// The caller's effective capability set (`CapEff` of `/proc/PID/status`); empty when the
    /// process is gone.
    public func effectiveCapabilities() -> Capabilities {
        guard let f = fopen("/proc/\(pid)/status", "r") else { return Capabilities(rawValue: 0) }
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var cap: size_t = 0
        defer { free(line) }
        while getline(&line, &cap, f) > 0 {
            let s = String(cString: line!)
            if s.hasPrefix("CapEff:") {
                let hex = s.dropFirst(7).trimmingCharacters(in: " \t\n")
                return Capabilities(rawValue: UInt64(hex, radix: 16) ?? 0)
            }
        }
        return Capabilities(rawValue: 0)
    }

    /// The open flags (`O_ACCMODE`, `O_APPEND`, `O_DIRECT`, ...) and inode number of the
    /// caller's descriptor `fd`, from `/proc/PID/fdinfo/FD` (read without touching the file,
    /// which may live on the mount this daemon serves). Also the mount id the file is on.
    public func descriptor(_ fd: Int32) throws(FUSEError) -> (flags: Int32, ino: UInt64, mountID: Int) {
        guard fd >= 0 else { throw FUSEError(EBADF) }
        guard let f = fopen("/proc/\(pid)/fdinfo/\(fd)", "r") else { throw FUSEError(EBADF) }
        defer { fclose(f) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var cap: size_t = 0
        defer { free(line) }
        var flags: Int32? = nil
        var ino: UInt64? = nil
        var mnt: Int? = nil
        while getline(&line, &cap, f) > 0 {
            let s = String(cString: line!)
            let parts = s.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let v = parts[1].trimmingCharacters(in: " \t\n")
            switch parts[0] {
            case "flags": flags = Int32(v, radix: 8)
            case "ino": ino = UInt64(v)
            case "mnt_id": mnt = Int(v)
            default: break
            }
        }
        guard let flags, let ino, let mnt else { throw FUSEError(EBADF) }
        return (flags, ino, mnt)
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
