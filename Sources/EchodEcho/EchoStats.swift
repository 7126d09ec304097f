import EchodEventLoop

/// One loop's echo counters (single writer: the loop; any reader: metrics, STATUS=). See `SingleWriterCounter`.
public final class EchoStats: Sendable {
    public let accepted = SingleWriterCounter()
    public let closed: [SingleWriterCounter] = CloseReason.allCases.map { _ in SingleWriterCounter() }
    public let rejectedTotal = SingleWriterCounter()
    public let rejectedPerIP = SingleWriterCounter()
    public let bytesIn = SingleWriterCounter()
    public let bytesOut = SingleWriterCounter()
    public let reads = SingleWriterCounter()
    public let acceptPauses = SingleWriterCounter()

    public init() {}

    /// Counts a connection accepted and closed at once by a limit: accepted, closed for `reason`, and rejected.
    func rejected(_ reason: CloseReason) {
        accepted.add(1)
        closed[reason.rawValue].add(1)
        (reason == .perIPLimit ? rejectedPerIP : rejectedTotal).add(1)
    }

    /// Connections open on this loop now (accepted and not yet closed; rejected ones are counted in both).
    public var active: UInt64 {
        let done = closed.reduce(0) { $0 &+ $1.load }
        return accepted.load &- done
    }

    /// Closed connections for one reason.
    public func closed(_ reason: CloseReason) -> UInt64 { closed[reason.rawValue].load }
}
