import EchodText

/// One `listen` entry: a TCP address (`HOST:PORT`, ``ListenAddress``) or a Unix stream socket (`unix:/PATH` or
/// `unix:@NAME`, ``UnixPath``). The prefix decides which grammar parses the text.
package enum ListenTarget: Sendable, Hashable, CustomStringConvertible {
    case ip(ListenAddress)
    case unix(UnixPath)

    /// Parses `127.0.0.1:8888`, `[::1]:8888`, `unix:/run/echod/echo.sock` or `unix:@echod`. The thrown problem has an
    /// empty `source` and `key`, as ``ListenAddress/init(parsing:)``'s.
    package init(parsing text: String) throws(ConfigProblem) {
        guard UnixPath.isUnix(text) else {
            self = .ip(try ListenAddress(parsing: text))
            return
        }
        do {
            self = .unix(try UnixPath(parsing: text))
        } catch {
            throw ConfigProblem(source: "", key: "", value: text, reason: error.reason)
        }
    }

    /// The TCP address, or nil for a Unix socket.
    package var ipAddress: ListenAddress? {
        if case .ip(let address) = self { return address }
        return nil
    }

    /// The form `init(parsing:)` accepts.
    package var description: String {
        switch self {
        case .ip(let address): address.description
        case .unix(let path): path.description
        }
    }
}
