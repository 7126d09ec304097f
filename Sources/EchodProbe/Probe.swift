import EchodSystem

/// `echod probe`: a health-check client for scripts and orchestrators. One short-lived connection at a time, on
/// the calling thread: non-blocking sockets waited on with `poll` up to the probe's one deadline, so no event loop
/// is needed. The files beside this one hold its parts: the options and their parsing (`ProbeOptions.swift`), the
/// result (`ProbeResult.swift`), the timeout (`Deadline.swift`), connecting and socket I/O (`ProbeConnection.swift`),
/// the echo check (`EchoProbe.swift`), the UDP echo check (`UDPProbe.swift`) and the HTTP check (`HTTPProbe.swift`, over `HTTPClient.swift`).
package enum Probe {
    /// Runs the probe; never throws: every failure is a result.
    package static func run(_ options: ProbeOptions) -> ProbeResult {
        let deadline = Deadline(timeout: options.timeout)
        switch options.target {
        case .udp(let host, let port):
            return runUDP(host: host, port: port, options: options, deadline: deadline)
        case .echo(let host, let port):
            return runEcho(host: host, port: port, options: options, deadline: deadline)
        case .http(let url):
            return runHTTP(url, options: options, deadline: deadline)
        case .unixEcho(let path):
            return runEcho(label: path.description, options: options, deadline: deadline) { ProbeConnection.open(unix: path) }
        }
    }

    /// The milliseconds since `start` on the monotonic clock, for the result's timings.
    static func milliseconds(since start: Duration) -> Double {
        (Syscall.monotonicNow() - start) / .milliseconds(1)
    }
}
