/// What a rule is tested against: the Mesos messages of an event — a hook's envelope, or an isolator container's
/// id and config — parsed only as far as the rule needs, once.
final class RuleSubject {
    private let fragments: [String: String]
    private var parsed: [String: JSONValue?] = [:]

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

    private func message(_ key: String) -> JSONValue? {
        if let value = parsed[key] { return value }
        let value = fragments[key].flatMap { try? JSONValue(parsing: $0) }
        parsed[key] = value
        return value
    }

    private var config: JSONValue? { message("container_config") }
    private var task: JSONValue? { message("task_info") ?? config?["task_info"] }
    private var executors: [JSONValue] {
        let own = config?["executor_info"] ?? message("parent_container_config")?["executor_info"]
        return [message("executor_info"), own, task?["executor"]].compactMap { $0 }
    }
    private var framework: JSONValue? { message("framework_info") }

    /// The values of a property for this event; empty when absent.
    func values(_ property: Rule.Property) -> [String] {
        switch property {
        case .label(let key): return labels(key, of: [task].compactMap { $0 } + executors)
        case .taskLabel(let key): return labels(key, of: [task].compactMap { $0 })
        case .executorLabel(let key): return labels(key, of: executors)
        case .framework: return [framework?["name"]?.stringValue].compactMap { $0 }
        case .frameworkID:
            let ids = [framework?["id"], message("framework_id")] + executors.map { $0["framework_id"] }
            return unique(ids.compactMap { $0?["value"]?.stringValue })
        case .role:
            var roles = framework?["roles"]?.arrayValue?.compactMap(\.stringValue) ?? []
            if let role = framework?["role"]?.stringValue { roles.append(role) }
            let resources = [task?["resources"], config?["resources"]] + executors.map { $0["resources"] }
            for list in resources.compactMap({ $0?.arrayValue }) {
                roles += list.compactMap { $0["allocation_info"]?["role"]?.stringValue }
            }
            return unique(roles)
        case .taskName: return [task?["name"]?.stringValue].compactMap { $0 }
        case .nested:
            guard let id = message("container_id") else { return [] }
            return [id["parent"] == nil ? "false" : "true"]
        case .containerClass:
            guard let config else { return [] }
            return [config["container_class"]?.stringValue ?? "DEFAULT"]
        }
    }

    private func labels(_ key: String, of messages: [JSONValue]) -> [String] {
        messages.flatMap { message in
            (message["labels"]?["labels"]?.arrayValue ?? []).compactMap { label in
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
    /// Tests every condition (all must hold) against `subject`.
    func evaluate(_ subject: RuleSubject) -> RuleDecision {
        for condition in conditions {
            let values = subject.values(condition.property)
            guard condition.holds(for: values) else {
                let found = values.isEmpty ? "absent" : values.map { "'\($0)'" }.joined(separator: ", ")
                return RuleDecision(matched: false, reason: "'\(condition)' does not hold (\(condition.property.reading): \(found))")
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

extension Rule {
    /// A property without its label key, for what an event can test.
    enum PropertyKind: Hashable {
        case label, taskLabel, executorLabel, framework, frameworkID, role, taskName, nested, containerClass
    }
}

extension Rule.Property {
    var kind: Rule.PropertyKind {
        switch self {
        case .label: return .label
        case .taskLabel: return .taskLabel
        case .executorLabel: return .executorLabel
        case .framework: return .framework
        case .frameworkID: return .frameworkID
        case .role: return .role
        case .taskName: return .taskName
        case .nested: return .nested
        case .containerClass: return .containerClass
        }
    }
}
