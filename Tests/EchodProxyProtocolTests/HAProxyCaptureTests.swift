import EchodProxyProtocol
import Testing

/// Headers a real HAProxy 2.6.12 (Debian 12's `haproxy`) sent to its backend, each followed by the client's "hello\n"
/// (but for `v2-local`, HAProxy's own health check, which sends nothing after it).
/// Captured by `python3 Fuzz/capture_haproxy.py` (HAProxy with `send-proxy`, `send-proxy-v2`, `proxy-v2-options`,
/// `send-proxy-v2-ssl-cn` in front of a recording listener on loopback), which also writes them as fuzz seeds
/// (Fuzz/corpus/FuzzProxyProtocol/haproxy-*). The ports are whatever the kernel gave that run: after capturing again, paste
/// the hex it prints below and the new ports into the tests.
@Suite("Headers captured from HAProxy")
struct HAProxyCaptureTests {
    static let captures: [String: String] = [
        "v1-mapped":
            "50524f58592054435036203a3a666666663a3132372e302e302e31203a3a666666663a3132372e302e302e312033353432362033343138310d0a68656c6c6f0a",
        "v1-tcp4": "50524f58592054435034203132372e302e302e31203132372e302e302e312035363331322034323338310d0a68656c6c6f0a",
        "v1-tcp6": "50524f58592054435036203a3a31203a3a312035323031342034303134390d0a68656c6c6f0a",
        "v1-unix": "50524f585920554e4b4e4f574e0d0a68656c6c6f0a",
        "v2-local": "0d0a0d0a000d0a515549540a20000000",
        "v2-ssl":
            "0d0a0d0a000d0a515549540a2111007e7f0000017f000001a7a69aef030004ed104866010002683202000c6563686f2e6578616d706c6505002937463030303030313a413741365f37463030303030313a394145465f36423130313142365f303030392000280100000000210007544c5376312e33230016544c535f4145535f3235365f47434d5f53484133383468656c6c6f0a",
        "v2-tcp4": "0d0a0d0a000d0a515549540a2111000c7f0000017f000001ad628cdf68656c6c6f0a",
        "v2-tcp6": "0d0a0d0a000d0a515549540a21210024000000000000000000000000000000010000000000000000000000000000000182c8ccff68656c6c6f0a",
        "v2-tlvs":
            "0d0a0d0a000d0a515549540a2111003f7f0000017f0000019970c30f0300049e3e578c05002937463030303030313a393937305f37463030303030313a433330465f36423130313142365f3030303868656c6c6f0a",
        "v2-unix": "0d0a0d0a000d0a515549540a2000000068656c6c6f0a",
    ]

    static func bytes(_ name: String) -> [UInt8] {
        let hex = Array(captures[name]!.utf8)
        return stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
    }

    static let localhost = v4(127, 0, 0, 1, port: 0)

    /// Parses a capture, checks that exactly the client's "hello\n" follows the header, and returns the header.
    func parsed(_ name: String, _ mode: ProxyProtocolMode = .any) -> ProxyHeader? {
        let bytes = Self.bytes(name)
        guard case .complete(let header, let consumed) = parse(bytes, mode) else {
            Issue.record("\(name): \(parse(bytes, mode))")
            return nil
        }
        #expect(Array(bytes[consumed...]) == (name == "v2-local" ? [] : Array("hello\n".utf8)), "\(name)")
        expectSameAtEverySplit(bytes, mode)
        return header
    }

    static func ports(_ addresses: ProxyAddresses) -> (UInt16, UInt16)? {
        guard case .inet(let source, let destination) = addresses else { return nil }
        return (source.port, destination.port)
    }

    @Test func v1() throws {
        let tcp4 = try #require(parsed("v1-tcp4", .v1))
        #expect(tcp4.addresses == inet(v4(127, 0, 0, 1, port: 56312), v4(127, 0, 0, 1, port: 42381)))
        let tcp6 = try #require(parsed("v1-tcp6", .v1))
        #expect(tcp6.addresses == inet(ProxyAddress(ipv6: 1, port: 52014), ProxyAddress(ipv6: 1, port: 40149)))
        // A frontend on [::] with v4v6 sees an IPv4 client as a mapped address, and writes it so.
        let mapped = try #require(parsed("v1-mapped", .v1))
        let mappedLocalhost: UInt128 = 0xffff_7f00_0001
        #expect(mapped.addresses == inet(ProxyAddress(ipv6: mappedLocalhost, port: 35426), ProxyAddress(ipv6: mappedLocalhost, port: 34181)))
        // A Unix socket client: HAProxy says UNKNOWN.
        #expect(try #require(parsed("v1-unix", .v1)).addresses == .none)
    }

    @Test func v2() throws {
        let tcp4 = try #require(parsed("v2-tcp4", .v2))
        #expect(tcp4.command == .proxy)
        #expect(tcp4.addresses == inet(v4(127, 0, 0, 1, port: 0xad62), v4(127, 0, 0, 1, port: 0x8cdf)))
        #expect(tcp4.length == 28)
        let tcp6 = try #require(parsed("v2-tcp6", .v2))
        #expect(tcp6.addresses == inet(ProxyAddress(ipv6: 1, port: 0x82c8), ProxyAddress(ipv6: 1, port: 0xccff)))
        // Its own health check, and a Unix socket client: HAProxy sends LOCAL for both.
        for name in ["v2-local", "v2-unix"] {
            let local = try #require(parsed(name, .v2))
            #expect(local.command == .local && local.addresses == .none && local.length == 16, "\(name)")
        }
    }

    @Test func v2TLVs() throws {
        let bytes = Self.bytes("v2-tlvs")
        let header = try #require(parsed("v2-tlvs"))
        #expect(header.tlvs.crc32c == 0x9e3e_578c, "HAProxy's checksum verified")
        #expect(text(header.tlvs.uniqueID, in: bytes) == "7F000001:9970_7F000001:C30F_6B1011B6_0008")
        #expect(header.length == 16 + 63)
    }

    @Test func v2SSL() throws {
        let bytes = Self.bytes("v2-ssl")
        let header = try #require(parsed("v2-ssl"))
        #expect(text(header.tlvs.alpn, in: bytes) == "h2")
        #expect(text(header.tlvs.authority, in: bytes) == "echo.example")
        #expect(header.tlvs.crc32c != nil)
        let ssl = try #require(header.tlvs.ssl)
        #expect(ssl.client == 1, "PP2_CLIENT_SSL, no client certificate")
        #expect(text(ssl.version, in: bytes) == "TLSv1.3")
        #expect(text(ssl.cipher, in: bytes) == "TLS_AES_256_GCM_SHA384")
        #expect(ssl.commonName == nil)
    }

    @Test("a changed byte in a checksummed capture is caught")
    func corruptedCapture() {
        var bytes = Self.bytes("v2-tlvs")
        bytes[20] ^= 0x80  // a byte of the destination address
        guard case .invalid(.crc32cMismatch) = parse(bytes) else {
            Issue.record("\(parse(bytes))")
            return
        }
    }
}
