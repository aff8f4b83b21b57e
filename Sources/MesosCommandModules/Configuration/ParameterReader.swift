import Glibc

/// Reads a manifest's key/value parameters into a ``ModuleConfiguration``, collecting every problem.
struct ParameterReader {
    let kind: ModuleKind
    let values: [String: String]
    let order: [String]
    let baseDirectory: String?
    var errors: [ConfigurationIssue] = []
    var warnings: [ConfigurationIssue] = []
    var notes: [ConfigurationIssue] = []
    /// Which events set `<event>_workers` themselves.
    var workersGiven: [Event: Bool] = [:]
    /// Which events set `<event>_worker_max_events` themselves.
    var maxEventsGiven: [Event: Bool] = [:]

    static let commandSuffixes = ["_command", "_timeout", "_failure_policy", "_when", "_mode", "_workers", "_worker_max_events",
                                  "_breaker_failures", "_breaker_seconds", "_leftover_processes", "_user"]
    static let globalKeys = [
        "module_name", "debug", "isolator_watch_frequence", "isolator_watch_frequency", "grace_period", "state_dir",
        "temp_dir", "output_max_bytes", "max_in_flight", "containment",
    ]
    static let isolatorOnlyKeys: Set<String> = ["isolator_watch_frequence", "isolator_watch_frequency", "state_dir"]

    /// Every key a module of either kind accepts.
    static let knownKeys: [String] = globalKeys + Event.allCases.flatMap { event in
        commandSuffixes.map { event.key + $0 }
    }

    init(kind: ModuleKind, parameters: [(key: String, value: String)], baseDirectory: String?) {
        self.kind = kind
        var values: [String: String] = [:]
        var order: [String] = []
        for parameter in parameters {
            if values.updateValue(parameter.value, forKey: parameter.key) == nil { order.append(parameter.key) }
        }
        self.values = values
        self.order = order
        self.baseDirectory = baseDirectory
    }

    var moduleName: String? {
        guard let name = values["module_name"], !name.isEmpty else { return nil }
        return name
    }

    mutating func error(_ key: String, _ message: String) { errors.append(ConfigurationIssue(key: key, message: message)) }

    mutating func read() -> ModuleConfiguration {
        var configuration = ModuleConfiguration(kind: kind, moduleName: moduleName ?? "")
        if let moduleName {
            if let problem = Self.moduleNameProblem(moduleName) { error("module_name", problem) }
        } else {
            error("module_name", "module_name parameter is mandatory for all defined modules")
        }
        checkKeys()
        configuration.debug = boolean("debug") ?? false
        if values["isolator_watch_frequence"] != nil, values["isolator_watch_frequency"] != nil {
            error("isolator_watch_frequency", "isolator_watch_frequence is set too; keep one of the two spellings")
        }
        configuration.watchFrequency = seconds("isolator_watch_frequence")
            ?? seconds("isolator_watch_frequency") ?? ModuleConfiguration.defaultWatchFrequency
        configuration.gracePeriod = seconds("grace_period", allowZero: true) ?? ModuleConfiguration.defaultGracePeriod
        configuration.stateDirectory = directory("state_dir") ?? ModuleConfiguration.defaultStateDirectory
        configuration.temporaryDirectory = directory("temp_dir") ?? ModuleConfiguration.defaultTemporaryDirectory
        checkTrust(configuration)
        configuration.outputMaxBytes = count("output_max_bytes", atMost: Bound.outputMaxBytes,
            "the largest output the module reads into memory") ?? ModuleConfiguration.defaultOutputMaxBytes
        configuration.maxInFlight = count("max_in_flight", atMost: Bound.maxInFlight,
            "the most commands a module may run at once") ?? ModuleConfiguration.defaultMaxInFlight
        configuration.containment = containment()
        for event in Event.allCases where event.kind == kind {
            if let command = command(event) {
                configuration.commands[event] = command
                warnIfBlockingTheMaster(command)
            }
        }
        checkSharedWorkers(configuration.commands.values)
        checkUsers(configuration)
        configuration.warnings = warnings
        configuration.notes = notes
        return configuration
    }

