import ArgumentParser
import EchodProbe
import EchodSystem
import EchodText

/// `echod probe`: checks a running echod (or any RFC 862 echo server, or the admin endpoint) the way a script or
/// an orchestrator would, and says so in its exit status.
struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Check an echo server (send random bytes, expect them back; TCP or udp://) or an admin endpoint (--http).",
        discussion: """
            Prints one line (or, with --json, one JSON object) on standard output:
              ok 127.0.0.1:7 64 bytes in 0.21 ms
              fail 127.0.0.1:7: echo mismatch at byte 3 of 64 (sent 0x1f, got 0x00)
            Exit status: 0 healthy; 1 connected but the echo was wrong, incomplete or late, or the HTTP status was
            not 200; 2 the host could not be resolved or connected to (refused, unreachable, timed out).
            udp://HOST:PORT sends one datagram per round trip and expects it back unchanged; with no reply within
            timeout / (retries + 1) it sends a new one (--retries, default 2). No reply at all is exit 1; an ICMP
            port unreachable (nothing listens) is exit 2.
            Hostnames are resolved and each address is tried in turn. --timeout bounds the whole probe.
            unix:/run/echod/echo.sock (or unix:@NAME, an abstract name) checks a Unix-socket listener the same way.
            --proxy-protocol v2 (or v1) first sends the header a proxy's own health check sends (v2 LOCAL, v1 PROXY
            UNKNOWN), to probe a listener with proxy_protocol directly; not for udp:// or --http.
            Durations and sizes are written as in the configuration file: 500ms, 2s, 1m30s; 64, 16KiB, 1MiB.
            """)

    @Argument(
        help: ArgumentHelp("Echo listener to check: HOST:PORT, [IPV6]:PORT, NAME:PORT, or a Unix socket unix:/PATH or unix:@NAME.", valueName: "host:port"))
    var target: String?

    @Option(help: ArgumentHelp("Give up after this long, connecting included: 1ms to 1h, e.g. 2s, 500ms, 1m30s.", valueName: "duration"))
    var timeout: String = "2s"

    @Option(name: .customLong("payload-size"), help: ArgumentHelp("Random bytes per round trip: 1 to 16MiB, e.g. 64, 4KiB.", valueName: "size"))
    var payloadSize: String = "64"

    @Option(help: ArgumentHelp("Round trips on the connection (with --http: requests, one connection each).", valueName: "n"))
    var count: Int = 1

    @Option(help: ArgumentHelp("udp:// only: datagrams sent again when no reply came (0 to 10).", valueName: "n"))
    var retries: Int = 2

    @Option(help: ArgumentHelp("Check http://HOST:PORT/PATH instead (healthy on status 200), e.g. http://127.0.0.1:9090/readyz.", valueName: "url"))
    var http: String?

    @Option(
        name: .customLong("proxy-protocol"),
        help: ArgumentHelp("Send a PROXY protocol header first (v2: LOCAL, v1: PROXY UNKNOWN), as a proxy's health check does.", valueName: "version"))
    var proxyProtocol: String?

    @Flag(help: "Print one JSON object instead of a line.")
    var json = false

    func validate() throws {
        _ = try options()
    }

    func options() throws -> ProbeOptions {
        let probeTarget: ProbeTarget
        switch (target, http) {
        case (nil, nil): throw ValidationError("give HOST:PORT of an echo listener, or --http URL")
        case (.some, .some): throw ValidationError("give either HOST:PORT or --http URL, not both")
        case (let target?, nil): probeTarget = try optionValue("target", target) { text throws(InvalidValue) in try ProbeTarget.parsing(text) }
        case (nil, let url?): probeTarget = .http(try optionValue("--http", url) { text throws(InvalidValue) in try HTTPURL(parsing: text) })
        }
        guard ProbeOptions.countRange.contains(count) else {
            throw ValidationError("--count must be between \(ProbeOptions.countRange.lowerBound) and \(ProbeOptions.countRange.upperBound)")
        }
        guard ProbeOptions.retriesRange.contains(retries) else {
            throw ValidationError("--retries must be between \(ProbeOptions.retriesRange.lowerBound) and \(ProbeOptions.retriesRange.upperBound)")
        }
        let options = ProbeOptions(
            target: probeTarget,
            timeout: try optionValue("--timeout", timeout, ProbeOptions.parseTimeout),
            payloadSize: try optionValue("--payload-size", payloadSize, ProbeOptions.parsePayloadSize),
            count: count,
            retries: retries,
            proxyProtocol: try proxyProtocol.map { text throws(ValidationError) in try optionValue("--proxy-protocol", text, ProbeOptions.parseProxyProtocol) })
        if let problem = options.problem { throw ValidationError(problem) }
        return options
    }

    func run() throws {
        let result = Probe.run(try options())
        writeStdout((json ? result.json : result.line) + "\n")
        if result.exitCode != 0 { throw ExitCode(result.exitCode) }
    }
}
