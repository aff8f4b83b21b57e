import Logging

/// What a command's output means once read and checked.
enum CommandOutput: Sendable {
    /// The output file was empty (or only white space).
    case empty
    /// Valid JSON of the expected shape; `warnings` are fields the agent will ignore.
    case value(JSONValue, warnings: [SchemaIssue])
}

/// Runs the command of one event of one module: the envelope to the input file, the command under its timeout
/// and the module's in-flight bound, the output checked against the Mesos message the event expects, with
/// logs and metrics. Event-specific meaning (empty output, failure policy) is the caller's.
struct EventRunner: Sendable {
    let configuration: ModuleConfiguration
    let runner: CommandRunner
    let logger: Logger
    let metrics: ModuleMetrics
    /// `max_in_flight`: the command slots of the module (exec mode).
    let slots: FairPool<Void>
    /// Worker mode: the pool of each command file, shared by the events that name it.
    let workers: [String: WorkerPool]
    /// The events with `<event>_breaker_failures` set, each with its circuit breaker (``CircuitBreaker``).
    let breakers: [Event: CircuitBreaker]

    /// How many lines of a command's stdout/stderr reach the log per run, and how long each may be: the rest
    /// is counted, not logged, so that a chatty script cannot flood the agent's log.
    static let consoleLinesLogged = 100
    static let consoleLineLength = 2000

    /// A line of a command's output as it is logged: cut at `consoleLineLength` characters.
    static func clipped(_ line: Substring) -> Substring {
        line.count > consoleLineLength ? line.prefix(consoleLineLength) + "…" : line
    }

    init(configuration: ModuleConfiguration, logger: Logger, metrics: ModuleMetrics = ModuleMetrics()) throws(CommandError.Setup) {
        self.configuration = configuration
        let cgroups = try CgroupTree.forModule(configuration, logger: logger)
        self.runner = try CommandRunner(
            temporaryDirectory: configuration.temporaryDirectory, moduleName: configuration.moduleName,
            gracePeriod: configuration.gracePeriod, outputMaxBytes: configuration.outputMaxBytes, cgroups: cgroups,
            logger: logger, users: configuration.commands.values.compactMap { $0.mode == .exec ? $0.user : nil })
        self.logger = logger
        self.metrics = metrics
        self.slots = FairPool(items: Array(repeating: (), count: configuration.maxInFlight))
        self.workers = try WorkerPool.pools(for: configuration, cgroups: cgroups, logger: logger)
        self.breakers = Self.breakers(for: configuration)
    }

    /// Closes the workers' stdin and waits up to the grace period (and a little) for them to be gone: killed
    /// with their group if they did not exit.
    func stopWorkers() {
        for pool in workers.values { pool.shutdown() }
        let deadline = MonotonicClock.now() &+ MonotonicClock.nanoseconds(configuration.gracePeriod + 1)
        for pool in workers.values { pool.waitUntilStopped(until: deadline) }
    }

    /// Worker mode: a check of every worker command's file, waited for (tests: a change made before is then seen
    /// by the next event).
    func checkWorkerCommandFiles() async {
        for pool in workers.values { await pool.file.checkNow() }
    }

    /// Worker mode: workers of `event`'s command restarted after a failure (shared by the events of the command).
    func workerRestarts(_ event: Event) -> Int {
        guard let command = configuration.command(for: event), command.mode == .worker else { return 0 }
        return workers[command.path]?.restarts.load(ordering: .relaxed) ?? 0
    }

    /// What a command produced: an output file (exec mode) or an answer (worker mode).
    private enum Produced {
        case file([UInt8], console: String)
        case answer(JSONValue?)
    }

    func log(_ event: Event, _ subject: String) -> EventLog { EventLog(logger: logger, event: event, subject: subject) }

