import EchodText

/// Checks that involve more than one value. Single values are checked by their parsers in ``Values``.
enum Validation {
    /// Why `address` cannot be bound next to `others`, or nil. Two listeners on the same port of the same
    /// family collide when the addresses are equal or either is the wildcard: without SO_REUSEPORT the second
    /// bind fails, and with it (echod's listeners use it) the kernel would split connections between them.
    /// A Unix socket collides only with the same path or abstract name listed twice (two spellings of one file, such
    /// as a path through a symbolic link, are caught by the second bind, which finds the first one's socket live).
    static func conflict(_ target: ListenTarget, with others: some Collection<ListenTarget>) -> String? {
        switch target {
        case .unix(let path):
            for (index, other) in others.enumerated() where other == .unix(path) {
                return "listed twice (also item \(index))"
            }
            return nil
        case .ip(let address):
            let ip = others.enumerated().compactMap { item in item.element.ipAddress.map { (item.offset, $0) } }
            return conflict(address, with: ip)
        }
    }

    /// The same check for a list of IP addresses alone (items numbered from 0).
    static func conflict(_ address: ListenAddress, with others: some Collection<ListenAddress>) -> String? {
        conflict(address, with: others.enumerated().map { ($0.offset, $0.element) })
    }

    private static func conflict(_ address: ListenAddress, with others: [(index: Int, address: ListenAddress)]) -> String? {
        for (index, other) in others where other.family == address.family && other.port == address.port {
            if other == address { return "listed twice (also item \(index))" }
            if other.isWildcard || address.isWildcard {
                return "overlaps item \(index) (\(other)): a wildcard address already covers every address of its family on that port"
            }
        }
        return nil
    }

    /// Why the admin endpoint cannot share its address with the echo listeners, or nil.
    static func adminConflict(_ settings: EchodSettings) -> String? {
        guard let admin = settings.adminListen else { return nil }
        for (index, target) in settings.listen.map(\.target).enumerated() {
            guard let echo = target.ipAddress, echo.family == admin.family, echo.port == admin.port,
                echo == admin || echo.isWildcard || admin.isWildcard
            else { continue }
            return "collides with listen item \(index) (\(target)); the admin endpoint needs a port of its own"
        }
        return nil
    }

    /// What is wrong with the combination of one `listen` entry's options, as (key, reason). `item` tells which keys were
    /// written: an option given where it cannot apply is refused even at its default value.
    static func options(_ entry: ListenEntry, item: ListItem) -> [(field: String, reason: String)] {
        var problems: [(field: String, reason: String)] = []
        if entry.target.ipAddress != nil {
            // Without a list every source could claim any address: the point of the header is that only proxies send it.
            if entry.proxyProtocol != .off && entry.proxyFrom.isEmpty {
                problems.append(
                    (
                        item.has("proxy_protocol_from") ? "proxy_protocol_from" : "proxy_protocol",
                        "proxy_protocol_from is required with proxy_protocol \(entry.proxyProtocol.rawValue) on a TCP listener: "
                            + "list your proxies' addresses; [0.0.0.0/0, \"::/0\"] trusts every source"
                    ))
            }
        } else {
            for field in ["proxy_protocol_from", "proxy_protocol_untrusted"] where item.has(field) {
                problems.append((field, "not allowed on a unix: listener: its file mode decides who connects, and every peer is trusted"))
            }
        }
        if entry.tag == .prefix && entry.tagText.containsNewline {
            problems.append(
                (item.has("tag_text") ? "tag_text" : "tag", "contains a line feed; tag: prefix puts the tag before every line, so it must be one line"))
        }
        return problems
    }

    /// Settings that are valid but probably not what was meant. They do not stop the daemon.
    static func warnings(_ settings: EchodSettings) -> [String] {
        var warnings: [String] = []
        if settings.maxConnectionsPerIP > settings.maxConnections {
            warnings.append(
                "limits.max_connections_per_ip (\(settings.maxConnectionsPerIP)) is above limits.max_connections (\(settings.maxConnections)): the global limit is reached first"
            )
        }
        let plain = ListenEntry(.unix(UnixPath(path: "/", isAbstract: false)))
        for (index, entry) in settings.listen.enumerated() {
            let proxyOptions = entry.proxyFrom != plain.proxyFrom || entry.proxyUntrusted != plain.proxyUntrusted || entry.proxyTimeout != plain.proxyTimeout
            if entry.proxyProtocol == .off && proxyOptions {
                warnings.append("listen[\(index)] (\(entry.target)): proxy_protocol is off, so its other proxy_protocol_* keys do nothing")
            }
            if entry.tag == .off && entry.tagText != plain.tagText {
                warnings.append("listen[\(index)] (\(entry.target)): tag is off, so tag_text does nothing")
            }
        }
        return warnings
    }
}
