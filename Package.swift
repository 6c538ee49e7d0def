// swift-tools-version: 6.1
import PackageDescription

// Layering (enforced by the dependency lists below):
//   pure:   ScoutFormat <- ScoutBTree <- ScoutAlloc        (no I/O, no clock, no globals)
//           ScoutFormat <- ScoutQuorum (election state machine)
//           ScoutFormat <- ScoutProtocol (client/server messages, framing, resend state machine)
//   shells: ScoutBlockIO (pread/pwrite, cache) <- ScoutStorage (transactions, mkfs, print)
//           ScoutQuorumService (UDP, quorum blocks, timers)
//           ScoutNet (NIO TCP: framing, connections)   ScoutFUSE (/dev/fuse sessions)
//           ScoutServer (allocators, log trees, locks, commits)
//           ScoutFS (client: item cache, transactions, POSIX operations)
//           ScoutDaemon (a mount: wiring, control socket)
//           ScoutAgent (ScoutIoctl's ioctls issued on a file descriptor: typed calls for archive agents)
//   top:    ScoutCLI (argument parsing, output; the archive commands through ScoutAgent) <- scoutfs (the executable)
let upcoming: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InferIsolatedConformances"),
]

let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let system = Target.Dependency.product(name: "SystemPackage", package: "swift-system")
let deque = Target.Dependency.product(name: "DequeModule", package: "swift-collections")

