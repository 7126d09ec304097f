import EchodConfig
import EchodEcho
import EchodProxyProtocol
import EchodSystem
import EchodText
import Glibc

/// Turns `listen` entries into the echo layer's ``ListenerPolicy`` values, and numbers them for the loops.
///
/// A policy gets an index once, for its entry, its listener's label and the values its tag template names; the
/// loops keep each index's policy for as long as connections may carry it (a connection keeps the index it was
/// accepted with), so a reload that changes a listener's options gives it a new index instead of changing the old
/// one under open connections. Index 0 is a plain listener.
struct PolicyRegistry {
    private struct Key: Hashable {
        var entry: ListenEntry
        var label: String
        var values: [String]
    }

    private var indices: [Key: UInt16] = [:]
    private var next: UInt16 = 1

    /// The index and policy for a listener served by `entry` (nil: a socket no entry names, served plainly).
    mutating func policy(for entry: ListenEntry?, label: String, values: TagValues) -> (UInt16, ListenerPolicy) {
        guard let entry, !entry.isPlain else { return (0, .plain(label: label)) }
        let policy = ListenerPolicies.policy(entry, label: label, values: values)
        let key = Key(entry: entry, label: label, values: values.all)
        if let index = indices[key] { return (index, policy) }
        // 65,535 distinct option sets in one run (reloads that each change them): the last index is reused.
        let index = next
        if next < UInt16.max { next += 1 }
        indices[key] = index
        return (index, policy)
    }
}

/// What a tag template's placeholders stand for, apart from the listener and the client.
struct TagValues: Sendable {
    var hostname: String
    var instance: String
    var pid: String
    var pod: String
    var node: String

    init(instance: String, environment: [String: String]) {
        hostname = (try? Syscall.hostName()) ?? "localhost"
        self.instance = instance
        pid = String(getpid())
        pod = environment["POD_NAME"] ?? ""
        node = environment["NODE_NAME"] ?? ""
    }

    var all: [String] { [hostname, instance, pid, pod, node] }
}

enum ListenerPolicies {
    static func policy(_ entry: ListenEntry, label: String, values: TagValues) -> ListenerPolicy {
        var policy = ListenerPolicy(label: label)
        switch entry.proxyProtocol {
        case .off: policy.proxy = nil
        case .v1: policy.proxy = .v1
        case .v2: policy.proxy = .v2
        case .any: policy.proxy = .any
        }
        if case .ip = entry.target {
            let ranges = entry.proxyFrom
            policy.trusts = { peer in ranges.contains { $0.contains(peer) } }
        } else {
            // A Unix socket's file mode decides who may connect; every peer may send a header.
            policy.trusts = { _ in true }
        }
        policy.untrusted = entry.proxyUntrusted == .serve ? .serve : .refuse
        policy.headerTimeout = entry.proxyTimeout
        switch entry.tag {
        case .off: policy.tag = .off
        case .banner: policy.tag = .banner
        case .prefix: policy.tag = .prefix
        case .hostnameOnly: policy.tag = .hostnameOnly
        }
        policy.tagPieces = entry.tagText.segments.map { segment -> ListenerPolicy.TagPiece in
            switch segment {
            case .literal(let text): return .text(Array(text.utf8))
            case .placeholder(.client): return .client
            case .placeholder(.hostname): return .text(Array(values.hostname.utf8))
            case .placeholder(.instance): return .text(Array(values.instance.utf8))
            case .placeholder(.listener): return .text(Array(label.utf8))
            case .placeholder(.pid): return .text(Array(values.pid.utf8))
            case .placeholder(.pod): return .text(Array(values.pod.utf8))
            case .placeholder(.node): return .text(Array(values.node.utf8))
            }
        }
        return policy
    }

    /// The options that differ from a plain echo, for the start-up line: `proxy_protocol v2, tag banner`.
    static func optionsNote(_ entry: ListenEntry) -> String {
        var parts: [String] = []
        if entry.proxyProtocol != .off { parts.append("proxy_protocol \(entry.proxyProtocol.rawValue)") }
        if entry.tag != .off { parts.append("tag \(entry.tag.rawValue)") }
        return parts.joined(separator: ", ")
    }

    /// The entry whose options a listener takes: the one it was bound for; for a socket systemd passed, the entry
    /// whose `name` is the socket's `FileDescriptorName=`, else the one whose address is the socket's.
    static func entry(for listener: Listener, in entries: [ListenEntry]) -> ListenEntry? {
        if let configured = listener.configured {
            return entries.first { $0.target == configured }
        }
        if let name = listener.passedName, let named = entries.first(where: { $0.name == name }) {
            return named
        }
        return entries.first { entry in
            switch entry.target {
            case .ip(let address):
                guard let bound = listener.address, let wanted = SocketAddress(host: address.host, port: address.port) else { return false }
                return bound == wanted
            case .unix(let path):
                return listener.unixName == path.displayName
            }
        }
    }
}
