extension NumberText {
    /// A byte as two lowercase hex digits, `0f`: how `echod probe` and `echod bench` show a wrong echoed byte.
    package static func hex(_ byte: UInt8) -> String {
        let digits: [Character] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]
        return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }
}
