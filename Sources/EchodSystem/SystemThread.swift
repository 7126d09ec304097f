import CEchodLinux
import Glibc

/// A named POSIX thread: the event loops, the log writer and background work all start theirs here. Plain pthreads:
/// nothing below the daemon uses Foundation or Dispatch.
package final class SystemThread: @unchecked Sendable {
    private var handle: pthread_t?

    private final class Start {
        let name: String
        let body: () -> Void
        init(name: String, body: @escaping () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts `body` on a new thread named `name` (cut to the kernel's 15 bytes; shown by `top -H`, `ps -L`, perf
    /// and /proc/PID/task/TID/comm). The thread names itself before `body` runs, so its first log lines and any
    /// crash report already carry the name. `stackSize` nil keeps the system default.
    package init(name: String, stackSize: Int? = nil, _ body: @escaping () -> Void) throws(IOError) {
        let context = Unmanaged.passRetained(Start(name: name, body: body)).toOpaque()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if let stackSize { pthread_attr_setstacksize(&attributes, stackSize) }
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, &attributes,
            { raw in
                let start = Unmanaged<Start>.fromOpaque(raw!).takeRetainedValue()
                SystemThread.nameCurrent(start.name)
                start.body()
                return nil
            }, context)
        guard rc == 0 else {
            Unmanaged<Start>.fromOpaque(context).release()
            throw IOError("pthread_create", errno: rc)
        }
        handle = thread
    }

    /// Waits for the thread to end (once; later calls return at once).
    package func join() {
        guard let thread = handle else { return }
        pthread_join(thread, nil)
        handle = nil
    }

    /// Lets the thread run on without anyone joining it (its resources are freed when it ends).
    package func detach() {
        guard let thread = handle else { return }
        pthread_detach(thread)
        handle = nil
    }

    /// Names the calling thread. The corresponding C function is `pthread_setname_np`.
    package static func nameCurrent(_ name: String) {
        _ = echod_set_thread_name(pthread_self(), String(name.utf8.prefix(15))!)
    }
}
