import CFuseKernel
import Glibc

/// Options of a FUSE mount (`mount(2)` as root; no fusermount).
public struct FUSEMountOptions: Sendable, Hashable {
    /// Subtype shown in the mount table: the type is `fuse.<subtype>` or `fuseblk.<subtype>`.
    public var subtype: String = "scoutfs"
    /// `allow_other`: let every user use the mount (not only the mounting user).
    public var allowOther: Bool = true
    /// `default_permissions`: the kernel checks permissions from the mode bits (ACCESS is then not sent).
    public var defaultPermissions: Bool = true
    /// `MS_RDONLY`
    public var readOnly: Bool = false
    /// Other `MS_*` flags (default `MS_NOSUID | MS_NODEV`, as fusermount does).
    public var flags: UInt = UInt(MS_NOSUID) | UInt(MS_NODEV)
    /// `max_read=`: limit on READ size (nil = the kernel's default, bounded by max_pages).
    public var maxRead: UInt32?
    /// `blksize=` (fuseblk only): the superblock's block size.
    public var blockSize: UInt32 = 4096
    /// More comma-separated options appended verbatim (for experiments).
    public var extraOptions: [String] = []

    /// The defaults above.
    public init() {}
}

/// What backs a FUSE mount.
public enum FUSEMountSource: Sendable, Hashable {
    /// Plain `fuse`: no device; `name` is shown as the source (fsname). A clean unmount and a crash look the same
    /// to the daemon (no DESTROY), and unmount does not wait.
    case fuse(name: String)
    /// `fuseblk` over a block device (typically a ``LoopDevice``): a clean unmount sends DESTROY and waits for the
    /// reply; `umount -f` does not. One block device per mount.
    case block(devicePath: String)
}

/// How to unmount.
public enum FUSEUnmountMode: Sendable, Hashable {
    /// `umount2(path, 0)`: fuseblk sends DESTROY and waits for the reply. `EBUSY` if in use.
    case normal
    /// `MNT_FORCE`: abort the connection first (no DESTROY), then unmount.
    case force
    /// `MNT_DETACH`: detach now, finish when the last user goes.
    case detach
    /// `MNT_FORCE | MNT_DETACH`
    case forceDetach

    var flags: Int32 {
        switch self {
        case .normal: 0
        case .force: Int32(MNT_FORCE)
        case .detach: Int32(MNT_DETACH)
        case .forceDetach: Int32(MNT_FORCE) | Int32(MNT_DETACH)
        }
    }
}

/// A mounted FUSE filesystem: the mount point, its source, and the kernel connection id.
///
/// ``mount(at:source:options:)`` opens `/dev/fuse`, mounts with `fd=N` and returns the descriptor for a
/// ``FUSESession``. The mount is usable once the session answered INIT (requests wait until then).
public struct FUSEMount: Sendable, Hashable {
    /// The mount point.
    public let mountpoint: String
    /// The source.
    public let source: FUSEMountSource
    /// The connection id: the name of the connection's directory under `/sys/fs/fuse/connections` (the kernel's
    /// device number of the superblock), if it could be read from `/proc/self/mountinfo`.
    public let connectionID: UInt32?

