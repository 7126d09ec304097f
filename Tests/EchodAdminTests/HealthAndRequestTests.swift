import EchodAdmin
import EchodEventLoop
import Testing

@Suite("Health endpoints and request helpers")
struct HealthAndRequestTests {
    let good = [HealthCheck(name: "loop-0", ok: true, detail: "last turn 2 ms ago"), HealthCheck(name: "loop-1", ok: true, detail: "last turn 0 ms ago")]
    let bad = [HealthCheck(name: "loop-0", ok: true, detail: "last turn 2 ms ago"), HealthCheck(name: "loop-1", ok: false, detail: "stalled: no turn for 3 s")]

    func text(_ r: AdminResponse?) -> String { String(decoding: r?.body ?? [], as: UTF8.self) }

    @Test("livez and its alias healthz: ok / failed with the failing names")
    func liveness() {
        for path in ["/livez", "/healthz"] {
            let ok = HealthEndpoints.respond(AdminRequest(method: "GET", path: path), live: good, ready: bad)
            #expect(ok?.status == 200)
            #expect(text(ok) == "ok\n")
            #expect(ok?.extraHeaders.contains(where: { $0.0 == "Cache-Control" && $0.1 == "no-store" }) == true)
            let failing = HealthEndpoints.respond(AdminRequest(method: "GET", path: path), live: bad, ready: good)
            #expect(failing?.status == 503)
            #expect(text(failing) == "failed: loop-1\n")
        }
    }

    @Test("verbose lists each check for humans, with the same status")
    func verboseOutput() {
        let r = HealthEndpoints.respond(AdminRequest(method: "GET", path: "/readyz", query: "verbose"), live: good, ready: bad)
        #expect(r?.status == 503)
        #expect(text(r) == "[+]loop-0 ok: last turn 2 ms ago\n[-]loop-1 failed: stalled: no turn for 3 s\nreadyz check failed\n")
        let l = HealthEndpoints.respond(AdminRequest(method: "HEAD", path: "/livez", query: "x=1&verbose=true"), live: good, ready: bad)
        #expect(l?.status == 200)
        #expect(text(l) == "[+]loop-0 ok: last turn 2 ms ago\n[+]loop-1 ok: last turn 0 ms ago\nlivez check passed\n")
        let off = HealthEndpoints.respond(AdminRequest(method: "GET", path: "/livez", query: "verbose=0"), live: good, ready: bad)
        #expect(text(off) == "ok\n")
        let empty = HealthEndpoints.render(name: "readyz", checks: [], verbose: true)
        #expect(empty.status == 200 && String(decoding: empty.body, as: UTF8.self) == "readyz check passed\n")
    }

    @Test("other paths are not health paths; other methods are 405")
    func otherPaths() {
        #expect(HealthEndpoints.respond(AdminRequest(method: "GET", path: "/metrics"), live: good, ready: good) == nil)
        #expect(HealthEndpoints.respond(AdminRequest(method: "GET", path: "/livez/"), live: good, ready: good) == nil)
        let post = HealthEndpoints.respond(AdminRequest(method: "POST", path: "/readyz"), live: good, ready: good)
        #expect(post?.status == 405)
        #expect(post?.extraHeaders.first?.0 == "Allow" && post?.extraHeaders.first?.1 == "GET, HEAD")
    }

    @Test("checks are only evaluated for the path asked")
    func lazyChecks() {
        var evaluated: [String] = []
        func live() -> [HealthCheck] {
            evaluated.append("live")
            return good
        }
        func ready() -> [HealthCheck] {
            evaluated.append("ready")
            return good
        }
        _ = HealthEndpoints.respond(AdminRequest(method: "GET", path: "/livez"), live: live(), ready: ready())
        _ = HealthEndpoints.respond(AdminRequest(method: "GET", path: "/metrics"), live: live(), ready: ready())
        #expect(evaluated == ["live"])
    }

    @Test("loop heartbeat checks: fresh, stale, not started")
    func heartbeats() throws {
        let loop = try EventLoop(index: 3)
        let none = HealthCheck.loopHeartbeats([loop], stallThreshold: .seconds(2))
        #expect(none == [HealthCheck(name: "loop-3", ok: false, detail: "not started")])
        let now: Int64 = 100_000_000_000
        loop.stats.heartbeat.store(now - 5_000_000, ordering: .relaxed)
        #expect(
            HealthCheck.loopHeartbeats([loop], stallThreshold: .seconds(2), now: now) == [HealthCheck(name: "loop-3", ok: true, detail: "last turn 5 ms ago")])
        loop.stats.heartbeat.store(now - 3_500_000_000, ordering: .relaxed)
        let stale = HealthCheck.loopHeartbeats([loop], stallThreshold: .seconds(2), now: now)
        #expect(stale.first?.ok == false)
        #expect(stale.first?.detail == "stalled: no turn for 3500 ms (limit 2000 ms)")
    }

    @Test("router: metrics content type, 404 body, 405")
    func router() {
        let router = AdminRouter(live: { [] }, ready: { [] }, metrics: { Array("m 1\n".utf8) })
        let m = router.route(AdminRequest(method: "GET", path: "/metrics"))
        #expect(m.status == 200 && m.contentType == "text/plain; version=0.0.4; charset=utf-8")
        #expect(router.route(AdminRequest(method: "POST", path: "/metrics")).status == 405)
        #expect(router.route(AdminRequest(method: "GET", path: "/x")).status == 404)
        #expect(router.route(AdminRequest(method: "GET", path: "/readyz")).status == 200)
    }

    @Test(
        "request targets split into path and query",
        arguments: [
            ("/livez", "/livez", nil),
            ("/livez?verbose", "/livez", "verbose"),
            ("/livez?", "/livez", ""),
            ("/readyz?verbose#frag", "/readyz", "verbose"),
            ("http://h:1/metrics?x=1", "/metrics", "x=1"),
            ("http://h:1", "/", nil),
            ("http://h:1?verbose", "/", "verbose"),
            ("*", "*", nil),
        ] as [(String, String, String?)])
    func targets(target: String, path: String, query: String?) {
        let split = AdminRequest.splitTarget(target)
        #expect(split.path == path)
        #expect(split.query == query)
    }

    @Test("query flags")
    func flags() {
        #expect(AdminRequest(method: "GET", path: "/", query: "verbose").hasFlag("verbose"))
        #expect(AdminRequest(method: "GET", path: "/", query: "a=1&verbose").hasFlag("verbose"))
        #expect(AdminRequest(method: "GET", path: "/", query: "verbose=yes").hasFlag("verbose"))
        #expect(!AdminRequest(method: "GET", path: "/", query: "verbose=false").hasFlag("verbose"))
        #expect(!AdminRequest(method: "GET", path: "/", query: "verbosex").hasFlag("verbose"))
        #expect(!AdminRequest(method: "GET", path: "/", query: nil).hasFlag("verbose"))
    }
}
