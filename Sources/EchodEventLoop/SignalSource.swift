import CEchodLinux
import EchodSystem

/// Delivers blocked signals through a signalfd on an event loop.
package final class SignalSource: EventHandler {
    private let fd: Int32
    private let action: (Int32) -> Void

    /// Blocks `signals` in the calling thread (call before other threads are started, so they inherit the mask)
    /// and delivers them to `action` on `loop`'s thread.
    package init(loop: EventLoop, signals: [Int32], action: @escaping (Int32) -> Void) throws(IOError) {
        Syscall.blockSignals(signals)
        fd = try Syscall.signalFD(signals)
        self.action = action
        super.init()
        try loop.register(fd: fd, interest: .read, handler: self)
    }

    override package func handleEvent(fd: Int32, events: UInt32) {
        var info = signalfd_siginfo()
        let size = MemoryLayout<signalfd_siginfo>.size
        while case .processed(let n)? = try? Syscall.read(fd, &info, size), n == size {
            action(Int32(bitPattern: info.ssi_signo))
        }
    }
}
