import Glibc

/// One parsed admin request, as handed to the route.
///
/// Only what routing needs: the body is never delivered (the admin endpoint has no request bodies) and headers
/// other than those that decide keep-alive are not kept.
package struct AdminRequest: Sendable, Equatable {
    /// `GET`, `HEAD`, `POST`, ... (as http-parser names it).
    package var method: String
    /// The path without the query, e.g. `/livez`. For an absolute-form target (`http://host/livez`) the path part.
    package var path: String
    /// What follows `?` (without the fragment), or nil when there is no `?`.
    package var query: String?
    /// Whether the connection stays open after the response (HTTP/1.1 default, HTTP/1.0 only with
    /// `Connection: keep-alive`). Informational for the route: the server decides.
    package var keepAlive: Bool

    package init(method: String, path: String, query: String? = nil, keepAlive: Bool = true) {
        self.method = method
        self.path = path
        self.query = query
        self.keepAlive = keepAlive
    }

    /// GET or HEAD: the methods every admin path serves (HEAD is answered as GET without the body, by the server).
    package var isGetOrHead: Bool { method == "GET" || method == "HEAD" }

    /// Whether the query has the flag `name` (`?verbose`, `?verbose=1`, `?a&verbose=true`); `name=0` and
    /// `name=false` count as absent.
    package func hasFlag(_ name: String) -> Bool {
        guard let query else { return false }
        for item in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts[0] == name else { continue }
            if parts.count == 1 { return true }
            let value = parts[1].lowercased()
            return value != "0" && value != "false" && value != "no"
        }
        return false
    }

    /// Splits a request target into path and query: origin form (`/a?b#c`), absolute form (`http://h:1/a?b`),
    /// or anything else (`*`, garbage), which is kept whole as the path.
    package static func splitTarget(_ target: String) -> (path: String, query: String?) {
        var rest = Substring(target)
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        if !rest.hasPrefix("/"), let schemeEnd = Self.endOfScheme(rest) {
            let authorityAndPath = rest[schemeEnd...]
            if let slash = authorityAndPath.firstIndex(where: { $0 == "/" || $0 == "?" }) {
                rest = authorityAndPath[slash...]
            } else {
                rest = "/"
            }
            if rest.hasPrefix("?") { rest = "/" + rest }
        }
        if let q = rest.firstIndex(of: "?") {
            return (String(rest[..<q]), String(rest[rest.index(after: q)...]))
        }
        return (String(rest), nil)
    }

    /// The index just past `://` in `http://host/...`, if the target starts with a scheme.
    private static func endOfScheme(_ s: Substring) -> Substring.Index? {
        guard let colon = s.firstIndex(of: ":") else { return nil }
        guard s[..<colon].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "+" || $0 == "-" || $0 == "." }) else { return nil }
        let after = s[colon...]
        guard after.hasPrefix("://") else { return nil }
        return s.index(colon, offsetBy: 3)
    }
}

/// What the route answers. The server adds the status line, `Content-Length`, `Date` and `Connection`, and drops
/// the body for HEAD (keeping its `Content-Length`, as RFC 9110 allows).
package struct AdminResponse: Sendable {
    package var status: Int
    package var contentType: String
    package var body: [UInt8]
    /// More header lines, e.g. `("Allow", "GET, HEAD")`. CR and LF are removed from names and values.
    package var extraHeaders: [(String, String)]

    package init(status: Int, contentType: String = AdminResponse.plainText, body: [UInt8] = [], extraHeaders: [(String, String)] = []) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.extraHeaders = extraHeaders
    }

    package static let plainText = "text/plain; charset=utf-8"
    /// The Prometheus text exposition format, version 0.0.4.
    package static let prometheusText = "text/plain; version=0.0.4; charset=utf-8"

    /// A plain-text response; `text` gets a trailing newline if it has none.
    package static func text(_ status: Int, _ text: String, extraHeaders: [(String, String)] = []) -> AdminResponse {
        var body = Array(text.utf8)
        if body.last != UInt8(ascii: "\n") { body.append(UInt8(ascii: "\n")) }
        return AdminResponse(status: status, body: body, extraHeaders: extraHeaders)
    }

    /// 404 for a path the endpoint does not have.
    package static func notFound(_ path: String) -> AdminResponse {
        .text(404, "not found: \(path)\nendpoints: /livez /healthz /readyz /metrics")
    }

    /// 405 with the `Allow` header listing what the path does accept.
    package static func methodNotAllowed(_ method: String, allow: [String] = ["GET", "HEAD"]) -> AdminResponse {
        .text(405, "method \(method) not allowed; allowed: \(allow.joined(separator: ", "))", extraHeaders: [("Allow", allow.joined(separator: ", "))])
    }

    /// The reason phrase for the status line.
    package static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 204: "No Content"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 413: "Content Too Large"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: "Status \(status)"
        }
    }

    /// The bytes on the wire: status line, headers, blank line and (unless `omitBody`) the body.
    func serialize(keepAlive: Bool, http10: Bool, omitBody: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160 + (omitBody ? 0 : body.count))
        func line(_ s: String) {
            out.append(contentsOf: s.utf8)
            out.append(13)
            out.append(10)
        }
        line("HTTP/1.1 \(status) \(Self.reason(status))")
        line("Content-Type: \(Self.clean(contentType))")
        line("Content-Length: \(body.count)")
        line("Date: \(httpDate())")
        if !keepAlive {
            line("Connection: close")
        } else if http10 {
            line("Connection: keep-alive")
        }
        for (name, value) in extraHeaders {
            line("\(Self.clean(name)): \(Self.clean(value))")
        }
        out.append(13)
        out.append(10)
        if !omitBody { out.append(contentsOf: body) }
        return out
    }

    private static func clean(_ s: String) -> String {
        s.contains(where: { $0 == "\r" || $0 == "\n" }) ? String(s.filter { $0 != "\r" && $0 != "\n" }) : s
    }
}

/// The current time as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), for the `Date` header.
func httpDate() -> String {
    var now = time(nil)
    var parts = tm()
    gmtime_r(&now, &parts)
    let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    let day = days[Int(parts.tm_wday) % 7]
    let month = months[Int(parts.tm_mon) % 12]
    return "\(day), \(two(parts.tm_mday)) \(month) \(parts.tm_year + 1900) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
}
