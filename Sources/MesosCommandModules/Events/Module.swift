import Logging

/// A module could not start (its private temporary directory could not be made).
public struct ModuleError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// What every module shares: its configuration, its command runner, metrics and logger.
protocol CommandModule: Sendable {
    var events: EventRunner { get }
    var configuration: ModuleConfiguration { get }
}

extension CommandModule {
    /// Runs the event's command if one is configured and not skipped by its `<event>_when` rule. Returns
    /// `.notConfigured` or `.skipped` then, `.empty` for an empty output. A failure whose policy is `ignore` is
    /// logged and returned as `.failedButIgnored`.
    ///
    /// - Parameter startedAt: when the event started, if the module did something for it first (decided its
    ///   `when` rules): its timeout counts from there.
    func runCommand(_ event: Event, _ envelope: Envelope, subject: String, skippedBecause reason: String? = nil,
                    startedAt: EventStart? = nil) async throws(EventError) -> Outcome
    {
        guard let command = configuration.command(for: event) else { return .notConfigured }
        if let reason {
            events.metrics.recordSkip(event)
            if configuration.debug {
                events.log(event, subject).info("Not running \(event.key)_command: \(event.key)_when \(reason)")
            }
            return .skipped(reason)
        }
        do {
            return .output(try await events.run(command, envelope: envelope, subject: subject, startedAt: startedAt))
        } catch {
            if error.kind == .command && command.failurePolicy == .ignore {
                // A short-circuited event is not logged one by one: the breaker logged when it opened.
                if !error.isShortCircuit || configuration.debug {
                    events.log(event, subject).warning("Ignoring the failure (\(event.key)_failure_policy=ignore)")
                }
                return .failedButIgnored(error)
            }
            throw error
        }
    }

    static func makeRunner(_ configuration: ModuleConfiguration, _ logger: Logger, _ observer: LatencyObserver?)
        throws(ModuleError) -> EventRunner
    {
        do {
            return try EventRunner(
                configuration: configuration, logger: logger, metrics: ModuleMetrics(latencyObserver: observer))
        } catch {
            throw ModuleError(description: "module '\(configuration.moduleName)': \(error.reason)")
        }
    }
}

/// When an event started, taken before the module did something for it ahead of its command (decided its `when`
/// rules), and what that was: the event's timeout counts that time too, and an event that ran out of time before
/// its command could start says what it was waiting for.
struct EventStart: Sendable {
    var nanoseconds: UInt64 = EventCall.current?.nanoseconds ?? MonotonicClock.now()
    /// Completes "the event waited all that time for …".
    var spentOn: String
}

/// When Mesos called the module for an event (CLOCK_MONOTONIC), taken first thing in `mcm_run_event`: the event's
/// timeout counts from there (SPEC §3), not from when the engine's task for it first ran — a task can wait for a
/// thread of Swift's shared pool. Carried down to the command as a task-local value, so that every path of every
/// event (hook or isolator, with a rule or not) starts its deadline there without each signature carrying it.
public struct EventCall: Sendable {
    public let nanoseconds: UInt64

    /// Now.
    public init() { nanoseconds = MonotonicClock.now() }

    init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    @TaskLocal static var current: EventCall?

    /// Runs the event's task, `body`, with this call as the start of its deadline. Not for `isolator_watch`: a watch
    /// runs its command again and again, each run under its own timeout.
    public func during<Result: Sendable>(_ body: () async -> Result) async -> Result {
        await Self.$current.withValue(self) { await body() }
    }

    /// The same, for work done on the caller's thread (a rule decided on Mesos' thread).
    public func during<Result>(_ body: () -> Result) -> Result {
        Self.$current.withValue(self) { body() }
    }
}

enum Outcome {
    case notConfigured
    /// The `<event>_when` rule did not match: as if the event had no command.
    case skipped(String)
    case output(CommandOutput)
    case failedButIgnored(EventError)

    /// The output value, if the command ran and wrote one.
    var value: JSONValue? {
        if case .output(.value(let value, _)) = self { return value }
        return nil
    }
}
