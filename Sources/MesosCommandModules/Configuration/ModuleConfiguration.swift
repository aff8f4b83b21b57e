import Glibc

/// One command of a module: the executable an event runs, how long it may take, what a failure means.
public struct CommandConfiguration: Sendable, Equatable {
    public var event: Event
    /// The executable, run directly (no shell).
    public var path: String
    /// Seconds before the command's process group gets SIGTERM (`<key>_timeout`, default 30).
    public var timeout: Double
    /// `<key>_failure_policy`: `fail` or `ignore`; the default depends on the event.
    public var failurePolicy: FailurePolicy
    /// `<key>_when`: the command runs only for events (or, for isolators, containers) the rule matches.
    public var rule: Rule?
    /// `<key>_mode`: a process per event (`exec`, the seed's way) or a long-lived worker serving many (SPEC §8).
    public var mode: CommandMode = .exec
    /// `<key>_workers`: in worker mode, how many worker processes serve the events sharing this command.
    public var workers = 1
    /// `<key>_worker_max_events`: in worker mode, how many events a worker serves before a fresh one replaces it
    /// (nil: no limit) — for scripts that leak.
    public var workerMaxEvents: Int?
    /// `<key>_breaker_failures` / `<key>_breaker_seconds`: the event's circuit breaker (nil: none, the default).
    public var breaker: BreakerSettings?
    /// `<key>_user`: the user the command (or its workers) runs as, resolved at load; nil: the agent's user.
    public var user: CommandUser?
    /// `<key>_leftover_processes`: what happens to processes still running when the command exited normally.
    public var leftoverProcesses = LeftoverPolicy.keep

    public init(event: Event, path: String, timeout: Double = ModuleConfiguration.defaultTimeout,
                failurePolicy: FailurePolicy? = nil, rule: Rule? = nil) {
        self.event = event
        self.path = path
        self.timeout = timeout
        self.failurePolicy = failurePolicy ?? event.defaultFailurePolicy
        self.rule = rule
    }

    public static func == (lhs: CommandConfiguration, rhs: CommandConfiguration) -> Bool {
        lhs.event == rhs.event && lhs.path == rhs.path && lhs.timeout == rhs.timeout
            && lhs.failurePolicy == rhs.failurePolicy && lhs.rule?.text == rhs.rule?.text && lhs.mode == rhs.mode
            && lhs.workers == rhs.workers && lhs.workerMaxEvents == rhs.workerMaxEvents && lhs.breaker == rhs.breaker
            && lhs.user == rhs.user
            && lhs.leftoverProcesses == rhs.leftoverProcesses
    }
}

/// How an event's command is run (SPEC §3, §8).
public enum CommandMode: String, Sendable, CaseIterable {
    /// A process per event: `<command> <input> <output> <error>`.
    case exec
    /// One long-lived process serving many events over a line protocol on its stdin and stdout.
    case worker
}

/// A module's configuration, read from the key/value `parameters` of its entry in the Mesos modules manifest
/// (SPEC §1, §2). Every problem names the module and the key at fault.
public struct ModuleConfiguration: Sendable {
    public static let defaultTimeout = 30.0
    public static let defaultWatchFrequency = 30.0
    public static let defaultGracePeriod = 1.0
    public static let defaultStateDirectory = "/var/run/mesos/isolators/command"
    public static let defaultOutputMaxBytes = 8 << 20
    public static let defaultMaxInFlight = 64

