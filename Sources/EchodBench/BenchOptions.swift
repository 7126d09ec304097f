import EchodProxyProtocol
import EchodSystem
import EchodText

/// What each connection of a bench run does.
package enum BenchMode: String, Sendable, CaseIterable {
    /// Send SIZE bytes, wait for the whole echo, repeat: round trips per second and their latency.
    case pingpong
    /// Keep a window of data in flight while reading the echo concurrently: throughput each way.
    case stream
    /// Connect, one SIZE-byte echo, close, repeat: connections per second (what a health probe costs).
    case connect
}

/// Everything a bench run needs. Plain values: the command line (`echod bench`) and the tests build one.
package struct BenchOptions: Sendable {
    /// The echo server.
    package var target: SocketAddress
    package var mode: BenchMode = .pingpong
    /// Concurrent connections (in `connect` mode: concurrent connectors).
    package var connections: Int = 1
    /// Message size in bytes.
    package var size: Int = 64
    /// Length of the measured interval (after the warm-up).
    package var duration: Duration = .seconds(10)
    /// Load applied before measuring starts; nothing done during it is counted except in `opsAll`.
    package var warmup: Duration = .seconds(1)
    /// Event loops (threads); connections are spread over them. Clamped to `connections`.
    package var threads: Int = 1
    /// `stream` mode: bytes in flight per connection; nil for the default (`defaultWindow(size:)`).
    package var window: Int?
    /// At the end, how long in-flight data may take to come back and the server to close after our half-close.
    package var drainTimeout: Duration = .seconds(3)
    /// How long setting up the connections (or, in `connect` mode, one probe connection each) may take.
    package var connectTimeout: Duration = .seconds(10)
    /// Stop measuring after this many operations even if `duration` has not elapsed (nil: time only).
    package var maxOps: UInt64?
    /// UDP instead of TCP: each connection is a connected UDP socket with one datagram in flight (pingpong).
    package var udp = false
    /// `udp`: a datagram whose echo has not come back after this long counts as lost, and the next one is sent.
    package var lossTimeout: Duration = .milliseconds(500)
    /// Each connection first sends a PROXY protocol header of this version claiming its own client address
    /// (``BenchProxyHeader``), as a load balancer in front of the server would; nil: none. TCP only.
    package var proxyProtocol: ProxyVersion?
    /// Called on the thread that called `BenchRunner.run` about once a second while load is applied.
    package var progress: (@Sendable (BenchProgress) -> Void)?
    /// Polled on the calling thread (every few milliseconds): returning true stops the run early, as at the end
    /// of `duration` (the drain and the report still happen). For SIGINT.
    package var shouldStop: (@Sendable () -> Bool)?

    package init(target: SocketAddress) {
        self.target = target
    }

    /// The default stream window: 4 messages in flight, at least one message, at most 4 MiB unless a single
    /// message is bigger.
    package static func defaultWindow(size: Int) -> Int {
        max(size, min(4 * size, 4 << 20))
    }

    /// Stream mode keeps a send time per message in flight (for latency): this bounds that memory per connection.
    package static let maximumMessagesInFlight = 65_536

    /// The largest UDP payload of an IPv4 datagram (65,535 minus the IP and UDP headers).
    package static let maximumDatagramSize = 65_507

    /// The target as reports and messages name it: `127.0.0.1:7`, or `udp://127.0.0.1:7` with `udp`.
    package var targetLabel: String { (udp ? "udp://" : "") + target.description }

    /// The window actually used in `stream` mode.
    package var effectiveWindow: Int { max(window ?? Self.defaultWindow(size: size), size) }

    /// Threads actually used: at least 1, at most one per connection.
    package var effectiveThreads: Int { max(1, min(threads, connections)) }

    /// Why these options cannot be run, or nil.
    package var problem: String? {
        if connections < 1 { return "--connections must be at least 1" }
        if size < 1 { return "--size must be at least 1 byte" }
        if threads < 1 { return "--threads must be at least 1" }
        if duration <= .zero { return "--duration must be positive" }
        if warmup < .zero { return "--warmup must not be negative" }
        if let w = window, w < 1 { return "--window must be at least 1 byte" }
        if mode == .stream && effectiveWindow / size > Self.maximumMessagesInFlight {
            return "--window allows at most \(Self.maximumMessagesInFlight) messages of --size in flight per connection"
        }
        if drainTimeout < .zero { return "--drain-timeout must not be negative" }
        if let m = maxOps, m < 1 { return "--max-ops must be at least 1" }
        if udp && mode != .pingpong { return "--udp runs --mode pingpong only" }
        if udp && size > Self.maximumDatagramSize { return "--size must be at most \(Self.maximumDatagramSize) bytes with --udp (one datagram)" }
        if udp && lossTimeout <= .zero { return "--loss-timeout must be positive" }
        if udp && proxyProtocol != nil {
            return "--proxy-protocol cannot be used with --udp: the PROXY protocol is for TCP (and Unix stream) connections only"
        }
        return nil
    }
}

/// What the progress callback sees once a second.
package struct BenchProgress: Sendable {
    package enum Phase: String, Sendable {
        case warmup = "warm-up"
        case measuring, draining
    }
    package var phase: Phase
    /// Seconds since load started (warm-up included).
    package var elapsed: Double
    /// Operations completed since load started (warm-up included).
    package var ops: UInt64
    /// Operations per second over the last interval.
    package var opsPerSecond: Double
    /// 10^6 bytes per second sent and received over the last interval.
    package var mbPerSecondOut: Double
    package var mbPerSecondIn: Double
    /// Errors so far.
    package var errors: UInt64
}

/// The command line's values (`echod bench`), in the one grammar of durations, sizes and addresses that the
/// configuration file and `echod probe` use (``Units``, ``HostPort``), each with the range bench can run.
/// Here rather than in the executable so that it is unit-tested.
package enum BenchParse {
    /// `--duration`, `--warmup`, `--drain-timeout`. Up to a week: a soak test, not a typo of a unit; and far from the
    /// overflow of monotonic nanoseconds plus all three.
    package static let durationRange: ClosedRange<Duration> = .zero ... .seconds(7 * 24 * 3600)
    /// `--size`, `--window`.
    package static let sizeRange = 1...(2 << 30)

    /// `10s`, `500ms`, `1.5s`, `1m30s`, `250us`, or a bare number of seconds (``Units/parseDuration(_:)``).
    package static func duration(_ text: String) throws(InvalidValue) -> Duration {
        try Units.parseDuration(text, in: durationRange)
    }

    /// `64`, `16KiB`, `1MiB` (powers of 1024), `64KB` (powers of 1000) (``Units/parseSize(_:)``).
    package static func byteCount(_ text: String) throws(InvalidValue) -> Int {
        try Units.parseSize(text, in: sizeRange)
    }

    /// `--proxy-protocol`: `v1` or `v2`, the spelling `echod probe` takes too (``ProxyVersion/init(parsing:)``).
    package static func proxyProtocol(_ text: String) throws(InvalidValue) -> ProxyVersion {
        try ProxyVersion(parsing: text)
    }

    /// `HOST:PORT` or `[IPV6]:PORT` (``HostPort``). Numeric hosts are taken as they are; a name (`localhost`) is
    /// resolved (``Resolver``) and its first address used: every connection of a run goes to one server.
    package static func target(_ text: String) throws(InvalidValue) -> SocketAddress {
        let address = try HostPort(parsing: text)
        do throws(Resolver.Failure) {
            return try Resolver.addresses(host: address.host, port: address.port)[0]
        } catch {
            throw InvalidValue(reason: error.description)
        }
    }
}
