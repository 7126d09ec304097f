import EchodEventLoop
import EchodSystem

/// One named health condition, evaluated by the daemon at request time.
package struct HealthCheck: Sendable, Equatable {
    /// Short and stable, e.g. `loop-0`, `phase`, `accepting`.
    package var name: String
    package var ok: Bool
    /// For humans (`?verbose`): why it passes or fails, e.g. `last turn 3 ms ago`.
    package var detail: String

    package init(name: String, ok: Bool, detail: String = "") {
        self.name = name
        self.ok = ok
        self.detail = detail
    }

    /// One check per loop: ok while the loop's heartbeat is younger than `stallThreshold`. Loops turn at least
    /// every `EventLoop.maximumSleepMilliseconds` even when idle, so a stale heartbeat means a wedged loop.
    /// Reads only the loops' atomic heartbeats: safe from any thread.
    package static func loopHeartbeats(_ loops: [EventLoop], stallThreshold: Duration, now: Int64 = Syscall.monotonicNanoseconds()) -> [HealthCheck] {
        loops.map { loop in
            let beat = loop.stats.heartbeat.load(ordering: .relaxed)
            let name = "loop-\(loop.index)"
            if beat == 0 {
                return HealthCheck(name: name, ok: false, detail: "not started")
            }
            let age = now - beat
            let ok = age <= stallThreshold.nanoseconds
            let detail =
                ok ? "last turn \(milliseconds(age)) ago" : "stalled: no turn for \(milliseconds(age)) (limit \(milliseconds(stallThreshold.nanoseconds)))"
            return HealthCheck(name: name, ok: ok, detail: detail)
        }
    }

    static func milliseconds(_ ns: Int64) -> String {
        let ms = max(ns, 0) / 1_000_000
        if ms >= 10_000 { return "\(ms / 1000) s" }
        return "\(ms) ms"
    }
}

/// `/livez` (alias `/healthz`) and `/readyz`, in the style of Kubernetes' own endpoints.
///
/// - 200 with body `ok` when every check passes, 503 with `failed: NAME, NAME` otherwise.
/// - `?verbose` lists every check, one per line: `[+]loop-0 ok: last turn 3 ms ago` or
///   `[-]phase failed: draining`, then `livez check passed` / `readyz check failed`. The status code is the same
///   as without `?verbose`.
/// - GET and HEAD only (405 with `Allow: GET, HEAD` otherwise); `Cache-Control: no-store`.
package enum HealthEndpoints {
    /// The paths answered here.
    package static let livenessPaths: Set<String> = ["/livez", "/healthz"]
    package static let readinessPath = "/readyz"

    /// The response for a health path, or nil for any other path (so the caller can try its other routes).
    ///
    /// The checks are passed in rather than computed here so the daemon evaluates them only for these paths; for a
    /// cheap call site use `respond(_:live:ready:)` with autoclosures.
    package static func respond(_ req: AdminRequest, live: @autoclosure () -> [HealthCheck], ready: @autoclosure () -> [HealthCheck]) -> AdminResponse? {
        let isLive = livenessPaths.contains(req.path)
        guard isLive || req.path == readinessPath else { return nil }
        guard req.isGetOrHead else { return .methodNotAllowed(req.method) }
        let verbose = req.hasFlag("verbose")
        return isLive ? render(name: "livez", checks: live(), verbose: verbose) : render(name: "readyz", checks: ready(), verbose: verbose)
    }

    /// The response for one endpoint's checks.
    package static func render(name: String, checks: [HealthCheck], verbose: Bool) -> AdminResponse {
        let failed = checks.filter { !$0.ok }
        let status = failed.isEmpty ? 200 : 503
        var text: String
        if verbose {
            text = ""
            for check in checks {
                text += check.ok ? "[+]\(check.name) ok" : "[-]\(check.name) failed"
                if !check.detail.isEmpty { text += ": \(check.detail)" }
                text += "\n"
            }
            text += failed.isEmpty ? "\(name) check passed\n" : "\(name) check failed\n"
        } else {
            text = failed.isEmpty ? "ok\n" : "failed: \(failed.map(\.name).joined(separator: ", "))\n"
        }
        return AdminResponse(status: status, body: Array(text.utf8), extraHeaders: [("Cache-Control", "no-store")])
    }
}