    public var kind: ModuleKind
    /// `module_name`: names logs, metrics and the state directory.
    public var moduleName: String
    /// `debug=true`: log every input and output.
    public var debug: Bool
    /// The configured commands; an event without one is not handled.
    public var commands: [Event: CommandConfiguration]
    /// `isolator_watch_frequence` (or `_frequency`): seconds between two watch runs.
    public var watchFrequency: Double
    /// `grace_period`: seconds between SIGTERM and SIGKILL of a command that took too long.
    public var gracePeriod: Double
    /// `state_dir`: where an isolator keeps one file per container, under `<state_dir>/<module_name>/`.
    public var stateDirectory: String
    /// `temp_dir`: where the private directory of input/output/error files is made.
    public var temporaryDirectory: String
    /// `output_max_bytes`: the largest output (and error) file read; a larger one is an error.
    public var outputMaxBytes: Int
    /// `max_in_flight`: the most commands of this module running at once; further events wait their turn.
    public var maxInFlight: Int
    /// `containment`: cgroup per command and worker where possible (`auto`), required (`cgroup`), or process
    /// groups only (`process_group`).
    public var containment = ContainmentMode.auto
    /// Problems that do not stop the module from loading (e.g. a key of the other module kind).
    public var warnings: [ConfigurationIssue]
    /// What the module decided from its parameters and an operator may want to read in the log (e.g. the path
    /// a command found in PATH).
    public var notes: [ConfigurationIssue]

    /// A configuration with defaults and the given commands, for code that does not start from a manifest.
    public init(kind: ModuleKind, moduleName: String, commands: [CommandConfiguration] = [], debug: Bool = false) {
        self.kind = kind
        self.moduleName = moduleName
        self.debug = debug
        self.commands = Dictionary(commands.map { ($0.event, $0) }, uniquingKeysWith: { $1 })
        self.watchFrequency = Self.defaultWatchFrequency
        self.gracePeriod = Self.defaultGracePeriod
        self.stateDirectory = Self.defaultStateDirectory
        self.temporaryDirectory = Self.defaultTemporaryDirectory
        self.outputMaxBytes = Self.defaultOutputMaxBytes
        self.maxInFlight = Self.defaultMaxInFlight
        self.warnings = []
        self.notes = []
    }

    /// Where the private directory of input/output/error files is made when `temp_dir` is not set: as root
    /// (an agent), `/run/mesos-command-modules` — a root-only directory on a tmpfs, so no other local user can
    /// create anything beside the module's files, and creating them costs no disk journal (BENCHMARKS.md) —;
    /// otherwise (the CLI as a user) `$TMPDIR` or `/tmp`.
    public static var defaultTemporaryDirectory: String {
        var info = stat()
        if geteuid() == 0, stat("/run", &info) == 0, info.st_mode & S_IFMT == S_IFDIR {
            return "/run/mesos-command-modules"
        }
        return userTemporaryDirectory
    }

    /// `$TMPDIR`, or `/tmp`.
    public static var userTemporaryDirectory: String {
        if let dir = getenv("TMPDIR"), dir.pointee != 0 { return String(cString: dir) }
        return "/tmp"
    }

    /// The command for `event`, if one is configured.
    public func command(for event: Event) -> CommandConfiguration? { commands[event] }

    /// Reads a module's parameters.
    ///
    /// - Parameters:
    ///   - kind: hook or isolator.
    ///   - parameters: the manifest's key/value pairs, in order (a repeated key: the last one wins, as in Mesos).
    ///   - baseDirectory: where relative command paths are resolved; nil (the agent) leaves them to the
    ///     process's working directory.
    /// - Throws: ``ConfigurationError`` listing every problem, each naming the module and the key.
    public init(kind: ModuleKind, parameters: [(key: String, value: String)], baseDirectory: String? = nil)
        throws(ConfigurationError)
    {
        var reader = ParameterReader(kind: kind, parameters: parameters, baseDirectory: baseDirectory)
        self = reader.read()
        if !reader.errors.isEmpty {
            throw ConfigurationError(moduleName: reader.moduleName, issues: reader.errors)
        }
    }
}

/// A problem with one parameter of a module.
public struct ConfigurationIssue: Sendable, Equatable, CustomStringConvertible {
    /// The parameter key at fault.
    public var key: String
    public var message: String

    public var description: String { "parameter '\(key)': \(message)" }
}

/// Why a module's parameters cannot be loaded: every problem found, each naming its key.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    /// The module's `module_name`, if it has one.
    public var moduleName: String?
    public var issues: [ConfigurationIssue]

    public var description: String {
        let module = moduleName.map { "module '\($0)'" } ?? "module without module_name"
        return issues.map { "\(module): \($0)" }.joined(separator: "\n")
    }
}
