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
    let limiter: InFlightLimiter

    init(configuration: ModuleConfiguration, logger: Logger) throws(CommandError.Setup) {
        self.configuration = configuration
        self.runner = try CommandRunner(
            temporaryDirectory: configuration.temporaryDirectory, moduleName: configuration.moduleName,
            gracePeriod: configuration.gracePeriod, outputMaxBytes: configuration.outputMaxBytes)
        self.logger = logger
        self.metrics = ModuleMetrics()
        self.limiter = InFlightLimiter(limit: configuration.maxInFlight)
    }

    func log(_ event: Event, _ subject: String) -> EventLog { EventLog(logger: logger, event: event, subject: subject) }

    /// Runs `command` with `envelope`. Throws ``EventError`` when the command fails or its output is not what
    /// the event expects; the failure is logged with the command's console output.
    func run(_ command: CommandConfiguration, envelope: Envelope, subject: String) async throws(EventError)
        -> CommandOutput
    {
        let event = command.event
        let log = log(event, subject)
        let input = envelope.jsonText
        if configuration.debug {
            log.info("Calling command \"\(command.path)\" (timeout \(CommandError.seconds(command.timeout))) with input \(input)")
        }
        let start = ContinuousClock.now
        let result: Result<CommandRun, CommandError>
        do {
            let run = try await limiter.withSlot { () async throws -> CommandRun in
                try await runner.run(
                    command.path, input: Array(input.utf8), timeout: command.timeout,
                    readsOutput: event.output != .none)
            }
            result = .success(run)
        } catch let error as CommandError {
            result = .failure(error)
        } catch {
            result = .failure(CommandError(command: command.path, code: .cancelled))
        }
        let seconds = (ContinuousClock.now - start).seconds

        let outcome: Result<CommandOutput, CommandError> = result.flatMap { run in
            if configuration.debug {
                log.info("Command \"\(command.path)\" succeeded in \(milliseconds(seconds)) with output "
                    + "\(String(decoding: run.output, as: UTF8.self))"
                    + (run.console.isEmpty ? "" : "; console: \(run.console)"))
            }
            return interpret(run.output, for: event, command: command.path)
        }
        switch outcome {
        case .success(let output):
            metrics.record(event, seconds: seconds, failed: false, timedOut: false)
            if case .value(_, let warnings) = output, !warnings.isEmpty {
                log.warning("Command \"\(command.path)\" output: "
                    + warnings.map(\.description).joined(separator: "; "))
            }
            return output
        case .failure(let error):
            let cancelled = error.code == .cancelled
            if !cancelled { metrics.record(event, seconds: seconds, failed: true, timedOut: error.isTimeout) }
            if !cancelled {
                log.error(error.description + (error.console.isEmpty ? "" : " Console output: \(error.console)"))
            }
            throw EventError(event, subject: subject, command: error)
        }
    }

    /// Parses and checks an output file against the message the event expects (SPEC §4, §5).
    func interpret(_ output: [UInt8], for event: Event, command: String) -> Result<CommandOutput, CommandError> {
        if output.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return .success(.empty) }
        var value: JSONValue
        do {
            value = try JSONValue(parsing: output)
        } catch {
            return .failure(CommandError(command: command, code: .malformedOutput(error)))
        }
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
