import Glibc
import Logging
import Synchronization

/// A `mesos::slave::Isolator` whose methods run commands (SPEC §5), remembering each container's
/// `container_config` from `prepare` for every later event, on disk too so that `recover` restores it.
///
/// Events of different containers never wait for each other: each runs in the caller's task, the module
/// holds no lock while a command runs, and only `max_in_flight` bounds them.
public final class IsolatorModule: CommandModule {
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

    /// Worker mode: a check of every worker command's file on disk, waited for (tests).
    func checkWorkerCommandFiles() async { await events.checkWorkerCommandFiles() }

    /// Worker mode: how many workers of `event`'s command were stopped after a failure and replaced (one count
    /// for all the events that share the command).
    public func workerRestarts(_ event: Event) -> Int { events.workerRestarts(event) }

    /// The circuit breaker of `event` (open or not, events answered at once), nil when it has none
    /// (`<event>_breaker_failures` unset or 0).
    public func breaker(_ event: Event) -> BreakerState? { events.breakerState(event) }

    /// Worker mode: the pids of the running workers.
    public var workerPIDs: [Int32] { events.workers.values.flatMap(\.pids) }
    let store: ContainerStateStore
    /// Serializes prepare and cleanup of one container.
    private let locks = ContainerLocks()
    /// The running watch loop of each container, cancelled by `cleanup`.
    private let watches = Mutex<[ContainerID: Task<String?, any Error>]>([:])
    /// Containers without state that were already warned about (one warning per container).
    private let warnedWithoutState = Mutex<Set<ContainerID>>([])

    /// - Parameter latencyObserver: receives the duration of every command run (the shim's Mesos timers).
    public init(configuration: ModuleConfiguration, logger: Logger, latencyObserver: LatencyObserver? = nil)
        throws(ModuleError)
    {
        precondition(configuration.kind == .isolator, "an isolator module needs an isolator configuration")
        do {
            store = try ContainerStateStore(
                stateDirectory: configuration.stateDirectory, moduleName: configuration.moduleName)
        } catch {
            throw ModuleError(description: "module '\(configuration.moduleName)': \(error)")
        }
        events = try Self.makeRunner(configuration, logger, latencyObserver)
    }

    /// `<state_dir>/<module_name>`.
    public var stateDirectory: String { store.directory }

    /// The containers this isolator knows.
    public var containers: [ContainerID] { store.containers }

    /// The remembered `container_config` of a container, if known.
    public func containerConfig(_ id: ContainerID) -> String? { store.record(id)?.config }

    // MARK: - Events

    /// `prepare`: remembers and persists the container's config, then runs the prepare command.
    /// - Returns: the ContainerLaunchInfo JSON, or nil for none.
    /// `decided`: the container's rules, decided on the caller's thread (``decideRules(containerID:containerConfig:)``);
    /// decided here when nil.
    public func prepare(containerID: String, containerConfig: String, decided: RuleDecisions? = nil)
        async throws(EventError) -> String?
    {
        let id = try parseID(containerID, .prepare)
        return try await locks.withLock(id) { () async throws(EventError) -> String? in
            try await prepareLocked(id, containerID: containerID, containerConfig: containerConfig, decided: decided)
        }
    }

    /// A new container's `<event>_when` decisions, taken at `prepare` from its config (SPEC §9) within prepare's
    /// timeout, which counts from Mesos' call (``EventCall``). The module's C entry point takes them on the Mesos
    /// thread that called it, before the event goes to the engine's threads: a costly rule never holds a thread
    /// another module's events need.
    public struct RuleDecisions: Sendable {
        /// The events whose rule does not match, and why; nil when prepare's deadline passed first.
        let skipped: [Event: String]?
        let started: EventStart
    }

    /// See ``RuleDecisions``; nil when no per-container event has a rule, or the container ID does not parse.
    public func decideRules(containerID: String, containerConfig: String) -> RuleDecisions? {
        let ruled = configuration.commands.values.filter { $0.rule != nil && $0.event.isPerContainer }
        guard !ruled.isEmpty, let id = try? parseID(containerID, .prepare) else { return nil }
        let started = EventStart(spentOn: "the container's when rules to be decided")
        let timeout = configuration.command(for: .prepare)?.timeout ?? ModuleConfiguration.defaultTimeout
        let deadline = Deadline(seconds: timeout, from: started.nanoseconds)
        let parent = id.path.count > 1 ? store.record(ContainerID(path: Array(id.path.dropLast())))?.config : nil
        let subject = RuleSubject(containerID: containerID, containerConfig: containerConfig, parentConfig: parent)
        var skipped: [Event: String] = [:]
        for command in ruled.sorted(by: { $0.event.key < $1.event.key }) {
            guard let decision = command.rule!.evaluate(subject, until: deadline) else {
                return RuleDecisions(skipped: nil, started: started)
            }
            if !decision.matched { skipped[command.event] = decision.reason }
        }
        return RuleDecisions(skipped: skipped, started: started)
    }

