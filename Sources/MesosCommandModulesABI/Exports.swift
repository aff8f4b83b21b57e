import CMesosCommandModules
import Glibc
import MesosCommandModules
import Synchronization

// The functions of include/mesos_command_modules.h. Each one converts C types at the door and hands over to
// ABIModule; no policy lives here.

@_cdecl("mcm_module_create")
public func mcm_module_create(
    _ kind: mcm_kind, _ keys: UnsafePointer<UnsafePointer<CChar>?>?, _ values: UnsafePointer<UnsafePointer<CChar>?>?,
    _ count: Int, _ callbacks: UnsafePointer<mcm_callbacks>?,
    _ error: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
) -> OpaquePointer? {
    var parameters: [(key: String, value: String)] = []
    for i in 0..<count {
        guard let key = keys?[i], let value = values?[i] else { continue }
        parameters.append((String(cString: key), String(cString: value)))
    }
    let moduleKind: ModuleKind = kind == MCM_KIND_ISOLATOR ? .isolator : .hook
    let sink = LogSink(callback: callbacks?.pointee.log, context: callbacks?.pointee.context)
    let latency = LatencySink(callback: callbacks?.pointee.latency, context: callbacks?.pointee.context)
    do {
        let configuration = try ModuleConfiguration(kind: moduleKind, parameters: parameters)
        for warning in configuration.warnings {
            sink.write(MCM_LOG_WARNING, "module '\(configuration.moduleName)': \(warning)")
        }
        for note in configuration.notes {
            sink.write(MCM_LOG_INFO, "module '\(configuration.moduleName)': \(note)")
        }
        let instance: ABIModule.Instance
        switch moduleKind {
        case .hook:
            instance = .hook(try HookModule(configuration: configuration, logger: sink.logger, latencyObserver: latency.observer))
        case .isolator:
            instance = .isolator(try IsolatorModule(
                configuration: configuration, logger: sink.logger, latencyObserver: latency.observer))
        }
        let module = ABIModule(instance: instance, name: configuration.moduleName, log: sink, latency: latency)
        sink.write(MCM_LOG_INFO, configuration.loadedLine(identity: mcm_build_identity().flatMap {
            BuildIdentity(text: String(cString: $0))
        }))
        return OpaquePointer(Unmanaged.passRetained(module).toOpaque())
    } catch let failure as ConfigurationError {
        error?.pointee = strdup(failure.description)  // NULL if out of memory: the header allows it
    } catch let failure {
        error?.pointee = strdup("\(failure)")
    }
    return nil
}

@_cdecl("mcm_module_destroy")
public func mcm_module_destroy(_ module: OpaquePointer?) {
    guard let module else { return }
    let unmanaged = Unmanaged<ABIModule>.fromOpaque(UnsafeRawPointer(module))
    let instance = unmanaged.takeUnretainedValue()
    instance.cancelAll(waitingUpTo: instance.configuration.gracePeriod + ABIModule.destroyMargin)
    instance.stopWorkers()
    instance.log.close()
    instance.latency.close()
    unmanaged.release()
}

@_cdecl("mcm_module_name")
public func mcm_module_name(_ module: OpaquePointer?) -> UnsafePointer<CChar>? {
    guard let module else { return nil }
    return UnsafePointer(Unmanaged<ABIModule>.fromOpaque(UnsafeRawPointer(module)).takeUnretainedValue().name)
}

@_cdecl("mcm_module_handles")
public func mcm_module_handles(_ module: OpaquePointer?, _ eventKey: UnsafePointer<CChar>?) -> Int32 {
    guard let module, let eventKey, let event = Event(rawValue: String(cString: eventKey)) else { return 0 }
    let instance = Unmanaged<ABIModule>.fromOpaque(UnsafeRawPointer(module)).takeUnretainedValue()
    return instance.configuration.command(for: event) == nil ? 0 : 1
}

@_cdecl("mcm_module_mode")
public func mcm_module_mode(_ module: OpaquePointer?, _ eventKey: UnsafePointer<CChar>?) -> mcm_mode {
    guard let module, let eventKey, let event = Event(rawValue: String(cString: eventKey)) else { return MCM_MODE_NONE }
    let instance = Unmanaged<ABIModule>.fromOpaque(UnsafeRawPointer(module)).takeUnretainedValue()
    switch instance.configuration.command(for: event)?.mode {
    case .exec?: return MCM_MODE_EXEC
    case .worker?: return MCM_MODE_WORKER
    case nil: return MCM_MODE_NONE
    }
}

