extension Units {
    /// A duration in `range`: the grammar's reason when the text does not parse, otherwise the range in the
    /// same grammar (`out of range; must be between 1ms and 1h`). For options whose callers each have a range.
    package static func parseDuration(_ text: String, in range: ClosedRange<Duration>) throws(InvalidValue) -> Duration {
        let value = try parseDuration(text)
        guard range.contains(value) else {
            throw InvalidValue(reason: "out of range; must be between \(format(range.lowerBound)) and \(format(range.upperBound))")
        }
        return value
    }

    /// A byte size in `range`, refused the same way as ``parseDuration(_:in:)``.
    package static func parseSize(_ text: String, in range: ClosedRange<Int>) throws(InvalidValue) -> Int {
        let value = try parseSize(text)
        guard range.contains(value) else {
            throw InvalidValue(reason: "out of range; must be between \(formatSize(range.lowerBound)) and \(formatSize(range.upperBound))")
        }
        return value
    }
}
