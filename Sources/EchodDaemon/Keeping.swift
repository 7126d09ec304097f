import EchodConfig
import EchodEcho
import EchodEventLoop
import EchodSystem
import EchodSystemd
import Glibc
import Logging

/// Keeping established connections across restarts (`restart.keep_connections`), through systemd's fd store:
///
/// - While serving, every loop puts its connections in the store, each under a name of its own
///   (``FDStoreName``), and takes them out when it closes them (``Worker+Keeping.swift``); the listeners echod bound
///   itself go in too, so that new clients wait in the backlog during a restart instead of being refused.
/// - SIGTERM: is a restart of the unit queued? The unit's stop hook (`echod stop-hook`, ``StopJobNote``) has asked
///   systemd just before; without its note echod asks the bus itself, and when nothing answers it guesses yes
///   (``restartQueued()`` says why). At a restart it hands over: no more accepting, each connection's pending echo
///   written as far as the peer takes it, every connection's state (``ConnectionSnapshot``) written to a sealed memfd
///   stored as `echod-state`, and exit without closing anything the store holds. At a stop (or a SIGTERM with no job)
///   it drains as without this feature: the store is dropped with the stopped unit.
/// - Start-up: the store comes back with the sockets of `sd_listen_fds_with_names`. Every fd is checked (a connected
///   stream socket whose inode is the one its name says, a listening socket, a memfd) and anything else is closed,
///   logged and taken out of the store. Connections are spread over the loops round robin (the number of loops may
///   have changed) and taken over with their state, or after a crash (no state) with what the socket says.
///
/// What a crash keeps: every connection, and every byte still in the kernel's buffers. What it cannot keep: bytes
/// echod had read and not yet written back (a slow reader's pending echo, or the one read in flight), and connections
/// accepted within ``Worker/keepInterval`` of the crash, which were not in the store yet.
struct Keeping {
    /// Keeping is on: the configuration asks for it and there is a store to keep in.
    var active = false
    /// A handover has begun: closing listeners must leave them in the store.
    var handingOver = false
}

/// A connection from the store, for one loop to take over.
struct TakeOver: @unchecked Sendable {
    var fd: Int32
    var peer: SocketAddress
    var policy: UInt16
    var snapshot: ConnectionSnapshot?
}

/// What systemd passed at start-up, sorted: the sockets of `.socket` units, and the fd store's entries by name.
struct PassedFDs {
    var activation: [PassedSocket] = []
    var listeners: [(fd: Int32, identity: UInt64)] = []
    var connections: [(fd: Int32, identity: UInt64)] = []
    var state: Int32?

    init(_ passed: [PassedSocket]) {
        for socket in passed {
            switch FDStoreName.parse(socket.name) {
            case .connection(let inode): connections.append((socket.fd, inode))
            case .listener(let inode): listeners.append((socket.fd, inode))
            case .state:
                if let previous = state { Syscall.close(previous) }
                state = socket.fd
            case nil: activation.append(socket)
            }
        }
    }
}

extension Daemon {
    /// How long SIGTERM waits for systemd to say whether a restart is queued.
    static let busTimeout: Duration = .seconds(1)
    /// How long a handover waits for the store to take every connection.
    static let handoverTimeout: Duration = .seconds(5)

    /// Start-up, before any loop runs: decides whether keeping is on (the key, NOTIFY_SOCKET, and the unit's
    /// `FileDescriptorStoreMax=`), and says once when it cannot be.
    func decideKeeping(_ settings: EchodSettings) -> Bool {
        guard settings.keepConnections else { return false }
        guard SystemdNotifier(environment: options.environment).isEnabled else {
            logger.notice("restart.keep_connections is on, but echod was not started by systemd (no NOTIFY_SOCKET): connections will not survive a restart")
            return false
        }
        switch SystemdBus.ownUnitFDStoreMax(timeout: Self.busTimeout) {
        case .success(0):
            logger.warning(
                "restart.keep_connections is on, but the unit has no fd store (FileDescriptorStoreMax=0): connections will not survive a restart")
            return false
        case .success(let max):
            let needed = settings.maxConnections + settings.listen.count + 1
            if Int(max) < needed {
                logger.notice(
                    "FileDescriptorStoreMax= is below limits.max_connections + listeners + 1: connections beyond it will not survive a restart",
                    metadata: ["file_descriptor_store_max": .stringConvertible(max), "needed": .stringConvertible(needed)])
            }
        case .failure(let error):
            // The usual case under the shipped unit: a DynamicUser= service cannot use the system bus (StopJobNote).
            logger.info(
                "cannot ask systemd for FileDescriptorStoreMax= (the system bus does not answer this service): assuming the unit keeps a store",
                metadata: ["error": .stringConvertible(error)])
        }
        return true
    }