    /// Unknown keys are errors (most are typos); keys of the other module kind are warnings, because the seed
    /// accepted one parameter list for both kinds and operators' manifests may still carry such keys.
    mutating func checkKeys() {
        let known = Set(Self.knownKeys)
        for key in order {
            if !known.contains(key) {
                var message = "unknown parameter"
                if let suggestion = Self.suggestion(for: key) { message += " (did you mean '\(suggestion)'?)" }
                error(key, message)
                continue
            }
            let otherKind = kind == .hook ? ModuleKind.isolator : ModuleKind.hook
            let isOtherKind =
                (kind == .hook && Self.isolatorOnlyKeys.contains(key))
                || Event.allCases.contains { $0.kind == otherKind && key.hasPrefix($0.key + "_") }
            if isOtherKind {
                warnings.append(
                    ConfigurationIssue(
                        key: key, message: "applies to \(otherKind.rawValue) modules only; a \(kind.rawValue) module ignores it"))
            }
        }
    }

    /// The master calls its hooks on its one actor: while a master hook's command runs, the whole master —
    /// offers, launches, status updates of the cluster — waits, for each task it launches.
    static let masterHookTimeoutWarning = 5.0

    mutating func warnIfBlockingTheMaster(_ command: CommandConfiguration) {
        guard command.event.blocksTheMaster, command.timeout > Self.masterHookTimeoutWarning else { return }
        let given = values[command.event.key + "_timeout"] != nil
        warnings.append(ConfigurationIssue(
            key: command.event.key + "_timeout",
            message: "\(CommandError.seconds(command.timeout))\(given ? "" : " (the default)") is long for a master hook: "
                + "the master runs it on its only actor, so every offer, launch and status update of the cluster "
                + "waits up to that long for each task; keep it at \(CommandError.seconds(Self.masterHookTimeoutWarning)) or less"))
    }

    /// The known key closest to a misspelled one, if it is close enough to be a typo.
    static func suggestion(for key: String) -> String? {
        if let event = Event.allCases.first(where: { $0.key == key }) { return event.key + "_command" }
        let ranked = knownKeys.map { ($0, editDistance(key, $0)) }.min { $0.1 < $1.1 }
        guard let (best, distance) = ranked, distance <= max(2, key.count / 5) else { return nil }
        return best
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a.utf8)
        let b = Array(b.utf8)
        var previous = Array(0...b.count)
        for i in 1...max(a.count, 1) where !a.isEmpty {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...max(b.count, 1) where !b.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }

    mutating func directory(_ key: String) -> String? {
        guard let path = values[key] else { return nil }
        guard path.hasPrefix("/") else {
            error(key, "'\(path)' is not an absolute path")
            return nil
        }
        return path
    }

    /// SPEC §3: the directories the module will use — `temp_dir`, and an isolator's `<state_dir>/<module_name>`,
    /// defaults included — and every directory above them must be root's or the agent's user's and not writable
    /// by others unless sticky. Nothing is created: a missing directory's deepest existing ancestor is checked.
    mutating func checkTrust(_ configuration: ModuleConfiguration) {
        if values["temp_dir"]?.hasPrefix("/") ?? true,
           let distrust = TemporaryArea.distrust(ofParent: configuration.temporaryDirectory)
        {
            error("temp_dir", "\(distrust.message(about: configuration.temporaryDirectory)): \(TemporaryArea.distrustConsequence)")
        }
        guard kind == .isolator, let moduleName, Self.moduleNameProblem(moduleName) == nil,
              values["state_dir"]?.hasPrefix("/") ?? true else { return }
        if let distrust = ContainerStateStore.distrust(stateDirectory: configuration.stateDirectory, moduleName: moduleName) {
            error("state_dir", "\(distrust.message(about: configuration.stateDirectory)): \(ContainerStateStore.distrustConsequence)")
        }
    }

