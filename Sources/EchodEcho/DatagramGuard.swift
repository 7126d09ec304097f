import EchodSystem

/// Why a datagram got no reply. Each is a counter (`echod_udp_dropped_total{reason=...}`) and a rate-limited warning.
package enum DropReason: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// The source port is a known echoing, chargen-like or amplifying service (``DatagramGuard/isReservedPort(_:)``).
    case reservedPort
    /// The source port is below `udp.min_source_port`.
    case privilegedPort
    /// The source is unspecified, broadcast, multicast or reserved: no real sender has it.
    case broadcastSource
    /// The datagram was sent to a broadcast or multicast address, not to one of this host's unicast addresses.
    case broadcastDestination
    /// The source address's token bucket is empty (`udp.source_rate`, `udp.source_burst`).
    case sourceRate
    /// The global cap (`udp.global_rate` or `udp.global_bandwidth`) is reached.
    case globalRate
    /// Longer than the receive buffer: never answered in part.
    case truncated
    /// The reply could not be sent: the socket buffer was full (UDP has no backpressure; the rest of that batch is
    /// dropped, never queued) or the kernel refused it.
    case sendFailed

    package var description: String {
        switch self {
        case .reservedPort: "reserved_port"
        case .privilegedPort: "privileged_port"
        case .broadcastSource: "broadcast_source"
        case .broadcastDestination: "broadcast_destination"
        case .sourceRate: "source_rate"
        case .globalRate: "global_rate"
        case .truncated: "truncated"
        case .sendFailed: "send_failed"
        }
    }
}

