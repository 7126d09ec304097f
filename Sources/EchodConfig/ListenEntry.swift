import EchodSystem
import EchodText

/// `proxy_protocol`: whether a listener expects a PROXY protocol header before the client's bytes, and which version.
/// (EchodConfig names the setting; EchodProxyProtocol, which parses headers, is not a dependency of the configuration.)
package enum ProxyProtocolSetting: String, Sendable, Hashable, CaseIterable {
    case off, v1, v2, any
}

/// `proxy_protocol_untrusted`: what happens to a connection from outside `proxy_protocol_from`.
package enum UntrustedProxyPolicy: String, Sendable, Hashable, CaseIterable {
    /// Closed at accept, nothing echoed.
    case refuse
    /// Served as a plain echo, no header expected (a header it sends is echoed like any bytes).
    case serve
}

/// `tag`: what a listener adds to the echo so that a client behind a load balancer sees which backend answered.
package enum TagMode: String, Sendable, Hashable, CaseIterable {
    /// Byte-exact RFC 862 echo.
    case off
    /// One line, the expanded `tag_text`, on connect; then byte-exact echo.
    case banner
    /// Every line the client sends comes back as `<tag> <line>`.
    case prefix
    /// The expanded `tag_text` and a newline, then our side closes; nothing is echoed.
    case hostnameOnly = "hostname-only"
}

/// One `listen` entry: where to listen, and the options that belong to that listener alone.
///
/// In the file an entry is a plain string (`"127.0.0.1:8888"`) or a mapping with `address:` and options; the
/// environment and the command line give plain strings only. A plain string and a mapping without options are the
/// same entry (``isPlain``). Equality is what a reload compares.
package struct ListenEntry: Sendable, Hashable, CustomStringConvertible {
    package static let defaultProxyTimeout: Duration = .seconds(3)
    package static let proxyTimeoutRange: ClosedRange<Duration> = .seconds(1) ... .seconds(60)
    /// The names of passed sockets that have a role of their own in echod (the admin endpoint, the UDP echo).
    static let reservedNames: Set<String> = ["admin", "udp"]

    /// The address: TCP or a Unix stream socket.
    package var target: ListenTarget
    /// Matches a socket that systemd passes with `FileDescriptorName=` this name.
    package var name: String?
    package var proxyProtocol: ProxyProtocolSetting = .off
    /// Who may send a PROXY protocol header (TCP listeners; every Unix peer is trusted).
    package var proxyFrom: [AddressRange] = []
    package var proxyUntrusted: UntrustedProxyPolicy = .refuse
    /// The header must be complete within this long after accept.
    package var proxyTimeout: Duration = defaultProxyTimeout
    package var tag: TagMode = .off
    package var tagText: TagTemplate = .hostname

    /// An entry with every option at its default: what a plain string gives.
    package init(_ target: ListenTarget, name: String? = nil) {
        self.target = target
        self.name = name
    }

    /// No name and every option at its default: byte-exact echo, written as a plain string.
    package var isPlain: Bool {
        self == ListenEntry(target)
    }

    /// The address for a plain entry (`127.0.0.1:8888`), else the flow mapping of ``yaml``.
    package var description: String {
        isPlain ? target.description : yaml
    }

    /// The entry in config syntax, as `check-config` prints it: a quoted string for a plain entry, else a YAML flow
    /// mapping of the effective values. The PROXY protocol's options are shown when it is on or when they were set
    /// (then with it off, and a warning), `tag_text` likewise; so the text loads back to an equal entry.
    var yaml: String {
        guard !isPlain else { return quoted(target.description) }
        var fields = ["address: \(quoted(target.description))"]
        if let name { fields.append("name: \(quoted(name))") }
        fields.append("proxy_protocol: \(proxyProtocol.rawValue)")
        let proxyDefaults = ListenEntry(target)
        if proxyProtocol != .off || proxyFrom != proxyDefaults.proxyFrom || proxyUntrusted != proxyDefaults.proxyUntrusted
            || proxyTimeout != proxyDefaults.proxyTimeout
        {
            if !proxyFrom.isEmpty || target.ipAddress != nil {
                fields.append("proxy_protocol_from: [" + proxyFrom.map { quoted($0.description) }.joined(separator: ", ") + "]")
            }
            if proxyUntrusted != proxyDefaults.proxyUntrusted || target.ipAddress != nil {
                fields.append("proxy_protocol_untrusted: \(proxyUntrusted.rawValue)")
            }
            fields.append("proxy_protocol_timeout: \(Units.format(proxyTimeout))")
        }
        fields.append("tag: \(tag.rawValue)")
        if tag != .off || tagText != .hostname { fields.append("tag_text: \(quoted(tagText.description))") }
        return "{" + fields.joined(separator: ", ") + "}"
    }
}

/// One key of a `listen` mapping entry: its name, its shape, and how its text is parsed into the entry. The table in
/// ``ListenEntry/keys`` is the one list of these keys: the file walk checks names and shapes against it.
struct ItemKey {
    let name: String
    /// A YAML list of strings (`proxy_protocol_from`) rather than one value.
    let isList: Bool
    let expected: String
    /// Parses the value into `entry`; a problem names the list item it is about, if any.
    let apply: (FieldValue, inout ListenEntry) -> [(item: Int?, value: String, reason: String)]
}

