// swift-tools-version:6.2
// echod: a TCP echo daemon on a hand-written epoll event loop.
//
// The targets are the layers. Arrows point down only:
//
//   echod (CLI: parses the command line, nothing else)
//     └─ EchodDaemon (wires everything together: loops, echo, config, logging, systemd)
//          ├─ EchodEcho       (the echo service: connection table, RFC 862 state machine)
//          │    └─ EchodEventLoop (epoll reactor: fds, timers, signals, wakeups; knows nothing of echo)
//          │         └─ CEchodLinux (C shim for the Linux calls Glibc does not export)
//          ├─ EchodConfig     (swift-configuration: YAML file + env + CLI, validation)
//          ├─ EchodLog        (swift-log backend: bounded queue, writer thread, sinks)
//          │    └─ CSystemd   (libsystemd, journal sink only)
//          └─ EchodSystemd    (sd_notify, sd_listen_fds, watchdog; the only other libsystemd user)
import PackageDescription

let package = Package(
    name: "echod",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "echod", targets: ["echod"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: ["YAML"]),
        .package(url: "https://github.com/jpsim/Yams", "5.4.0"..<"7.0.0"),
    ],
    targets: [
        // C shim: epoll, eventfd, signalfd, timerfd, accept4 need _GNU_SOURCE headers Glibc's module lacks.
        .target(
            name: "CEchodLinux",
            cSettings: [.define("_GNU_SOURCE")]
        ),
        // libsystemd through pkg-config. Only EchodSystemd and EchodLog's journal sink import it.
        .systemLibrary(
            name: "CSystemd",
            pkgConfig: "libsystemd",
            providers: [.apt(["libsystemd-dev"])]
        ),
        .target(
            name: "EchodEventLoop",
            dependencies: [
                "CEchodLinux",
                .product(name: "SystemPackage", package: "swift-system"),
            ]
        ),
        .target(
            name: "EchodEcho",
            dependencies: [
                "EchodEventLoop",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "EchodConfig",
            dependencies: [
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
        .target(
            name: "EchodLog",
            dependencies: [
                "CSystemd",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "EchodSystemd",
            dependencies: ["CSystemd"]
        ),
        .target(
            name: "EchodDaemon",
            dependencies: [
                "EchodEventLoop",
                "EchodEcho",
                "EchodConfig",
                "EchodLog",
                "EchodSystemd",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "echod",
            dependencies: [
                "EchodDaemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "EchodEventLoopTests", dependencies: ["EchodEventLoop"]),
        .testTarget(name: "EchodEchoTests", dependencies: ["EchodEcho", "EchodEventLoop"]),
        .testTarget(name: "EchodConfigTests", dependencies: ["EchodConfig"]),
        .testTarget(name: "EchodLogTests", dependencies: ["EchodLog"]),
        .testTarget(name: "EchodSystemdTests", dependencies: ["EchodSystemd"]),
    ]
)
