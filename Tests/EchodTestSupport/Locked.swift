import Synchronization

/// A value shared between a test and the threads it starts (a loop thread, a server thread, a callback).
package final class Locked<T>: @unchecked Sendable {
    private let mutex = Mutex<Void>(())
    private var _value: T

    package init(_ value: T) { _value = value }

    package var value: T {
        get { mutex.withLock { _ in _value } }
        set { mutex.withLock { _ in _value = newValue } }
    }

    package func update(_ body: (inout T) -> Void) { mutex.withLock { _ in body(&_value) } }
}
