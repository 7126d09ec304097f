import EchodEventLoop

/// One loop's UDP echo counters, over every UDP socket it serves (single writer: the loop; any reader: metrics).
package final class DatagramStats: Sendable {
    package let received = SingleWriterCounter()
    package let sent = SingleWriterCounter()
    package let bytesReceived = SingleWriterCounter()
    package let bytesSent = SingleWriterCounter()
    package let dropped: [SingleWriterCounter] = DropReason.allCases.map { _ in SingleWriterCounter() }

    package init() {}

    /// Datagrams dropped for `reason`.
    package func dropped(_ reason: DropReason) -> UInt64 { dropped[reason.rawValue].load }
}
