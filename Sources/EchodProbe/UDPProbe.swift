import EchodSystem
import EchodText
import Glibc

extension Probe {
    /// `udp://HOST:PORT`: `count` round trips on one connected UDP socket, each one random datagram that must come
    /// back byte for byte. UDP loses datagrams, so a round trip that gets no reply within its share of the timeout
    /// (`timeout / (retries + 1)`) is tried again with new random bytes, up to `retries` times; a late reply to an
    /// earlier datagram is recognised by its bytes and ignored. Each address the name resolves to is tried in turn
    /// while the previous one answers with ICMP port unreachable (ECONNREFUSED on the connected socket).
    static func runUDP(host: String, port: UInt16, options: ProbeOptions, deadline: Deadline) -> ProbeResult {
        let label = ProbeTarget.udpScheme + HostPort(host: host, port: port, bracketed: false).description
        var result = ProbeResult(outcome: .unreachable, mode: "udp", target: label)
        result.bytes = options.payloadSize
        if let problem = options.problem {
            result.reason = problem
            return result
        }
        let addresses: [SocketAddress]
        do throws(Resolver.Failure) {
            addresses = try Resolver.addresses(host: host, port: port)
        } catch {
            result.reason = error.description
            return result
        }
        var refusals: [String] = []
        for address in addresses {
            guard deadline.remainingMilliseconds != nil else {
                refusals.append("\(address): timed out")
                break
            }
            let connectStart = Syscall.monotonicNow()
            let fd: Int32
            do throws(IOError) {
                fd = try Socket.connectDatagram(to: address)
            } catch {
                refusals.append("\(address): \(errorText(error))")
                continue
            }
            let socket = ProbeConnection(fd: fd, address: address)
            defer { socket.close() }
            var attempt = ProbeResult(outcome: .unhealthy, mode: "udp", target: label)
            attempt.bytes = options.payloadSize
            attempt.address = address.description
            attempt.connectMilliseconds = milliseconds(since: connectStart)
            if let refusal = exchangeDatagrams(on: socket, options: options, deadline: deadline, into: &attempt) {
                refusals.append("\(address): \(refusal)")
                continue
            }
            return attempt
        }
        result.reason = "no UDP echo: " + refusals.joined(separator: "; ")
        return result
    }

    /// The round trips on one socket, into `result` (healthy, or unhealthy with the reason). Returns the refusal
    /// instead when the address answered with ICMP port unreachable: the caller tries the next one.
    private static func exchangeDatagrams(
        on socket: ProbeConnection, options: ProbeOptions, deadline: Deadline, into result: inout ProbeResult
    ) -> String? {
        let size = options.payloadSize
        let attempts = options.retries + 1
        let perAttempt = options.timeout / attempts
        var rng = SystemRandomNumberGenerator()
        // This round trip's datagrams and the previous round trip's: a late reply to either is recognised.
        var current = [[UInt8]](repeating: [UInt8](repeating: 0, count: size), count: attempts)
        var previous = current
        var previousSent = 0
        // One byte more than was sent, so that a longer reply shows as longer instead of being truncated to a match.
        var reply = [UInt8](repeating: 0, count: size + 1)
        for _ in 0..<options.count {
            var sent = 0
            var answered = false
            while !answered {
                guard sent < attempts, deadline.remainingMilliseconds != nil else {
                    result.reason = "no reply within \(deadline.timeoutText) (\(sent) datagram(s) of \(size) bytes sent)"
                    return nil
                }
                fillRandom(&current[sent], &rng)
                do throws(IOError) {
                    _ = try socket.send(current[sent], from: 0)  // 0 (socket buffer full) is a lost datagram
                } catch {
                    if error.errno == ECONNREFUSED { return refusal }
                    result.reason = "send failed: \(errorText(error))"
                    return nil
                }
                if sent > 0 { result.resent += 1 }
                sent += 1
                let sentAt = Syscall.monotonicNow()
                let attemptDeadline = Deadline(timeout: perAttempt)
                let until = attemptDeadline.end < deadline.end ? attemptDeadline : deadline
                while true {
                    let count: Int
                    do throws(IOError) {
                        guard let events = try socket.wait(write: false, until: until) else { break }  // resend
                        guard events & readableEvents != 0, let n = try socket.receive(into: &reply, limit: reply.count) else { continue }
                        count = n
                    } catch {
                        if error.errno == ECONNREFUSED { return refusal }
                        result.reason = "receive failed: \(errorText(error))"
                        return nil
                    }
                    if count == size && reply.prefix(size).elementsEqual(current[sent - 1]) {
                        result.roundTripMilliseconds.append(milliseconds(since: sentAt))
                        result.completed += 1
                        answered = true
                        break
                    }
                    let echo = reply.prefix(size)
                    // The previous round trip's answered datagram is its last one: a copy of it is a second echo.
                    if count == size && previousSent > 0 && previous[previousSent - 1].elementsEqual(echo) {
                        result.reason = "the server echoed a datagram twice"
                        return nil
                    }
                    let late =
                        count == size
                        && (current[0..<(sent - 1)].contains { $0.elementsEqual(echo) }
                            || previous[0..<(max(previousSent, 1) - 1)].contains { $0.elementsEqual(echo) })
                    if late { continue }
                    result.reason = mismatch(sent: current[sent - 1], reply: reply, count: count)
                    return nil
                }
            }
            swap(&current, &previous)
            previousSent = sent
        }
        // A second copy of the last echo, if already here, would mean the server sends more than it receives.
        if let n = try? socket.receive(into: &reply, limit: reply.count), n == size, reply.prefix(size).elementsEqual(previous[previousSent - 1]) {
            result.reason = "the server echoed a datagram twice"
            return nil
        }
        result.outcome = .healthy
        return nil
    }

    private static let refusal = "port unreachable (ICMP): nothing listens on that UDP port"

    /// Why `reply[0..<count]` is not the echo of `sent`.
    static func mismatch(sent: [UInt8], reply: [UInt8], count: Int) -> String {
        if count != sent.count {
            if count > sent.count { return "reply longer than the datagram of \(sent.count) bytes" }
            return "reply of \(count) bytes to a datagram of \(sent.count) bytes"
        }
        let i = (0..<count).first { reply[$0] != sent[$0] } ?? 0
        return "reply differs at byte \(i) of \(count) (sent 0x\(NumberText.hex(sent[i])), got 0x\(NumberText.hex(reply[i])))"
    }
}
