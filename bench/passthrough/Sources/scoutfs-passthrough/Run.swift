import CPassthrough
import Glibc
import ScoutFUSE

func usage() -> Never {
    eprint(
        "usage: scoutfs-passthrough BACKING MNT [--threads N] [--max-threads N] [--timeout SECONDS] "
            + "[--readdirplus off|always|adaptive] [--killpriv] [--direct-io]\n")
    exit(2)
}

/// The whole program. Not in main.swift: top-level code there is main-actor isolated, and the closures given to
/// pthread_create would then carry a main-actor isolation check that fails on their own thread.
func run() -> Never {
    var positional: [String] = []
    var config = FUSEConfiguration()
    var timeout: Duration = .seconds(1)
    var openFlags: OpenReplyFlags = []
    var args = CommandLine.arguments.dropFirst()
    while let a = args.popFirst() {
        switch a {
        case "--threads":
            guard let v = args.popFirst().flatMap({ Int($0) }), v >= 1 else { usage() }
            config.readerThreads = v
        case "--max-threads":
            guard let v = args.popFirst().flatMap({ Int($0) }), v >= 1 else { usage() }
            config.maxReaderThreads = v
        case "--timeout":
            guard let v = args.popFirst().flatMap({ Double($0) }), v >= 0 else { usage() }
            timeout = .nanoseconds(Int64(v * 1e9))
        case "--readdirplus":
            switch args.popFirst() {
            case "off": config.readdirPlus = .off
            case "always": config.readdirPlus = .always
            case "adaptive": config.readdirPlus = .adaptive
            default: usage()
            }
        case "--killpriv":
            config.handleKillPrivV2 = true
        case "--direct-io":
            openFlags.insert(.directIO)
        case "-h", "--help":
            usage()
        default:
            if a.hasPrefix("-") { usage() }
            positional.append(a)
        }
    }
    guard positional.count == 2 else { usage() }
    let backing = positional[0]
    let mountpoint = positional[1]
    config.maxReaderThreads = max(config.maxReaderThreads, config.readerThreads)

    // The filesystem applies the caller's umask itself (DONT_MASK); ours must not interfere.
    umask(0)
    // One O_PATH descriptor per cached inode: raise the soft limit to the hard one.
    var limit = rlimit()
    if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    let rootFD = open(backing, cpt_o_path() | O_DIRECTORY | O_CLOEXEC)
    guard rootFD >= 0 else {
        eprint("scoutfs-passthrough: \(backing): \(FUSEError(errno))\n")
        exit(1)
    }

    do {
        let fs = try Passthrough(rootFD: rootFD, timeout: timeout, openFlags: openFlags)
        // Block SIGINT/SIGTERM before any thread starts, so only sigwait sees them.
        var signals = sigset_t()
        sigemptyset(&signals)
        sigaddset(&signals, SIGINT)
        sigaddset(&signals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let (mount, fd) = try FUSEMount.mount(at: mountpoint, source: .fuse(name: backing))
        let session = FUSESession(deviceFD: fd, filesystem: fs, configuration: config)
        try session.start()

        // A signal thread: on SIGINT/SIGTERM, detach the mount; the session then ends.
        var tid = pthread_t()
        let box = Unmanaged.passRetained(MountBox(mount)).toOpaque()
        pthread_create(&tid, nil, { arg in
            let mount = Unmanaged<MountBox>.fromOpaque(arg!).takeRetainedValue().mount
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGINT)
            sigaddset(&set, SIGTERM)
            var sig: Int32 = 0
            sigwait(&set, &sig)
            try? mount.unmount(.detach)
            return nil
        }, box)
        pthread_detach(tid)

        let end = session.wait()
        eprint("scoutfs-passthrough: \(end)\n")
        exit(end.reason == .disconnected || end.reason == .destroyed ? 0 : 1)
    } catch {
        eprint("scoutfs-passthrough: \(error)\n")
        exit(1)
    }
}

final class MountBox {
    let mount: FUSEMount
    init(_ mount: FUSEMount) { self.mount = mount }
}

/// Writes to standard error (the C `stderr` global is not concurrency-safe in Swift 6).
func eprint(_ text: String) {
    var text = text
    text.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}
