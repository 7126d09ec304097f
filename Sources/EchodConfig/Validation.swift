/// Checks that involve more than one value. Single values are checked by their parsers in ``Values``.
enum Validation {
    /// Why `address` cannot be bound next to `others`, or nil. Two listeners on the same port of the same
    /// family collide when the addresses are equal or either is the wildcard: without SO_REUSEPORT the second
    /// bind fails, and with it (echod's listeners use it) the kernel would split connections between them.
    static func conflict(_ address: ListenAddress, with others: some Collection<ListenAddress>) -> String? {
        for (index, other) in others.enumerated() where other.family == address.family && other.port == address.port {
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
        for (index, echo) in settings.listen.enumerated()
        where echo.family == admin.family && echo.port == admin.port
            && (echo == admin || echo.isWildcard || admin.isWildcard)
        {
            return "collides with listen item \(index) (\(echo)); the admin endpoint needs a port of its own"
        }
        return nil
    }

    /// Settings that are valid but probably not what was meant. They do not stop the daemon.
    static func warnings(_ settings: EchodSettings) -> [String] {
        var warnings: [String] = []
        if settings.maxConnectionsPerIP > settings.maxConnections {
            warnings.append(
                "limits.max_connections_per_ip (\(settings.maxConnectionsPerIP)) is above limits.max_connections (\(settings.maxConnections)): the global limit is reached first"
            )
        }
        return warnings
    }
}
