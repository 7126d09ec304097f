import EchodSystem
import Glibc

/// The outcome of one fd-store message.
package enum FDStoreSend: Equatable, Sendable {
    /// The whole message (and its descriptor) is in systemd's queue.
    case sent
    /// systemd's queue is full (or the channel's send buffer is): nothing was sent; wait with
    /// ``FDStoreChannel/waitWritable(timeout:)`` and send it again.
    case wouldBlock
    /// Not sent, and trying again will not help: the receiver is gone (ECONNREFUSED), the descriptor to store is
    /// not open (EBADF), the name is not one systemd accepts (EINVAL, see ``FDStoreChannel/store(_:name:)``).
    case failed(IOError)
}

/// The names echod gives the descriptors it keeps in systemd's fd store (`FDNAME=`), and the parser that tells
/// them apart when `sd_listen_fds_with_names` hands them back.
package enum FDStoreName {
    /// What a stored name says the descriptor is.
    package enum Kind: Equatable, Sendable {
        /// An established connection; the number is its socket's inode (``Syscall/inode(of:)``).
        case connection(inode: UInt64)
        /// A listening socket echod bound itself (a socket-activated one is systemd's already); the number is its
        /// inode, so that one listener a reload closes can be taken out alone.
        case listener(inode: UInt64)
        /// The sealed memfd with the handover state of an orderly restart.
        case state
    }

    /// A listening socket echod bound itself: `echod-listen-<inode>`.
    package static let listenerPrefix = "echod-listen-"
    /// The handover state memfd.
    package static let state = "echod-state"
    /// One name per connection: `FDSTOREREMOVE=1` removes every descriptor with the name it is given, so the inode
    /// (unique while the socket lives) keeps one connection's removal from taking others along.
    package static let connectionPrefix = "echod-conn-"

    /// `echod-conn-<inode>`, the inode in decimal.
    package static func connection(inode: UInt64) -> String {
        connectionPrefix + String(inode)
    }

    /// `echod-listen-<inode>`, the inode in decimal.
    package static func listener(inode: UInt64) -> String {
        listenerPrefix + String(inode)
    }

    /// The kind of a stored name, nil for any name echod does not give (another program's, or a malformed one).
    /// Strict: an inode is ASCII decimal digits without sign or leading zero that fit in 64 bits, so that each inode
    /// has exactly one name.
    package static func parse(_ name: String) -> Kind? {
        if name == state { return .state }
        if let inode = number(in: name, after: connectionPrefix) { return .connection(inode: inode) }
        if let inode = number(in: name, after: listenerPrefix) { return .listener(inode: inode) }
        return nil
    }

    private static func number(in name: String, after prefix: String) -> UInt64? {
        var utf8 = Substring(name).utf8
        guard utf8.starts(with: prefix.utf8) else { return nil }
        utf8.removeFirst(prefix.utf8.count)
        guard let first = utf8.first, first != UInt8(ascii: "0") || utf8.count == 1 else { return nil }
        var inode: UInt64 = 0
        for byte in utf8 {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow) = inode.multipliedReportingOverflow(by: 10)
            let (sum, overflowAgain) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            if overflow || overflowAgain { return nil }
            inode = sum
        }
        return inode
    }

    /// Whether systemd accepts `name` as `FDNAME=`: 1 to 255 printable ASCII characters, no `:` (the separator of
    /// `LISTEN_FDNAMES`). That also keeps a newline from starting another assignment in the message.
    package static func isValid(_ name: String) -> Bool {
        let utf8 = name.utf8
        return (1...255).contains(utf8.count)
            && utf8.allSatisfy { $0 >= 0x20 && $0 <= 0x7E && $0 != UInt8(ascii: ":") }
    }
}