    /// Reads the previous instance's state (an orderly restart), checks every connection and listener the store gave
    /// back, and sorts the connections over `loops` loops. Anything not usable is closed, logged and taken out of the
    /// store. Call after the listeners are known and their policies assigned.
    func prepareTakeOver(_ passed: PassedFDs, loops: Int, keep: Bool) -> [[TakeOver]] {
        let notifier = SystemdNotifier(environment: options.environment)
        var snapshots: [UInt64: ConnectionSnapshot] = [:]
        if let state = passed.state {
            for s in readState(state) { snapshots[s.inode] = s }
            Syscall.close(state)
            notifier.send("FDSTOREREMOVE=1\nFDNAME=\(FDStoreName.state)")
        }
        var result = [[TakeOver]](repeating: [], count: max(loops, 1))
        var next = 0
        var refused = 0
        for (fd, identity) in passed.connections {
            let name = FDStoreName.connection(inode: identity)
            func refuse(_ problem: String) {
                logger.warning(
                    "fd store: not a connection echod can take over: closed",
                    metadata: ["fd": .stringConvertible(fd), "name": .string(name), "problem": .string(problem)])
                Syscall.close(fd)
                notifier.send("FDSTOREREMOVE=1\nFDNAME=\(name)")
                refused += 1
            }
            if let problem = SocketActivation.validateConnection(PassedSocket(fd: fd, name: name)) {
                refuse(problem)
                continue
            }
            guard EchoService.identity(of: fd) == identity else {
                refuse("the socket's inode is not the one its name says")
                continue
            }
            guard let peer = Socket.connectedPeer(of: fd) else {
                // Closed while no echod ran (or by a crashed one, which shut it down without taking it out): not an
                // error, only a close to finish.
                logger.debug("fd store: a kept connection closed meanwhile", metadata: ["name": .string(name)])
                Syscall.close(fd)
                notifier.send("FDSTOREREMOVE=1\nFDNAME=\(name)")
                refused += 1
                continue
            }
            Socket.prepareInherited(fd)
            if !keep { notifier.send("FDSTOREREMOVE=1\nFDNAME=\(name)") }
            result[next].append(TakeOver(fd: fd, peer: peer, policy: policyIndex(ofConnection: fd), snapshot: snapshots[identity]))
            next = (next + 1) % result.count
        }
        let taken = passed.connections.count - refused
        if taken > 0 || !snapshots.isEmpty {
            let stated = result.joined().filter { $0.snapshot != nil }.count
            logger.info(
                keep
                    ? "taking over connections from the previous instance"
                    : "taking over connections from the previous instance (restart.keep_connections is now off: they will not survive the next restart)",
                metadata: [
                    "connections": .stringConvertible(taken), "with_state": .stringConvertible(stated),
                    "loops": .stringConvertible(result.count),
                ])
        }
        return result
    }

    /// The memfd's handover state; empty (logged) when it cannot be read or is not valid.
    private func readState(_ fd: Int32) -> [ConnectionSnapshot] {
        if let problem = SocketActivation.validateMemfd(PassedSocket(fd: fd, name: FDStoreName.state)) {
            logger.error("fd store: the handover state is not a memfd: ignored", metadata: ["problem": .string(problem)])
            return []
        }
        do throws(IOError) {
            let bytes = try Syscall.readWholeFile(fd, limit: Self.maxStateBytes)
            guard let bytes else {
                logger.error("fd store: the handover state is too large: ignored")
                return []
            }
            let decoded = bytes.withUnsafeBytes { raw in
                Result { () throws(HandoverStateError) in try HandoverState.decode(raw, maxPending: Self.maxStatePending) }
            }
            switch decoded {
            case .success(let snapshots):
                return snapshots
            case .failure(let error):
                logger.error(
                    "fd store: the handover state is not valid: connections are taken over without it", metadata: ["error": .stringConvertible(error)])
                return []
            }
        } catch {
            logger.error("fd store: cannot read the handover state", metadata: ["error": .stringConvertible(error)])
            return []
        }
    }

