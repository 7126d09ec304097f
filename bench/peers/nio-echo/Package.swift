// swift-tools-version:5.9
// Benchmark peer only: SwiftNIO's echo server, for the `make bench` race.
// NOT a dependency of echod; built on its own with
//   swift build -c release --package-path bench/peers/nio-echo --scratch-path bench/results/.build-nio
import PackageDescription

let package = Package(
    name: "nio-echo",
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
    ],
    targets: [
        .executableTarget(
            name: "nio-echo",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Sources/NIOEchoBench"
        ),
    ]
)
