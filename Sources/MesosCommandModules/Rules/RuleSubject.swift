/// What a rule is tested against: the Mesos messages of an event — a hook's envelope, or an isolator container's
/// id and config — read only where the rule looks (the rest of each message is skipped, not parsed).
final class RuleSubject {
    private let fragments: [String: String]

    /// A hook event's envelope.
    init(envelope: Envelope) {
        var fragments: [String: String] = [:]
        for member in envelope.members { fragments[member.key] = member.json }
        self.fragments = fragments
    }

    /// An isolator's container: its id and the ContainerConfig of `prepare` — and, for a nested container, its
    /// parent's: Mesos gives a nested container (a task of a task group) no TaskInfo, and its ExecutorInfo only
    /// "best effort" (not after an agent failover); the parent's, remembered by the isolator, is the same
    /// executor's, so that a rule on the executor decides alike before and after a restart.
    init(containerID: String, containerConfig: String?, parentConfig: String? = nil) {
        var fragments = ["container_id": containerID]
        if let containerConfig { fragments["container_config"] = containerConfig }
        if let parentConfig { fragments["parent_container_config"] = parentConfig }
        self.fragments = fragments
    }

    /// The value at `path` in fragment `key`, read without parsing the rest of it (see `JSONScanner`).
    private func at(_ key: String, _ path: [String]) -> JSONValue? {
        guard let text = fragments[key] else { return nil }
        return JSONScanner.value(at: path, in: text)
    }

    /// Where a message is: a fragment, and the path to it inside (empty: the fragment itself).
    private typealias Place = (fragment: String, path: [String])

    /// The task: the envelope's task_info, or the container's.
    private var tasks: [Place] { [("task_info", []), ("container_config", ["task_info"])] }

    /// The executor: the envelope's executor_info, the container's (or, for a nested container without one,
    /// its parent's), and a custom executor inside the task.
    private var executors: [Place] {
        var places: [Place] = [("executor_info", []), ("task_info", ["executor"]), ("container_config", ["task_info", "executor"])]
        if let config = fragments["container_config"], JSONScanner.contains(["executor_info"], in: config) {
            places.append(("container_config", ["executor_info"]))
        } else {
            places.append(("parent_container_config", ["executor_info"]))
        }
        return places
    }

    private func values(_ places: [Place], _ field: [String]) -> [JSONValue] {
        places.compactMap { at($0.fragment, $0.path + field) }
    }

    /// The values of a property for this event; empty when absent.
    func values(_ property: Rule.Property) -> [String] {
        switch property {
        case .label(let key): return labels(key, in: tasks + executors)
        case .taskLabel(let key): return labels(key, in: tasks)
        case .executorLabel(let key): return labels(key, in: executors)
        case .framework: return [at("framework_info", ["name"])?.stringValue].compactMap { $0 }
        case .frameworkID:
            let ids = [at("framework_info", ["id", "value"]), at("framework_id", ["value"])]
                + values(executors, ["framework_id", "value"])
            return unique(ids.compactMap { $0?.stringValue })
        case .role:
            var roles = at("framework_info", ["roles"])?.arrayValue?.compactMap(\.stringValue) ?? []
            if let role = at("framework_info", ["role"])?.stringValue { roles.append(role) }
            let resources = values(tasks + executors, ["resources"]) + [at("container_config", ["resources"])].compactMap { $0 }
            for list in resources.compactMap(\.arrayValue) {
                roles += list.compactMap { $0["allocation_info"]?["role"]?.stringValue }
            }
            return unique(roles)
        case .taskName: return values(tasks, ["name"]).compactMap(\.stringValue)
        case .nested:
            guard let id = fragments["container_id"] else { return [] }
            return [JSONScanner.contains(["parent"], in: id) ? "true" : "false"]
        case .containerClass:
            guard fragments["container_config"] != nil else { return [] }
            return [at("container_config", ["container_class"])?.stringValue ?? "DEFAULT"]
        }
    }

