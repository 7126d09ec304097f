import EchodText

/// The outcome of one probe: the exit status, a one-line summary and a JSON object.
package struct ProbeResult: Sendable, Equatable {
    package enum Outcome: Sendable, Equatable {
        /// Everything as expected: exit 0.
        case healthy
        /// Connected, but the echo was wrong, short or late, or the HTTP status was not 200: exit 1.
        case unhealthy
        /// Could not resolve or connect (refused, unreachable, timed out; UDP: ICMP port unreachable): exit 2.
        case unreachable
    }

    package var outcome: Outcome
    /// `echo`, `udp` or `http`.
    package var mode: String
    /// The target as given: `127.0.0.1:8888`, `localhost:8888`, `udp://127.0.0.1:8888` or the URL.
    package var target: String
    /// The address actually connected to, e.g. `[::1]:8888`.
    package var address: String?
    /// Why it failed.
    package var reason: String?
    /// Payload bytes per round trip (echo).
    package var bytes: Int = 0
    /// Completed round trips.
    package var completed: Int = 0
    package var connectMilliseconds: Double?
    /// Each completed round trip (echo: first byte sent to last byte back; HTTP: request sent to response read).
    package var roundTripMilliseconds: [Double] = []
    /// The last HTTP status received.
    package var httpStatus: Int?
    /// UDP: datagrams sent again because no reply came in time (with the ones answered late, not errors).
    package var resent: Int = 0
    /// `v1` or `v2` when a PROXY protocol header went first (`--proxy-protocol`).
    package var proxyProtocol: String?

    package init(outcome: Outcome, mode: String, target: String) {
        self.outcome = outcome
        self.mode = mode
        self.target = target
    }

    package var exitCode: Int32 {
        switch outcome {
        case .healthy: 0
        case .unhealthy: 1
        case .unreachable: 2
        }
    }

    /// `ok 127.0.0.1:8888 64 bytes in 0.21 ms` / `fail 127.0.0.1:8888: echo mismatch at byte 3 of 64`.
    package var line: String {
        guard outcome == .healthy else { return "fail \(target): \(reason ?? "failed")" }
        let total = roundTripMilliseconds.reduce(0, +)
        let repeated = roundTripMilliseconds.count > 1
        if mode == "http" {
            let status = httpStatus ?? 0
            return repeated
                ? "ok \(target) \(status) x\(roundTripMilliseconds.count) in \(ms(total))" + stats
                : "ok \(target) \(status) in \(ms(total))"
        }
        let resentNote = resent > 0 ? " (\(resent) resent)" : ""
        return repeated
            ? "ok \(target) \(roundTripMilliseconds.count)x\(bytes) bytes in \(ms(total))" + stats + resentNote
            : "ok \(target) \(bytes) bytes in \(ms(total))" + resentNote
    }

    private var stats: String {
        let sorted = roundTripMilliseconds.sorted()
        let avg = sorted.reduce(0, +) / Double(sorted.count)
        return " (min \(ms(sorted.first!)), avg \(ms(avg)), max \(ms(sorted.last!)))"
    }

    private func ms(_ x: Double) -> String { "\(NumberText.fixed(x, decimals: 2)) ms" }

    /// One JSON object on one line.
    package var json: String {
        func number(_ x: Double) -> String { NumberText.fixed(x, decimals: 3) }
        var fields: [(String, String)] = [
            ("ok", outcome == .healthy ? "true" : "false"),
            ("exit_code", String(exitCode)),
            ("mode", Escaping.jsonString(mode)),
            ("target", Escaping.jsonString(target)),
            ("address", address.map(Escaping.jsonString) ?? "null"),
        ]
        if mode != "http" { fields.append(("bytes", String(bytes))) }
        if mode == "udp" { fields.append(("resent", String(resent))) }
        if let proxyProtocol { fields.append(("proxy_protocol", Escaping.jsonString(proxyProtocol))) }
        if let httpStatus { fields.append(("status", String(httpStatus))) }
        fields.append(("count", String(completed)))
        fields.append(("connect_ms", connectMilliseconds.map(number) ?? "null"))
        if !roundTripMilliseconds.isEmpty {
            let sorted = roundTripMilliseconds.sorted()
            let total = sorted.reduce(0, +)
            fields.append(("rtt_ms", number(total / Double(sorted.count))))
            fields.append(("rtt_min_ms", number(sorted.first!)))
            fields.append(("rtt_max_ms", number(sorted.last!)))
            fields.append(("total_ms", number(total)))
        }
        fields.append(("error", reason.map(Escaping.jsonString) ?? "null"))
        return "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
    }
}
