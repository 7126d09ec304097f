import EchodSystem
import Glibc
import Testing

/// The Unix-socket parts of the syscall layer, on real sockets in a private temporary directory.
@Suite("Unix sockets")
struct UnixSocketTests {
    /// A fresh directory for socket files, removed with what is in it.
    final class Directory {
        let path: String
        init() {
            var template = Array("/tmp/echod-unix-XXXXXX".utf8CString)
            path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        }
        deinit {
            if let dir = opendir(path) {
                while let entry = readdir(dir) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                    if name != "." && name != ".." { unlink(path + "/" + name) }
                }
                closedir(dir)
            }
            rmdir(path)
        }
    }

    @Test func aUnixPeerKeepsTheAddressInlineAndTheSameSize() {
        // Family, port and two words: the size a connection table entry was built around, unchanged by `.unix`.
        #expect(MemoryLayout<SocketAddress>.size == 24 && MemoryLayout<SocketAddress>.stride == 24)
        let peer = SocketAddress.unixPeer(uid: 1000, gid: 100, pid: 4242)
        #expect(peer.unixUID == 1000 && peer.unixGID == 100 && peer.unixPID == 4242)
        #expect(peer.description == "unix:uid:1000,pid:4242")
        // The per-peer limit key is the uid alone: another process of the same user is the same peer.
        #expect(peer.hostKey == SocketAddress.unixPeer(uid: 1000, gid: 5, pid: 1).hostKey)
        #expect(peer.hostKey != SocketAddress.unixPeer(uid: 1001, gid: 100, pid: 4242).hostKey)
        // And never the key of an IPv4 address with the same bits.
        #expect(peer.hostKey != SocketAddress(family: .ipv4, port: 0, high: 1000, low: 0).hostKey)
    }

    @Test func namesThatDoNotFitAreRefused() {
        #expect(UnixSocketAddress.maximumNameBytes == 107)
        #expect(throws: IOError("sockaddr_un", errno: ENAMETOOLONG)) {
            try UnixSocketAddress(name: "/" + String(repeating: "a", count: 107), isAbstract: false)
        }
        #expect(throws: IOError("sockaddr_un", errno: EINVAL)) { try UnixSocketAddress(name: "", isAbstract: true) }
    }

    @Test func aFileSocketGetsItsModeAndAcceptedPeersTheirCredentials() throws {
        let dir = Directory()
        for mode: mode_t in [0o600, 0o666] {
            let path = dir.path + "/m\(mode).sock"
            let address = try UnixSocketAddress(name: path, isAbstract: false)
            let listener = try Socket.listen(unix: address, mode: mode)
            defer { Syscall.close(listener) }
            // 0666 is wider than the usual umask (022) allows at bind: the chmod after it restores the asked mode.
            let info = try Syscall.linkStatus(path: path)
            #expect(Syscall.isSocket(info) && info.st_mode & 0o777 == mode)

            let client = try Socket.connect(unix: address)
            defer { Syscall.close(client.fd) }
            #expect(client.connected)
            var storage = sockaddr_storage()
            var accepted: Int32?
            for _ in 0..<100 where accepted == nil {
                accepted = try Socket.accept(listener, peer: &storage)
                if accepted == nil { usleep(1000) }
            }
            let fd = try #require(accepted)
            defer { Syscall.close(fd) }
            let peer = try #require(withUnsafePointer(to: &storage) { Socket.peerAddress(of: fd, accepted: $0) })
            #expect(peer.family == .unix && peer.unixUID == getuid() && peer.unixGID == getgid() && peer.unixPID == getpid())
        }
    }

    @Test func aSocketFileWithNobodyListeningIsRefusedAndALiveOneIsNot() throws {
        let dir = Directory()
        let path = dir.path + "/s.sock"
        let address = try UnixSocketAddress(name: path, isAbstract: false)
        #expect(try Socket.connectionRefused(address), "no file at all")
        let live = try Socket.listen(unix: address, mode: 0o600)
        #expect(try !Socket.connectionRefused(address))
        #expect(throws: IOError("bind", errno: EADDRINUSE)) { try Socket.listen(unix: address, mode: 0o600) }
        // Closing a listener leaves its file behind: what a crashed run leaves.
        Syscall.close(live)
        #expect(Syscall.isSocket(try Syscall.linkStatus(path: path)))
        #expect(try Socket.connectionRefused(address))
    }

    @Test func abstractNamesHaveNoFileAndAreNamedBack() throws {
        let name = "echod-test-\(getpid())"
        let address = try UnixSocketAddress(name: name, isAbstract: true)
        let listener = try Socket.listen(unix: address, mode: 0o600)
        defer { Syscall.close(listener) }
        let local = try #require(UnixSocketAddress.local(of: listener))
        #expect(local.isAbstract && local.name == name && local.displayName == "@" + name)
        #expect(throws: IOError("bind", errno: EADDRINUSE)) { try Socket.listen(unix: address, mode: 0o600) }
    }

    @Test func groupsAreLookedUpByName() throws {
        #expect(try Syscall.lookUpGroup("root") == 0)
        #expect(try Syscall.lookUpGroup("no-such-group-echod") == nil)
    }
}