    /// What the event holds for `property`, in words, for a skipped event's reason: a label of the task or the
    /// executor (`label:<key>`) says whose it is.
    func found(_ property: Rule.Property) -> String {
        guard case .label(let key) = property else {
            return "\(property.reading): \(Self.list(unique(values(property))))"
        }
        let task = unique(labels(key, in: tasks))
        let executor = unique(labels(key, in: executors))
        if task.isEmpty && executor.isEmpty { return "\(property.reading): absent" }
        return "the task's label '\(key)': \(Self.list(task)); the executor's: \(Self.list(executor))"
    }

    /// Values as a log line shows them: quoted, control characters (a NUL, a newline) escaped as in JSON, each
    /// cut at `shownLength` characters — a value is the tenant's and may be long.
    static func list(_ values: [String]) -> String {
        values.isEmpty ? "absent" : values.map(quoted).joined(separator: ", ")
    }

    static let shownLength = 200

    static func quoted(_ value: String) -> String {
        var shown = "'"
        for scalar in value.prefix(shownLength).unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16)
                shown += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                shown.unicodeScalars.append(scalar)
            }
        }
        return shown + (value.count > shownLength ? "…' (\(value.count) characters)" : "'")
    }

    private func labels(_ key: String, in places: [Place]) -> [String] {
        values(places, ["labels", "labels"]).flatMap { list in
            (list.arrayValue ?? []).compactMap { label in
                label["key"]?.stringValue == key ? (label["value"]?.stringValue ?? "") : nil
            }
        }
    }

    private func unique(_ values: [String]) -> [String] {
        var seen = Set<String>()
        return values.filter { seen.insert($0).inserted }
    }
}

/// Whether an event's command runs, and why not.
public struct RuleDecision: Sendable, Equatable {
    public let matched: Bool
    /// For a skipped event: the first condition that does not hold, and what was found.
    public let reason: String

    static let matched = RuleDecision(matched: true, reason: "")
}

extension Rule {
    /// Tests every condition (all must hold) against `subject`. With a `deadline`, one that passes before every
    /// condition is decided leaves the rule undecided (nil): the event has run out of time (SPEC §9, rules are
    /// evaluated within the event's timeout); a pattern looks at the clock every few thousand characters, so the
    /// rule stops within microseconds of the deadline. Without
    /// `explaining`, a skipped event's reason is left empty: it reads the messages a second time, and a hook
    /// skipped without a log line (debug off) has no use for it.
    func evaluate(_ subject: RuleSubject, until deadline: Deadline? = nil, explaining: Bool = true) -> RuleDecision? {
        for condition in conditions {
            if deadline?.hasPassed == true { return nil }
            guard let holds = condition.holds(for: subject.values(condition.property), until: deadline) else { return nil }
            guard holds else {
                guard explaining else { return RuleDecision(matched: false, reason: "") }
                return RuleDecision(
                    matched: false, reason: "'\(condition)' does not hold (\(subject.found(condition.property)))")
            }
        }
        return .matched
    }
}

extension Event {
    /// What a rule can test for this event, given the messages Mesos hands it (SPEC §4, §5); empty when the
    /// event does not concern a task or a container.
    var ruleProperties: Set<Rule.PropertyKind> {
        switch self {
        case .masterLaunchTaskLabelDecorator, .slaveRunTaskLabelDecorator:
            return [.label, .taskLabel, .executorLabel, .framework, .frameworkID, .role, .taskName]
        case .masterLaunchTaskResourceDecorator:
            return [.label, .taskLabel, .executorLabel, .role, .taskName]
        case .slaveExecutorEnvironmentDecorator:
            return [.label, .executorLabel, .frameworkID, .role]
        case .slavePreLaunchDockerTaskExecutorDecorator:
            return [.label, .taskLabel, .executorLabel, .frameworkID, .role, .taskName]
        case .slavePostFetchHook:
            return [.nested]
        case .slaveRemoveExecutorHook:
            return [.label, .executorLabel, .framework, .frameworkID, .role]
        case .slaveTaskStatusDecorator:
            return [.frameworkID]
        case .masterSlaveLostHook, .slaveResourcesDecorator, .slaveAttributesDecorator, .recover:
            return []
        case .prepare, .isolate, .watch, .update, .usage, .status, .cleanup:
            return [.label, .taskLabel, .executorLabel, .frameworkID, .role, .taskName, .nested, .containerClass]
        }
    }
}

