// swift-tools-version: 6.1
import PackageDescription

// Benchmarks live apart from the main package so CI's debug build does not pay for them.
let package = Package(
    name: "ScoutBench",
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "ScoutBench",
            dependencies: [
                .product(name: "ScoutBTree", package: "main"),
                .product(name: "ScoutFormat", package: "main"),
                .product(name: "ScoutTestSupport", package: "main"),
            ]
        )
    ],
    swiftLanguageModes: [.v6]
)
