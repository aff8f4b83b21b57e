import Logging

/// A `mesos::Hook` whose methods run commands (SPEC §4).
public final class HookModule: CommandModule {
    let events: EventRunner

    /// The module's configuration.
    public var configuration: ModuleConfiguration { events.configuration }
    /// Counters and latency per event.
    public var metrics: ModuleMetrics { events.metrics }
    /// The private directory of this module's temporary files.
    public var temporaryDirectory: String { events.runner.temporaryDirectory }

    /// Worker mode: closes the workers' stdin and waits up to the grace period for them to be gone (killed
    /// with their whole group if they did not exit). For module destroy; a module that is released does the
    /// same without waiting.
    public func stopWorkers() { events.stopWorkers() }

    /// Worker mode: how many workers of `event`'s command were stopped after a failure and replaced (one count
    /// for all the events that share the command).
    public func workerRestarts(_ event: Event) -> Int { events.workerRestarts(event) }

    /// The circuit breaker of `event` (open or not, events answered at once), nil when it has none
    /// (`<event>_breaker_failures` unset or 0).
    public func breaker(_ event: Event) -> BreakerState? { events.breakerState(event) }

    /// Worker mode: the pids of the running workers.
    public var workerPIDs: [Int32] { events.workers.values.flatMap(\.pids) }

    /// - Parameter latencyObserver: receives the duration of every command run (the shim's Mesos timers).
    public init(configuration: ModuleConfiguration, logger: Logger, latencyObserver: LatencyObserver? = nil)
        throws(ModuleError)
    {
        precondition(configuration.kind == .hook, "a hook module needs a hook configuration")
        events = try Self.makeRunner(configuration, logger, latencyObserver)
    }

    /// Runs a hook event: ``admit(_:envelope:call:)``, then ``run(_:)``.
    ///
    /// - Returns: the JSON to hand back to Mesos (Labels, Environment, an array of Resource, …), or nil for
    ///   "no change" / "none": no command configured, an empty output, an event without output, or a failure
    ///   whose policy is `ignore`. For `hook_slave_task_status_decorator`, the whole TaskStatus with the
    ///   command's `labels` and `container_status` merged over the input status.
    /// - Throws: ``EventError`` when the command fails (policy `fail`) or writes what the event cannot take.
    public func run(_ event: Event, envelope: Envelope) async throws(EventError) -> String? {
        switch admit(event, envelope: envelope) {
        case .skipped: return nil
        case .admitted(let admitted): return try await run(admitted)
        }
    }

    /// A hook event whose `when` rule is decided (or that has none): what ``run(_:)`` runs.
    public struct Admitted: Sendable {
        let event: Event
        let envelope: Envelope
        let started: EventStart?
        let skipped: String?
    }

    public enum Admission: Sendable {
        /// Skipped by its rule: the answer is "no change", nothing else is done (counted, not logged).
        case skipped
        case admitted(Admitted)
    }

    /// Decides the event's `when` rule, synchronously: the C ABI calls it on the thread Mesos called from, which
    /// waits for the hook's answer anyway, so that a rule never holds a thread of the engine that other modules'
    /// events need (SPEC §9), and a skipped event is answered without a hop to another thread. Its cost is
    /// bounded: linear in the values (``RegularExpression``), and cut at the event's deadline, which counts from
    /// `call` (Mesos' call; now if nil).
    public func admit(_ event: Event, envelope: Envelope, call: EventCall? = nil) -> Admission {
        precondition(event.kind == .hook, "\(event.key) is not a hook event")
        let call = call ?? EventCall.current
        var started = call.map { EventStart(nanoseconds: $0.nanoseconds, spentOn: "a thread of the engine to take it up") }
        var skipped: String?
        if let command = configuration.command(for: event), let rule = command.rule {
            // The event's timeout counts from here (or Mesos' call): deciding its rule is part of its time.
            let start = EventStart(
                nanoseconds: call?.nanoseconds ?? MonotonicClock.now(), spentOn: "its \(event.key)_when rule to be decided")
            let deadline = Deadline(seconds: command.timeout, from: start.nanoseconds)
            // Undecided (nil) when the deadline passed first: runCommand then fails the event as timed out.
            let decision = rule.evaluate(RuleSubject(envelope: envelope), until: deadline, explaining: configuration.debug)
            if let decision, !decision.matched {
                guard configuration.debug else {
                    // Skipped: no process, no log line; only the count.
                    events.metrics.recordSkip(event)
                    return .skipped
                }
                skipped = decision.reason
            }
            if decision == nil || call == nil {
                started = start
            } else {
                started = EventStart(nanoseconds: start.nanoseconds,
                                     spentOn: start.spentOn + " and a thread of the engine to take it up")
            }
        }
        return .admitted(Admitted(event: event, envelope: envelope, started: started, skipped: skipped))
    }

    /// Runs an admitted event's command (see ``run(_:envelope:)``).
    public func run(_ admitted: Admitted) async throws(EventError) -> String? {
        let (event, envelope) = (admitted.event, admitted.envelope)
        guard let value = try await runCommand(
            event, envelope, subject: envelope.subject, skippedBecause: admitted.skipped, startedAt: admitted.started).value
        else {
            return nil
        }
        switch event {
        case .slaveTaskStatusDecorator:
            return Self.merge(value, over: envelope.value("task_status") ?? .object([])).jsonText
        default:
            return event.output == .none ? nil : value.jsonText
        }
    }

    /// What the event's `<event>_when` rule decides for this envelope; nil when the event has no command or no
    /// rule. Decided from the envelope alone, without starting a process.
    public func decision(for event: Event, envelope: Envelope) -> RuleDecision? {
        guard let rule = configuration.command(for: event)?.rule else { return nil }
        return rule.evaluate(RuleSubject(envelope: envelope))!
    }

    /// The fields of TaskStatus a status decorator may change: Mesos applies these two only.
    static let decoratedStatusFields = ["labels", "container_status"]

    static func merge(_ output: JSONValue, over status: JSONValue) -> JSONValue {
        var merged = status
        for field in decoratedStatusFields {
            if let value = output[field] { merged = merged.setting(field, to: value) }
        }
        return merged
    }
}
