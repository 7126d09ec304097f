// libFuzzer target: the grammars a user types (Fuzz/README.md). The input, as UTF-8 text (invalid bytes repaired),
// goes to each parser; each must return a value or throw its error, and what it prints of a value parses back to the
// same value.
import EchodConfig
import EchodText
import FuzzSupport

@main
enum FuzzGrammar: FuzzTarget {
    static func fuzz(_ input: UnsafeRawBufferPointer) {
        let text = String(decoding: input, as: UTF8.self)

        if let duration = try? Units.parseDuration(text) {
            let printed = Units.format(duration)
            check((try? Units.parseDuration(printed)) == duration, "Units.format(\(duration)) = \(printed) does not parse back")
        }
        if let bytes = try? Units.parseSize(text) {
            let printed = Units.formatSize(bytes)
            check((try? Units.parseSize(printed)) == bytes, "Units.formatSize(\(bytes)) = \(printed) does not parse back")
        }
        if let hostPort = try? HostPort(parsing: text) {
            let printed = hostPort.description
            check((try? HostPort(parsing: printed)) == hostPort, "HostPort \(hostPort) prints as \(printed), which does not parse back to it")
        }
        if let address = try? ListenAddress(parsing: text) {
            let printed = address.description
            check((try? ListenAddress(parsing: printed)) == address, "ListenAddress prints as \(printed), which does not parse back to it")
        }
        if let path = try? UnixPath(parsing: text) {
            let printed = path.description
            check((try? UnixPath(parsing: printed)) == path, "UnixPath prints as \(printed), which does not parse back to it")
            check(path.path.utf8.count <= UnixPath.maximumBytes, "UnixPath \(printed) is longer than sun_path holds")
        }
        if let target = try? ListenTarget(parsing: text) {
            let printed = target.description
            check((try? ListenTarget(parsing: printed)) == target, "ListenTarget prints as \(printed), which does not parse back to it")
        }
    }
}