/// Puts descriptors into systemd's fd store and takes them out again (`sd_pid_notify_with_fds(3)`: `FDSTORE=1`,
/// `FDSTOREREMOVE=1`), so that they outlive this process and come back to the next instance of the service.
///
/// Speaks the notification protocol itself, as ``SystemdNotifier`` does and for the same reasons: one datagram to
/// the `NOTIFY_SOCKET` address, here with the descriptor attached as `SCM_RIGHTS` (`sendmsg`), no libsystemd.
/// Unlike the notifier, the channel keeps one non-blocking socket, connected to `NOTIFY_SOCKET`: a message per
/// connection must not cost a socket, and a connected AF_UNIX datagram socket is what lets `poll` say when systemd's
/// queue has room again (``waitWritable(timeout:)``; an unconnected one always looks writable). A full queue is
/// ``FDStoreSend/wouldBlock``, never a wait: the caller batches and retries off its hot path.
///
/// systemd keeps a stored descriptor only if the unit allows it (`FileDescriptorStoreMax=` above 0, and below that
/// many already stored), and says nothing back when it drops one: ``FDStoreSend/sent`` means handed to systemd, not
/// kept. The messages are built in a stack buffer: nothing is allocated per message.
///
/// Not thread-safe: one thread at a time uses it (hence `@unchecked Sendable`, so that it can be handed to that
/// thread).
package final class FDStoreChannel: @unchecked Sendable {
    /// The connected datagram socket; -1 once closed.
    private var socket: Int32

    /// A channel to `environment["NOTIFY_SOCKET"]`; nil when that is unset or not an address the notifier would use
    /// (``SystemdNotifier/init(environment:)``). Throws when the socket cannot be made or connected (nothing
    /// receives at the address: ECONNREFUSED or ENOENT).
    package init?(environment: [String: String]) throws(IOError) {
        guard let address = environment["NOTIFY_SOCKET"].flatMap(NotifyAddress.init) else { return nil }
        let type = Int32(SOCK_DGRAM.rawValue | SOCK_NONBLOCK.rawValue)
        let fd = try Syscall.socket(domain: AF_UNIX, type: type)
        let failure: IOError? = address.withSockaddr { sockaddr, length in
            do throws(IOError) {
                try Syscall.connectDatagram(fd, address: sockaddr, length: length)
                return nil
            } catch {
                return error
            }
        }
        if let failure {
            Syscall.close(fd)
            throw failure
        }
        socket = fd
    }

    deinit { close() }

    /// `FDSTORE=1`, `FDNAME=<name>`, `FDPOLL=0`, with `fd` attached: systemd keeps its own copy of `fd` under `name`
    /// and never drops it on its own (`FDPOLL=0`: not even when the socket is hung up or errs), until a
    /// ``remove(name:)`` or the end of the service. `name` must be valid (``FDStoreName/isValid(_:)``), else
    /// `.failed` with EINVAL and nothing is sent. `fd` stays open here.
    package func store(_ fd: Int32, name: String) -> FDStoreSend {
        guard FDStoreName.isValid(name) else { return .failed(IOError("sendmsg", errno: EINVAL)) }
        return send(passing: fd) { message in
            message.append("FDSTORE=1\nFDNAME=")
            message.append(name)
            message.append("\nFDPOLL=0")
        }
    }

    /// ``store(_:name:)`` of a connection under ``FDStoreName/connection(inode:)``, without making the name a
    /// `String` first.
    package func storeConnection(_ fd: Int32, inode: UInt64) -> FDStoreSend {
        send(passing: fd) { message in
            message.append("FDSTORE=1\nFDNAME=")
            message.append(FDStoreName.connectionPrefix)
            message.append(decimal: inode)
            message.append("\nFDPOLL=0")
        }
    }

    /// `FDSTOREREMOVE=1`, `FDNAME=<name>`: systemd closes every descriptor it keeps under `name`. Invalid names fail
    /// as in ``store(_:name:)``.
    package func remove(name: String) -> FDStoreSend {
        guard FDStoreName.isValid(name) else { return .failed(IOError("sendmsg", errno: EINVAL)) }
        return send(passing: nil) { message in
            message.append("FDSTOREREMOVE=1\nFDNAME=")
            message.append(name)
        }
    }

    /// ``remove(name:)`` of ``FDStoreName/connection(inode:)``, without making the name a `String` first.
    package func removeConnection(inode: UInt64) -> FDStoreSend {
        send(passing: nil) { message in
            message.append("FDSTOREREMOVE=1\nFDNAME=")
            message.append(FDStoreName.connectionPrefix)
            message.append(decimal: inode)
        }
    }

    /// Waits until a message could go (`poll` for POLLOUT: systemd has read from its queue), or until an error is
    /// pending on the socket, which the next send then reports. False when `timeout` passed first; also false on a
    /// closed channel. For a blocking flush at handover, never on an event loop's turn.
    package func waitWritable(timeout: Duration) -> Bool {
        guard socket >= 0 else { return false }
        let deadline = Syscall.monotonicNanoseconds() &+ max(timeout.nanoseconds, 0)
        while true {
            let left = deadline &- Syscall.monotonicNanoseconds()
            // Rounded up to whole milliseconds, so that a last sub-millisecond slice is still waited for.
            let milliseconds = Int32(clamping: left <= 0 ? 0 : (left + 999_999) / 1_000_000)
            let events: Int16
            do throws(IOError) {
                events = try Syscall.poll(socket, events: Int16(POLLOUT), timeoutMilliseconds: milliseconds)
            } catch {
                return false
            }
            if events != 0 { return true }
            if left <= 0 { return false }
        }
    }

    /// Closes the socket. Descriptors already sent stay in systemd's queue; later sends fail with EBADF.
    package func close() {
        guard socket >= 0 else { return }
        Syscall.close(socket)
        socket = -1
    }

    /// Builds the message in a stack buffer and sends it with `MSG_NOSIGNAL | MSG_DONTWAIT`.
    private func send(passing fd: Int32?, _ build: (inout MessageBuffer) -> Void) -> FDStoreSend {
        guard socket >= 0 else { return .failed(IOError("sendmsg", errno: EBADF)) }
        return withUnsafeTemporaryAllocation(byteCount: MessageBuffer.capacity, alignment: 1) { storage in
            var message = MessageBuffer(storage)
            build(&message)
            do throws(IOError) {
                let flags = Int32(MSG_NOSIGNAL | MSG_DONTWAIT)
                switch try Syscall.sendMessage(socket, message.bytes, passing: fd, flags: flags, address: nil, length: 0) {
                case .processed: return .sent
                case .wouldBlock: return .wouldBlock
                }
            } catch {
                return .failed(error)
            }
        }
    }
}

/// The text of one fd-store message, appended into fixed storage. The longest message is a 255-byte name plus 31
/// bytes of keys, so ``capacity`` never runs out.
private struct MessageBuffer {
    static let capacity = 320
    private let storage: UnsafeMutableRawBufferPointer
    private var count = 0

    init(_ storage: UnsafeMutableRawBufferPointer) {
        precondition(storage.count >= Self.capacity)
        self.storage = storage
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[..<count]) }

    mutating func append(_ text: String) {
        var text = text
        text.withUTF8 { append(UnsafeRawBufferPointer($0)) }
    }

    mutating func append(decimal value: UInt64) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: room for UInt64.max's 20 digits
        withUnsafeMutableBytes(of: &digits) { digits in
            var value = value
            var start = digits.count
            repeat {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            } while value > 0
            append(UnsafeRawBufferPointer(rebasing: digits[start...]))
        }
    }

    private mutating func append(_ bytes: UnsafeRawBufferPointer) {
        precondition(count + bytes.count <= storage.count, "fd-store message longer than its buffer")
        UnsafeMutableRawBufferPointer(rebasing: storage[count..<(count + bytes.count)]).copyMemory(from: bytes)
        count += bytes.count
    }
}
