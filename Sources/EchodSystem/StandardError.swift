import Glibc

/// Writes `text` to the process's stderr (fd 2), whole: the one way echod writes there outside the log backend
/// (usage errors, `check-config` reports, a start-up failure before logging exists). Failures are ignored:
/// there is nowhere left to report them.
package func writeStderr(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        _ = Syscall.writeAll(2, UnsafeRawBufferPointer(bytes))
    }
}

/// Writes `text` to stdout (fd 1), whole; for reports a command prints (`echod bench`, `echod probe`). A closed
/// pipe (`echod bench | head`) ends the write quietly: SIGPIPE is ignored by the caller or ends the process.
package func writeStdout(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        _ = Syscall.writeAll(1, UnsafeRawBufferPointer(bytes))
    }
}
