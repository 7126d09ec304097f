import EchodSystem
import EchodEventLoop
import Glibc

/// What each connection of a bench run does.
public enum BenchMode: String, Sendable, CaseIterable {
    /// Send SIZE bytes, wait for the whole echo, repeat: round trips per second and their latency.
    case pingpong
    /// Keep a window of data in flight while reading the echo concurrently: throughput each way.
    case stream
    /// Connect, one SIZE-byte echo, close, repeat: connections per second (what a health probe costs).
    case connect
}

/// Everything a bench run needs. Plain values: the command line (`echod bench`) and the tests build one.
public struct BenchOptions: Sendable {
    /// The echo server.
    public var target: SocketAddress
    public var mode: BenchMode = .pingpong
    /// Concurrent connections (in `connect` mode: concurrent connectors).
    public var connections: Int = 1
    /// Message size in bytes.
    public var size: Int = 64
    /// Length of the measured interval (after the warm-up).
    public var duration: Duration = .seconds(10)
    /// Load applied before measuring starts; nothing done during it is counted except in `opsAll`.
    public var warmup: Duration = .seconds(1)
    /// Event loops (threads); connections are spread over them. Clamped to `connections`.
    public var threads: Int = 1
    /// `stream` mode: bytes in flight per connection; nil for the default (`defaultWindow(size:)`).
    public var window: Int?
    /// At the end, how long in-flight data may take to come back and the server to close after our half-close.
    public var drainTimeout: Duration = .seconds(3)
    /// How long setting up the connections (or, in `connect` mode, one probe connection each) may take.
    public var connectTimeout: Duration = .seconds(10)
    /// Stop measuring after this many operations even if `duration` has not elapsed (nil: time only).
    public var maxOps: UInt64?
    /// Called on the thread that called `BenchRunner.run` about once a second while load is applied.
    public var progress: (@Sendable (BenchProgress) -> Void)?
    /// Polled on the calling thread (every few milliseconds): returning true stops the run early, as at the end
    /// of `duration` (the drain and the report still happen). For SIGINT.
    public var shouldStop: (@Sendable () -> Bool)?

    public init(target: SocketAddress) {
        self.target = target
    }

    /// The default stream window: 4 messages in flight, at least one message, at most 4 MiB unless a single
    /// message is bigger.
    public static func defaultWindow(size: Int) -> Int {
        max(size, min(4 * size, 4 << 20))
    }

    /// Stream mode keeps a send time per message in flight (for latency): this bounds that memory per connection.
    public static let maximumMessagesInFlight = 65_536

    /// The window actually used in `stream` mode.
    public var effectiveWindow: Int { max(window ?? Self.defaultWindow(size: size), size) }

    /// Threads actually used: at least 1, at most one per connection.
    public var effectiveThreads: Int { max(1, min(threads, connections)) }

    /// Why these options cannot be run, or nil.
    public var problem: String? {
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
        return nil
    }
}

/// What the progress callback sees once a second.
public struct BenchProgress: Sendable {
    public enum Phase: String, Sendable { case warmup = "warm-up", measuring, draining }
    public var phase: Phase
    /// Seconds since load started (warm-up included).
    public var elapsed: Double
    /// Operations completed since load started (warm-up included).
    public var ops: UInt64
    /// Operations per second over the last interval.
    public var opsPerSecond: Double
    /// 10^6 bytes per second sent and received over the last interval.
    public var mbPerSecondOut: Double
    public var mbPerSecondIn: Double
    /// Errors so far.
    public var errors: UInt64
}

/// Parsing of the command line's values, kept here so it is unit-tested (the executable target is not).
public enum BenchParse {
    /// `10s`, `500ms`, `1.5s`, `2m`, `250us`, `100ns`, or a bare number of seconds.
    public static func duration(_ text: String) -> Duration? {
        let s = text.trimmingSpaces.lowercased()
        let units: [(String, Double)] = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
        var number = Substring(s)
        var scale = 1.0
        for (suffix, factor) in units where s.hasSuffix(suffix) {
            number = s.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        let nanos = (value * scale * 1e9).rounded()
        guard nanos < 1e18 else { return nil }
        return .nanoseconds(Int64(nanos))
    }

    /// `64`, `1k`/`1K`/`1KiB`/`1kb` (×1024), `4M`/`4MiB` (×1024²), `1G` (×1024³).
    public static func byteCount(_ text: String) -> Int? {
        let s = text.trimmingSpaces.lowercased()
        let units: [(String, Double)] = [("kib", 1024), ("kb", 1024), ("k", 1024), ("mib", 1_048_576), ("mb", 1_048_576), ("m", 1_048_576),
                                         ("gib", 1_073_741_824), ("gb", 1_073_741_824), ("g", 1_073_741_824), ("b", 1)]
        var number = Substring(s)
        var scale = 1.0
        for (suffix, factor) in units where s.hasSuffix(suffix) {
            number = s.dropLast(suffix.count)
            scale = factor
            break
        }
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        let bytes = (value * scale).rounded()
        guard bytes <= Double(Int32.max) else { return nil }
        return Int(bytes)
    }

    /// `HOST:PORT` or `[IPV6]:PORT`. Numeric hosts are taken as they are; a name (`localhost`) is resolved
    /// with getaddrinfo, first TCP result.
    public static func target(_ text: String) -> SocketAddress? {
        let s = text.trimmingSpaces
        var host: Substring
        var portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = s.lastIndex(of: ":") else { return nil }
            host = s[..<colon]
            portText = s[s.index(after: colon)...]
            if host.contains(":") { return nil }  // bare IPv6 needs brackets
        }
        guard !host.isEmpty, let port = UInt16(portText), port != 0 else { return nil }
        if let address = SocketAddress(host: String(host), port: port) { return address }
        return resolve(String(host), port: port)
    }

    private static func resolve(_ host: String, port: UInt16) -> SocketAddress? {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, nil, &hints, &result) == 0, let first = result else { return nil }
        defer { freeaddrinfo(first) }
        var node: UnsafeMutablePointer<addrinfo>? = first
        while let info = node {
            if let sa = info.pointee.ai_addr {
                var storage = sockaddr_storage()
                withUnsafeMutableBytes(of: &storage) { raw in
                    raw.copyMemory(from: UnsafeRawBufferPointer(start: sa, count: min(Int(info.pointee.ai_addrlen), raw.count)))
                }
                if var address = withUnsafePointer(to: &storage, { SocketAddress($0) }) {
                    address.port = port
                    return address
                }
            }
            node = info.pointee.ai_next
        }
        return nil
    }
}

extension String {
    var trimmingSpaces: String {
        String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
    }
}