    /// Runs `command` with `envelope`. Throws ``EventError`` when the command fails or its output is not what
    /// the event expects; the failure is logged with the command's console output.
    func run(_ command: CommandConfiguration, envelope: Envelope, subject: String, startedAt: EventStart? = nil)
        async throws(EventError) -> CommandOutput
    {
        let event = command.event
        // An open breaker answers at once, before anything is started or logged for the event.
        let admission = try admit(command, subject: subject)
        let log = log(event, subject)
        // The event's whole life counts against its timeout, from Mesos' call, its rule and waiting for a slot included.
        let startedAt = startedAt ?? EventCall.current.map {
            EventStart(nanoseconds: $0.nanoseconds, spentOn: "a thread of the engine to take it up")
        }
        let deadline = Deadline(seconds: command.timeout, from: startedAt?.nanoseconds ?? MonotonicClock.now())
        let input = envelope.jsonText
        if configuration.debug {
            log.info("Calling command \"\(command.path)\" (timeout \(CommandError.seconds(command.timeout))) with input \(input)")
        }
        let start = ContinuousClock.now
        let result: Result<Produced, CommandError>
        var cpuSeconds = 0.0
        var leftovers: [Leftover] = []
        if let startedAt, deadline.hasPassed {
            result = .failure(CommandError(
                command: command.path, code: .timedOutWaiting(timeout: command.timeout, waitingFor: startedAt.spentOn)))
        } else if command.mode == .worker, let pool = workers[command.path] {
            do {
                let answer = try await pool.run(event, envelope: input, deadline: deadline, logPrefix: log.prefix,
                                                exactCPU: configuration.debug)
                cpuSeconds = answer.cpuSeconds
                result = .success(.answer(answer.output))
            } catch {
                cpuSeconds = error.cpuSeconds
                result = .failure(error)
            }
        } else {
            let run = await execute(command, input: Array(input.utf8), deadline: deadline)
            switch run {
            case .success(let run): (cpuSeconds, leftovers) = (run.cpuSeconds, run.leftovers)
            case .failure(let error): (cpuSeconds, leftovers) = (error.cpuSeconds, error.leftovers)
            }
            result = run.map { .file($0.output, console: $0.console) }
        }
        let seconds = (ContinuousClock.now - start).seconds
        if !leftovers.isEmpty { logLeftovers(leftovers, of: command, log) }

        switch result {
        case .success(.file(_, let console)): logConsole(console, of: command, log)
        case .success(.answer): break
        case .failure(let error): logConsole(error.console, of: command, log)
        }

        let outcome: Result<CommandOutput, CommandError> = result.flatMap { produced in
            switch produced {
            case .file(let output, _):
                if configuration.debug {
                    log.info("Command \"\(command.path)\" succeeded in \(milliseconds(seconds)) (CPU "
                        + "\(milliseconds(cpuSeconds))) with output "
                        + "\(String(decoding: output, as: UTF8.self))")
                }
                return interpret(output, for: event, command: command.path)
            case .answer(let output):
                if configuration.debug {
                    log.info("Worker \"\(command.path)\" answered in \(milliseconds(seconds)) (CPU "
                        + "\(milliseconds(cpuSeconds))) with output " + (output?.jsonText ?? "null"))
                }
                return check(output, for: event, command: command.path)
            }
        }
        switch outcome {
        case .success(let output):
            metrics.record(event, seconds: seconds, failed: false, timedOut: false, cpuSeconds: cpuSeconds)
            settle(admission, command, subject: subject, failure: nil)
            if case .value(_, let warnings) = output, !warnings.isEmpty {
                log.warning("Command \"\(command.path)\" output: "
                    + warnings.map(\.description).joined(separator: "; "))
            }
            return output
        case .failure(let error):
            let cancelled = error.code == .cancelled
            if !cancelled {
                metrics.record(event, seconds: seconds, failed: true, timedOut: error.isTimeout, cpuSeconds: cpuSeconds)
                log.error(error.description + (error.console.isEmpty ? "" : " Console output: \(error.console)"))
            }
            settle(admission, command, subject: subject, failure: error)
            throw EventError(event, subject: subject, command: error)
        }
    }

    /// Runs the command in a slot of `max_in_flight`, the wait for the slot counting against the deadline.
    private func execute(_ command: CommandConfiguration, input: [UInt8], deadline: Deadline) async
        -> Result<CommandRun, CommandError>
    {
        do {
            try await slots.acquire(until: deadline)
        } catch {
            return .failure(slotFailure(error, command))
        }
        // A slot handed over at the deadline, or to a cancelled event: nothing is started for it.
        if deadline.hasPassed || Task.isCancelled {
            slots.release(())
            return .failure(slotFailure(Task.isCancelled ? .cancelled : .timedOut, command))
        }
        defer { slots.release(()) }
        do {
            return .success(try await runner.run(
                command.path, input: input, deadline: deadline, readsOutput: command.event.output != .none,
                environment: ["MESOS_COMMAND_MODULES_EVENT=\(command.event.key)"],
                leftoverPolicy: command.leftoverProcesses, user: command.user))
        } catch {
            return .failure(error)
        }
    }

