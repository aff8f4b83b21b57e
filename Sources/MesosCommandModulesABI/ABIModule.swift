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
    let latency: LatencySink
    /// The module_name as a C string, for `mcm_module_name`; freed with the module.
    nonisolated(unsafe) let name: UnsafeMutablePointer<CChar>
    private let running = Mutex<[UInt64: RunningEvent]>([:])

    private struct RunningEvent {
        /// Nil while the task's first part runs on Mesos' thread (see `start`).
        var task: Task<Void, Never>?
        let reply: Reply
        /// Cancelled before its task was known: cancelled as soon as it is.
        var cancelRequested = false
    }

    /// The event's task, to cancel outside the lock (a cancellation handler may finish the event); an event whose task
    /// is not known yet is marked, and `start` cancels it once it is.
    private func taskToCancel(_ token: UInt64, in running: inout [UInt64: RunningEvent]) -> Task<Void, Never>? {
        if running[token]?.task == nil { running[token]?.cancelRequested = true }
        return running[token]?.task
    }

    /// How long past `grace_period` `mcm_module_destroy` waits for running events before it answers them
    /// itself: a cancelled command is killed within the grace period, so only a process stuck in the kernel
    /// takes longer.
    static let destroyMargin = 2.0

    /// Tokens of `mcm_run_event`, process-wide and never 0.
    private static let nextToken = Atomic<UInt64>(1)

    static func makeToken() -> UInt64 { nextToken.wrappingAdd(1, ordering: .relaxed).oldValue }

    init(instance: Instance, name: String, log: LogSink, latency: LatencySink) {
        self.instance = instance
        self.name = name.withCString { source in
            let copy = UnsafeMutablePointer<CChar>.allocate(capacity: strlen(source) + 1)
            strcpy(copy, source)
            return copy
        }
        self.log = log
        self.latency = latency
    }

    deinit { name.deallocate() }

    var configuration: ModuleConfiguration {
        switch instance {
        case .hook(let hook): hook.configuration
        case .isolator(let isolator): isolator.configuration
        }
    }

    func stopWorkers() {
        switch instance {
        case .hook(let hook): hook.stopWorkers()
        case .isolator(let isolator): isolator.stopWorkers()
        }
    }

    func workerRestarts(_ event: Event) -> Int {
        switch instance {
        case .hook(let hook): hook.workerRestarts(event)
        case .isolator(let isolator): isolator.workerRestarts(event)
        }
    }

    func breaker(_ event: Event) -> BreakerState? {
        switch instance {
        case .hook(let hook): hook.breaker(event)
        case .isolator(let isolator): isolator.breaker(event)
        }
    }

    var metrics: ModuleMetrics {
        switch instance {
        case .hook(let hook): hook.metrics
        case .isolator(let isolator): isolator.metrics
        }
    }

    /// Starts `body` as a cancellable event whose outcome goes to `reply`; returns its token. `executor`: where
    /// the event's task runs (``EventExecution``; nil: Swift's pool).
    ///
    /// On the loop, the task starts on the calling thread (``EventExecution/startHere(_:)``): an event that never blocks does its
    /// first part — envelope, request written to its worker — on Mesos' thread, which would otherwise only hand it
    /// over, and goes on on the loop from its first suspension (the answer, read by the loop). An event answered
    /// without waiting (an open breaker, a worker backing off, an answer read before the request's writer suspended)
    /// has its callback called from the loop: never from the calling thread, as for any event.
    func start(_ reply: Reply, on executor: (any TaskExecutor)? = nil, _ body: @escaping @Sendable () async -> Outcome)
        -> UInt64
    {
        let token = Self.makeToken()
        let answer: @Sendable (Outcome) -> Void = { outcome in
            reply.send(outcome)
            self.finished(token)
        }
        guard let executor else {
            HandOvers.note()  // from Mesos' thread to Swift's pool
            running.withLock { running in
                running[token] = RunningEvent(task: Task { answer(await body()) }, reply: reply)
            }
            return token
        }
        // Known before the task runs, which may finish before it is created: `finished` then removed it.
        running.withLock { $0[token] = RunningEvent(task: nil, reply: reply) }
        let task = EventExecution.startHere {
            Task(executorPreference: executor) {
                let outcome = await body()
                if EventExecution.onTheCreatorsThread {
                    EventExecution.handToTheLoop { answer(outcome) }
                } else {
                    answer(outcome)
                }
            }
        }
        let cancel = running.withLock { running -> Bool in
            guard running[token] != nil else { return false }
            running[token]?.task = task
            return running[token]!.cancelRequested
        }
        if cancel { task.cancel() }
        return token
    }

    private func finished(_ token: UInt64) {
        _ = running.withLock { $0.removeValue(forKey: token) }
    }

    func cancel(_ token: UInt64) {
        running.withLock { taskToCancel(token, in: &$0) }?.cancel()
    }

    /// Cancels every running event and waits up to `seconds` for their callbacks; an event still running then
    /// (its process stuck in the kernel) gets MCM_STATUS_CANCELLED from this thread, and nothing after.
    func cancelAll(waitingUpTo seconds: Double) {
        let tasks = running.withLock { running in running.keys.compactMap { taskToCancel($0, in: &running) } }
        for task in tasks { task.cancel() }
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while running.withLock({ !$0.isEmpty }) && ContinuousClock.now < deadline {
            usleep(1000)
        }
        for event in running.withLock({ Array($0.values) }) { event.reply.send(.cancelled) }
    }
}

/// A C callback of the shim and its context, called under a lock until `close()`: no call starts after
/// `close()` returns, and one under way finishes first — what `mcm_module_destroy` promises.
final class CallbackSink<Callback>: @unchecked Sendable {
    /// A C function pointer and the shim's context pointer: plain values, safe to use from any thread.
    private struct Target: @unchecked Sendable {
        var callback: Callback
        var context: UnsafeMutableRawPointer?
    }

    private let target: Mutex<Target?>

    init(_ callback: Callback?, context: UnsafeMutableRawPointer?) {
        target = Mutex(callback.map { Target(callback: $0, context: context) })
    }

    func call(_ body: (Callback, UnsafeMutableRawPointer?) -> Void) {
        target.withLock { target in
            guard let target else { return }
            body(target.callback, target.context)
        }
    }

    func close() { target.withLock { $0 = nil } }
}

/// Where a module's command latencies go (the shim's timers).
final class LatencySink: Sendable {
    private let sink: CallbackSink<mcm_latency_callback>

    init(callback: mcm_latency_callback?, context: UnsafeMutableRawPointer?) {
        sink = CallbackSink(callback, context: context)
    }

    var observer: LatencyObserver {
        { [sink] event, milliseconds in
            sink.call { callback, context in event.key.withCString { callback(context, $0, milliseconds) } }
        }
    }

    func close() { sink.close() }
}

/// Where a module's log lines go: the shim's callback until the module is destroyed, then nowhere.
final class LogSink: Sendable {
    private let sink: CallbackSink<mcm_log_callback>

    init(callback: mcm_log_callback?, context: UnsafeMutableRawPointer?) {
        sink = CallbackSink(callback, context: context)
    }

    func write(_ level: mcm_log_level, _ message: String) {
        var text = message
        sink.call { callback, context in
            text.withUTF8 { bytes in
                bytes.withMemoryRebound(to: CChar.self) { chars in callback(context, level, chars.baseAddress, chars.count) }
            }
        }
    }

    func close() { sink.close() }

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
