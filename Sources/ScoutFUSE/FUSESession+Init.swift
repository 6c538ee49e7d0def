import CFuseKernel
import Glibc
import Logging

extension FUSEConfiguration {
    /// `FUSE_DIRECT_IO_ALLOW_MMAP` (protocol 7.39, in flags2; Linux 6.6 and later).
    static let directIOAllowMmap: UInt64 = 1 << 36

    /// The INIT flags this configuration asks for (see the table on ``FUSEConfiguration``).
    var wantedFlags: UInt64 {
        var f: UInt64 = 0
        func set(_ flag: Int32) { f |= UInt64(UInt32(bitPattern: flag)) }
        set(FUSE_ASYNC_READ)
        set(FUSE_ATOMIC_O_TRUNC)
        set(FUSE_BIG_WRITES)
        set(FUSE_HAS_IOCTL_DIR)
        set(FUSE_ASYNC_DIO)
        set(FUSE_PARALLEL_DIROPS)
        set(FUSE_ABORT_ERROR)
        set(FUSE_MAX_PAGES)
        set(FUSE_SETXATTR_EXT)
        if self.exportSupport { set(FUSE_EXPORT_SUPPORT) }
        if self.dontMask { set(FUSE_DONT_MASK) }
        if self.cacheSymlinks { set(FUSE_CACHE_SYMLINKS) }
        if self.posixACL { set(FUSE_POSIX_ACL) }
        if self.handleKillPrivV2 { set(FUSE_HANDLE_KILLPRIV_V2) }
        switch self.readdirPlus {
        case .off: break
        case .always: set(FUSE_DO_READDIRPLUS)
        case .adaptive:
            set(FUSE_DO_READDIRPLUS)
            set(FUSE_READDIRPLUS_AUTO)
        }
        switch self.dataInvalidation {
        case .onOpen: break
        case .automatic: set(FUSE_AUTO_INVAL_DATA)
        case .explicit: set(FUSE_EXPLICIT_INVAL_DATA)
        }
        // flags2 (INIT_EXT): shared mmap of files opened with FOPEN_DIRECT_IO (O_DIRECT and
        // O_APPEND opens); without it the kernel refuses such a mapping with ENODEV
        f |= FUSEConfiguration.directIOAllowMmap
        return f | self.extraFlags
    }
}

extension FUSESession {
    /// INIT: negotiate the protocol version and flags, tell the filesystem, reply.
    func initialize(_ h: fuse_in_header, _ args: UnsafeRawBufferPointer, reply: ReplyWriter) {
        var r = RequestReader(args)
        // Kernels before 7.36 send only major, minor, max_readahead, flags (16 bytes).
        guard let a = try? r.readPrefix(fuse_init_in.self, zero: fuse_init_in(), size: args.count) else {
            reply.error(h.unique, EIO)
            return
        }
        if a.major > FUSEProtocol.major {
            // The kernel will send INIT again with our major version.
            var out = fuse_init_out()
            out.major = FUSEProtocol.major
            out.minor = FUSEProtocol.minor
            reply.value(h.unique, out, size: Int(FUSE_COMPAT_INIT_OUT_SIZE))
            return
        }
        guard a.major == FUSEProtocol.major, a.minor >= FUSEProtocol.oldestMinor else {
            self.core.logger.error("unsupported FUSE kernel protocol", metadata: ["version": "\(a.major).\(a.minor)"])
            reply.error(h.unique, EPROTO)
            self.core.connectionEnded(EPROTO)
            return
        }
        let config = self.core.configuration
        var kernelFlags = UInt64(a.flags)
        if kernelFlags & UInt64(UInt32(bitPattern: FUSE_INIT_EXT)) != 0 { kernelFlags |= UInt64(a.flags2) << 32 }
        let initExt = UInt64(UInt32(bitPattern: FUSE_INIT_EXT))
        var flags = config.wantedFlags & kernelFlags
        if kernelFlags & initExt == 0 { flags &= 0xFFFF_FFFF }
        let maxPages: UInt16 = flags & UInt64(UInt32(bitPattern: FUSE_MAX_PAGES)) != 0 ? config.maxPages : 32

        let info = FUSEConnectionInfo(
            kernelMajor: a.major, kernelMinor: a.minor, minor: min(a.minor, FUSEProtocol.minor),
            kernelFlags: kernelFlags, flags: flags, maxWrite: config.maxWrite, maxPages: maxPages,
            maxReadahead: min(a.max_readahead, config.maxReadahead))
        do {
            try self.filesystem.initialize(info)
        } catch {
            let e = FUSEError.errno(for: error)
            self.core.logger.error("filesystem refused INIT", metadata: ["errno": "\(e)"])
            reply.error(h.unique, e)
            return
        }

        var out = fuse_init_out()
        out.major = FUSEProtocol.major
        out.minor = FUSEProtocol.minor
        out.max_readahead = info.maxReadahead
        out.flags = UInt32(truncatingIfNeeded: flags)
        out.flags2 = UInt32(truncatingIfNeeded: flags >> 32)
        if out.flags2 != 0 { out.flags |= UInt32(truncatingIfNeeded: initExt) }
        out.max_background = config.maxBackground
        out.congestion_threshold = min(config.congestionThreshold, config.maxBackground)
        out.max_write = config.maxWrite
        out.time_gran = 1
        out.max_pages = maxPages
        self.core.setConnection(info)
        self.core.logger.debug(
            "FUSE INIT", metadata: ["kernel": "\(a.major).\(a.minor)", "flags": "\(String(flags, radix: 16))"])
        reply.value(h.unique, out)
    }
}
