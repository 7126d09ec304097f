import CEchodLinux
import Glibc

/// The buffers of one `recvmmsg`/`sendmmsg` round on a UDP socket: `count` receive slots of `slotSize` bytes each,
/// their source addresses and control messages, and as many reply headers, all allocated once at creation (the C
/// side lays them out: `struct mmsghdr` and the `CMSG_*` accessors are not reachable from Swift). Nothing is
/// allocated per datagram. Not thread-safe: one owner, the loop that serves the socket.
package final class DatagramBatch {
    /// Receive slots (datagrams per `recvmmsg`).
    package let count: Int
    /// Bytes per slot: a datagram longer than this arrives truncated (``DatagramInfo/truncated``).
    package let slotSize: Int
    private let batch: OpaquePointer

    /// 65,536 bytes: every UDP payload fits (65,507 over IPv4, 65,527 over IPv6 without jumbograms), so only a
    /// jumbogram could come truncated.
    package static let maximumDatagram = 65_536

    package init(count: Int, slotSize: Int = DatagramBatch.maximumDatagram) throws(IOError) {
        precondition(count > 0 && slotSize > 0)
        guard let batch = echod_dgram_batch_create(UInt32(count), UInt32(slotSize)) else {
            throw IOError("malloc", errno: ENOMEM)
        }
        self.batch = batch
        self.count = count
        self.slotSize = slotSize
    }

    deinit { echod_dgram_batch_destroy(batch) }

    /// `recvmmsg(2)` with `MSG_DONTWAIT` into every slot: the number of datagrams received, 0 when none is waiting
    /// (EAGAIN). EINTR retried. The corresponding C function is `recvmmsg`.
    @inline(__always)
    package func receive(_ fd: Int32) throws(IOError) -> Int {
        while true {
            let n = echod_dgram_recv(fd, batch)
            if n >= 0 { return Int(n) }
            let code = echod_errno()
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return 0 }
            throw IOError("recvmmsg", errno: code)
        }
    }

    /// What slot `index` of the last ``receive(_:)`` holds: its size, source and the pktinfo the kernel gave.
    @inline(__always)
    package func info(_ index: Int) -> DatagramInfo {
        var raw = echod_dgram_info()
        echod_dgram_info(batch, UInt32(index), &raw)
        return DatagramInfo(raw)
    }

    /// The payload of slot `index` (its received length).
    package func payload(_ index: Int, length: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: echod_dgram_data(batch, UInt32(index)), count: length)
    }

    /// Queues slot `index`'s datagram, byte for byte and no longer, as reply number `position` (0-based, each
    /// position at most once per round): to its source, from the local address it arrived at.
    @inline(__always)
    package func queueReply(slot index: Int, at position: Int) {
        echod_dgram_queue_reply(batch, UInt32(index), UInt32(position))
    }

    /// The length of queued reply `position`.
    package func replyLength(_ position: Int) -> Int {
        Int(echod_dgram_reply_length(batch, UInt32(position)))
    }

    /// `sendmmsg(2)` with `MSG_DONTWAIT` of the queued replies `first..<count`: how many went, or `.wouldBlock` when
    /// the socket buffer is full (EAGAIN) before the first of them. EINTR retried. An error is the first unsent
    /// reply's own (e.g. EPERM from a firewall); the caller skips it and sends on. The corresponding C function is
    /// `sendmmsg`.
    @inline(__always)
    package func send(_ fd: Int32, from first: Int, to count: Int) throws(IOError) -> IOResult {
        while true {
            let n = echod_dgram_send(fd, batch, UInt32(first), UInt32(count))
            if n >= 0 { return .processed(Int(n)) }
            let code = echod_errno()
            if code == EINTR { continue }
            if code == EAGAIN || code == EWOULDBLOCK { return .wouldBlock }
            throw IOError("sendmmsg", errno: code)
        }
    }
}