@_cdecl("mcm_module_answer_limit")
public func mcm_module_answer_limit(_ module: OpaquePointer?, _ eventKey: UnsafePointer<CChar>?) -> Double {
    guard let module else { return ABIModule.destroyMargin }
    let configuration = Unmanaged<ABIModule>.fromOpaque(UnsafeRawPointer(module)).takeUnretainedValue().configuration
    let timeout = eventKey.flatMap { Event(rawValue: String(cString: $0)) }.flatMap { configuration.command(for: $0) }?.timeout
    return (timeout ?? 0) + configuration.gracePeriod + ABIModule.destroyMargin
}

@_cdecl("mcm_module_metric")
public func mcm_module_metric(_ module: OpaquePointer?, _ eventKey: UnsafePointer<CChar>?, _ metric: mcm_metric) -> Double {
    guard let module, let eventKey, let event = Event(rawValue: String(cString: eventKey)) else { return 0 }
    let instance = Unmanaged<ABIModule>.fromOpaque(UnsafeRawPointer(module)).takeUnretainedValue()
    let metrics = instance.metrics.snapshot(event)
    switch metric {
    case MCM_METRIC_CALLS: return Double(metrics.calls)
    case MCM_METRIC_FAILURES: return Double(metrics.failures)
    case MCM_METRIC_TIMEOUTS: return Double(metrics.timeouts)
    case MCM_METRIC_SKIPPED: return Double(metrics.skipped)
    case MCM_METRIC_WORKER_RESTARTS: return Double(instance.workerRestarts(event))
    case MCM_METRIC_BREAKER_OPEN: return instance.breaker(event)?.isOpen == true ? 1 : 0
    case MCM_METRIC_SHORT_CIRCUITED: return Double(instance.breaker(event)?.shortCircuited ?? 0)
    case MCM_METRIC_CPU_SECONDS: return metrics.cpuSeconds
    default: return 0
    }
}

@_cdecl("mcm_run_event")
public func mcm_run_event(
    _ module: OpaquePointer?, _ eventKey: UnsafePointer<CChar>?, _ fragments: UnsafePointer<mcm_fragment>?, _ count: Int,
    _ callback: mcm_result_callback?, _ context: UnsafeMutableRawPointer?
) -> UInt64 {
    // First: the event's timeout counts from Mesos' call, not from when a thread of the engine takes it up.
    let call = EventCall()
    let reply = Reply(callback: callback, context: context)
    guard let module else {
        reply.send(.error("mcm_run_event: no module"))
        return ABIModule.makeToken()
    }
    let instance = Unmanaged<ABIModule>.fromOpaque(UnsafeRawPointer(module)).takeUnretainedValue()
    let key = eventKey.map { String(cString: $0) } ?? ""
    guard let event = Event(rawValue: key), event.kind == instance.configuration.kind else {
        reply.send(.error("module '\(instance.configuration.moduleName)' has no event '\(key)'"))
        return ABIModule.makeToken()
    }
    var envelope = Envelope()
    for i in 0..<count {
        guard let fragment = fragments?[i], let fragmentKey = fragment.key else { continue }
        let json = fragment.json.map {
            String(decoding: UnsafeRawBufferPointer(start: $0, count: fragment.json_length), as: UTF8.self)
        }
        envelope.set(String(cString: fragmentKey), json: json ?? "null")
    }
    let input = envelope
    if case .hook(let hook) = instance.instance {
        // The rule is decided here, on Mesos' thread, which waits for the hook's answer anyway (HookModule.admit):
        // never on a thread of the engine's shared pool, and a skipped event is answered without a hop.
        switch hook.admit(event, envelope: input, call: call) {
        case .skipped:
            reply.send(.none)
            return ABIModule.makeToken()
        case .admitted(let admitted):
            return instance.start(reply, on: EventExecution.executor(for: event, of: hook.configuration)) {
                await EventDispatch.run(admitted, call, on: hook)
            }
        }
    }
    if case .isolator(let isolator) = instance.instance, event == .prepare {
        // The container's rules are decided here, on Mesos' thread, as a hook's are: never on a thread of the
        // engine's shared pool.
        let decided = call.during { isolator.decideRules(
            containerID: input.json("container_id") ?? "null", containerConfig: input.json("container_config") ?? "{}") }
        return instance.start(reply) {
            await call.during { await EventDispatch.prepare(input, decided, on: isolator) }
        }
    }
    return instance.start(reply, on: EventExecution.executor(for: event, of: instance.configuration)) {
        // A watch runs its command again and again, each run under its own timeout.
        event == .watch ? await EventDispatch.run(event, input, on: instance.instance)
            : await call.during { await EventDispatch.run(event, input, on: instance.instance) }
    }
}