    /// Bounds on the state a previous instance may hand over: `max_pending_bytes`'s own bound per connection, and
    /// `limits.max_connections`' bound of such connections would be far beyond memory; 4 GiB in all is the cap.
    static let maxStatePending = 1 << 30
    static let maxStateBytes = 1 << 32

    /// The policy of the listener a connection was accepted on: the one whose address is the connection's local
    /// address, or a wildcard listener on its port; plain echo (index 0) when no listener serves it any more.
    private func policyIndex(ofConnection fd: Int32) -> UInt16 {
        let echo = listeners.filter { $0.role == .echo }
        if let unix = UnixSocketAddress.local(of: fd)?.displayName {
            return echo.first { $0.unixName == unix }?.policyIndex ?? 0
        }
        guard let local = Socket.localAddress(fd) else { return 0 }
        if let exact = echo.first(where: { $0.address == local }) { return exact.policyIndex }
        let wildcard = echo.first { l in
            guard let a = l.address else { return false }
            return a.port == local.port && a.family == local.family && a.high == 0 && a.low == 0
        }
        return wildcard?.policyIndex ?? 0
    }

    /// Puts the listeners echod bound itself (IP ones: a Unix socket file is made again at start) in the store, those
    /// not there yet. Control loop.
    func storeListeners() {
        guard keeping.active, !socketActivated, let channel = try? FDStoreChannel(environment: options.environment) else { return }
        defer { channel.close() }
        for i in listeners.indices where listeners[i].role == .echo && listeners[i].address != nil && listeners[i].keptIdentity == nil {
            guard let identity = EchoService.identity(of: listeners[i].fd) else { continue }
            if sendBlocking(channel, { channel.store(listeners[i].fd, name: FDStoreName.listener(inode: identity)) }) {
                listeners[i].keptIdentity = identity
            }
        }
    }

    /// Takes a listener out of the store (it is closed: a reload removed its address, or keeping was switched off).
    func releaseListener(_ listener: Listener) {
        guard let identity = listener.keptIdentity, !keeping.handingOver else { return }
        SystemdNotifier(environment: options.environment).send("FDSTOREREMOVE=1\nFDNAME=\(FDStoreName.listener(inode: identity))")
    }

    /// The listeners from the store that no configured address uses: closed and taken out of it.
    func releaseUnusedListeners(_ unused: [(fd: Int32, identity: UInt64)]) {
        let notifier = SystemdNotifier(environment: options.environment)
        for l in unused {
            Syscall.close(l.fd)
            notifier.send("FDSTOREREMOVE=1\nFDNAME=\(FDStoreName.listener(inode: l.identity))")
        }
    }

    private func sendBlocking(_ channel: FDStoreChannel, _ message: () -> FDStoreSend) -> Bool {
        let deadline = Syscall.monotonicNanoseconds() + Self.handoverTimeout.nanoseconds
        while true {
            switch message() {
            case .sent: return true
            case .failed(let error):
                logger.warning("systemd's fd store refused a message", metadata: ["error": .stringConvertible(error)])
                return false
            case .wouldBlock:
                let left = deadline - Syscall.monotonicNanoseconds()
                guard left > 0, channel.waitWritable(timeout: .nanoseconds(left)) else { return false }
            }
        }
    }

    /// Reload: keeping switched on or off.
    func applyKeeping(old: EchodSettings, new settings: EchodSettings) {
        guard old.keepConnections != settings.keepConnections else { return }
        let on = decideKeeping(settings)
        guard on != keeping.active else { return }
        keeping.active = on
        let environment = options.environment
        for w in workers { w.loop.execute { w.setKeeping(on, environment: environment) } }
        if on {
            storeListeners()
        } else {
            for i in listeners.indices where listeners[i].keptIdentity != nil {
                releaseListener(listeners[i])
                listeners[i].keptIdentity = nil
            }
        }
    }

    // MARK: SIGTERM

    /// The job types of a restart (systemd's `JobType`; `try-restart` and `reload-or-restart` usually show as
    /// `restart` once queued).
    static let restartJobs: Set<String> = ["restart", "try-restart", "reload-or-restart"]

