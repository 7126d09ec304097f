// swift-tools-version:6.2
// echod: a TCP echo daemon on a hand-written epoll event loop.
//
// The targets are the layers. Arrows point down only; each target declares every module it imports
// (Tests/e2e/test_package_graph.py fails otherwise):
//
//   echod (CLI: parses the command line and calls a layer below; check-config calls EchodConfig itself)
//     ├─ EchodDaemon (wires everything together: loops, echo, config, logging, systemd, admin)
//     │    ├─ EchodEcho       (the echo service: connection table, RFC 862 state machine, PROXY header phase, tags)
//     │    ├─ EchodAdmin      (HTTP /livez /readyz /metrics on an event loop; http-parser, swift-prometheus)
//     │    ├─ EchodConfig     (swift-configuration: env + CLI; the YAML file through libyaml (CYAML); validation)
//     │    ├─ EchodLog        (swift-log backend: bounded queue, writer thread, sinks; journal through CSystemd)
//     │    └─ EchodSystemd    (sd_notify, sd_listen_fds, watchdog through libsystemd (CSystemd))
//     ├─ EchodProbe (health-check client: one connection at a time, waited on with poll; no event loop)
//     └─ EchodBench (load generator on the event loop)
//
//   EchodEventLoop  (epoll reactor: fds, timers, signals, wakeups; knows nothing of echo; optionally on io_uring
//                   (CEchodUring, liburing) with completions for the data path), used by Echo, Admin, Bench and
//                   the daemon
//   EchodSystem     (the syscall layer: every kernel call, IOError, EINTR handled once, sockets, the monotonic
//                   clock, threads, name resolution, the rate limiter), under everything above; on CEchodLinux
//   EchodText       (what users type and read: durations, sizes, HOST:PORT, escaping, numbers), pure Swift
//   EchodProxyProtocol (the PROXY protocol v1/v2 header parser: bytes in, addresses and TLVs out), pure Swift on
//                   EchodText; used by EchodEcho (listeners that take a header) and by bench and probe
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
        // No traits: the file is read with libyaml (EchodConfig/YAMLTree.swift says why not the YAML trait's Yams).
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: []),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
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
        // The text a user types and reads: durations, sizes, HOST:PORT, escaping, numbers. Pure Swift, no libc.
        .target(name: "EchodText"),
        // The PROXY protocol v1/v2 header parser: pure Swift, no libc, no allocation (Fuzz/FuzzProxyProtocol fuzzes it).
        .target(name: "EchodProxyProtocol", dependencies: ["EchodText"]),
        // The syscall layer: every call into the kernel goes through it (typed IOError, EINTR handled once).
        .target(
            name: "EchodSystem",
            dependencies: ["CEchodLinux"]
        ),
        // io_uring through liburing (Debian liburing-dev): the loop's optional completion-based backend.
        .target(
            name: "CEchodUring",
            linkerSettings: [.linkedLibrary("uring")]
        ),
        .target(
            name: "EchodEventLoop",
            dependencies: ["CEchodLinux", "CEchodUring", "EchodSystem"]
        ),
        .target(
            name: "EchodEcho",
            dependencies: [
                "EchodSystem",
                "EchodEventLoop",
                "EchodProxyProtocol",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // libyaml through pkg-config (Debian libyaml-dev): the YAML parser of the configuration file.
        .systemLibrary(
            name: "CYAML",
            pkgConfig: "yaml-0.1",
            providers: [.apt(["libyaml-dev"])]
        ),
        .target(
            name: "EchodConfig",
            dependencies: [
                "EchodText",
                "EchodSystem",
                "CYAML",
                .product(name: "Configuration", package: "swift-configuration"),
            ]
        ),
        .target(
            name: "EchodLog",
            dependencies: [
                "EchodText",
                "EchodSystem",
                "CSystemd",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "EchodSystemd",
            dependencies: ["EchodSystem", "CSystemd"]
        ),
        // nodejs/http-parser (Debian libhttp-parser-dev: allocation-free, fuzzed for a decade); no pkg-config file.
        .systemLibrary(
            name: "CHTTPParser",
            providers: [.apt(["libhttp-parser-dev"])]
        ),
        // The admin HTTP endpoint (/livez, /readyz, /metrics) served on an event loop.
        .target(
            name: "EchodAdmin",
            dependencies: [
                "EchodSystem",
                "EchodEventLoop",
                "CEchodLinux",
                "CHTTPParser",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // `echod probe`: a health-check client for scripts and orchestrators.
        .target(
            name: "EchodProbe",
            dependencies: ["EchodSystem", "EchodText", "EchodProxyProtocol"]
        ),
        // `echod bench`: the load generator, on echod's own event loop.
        .target(
            name: "EchodBench",
            dependencies: [
                "EchodSystem",
                "EchodText",
                "EchodEventLoop",
                "EchodProxyProtocol",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .target(
            name: "EchodDaemon",
            dependencies: [
                "EchodSystem",
                "EchodText",
                "EchodEventLoop",
                "EchodEcho",
                "EchodConfig",
                "EchodLog",
                "EchodSystemd",
                "EchodAdmin",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "echod",
            dependencies: [
                "EchodSystem",
                "EchodText",
                "EchodDaemon",
                "EchodConfig",
                "EchodProbe",
                "EchodBench",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // What the test targets share (locks, waiting, threads, pipes, files, sockets, an echo server, child processes,
        // a seeded generator, a strict JSON reader): on Glibc and Synchronization only, never on a product target, so
        // that no helper leans on the code under test.
        .target(name: "EchodTestSupport", path: "Tests/EchodTestSupport"),
        .testTarget(name: "EchodEventLoopTests", dependencies: ["EchodEventLoop", "EchodSystem", "EchodTestSupport"]),
        .testTarget(name: "EchodTextTests", dependencies: ["EchodText"]),
        .testTarget(name: "EchodProxyProtocolTests", dependencies: ["EchodProxyProtocol", "EchodText", "EchodTestSupport"]),
        .testTarget(name: "EchodSystemTests", dependencies: ["EchodSystem", "EchodTestSupport"]),
        .testTarget(
            name: "EchodEchoTests",
            dependencies: [
                "EchodEcho", "EchodEventLoop", "EchodProxyProtocol", "EchodSystem", "EchodTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "EchodConfigTests", dependencies: ["EchodConfig", "EchodText", "EchodTestSupport"]),
        .testTarget(
            name: "EchodLogTests",
            dependencies: ["EchodLog", "EchodSystem", "EchodText", "EchodTestSupport", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "EchodSystemdTests", dependencies: ["EchodSystemd", "EchodTestSupport"]),
        .testTarget(
            name: "EchodAdminTests",
            dependencies: [
                "EchodAdmin", "EchodEventLoop", "EchodSystem", "EchodTestSupport", .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(name: "EchodProbeTests", dependencies: ["EchodProbe", "EchodProxyProtocol", "EchodText", "EchodTestSupport"]),
        .testTarget(
            name: "EchodBenchTests", dependencies: ["EchodBench", "EchodEventLoop", "EchodProxyProtocol", "EchodSystem", "EchodText", "EchodTestSupport"]),
        .testTarget(
            name: "EchodDaemonTests",
            dependencies: [
                "EchodDaemon", "EchodConfig", "EchodEcho", "EchodEventLoop", "EchodLog", "EchodSystem", "EchodSystemd",
                "EchodTestSupport", .product(name: "Logging", package: "swift-log"),
            ]),
    ]
)

// Fuzz targets (Fuzz/README.md): libFuzzer executables, one per parser, declared only when ECHOD_FUZZ is set (make fuzz
// sets it and builds in .build-fuzz), so that `swift build`, `swift test` and the release never see them.
// Adding one: its folder Fuzz/NAME with NAME.swift, and one line here (its name and the modules it imports).
if Context.environment["ECHOD_FUZZ"] != nil {
    let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
        ("FuzzConfig", ["EchodConfig", "EchodSystem"]),
        ("FuzzAdmin", ["EchodAdmin", "EchodEventLoop", "EchodSystem", .product(name: "Logging", package: "swift-log")]),
        ("FuzzGrammar", ["EchodText", "EchodConfig", "EchodSystem"]),
        ("FuzzDatagramGuard", ["EchodEcho", "EchodSystem"]),
        ("FuzzProxyProtocol", ["EchodProxyProtocol"]),
        ("FuzzHandoverState", ["EchodEcho"]),
    ]
    package.targets += [
        .target(name: "CFuzzer", path: "Fuzz/CFuzzer"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzer"], path: "Fuzz/Support"),
    ]
    package.targets += fuzzTargets.map {
        .executableTarget(name: $0.name, dependencies: ["FuzzSupport"] + $0.dependencies, path: "Fuzz/\($0.name)")
    }
}
