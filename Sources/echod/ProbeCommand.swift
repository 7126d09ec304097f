import ArgumentParser
import EchodProbe

/// `echod probe`: checks a running echod (or any RFC 862 echo server, or the admin endpoint) the way a script or
/// an orchestrator would, and says so in its exit status.
struct ProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "probe",
        abstract: "Check an echo server (send random bytes, expect them back) or an admin endpoint (--http).",
        discussion: """
            Prints one line (or, with --json, one JSON object) on standard output:
              ok 127.0.0.1:7 64 bytes in 0.21 ms
              fail 127.0.0.1:7: echo mismatch at byte 3 of 64 (sent 0x1f, got 0x00)
            Exit status: 0 healthy; 1 connected but the echo was wrong, incomplete or late, or the HTTP status was
            not 200; 2 the host could not be resolved or connected to (refused, unreachable, timed out).
            Hostnames are resolved and each address is tried in turn. --timeout bounds the whole probe.
            """)

    @Argument(help: ArgumentHelp("Echo listener to check: HOST:PORT, [IPV6]:PORT or NAME:PORT.", valueName: "host:port"))
    var target: String?

    @Option(help: ArgumentHelp("Give up after this long, connecting included (e.g. 2s, 500ms).", valueName: "duration"))
    var timeout: String = "2s"

    @Option(name: .customLong("payload-size"), help: ArgumentHelp("Random bytes per round trip (1 to 16 MiB).", valueName: "n"))
    var payloadSize: Int = 64

    @Option(help: ArgumentHelp("Round trips on the connection (with --http: requests, one connection each).", valueName: "n"))
    var count: Int = 1

    @Option(help: ArgumentHelp("Check http://HOST:PORT/PATH instead (healthy on status 200), e.g. http://127.0.0.1:9090/readyz.", valueName: "url"))
    var http: String?

    @Flag(help: "Print one JSON object instead of a line.")
    var json = false

    func validate() throws {
        switch (target, http) {
        case (nil, nil): throw ValidationError("give HOST:PORT of an echo listener, or --http URL")
        case (.some, .some): throw ValidationError("give either HOST:PORT or --http URL, not both")
        default: break
        }
        guard (1...ProbeOptions.maximumPayloadSize).contains(payloadSize) else {
            throw ValidationError("--payload-size must be between 1 and \(ProbeOptions.maximumPayloadSize)")
        }
        guard (1...1_000_000).contains(count) else { throw ValidationError("--count must be between 1 and 1000000") }
        _ = try options()
    }

    func options() throws -> ProbeOptions {
        do {
            let probeTarget: ProbeTarget
            if let http {
                probeTarget = .http(try Probe.parseURL(http))
            } else {
                let (host, port) = try Probe.parseHostPort(target ?? "")
                probeTarget = .echo(host: host, port: port)
            }
            return ProbeOptions(target: probeTarget, timeout: try Probe.parseDuration(timeout), payloadSize: payloadSize, count: count)
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        let result = Probe.run(try options())
        print(json ? result.json : result.line)
        if result.exitCode != 0 { throw ExitCode(result.exitCode) }
    }
}
