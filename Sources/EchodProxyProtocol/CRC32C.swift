/// CRC32C (Castagnoli, RFC 4960 appendix B), as PP2_TYPE_CRC32C carries it.
package enum CRC32C {
    /// The reflected polynomial 0x1EDC6F41, a byte at a time; built once per process, on the first checksum.
    private static let table: [UInt32] = (0..<256).map { index in
        var crc = UInt32(index)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    /// The checksum of `bytes`, each byte in `zeroing` counted as 0 (the checksum field itself, as the receiver must).
    package static func checksum(_ bytes: UnsafeRawBufferPointer, zeroing: Range<Int> = 0..<0) -> UInt32 {
        table.withUnsafeBufferPointer { table in
            var crc: UInt32 = 0xFFFF_FFFF
            for index in bytes.indices {
                let byte = zeroing.contains(index) ? 0 : bytes[index]
                crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
            }
            return crc ^ 0xFFFF_FFFF
        }
    }
}
