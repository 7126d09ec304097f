/// A Unix-domain stream socket address as a user writes it: `unix:/run/echod/echo.sock` (a file) or `unix:@name`
/// (Linux's abstract namespace: no file, gone with the last socket that holds it; what containers share through a
/// network namespace).
///
/// The one grammar for Unix addresses, wherever a user types one: `listen` in the configuration file, `--listen`,
/// `ECHOD_LISTEN`, and `echod probe unix:...`. A file path must be absolute: a daemon's working directory is `/`
/// under systemd but the operator's shell directory under `check-config` and `probe`, so a relative path would name
/// two different files.
package struct UnixPath: Sendable, Hashable, CustomStringConvertible {
    /// The scheme that marks a Unix address among `HOST:PORT` ones.
    package static let prefix = "unix:"
    /// `sun_path` holds 108 bytes: a file path needs its terminating NUL, an abstract name its leading NUL.
    package static let maximumBytes = 107

    /// The file path (`/run/echod/echo.sock`), or the abstract name without its `@` (`echod`).
    package var path: String
    /// In the abstract namespace (written `@name`): no file is created, and there is nothing to remove or chmod.
    package var isAbstract: Bool

    package init(path: String, isAbstract: Bool) {
        self.path = path
        self.isAbstract = isAbstract
    }

    /// Whether `text` is meant as a Unix address (starts with `unix:`), so that callers pick this parser.
    package static func isUnix(_ text: String) -> Bool {
        text.hasPrefix(prefix)
    }

    /// Parses `unix:/absolute/path` or `unix:@name`. The error names what is wrong and shows the expected form.
    package init(parsing text: String) throws(InvalidValue) {
        guard Self.isUnix(text) else {
            throw InvalidValue(reason: "expected unix:/PATH or unix:@NAME, e.g. unix:/run/echod/echo.sock")
        }
        let rest = String(text.dropFirst(Self.prefix.count))
        guard !rest.isEmpty else {
            throw InvalidValue(reason: "empty socket path; expected unix:/PATH or unix:@NAME, e.g. unix:/run/echod/echo.sock")
        }
        if rest.utf8.contains(0) { throw InvalidValue(reason: "a socket path cannot contain a NUL byte") }
        if rest.hasPrefix("@") {
            let name = String(rest.dropFirst())
            guard !name.isEmpty else { throw InvalidValue(reason: "empty abstract socket name after \"@\"; e.g. unix:@echod") }
            try Self.checkLength(name)
            self.init(path: name, isAbstract: true)
            return
        }
        guard rest.hasPrefix("/") else {
            throw InvalidValue(
                reason: "the socket path must be absolute (starting with /): \(quoted(rest)) would depend on the working directory")
        }
        guard !rest.hasSuffix("/") else { throw InvalidValue(reason: "names a directory; expected a socket file path") }
        try Self.checkLength(rest)
        self.init(path: rest, isAbstract: false)
    }

    private static func checkLength(_ name: String) throws(InvalidValue) {
        let count = name.utf8.count
        guard count <= maximumBytes else {
            throw InvalidValue(reason: "path too long (\(count) bytes, the limit is \(maximumBytes))")
        }
    }

    /// `/run/echod/echo.sock` or `@name`: how logs name the socket.
    package var displayName: String {
        isAbstract ? "@" + path : path
    }

    /// `unix:/run/echod/echo.sock` or `unix:@name`: the form `init(parsing:)` accepts.
    package var description: String {
        Self.prefix + displayName
    }
}
