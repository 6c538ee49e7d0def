/// How a ``FUSESession`` negotiates INIT and runs its reader threads.
///
/// INIT choices (each flag is only replied when the kernel offered it):
///
/// | flag | choice | why |
/// |---|---|---|
/// | ASYNC_READ | on | readahead and concurrent reads of one file |
/// | POSIX_LOCKS, FLOCK_LOCKS | off | the kernel keeps locks locally; cluster-wide locks are not offered through FUSE |
/// | ATOMIC_O_TRUNC | on | OPEN carries `O_TRUNC`: one request instead of OPEN + SETATTR |
/// | EXPORT_SUPPORT | ``exportSupport`` (on) | NFS export / `open_by_handle_at`: LOOKUP of `.` and `..` reach the filesystem |
/// | BIG_WRITES, MAX_PAGES | on | ``maxWrite`` (1 MiB) and ``maxPages`` (256): large requests (fuse-notes: 1 MiB DIO at memcpy speed) |
/// | DONT_MASK | ``dontMask`` (on) | the filesystem applies `umask` itself (needed for default ACLs) |
/// | SPLICE_* | off | plain read/write of aligned buffers |
/// | HAS_IOCTL_DIR | on | ioctls on directories reach the filesystem (default `ENOTTY`) |
/// | AUTO_INVAL_DATA / EXPLICIT_INVAL_DATA | ``dataInvalidation`` (explicit) | page cache dropped only on notification: cluster lock loss invalidates |
/// | DO_READDIRPLUS, READDIRPLUS_AUTO | ``readdirPlus`` (adaptive) | READDIRPLUS can make names-only listings much slower; the kernel's heuristic decides |
/// | ASYNC_DIO | on | large direct I/O split into concurrent requests |
/// | WRITEBACK_CACHE | off | no help for a fast daemon (fuse-notes), and it breaks cluster coherence |
/// | PARALLEL_DIROPS | on | concurrent lookups/readdirs in one directory |
/// | HANDLE_KILLPRIV_V2 | ``handleKillPrivV2`` (off) | when on, the filesystem clears setuid/setgid on write/chown/truncate |
/// | POSIX_ACL | ``posixACL`` (off; scoutfs turns it on) | when on the kernel enforces access ACLs from `system.posix_acl_access` (and forces default_permissions); the filesystem keeps the mode in step on setxattr/chmod and inherits default ACLs on create (with DONT_MASK, without the umask) |
/// | ABORT_ERROR | on | reads after a fusectl abort return `ECONNABORTED`: tells an abort from an unmount |
/// | CACHE_SYMLINKS | ``cacheSymlinks`` (on) | READLINK answers are page-cached |
/// | SETXATTR_EXT | on | SETXATTR carries FUSE_SETXATTR_ACL_KILL_SGID |
/// | NO_OPEN(DIR)_SUPPORT, MAP_ALIGNMENT, SUBMOUNTS, SECURITY_CTX, INIT_EXT | off | not used |
public struct FUSEConfiguration: Sendable {
    /// How READDIRPLUS is negotiated.
    public enum ReaddirPlus: Sendable, Hashable {
        /// Only READDIR.
        case off
        /// DO_READDIRPLUS: always READDIRPLUS.
        case always
        /// DO_READDIRPLUS + READDIRPLUS_AUTO: the kernel picks per call (plus when the listing is followed by lookups).
        case adaptive
    }

    /// How the kernel's page cache of a file is invalidated.
    public enum DataInvalidation: Sendable, Hashable {
        /// Neither flag: on each open without `FOPEN_KEEP_CACHE`.
        case onOpen
        /// AUTO_INVAL_DATA: also when GETATTR shows a new mtime or size.
        case automatic
        /// EXPLICIT_INVAL_DATA: only on NOTIFY_INVAL_INODE (and open without KEEP_CACHE).
        case explicit
    }

    /// Reader threads always running. Each reads a request, calls the filesystem, writes the reply.
    public var readerThreads: Int = 1
    /// Upper bound on reader threads. When a request declares that it will block (``RequestContext/willBlock()``,
    /// `waitForInterrupt`, `onInterrupt`) and no other reader is idle, a spare reader is started (up to this), so that
    /// INTERRUPT and other requests keep being read. Spares exit after a request when another reader is idle.
    public var maxReaderThreads: Int = 8
    /// `max_write` (and the request buffer size): the largest WRITE payload.
    public var maxWrite: UInt32 = 1 << 20
    /// `max_pages`: the largest READ/WRITE in pages (256 = 1 MiB, the kernel's default limit).
    public var maxPages: UInt16 = 256
    /// `max_readahead` (capped by the kernel's offer).
    public var maxReadahead: UInt32 = 1 << 20
    /// `max_background`: background requests (readahead, async direct I/O) in flight.
    public var maxBackground: UInt16 = 16
    /// `congestion_threshold`
    public var congestionThreshold: UInt16 = 12
    /// READDIRPLUS negotiation.
    public var readdirPlus: ReaddirPlus = .adaptive
    /// Page cache invalidation.
    public var dataInvalidation: DataInvalidation = .explicit
    /// EXPORT_SUPPORT
    public var exportSupport: Bool = true
    /// DONT_MASK
    public var dontMask: Bool = true
    /// POSIX_ACL
    public var posixACL: Bool = false
    /// HANDLE_KILLPRIV_V2
    public var handleKillPrivV2: Bool = false
    /// CACHE_SYMLINKS
    public var cacheSymlinks: Bool = true
    /// Extra `FUSE_*` INIT flags to reply (bits the kernel did not offer are dropped). For experiments.
    public var extraFlags: UInt64 = 0

    /// The defaults above.
    public init() {}
}
