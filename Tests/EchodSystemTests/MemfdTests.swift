import EchodSystem
import Glibc
import Testing

/// memfd creation and sealing, and the fstat/pread helpers the fd-store handover reads a memfd with.
@Suite struct MemfdTests {
    @Test func writtenThenSealedThenReadWhole() throws {
        let fd = try Syscall.memfdCreate(name: "echod-test-state")
        defer { Syscall.close(fd) }
        let text = Array("handover state".utf8)
        #expect(text.withUnsafeBytes { Syscall.writeAll(fd, $0) } == .written)

        try Syscall.sealAll(fd)

        #expect(try Syscall.seals(fd) == .all)
        #expect(try Syscall.fileSize(fd) == text.count)
        // The offset is at the end after the write: a plain read would return nothing, pread from 0 returns it all.
        #expect(try Syscall.readWholeFile(fd, limit: 1024) == text)
        #expect(try Syscall.readWholeFile(fd, limit: text.count) == text)
        #expect(try Syscall.readWholeFile(fd, limit: text.count - 1) == nil)
        #expect(lseek(fd, 0, SEEK_CUR) == off_t(text.count), "readWholeFile leaves the offset alone")
    }

    @Test func sealedMemfdRefusesChanges() throws {
        let fd = try Syscall.memfdCreate(name: "echod-test-sealed")
        defer { Syscall.close(fd) }
        #expect(write(fd, "abc", 3) == 3)
        try Syscall.sealAll(fd)

        #expect(write(fd, "d", 1) == -1 && errno == EPERM)
        #expect(pwrite(fd, "z", 1, 0) == -1 && errno == EPERM)
        #expect(ftruncate(fd, 0) == -1 && errno == EPERM)
        #expect(throws: IOError("fcntl(F_ADD_SEALS)", errno: EPERM)) { try Syscall.sealAll(fd) }
        #expect(try Syscall.readWholeFile(fd, limit: 10) == Array("abc".utf8))
    }

    @Test func newMemfdIsUnsealedAndCloseOnExec() throws {
        let fd = try Syscall.memfdCreate(name: "echod-test-new")
        defer { Syscall.close(fd) }
        #expect(try Syscall.seals(fd) == [])
        #expect(try Syscall.fileSize(fd) == 0)
        #expect(try Syscall.readWholeFile(fd, limit: 0) == [])
        #expect(fcntl(fd, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func sealsOfSomethingElseFail() throws {
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { for fd in ends { close(fd) } }
        #expect(throws: IOError("fcntl(F_GET_SEALS)", errno: EINVAL)) { try Syscall.seals(ends[0]) }
        #expect(throws: IOError("fcntl(F_ADD_SEALS)", errno: EINVAL)) { try Syscall.sealAll(ends[1]) }
        #expect(throws: IOError("fcntl(F_ADD_SEALS)", errno: EPERM)) { try Syscall.sealAll(ends[0]) }
    }

    @Test func overlongNameIsRefused() {
        #expect(throws: IOError("memfd_create", errno: EINVAL)) {
            try Syscall.memfdCreate(name: String(repeating: "n", count: 250))
        }
    }

    @Test func inodeIsTheSocketsOwnAndSharedByEveryDescriptor() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        defer { for fd in fds { close(fd) } }
        let copy = dup(fds[0])
        defer { _ = close(copy) }

        let inode = try Syscall.inode(of: fds[0])
        var info = stat()
        #expect(fstat(fds[0], &info) == 0)
        #expect(inode == UInt64(info.st_ino))
        #expect(try Syscall.inode(of: copy) == inode)
        #expect(try Syscall.inode(of: fds[1]) != inode, "each end of a pair is a socket of its own")
        #expect(throws: IOError("fstat", errno: EBADF)) { try Syscall.inode(of: -1) }
    }

    @Test func peerNameOfAConnectedAndAnUnconnectedSocket() throws {
        var fds: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0, &fds) == 0)
        defer { for fd in fds { close(fd) } }
        #expect(Int32(try Syscall.peerName(fds[0]).ss_family) == AF_UNIX)

        let lone = socket(AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        defer { _ = close(lone) }
        #expect(throws: IOError("getpeername", errno: ENOTCONN)) { try Syscall.peerName(lone) }
    }
}
