// swift-tools-version: 6.1
import PackageDescription

// Layering (enforced by the dependency lists below):
//   pure:   ScoutFormat <- ScoutBTree <- ScoutAlloc        (no I/O, no clock, no globals)
//   shells: ScoutBlockIO (pread/pwrite, cache) <- ScoutStorage (transactions, mkfs, print)
//   top:    ScoutCLI (argument parsing, output) <- scoutfs (the executable)
let upcoming: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InferIsolatedConformances"),
]

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
        .library(name: "ScoutTestSupport", targets: ["ScoutTestSupport"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    ],
    targets: [
        .systemLibrary(name: "CBlkid", pkgConfig: "blkid", providers: [.apt(["libblkid-dev"])]),
        .target(name: "ScoutFormat", swiftSettings: upcoming),
        .target(name: "ScoutBTree", dependencies: ["ScoutFormat"], swiftSettings: upcoming),
        .target(name: "ScoutAlloc", dependencies: ["ScoutFormat", "ScoutBTree"], swiftSettings: upcoming),
        .target(
            name: "ScoutBlockIO",
            dependencies: ["ScoutFormat", .product(name: "SystemPackage", package: "swift-system")],
            swiftSettings: upcoming
        ),
        .target(
            name: "ScoutStorage",
            dependencies: ["ScoutFormat", "ScoutBTree", "ScoutAlloc", "ScoutBlockIO", "CBlkid"],
            swiftSettings: upcoming
        ),
        .target(
            name: "ScoutCLI",
            dependencies: [
                "ScoutStorage",
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
            name: "ScoutCLITests",
            dependencies: ["ScoutCLI", "ScoutTestSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")], swiftSettings: upcoming),
    ],
    swiftLanguageModes: [.v6]
)