let package = Package(
    name: "scoutfs",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "scoutfs", targets: ["scoutfs"]),
        .library(name: "ScoutFormat", targets: ["ScoutFormat"]),
        .library(name: "ScoutBTree", targets: ["ScoutBTree"]),
        .library(name: "ScoutAlloc", targets: ["ScoutAlloc"]),
        .library(name: "ScoutBlockIO", targets: ["ScoutBlockIO"]),
        .library(name: "ScoutStorage", targets: ["ScoutStorage"]),
        .library(name: "ScoutFUSE", targets: ["ScoutFUSE"]),
        .library(name: "ScoutIoctl", targets: ["ScoutIoctl"]),
        .library(name: "ScoutAgent", targets: ["ScoutAgent"]),
        .library(name: "ScoutTestSupport", targets: ["ScoutTestSupport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    ],
    targets: [
        .systemLibrary(name: "CBlkid", pkgConfig: "blkid", providers: [.apt(["libblkid-dev"])]),
        // the kernel's FUSE protocol and mount/loop ioctls (headers only, nothing to link)
        .systemLibrary(name: "CFuseKernel"),
        // the CPU's crc32c instruction, header only (ScoutFormat's CRC32C)
        .systemLibrary(name: "CCRC32C"),

        // pure
        .target(name: "ScoutFormat", dependencies: ["CCRC32C"], swiftSettings: upcoming),
        .target(name: "ScoutBTree", dependencies: ["ScoutFormat"], swiftSettings: upcoming),
        .target(name: "ScoutAlloc", dependencies: ["ScoutFormat", "ScoutBTree"], swiftSettings: upcoming),
        .target(name: "ScoutQuorum", dependencies: ["ScoutFormat"], swiftSettings: upcoming),
        .target(name: "ScoutProtocol", dependencies: ["ScoutFormat", deque], swiftSettings: upcoming),
        // the original's ioctl ABI (structs and numbers), shared by the daemon and ScoutAgent
        .target(name: "ScoutIoctl", swiftSettings: upcoming),

        // shells
        .target(name: "ScoutBlockIO", dependencies: ["ScoutFormat", system], swiftSettings: upcoming),
        .target(
            name: "ScoutStorage",
            dependencies: ["ScoutFormat", "ScoutBTree", "ScoutAlloc", "ScoutBlockIO", "CBlkid"],
            swiftSettings: upcoming
        ),
        .target(name: "ScoutNet", dependencies: ["ScoutProtocol", nioCore, nioPosix, logging], swiftSettings: upcoming),
        .target(
            name: "ScoutQuorumService",
            dependencies: ["ScoutQuorum", "ScoutBlockIO", nioCore, nioPosix, logging],
            swiftSettings: upcoming
        ),
        .target(name: "ScoutFUSE", dependencies: ["CFuseKernel", system, logging], swiftSettings: upcoming),
        .target(
            name: "ScoutServer",
            dependencies: ["ScoutStorage", "ScoutProtocol", "ScoutNet", logging],
            swiftSettings: upcoming
        ),
        .target(
            name: "ScoutFS",
            dependencies: ["ScoutStorage", "ScoutProtocol", "ScoutNet", "ScoutFUSE", "ScoutIoctl", logging, system],
            swiftSettings: upcoming
        ),
        .target(
            name: "ScoutDaemon",
            dependencies: ["ScoutFS", "ScoutServer", "ScoutNet", "ScoutQuorumService", "ScoutFUSE", nioCore, nioPosix, logging, system],
            swiftSettings: upcoming
        ),
        // the archive agents' interface: real ioctl(2) calls with the structs in this process's memory
        .target(name: "ScoutAgent", dependencies: ["ScoutIoctl"], swiftSettings: upcoming),

        // top
        .target(
            name: "ScoutCLI",
            dependencies: [
                "ScoutStorage", "ScoutDaemon", "ScoutAgent", "ScoutIoctl", logging, system,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: upcoming
        ),
        .executableTarget(name: "scoutfs", dependencies: ["ScoutCLI"], swiftSettings: upcoming),

        .target(
            name: "ScoutTestSupport",
            dependencies: ["ScoutFormat", "ScoutBTree", "ScoutBlockIO"],
            swiftSettings: upcoming
        ),
        .testTarget(name: "ScoutFormatTests", dependencies: ["ScoutFormat", "ScoutTestSupport"], swiftSettings: upcoming),
        .testTarget(name: "ScoutBTreeTests", dependencies: ["ScoutBTree", "ScoutTestSupport"], swiftSettings: upcoming),
        .testTarget(name: "ScoutAllocTests", dependencies: ["ScoutAlloc", "ScoutTestSupport"], swiftSettings: upcoming),
        .testTarget(name: "ScoutBlockIOTests", dependencies: ["ScoutBlockIO", "ScoutTestSupport"], swiftSettings: upcoming),
        .testTarget(name: "ScoutStorageTests", dependencies: ["ScoutStorage", "ScoutTestSupport"], swiftSettings: upcoming),
        .testTarget(
            name: "ScoutQuorumTests",
            dependencies: ["ScoutQuorum", "ScoutTestSupport", .product(name: "HeapModule", package: "swift-collections")],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "ScoutQuorumServiceTests",
            dependencies: ["ScoutQuorumService", "ScoutQuorum", "ScoutBlockIO", "ScoutTestSupport"],
            swiftSettings: upcoming
        ),
        .testTarget(name: "ScoutIoctlTests", dependencies: ["ScoutIoctl"], swiftSettings: upcoming),
        .testTarget(name: "ScoutProtocolTests", dependencies: ["ScoutProtocol", "ScoutTestSupport"], swiftSettings: upcoming),
        .testTarget(name: "ScoutNetTests", dependencies: ["ScoutNet", "ScoutProtocol", "ScoutTestSupport", nioCore, nioPosix], swiftSettings: upcoming),
        .testTarget(name: "ScoutFUSETests", dependencies: ["ScoutFUSE", "ScoutTestSupport", system], swiftSettings: upcoming),
        .testTarget(
            name: "ScoutDaemonTests",
            dependencies: ["ScoutDaemon", "ScoutFS", "ScoutServer", "ScoutStorage", "ScoutFUSE", "ScoutIoctl", "ScoutAgent", "ScoutTestSupport", "CFuseKernel", system],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "ScoutCLITests",
            dependencies: [
                "ScoutCLI", "ScoutAgent", "ScoutIoctl", "ScoutDaemon", "ScoutServer", "ScoutTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: upcoming
        ),
    ],
    swiftLanguageModes: [.v6]
)
