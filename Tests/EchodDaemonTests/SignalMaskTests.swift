import EchodConfig
import EchodLog
import EchodSystem
import EchodTestSupport
import Glibc
import Testing

@testable import EchodDaemon

/// One signal list: the log writer thread, started with the daemon's log options, blocks exactly the signals the
/// daemon takes through its signalfd, plus SIGPIPE (the writer's own: see `LogWriter.start`).
@Suite struct SignalMaskTests {
    @Test func theLogWriterBlocksTheSignalsTheDaemonHandles() throws {
        let options = Daemon.provisionalLogOptions(DaemonOptions(configPath: nil, overrides: ConfigOverrides(), environment: [:]))
        let expected = Self.mask(Daemon.handledSignals + [SIGPIPE])
        #expect(Daemon.handledSignals.contains(SIGABRT), "systemd's watchdog SIGABRT must reach the signalfd too")

        // The mask is inherited at pthread_create: start the backend from a thread with nothing blocked, so that
        // only what the options say can be blocked in the writer. Other tests start writers at the same time (all
        // named echod-log): retry until exactly one new writer appeared while ours started.
        var found: UInt64?
        for _ in 0..<20 where found == nil {
            let result = Locked<Result<UInt64?, TestFailure>?>(nil)
            let thread = try SystemThread(name: "mask-test") {
                var none = sigset_t()
                sigemptyset(&none)
                pthread_sigmask(SIG_SETMASK, &none, nil)
                let before = Self.writerThreads()
                do {
                    let backend = try AsyncLogBackend(options: options)
                    backend.flush(timeout: .seconds(5))  // the writer runs (and has named itself)
                    let new = Self.writerThreads().subtracting(before)
                    result.value = .success(new.count == 1 ? Self.blockedSignals(of: new.first!) : nil)
                    backend.shutdown(timeout: .seconds(5))
                } catch {
                    result.value = .failure(TestFailure("\(error)"))
                }
            }
            thread.join()
            found = try #require(result.value).get()
        }
        let blocked = try #require(found, "no writer thread could be told apart from other tests' writers")
        #expect(blocked == expected, "SigBlk \(String(blocked, radix: 16)), want \(String(expected, radix: 16))")
    }

    /// The kernel's SigBlk bit mask for `signals` (bit n-1 for signal n).
    static func mask(_ signals: [Int32]) -> UInt64 {
        signals.reduce(0) { $0 | (1 << UInt64($1 - 1)) }
    }

    /// Thread ids of this process's threads named `echod-log`.
    static func writerThreads() -> Set<Int> {
        guard let dir = opendir("/proc/self/task") else { return [] }
        defer { closedir(dir) }
        var tids: Set<Int> = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let tid = Int(name), read("/proc/self/task/\(tid)/comm") == "echod-log\n" else { continue }
            tids.insert(tid)
        }
        return tids
    }

    /// The `SigBlk:` line of a thread's status, as a number.
    static func blockedSignals(of tid: Int) -> UInt64? {
        guard let status = read("/proc/self/task/\(tid)/status") else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("SigBlk:") {
            return UInt64(line.dropFirst("SigBlk:".count).trimmingPrefix(while: \.isWhitespace), radix: 16)
        }
        return nil
    }

    static func read(_ path: String) -> String? {
        guard let fd = try? Syscall.open(path, O_RDONLY) else { return nil }
        defer { Syscall.close(fd) }
        guard let bytes = try? Syscall.readToEnd(fd, limit: 1 << 16) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