extension ListenEntry {
    /// The keys of a mapping entry, in the order `check-config` prints them.
    static var keys: [ItemKey] {
        [
            scalar("address", expected: "HOST:PORT, unix:/PATH or unix:@NAME") { text, entry throws(InvalidValue) in
                entry.target = try Values.listenTarget(text)
            },
            scalar("name", expected: "a socket name, as systemd's FileDescriptorName= gives it") { text, entry throws(InvalidValue) in
                entry.name = try Values.socketName(text)
            },
            scalar("proxy_protocol", expected: "off, v1, v2 or any") { text, entry throws(InvalidValue) in
                entry.proxyProtocol = try Values.choice(text, of: ProxyProtocolSetting.self)
            },
            ItemKey(
                name: "proxy_protocol_from", isList: true,
                expected: "a list of CIDR ranges, e.g. [10.0.0.0/8, \"::1/128\"]",
                apply: { value, entry in
                    guard case .list(let items) = value else { return [] }
                    var ranges: [AddressRange] = []
                    var problems: [(item: Int?, value: String, reason: String)] = []
                    for (index, text) in items.enumerated() {
                        do throws(AddressRange.ParseError) {
                            ranges.append(try AddressRange(parsing: text))
                        } catch {
                            problems.append((index, text, error.reason))
                        }
                    }
                    entry.proxyFrom = ranges
                    return problems
                }),
            scalar("proxy_protocol_untrusted", expected: "refuse or serve") { text, entry throws(InvalidValue) in
                entry.proxyUntrusted = try Values.choice(text, of: UntrustedProxyPolicy.self)
            },
            scalar("proxy_protocol_timeout", expected: "a duration such as 3s") { text, entry throws(InvalidValue) in
                entry.proxyTimeout = try Units.parseDuration(text, in: proxyTimeoutRange)
            },
            scalar("tag", expected: "off, banner, prefix or hostname-only") { text, entry throws(InvalidValue) in
                entry.tag = try Values.choice(text, of: TagMode.self)
            },
            scalar("tag_text", expected: "a template such as \"{hostname} {instance}\"") { text, entry throws(InvalidValue) in
                entry.tagText = try TagTemplate(parsing: text)
            },
        ]
    }

    private static func scalar(
        _ name: String, expected: String, set: @escaping (String, inout ListenEntry) throws(InvalidValue) -> Void
    ) -> ItemKey {
        ItemKey(
            name: name, isList: false, expected: expected,
            apply: { value, entry in
                guard case .text(let text) = value else { return [] }
                do throws(InvalidValue) {
                    try set(text, &entry)
                    return []
                } catch {
                    return [(nil, text, error.reason)]
                }
            })
    }

    /// Parses item `index` of `listen`: the entry, or nil when it has a problem. Every problem is returned, each with the
    /// item's index, and for a mapping the key (`proxy_protocol_from[2]`) and its line.
    static func parse(_ item: ListItem, index: Int) -> (entry: ListenEntry?, problems: [ValueProblem]) {
        let fields: [ItemField]
        switch item {
        case .text(let text):
            do throws(InvalidValue) {
                return (ListenEntry(try Values.listenTarget(text)), [])
            } catch {
                return (nil, [ValueProblem(index: index, value: text, reason: error.reason)])
            }
        case .mapping(let found, let line), .partial(let found, let line):
            guard let address = found.first(where: { $0.name == "address" }) else {
                guard case .mapping = item else { return (nil, []) }  // an address the file walk refused
                let reason = "no address: a mapping entry needs address: HOST:PORT, unix:/PATH or unix:@NAME"
                return (nil, [ValueProblem(index: index, reason: reason, line: line)])
            }
            fields = [address] + found.filter { $0.name != "address" }
        }
        // The address is parsed first, so that the other keys are checked against a real target.
        var entry = ListenEntry(.unix(UnixPath(path: "/", isAbstract: false)))
        var problems: [ValueProblem] = []
        for field in fields {
            guard let key = keys.first(where: { $0.name == field.name }) else { continue }  // the file walk reported it
            for found in key.apply(field.value, &entry) {
                let line = found.item.flatMap { $0 < field.itemLines.count ? field.itemLines[$0] : nil } ?? field.line
                problems.append(
                    ValueProblem(
                        index: index, value: found.value, reason: found.reason,
                        field: field.name + (found.item.map { "[\($0)]" } ?? ""), line: line))
            }
            if field.name == "address" && !problems.isEmpty { return (nil, problems) }
        }
        // Of an item with refused keys or values, only the values are checked: without them, the combination is not what
        // the file says.
        guard case .mapping = item, problems.isEmpty else { return (nil, problems) }
        problems += Validation.options(entry, item: item).map { field, reason in
            ValueProblem(index: index, reason: reason, field: field, line: item.line(of: field))
        }
        return (problems.isEmpty ? entry : nil, problems)
    }
}
