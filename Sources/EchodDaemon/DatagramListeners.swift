import EchodAdmin
import EchodConfig
import EchodEcho
import EchodEventLoop
import EchodSystem
import EchodSystemd
import Glibc
import Logging

/// A UDP socket echod serves (bound for `udp.listen`, or passed by systemd), and the one loop that serves it.
///
/// One socket, one loop (assigned round-robin over the workers): the loop owns the socket's guard outright, so its
/// per-source buckets are exact with no lock. Several loops reading one socket would split a source's datagrams
/// between tables. The global caps and the table size are split evenly between the sockets
/// (``DatagramGuard/Settings/share(_:)``).
struct DatagramListener: Sendable {
    let fd: Int32
    let address: SocketAddress?
    let passed: Bool
    /// The configured address (nil for passed sockets), to diff on reload.
    let configured: ListenAddress?
    /// Index of the worker whose loop serves it.
    var worker = 0

    var label: String {
        let place = "udp " + (address?.description ?? "fd \(fd)")
        return passed ? "\(place) (from systemd)" : place
    }
}

enum DatagramListeners {
    /// Binds a UDP socket for each address; all or nothing, except IPv6 on a host without it (skipped, as for TCP:
    /// ``Listeners/bind(_:)`` says why).
    static func bind(_ addresses: [ListenAddress]) throws(ListenerError) -> (bound: [DatagramListener], skipped: [Listeners.Skipped]) {
        var bound: [DatagramListener] = []
        var skipped: [Listeners.Skipped] = []
        for address in addresses {
            guard let socketAddress = SocketAddress(host: address.host, port: address.port) else {
                for l in bound { Syscall.close(l.fd) }
                throw ListenerError(description: "udp.listen \(address): not a numeric address")
            }
            do throws(IOError) {
                let fd = try Socket.datagram(on: socketAddress)
                bound.append(DatagramListener(fd: fd, address: socketAddress, passed: false, configured: address))
            } catch {
                let noIPv6 =
                    address.family == .ipv6
                    && (error.errno == EAFNOSUPPORT || (error.errno == EADDRNOTAVAIL && address.host == "::1"))
                if noIPv6 {
                    skipped.append(Listeners.Skipped(address: address, error: error))
                    continue
                }
                for l in bound { Syscall.close(l.fd) }
                throw ListenerError(description: "udp.listen \(address): \(error)")
            }
        }
        return (bound, skipped)
    }

    /// The datagram sockets among those systemd passed, validated (``SocketActivation/validateDatagram(_:)``), with
    /// pktinfo turned on: the one option echod sets on a passed socket, because a reply must come from the address
    /// its request was sent to; it changes nothing for systemd or a later instance.
    static func fromSystemd(_ passed: [PassedSocket]) throws(ListenerError) -> [DatagramListener] {
        var result: [DatagramListener] = []
        for socket in passed where SocketActivation.isDatagram(socket) {
            if let problem = SocketActivation.validateDatagram(socket) {
                throw ListenerError(description: "socket passed by systemd: \(problem)")
            }
            do throws(IOError) {
                try Socket.enablePacketInfo(socket.fd, family: try Socket.family(socket.fd))
            } catch {
                throw ListenerError(description: "socket passed by systemd: fd \(socket.fd) (\"udp\"): \(error)")
            }
            Socket.prepareInherited(socket.fd)
            result.append(DatagramListener(fd: socket.fd, address: Socket.localAddress(socket.fd), passed: true, configured: nil))
        }
        return result
    }
}

extension Daemon {
    /// The guard settings of `udp.*`, whole (before ``DatagramGuard/Settings/share(_:)``).
    static func datagramSettings(_ s: EchodSettings) -> DatagramGuard.Settings {
        DatagramGuard.Settings(
            minSourcePort: s.udpMinSourcePort, sourceRate: s.udpSourceRate, sourceBurst: s.udpSourceBurst,
            globalRate: s.udpGlobalRate, globalBandwidth: s.udpGlobalBandwidth, sourceTableSize: s.udpSourceTableSize)
    }

    /// At start, after the TCP listeners: the UDP sockets systemd passed, else those of `udp.listen`, bound before
    /// privileges are dropped; each assigned a worker round-robin.
    func openDatagramListeners(_ settings: EchodSettings, passed: [PassedSocket]) throws(StartError) {
        do {
            if socketActivated {
                datagramListeners = try DatagramListeners.fromSystemd(passed)
            } else {
                let (bound, skipped) = try DatagramListeners.bind(settings.udpListen)
                logSkipped(skipped)
                datagramListeners = bound
            }
        } catch {
            throw StartError(description: error.description)
        }
        for i in datagramListeners.indices { datagramListeners[i].worker = nextDatagramWorker(settings.threads) }
    }

