import Histogram

/// Latency percentiles in microseconds.
package struct BenchLatency: Sendable, Equatable {
    /// How many operations were timed.
    package var count: UInt64 = 0
    package var p50: Double = 0
    package var p90: Double = 0
    package var p99: Double = 0
    package var p999: Double = 0
    package var max: Double = 0
    package var mean: Double = 0

    package init() {}
}

/// Records operation latencies in nanoseconds into an HdrHistogram (3 significant digits, up to 60 s), one per
/// loop thread with no sharing; the runner merges them at the end. The mean is kept exactly beside it.
package struct LatencyRecorder: Sendable {
    /// The longest latency recorded as such; longer ones are recorded as this value (60 s: no run waits longer).
    package static let highestTrackableNanoseconds: UInt64 = 60_000_000_000

    @usableFromInline var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: LatencyRecorder.highestTrackableNanoseconds,
        numberOfSignificantValueDigits: .three)
    @usableFromInline var sumNanoseconds: UInt64 = 0
    @usableFromInline var exactMax: UInt64 = 0

    package init() {}

    /// The number of values recorded.
    package var count: UInt64 { histogram.totalCount }

    @inlinable
    package mutating func record(nanoseconds value: UInt64) {
        let v = Swift.min(Swift.max(value, 1), Self.highestTrackableNanoseconds)
        histogram.record(v)
        sumNanoseconds &+= value
        if value > exactMax { exactMax = value }
    }

    /// Adds everything `other` recorded.
    package mutating func merge(_ other: LatencyRecorder) {
        histogram.add(other.histogram)
        sumNanoseconds &+= other.sumNanoseconds
        exactMax = Swift.max(exactMax, other.exactMax)
    }

    /// The value below which `percentile` percent of the recorded values fall, in nanoseconds (to the
    /// histogram's resolution: within 0.1 %).
    package func nanoseconds(atPercentile percentile: Double) -> UInt64 {
        histogram.totalCount == 0 ? 0 : histogram.valueAtPercentile(percentile)
    }

    /// p50, p90, p99, p99.9, max and mean in microseconds.
    package var summary: BenchLatency {
        var s = BenchLatency()
        let n = histogram.totalCount
        s.count = n
        guard n > 0 else { return s }
        s.p50 = Double(nanoseconds(atPercentile: 50)) / 1000
        s.p90 = Double(nanoseconds(atPercentile: 90)) / 1000
        s.p99 = Double(nanoseconds(atPercentile: 99)) / 1000
        s.p999 = Double(nanoseconds(atPercentile: 99.9)) / 1000
        s.max = Double(exactMax) / 1000
        s.mean = Double(sumNanoseconds) / Double(n) / 1000
        return s
    }
}