    private func prepareLocked(_ id: ContainerID, containerID: String, containerConfig: String,
                               decided: RuleDecisions?) async throws(EventError) -> String?
    {
        // Refused before anything is logged for it.
        guard store.record(id) == nil else {
            throw EventError(.prepare, subject: id.description, refused: Self.alreadyInitialized)
        }
        // With rules, prepare's timeout counts from Mesos' call: deciding them is part of its time (SPEC §9); an
        // event whose deadline passed while they were decided fails as timed out, without a process or a state.
        let decisions = decided ?? decideRules(containerID: containerID, containerConfig: containerConfig)
        let started = decisions.map {
            EventStart(nanoseconds: $0.started.nanoseconds, spentOn: $0.started.spentOn + " and its state written")
        }
        if let decisions, decisions.skipped == nil {
            let timeout = configuration.command(for: .prepare)?.timeout ?? ModuleConfiguration.defaultTimeout
            throw EventError(.prepare, subject: id.description, command: CommandError(
                command: configuration.command(for: .prepare)?.path ?? "(isolator_prepare has no command)",
                code: .timedOutWaiting(timeout: timeout, waitingFor: decisions.started.spentOn)))
        }
        let skipped = decisions?.skipped ?? [:]
        logSkips(skipped, id)
        let record = ContainerStateStore.Record(id: id, idJSON: containerID, config: containerConfig, skipped: skipped)
        guard store.insertNew(record) else {
            throw EventError(.prepare, subject: id.description, refused: Self.alreadyInitialized)
        }
        do {
            try store.persist(record)
        } catch {
            _ = store.take(id)
            throw EventError(.prepare, subject: id.description, refused: "Cannot persist the container's state: \(error)")
        }
        return try await runCommand(.prepare, envelope(id, record), subject: id.description,
                                    skippedBecause: record.skipped[.prepare], startedAt: started).value?.jsonText
    }

    /// The `<event>_when` decisions for a container adopted by a tool (its prepare never ran), taken from its
    /// config without a deadline.
    private func decide(_ id: ContainerID, idJSON: String, config: String) -> [Event: String] {
        let ruled = configuration.commands.values.filter { $0.rule != nil && $0.event.isPerContainer }
        guard !ruled.isEmpty else { return [:] }
        let parent = id.path.count > 1 ? store.record(ContainerID(path: Array(id.path.dropLast())))?.config : nil
        let subject = RuleSubject(containerID: idJSON, containerConfig: config, parentConfig: parent)
        var skipped: [Event: String] = [:]
        for command in ruled {
            if let decision = command.rule!.evaluate(subject), !decision.matched { skipped[command.event] = decision.reason }
        }
        return skipped
    }

    /// Each event a new container's rules skip is logged: the container's commands of those events never run.
    private func logSkips(_ skipped: [Event: String], _ id: ContainerID) {
        for (event, reason) in skipped.sorted(by: { $0.key.key < $1.key.key }) {
            events.log(event, id.description).info(
                "\(event.key)_command will not run for this container: \(event.key)_when \(reason)")
        }
    }

    /// Why `event`'s command does not run for container `id` (its rule did not match at prepare), or nil.
    public func skipReason(_ event: Event, containerID id: ContainerID) -> String? { store.record(id)?.skipped[event] }

    /// `isolate`: runs the isolate command with the container's pid (without container_config, and a warning,
    /// for a container never prepared — as the seed did).
    public func isolate(containerID: String, pid: Int32) async throws(EventError) {
        let id = try parseID(containerID, .isolate)
        let record = store.record(id)
        if record == nil && configuration.command(for: .isolate) != nil {
            events.log(.isolate, id.description).warning("Missing container info during isolation of container with pid \(pid)")
        }
        var envelope = envelope(id, record, idJSON: containerID)
        envelope.set("pid", json: String(pid))
        _ = try await runCommand(.isolate, envelope, subject: id.description, skippedBecause: record?.skipped[.isolate])
    }

    /// `watch`: runs the watch command every `isolator_watch_frequence` seconds until it writes a
    /// ContainerLimitation.
    /// - Returns: the limitation's JSON; nil when there is nothing to watch (no command) or the watch ended
    ///   because the container was cleaned up or the task was cancelled.
    public func watch(containerID: String) async throws(EventError) -> String? {
        let id = try parseID(containerID, .watch)
        guard configuration.command(for: .watch) != nil else { return nil }
        let record = store.record(id)
        if record?.skipped[.watch] != nil {
            events.metrics.recordSkip(.watch)
            return nil
        }
        warnIfWithoutState(id, .watch, record)
        let loop = Task { () async throws -> String? in try await self.watchLoop(id) }
        watches.withLock { $0[id]?.cancel(); $0[id] = loop }
        let result = await withTaskCancellationHandler {
            await loop.result
        } onCancel: {
            loop.cancel()
        }
        watches.withLock { if $0[id] == loop { $0[id] = nil } }
        switch result {
        case .success(let limitation): return limitation
        case .failure(let error as EventError): throw error
        case .failure: return nil
        }
    }

