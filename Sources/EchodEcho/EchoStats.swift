import EchodEventLoop

/// One loop's echo counters (single writer: the loop; any reader: metrics, STATUS=). See `SingleWriterCounter`.
package final class EchoStats: Sendable {
    package let accepted = SingleWriterCounter()
    package let closed: [SingleWriterCounter] = CloseReason.allCases.map { _ in SingleWriterCounter() }
    package let rejectedTotal = SingleWriterCounter()
    package let rejectedPerIP = SingleWriterCounter()
    package let bytesIn = SingleWriterCounter()
    package let bytesOut = SingleWriterCounter()
    package let reads = SingleWriterCounter()
    package let acceptPauses = SingleWriterCounter()

    package init() {}

    /// Counts a connection accepted and closed at once by a limit: accepted, closed for `reason`, and rejected.
    func rejected(_ reason: CloseReason) {
        accepted.add(1)
        closed[reason.rawValue].add(1)
        (reason == .perIPLimit ? rejectedPerIP : rejectedTotal).add(1)
    }

    /// Connections open on this loop now (accepted and not yet closed; rejected ones are counted in both).
    package var active: UInt64 {
        let done = closed.reduce(0) { $0 &+ $1.load }
        return accepted.load &- done
    }

    /// Closed connections for one reason.
    package func closed(_ reason: CloseReason) -> UInt64 { closed[reason.rawValue].load }
}
