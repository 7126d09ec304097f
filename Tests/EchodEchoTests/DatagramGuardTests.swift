import EchodEcho
import EchodSystem
import Testing

@Suite("UDP echo guard and source table, without sockets")
struct DatagramGuardTests {
    static let second: Int64 = 1_000_000_000

    static func settings(
        minSourcePort: Int = 1024, sourceRate: Int = 1000, sourceBurst: Int = 2000, globalRate: Int = 100_000,
        globalBandwidth: Int = 128 << 20, tableSize: Int = 1024
    ) -> DatagramGuard.Settings {
        DatagramGuard.Settings(
            minSourcePort: minSourcePort, sourceRate: sourceRate, sourceBurst: sourceBurst, globalRate: globalRate,
            globalBandwidth: globalBandwidth, sourceTableSize: tableSize)
    }

    static func address(_ host: String, _ port: UInt16 = 40000) -> SocketAddress { SocketAddress(host: host, port: port)! }
    static func host(_ text: String) -> HostKey { address(text).hostKey }

    /// Decides one datagram sent to 127.0.0.1 (pktinfo: header destination and local address both 127.0.0.1).
    static func decide(_ g: inout DatagramGuard, _ source: SocketAddress, length: Int = 10, now: Int64 = 0) -> DropReason? {
        let local = source.family == .ipv4 ? host("127.0.0.1") : host("::1")
        return g.decide(source: source, destination: local, localAddress: source.family == .ipv4 ? local : nil, length: length, now: now)
    }

    @Test("every listed source port is refused, even with udp.min_source_port 1")
    func reservedPorts() {
        var g = DatagramGuard(settings: Self.settings(minSourcePort: 1), now: 0, seed: 1)
        defer { g.deallocate() }
        let listed: [UInt16] = [0, 7, 13, 17, 19, 37, 53, 123, 161, 1900, 11211, 69, 111, 137, 389, 520, 1434, 3702, 5353, 5683, 10001]
        for port in listed {
            #expect(Self.decide(&g, Self.address("127.0.0.1", port)) == .reservedPort, "port \(port)")
            #expect(Self.decide(&g, Self.address("::1", port)) == .reservedPort, "port \(port)")
        }
        #expect(Set(DatagramGuard.reservedPorts).isSuperset(of: listed))
        #expect(Self.decide(&g, Self.address("127.0.0.1", 8)) == nil)
        #expect(Self.decide(&g, Self.address("127.0.0.1", 1024)) == nil)
    }

    @Test("source ports below udp.min_source_port are refused")
    func privilegedPorts() {
        var g = DatagramGuard(settings: Self.settings(minSourcePort: 1024), now: 0, seed: 1)
        defer { g.deallocate() }
        #expect(Self.decide(&g, Self.address("127.0.0.1", 1)) == .privilegedPort)
        #expect(Self.decide(&g, Self.address("127.0.0.1", 1023)) == .privilegedPort)
        #expect(Self.decide(&g, Self.address("127.0.0.1", 1024)) == nil)
        g.apply(Self.settings(minSourcePort: 5000), now: 0)
        #expect(Self.decide(&g, Self.address("127.0.0.1", 4999)) == .privilegedPort)
    }

    @Test("unspecified, broadcast, multicast and reserved sources are refused, IPv4-mapped forms too")
    func nonUnicastSources() {
        var g = DatagramGuard(settings: Self.settings(), now: 0, seed: 1)
        defer { g.deallocate() }
        let refused = [
            "0.0.0.0", "0.1.2.3", "255.255.255.255", "224.0.0.1", "239.255.255.250", "240.0.0.1", "::", "ff02::1", "ff05::c",
            "::ffff:0.0.0.0", "::ffff:255.255.255.255", "::ffff:224.0.0.251",
        ]
        for text in refused {
            #expect(Self.decide(&g, Self.address(text)) == .broadcastSource, "\(text)")
        }
        for text in ["127.0.0.1", "10.0.0.1", "223.255.255.254", "::1", "2001:db8::1", "::ffff:127.0.0.1"] {
            #expect(DatagramGuard.isUnicast(Self.host(text)), "\(text)")
        }
    }

    @Test("datagrams to a broadcast or multicast address, or not to the local address itself, are refused")
    func broadcastDestinations() {
        var g = DatagramGuard(settings: Self.settings(), now: 0, seed: 1)
        defer { g.deallocate() }
        let source = Self.address("10.0.0.7")
        func decide(_ destination: String, local: String?) -> DropReason? {
            g.decide(source: source, destination: Self.host(destination), localAddress: local.map(Self.host), length: 1, now: 0)
        }
        #expect(decide("255.255.255.255", local: "10.0.0.1") == .broadcastDestination)
        #expect(decide("224.0.0.1", local: "10.0.0.1") == .broadcastDestination)
        // A subnet-directed broadcast: Linux gives ipi_spec_dst = the interface's address, not the destination.
        #expect(decide("10.0.0.255", local: "10.0.0.1") == .broadcastDestination)
        #expect(decide("ff02::1", local: nil) == .broadcastDestination)
        #expect(decide("::ffff:255.255.255.255", local: nil) == .broadcastDestination)
        #expect(decide("10.0.0.1", local: "10.0.0.1") == nil)
        // Queued before IP_PKTINFO was on: no local address to compare with.
        #expect(decide("10.0.0.1", local: "0.0.0.0") == nil)
        #expect(decide("2001:db8::1", local: nil) == nil)
    }