    mutating func command(_ event: Event) -> CommandConfiguration? {
        let commandKey = event.key + "_command"
        let timeout = seconds(event.key + "_timeout") ?? ModuleConfiguration.defaultTimeout
        var policy: FailurePolicy?
        if let text = values[event.key + "_failure_policy"] {
            policy = FailurePolicy(rawValue: text)
            if policy == nil { error(event.key + "_failure_policy", "'\(text)' is not a failure policy (fail or ignore)") }
        }
        let rule = rule(event)
        var mode = CommandMode.exec
        if let text = values[event.key + "_mode"] {
            if let given = CommandMode(rawValue: text) {
                mode = given
            } else {
                error(event.key + "_mode", "'\(text)' is not a mode (exec or worker)")
            }
        }
        var leftovers = LeftoverPolicy.keep
        if let text = values[event.key + "_leftover_processes"] {
            if let given = LeftoverPolicy(rawValue: text) {
                leftovers = given
            } else {
                error(event.key + "_leftover_processes", "'\(text)' is not a leftover policy (keep or kill)")
            }
        }
        let workers = count(event.key + "_workers", atMost: Bound.workers,
            "the most worker processes a command may have")
        let maxEvents = count(event.key + "_worker_max_events", atMost: Bound.workerMaxEvents,
            "the most events a worker may serve before it is replaced (unset: no limit)")
        let breaker = breaker(event)
        for (key, given) in [("_workers", workers != nil), ("_worker_max_events", maxEvents != nil)] where given && mode != .worker {
            warnings.append(ConfigurationIssue(
                key: event.key + key, message: "applies to \(event.key)_mode=worker only; ignored in exec mode"))
        }
        let user = user(event)
        // An empty command is "not handled", as in the seed.
        guard let given = values[commandKey], !given.isEmpty else {
            if rule != nil {
                warnings.append(ConfigurationIssue(key: event.key + "_when", message: "\(commandKey) is not set: the rule has nothing to decide"))
            }
            if user != nil {
                warnings.append(ConfigurationIssue(key: event.key + "_user", message: "\(commandKey) is not set: no command runs as this user"))
            }
            return nil
        }
        guard let path = resolve(given, key: commandKey) else { return nil }
        if let problem = ExecutableCheck.problem(with: path) { error(commandKey, "'\(given)' \(problem)") }
        var command = CommandConfiguration(event: event, path: path, timeout: timeout, failurePolicy: policy, rule: rule)
        command.mode = mode
        command.workers = workers ?? 1
        command.workerMaxEvents = maxEvents
        command.breaker = breaker
        command.user = user
        command.leftoverProcesses = leftovers
        workersGiven[event] = workers != nil
        maxEventsGiven[event] = maxEvents != nil
        return command
    }

    /// Events of one module in worker mode whose command is the same file share its workers: they must agree on
    /// how many (the default, 1, gives way to a number one of them sets), and on how many events each serves
    /// (no limit gives way to the limit one of them sets).
    mutating func checkSharedWorkers(_ commands: Dictionary<Event, CommandConfiguration>.Values) {
        let shared = Dictionary(grouping: commands.filter { $0.mode == .worker }, by: \.path)
        for (_, group) in shared where group.count > 1 {
            let given = group.filter { workersGiven[$0.event] == true }.sorted { $0.event.key < $1.event.key }
            guard let first = given.first else { continue }
            for other in given.dropFirst() where other.workers != first.workers {
                error(other.event.key + "_workers",
                      "\(other.workers) differs from \(first.event.key)_workers=\(first.workers), and both events share the worker '\(first.path)'")
            }
        }
        for (_, group) in shared where group.count > 1 {
            let given = group.filter { maxEventsGiven[$0.event] == true }.sorted { $0.event.key < $1.event.key }
            guard let first = given.first, let limit = first.workerMaxEvents else { continue }
            for other in given.dropFirst() where other.workerMaxEvents != limit {
                error(other.event.key + "_worker_max_events",
                      "\(other.workerMaxEvents ?? 0) differs from \(first.event.key)_worker_max_events=\(limit), and both events share the worker '\(first.path)'")
            }
        }
    }

