import EchodProxyProtocol
import EchodSystem
import EchodText
import Glibc

extension Probe {
    /// Sends `count` random payloads on one connection, each after the previous one came back whole, and checks
    /// every byte; then checks that nothing follows the last echo.
    static func runEcho(host: String, port: UInt16, options: ProbeOptions, deadline: Deadline) -> ProbeResult {
        let label = HostPort(host: host, port: port, bracketed: false).description
        return runEcho(label: label, options: options, deadline: deadline) { ProbeConnection.open(host: host, port: port, deadline: deadline) }
    }

    /// The echo check over whatever connection `connect` opens (TCP or Unix); `label` names the target.
    static func runEcho(
        label: String, options: ProbeOptions, deadline: Deadline, connect: () -> Result<ProbeConnection, ProbeFailure>
    ) -> ProbeResult {
        var result = ProbeResult(outcome: .unreachable, mode: "echo", target: label)
        result.bytes = options.payloadSize
        let connectStart = Syscall.monotonicNow()
        let connection: ProbeConnection
        switch connect() {
        case .failure(let failure):
            result.reason = failure.reason
            return result
        case .success(let c):
            connection = c
        }
        defer { connection.close() }
        result.address = connection.address.description
        result.connectMilliseconds = milliseconds(since: connectStart)
        result.outcome = .unhealthy
        var header: [UInt8] = []
        if let version = options.proxyProtocol {
            result.proxyProtocol = version.description
            do throws(ProxyHeaderWriter.Failure) {
                header = try healthCheckHeader(version)
            } catch {
                result.reason = "cannot write the PROXY protocol header: \(error)"
                return result
            }
            if let failure = sendAll(header, on: connection, until: deadline) {
                result.reason = "PROXY protocol header: \(failure.reason)"
                return result
            }
        }

        var rng = SystemRandomNumberGenerator()
        var payload = [UInt8](repeating: 0, count: options.payloadSize)
        var echo = [UInt8](repeating: 0, count: min(options.payloadSize, 65536))
        var headerCameBack = !header.isEmpty
        for _ in 0..<options.count {
            fillRandom(&payload, &rng)
            let start = Syscall.monotonicNow()
            var sent = 0
            var received = 0
            while received < payload.count {
                let events: Int16
                do throws(IOError) {
                    guard let ready = try connection.wait(write: sent < payload.count, until: deadline) else {
                        result.reason = "timed out after \(deadline.timeoutText) waiting for the echo (got \(received) of \(payload.count) bytes)"
                        return result
                    }
                    events = ready
                } catch {
                    result.reason = "poll: \(errorText(error))"
                    return result
                }
                if sent < payload.count && events & Int16(POLLOUT) != 0 {
                    do throws(IOError) {
                        sent += try connection.send(payload, from: sent)
                    } catch {
                        result.reason = "send failed after \(sent) of \(payload.count) bytes: \(errorText(error))"
                        return result
                    }
                }
                guard events & readableEvents != 0 else { continue }
                let count: Int
                do throws(IOError) {
                    guard let n = try connection.receive(into: &echo, limit: payload.count - received) else { continue }
                    count = n
                } catch {
                    result.reason = "receive failed after \(received) of \(payload.count) bytes: \(errorText(error))"
                    return result
                }
                if count == 0 {
                    result.reason = "connection closed by the server after \(received) of \(payload.count) echoed bytes"
                    return result
                }
                // A listener that echoes the header back does not expect one. The first round's echo is checked
                // against the header as it comes, so that a mismatch can say so even when the payload happens to
                // start like the header (then the first wrong byte is not byte 0).
                if result.completed == 0 {
                    var i = 0
                    while headerCameBack && i < count && received + i < header.count {
                        headerCameBack = echo[i] == header[received + i]
                        i += 1
                    }
                }
                for i in 0..<count where echo[i] != payload[received + i] {
                    result.reason =
                        "echo mismatch at byte \(received + i) of \(payload.count) (sent 0x\(NumberText.hex(payload[received + i])), got 0x\(NumberText.hex(echo[i])))"
                    if headerCameBack && result.completed == 0 && received + i < header.count {
                        result.reason! += ": the PROXY protocol header came back (is the listener set to proxy_protocol?)"
                    }
                    return result
                }
                received += count
            }
            result.roundTripMilliseconds.append(milliseconds(since: start))
            result.completed += 1
        }
        // Nothing more may follow the last echo.
        var extra = [UInt8](repeating: 0, count: 4096)
        if let n = try? connection.receive(into: &extra, limit: extra.count), n > 0 {
            result.reason = "the server sent \(n) byte(s) more than were echoed"
            return result
        }
        result.outcome = .healthy
        return result
    }

    /// What a proxy's own health check sends (HAProxy's `check-send-proxy`): v2 LOCAL without addresses, or v1
    /// `PROXY UNKNOWN`. Either way the server serves the connection as the proxy's own.
    static func healthCheckHeader(_ version: ProxyVersion) throws(ProxyHeaderWriter.Failure) -> [UInt8] {
        switch version {
        case .v1: try ProxyHeaderWriter.v1(.unspecified)
        case .v2: try ProxyHeaderWriter.v2(.local, .unspecified)
        }
    }

    /// Sends all of `bytes` before the deadline; the failure, or nil.
    static func sendAll(_ bytes: [UInt8], on connection: ProbeConnection, until deadline: Deadline) -> ProbeFailure? {
        var sent = 0
        while sent < bytes.count {
            do throws(IOError) {
                guard let events = try connection.wait(write: true, until: deadline) else {
                    return ProbeFailure("timed out after \(deadline.timeoutText) sending \(bytes.count - sent) of \(bytes.count) bytes")
                }
                if events & Int16(POLLOUT) != 0 { sent += try connection.send(bytes, from: sent) }
            } catch {
                return ProbeFailure("send failed after \(sent) of \(bytes.count) bytes: \(errorText(error))")
            }
        }
        return nil
    }

    static func fillRandom(_ bytes: inout [UInt8], _ rng: inout SystemRandomNumberGenerator) {
        bytes.withUnsafeMutableBytes { raw in
            var i = 0
            while i < raw.count {
                var word = rng.next()
                let n = min(8, raw.count - i)
                withUnsafeBytes(of: &word) { raw.baseAddress!.advanced(by: i).copyMemory(from: $0.baseAddress!, byteCount: n) }
                i += n
            }
        }
    }
}