@_cdecl("mcm_cancel")
public func mcm_cancel(_ module: OpaquePointer?, _ token: UInt64) {
    guard let module else { return }
    Unmanaged<ABIModule>.fromOpaque(UnsafeRawPointer(module)).takeUnretainedValue().cancel(token)
}

@_cdecl("mcm_free")
public func mcm_free(_ pointer: UnsafeMutableRawPointer?) {
    free(pointer)
}

/// The outcome of an event as the callback reports it.
enum Outcome: Sendable {
    case result(String)
    case none
    case error(String)
    case cancelled
}

/// A result callback and its context, called exactly once: the first `send` calls it, later ones do nothing.
/// The call happens under a lock, so that `mcm_module_destroy`, which sends CANCELLED to events still running,
/// returns only after a callback already under way has returned.
final class Reply: @unchecked Sendable {
    let callback: mcm_result_callback?
    let context: UnsafeMutableRawPointer?
    private let sent = Mutex(false)

    init(callback: mcm_result_callback?, context: UnsafeMutableRawPointer?) {
        self.callback = callback
        self.context = context
    }

    func send(_ outcome: Outcome) {
        sent.withLock { sent in
            guard !sent else { return }
            sent = true
            deliver(outcome)
        }
    }

    private func deliver(_ outcome: Outcome) {
        guard let callback else { return }
        let (status, text): (mcm_status, String) =
            switch outcome {
            case .result(let json): (MCM_STATUS_RESULT, json)
            case .none: (MCM_STATUS_NONE, "")
            case .error(let message): (MCM_STATUS_ERROR, message)
            case .cancelled: (MCM_STATUS_CANCELLED, "")
            }
        var copy = text
        copy.withUTF8 { bytes in
            bytes.withMemoryRebound(to: CChar.self) { callback(context, status, $0.baseAddress, $0.count) }
        }
    }
}

/// Runs one event on a hook or an isolator: the watch as a loop (until a limitation, a cleanup or a cancel),
/// everything else once.
enum EventDispatch {
    static func run(_ admitted: HookModule.Admitted, _ call: EventCall, on hook: HookModule) async -> Outcome {
        await call.during { () async -> Outcome in
            do throws(EventError) {
                let result = try await hook.run(admitted)
                if Task.isCancelled { return .cancelled }
                return result.map(Outcome.result) ?? .none
            } catch {
                return error.kind == .cancelled || Task.isCancelled ? .cancelled : .error(error.description)
            }
        }
    }

    static func prepare(_ envelope: Envelope, _ decided: IsolatorModule.RuleDecisions?, on isolator: IsolatorModule)
        async -> Outcome
    {
        do throws(EventError) {
            let result = try await isolator.prepare(containerID: envelope.json("container_id") ?? "null",
                                                    containerConfig: envelope.json("container_config") ?? "{}",
                                                    decided: decided)
            if Task.isCancelled { return .cancelled }
            return result.map(Outcome.result) ?? .none
        } catch {
            return error.kind == .cancelled || Task.isCancelled ? .cancelled : .error(error.description)
        }
    }

    static func run(_ event: Event, _ envelope: Envelope, on instance: ABIModule.Instance) async -> Outcome {
        do {
            let result: String?
            switch instance {
            case .hook(let hook):
                result = try await hook.run(event, envelope: envelope)
            case .isolator(let isolator) where event == .watch:
                result = try await isolator.watch(containerID: envelope.json("container_id") ?? "null")
            case .isolator(let isolator):
                result = try await isolator.run(event, envelope: envelope)
            }
            if Task.isCancelled { return .cancelled }
            return result.map(Outcome.result) ?? .none
        } catch {
            return error.kind == .cancelled || Task.isCancelled ? .cancelled : .error(error.description)
        }
    }
}