    /// `echod stop-hook`, the unit's `ExecStop=+`: asks systemd (as root, which can use the bus) whether this stop is
    /// a restart, and leaves the answer for the SIGTERM that follows (``StopJobNote``). Never fails the stop: a
    /// question without an answer is reported on stderr (the journal) and echod then guesses (``restartQueued()``).
    package static func stopHook(environment: [String: String]) -> Int32 {
        switch SystemdBus.ownUnitJobType(timeout: .seconds(2)) {
        case .success(let job):
            do throws(IOError) {
                try StopJobNote.write(job, environment: environment)
                let outcome = job.map(restartJobs.contains) == true ? "connections are handed over" : "connections are drained"
                writeStderr("echod stop-hook: job \(job ?? "none"): \(outcome)\n")
            } catch {
                writeStderr("echod stop-hook: cannot leave the answer (\(job ?? "none")) for echod: \(error)\n")
            }
        case .failure(let error):
            writeStderr("echod stop-hook: cannot ask systemd whether this is a restart: \(error)\n")
        }
        return ExitStatus.success
    }

    /// Whether this SIGTERM is a restart to hand over to: keeping is on and systemd has a restart of this unit
    /// queued, or cannot be asked. Logs the answer (a drain follows a no), or why there is none.
    func restartQueued() -> Bool {
        guard keeping.active else { return false }
        // The unit's stop hook has asked already (as root: this process may not reach the bus, ``StopJobNote``).
        if let job = StopJobNote.read(environment: options.environment) {
            if Self.restartJobs.contains(job) { return true }
            logger.info("no restart queued: draining; kept connections close with the unit", metadata: ["job": .string(job)])
            return false
        }
        switch SystemdBus.ownUnitJobType(timeout: Self.busTimeout) {
        case .success(let job?) where Self.restartJobs.contains(job):
            return true
        case .success(let job):
            logger.info("no restart queued: draining; kept connections close with the unit", metadata: ["job": .string(job ?? "none")])
            return false
        case .failure(let error):
            // Handing over is the safe guess: at a restart the connections live on; at a stop systemd drops the store
            // with the unit, and the clients see the close then (their echo written as far as they read it). A drain
            // at a restart would close every connection.
            logger.warning(
                "cannot tell a restart from a stop (asking systemd failed): handing connections over; at a stop, systemd closes them",
                metadata: ["error": .stringConvertible(error)])
            return true
        }
    }

    /// An orderly restart: every loop stops accepting, puts its connections in the store and hands their state over;
    /// then the state goes into the store and the process stops, closing nothing the store holds.
    func handOver(signal name: String) {
        let open = limiter.openConnections
        logger.info(
            "restart queued: handing connections over to the next instance",
            metadata: ["signal": .string(name), "connections": .stringConvertible(open)])
        keeping.handingOver = true
        lifecycle.handingOver(connections: open)
        watchdog?.stop()
        let deadline = Syscall.monotonicNanoseconds() + Self.handoverTimeout.nanoseconds
        let control = self.control
        let collected = SnapshotBox()
        whenAllLoops({ w in
            w.removeAllAcceptors()
            let snapshots = w.handOver(deadline: deadline)
            w.service?.shutdown()
            w.loop.stop()
            control.execute { collected.snapshots += snapshots }
        }) { [unowned self] in
            self.storeState(collected.snapshots)
            self.stopAdmin()
            self.control.stop()
        }
    }

    /// Writes the connections' state to a sealed memfd and puts it in the store as `echod-state`.
    private func storeState(_ snapshots: [ConnectionSnapshot]) {
        let bytes = HandoverState.encode(snapshots)
        do throws(IOError) {
            let fd = try Syscall.memfdCreate(name: FDStoreName.state)
            defer { Syscall.close(fd) }
            if case .failed(let error) = bytes.withUnsafeBytes({ Syscall.writeAll(fd, $0) }) { throw error }
            try Syscall.sealAll(fd)
            guard let channel = try FDStoreChannel(environment: options.environment) else { return }
            defer { channel.close() }
            if sendBlocking(channel, { channel.store(fd, name: FDStoreName.state) }) {
                logger.info(
                    "handed connections over to the next instance",
                    metadata: [
                        "connections": .stringConvertible(snapshots.count), "state_bytes": .stringConvertible(bytes.count),
                        "pending_bytes": .stringConvertible(snapshots.reduce(0) { $0 + $1.pending.count }),
                    ])
            }
        } catch {
            logger.error(
                "cannot hand the connections' state over: the next instance takes them over as after a crash",
                metadata: ["error": .stringConvertible(error)])
        }
    }
}

/// The snapshots the loops hand over, collected on the control loop.
private final class SnapshotBox: @unchecked Sendable {
    var snapshots: [ConnectionSnapshot] = []
}