/// Decides, per datagram, whether the UDP echo answers it: the rules that keep a UDP echo from being a reflector
/// or one end of a loop (CERT CA-1996-01, CVE-1999-0103, VU#417980). Pure logic with no system call (the caller
/// passes the time, read once per batch): unit-tested and fuzzed without sockets.
///
/// One owner (the loop that serves the socket); the source table and the buckets are its state alone, so the limits
/// are exact for that socket with no lock.
package struct DatagramGuard {
    /// The guard's settings (`udp.*`), as this socket's share of them (``DatagramGuard/Settings/share(_:)``).
    package struct Settings: Sendable, Equatable {
        package var minSourcePort: Int
        package var sourceRate: Int
        package var sourceBurst: Int
        package var globalRate: Int
        /// Bytes per second.
        package var globalBandwidth: Int
        package var sourceTableSize: Int

        package init(minSourcePort: Int, sourceRate: Int, sourceBurst: Int, globalRate: Int, globalBandwidth: Int, sourceTableSize: Int) {
            self.minSourcePort = minSourcePort
            self.sourceRate = sourceRate
            self.sourceBurst = sourceBurst
            self.globalRate = globalRate
            self.globalBandwidth = globalBandwidth
            self.sourceTableSize = sourceTableSize
        }

        /// One of `sockets` sockets' share: the global caps and the table divided evenly (each socket has its own
        /// loop owner, so a shared budget would need a lock), so that the sum over all sockets is what was
        /// configured. The per-source limits are per socket.
        package func share(_ sockets: Int) -> Settings {
            var s = self
            let n = max(1, sockets)
            s.globalRate = max(1, globalRate / n)
            s.globalBandwidth = max(1, globalBandwidth / n)
            s.sourceTableSize = max(SourceTable.ways, sourceTableSize / n)
            return s
        }
    }

    package private(set) var settings: Settings
    private var sourceRate: TokenBucket.Rate
    private var packetRate: TokenBucket.Rate
    private var byteRate: TokenBucket.Rate
    private var packets: TokenBucket
    private var bytes: TokenBucket
    package private(set) var table: SourceTable
    private let seed: UInt64

    package init(settings: Settings, now: Int64, seed: UInt64) {
        self.settings = settings
        self.seed = seed
        sourceRate = TokenBucket.Rate(perSecond: settings.sourceRate, burst: settings.sourceBurst)
        packetRate = TokenBucket.Rate(perSecond: settings.globalRate, burst: settings.globalRate)
        byteRate = TokenBucket.Rate(perSecond: settings.globalBandwidth, burst: settings.globalBandwidth)
        packets = TokenBucket(full: packetRate, now: now)
        bytes = TokenBucket(full: byteRate, now: now)
        table = SourceTable(size: settings.sourceTableSize, seed: seed)
    }

    /// Frees the source table. Call once, when the socket is no longer served.
    package func deallocate() { table.deallocate() }

    /// Applies new settings (reload). The table keeps its entries unless its size changed; buckets keep their
    /// tokens, capped at the new burst at their next refill.
    package mutating func apply(_ new: Settings, now: Int64) {
        if new.sourceTableSize != settings.sourceTableSize {
            table.deallocate()
            table = SourceTable(size: new.sourceTableSize, seed: seed)
        }
        settings = new
        sourceRate = TokenBucket.Rate(perSecond: new.sourceRate, burst: new.sourceBurst)
        packetRate = TokenBucket.Rate(perSecond: new.globalRate, burst: new.globalRate)
        byteRate = TokenBucket.Rate(perSecond: new.globalBandwidth, burst: new.globalBandwidth)
    }

    /// nil: answer the datagram (its tokens are spent); else why not. The checks that cost nothing come first, so
    /// that a datagram refused for its addresses or port spends no token.
    ///
    /// - Parameters:
    ///   - source: the sender's address and port.
    ///   - destination: the header destination (pktinfo); nil when the kernel gave none.
    ///   - localAddress: IPv4's `ipi_spec_dst`, the local address a reply would come from (``DatagramInfo``).
    ///   - length: the payload size, which the reply repeats.
    ///   - now: monotonic nanoseconds, read once per batch.
    @inline(__always)
    package mutating func decide(
        source: SocketAddress, destination: HostKey?, localAddress: HostKey?, length: Int, now: Int64
    ) -> DropReason? {
        if !Self.isUnicast(source.hostKey) { return .broadcastSource }
        if let destination {
            if !Self.isUnicast(destination) { return .broadcastDestination }
            // 0.0.0.0: the datagram was queued before pktinfo was turned on (a socket passed by systemd holds the
            // datagram that activated echod), and the kernel kept no local address for it; the header destination
            // is all there is to judge by.
            if let localAddress, localAddress.high != 0, localAddress != destination { return .broadcastDestination }
        }
        if Self.isReservedPort(source.port) { return .reservedPort }
        if Int(source.port) < settings.minSourcePort { return .privilegedPort }
        if !table.take(source.hostKey, sourceRate, now: now) { return .sourceRate }
        packets.refill(packetRate, now: now)
        bytes.refill(byteRate, now: now)
        let size = Double(length)
        guard packets.has(1), bytes.has(size) else { return .globalRate }
        packets.spend(1)
        bytes.spend(size)
        return nil
    }

    // MARK: Rules

    /// Source ports never answered, whatever `udp.min_source_port` says: services that answer a datagram with one
    /// (a loop partner: two such services can ping-pong forever, VU#417980) or with more (an amplifier a spoofed
    /// request could aim at). Among them the registered ports above 1023 that such services use.
    ///
    /// 0 (not a valid source port), 7 echo, 11 systat (active users), 13 daytime, 17 qotd, 19 chargen, 37 time
    /// (the RFC 862-868 family and VU#417980's list), 53 DNS, 69 TFTP (answers every request, errors included,
    /// VU#417980), 111 portmapper (an amplifier), 123 NTP, 137 NetBIOS name service, 161 SNMP, 177 XDMCP, 389
    /// CLDAP, 427 SLP (CVE-2023-29552), 443 QUIC (servers answer unknown versions with a version negotiation),
    /// 500 IKE, 520 RIP, 623 IPMI/RMCP, 1434 MS-SQL browser, 1900 SSDP, 3283 Apple Remote Desktop, 3478 STUN,
    /// 3702 WS-Discovery, 5060 SIP, 5353 mDNS, 5683 CoAP, 10001 Ubiquiti discovery, 11211 memcached, 27015
    /// Steam/Source game server queries.
    @inline(__always)
    package static func isReservedPort(_ port: UInt16) -> Bool {
        switch port {
        case 0, 7, 11, 13, 17, 19, 37, 53, 69, 111, 123, 137, 161, 177, 389, 427, 443, 500, 520, 623: true
        case 1434, 1900, 3283, 3478, 3702, 5060, 5353, 5683, 10001, 11211, 27015: true
        default: false
        }
    }

    /// Ports ``isReservedPort(_:)`` refuses, for tests and documentation.
    package static var reservedPorts: [UInt16] { (0...UInt16.max).filter(isReservedPort) }

    /// Whether `address` can be a unicast sender or our own unicast address: not unspecified (IPv4 0.0.0.0/8, IPv6
    /// `::`), broadcast or reserved (IPv4 240.0.0.0/4, which holds 255.255.255.255), nor multicast (IPv4
    /// 224.0.0.0/4, IPv6 ff00::/8); an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is judged as its IPv4 address.
    @inline(__always)
    package static func isUnicast(_ address: HostKey) -> Bool {
        switch address.family {
        case .ipv4:
            return isUnicastIPv4(UInt32(bigEndian: UInt32(truncatingIfNeeded: address.high)))
        case .ipv6:
            let first = UInt64(bigEndian: address.high)
            let second = UInt64(bigEndian: address.low)
            if first == 0 && second == 0 { return false }  // ::
            if first >> 56 == 0xFF { return false }  // ff00::/8
            if first == 0 && second >> 32 == 0xFFFF {  // ::ffff:a.b.c.d
                return isUnicastIPv4(UInt32(truncatingIfNeeded: second))
            }
            return true
        case .unix:
            return false  // a Unix peer is never a UDP source
        }
    }

    /// `address` in host byte order.
    @inline(__always)
    static func isUnicastIPv4(_ address: UInt32) -> Bool {
        let first = address >> 24
        return first != 0 && first < 224
    }
}
