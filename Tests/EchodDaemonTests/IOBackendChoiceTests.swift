import EchodConfig
import EchodEventLoop
import Testing

@testable import EchodDaemon

/// `io.backend` at start, with the kernel's answer given by the test.
@Suite struct IOBackendChoiceTests {
    static let reason = "io_uring_setup: Operation not permitted (errno 1) (kernel.io_uring_disabled=2)"

    @Test func epollNeverAsksTheKernel() {
        var asked = false
        let choice = IOBackendChoice.choose(.epoll) {
            asked = true
            return nil
        }
        #expect(choice == .use(.epoll))
        #expect(!asked)
    }

    @Test func ioUringWhereAllowed() {
        #expect(IOBackendChoice.choose(.ioUring) { nil } == .use(.ioUring))
        #expect(IOBackendChoice.choose(.auto) { nil } == .use(.ioUring))
    }

    @Test func ioUringWhereNotAllowedIsRefusedWithTheReasonAndTheWaysOut() throws {
        guard case .refuse(let message) = IOBackendChoice.choose(.ioUring, ioUringUnavailable: { Self.reason }) else {
            Issue.record("not refused")
            return
        }
        #expect(message.contains(Self.reason))
        #expect(message.contains("io.backend: epoll") && message.contains("auto"))
        #expect(message.contains("kernel.io_uring_disabled=0") && message.contains("SystemCallFilter="))
    }

    @Test func autoWhereNotAllowedFallsBackWithTheReason() {
        #expect(IOBackendChoice.choose(.auto) { Self.reason } == .fallBack(reason: Self.reason))
    }
}
