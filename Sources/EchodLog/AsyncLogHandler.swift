import Logging

/// The swift-log handler of an ``AsyncLogBackend``; made by ``AsyncLogBackend/makeHandler(label:)``.
///
/// `log(event:)` merges metadata (handler, metadata provider, call site; later wins), stamps the time and enqueues.
/// Metadata values are not rendered here.
package struct AsyncLogHandler: LogHandler {
    /// The logger's label, printed with each record.
    package let label: String
    /// Handler metadata, merged into every record.
    package var metadata: Logger.Metadata = [:]
    /// Called on each log call (on the caller's thread: providers should be cheap).
    package var metadataProvider: Logger.MetadataProvider?

    let core: LogCore
    private var levelOverride: Logger.Level?

    init(label: String, core: LogCore, metadataProvider: Logger.MetadataProvider?) {
        self.label = label
        self.core = core
        self.metadataProvider = metadataProvider
    }

    /// The backend's level (one atomic shared by all handlers, changed by `apply`), unless this handler's level was
    /// set, which then overrides it for this logger only (swift-log's value semantics).
    package var logLevel: Logger.Level {
        get { levelOverride ?? core.currentLevel }
        set { levelOverride = newValue }
    }

    /// Reads or writes one handler metadata value.
    package subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    /// Enqueues the event; never blocks, never does I/O.
    package func log(event: LogEvent) {
        var event = event
        let provided = metadataProvider?.get() ?? [:]
        let explicit = event.metadata ?? [:]
        if provided.isEmpty && explicit.isEmpty {
            // Common case: share the handler's dictionary (copy-on-write, no copy made).
            event.metadata = metadata.isEmpty ? nil : metadata
        } else if provided.isEmpty && metadata.isEmpty {
            // Only call-site metadata: use it as it is (no copy).
        } else {
            var merged = metadata
            if !provided.isEmpty { merged.merge(provided) { _, new in new } }
            if !explicit.isEmpty { merged.merge(explicit) { _, new in new } }
            event.metadata = merged
        }
        core.submit(LogRecord(label: label, event: event))
    }
}