    private func slotFailure(_ error: FairPool<Void>.Failure, _ command: CommandConfiguration) -> CommandError {
        switch error {
        case .timedOut:
            return CommandError(command: command.path, code: .timedOutWaiting(
                timeout: command.timeout,
                waitingFor: "one of the module's max_in_flight=\(configuration.maxInFlight) command slots"))
        case .cancelled:
            return CommandError(command: command.path, code: .cancelled)
        case .system(let failure):
            return CommandError(command: command.path, code: .setup("\(failure)"))
        }
    }

    /// Processes a command left running when it exited (SPEC §3 "Containment"): one WARNING naming each (pid and
    /// name), with the event and the container in the prefix, and what became of them.
    func logLeftovers(_ leftovers: [Leftover], of command: CommandConfiguration, _ log: EventLog) {
        let key = command.event.key + "_leftover_processes"
        let fate = command.leftoverProcesses == .kill
            ? "killed them (\(key)=kill)"
            : "they keep running (\(key)=keep; set it to kill to stop them)"
        log.warning("Command \"\(command.path)\" exited and left \(leftovers.count) process(es) running: "
            + leftovers.map(\.description).joined(separator: ", ") + "; " + fate)
    }

    /// Each line the command wrote on stdout or stderr, in the agent's log with the event's prefix, as the
    /// C++ module's commands wrote into the agent's own output (bounded per run).
    func logConsole(_ console: String, of command: CommandConfiguration, _ log: EventLog) {
        guard !console.isEmpty else { return }
        let name = command.path.split(separator: "/").last.map(String.init) ?? command.path
        var logged = 0
        var skipped = 0
        for line in console.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty { continue }
            guard logged < Self.consoleLinesLogged else {
                skipped += 1
                continue
            }
            logged += 1
            log.info("\(name): \(Self.clipped(line))")
        }
        if skipped > 0 {
            log.info("\(name): … \(skipped) more line(s) of output not logged")
        }
    }

    /// Parses and checks an output file against the message the event expects (SPEC §4, §5).
    func interpret(_ output: [UInt8], for event: Event, command: String) -> Result<CommandOutput, CommandError> {
        if output.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return .success(.empty) }
        let value: JSONValue
        do {
            value = try JSONValue(parsing: output)
        } catch {
            return .failure(CommandError(command: command, code: .malformedOutput(error)))
        }
        return check(value, for: event, command: command)
    }

    /// Checks an output (nil: empty) against the message the event expects, as an output file would be.
    func check(_ output: JSONValue?, for event: Event, command: String) -> Result<CommandOutput, CommandError> {
        guard var value = output else { return .success(.empty) }
        // ResourceStatistics.timestamp is required by the proto, but usage fills it in when left out (SPEC §5).
        if event == .usage, case .object = value, value["timestamp"] == nil {
            value = value.setting("timestamp", to: .number(IsolatorModule.now()))
        }
        let issues: [SchemaIssue]
        let expected: String
        switch event.output {
        case .none:
            return .success(.value(value, warnings: []))
        case .message(let name):
            issues = MesosSchema.check(value, as: name)
            expected = name
        case .array(let name):
            issues = MesosSchema.checkArray(value, of: name)
            expected = "array of \(name)"
        case .fields(let fields, let name):
            issues = MesosSchema.checkFields(value, fields, of: name)
            expected = name
        }
        if issues.contains(where: { $0.severity == .error }) {
            return .failure(CommandError(command: command, code: .invalidOutput(message: expected, issues: issues)))
        }
        return .success(.value(value, warnings: issues))
    }
}

func milliseconds(_ seconds: Double) -> String {
    let ms = (seconds * 10_000).rounded() / 10
    return "\(ms) ms"
}

extension Duration {
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}