    private func nextDatagramWorker(_ threads: Int) -> Int {
        defer { datagramRoundRobin &+= 1 }
        return datagramRoundRobin % max(1, threads)
    }

    /// The UDP sockets worker `index` serves.
    func datagramFDs(forWorker index: Int) -> [Int32] {
        datagramListeners.filter { $0.worker == index }.map(\.fd)
    }

    /// Reload, step 1: binds the UDP addresses added to `udp.listen` (nothing else changes yet; all or nothing).
    func bindAddedDatagramListeners(old: EchodSettings, new: EchodSettings) throws(StartError) -> [DatagramListener] {
        guard new.udpListen != old.udpListen else { return [] }
        if socketActivated {
            logger.notice("udp.listen changed in the file, but the sockets come from systemd: change the .socket unit instead")
            return []
        }
        let current = Set(datagramListeners.compactMap(\.configured))
        do {
            let (bound, skipped) = try DatagramListeners.bind(new.udpListen.filter { !current.contains($0) })
            logSkipped(skipped)
            return bound
        } catch {
            throw StartError(description: error.description)
        }
    }

    /// Reload, step 2: serves the added sockets, stops and closes the removed ones, and gives every socket its share
    /// of the new guard settings (on its own loop).
    func changeDatagramListeners(added: [DatagramListener], new: EchodSettings) {
        let wanted = Set(new.udpListen)
        let removed = socketActivated ? [] : datagramListeners.filter { $0.configured.map { !wanted.contains($0) } ?? false }
        for l in removed {
            let w = workers[l.worker]
            let fd = l.fd
            w.loop.execute { [unowned self] in
                w.removeDatagram(fd)
                self.control.execute { Syscall.close(fd) }
            }
            logger.info("stopped serving UDP echo", metadata: ["address": .string(l.label)])
        }
        datagramListeners.removeAll { l in removed.contains { $0.fd == l.fd } }
        for var l in added {
            l.worker = nextDatagramWorker(workers.count)
            datagramListeners.append(l)
        }
        let share = Self.datagramSettings(new).share(datagramListeners.count)
        let logger = Logger(label: "echod.udp")
        for l in datagramListeners {
            let w = workers[l.worker]
            let fd = l.fd
            let isNew = added.contains { $0.fd == fd }
            w.loop.execute { [unowned self] in
                if !isNew {
                    w.datagrams[fd]?.apply(share)
                    return
                }
                do throws(IOError) { try w.addDatagram(fd, settings: share, logger: logger) } catch {
                    self.logger.error("cannot serve UDP echo on a new socket", metadata: ["error": .stringConvertible(error)])
                }
            }
        }
        for l in added { logger.info("serving UDP echo", metadata: ["address": .string(l.label), "loop": .stringConvertible(l.worker)]) }
    }

    /// Closes every UDP socket (the loops have stopped serving them: drain or shutdown).
    func closeDatagramListeners() {
        for l in datagramListeners { Syscall.close(l.fd) }
        datagramListeners.removeAll()
    }

    /// The UDP counters of every loop, summed, into a metrics snapshot.
    func addDatagramMetrics(_ s: inout MetricsSnapshot.Datagrams) {
        for w in workers {
            let stats = w.datagramStats
            s.received &+= stats.received.load
            s.sent &+= stats.sent.load
            s.bytesReceived &+= stats.bytesReceived.load
            s.bytesSent &+= stats.bytesSent.load
            for reason in DropReason.allCases { s.dropped[reason.description, default: 0] &+= stats.dropped(reason) }
        }
    }
}

extension Worker {
    /// On the loop thread: starts serving UDP echo on `fd`.
    func addDatagram(_ fd: Int32, settings: DatagramGuard.Settings, logger: Logger) throws(IOError) {
        guard datagrams[fd] == nil else { return }
        let echo = try DatagramEcho(loop: loop, fd: fd, settings: settings, stats: datagramStats, logger: logger)
        try echo.start()
        datagrams[fd] = echo
    }

    /// On the loop thread: stops serving UDP echo on `fd` (the caller closes it).
    func removeDatagram(_ fd: Int32) {
        datagrams.removeValue(forKey: fd)?.stop()
    }

    /// On the loop thread: stops serving every UDP socket.
    func removeAllDatagrams() {
        for d in datagrams.values { d.stop() }
        datagrams.removeAll()
    }
}
