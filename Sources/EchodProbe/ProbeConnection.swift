import EchodSystem
import EchodText
import Glibc

/// Why a probe step failed, as the sentence the result reports.
struct ProbeFailure: Error {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}

/// A connected, non-blocking TCP or Unix stream socket of the probe, with the address it reached (`127.0.0.1:7`,
/// `unix:/run/echod/echo.sock`). Blocking waits are `poll`s bounded by the probe's deadline; every call goes through
/// ``Syscall``, which retries EINTR.
struct ProbeConnection {
    let fd: Int32
    let address: String

    init(fd: Int32, address: SocketAddress) {
        self.fd = fd
        self.address = address.description
    }

    init(fd: Int32, address: String) {
        self.fd = fd
        self.address = address
    }

    /// Connects to a Unix socket. A Unix connect completes at once or fails (refused: nothing listens; no such file;
    /// permission denied: the socket file's mode; the backlog full), so there is nothing to wait for.
    static func open(unix path: UnixPath) -> Result<ProbeConnection, ProbeFailure> {
        do throws(IOError) {
            let address = try UnixSocketAddress(name: path.path, isAbstract: path.isAbstract)
            let attempt = try Socket.connect(unix: address)
            return .success(ProbeConnection(fd: attempt.fd, address: path.description))
        } catch {
            return .failure(ProbeFailure("cannot connect: \(path): \(errorText(error))"))
        }
    }

    /// Resolves `host` (``Resolver/addresses(host:port:)``) and tries each address in turn until one accepts or
    /// the deadline passes. The failure lists what each address answered.
    static func open(host: String, port: UInt16, deadline: Deadline) -> Result<ProbeConnection, ProbeFailure> {
        let addresses: [SocketAddress]
        do throws(Resolver.Failure) {
            addresses = try Resolver.addresses(host: host, port: port)
        } catch {
            return .failure(ProbeFailure(error.description))
        }
        var errors: [String] = []
        for address in addresses {
            guard deadline.remainingMilliseconds != nil else {
                errors.append("\(address): timed out")
                break
            }
            let attempt: (fd: Int32, connected: Bool)
            do throws(IOError) {
                attempt = try Socket.connect(to: address)
            } catch {
                errors.append("\(address): \(errorText(error))")
                continue
            }
            if attempt.connected { return .success(ProbeConnection(fd: attempt.fd, address: address)) }
            // Writable, or POLLERR/POLLHUP: the pending error below says which. 0 is a timeout or an interrupt.
            var events: Int16 = 0
            var failure: IOError?
            while events == 0, failure == nil, let wait = deadline.remainingMilliseconds {
                do throws(IOError) {
                    events = try Syscall.poll(attempt.fd, events: Int16(POLLOUT), timeoutMilliseconds: wait)
                } catch {
                    failure = error
                }
            }
            if let error = failure ?? (events == 0 ? nil : Socket.pendingError(attempt.fd)) {
                Syscall.close(attempt.fd)
                errors.append("\(address): \(errorText(error))")
                continue
            }
            if events == 0 {
                Syscall.close(attempt.fd)
                errors.append("\(address): timed out")
                continue
            }
            return .success(ProbeConnection(fd: attempt.fd, address: address))
        }
        return .failure(ProbeFailure("cannot connect: " + errors.joined(separator: "; ")))
    }

    func close() { Syscall.close(fd) }

    /// Waits until the socket is readable (always asked) or, with `write`, writable; returns the poll events
    /// (0 when interrupted: ask again), or nil when the deadline passed.
    func wait(write: Bool, until deadline: Deadline) throws(IOError) -> Int16? {
        guard let milliseconds = deadline.remainingMilliseconds else { return nil }
        let events = Int16(POLLIN) | (write ? Int16(POLLOUT) : 0)
        return try Syscall.poll(fd, events: events, timeoutMilliseconds: milliseconds)
    }

    /// Sends from `bytes[offset...]`; returns how many went out (0 when the socket buffer is full).
    func send(_ bytes: [UInt8], from offset: Int) throws(IOError) -> Int {
        let result = try bytes.withUnsafeBufferPointer { (raw) throws(IOError) -> IOResult in
            try Syscall.send(fd, raw.baseAddress! + offset, raw.count - offset)
        }
        guard case .processed(let n) = result else { return 0 }
        return n
    }

    /// Reads at most `limit` bytes into the front of `buffer`; 0 at end of stream, nil when nothing is there yet.
    func receive(into buffer: inout [UInt8], limit: Int) throws(IOError) -> Int? {
        let result = try buffer.withUnsafeMutableBufferPointer { (raw) throws(IOError) -> IOResult in
            try Syscall.read(fd, raw.baseAddress!, min(limit, raw.count))
        }
        guard case .processed(let n) = result else { return nil }
        return n
    }
}

/// The errno as the probe's one-line messages say it: `Connection refused`.
func errorText(_ error: IOError) -> String {
    error.message
}

/// Events of ``ProbeConnection/wait(write:until:)`` that mean "read now": data, end of stream, or an error the
/// read will report.
let readableEvents = Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)
