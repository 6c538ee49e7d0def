// swift-tools-version: 6.1
import PackageDescription

// The FUSE passthrough baseline for benchmarks: the same ScoutFUSE session (INIT choices, reader threads) over a
// backing directory, plus a tiny metadata/data benchmark to run against any directory.
let settings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InferIsolatedConformances"),
]

let package = Package(
    name: "scoutfs-passthrough",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "scoutfs", path: "../.."),
    ],
    targets: [
        // syscalls Swift cannot reach directly (variadic, or hidden behind _GNU_SOURCE)
        .systemLibrary(name: "CPassthrough"),
        .executableTarget(
            name: "scoutfs-passthrough",
            dependencies: ["CPassthrough", .product(name: "ScoutFUSE", package: "scoutfs")],
            swiftSettings: settings
        ),
        .executableTarget(name: "scoutfs-fsbench", dependencies: ["CPassthrough"], swiftSettings: settings),
    ],
    swiftLanguageModes: [.v6]
)