    /// Mounts a FUSE filesystem at `mountpoint`. Returns the mount and the open `/dev/fuse` descriptor, which the
    /// caller hands to a ``FUSESession`` (or closes, which fails the mount with `ENOTCONN`).
    public static func mount(
        at mountpoint: String, source: FUSEMountSource, options: FUSEMountOptions = FUSEMountOptions()
    ) throws(FUSEMountError) -> (mount: FUSEMount, deviceFD: Int32) {
        let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw FUSEMountError(errno: errno, operation: "open /dev/fuse") }
        var data = [
            "fd=\(fd)", "rootmode=40000", "user_id=\(getuid())", "group_id=\(getgid())",
        ]
        if options.allowOther { data.append("allow_other") }
        if options.defaultPermissions { data.append("default_permissions") }
        if let m = options.maxRead { data.append("max_read=\(m)") }
        let type: String
        let src: String
        switch source {
        case .fuse(let name):
            type = "fuse"
            src = name
        case .block(let device):
            type = "fuseblk"
            src = device
            data.append("blksize=\(options.blockSize)")
        }
        data.append(contentsOf: options.extraOptions)
        let fstype = options.subtype.isEmpty ? type : "\(type).\(options.subtype)"
        var flags = options.flags
        if options.readOnly { flags |= UInt(MS_RDONLY) }
        let rc = Glibc.mount(src, mountpoint, fstype, flags, data.joined(separator: ","))
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw FUSEMountError(errno: e, operation: "mount \(fstype) \(src) on \(mountpoint)")
        }
        let m = FUSEMount(mountpoint: mountpoint, source: source, connectionID: Self.connectionID(of: mountpoint))
        return (m, fd)
    }

    /// Unmounts this mount (see ``FUSEUnmountMode``).
    public func unmount(_ mode: FUSEUnmountMode = .normal) throws(FUSEMountError) {
        try Self.unmount(self.mountpoint, mode)
    }

    /// `umount2(path, flags)`.
    public static func unmount(_ path: String, _ mode: FUSEUnmountMode = .normal) throws(FUSEMountError) {
        guard umount2(path, mode.flags) == 0 else {
            throw FUSEMountError(errno: errno, operation: "umount \(path)")
        }
    }

    /// Aborts the connection through fusectl (`/sys/fs/fuse/connections/<id>/abort`), mounting fusectl there first if
    /// needed. Readers then get `ECONNABORTED` (ABORT_ERROR is negotiated) and the mount answers `ENOTCONN` until
    /// unmounted. This is what a crashed daemon looks like.
    public func abortConnection() throws(FUSEMountError) {
        guard let id = self.connectionID else { throw FUSEMountError(errno: ENOENT, operation: "find connection of \(self.mountpoint)") }
        try Self.abortConnection(id: id)
    }

    /// The fusectl connection id of a superblock's device number `major:minor`.
    public static func connectionID(major: UInt32, minor: UInt32) -> UInt32 { major << 20 | minor }

    /// Whether fusectl lists the connection `id` (its superblock still exists); nil when
    /// fusectl is not mounted and cannot be, so nothing can be told.
    public static func connectionExists(id: UInt32) -> Bool? {
        let dir = "/sys/fs/fuse/connections"
        if !Self.mountTable().contains(where: { $0.fstype == "fusectl" }) {
            guard Glibc.mount("fusectl", dir, "fusectl", 0, nil) == 0 || errno == EBUSY else { return nil }
        }
        return access("\(dir)/\(id)", F_OK) == 0
    }

    /// Aborts the connection `id` through fusectl (see ``abortConnection()``). Writing the
    /// abort file never waits for the daemon; aborting a connection that is already aborted
    /// changes nothing.
    public static func abortConnection(id: UInt32) throws(FUSEMountError) {
        let dir = "/sys/fs/fuse/connections"
        if !Self.mountTable().contains(where: { $0.fstype == "fusectl" }) {
            guard Glibc.mount("fusectl", dir, "fusectl", 0, nil) == 0 || errno == EBUSY else {
                throw FUSEMountError(errno: errno, operation: "mount fusectl on \(dir)")
            }
        }
        let path = "\(dir)/\(id)/abort"
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FUSEMountError(errno: errno, operation: "open \(path)") }
        defer { close(fd) }
        guard Glibc.write(fd, "1", 1) == 1 else { throw FUSEMountError(errno: errno, operation: "write \(path)") }
    }

    /// Whether `path` is a mount point in this mount namespace (from `/proc/self/mountinfo`, no access to the mount).
    public static func isMounted(_ path: String) -> Bool {
        mountTable().contains { $0.mountpoint == path }
    }

    struct MountInfoLine {
        var major: UInt32
        var minor: UInt32
        var mountpoint: String
        var fstype: String
    }

    /// Parses `/proc/self/mountinfo` (no FUSE request is sent, unlike `stat` of the mount point).
    static func mountTable() -> [MountInfoLine] {
        let fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        var out: [MountInfoLine] = []
        for line in bytes.split(separator: UInt8(ascii: "\n")) {
            let fields = line.split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
            // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
            guard fields.count >= 10, let dash = fields.firstIndex(where: { $0.elementsEqual("-".utf8) }),
                dash + 1 < fields.count
            else { continue }
            let dev = fields[2].split(separator: UInt8(ascii: ":"))
            guard dev.count == 2, let major = UInt32(String(decoding: dev[0], as: UTF8.self)),
                let minor = UInt32(String(decoding: dev[1], as: UTF8.self))
            else { continue }
            out.append(
                MountInfoLine(
                    major: major, minor: minor, mountpoint: unescape(fields[4]),
                    fstype: String(decoding: fields[dash + 1], as: UTF8.self)))
        }
        return out
    }

    /// mountinfo escapes space, tab, newline and backslash as `\ooo`.
    private static func unescape(_ s: ArraySlice<UInt8>) -> String {
        var out: [UInt8] = []
        var i = s.startIndex
        while i < s.endIndex {
            if s[i] == UInt8(ascii: "\\"), i + 3 < s.endIndex,
                let v = UInt8(String(decoding: s[(i + 1)..<(i + 4)], as: UTF8.self), radix: 8)
            {
                out.append(v)
                i += 4
            } else {
                out.append(s[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The topmost mount at `path` (as `/proc/self/mountinfo` spells it: absolute, no
    /// symbolic links), read from the mount table: no request reaches any mount.
    public static func topMount(at path: String) -> (major: UInt32, minor: UInt32, fstype: String)? {
        guard let line = mountTable().last(where: { $0.mountpoint == path }) else { return nil }
        return (line.major, line.minor, line.fstype)
    }

    /// The fusectl connection id of the topmost mount at `path`: the kernel's `dev_t` (major << 20 | minor).
    static func connectionID(of path: String) -> UInt32? {
        guard let line = mountTable().last(where: { $0.mountpoint == path }) else { return nil }
        return line.major << 20 | line.minor
    }
}