    /// Runs the watch command until it writes a limitation; `cleanup` or a discarded watch cancels it. A
    /// container without state is watched with its container_id only: a failed watch makes Mesos destroy the
    /// container, so missing state must never fail it (SPEC §5).
    private func watchLoop(_ id: ContainerID) async throws -> String? {
        while !Task.isCancelled {
            do {
                let envelope = envelope(id, store.record(id))
                if let limitation = try await runCommand(.watch, envelope, subject: id.description).value {
                    return limitation.jsonText
                }
            } catch {
                if error.kind == .cancelled { return nil }
                throw error
            }
            try await Task.sleep(for: .milliseconds(Int64(configuration.watchFrequency * 1000)))
        }
        return nil
    }

    /// `update`: runs the update command with the new resource requests and limits.
    public func update(containerID: String, resourceRequests: String, resourceLimits: String) async throws(EventError) {
        let id = try parseID(containerID, .update)
        _ = try await runForRunningContainer(.update, id, idJSON: containerID) { envelope in
            envelope.set("resource_requests", json: resourceRequests)
            envelope.set("resource_limits", json: resourceLimits)
        }
    }

    /// `usage`: the container's ResourceStatistics, with `timestamp` filled if the command left it out.
    /// Without a command, or when it writes nothing or fails (policy `ignore`, the default), statistics
    /// holding only the timestamp.
    public func usage(containerID: String) async throws(EventError) -> String {
        let id = try parseID(containerID, .usage)
        let now = Self.now()
        guard configuration.command(for: .usage) != nil,
              let statistics = try await runForRunningContainer(.usage, id, idJSON: containerID).value
        else {
            return Self.timestampOnly(now)
        }
        return statistics.jsonText
    }

    /// `status`: the ContainerStatus the command writes; `{}` without a command, for an empty output, or a
    /// failure whose policy is `ignore` (the default).
    public func status(containerID: String) async throws(EventError) -> String {
        let id = try parseID(containerID, .status)
        guard configuration.command(for: .status) != nil else { return "{}" }
        return try await runForRunningContainer(.status, id, idJSON: containerID).value?.jsonText ?? "{}"
    }

    /// `cleanup`: stops the container's watch, runs the cleanup command with the remembered config, then forgets
    /// the container and removes its state file. A container never prepared (or already cleaned up) does not
    /// run the command. A cleanup that fails (policy `fail`) keeps the state, in memory and on disk: Mesos
    /// retries the cleanup of the container (an orphan at the next agent start), and the retry runs the command
    /// with the container's config again (SPEC §5).
    public func cleanup(containerID: String) async throws(EventError) {
        _ = try await cleanup(containerID: containerID, removeStateFile: true)
    }

    /// `cleanup`, leaving the state file in place when `removeStateFile` is false (the CLI, on a directory an
    /// operator named).
    /// - Returns: the path of the state file removed after a successful cleanup — or, without
    ///   `removeStateFile`, that would have been — if there was one.
    public func cleanup(containerID: String, removeStateFile: Bool) async throws(EventError) -> String? {
        let id = try parseID(containerID, .cleanup)
        watches.withLock { $0.removeValue(forKey: id)?.cancel() }
        _ = warnedWithoutState.withLock { $0.remove(id) }
        return try await locks.withLock(id) { () async throws(EventError) -> String? in
            try await cleanupLocked(id, removeStateFile: removeStateFile)
        }
    }

    private func cleanupLocked(_ id: ContainerID, removeStateFile: Bool) async throws(EventError) -> String? {
        guard let record = store.record(id) else {
            // Expected: Mesos cleans up every container with every isolator, prepared by this one or not.
            events.log(.cleanup, id.description).warning(
                "Missing container info during cleanup of mesos-command-module, won't call command.")
            return nil
        }
        do {
            _ = try await runCommand(.cleanup, envelope(id, record), subject: id.description,
                                     skippedBecause: record.skipped[.cleanup])
        } catch {
            // The file stays until a cleanup succeeds: the retry of the orphan needs the container's config.
            events.log(.cleanup, id.description).warning(
                "Cleanup failed: the container's state is kept in '\(store.path(id))' so that Mesos' retry (the "
                    + "container is an orphan at the next agent start) runs \(Event.cleanup.key)_command again")
            throw error
        }
        _ = store.take(id)
        let file = (try? store.hasFile(id)) == true ? store.path(id) : nil
        guard removeStateFile else { return file }
        do {
            try store.removeFile(id)
        } catch {
            events.log(.cleanup, id.description).error("\(error)")
        }
        return file
    }

