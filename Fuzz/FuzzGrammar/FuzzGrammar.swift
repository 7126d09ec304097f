// libFuzzer target: the grammars a user types (Fuzz/README.md). The input, as UTF-8 text (invalid bytes repaired),
// goes to each parser; each must return a value or throw its error, and what it prints of a value parses back to the
// same value.
import EchodConfig
import EchodSystem
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
        if let range = try? AddressRange(parsing: text) {
            let printed = range.description
            check((try? AddressRange(parsing: printed)) == range, "AddressRange prints as \(printed), which does not parse back to it")
            let network = SocketAddress(host: String(printed.prefix { $0 != "/" }), port: 1)
            check(network.map(range.contains) == true, "AddressRange \(printed) does not contain its own network address")
        }
        if let template = try? TagTemplate(parsing: text) {
            let printed = template.description
            check((try? TagTemplate(parsing: printed)) == template, "TagTemplate prints as \(printed), which does not parse back to it")
            check(text.utf8.count <= TagTemplate.maximumBytes, "TagTemplate accepted \(text.utf8.count) bytes")
            check(template.usesClient == template.segments.contains(.placeholder(.client)), "TagTemplate.usesClient disagrees with its segments")
            // Every placeholder as the input itself: the longest values a template can be given here.
            let expansion = template.render { _ in text }
            check(expansion.utf8.count <= TagTemplate.maximumExpansionBytes, "TagTemplate expanded to \(expansion.utf8.count) bytes")
        }
    }
}
