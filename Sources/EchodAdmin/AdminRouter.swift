/// The complete admin route: health endpoints, `/metrics`, 404 and 405. The daemon supplies the three callbacks,
/// which run on the admin server's loop thread, and only for the path that needs them.
package struct AdminRouter: Sendable {
    package var live: @Sendable () -> [HealthCheck]
    package var ready: @Sendable () -> [HealthCheck]
    /// The exposition text (`MetricsExporter.render`).
    package var metrics: @Sendable () -> [UInt8]

    package init(live: @escaping @Sendable () -> [HealthCheck], ready: @escaping @Sendable () -> [HealthCheck], metrics: @escaping @Sendable () -> [UInt8]) {
        self.live = live
        self.ready = ready
        self.metrics = metrics
    }

    package static let metricsPath = "/metrics"

    package func route(_ req: AdminRequest) -> AdminResponse {
        if let health = HealthEndpoints.respond(req, live: live(), ready: ready()) { return health }
        if req.path == Self.metricsPath {
            guard req.isGetOrHead else { return .methodNotAllowed(req.method) }
            return AdminResponse(status: 200, contentType: AdminResponse.prometheusText, body: metrics(), extraHeaders: [("Cache-Control", "no-store")])
        }
        if req.path == "/" && req.isGetOrHead {
            return .text(200, "echod admin endpoint: /livez /healthz /readyz /metrics (add ?verbose to the health paths)")
        }
        return .notFound(req.path)
    }
}