    /// Runs the watch command once: the limitation's JSON, or nil for an empty output (the agent would poll
    /// again after `isolator_watch_frequence` seconds) or no command.
    public func watchOnce(containerID: String) async throws(EventError) -> String? {
        let id = try parseID(containerID, .watch)
        guard configuration.command(for: .watch) != nil else { return nil }
        return try await runForRunningContainer(.watch, id, idJSON: containerID).value?.jsonText
    }

    /// Makes the isolator know a container without running prepare — for tools that run one later event on its
    /// own (the CLI's `run`). Nothing is written to disk.
    public func adopt(containerID: String, containerConfig: String) throws(EventError) {
        let id = try parseID(containerID, .prepare)
        store.put(.init(id: id, idJSON: containerID, config: containerConfig,
                        skipped: decide(id, idJSON: containerID, config: containerConfig)))
    }

    /// Runs any isolator event from a whole envelope (as the CLI reads it), with the envelope keys of SPEC §5.
    /// `watch` runs once (``watchOnce(containerID:)``). Returns the event's JSON result, or nil for none.
    public func run(_ event: Event, envelope: Envelope) async throws(EventError) -> String? {
        precondition(event.kind == .isolator, "\(event.key) is not an isolator event")
        let id = envelope.json("container_id") ?? "null"
        switch event {
        case .recover:
            try await recover(states: envelope.json("states") ?? "[]", orphans: envelope.json("orphans") ?? "[]")
        case .prepare:
            return try await prepare(containerID: id, containerConfig: envelope.json("container_config") ?? "{}")
        case .isolate:
            try await isolate(containerID: id, pid: Int32(envelope.json("pid") ?? "") ?? 0)
        case .watch:
            return try await watchOnce(containerID: id)
        case .update:
            try await update(
                containerID: id, resourceRequests: envelope.json("resource_requests") ?? "[]",
                resourceLimits: envelope.json("resource_limits") ?? "{}")
        case .usage:
            return try await usage(containerID: id)
        case .status:
            return try await status(containerID: id)
        case .cleanup:
            try await cleanup(containerID: id)
        default:
            break
        }
        return nil
    }

    // MARK: - Helpers

    /// The seed's refusal of a second prepare of one container.
    static let alreadyInitialized = "mesos-command-module already initialized for container"

    func parseID(_ json: String, _ event: Event) throws(EventError) -> ContainerID {
        guard let value = try? JSONValue(parsing: json), let id = ContainerID(value) else {
            throw EventError(event, subject: "-", refused: "container_id is not a ContainerID: \(json.prefix(200))")
        }
        return id
    }

    private func envelope(_ id: ContainerID, _ record: ContainerStateStore.Record?, idJSON: String? = nil) -> Envelope {
        var envelope = Envelope()
        envelope.set("container_id", json: idJSON ?? record?.idJSON ?? id.json.jsonText)
        if let config = record?.config { envelope.set("container_config", json: config) }
        return envelope
    }

    /// Runs `event`'s command for a running container: with its state, or — for a container without state —
    /// with container_id only (warned once); not for a container whose rule skipped `event` at prepare. `members`
    /// adds the event's own members to the envelope.
    private func runForRunningContainer(_ event: Event, _ id: ContainerID, idJSON: String,
                                        members: (inout Envelope) -> Void = { _ in }) async throws(EventError)
        -> Outcome
    {
        let record = store.record(id)
        warnIfWithoutState(id, event, record)
        var envelope = envelope(id, record, idJSON: idJSON)
        members(&envelope)
        return try await runCommand(event, envelope, subject: id.description, skippedBecause: record?.skipped[event])
    }

    /// Warns once per container that an event runs without the container's state (`record` nil): it ran before
    /// the isolator was enabled (a rollout onto a busy agent), or its state file was lost. The container is not
    /// harmed.
    private func warnIfWithoutState(_ id: ContainerID, _ event: Event, _ record: ContainerStateStore.Record?) {
        guard record == nil, configuration.command(for: event) != nil else { return }
        guard warnedWithoutState.withLock({ $0.insert(id).inserted }) else { return }
        events.log(event, id.description).warning(
            "No state for this container (it started before the isolator was enabled, or its state file was lost): "
                + "its commands run with container_id only, and cleanup will not run the cleanup command")
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    static func timestampOnly(_ now: Double) -> String { JSONValue.object([("timestamp", .number(now))]).jsonText }
}