    @Test("a source gets exactly its burst at once, then its rate")
    func sourceBucket() {
        var g = DatagramGuard(settings: Self.settings(sourceRate: 10, sourceBurst: 50), now: 0, seed: 1)
        defer { g.deallocate() }
        let a = Self.address("127.0.0.1")
        let b = Self.address("127.0.0.2")
        var answered = 0
        for _ in 0..<200 where Self.decide(&g, a, now: 5) == nil { answered += 1 }
        #expect(answered == 50)
        #expect(Self.decide(&g, a, now: 5) == .sourceRate)
        #expect(Self.decide(&g, b, now: 5) == nil, "another source has its own bucket")
        // One simulated second later: 10 more.
        answered = 0
        for _ in 0..<200 where Self.decide(&g, a, now: 5 + Self.second) == nil { answered += 1 }
        #expect(answered == 10)
        // A clock that goes backwards adds nothing.
        #expect(Self.decide(&g, a, now: 0) == .sourceRate)
    }

    @Test("the global caps: datagrams per second and bytes per second, whichever comes first")
    func globalCaps() {
        var g = DatagramGuard(settings: Self.settings(sourceBurst: 1_000_000, globalRate: 100, globalBandwidth: 1_000_000), now: 0, seed: 1)
        defer { g.deallocate() }
        var answered = 0
        for i in 0..<1000 where Self.decide(&g, Self.address("127.0.\(i / 250).\(i % 250 + 1)"), length: 1) == nil { answered += 1 }
        #expect(answered == 100)
        var h = DatagramGuard(settings: Self.settings(sourceBurst: 1_000_000, globalRate: 100_000, globalBandwidth: 10_000), now: 0, seed: 1)
        defer { h.deallocate() }
        answered = 0
        for _ in 0..<1000 where Self.decide(&h, Self.address("127.0.0.1"), length: 1000) == nil { answered += 1 }
        #expect(answered == 10)
        #expect(Self.decide(&h, Self.address("127.0.0.1"), length: 0) == nil, "a zero-length datagram costs no byte")
    }

    @Test("the source table stays within its size under a million distinct sources, and evicts the least recently seen")
    func tableBounded() {
        var table = SourceTable(size: 1024, seed: 42)
        defer { table.deallocate() }
        let rate = TokenBucket.Rate(perSecond: 1, burst: 1)
        for i in 0..<1_000_000 {
            let key = HostKey(family: i & 1 == 0 ? .ipv4 : .ipv6, high: UInt64(i), low: UInt64(i) << 7)
            _ = table.take(key, rate, now: Int64(i))
            if i % 100_000 == 0 { #expect(table.count <= table.capacity) }
        }
        #expect(table.capacity == 1024)
        #expect(table.count == table.capacity)
        #expect(table.countInUse() == table.count)

        // Eviction: in a one-set table, a new source replaces the least recently seen one.
        var small = SourceTable(size: SourceTable.ways, seed: 1)
        defer { small.deallocate() }
        let keys = (0..<SourceTable.ways).map { HostKey(family: .ipv4, high: UInt64($0 + 1), low: 0) }
        for (i, key) in keys.enumerated() {
            let fresh = small.take(key, rate, now: Int64(i))
            #expect(fresh)
        }
        for (i, key) in keys.enumerated().dropFirst() {
            let again = small.take(key, rate, now: 100 + Int64(i))
            #expect(!again)
        }
        // keys[0] is the oldest: a newcomer evicts it, so keys[0] comes back full while the others stay empty.
        let newcomer = small.take(HostKey(family: .ipv4, high: 999, low: 0), rate, now: 200)
        #expect(newcomer)
        #expect(small.count == SourceTable.ways)
        let evicted = small.take(keys[0], rate, now: 201)
        let kept = small.take(keys[SourceTable.ways - 1], rate, now: 202)
        #expect(evicted)
        #expect(!kept)
    }

    @Test("the global caps and the table are split between sockets; per-source limits are not")
    func share() {
        let s = Self.settings(globalRate: 100_000, globalBandwidth: 1000, tableSize: 65_536).share(3)
        #expect(s.globalRate == 33_333 && s.globalBandwidth == 333 && s.sourceTableSize == 21_845)
        #expect(s.sourceRate == 1000 && s.sourceBurst == 2000)
        #expect(Self.settings(globalRate: 1, tableSize: 64).share(100).globalRate == 1)
        #expect(Self.settings(tableSize: 64).share(100).sourceTableSize == SourceTable.ways)
    }

    @Test("drop reasons are named as in /metrics")
    func reasonNames() {
        #expect(
            DropReason.allCases.map(\.description) == [
                "reserved_port", "privileged_port", "broadcast_source", "broadcast_destination", "source_rate", "global_rate", "truncated",
                "send_failed",
            ])
    }
}
