import EchodAdmin
import EchodEventLoop
import EchodSystem
import EchodTestSupport
import Glibc
import Testing

@Suite("Admin HTTP server over loopback")
struct AdminServerTests {
    @Test("GET answers with status, length, type, date; the route runs on the loop thread")
    func getLivez() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            try c.send(get("/livez"))
            let r = try c.readResponse()
            #expect(r.status == 200)
            #expect(r.text == "ok\n")
            #expect(r.header("Content-Length") == "3")
            #expect(r.header("Content-Type") == "text/plain; charset=utf-8")
            #expect(r.header("Date")?.hasSuffix(" GMT") == true)
            #expect(r.header("Connection") == nil)  // HTTP/1.1 keeps alive by default
            #expect(admin.seen.value.count == 1)
            #expect(admin.seen.value.first?.0 == AdminRequest(method: "GET", path: "/livez", query: nil, keepAlive: true))
            #expect(admin.seen.value.first?.1 == true)
        }
    }

    @Test("HEAD has GET's headers and no body, for every path", arguments: ["/livez", "/healthz", "/readyz", "/metrics", "/nope"])
    func head(path: String) throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            try c.send(get(path))
            let g = try c.readResponse()
            try c.send("HEAD \(path) HTTP/1.1\r\nHost: x\r\n\r\n")
            let h = try c.readResponse(head: true)
            #expect(h.status == g.status)
            #expect(h.header("Content-Length") == String(g.body.count))
            #expect(h.header("Content-Type") == g.header("Content-Type"))
            // No body bytes were sent: the next response starts right where the headers ended.
            try c.send(get("/livez"))
            let next = try c.readResponse()
            #expect(next.status == 200 && next.text == "ok\n")
        }
    }

    @Test("other methods get 405 with Allow; unknown paths 404")
    func methodsAndPaths() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
                for path in ["/livez", "/healthz", "/readyz", "/metrics"] {
                    try c.send("\(method) \(path) HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                    let r = try c.readResponse()
                    #expect(r.status == 405, "\(method) \(path)")
                    #expect(r.header("Allow") == "GET, HEAD")
                }
            }
            try c.send(get("/nope"))
            #expect(try c.readResponse().status == 404)
            try c.send(get("/livez/extra"))
            #expect(try c.readResponse().status == 404)
            try c.send("DELETE /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try c.readResponse().status == 404)
        }
    }

    @Test("query strings: ?verbose reaches the route and lists the checks; readiness failing is 503")
    func verbose() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            try c.send(get("/livez?verbose"))
            let live = try c.readResponse()
            #expect(live.status == 200)
            #expect(live.text == "[+]loop-0 ok: last turn 1 ms ago\nlivez check passed\n")
            try c.send(get("/readyz?verbose=1"))
            let ready = try c.readResponse()
            #expect(ready.status == 503)
            #expect(ready.text == "[-]phase failed: starting\nreadyz check failed\n")
            try c.send(get("/readyz"))
            let plain = try c.readResponse()
            #expect(plain.status == 503 && plain.text == "failed: phase\n")
            #expect(admin.seen.value.map(\.0.query) == ["verbose", "verbose=1", nil])
        }
    }

    @Test("keep-alive: several requests on one connection")
    func keepAlive() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            for path in ["/livez", "/metrics", "/healthz", "/livez"] {
                try c.send(get(path))
                #expect(try c.readResponse().status == 200)
            }
            #expect(admin.connectionCount() == 1)
        }
    }

    @Test("pipelined requests in one write are answered in order")
    func pipelining() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            try c.send(get("/livez") + get("/readyz") + "HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n" + get("/nope"))
            #expect(try c.readResponse().status == 200)
            #expect(try c.readResponse().status == 503)
            #expect(try c.readResponse(head: true).status == 200)
            #expect(try c.readResponse().status == 404)
            #expect(admin.seen.value.map(\.0.path) == ["/livez", "/readyz", "/metrics", "/nope"])
        }
    }

    @Test("a request split across many small writes is assembled")
    func byteByByte() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            for byte in get("/livez?verbose").utf8 {
                try c.send([byte])
                usleep(200)
            }
            let r = try c.readResponse()
            #expect(r.status == 200)
            #expect(admin.seen.value.first?.0.query == "verbose")
        }
    }

    @Test("HTTP/1.0 closes by default")
    func http10() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            try c.send("GET /livez HTTP/1.0\r\n\r\n")
            let r = try c.readResponse()
            #expect(r.status == 200)
            #expect(r.header("Connection") == "close")
            #expect(try c.isClosedByPeer())
        }
    }

    @Test("HTTP/1.0 with Connection: keep-alive stays open and says so")
    func http10KeepAlive() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            try c.send("GET /livez HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            let r = try c.readResponse()
            #expect(r.header("Connection")?.lowercased() == "keep-alive")
            try c.send("GET /readyz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            #expect(try c.readResponse().status == 503)
        }
    }

    @Test("Connection: close on HTTP/1.1 is answered and then closed")
    func connectionClose() throws {
        try withAdmin(limits: AdminServer.Limits(lingerTimeout: .milliseconds(200))) { admin in
            let c = try TestClient(port: admin.port)
            try c.send(get("/livez", "Connection: close\r\n"))
            let r = try c.readResponse()
            #expect(r.status == 200)
            #expect(r.header("Connection") == "close")
            #expect(try c.isClosedByPeer())
            #expect(waitUntil { admin.connectionCount() == 0 })
        }
    }

    @Test("headers over 8 KiB get 431 and a close")
    func headersTooLarge() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            let filler = String(repeating: "a", count: 1000)
            var request = "GET /livez HTTP/1.1\r\nHost: x\r\n"
            for i in 0..<9 { request += "X-Filler-\(i): \(filler)\r\n" }
            request += "\r\n"
            try c.send(request)
            let r = try c.readResponse()
            #expect(r.status == 431)
            #expect(r.header("Connection") == "close")
            #expect(try c.isClosedByPeer())
            #expect(admin.seen.value.isEmpty)
        }
    }

    @Test("headers over 8 KiB without an end are cut off at once, not buffered")
    func endlessHeaders() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            try c.send("GET /livez HTTP/1.1\r\nX-Endless: ")
            let chunk = [UInt8](repeating: UInt8(ascii: "b"), count: 1024)
            var sent = 0
            // The server answers 431 once it has seen more than 8 KiB; sending may then fail with a reset.
            while sent < 16 * 1024 {
                do { try c.send(chunk) } catch { break }
                sent += chunk.count
            }
            let r = try c.readResponse()
            #expect(r.status == 431)
        }
    }

    @Test("a long URL counts towards the header limit")
    func longURL() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            try c.send(get("/livez?" + String(repeating: "q", count: 9000)))
            #expect(try c.readResponse().status == 431)
        }
    }

    @Test("headers just under the limit are fine")
    func headersNearLimit() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            try c.send(get("/livez", "X-Filler: \(String(repeating: "a", count: 7000))\r\n"))
            #expect(try c.readResponse().status == 200)
        }
    }

    @Test(
        "garbage gets 400 and a close",
        arguments: [
            "\u{16}\u{03}\u{01}\u{02}\u{00}\u{01}\u{00}\u{01}\u{fc}\u{03}\u{03}",  // a TLS ClientHello
            "HELLO WORLD\r\n\r\n",
            "GET /livez HTTP/1.1\r\nHost x\r\n\r\n",
            "GET /livez HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            "GET /livez HTTP/9.1\r\n\r\n",
            "\u{00}\u{01}\u{02}\u{03}binary\u{ff}\u{fe}\r\n\r\n",
        ])
    func garbage(input: String) throws {
        try withAdmin(limits: AdminServer.Limits(lingerTimeout: .milliseconds(200))) { admin in
            let c = try TestClient(port: admin.port)
            try c.send(input)
            let r = try c.readResponse()
            #expect(r.status == 400 || r.status == 505, "\(r.statusLine)")
            #expect(r.header("Connection") == "close")
            #expect(try c.isClosedByPeer())
            #expect(waitUntil { admin.connectionCount() == 0 })
        }
    }

    @Test("random binary input never crashes the server; it keeps serving")
    func fuzz() throws {
        try withAdmin { admin in
            // A fixed seed, named in any failure, so that the same inputs can be replayed.
            var rng = SeededRandom(seed: 0x00EC_40D0_AD41_0001)
            for _ in 0..<50 {
                let c = try TestClient(port: admin.port)
                let count = Int.random(in: 1...3000, using: &rng)
                let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
                try? c.send(bytes)
                _ = try? c.readToEnd()
            }
            let c = try TestClient(port: admin.port)
            try c.send(get("/livez"))
            #expect(try c.readResponse().status == 200, "after 50 random inputs from seed \(rng.seed)")
        }
    }

    @Test("a slow sender gets 408 after the request timeout; an idle connection is just closed")
    func slowSender() throws {
        let limits = AdminServer.Limits(requestTimeout: .milliseconds(300), lingerTimeout: .milliseconds(200))
        try withAdmin(limits: limits) { admin in
            let slow = try TestClient(port: admin.port)
            let idle = try TestClient(port: admin.port)
            let start = monotonicNow()
            try slow.send("GET /livez HTTP/1.1\r\nHost: x\r\n")
            let r = try slow.readResponse()
            let elapsed = monotonicNow() - start
            #expect(r.status == 408)
            #expect(r.header("Connection") == "close")
            #expect(elapsed >= .milliseconds(290) && elapsed < .seconds(2), "408 after \(elapsed)")
            #expect(try slow.isClosedByPeer())
            #expect(try idle.readToEnd().isEmpty)
            #expect(waitUntil { admin.connectionCount() == 0 })
        }
    }

    @Test("a partial request still unread at the deadline gets 408, not a silent close (the sweep reads it first)")
    func slowSenderWhileTheLoopIsBusy() throws {
        // The loop is kept busy past the request timeout; the partial request arrives after the sweep's timer has
        // expired, so that the loop's next batch holds the timer before the connection's readiness. Without the read
        // in `AdminConnection.deadlinePassed` the sweep closes the connection as idle: the client gets no response.
        let limits = AdminServer.Limits(requestTimeout: .milliseconds(300))
        try withAdmin(limits: limits) { admin in
            let slow = try TestClient(port: admin.port)
            #expect(waitUntil { admin.connectionCount() == 1 })
            let busy = Locked(false)
            admin.loop.execute {
                busy.value = true
                usleep(900_000)
            }
            #expect(waitUntil { busy.value })
            usleep(600_000)  // past the deadline (300 ms) and a sweep period (75 ms) with margin: the timer expired
            try slow.send("GET /livez HTTP/1.1\r\nHost: x\r\n")
            let r = try slow.readResponse()
            #expect(r.status == 408)
            #expect(try slow.isClosedByPeer())
        }
    }

    @Test("the timeout is per request: a keep-alive client that keeps asking is not cut off")
    func timeoutRestartsPerRequest() throws {
        let limits = AdminServer.Limits(requestTimeout: .milliseconds(300))
        try withAdmin(limits: limits) { admin in
            let c = try TestClient(port: admin.port)
            for _ in 0..<6 {
                try c.send(get("/livez"))
                #expect(try c.readResponse().status == 200)
                usleep(150_000)
            }
        }
    }

    @Test("a request body is read and ignored; an oversized one gets 413")
    func bodies() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            try c.send("POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" + get("/livez"))
            #expect(try c.readResponse().status == 404)
            #expect(try c.readResponse().status == 200)
            try c.send("POST /livez HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            #expect(try c.readResponse().status == 405)
            try c.send("POST /livez HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            let big = try c.readResponse()
            #expect(big.status == 413)
            #expect(try c.isClosedByPeer())

            let chunked = try TestClient(port: admin.port)
            try chunked.send("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            let piece = "2000\r\n" + String(repeating: "z", count: 0x2000) + "\r\n"
            try? chunked.send(piece + piece)
            #expect(try chunked.readResponse().status == 413)
        }
    }

    @Test("Upgrade and CONNECT requests are answered, then the connection is closed")
    func upgrade() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            try c.send("GET /livez HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\u{81}\u{85}binary-frame")
            let r = try c.readResponse()
            #expect(r.status == 200)
            #expect(r.header("Connection") == "close")
            #expect(try c.isClosedByPeer())
            let connect = try TestClient(port: admin.port)
            try connect.send("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
            let rc = try connect.readResponse()
            #expect(rc.status == 404)
            #expect(try connect.isClosedByPeer())
        }
    }

    @Test("absolute-form targets are routed by their path")
    func absoluteForm() throws {
        try withAdmin { admin in
            let c = try TestClient(port: admin.port)
            try c.send("GET http://127.0.0.1:9/livez?verbose HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try c.readResponse().status == 200)
            #expect(admin.seen.value.first?.0.path == "/livez")
            #expect(admin.seen.value.first?.0.query == "verbose")
        }
    }

    @Test("at most maxConnections are open; a new one displaces the oldest idle one; the rest keep working")
    func connectionLimit() throws {
        try withAdmin(limits: AdminServer.Limits(maxConnections: 8)) { admin in
            var clients: [TestClient] = []
            for _ in 0..<8 {
                let c = try TestClient(port: admin.port)
                try c.send(get("/livez"))
                #expect(try c.readResponse().status == 200)
                clients.append(c)
            }
            clients.append(try TestClient(port: admin.port))
            try clients[8].send(get("/livez"))
            #expect(try clients[8].readResponse().status == 200)
            #expect(try clients.removeFirst().isClosedByPeer(), "the oldest idle keep-alive connection made room")
            for c in clients {
                try c.send(get("/healthz"))
                #expect(try c.readResponse().status == 200)
            }
            #expect(admin.connectionCount() == 8)
            clients.removeAll()
            #expect(waitUntil { admin.connectionCount() == 0 })
            let again = try TestClient(port: admin.port)
            try again.send(get("/livez"))
            #expect(try again.readResponse().status == 200)
        }
    }

    @Test("half-sent requests holding every slot cannot lock a health check out: each probe gets its 200")
    func slowlorisCannotLockOutProbes() throws {
        try withAdmin(limits: AdminServer.Limits(maxConnections: 8)) { admin in
            var slow: [TestClient] = []
            for _ in 0..<24 {
                let c = try TestClient(port: admin.port)
                try c.send("GET /livez HTTP/1.1\r\nHost: x\r\n")  // never finished
                slow.append(c)
            }
            for _ in 0..<10 {
                let probe = try TestClient(port: admin.port)
                try probe.send(get("/livez", "Connection: close\r\n"))
                #expect(try probe.readResponse().status == 200)
            }
            #expect(admin.connectionCount() <= 8)
            // The newest slow clients still hold their slots; the oldest were displaced (closed, no response).
            #expect(try slow[0].isClosedByPeer())
        }
    }

    @Test("when every connection is writing a response, a new one is refused rather than cutting a response")
    func refusedWhenAllAreAnswering() throws {
        let big = [UInt8](repeating: UInt8(ascii: "m"), count: 8 << 20)
        let limits = AdminServer.Limits(requestTimeout: .seconds(5), maxConnections: 2)
        try withAdmin(limits: limits, route: { _ in AdminResponse(status: 200, body: big) }) { admin in
            var stalled: [TestClient] = []
            for _ in 0..<2 {
                let c = try TestClient(port: admin.port)
                var small: Int32 = 4096
                setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
                try c.send(get("/metrics"))
                stalled.append(c)
            }
            #expect(waitUntil { admin.connectionCount() == 2 })
            let extra = try TestClient(port: admin.port)
            #expect(try extra.readToEnd().isEmpty)
            #expect(admin.connectionCount() == 2)
        }
    }

    @Test("many connections, concurrently and one after another")
    func manyConnections() throws {
        try withAdmin { admin in
            var open: [TestClient] = []
            for _ in 0..<64 { open.append(try TestClient(port: admin.port)) }
            for c in open { try c.send(get("/livez")) }
            for c in open { #expect(try c.readResponse().status == 200) }
            #expect(admin.connectionCount() == 64)
            open.removeAll()
            for _ in 0..<300 {
                let c = try TestClient(port: admin.port)
                try c.send(get("/readyz", "Connection: close\r\n"))
                #expect(try c.readResponse().status == 503)
            }
            #expect(waitUntil { admin.connectionCount() == 0 })
        }
    }

    @Test("a client that never reads a large response is cut off after the timeout")
    func stalledReader() throws {
        let big = [UInt8](repeating: UInt8(ascii: "m"), count: 8 << 20)
        let limits = AdminServer.Limits(requestTimeout: .milliseconds(300))
        try withAdmin(limits: limits, route: { _ in AdminResponse(status: 200, body: big) }) { admin in
            let c = try TestClient(port: admin.port)
            var small: Int32 = 4096
            setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &small, socklen_t(MemoryLayout<Int32>.size))
            try c.send(get("/metrics"))
            #expect(waitUntil(3) { admin.connectionCount() == 0 })
        }
    }

    @Test("stop() closes open connections")
    func stopCloses() throws {
        let admin = try RunningAdmin()
        let c = try TestClient(port: admin.port)
        try c.send(get("/livez"))
        #expect(try c.readResponse().status == 200)
        admin.shutdown()
        #expect(try c.isClosedByPeer())
    }

    /// Found by Fuzz/FuzzAdmin (input `]\n`, then the client's end of stream): the loop calls handlers without
    /// retaining them and `close()` drops the server's reference, the last one, so the connection was freed while
    /// its own `close()` and `AdminServer.connectionClosed` still used it. AddressSanitizer saw the use after free
    /// (`swift test --sanitize=address`); without it the freed memory usually still reads right.
    @Test("a bad request, then the client's end of stream: 400, closed, and the server goes on serving")
    func badRequestThenEndOfStream() throws {
        try withAdmin(limits: AdminServer.Limits(lingerTimeout: .milliseconds(200))) { admin in
            for _ in 0..<3 {
                let c = try TestClient(port: admin.port)
                try c.send("]\n")
                Syscall.shutdown(c.fd, Int32(SHUT_WR))
                #expect(try c.readResponse().status == 400)
                #expect(try c.isClosedByPeer())
            }
            #expect(waitUntil { admin.connectionCount() == 0 })
            let c = try TestClient(port: admin.port)
            try c.send(get("/livez"))
            #expect(try c.readResponse().status == 200)
        }
    }
}
