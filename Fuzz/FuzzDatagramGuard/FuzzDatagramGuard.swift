// libFuzzer target: the UDP echo's guard and source table (Fuzz/README.md). The input is a script: a header that
// picks the settings, then 24-byte records, each a datagram (source, destination, pktinfo local address, port,
// length) and a time step. Properties: no answered datagram has a listed or too-low source port, a non-unicast
// source or destination, or a local address other than its destination; the table never holds more than its
// capacity; and, with few enough sources that none is evicted, no source and no socket is answered more than its
// token buckets allow over the simulated time.
import EchodEcho
import EchodSystem
import FuzzSupport

@main
enum FuzzDatagramGuard: FuzzTarget {
    static func fuzz(_ input: UnsafeRawBufferPointer) {
        guard input.count >= 8 else { return }
        let bytes = Array(input)
        let settings = DatagramGuard.Settings(
            minSourcePort: Int(bytes[0]) * 64 | Int(bytes[1] & 63) | 1, sourceRate: Int(bytes[2]) + 1,
            sourceBurst: Int(bytes[3]) + 1, globalRate: Int(bytes[4]) * 4 + 1, globalBandwidth: (Int(bytes[5]) + 1) * 4096,
            sourceTableSize: SourceTable.ways * (Int(bytes[6] & 31) + 1))
        // Bit 0 of byte 7: at most `ways` distinct sources (none evicted, so the buckets can be checked exactly).
        let fewSources = bytes[7] & 1 == 0
        var g = DatagramGuard(settings: settings, now: 0, seed: UInt64(bytes[7]))
        defer { g.deallocate() }
        var now: Int64 = 0
        var answered: [HostKey: Int] = [:]
        var totalAnswered = 0
        var totalBytes = 0
        var offset = 8
        while offset + 24 <= bytes.count {
            let r = bytes[offset..<offset + 24].map { $0 }
            offset += 24
            now += Int64(r[0]) * Int64(r[1]) * 100_000  // up to ~6.5 s per step
            let source = address(r, 2, few: fewSources, port: UInt16(r[18]) << 8 | UInt16(r[19]))
            let destination = r[20] & 1 == 0 ? nil : address(r, 10, few: false, port: 0).hostKey
            let local: HostKey? = r[20] & 2 == 0 ? destination : address(r, 14, few: false, port: 0).hostKey
            let length = Int(r[21]) | (r[22] & 0x80 != 0 ? Int(r[22]) << 8 : 0)
            let verdict = g.decide(source: source, destination: destination, localAddress: local, length: length, now: now)
            check(g.table.count <= g.table.capacity, "table holds \(g.table.count) > \(g.table.capacity)")
            guard verdict == nil else { continue }
            check(!DatagramGuard.isReservedPort(source.port), "answered listed port \(source.port)")
            check(Int(source.port) >= settings.minSourcePort, "answered port \(source.port) < \(settings.minSourcePort)")
            check(DatagramGuard.isUnicast(source.hostKey), "answered non-unicast source \(source)")
            if let destination {
                check(DatagramGuard.isUnicast(destination), "answered a datagram sent to a non-unicast address")
                if let local, local.high != 0 || local.family != .ipv4 {
                    check(local.family != .ipv4 || local == destination, "answered a datagram not sent to its local address")
                }
            }
            answered[source.hostKey, default: 0] += 1
            totalAnswered += 1
            totalBytes += length
            let seconds = Double(now) / 1e9
            check(
                Double(totalAnswered) <= Double(settings.globalRate) * (1 + seconds) + 1e-6,
                "global: \(totalAnswered) answered in \(seconds) s at \(settings.globalRate)/s")
            check(
                Double(totalBytes) <= Double(settings.globalBandwidth) * (1 + seconds) + 1e-3,
                "global: \(totalBytes) bytes in \(seconds) s at \(settings.globalBandwidth) B/s")
            if fewSources {
                check(
                    Double(answered[source.hostKey]!) <= Double(settings.sourceBurst) + Double(settings.sourceRate) * seconds + 1e-6,
                    "source \(source): \(answered[source.hostKey]!) answered in \(seconds) s")
            }
        }
        check(g.table.countInUse() == g.table.count, "table count drifted")
    }

    /// An address from 4 record bytes: IPv4 or IPv6 (bit 7 of the first byte); with `few`, one of 4 IPv4 and 4 IPv6
    /// addresses (at most `SourceTable.ways`).
    static func address(_ r: [UInt8], _ at: Int, few: Bool, port: UInt16) -> SocketAddress {
        let ipv6 = r[at] & 0x80 != 0
        var word = UInt64(r[at]) << 24 | UInt64(r[at + 1]) << 16 | UInt64(r[at + 2]) << 8 | UInt64(r[at + 3])
        if few { word = 0x0A00_0001 + (word & 3) }
        if !ipv6 {
            return SocketAddress(family: .ipv4, port: port, high: UInt64(UInt32(truncatingIfNeeded: word).bigEndian), low: 0)
        }
        // Spread the 4 bytes over the interesting IPv6 prefixes: ::, ::ffff:a.b.c.d, ff00::/8, 2001:db8::/32.
        let prefix: UInt64 = [0, 0, 0xFF02_0000_0000_0000, 0x2001_0DB8_0000_0000][Int(word >> 30) & 3]
        let low: UInt64 = (word >> 30) & 3 == 1 ? 0x0000_FFFF_0000_0000 | (word & 0xFFFF_FFFF) : word
        return SocketAddress(family: .ipv6, port: port, high: prefix.bigEndian, low: low.bigEndian)
    }
}
