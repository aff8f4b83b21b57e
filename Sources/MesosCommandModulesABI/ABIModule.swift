import CMesosCommandModules
import Glibc
import Logging
import MesosCommandModules
import Synchronization

/// The engine behind an `mcm_module *`: a hook or an isolator, and the events it is running (for `mcm_cancel`
/// and `mcm_module_destroy`).
final class ABIModule: Sendable {
    enum Instance: Sendable {
        case hook(HookModule)
        case isolator(IsolatorModule)
    }

    let instance: Instance
    let log: LogSink
    /// The module_name as a C string, for `mcm_module_name`; freed with the module.
    nonisolated(unsafe) let name: UnsafeMutablePointer<CChar>
    private let running = Mutex<(next: UInt64, tasks: [UInt64: Task<Void, Never>])>((1, [:]))

    init(instance: Instance, name: String, log: LogSink) {
        self.instance = instance
        self.name = strdup(name)
        self.log = log
    }

    deinit { free(name) }

    var configuration: ModuleConfiguration {
        switch instance {
        case .hook(let hook): hook.configuration
        case .isolator(let isolator): isolator.configuration
        }
    }

    var metrics: ModuleMetrics {
        switch instance {
        case .hook(let hook): hook.metrics
        case .isolator(let isolator): isolator.metrics
        }
    }

    /// Starts `body` as a cancellable event; returns its token.
    func start(_ body: @escaping @Sendable () async -> Void) -> UInt64 {
        running.withLock { state in
            let token = state.next
            state.next += 1
            state.tasks[token] = Task {
                await body()
                self.finished(token)
            }
            return token
        }
    }

    private func finished(_ token: UInt64) {
        _ = running.withLock { $0.tasks.removeValue(forKey: token) }
    }

    func cancel(_ token: UInt64) {
        running.withLock { $0.tasks[token] }?.cancel()
    }

    /// Cancels every running event and waits (up to `seconds`) for them to deliver their callbacks.
    func cancelAll(waitingUpTo seconds: Double) {
        for task in running.withLock({ Array($0.tasks.values) }) { task.cancel() }
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while running.withLock({ !$0.tasks.isEmpty }) && ContinuousClock.now < deadline {
            usleep(1000)
        }
    }
}

/// Where a module's log lines go: the shim's callback until the module is destroyed, then nowhere.
final class LogSink: Sendable {
    private struct Target: @unchecked Sendable {
        var callback: mcm_log_callback
        var context: UnsafeMutableRawPointer?
    }

    private let target: Mutex<Target?>

    init(callback: mcm_log_callback?, context: UnsafeMutableRawPointer?) {
        target = Mutex(callback.map { Target(callback: $0, context: context) })
    }

    func write(_ level: mcm_log_level, _ message: String) {
        // Under the lock, so that no line is delivered after `close()` returns.
        target.withLock { target in
            guard let target else { return }
            var text = message
            text.withUTF8 { bytes in
                bytes.withMemoryRebound(to: CChar.self) { chars in
                    target.callback(target.context, level, chars.baseAddress, chars.count)
                }
            }
        }
    }

    func close() { target.withLock { $0 = nil } }

    var logger: Logger {
        Logger(label: "mesos-command-modules") { _ in Handler(sink: self) }
    }

    struct Handler: LogHandler {
        let sink: LogSink
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let level: mcm_log_level
            switch event.level {
            case .trace, .debug: level = MCM_LOG_DEBUG
            case .info, .notice: level = MCM_LOG_INFO
            case .warning: level = MCM_LOG_WARNING
            case .error, .critical: level = MCM_LOG_ERROR
            }
            sink.write(level, event.message.description)
        }
    }
}
