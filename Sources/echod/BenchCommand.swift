import ArgumentParser
import EchodBench
import EchodSystem
import EchodText
import Glibc
import Synchronization

/// `echod bench`: the load generator, on echod's own event loop. Parses the command line and calls
/// `BenchRunner.run`; the engine and the formatting live in EchodBench.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Load-test a TCP or UDP echo server; every echoed byte is verified.",
        discussion: """
            Modes: pingpong (each connection sends SIZE bytes and waits for the whole echo: round trips/s and \
            latency percentiles), stream (each connection keeps a window of data in flight: MB/s each way), \
            connect (connect, one SIZE-byte echo, close: connections/s).

            --proxy-protocol v1|v2: each connection first sends a PROXY protocol header, as a load balancer would, \
            claiming a client address of its own (198.18.0.0/15, or 2001:2::/48 for an IPv6 target, with the \
            connection's real port), then runs the workload unchanged; the server must expect the header (a listener \
            with proxy_protocol). In connect mode the header is part of every measured connection. Not with --udp.

            --udp: each connection is a connected UDP socket with one SIZE-byte datagram in flight (pingpong only, \
            SIZE at most 65507). Each datagram carries a sequence number: a reply is checked byte for byte, a late \
            one (after its datagram was counted lost) is told from a wrong one. A datagram not echoed within \
            --loss-timeout counts as lost (an error) and the socket sends the next one.

            A progress line is shown once a second on a terminal; the summary follows. With --json, stdout is \
            exactly one JSON object. Ctrl-C ends the measurement early and still prints the summary.

            Durations and sizes are written as in the configuration file: 500ms, 10s, 1m30s; 64, 16KiB, 1MiB \
            (KiB, MiB, GiB are powers of 1024; KB, MB, GB powers of 1000; one-letter units like 1k are refused as \
            ambiguous).

            Exit status: 0 no errors; 1 errors were counted (mismatched bytes, lost data or datagrams, early \
            close, failed connects); 2 cannot connect (--udp: no echo during set-up, or ICMP port unreachable); \
            64 invalid options.
            """)

    @Argument(help: ArgumentHelp("The echo server, HOST:PORT or [IPV6]:PORT.", valueName: "host:port"))
    var target: String

    @Option(name: .long, help: "Concurrent connections (connect mode: concurrent connectors).")
    var connections: Int = 1

    @Option(name: .long, help: ArgumentHelp("Message size: 64, 16KiB, 1MiB (KB, MB: powers of 1000).", valueName: "size"))
    var size: String = "64"

    @Option(name: .long, help: ArgumentHelp("Measured time: 10s, 500ms, 1m30s.", valueName: "duration"))
    var duration: String = "10s"

    @Option(name: .long, help: ArgumentHelp("pingpong, stream or connect.", valueName: "mode"))
    var mode: String = "pingpong"

    @Option(name: .long, help: "Event loop threads; connections are spread across them.")
    var threads: Int = 1

    @Flag(name: .long, help: "UDP: connected UDP sockets, one datagram in flight each (pingpong).")
    var udp = false

    @Option(
        name: .customLong("loss-timeout"), help: ArgumentHelp("--udp: a datagram not echoed within this counts as lost.", valueName: "duration"))
    var lossTimeout: String = "500ms"

    @Option(
        name: .customLong("proxy-protocol"),
        help: ArgumentHelp("Send a PROXY protocol header (v1 or v2) first on every connection, each claiming its own client address.", valueName: "version"))
    var proxyProtocol: String?

    @Flag(name: .long, help: "Print exactly one JSON object on stdout instead of the table.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Load before measuring starts (not counted).", valueName: "duration"))
    var warmup: String = "1s"

    @Option(name: .long, help: ArgumentHelp("Stream mode: bytes in flight per connection (default 4 × size, at most 4MiB).", valueName: "size"))
    var window: String?

    @Option(
        name: .customLong("drain-timeout"), help: ArgumentHelp("How long outstanding echoes and the server's close may take at the end.", valueName: "duration")
    )
    var drainTimeout: String = "3s"

    @Option(name: .customLong("max-ops"), help: ArgumentHelp("Stop measuring after this many operations, even before --duration.", valueName: "n"))
    var maxOps: UInt64?

    func validate() throws {
        _ = try options()
    }

    func options() throws -> BenchOptions {
        var o = BenchOptions(target: try optionValue("target", target, BenchParse.target))
        guard let m = BenchMode(rawValue: mode) else {
            throw ValidationError("invalid --mode \(quoted(mode)): expected pingpong, stream or connect")
        }
        o.mode = m
        o.connections = connections
        o.size = try optionValue("--size", size, BenchParse.byteCount)
        o.duration = try optionValue("--duration", duration, BenchParse.duration)
        o.warmup = try optionValue("--warmup", warmup, BenchParse.duration)
        o.drainTimeout = try optionValue("--drain-timeout", drainTimeout, BenchParse.duration)
        if let window { o.window = try optionValue("--window", window, BenchParse.byteCount) }
        o.threads = threads
        o.maxOps = maxOps
        o.udp = udp
        o.lossTimeout = try optionValue("--loss-timeout", lossTimeout, BenchParse.duration)
        if let proxyProtocol { o.proxyProtocol = try optionValue("--proxy-protocol", proxyProtocol, BenchParse.proxyProtocol) }
        if let problem = o.problem { throw ValidationError(problem) }
        return o
    }

    func run() throws {
        var o = try options()
        let live = !json && isatty(1) == 1
        if live {
            o.progress = { p in writeStdout("\r\u{1B}[2K" + p.line) }
        }
        installInterruptHandler()
        o.shouldStop = { benchInterrupted.load(ordering: .relaxed) }
        let report = BenchRunner.run(o)
        if live { writeStdout("\r\u{1B}[2K") }
        if json {
            writeStdout(report.json() + "\n")
            if let failure = report.setupFailure { writeStderr("echod bench: \(failure)\n") }
        } else if report.setupFailure != nil {
            writeStderr(report.table())
        } else {
            writeStdout(report.table())
        }
        if report.exitCode != 0 { throw ExitCode(report.exitCode) }
    }
}

/// Set by the first SIGINT: the run stops measuring, drains and reports. A second SIGINT kills as usual.
private let benchInterrupted = Atomic<Bool>(false)

private func installInterruptHandler() {
    signal(SIGINT) { _ in
        benchInterrupted.store(true, ordering: .relaxed)
        signal(SIGINT, SIG_DFL)
    }
}