    /// `containment`: what it resolves to on this host is said in a note (the load line, `validate`); `cgroup`
    /// where no writable cgroup v2 hierarchy exists is an error.
    mutating func containment() -> ContainmentMode {
        var mode = ContainmentMode.auto
        if let text = values["containment"] {
            guard let given = ContainmentMode(rawValue: text) else {
                error("containment", "'\(text)' is not a containment (auto, cgroup or process_group)")
                return .auto
            }
            mode = given
        }
        switch ContainmentChoice.resolve(mode) {
        case .success(let choice): notes.append(ConfigurationIssue(key: "containment", message: choice.message))
        case .failure(let unavailable): error("containment", "cgroup is not possible on this host: \(unavailable.reason)")
        }
        return mode
    }

    /// `<event>_when`: parsed, and checked against what the event's input holds.
    mutating func rule(_ event: Event) -> Rule? {
        let key = event.key + "_when"
        guard let text = values[key] else { return nil }
        let rule: Rule
        do {
            rule = try Rule(parsing: text)
        } catch {
            self.error(key, "'\(text)' does not parse: \(error)")
            return nil
        }
        let available = event.ruleProperties
        guard !available.isEmpty else {
            self.error(key, event == .recover
                ? "recover concerns every container at once: a rule cannot apply"
                : "this event concerns the agent, not a task or a container: a rule cannot apply")
            return nil
        }
        for property in rule.properties where !available.contains(property.kind) {
            self.error(key, "'\(property.name)' cannot be tested for \(event.key): its input does not hold it "
                + "(it can test \(Rule.Property.names(of: available)))")
            return nil
        }
        return rule
    }

    /// A command without a `/` is looked up in PATH now, once, as the C++ module's execvpe did per run;
    /// a relative path with a `/` is resolved against `baseDirectory` (the CLI: the manifest's directory).
    mutating func resolve(_ path: String, key: String) -> String? {
        if !path.contains("/") {
            switch ExecutableCheck.lookUp(path) {
            case .found(let resolved):
                notes.append(ConfigurationIssue(key: key, message: "'\(path)' found in PATH: \(resolved)"))
                return resolved
            case .notFound(let searched):
                error(key, "'\(path)' was not found in PATH (\(searched))")
                return nil
            }
        }
        guard !path.hasPrefix("/"), let baseDirectory else { return path }
        return baseDirectory.hasSuffix("/") ? baseDirectory + path : baseDirectory + "/" + path
    }
}

/// Whether a path names a file the agent can execute.
public enum ExecutableCheck {
    public enum LookUp {
        case found(String)
        case notFound(searched: String)
    }

    /// The first executable regular file named `name` in the directories of `PATH` (execvp's default,
    /// `/bin:/usr/bin`, when PATH is unset; an empty entry is the working directory, as for execvp).
    public static func lookUp(_ name: String) -> LookUp {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/bin:/usr/bin"
        for directory in path.split(separator: ":", omittingEmptySubsequences: false) {
            let candidate = (directory.isEmpty ? "." : String(directory)) + "/" + name
            if problem(with: candidate) == nil { return .found(candidate) }
        }
        return .notFound(searched: path)
    }

    /// Why `path` cannot be run, or nil if it can.
    static func problem(with path: String) -> String? {
        var info = stat()
        if stat(path, &info) != 0 {
            return errno == ENOENT ? "does not exist" : "cannot be read: \(SystemError.describe(errno))"
        }
        if (info.st_mode & S_IFMT) == S_IFDIR { return "is a directory, not an executable file" }
        if (info.st_mode & S_IFMT) != S_IFREG { return "is not a regular file" }
        if access(path, X_OK) != 0 { return "is not executable (chmod +x)" }
        return nil
    }
}

extension String {
    /// The `key=value` lines of a small file the project writes (a worker record, the build identity); other
    /// lines are ignored, a later key wins.
    var keyValueLines: [String: String] {
        var values: [String: String] = [:]
        for line in split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        return values
    }

    var trimmingWhitespace: Substring {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        let start = firstIndex { !isSpace($0) } ?? endIndex
        let end = lastIndex { !isSpace($0) }.map { index(after: $0) } ?? start
        return self[start..<max(start, end)]
    }
}