/// One received datagram: its length, whether it was cut short, its source, and where it was sent to.
package struct DatagramInfo: Sendable, Equatable {
    package var length: Int
    /// Longer than the receive slot (MSG_TRUNC): only a part is in the slot.
    package var truncated: Bool
    /// nil when the kernel gave no IPv4/IPv6 source (never expected for UDP).
    package var source: SocketAddress?
    /// The header destination address (pktinfo `ipi_addr` / `ipi6_addr`), nil without pktinfo.
    package var destination: HostKey?
    /// For IPv4 (also IPv4 on an IPv6 socket when the kernel gives IP_PKTINFO): the local address a reply comes
    /// from (`ipi_spec_dst`). Linux sets it to the header destination exactly when that is a local unicast address
    /// (`fib_compute_spec_dst`), and otherwise (a broadcast, subnet-directed broadcast or multicast destination) to
    /// an address of the receiving interface: so `destination != localAddress` means "not sent to me alone".
    package var localAddress: HostKey?

    package init(length: Int, truncated: Bool, source: SocketAddress?, destination: HostKey?, localAddress: HostKey?) {
        self.length = length
        self.truncated = truncated
        self.source = source
        self.destination = destination
        self.localAddress = localAddress
    }

    init(_ raw: echod_dgram_info) {
        var raw = raw
        length = Int(raw.length)
        truncated = raw.truncated != 0
        let (sourceHigh, sourceLow) = withUnsafeBytes(of: &raw.source) { Self.words($0) }
        switch raw.family {
        case AF_INET: source = SocketAddress(family: .ipv4, port: raw.port, high: sourceHigh & 0xFFFF_FFFF, low: 0)
        case AF_INET6: source = SocketAddress(family: .ipv6, port: raw.port, high: sourceHigh, low: sourceLow)
        default: source = nil
        }
        destination = nil
        localAddress = nil
        if raw.has_v4_pktinfo != 0 {
            let d = withUnsafeBytes(of: &raw.v4_destination) { UInt64($0.loadUnaligned(as: UInt32.self)) }
            let l = withUnsafeBytes(of: &raw.v4_local) { UInt64($0.loadUnaligned(as: UInt32.self)) }
            destination = HostKey(family: .ipv4, high: d, low: 0)
            localAddress = HostKey(family: .ipv4, high: l, low: 0)
        } else if raw.has_v6_pktinfo != 0 {
            let (h, l) = withUnsafeBytes(of: &raw.v6_destination) { Self.words($0) }
            destination = HostKey(family: .ipv6, high: h, low: l)
        }
    }

    private static func words(_ bytes: UnsafeRawBufferPointer) -> (UInt64, UInt64) {
        (bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self), bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
    }
}

extension Socket {
    /// Creates a non-blocking UDP socket bound to `address`, with pktinfo on (``enablePacketInfo(_:family:)``).
    /// IPv6 sockets are `IPV6_V6ONLY`, as TCP listeners are, so `[::]:P` and `0.0.0.0:P` can be served side by side.
    package static func datagram(on address: SocketAddress) throws(IOError) -> Int32 {
        let domain = address.family == .ipv4 ? AF_INET : AF_INET6
        let type = Int32(SOCK_DGRAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)
        let fd = try retryingInterrupts("socket") { socket(domain, type, 0) }
        do throws(IOError) {
            if address.family == .ipv6 {
                try setOption(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, 1, "setsockopt(IPV6_V6ONLY)")
            }
            try enablePacketInfo(fd, family: domain)
            let rc = address.withSockAddr { bind(fd, $0, $1) }
            if rc != 0 { throw IOError("bind", errno: echod_errno()) }
            return fd
        } catch {
            Syscall.close(fd)
            throw error
        }
    }

    /// Asks the kernel for each datagram's destination address (IP_PKTINFO; IPV6_RECVPKTINFO on IPv6 sockets), which
    /// the reply must come from and which tells a broadcast apart. On an IPv6 socket IP_PKTINFO is asked for too,
    /// best effort: a dual-stack socket (systemd's default for `ListenDatagram=[::]:P`) then also says where IPv4
    /// datagrams were sent, broadcasts included.
    package static func enablePacketInfo(_ fd: Int32, family: Int32) throws(IOError) {
        if family == AF_INET6 {
            try setOption(fd, Int32(IPPROTO_IPV6), IPV6_RECVPKTINFO, 1, "setsockopt(IPV6_RECVPKTINFO)")
            try? setOption(fd, Int32(IPPROTO_IP), IP_PKTINFO, 1, "setsockopt(IP_PKTINFO)")
        } else {
            try setOption(fd, Int32(IPPROTO_IP), IP_PKTINFO, 1, "setsockopt(IP_PKTINFO)")
        }
    }

    /// The address family of a socket (`SO_DOMAIN`).
    package static func family(_ fd: Int32) throws(IOError) -> Int32 {
        try Syscall.socketOption(fd, SOL_SOCKET, SO_DOMAIN, "getsockopt(SO_DOMAIN)")
    }
}
