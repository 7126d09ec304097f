import CFuzzer
import Glibc

/// A libFuzzer target: `@main` on a type with `fuzz(_:)`, in a file of its own under Fuzz/ (Fuzz/README.md).
///
/// SwiftPM gives every executable its own entry point name, so libFuzzer's `main` cannot be used: `main()` here
/// starts libFuzzer's driver with the command line, which then calls `fuzz` with each input.
package protocol FuzzTarget {
    /// One input. Return normally for any input; a crash or a `check` that fails is a finding.
    static func fuzz(_ input: UnsafeRawBufferPointer)
    /// libFuzzer flags this target always needs, placed before the command line's (which may override them).
    static var flags: [String] { get }
}

/// The running target's `fuzz`, reached from libFuzzer's C callback (which cannot capture it).
nonisolated(unsafe) private var current: ((UnsafeRawBufferPointer) -> Void)?

extension FuzzTarget {
    package static var flags: [String] { [] }

    package static func main() {
        current = fuzz
        let arguments = [CommandLine.arguments[0]] + flags + CommandLine.arguments.dropFirst()
        // Kept for the whole run: libFuzzer holds on to argv.
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = .allocate(capacity: arguments.count + 1)
        for (i, argument) in arguments.enumerated() { argv![i] = strdup(argument) }
        argv![arguments.count] = nil
        var argc = Int32(arguments.count)
        let status = LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            current!(UnsafeRawBufferPointer(start: data, count: size))
            return 0
        }
        exit(status)
    }
}

/// A broken property is a finding: stop with the message so that libFuzzer saves the input.
package func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}
