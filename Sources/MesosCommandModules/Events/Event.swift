/// The two kinds of Mesos module this library provides.
public enum ModuleKind: String, Sendable, CaseIterable {
    case hook
    case isolator

    /// The Mesos module names of this kind: `com_criteo_mesos_CommandHook`, `…Hook2` … `…Hook11` (SPEC §1).
    public var moduleNames: [String] {
        let base = self == .hook ? "com_criteo_mesos_CommandHook" : "com_criteo_mesos_CommandIsolator"
        return [base] + (2...11).map { "\(base)\($0)" }
    }

    /// The kind of the Mesos module named `name`, if it is one of ours.
    public init?(moduleName name: String) {
        guard let kind = ModuleKind.allCases.first(where: { $0.moduleNames.contains(name) }) else { return nil }
        self = kind
    }
}

/// What a command's output file holds for an event.
public enum EventOutput: Sendable, Equatable {
    /// The event takes no output; the file is not read.
    case none
    /// One Mesos message, e.g. `mesos.Labels`.
    case message(String)
    /// A JSON array of Mesos messages, e.g. `mesos.Resource`.
    case array(of: String)
    /// Some fields of a message, to apply over the input (the task status decorator's labels and
    /// container_status).
    case fields([String], of: String)
}

/// What happens when a command fails and its failure policy is `ignore`, or when it writes nothing.
public enum FailurePolicy: String, Sendable, CaseIterable {
    /// The event fails: the hook returns an error, the isolator's future fails.
    case fail
    /// The failure is logged and the event goes on as if the command had written nothing.
    case ignore
}

/// A Mesos Hook or Isolator method that can run a command, named by its parameter key (SPEC §4, §5).
public enum Event: String, Sendable, CaseIterable, Hashable {
    case masterLaunchTaskLabelDecorator = "hook_master_launch_task_label_decorator"
    case masterLaunchTaskResourceDecorator = "hook_master_launch_task_resource_decorator"
    case slaveRunTaskLabelDecorator = "hook_slave_run_task_label_decorator"
    case masterSlaveLostHook = "hook_master_slave_lost_hook"
    case slaveExecutorEnvironmentDecorator = "hook_slave_executor_environment_decorator"
    case slavePreLaunchDockerTaskExecutorDecorator = "hook_slave_pre_launch_docker_task_executor_decorator"
    case slavePostFetchHook = "hook_slave_post_fetch_hook"
    case slaveRemoveExecutorHook = "hook_slave_remove_executor_hook"
    case slaveTaskStatusDecorator = "hook_slave_task_status_decorator"
    case slaveResourcesDecorator = "hook_slave_resources_decorator"
    case slaveAttributesDecorator = "hook_slave_attributes_decorator"
    case recover = "isolator_recover"
    case prepare = "isolator_prepare"
    case isolate = "isolator_isolate"
    case watch = "isolator_watch"
    case update = "isolator_update"
    case usage = "isolator_usage"
    case status = "isolator_status"
    case cleanup = "isolator_cleanup"

    /// The parameter key prefix, e.g. `isolator_prepare` (its command is `isolator_prepare_command`).
    public var key: String { rawValue }

    public var kind: ModuleKind { rawValue.hasPrefix("hook_") ? .hook : .isolator }

    /// The Mesos method, as the seed wrote it in its log prefix (`METHOD=prepare`).
    public var methodName: String {
        switch self {
        case .recover, .prepare, .isolate, .watch, .update, .usage, .status, .cleanup:
            return String(rawValue.dropFirst("isolator_".count))
        default:
            let words = rawValue.dropFirst("hook_".count).split(separator: "_")
            let camel = words.enumerated().map { $0.offset == 0 ? String($0.element) : $0.element.prefix(1).uppercased() + $0.element.dropFirst() }
            return camel.joined()
        }
    }

    /// The keys of the input envelope, in the order they are written (SPEC §4, §5).
    public var envelopeKeys: [String] {
        switch self {
        case .masterLaunchTaskLabelDecorator: return ["task_info", "framework_info", "slave_info"]
        case .masterLaunchTaskResourceDecorator: return ["task_info", "slave_resources"]
        case .slaveRunTaskLabelDecorator: return ["task_info", "executor_info", "framework_info", "slave_info"]
        case .masterSlaveLostHook, .slaveResourcesDecorator, .slaveAttributesDecorator: return ["slave_info"]
        case .slaveExecutorEnvironmentDecorator: return ["executor_info"]
        case .slavePreLaunchDockerTaskExecutorDecorator:
            return ["task_info", "executor_info", "container_name", "container_work_directory",
                    "mapped_sandbox_directory", "env"]
        case .slavePostFetchHook: return ["container_id", "directory"]
        case .slaveRemoveExecutorHook: return ["framework_info", "executor_info"]
        case .slaveTaskStatusDecorator: return ["framework_id", "task_status"]
        case .recover: return ["states", "orphans"]
        case .prepare, .watch, .usage, .status, .cleanup: return ["container_id", "container_config"]
        case .isolate: return ["container_id", "container_config", "pid"]
        case .update: return ["container_id", "container_config", "resource_requests", "resource_limits"]
        }
    }

    /// What the command's output file holds.
    public var output: EventOutput {
        switch self {
        case .masterLaunchTaskLabelDecorator, .slaveRunTaskLabelDecorator: return .message("mesos.Labels")
        case .masterLaunchTaskResourceDecorator, .slaveResourcesDecorator: return .array(of: "mesos.Resource")
        case .slaveExecutorEnvironmentDecorator: return .message("mesos.Environment")
        case .slavePreLaunchDockerTaskExecutorDecorator: return .message("mesos.DockerTaskExecutorPrepareInfo")
        case .slaveTaskStatusDecorator: return .fields(["labels", "container_status"], of: "mesos.TaskStatus")
        case .slaveAttributesDecorator: return .array(of: "mesos.Attribute")
        case .prepare: return .message("mesos.slave.ContainerLaunchInfo")
        case .watch: return .message("mesos.slave.ContainerLimitation")
        case .usage: return .message("mesos.ResourceStatistics")
        case .status: return .message("mesos.ContainerStatus")
        case .masterSlaveLostHook, .slavePostFetchHook, .slaveRemoveExecutorHook, .recover, .isolate, .update,
            .cleanup:
            return .none
        }
    }

    /// The failure policy when `<key>_failure_policy` is not set (SPEC §4, §5).
    public var defaultFailurePolicy: FailurePolicy {
        switch self {
        case .recover, .watch, .usage, .status: return .ignore
        default: return .fail
        }
    }

    /// Whether Mesos' master calls it (on its one actor, which waits for the command).
    public var blocksTheMaster: Bool {
        self == .masterLaunchTaskLabelDecorator || self == .masterLaunchTaskResourceDecorator || self == .masterSlaveLostHook
    }

    /// Whether the event concerns one container whose `container_config` the isolator remembers.
    public var isPerContainer: Bool { kind == .isolator && self != .recover }
}
