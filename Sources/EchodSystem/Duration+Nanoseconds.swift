extension Duration {
    /// The duration in whole nanoseconds (the unit of ``Syscall/monotonicNanoseconds()``), truncated toward zero and
    /// saturating at `Int64.min`/`Int64.max` (about 292 years), so that a timeout of "forever" cannot trap.
    package var nanoseconds: Int64 {
        let (seconds, attoseconds) = components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, overflowAgain) = whole.addingReportingOverflow(attoseconds / 1_000_000_000)
        if overflowAgain { return seconds < 0 ? .min : .max }
        return sum
    }
}
