import EchodSystem

extension Probe {
    /// `count` GET requests, one connection each (`Connection: close`), healthy when every status is 200.
    static func runHTTP(_ url: HTTPURL, options: ProbeOptions, deadline: Deadline) -> ProbeResult {
        var result = ProbeResult(outcome: .unreachable, mode: "http", target: url.description)
        let request = Array(
            "GET \(url.target) HTTP/1.1\r\nHost: \(url.hostHeader)\r\nUser-Agent: echod-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n".utf8)
        for _ in 0..<options.count {
            let connectStart = Syscall.monotonicNow()
            let connection: ProbeConnection
            switch ProbeConnection.open(host: url.host, port: url.port, deadline: deadline) {
            case .failure(let failure):
                result.outcome = .unreachable
                result.reason = failure.reason
                return result
            case .success(let c):
                connection = c
            }
            defer { connection.close() }
            result.address = connection.address.description
            if result.connectMilliseconds == nil { result.connectMilliseconds = milliseconds(since: connectStart) }
            result.outcome = .unhealthy
            let start = Syscall.monotonicNow()
            switch HTTPClient.exchange(on: connection, request: request, deadline: deadline) {
            case .failure(let failure):
                result.reason = failure.reason
                return result
            case .success(let response):
                result.httpStatus = response.status
                guard response.status == 200 else {
                    let detail = response.firstBodyLine.isEmpty ? "" : ": \(response.firstBodyLine)"
                    result.reason = "status \(response.status)\(detail)"
                    return result
                }
            }
            result.roundTripMilliseconds.append(milliseconds(since: start))
            result.completed += 1
        }
        result.outcome = .healthy
        return result
    }
}
