import EchodEventLoop
import EchodSystem
import Glibc

/// Runs a bench: `threads` event loops on their own `LoopThread`s, the connections spread over them, each loop
/// driving its connections' state machines (no thread per connection). Blocking: returns when the run is over.
package enum BenchRunner {
    /// How often the calling thread checks on the loops (progress, stop requests, the end of the run).
    static let pollInterval: UInt32 = 5_000  // µs

    package static func run(_ options: BenchOptions) -> BenchReport {
        let threads = options.effectiveThreads
        var report = BenchReport(
            mode: options.mode, target: options.targetLabel, connections: options.connections, size: options.size,
            window: options.mode == .stream ? options.effectiveWindow : 0, threads: threads, udp: options.udp,
            warmupSeconds: Double(options.warmup.nanoseconds) / 1e9)
        report.proxyProtocol = options.proxyProtocol?.description
        if let problem = options.problem {
            report.setupFailure = problem
            return report
        }
        signal(SIGPIPE, SIG_IGN)  // a server that resets must show up as an error count, not kill the client
        Syscall.raiseFileLimit()

        // Chunks up to 256 KiB, or the whole window when it is smaller, go to one write/read.
        let window = options.mode == .stream ? options.effectiveWindow : options.size
        let pattern = BenchPattern(maxChunk: min(256 << 10, max(window, 64 << 10)))
        var workers: [BenchWorker] = []
        var loopThreads: [LoopThread] = []
        defer {
            for w in workers { w.loop.stop() }
            for t in loopThreads { t.join() }
            for w in workers { w.teardown() }
        }

        // Connections 0..<n, split as evenly as possible; --max-ops split in proportion.
        let per = options.connections / threads
        let extra = options.connections % threads
        var firstID = 0
        for i in 0..<threads {
            let count = per + (i < extra ? 1 : 0)
            let maxOps: UInt64 = options.maxOps.map { ($0 * UInt64(count) + UInt64(options.connections) - 1) / UInt64(options.connections) } ?? .max
            do throws(IOError) {
                let loop = try EventLoop(index: i)
                let worker = BenchWorker(index: i, loop: loop, options: options, pattern: pattern, firstID: firstID, count: count, maxOps: maxOps)
                workers.append(worker)
                loopThreads.append(try LoopThread(loop: loop, name: "bench-\(i)") { _ in })
                loop.execute { worker.setup() }
            } catch {
                report.setupFailure = "cannot start event loop \(i): \(error)"
                return report
            }
            firstID += count
        }

        // Set-up: every connection established (connect mode: one probe each), or the first failure.
        let setupDeadline = Syscall.monotonicNanoseconds() + options.connectTimeout.nanoseconds + 2_000_000_000
        while true {
            let states = workers.map { $0.status.load(ordering: .acquiring) }
            if let failed = workers.first(where: { $0.status.load(ordering: .acquiring) == BenchWorker.setupFailed }) {
                report.setupFailure = failed.failure.withLock { $0 } ?? "cannot connect to \(options.target)"
                return report
            }
            if states.allSatisfy({ $0 == BenchWorker.ready }) { break }
            if Syscall.monotonicNanoseconds() > setupDeadline {
                report.setupFailure = "cannot connect to \(options.target): set-up did not finish in time"
                return report
            }
            if options.shouldStop?() == true {
                report.setupFailure = "interrupted while connecting to \(options.target)"
                report.interrupted = true
                return report
            }
            usleep(1_000)
        }

        // Load.
        let t0 = Syscall.monotonicNanoseconds()
        let measureAt = t0 + options.warmup.nanoseconds
        let stopAt = measureAt + options.duration.nanoseconds
        for w in workers { w.loop.execute { w.start(measureAt: measureAt, stopAt: stopAt) } }

        let hardDeadline = stopAt + options.drainTimeout.nanoseconds + 2_000_000_000
        var nextProgress = t0 + 1_000_000_000
        var last = (time: t0, ops: UInt64(0), sent: UInt64(0), received: UInt64(0))
        var stopSent = false
        var stuck = false
        while !workers.allSatisfy({ $0.status.load(ordering: .acquiring) == BenchWorker.done }) {
            // A connection can still fail its set-up after every worker said ready, before its loop ran `start`
            // (the server sent bytes nobody asked for, such as an echoed PROXY header): that worker never starts.
            if let failed = workers.first(where: { $0.status.load(ordering: .acquiring) == BenchWorker.setupFailed }) {
                report.setupFailure = failed.failure.withLock { $0 } ?? "cannot connect to \(options.target)"
                return report
            }
            let now = Syscall.monotonicNanoseconds()
            if now > hardDeadline {
                stuck = true
                break
            }
            if !stopSent, options.shouldStop?() == true {
                stopSent = true
                report.interrupted = true
                for w in workers { w.loop.execute { w.requestStop() } }
            }
            if let progress = options.progress, now >= nextProgress {
                let ops = workers.reduce(0) { $0 + $1.opsAll.load }
                let sent = workers.reduce(0) { $0 + $1.sentAll.load }
                let received = workers.reduce(0) { $0 + $1.receivedAll.load }
                let errors = workers.reduce(0) { $0 + $1.errorCount.load }
                let dt = Double(now - last.time) / 1e9
                let phase: BenchProgress.Phase = now < measureAt ? .warmup : now < stopAt && !stopSent ? .measuring : .draining
                progress(
                    BenchProgress(
                        phase: phase, elapsed: Double(now - t0) / 1e9, ops: ops,
                        opsPerSecond: Double(ops &- last.ops) / dt,
                        mbPerSecondOut: Double(sent &- last.sent) / dt / 1e6,
                        mbPerSecondIn: Double(received &- last.received) / dt / 1e6,
                        errors: errors))
                last = (now, ops, sent, received)
                while nextProgress <= now { nextProgress += 1_000_000_000 }
            }
            usleep(pollInterval)
        }

        // Stop the loops; after join every worker's fields are ours to read.
        for w in workers { w.loop.stop() }
        for t in loopThreads { t.join() }
        loopThreads.removeAll()

        var latency = LatencyRecorder()
        var start = Int64.max
        var end: Int64 = 0
        for w in workers {
            latency.merge(w.latency)
            report.ops += w.atEnd.ops &- w.atStart.ops
            report.opsAll += w.opsAll.load
            report.bytesSent += w.atEnd.sent &- w.atStart.sent
            report.bytesReceived += w.atEnd.received &- w.atStart.received
            report.errors.add(w.errors)
            report.late += w.late
            for d in w.details where report.errorDetails.count < 10 { report.errorDetails.append(d) }
            if w.measured {
                start = min(start, w.tStart)
                end = max(end, w.tEnd)
            }
        }
        if stuck {
            report.errors.other += 1
            report.errorDetails.append("the run did not finish within the drain timeout plus 2 s; results are partial")
        }
        report.durationSeconds = start < end ? Double(end - start) / 1e9 : 0
        report.latency = latency.summary
        return report
    }
}
