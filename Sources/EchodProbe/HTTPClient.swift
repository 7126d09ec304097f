import EchodSystem
import Glibc

/// The probe's HTTP/1.x client: just enough to send one request and judge the answer (status line, headers,
/// and the first line of the body for the failure message). No keep-alive, no chunked decoding: the request says
/// `Connection: close`, and a body is read only as far as `Content-Length`, the end of stream or 64 KiB.
enum HTTPClient {
    struct Response {
        var status: Int
        var firstBodyLine: String
    }

    /// At most this much of a response is read (headers included).
    static let maximumResponseBytes = 64 * 1024

    /// Sends `request` on `connection` and reads the response up to the deadline. When the deadline passes after the
    /// status and headers are in, those are judged (a slow body does not make a ready endpoint unready).
    static func exchange(on connection: ProbeConnection, request: [UInt8], deadline: Deadline) -> Result<Response, ProbeFailure> {
        var sent = 0
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        var headerEnd: Int?
        var bodyLength: Int?
        var ended = false
        while true {
            if let end = headerEnd {
                let have = buffer.count - end
                if ended || (bodyLength.map { have >= $0 } ?? false) || have >= maximumResponseBytes { break }
            } else if ended {
                return .failure(ProbeFailure(buffer.isEmpty ? "connection closed without a response" : "connection closed inside the response headers"))
            }
            let events: Int16
            do throws(IOError) {
                guard let ready = try connection.wait(write: sent < request.count, until: deadline) else {
                    if headerEnd != nil { break }  // status and headers are in: enough to judge
                    return .failure(ProbeFailure("timed out after \(deadline.timeoutText) waiting for the response"))
                }
                events = ready
            } catch {
                return .failure(ProbeFailure("poll: \(errorText(error))"))
            }
            if sent < request.count && events & Int16(POLLOUT) != 0 {
                do throws(IOError) {
                    sent += try connection.send(request, from: sent)
                } catch {
                    return .failure(ProbeFailure("send failed: \(errorText(error))"))
                }
            }
            guard events & readableEvents != 0 else { continue }
            let count: Int
            do throws(IOError) {
                guard let n = try connection.receive(into: &chunk, limit: chunk.count) else { continue }
                count = n
            } catch {
                // A reset after the headers still leaves an answer to judge.
                if headerEnd != nil {
                    ended = true
                    continue
                }
                return .failure(ProbeFailure("receive failed: \(errorText(error))"))
            }
            if count == 0 {
                ended = true
                continue
            }
            buffer.append(contentsOf: chunk[0..<count])
            if headerEnd == nil, let end = find([13, 10, 13, 10], in: buffer) {
                headerEnd = end + 4
                bodyLength = contentLength(buffer[0..<end])
            }
            if headerEnd == nil && buffer.count > maximumResponseBytes {
                return .failure(ProbeFailure("response headers larger than \(maximumResponseBytes) bytes"))
            }
        }
        let end = headerEnd!
        let head = String(decoding: buffer[0..<end], as: UTF8.self)
        let statusLine = head.split(separator: "\r\n", maxSplits: 1).first ?? ""
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), parts[1].count == 3, let status = Int(parts[1]) else {
            return .failure(ProbeFailure("not an HTTP response: \(String(statusLine.prefix(80)))"))
        }
        var body = buffer[end...]
        if let length = bodyLength, body.count > length { body = body.prefix(length) }
        let firstLine = String(decoding: body.prefix { $0 != 10 && $0 != 13 }, as: UTF8.self)
        return .success(Response(status: status, firstBodyLine: String(firstLine.prefix(200))))
    }

    /// The `Content-Length` header's value, if there is one.
    static func contentLength(_ head: ArraySlice<UInt8>) -> Int? {
        let text = String(decoding: head, as: UTF8.self)
        for line in text.split(separator: "\r\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            if line[..<colon].lowercased() == "content-length" {
                return Int(line[line.index(after: colon)...].trimmingPrefix(" "))
            }
        }
        return nil
    }

    /// The first index of `needle` in `haystack`.
    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        var i = 0
        while i <= haystack.count - needle.count {
            if haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
            i += 1
        }
        return nil
    }
}
