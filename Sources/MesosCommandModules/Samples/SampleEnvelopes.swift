/// Realistic input envelopes for every event, in Mesos' JSON mapping — what a script receives on a real agent
/// (the CLI's `events`, the default input of `run`, and `simulate`).
public enum SampleEnvelopes {
    static let frameworkID = #"{"value":"7c4b2b1e-3f6d-4e8a-9d55-0f3b2a61c0d4-0000"}"#
    static let agentID = #"{"value":"d3f6a9e2-1b7c-4c2e-8f4a-5e9b0c7d1a23-S0"}"#
    static let taskID = #"{"value":"web.8f14e45f-ceea-11ee-9d2b-0242ac110002"}"#

    static let resources = #"""
        [{"name":"cpus","type":"SCALAR","scalar":{"value":0.5},"role":"*","allocation_info":{"role":"web"}},\#
        {"name":"mem","type":"SCALAR","scalar":{"value":256.0},"role":"*","allocation_info":{"role":"web"}},\#
        {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":31000}]},"role":"*",\#
        "allocation_info":{"role":"web"}}]
        """#

    static let frameworkInfo = #"""
        {"user":"root","name":"marathon","id":\#(frameworkID),"failover_timeout":604800.0,"checkpoint":true,\#
        "hostname":"master-1.example.com","roles":["web"],"capabilities":[{"type":"MULTI_ROLE"}]}
        """#

    public static let slaveInfo = #"""
        {"hostname":"agent-1.example.com","port":5051,"id":\#(agentID),\#
        "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":8.0},"role":"*"},\#
        {"name":"mem","type":"SCALAR","scalar":{"value":31744.0},"role":"*"},\#
        {"name":"disk","type":"SCALAR","scalar":{"value":409600.0},"role":"*"},\#
        {"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"role":"*"}],\#
        "attributes":[{"name":"rack","type":"TEXT","text":{"value":"r12"}}]}
        """#

    static let commandInfo = #"""
        {"shell":true,"value":"python3 -m http.server $PORT0",\#
        "environment":{"variables":[{"name":"PORT0","type":"VALUE","value":"31000"}]}}
        """#

    static let executorInfo = #"""
        {"executor_id":{"value":"web.8f14e45f-ceea-11ee-9d2b-0242ac110002"},"framework_id":\#(frameworkID),\#
        "command":{"shell":false,"value":"/usr/libexec/mesos/mesos-executor",\#
        "arguments":["mesos-executor","--launcher_dir=/usr/libexec/mesos"]},\#
        "resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":0.1},"role":"*"},\#
        {"name":"mem","type":"SCALAR","scalar":{"value":32.0},"role":"*"}],\#
        "name":"Command Executor (Task: web) (Command: sh -c 'python3 -m ...')","source":"web","type":"DEFAULT"}
        """#

    static let taskInfo = #"""
        {"name":"web","task_id":\#(taskID),"slave_id":\#(agentID),"resources":\#(resources),\#
        "command":\#(commandInfo),\#
        "labels":{"labels":[{"key":"team","value":"search"},{"key":"tier","value":"frontend"}]}}
        """#

    /// The container of the samples.
    public static let containerID = #"{"value":"\#(containerIDValue)"}"#
    public static let containerIDValue = "5a2e7d6f-0c43-4d8a-9a58-3f1f7a1cba9e"

    /// The ContainerConfig `prepare` receives for `containerID`.
    public static func containerConfig(for containerID: String = SampleEnvelopes.containerID) -> String {
        let id = (try? JSONValue(parsing: containerID)).flatMap(ContainerID.init)?.description ?? "container"
        return #"""
            {"executor_info":\#(executorInfo),"task_info":\#(taskInfo),"command_info":\#(commandInfo),\#
            "resources":\#(resources),"limits":{"cpus":{"value":1.0}},"container_class":"DEFAULT",\#
            "directory":"/var/lib/mesos/slaves/d3f6a9e2-1b7c-4c2e-8f4a-5e9b0c7d1a23-S0/frameworks/\#
            7c4b2b1e-3f6d-4e8a-9d55-0f3b2a61c0d4-0000/executors/web.8f14e45f-ceea-11ee-9d2b-0242ac110002/runs/\#(id)",\#
            "user":"nobody"}
            """#
    }

    static let taskStatus = #"""
        {"task_id":\#(taskID),"state":"TASK_RUNNING","source":"SOURCE_EXECUTOR","slave_id":\#(agentID),\#
        "executor_id":{"value":"web.8f14e45f-ceea-11ee-9d2b-0242ac110002"},"timestamp":1764043200.25,\#
        "uuid":"3q2+7w==","container_status":{"container_id":\#(containerID),"executor_pid":4242,\#
        "network_infos":[{"ip_addresses":[{"protocol":"IPv4","ip_address":"10.1.2.3"}]}]}}
        """#

    /// The sample envelope of `event`, every key of SPEC §4/§5 present.
    public static func envelope(for event: Event, containerID: String = SampleEnvelopes.containerID) -> Envelope {
        var envelope = Envelope()
        for key in event.envelopeKeys {
            envelope.set(key, json: fragment(key, containerID: containerID))
        }
        return envelope
    }

    static func fragment(_ key: String, containerID: String) -> String {
        switch key {
        case "task_info": return taskInfo
        case "executor_info": return executorInfo
        case "framework_info": return frameworkInfo
        case "slave_info": return slaveInfo
        case "slave_resources": return #"[{"name":"cpus","type":"SCALAR","scalar":{"value":8.0},"role":"*"}]"#
        case "container_name": return #""mesos-5a2e7d6f-0c43-4d8a-9a58-3f1f7a1cba9e""#
        case "container_work_directory", "directory":
            return #""/var/lib/mesos/slaves/d3f6a9e2-1b7c-4c2e-8f4a-5e9b0c7d1a23-S0/frameworks/7c4b2b1e-3f6d-4e8a-9d55-0f3b2a61c0d4-0000/executors/web/runs/5a2e7d6f-0c43-4d8a-9a58-3f1f7a1cba9e""#
        case "mapped_sandbox_directory": return #""/mnt/mesos/sandbox""#
        case "env": return #"{"MESOS_SANDBOX":"/mnt/mesos/sandbox","PORT0":"31000"}"#
        case "container_id": return containerID
        case "container_config": return containerConfig(for: containerID)
        case "pid": return "4242"
        case "resource_requests": return resources
        case "resource_limits": return #"{"cpus":{"value":1.0},"mem":{"value":512.0}}"#
        case "framework_id": return frameworkID
        case "task_status": return taskStatus
        case "states":
            return #"[{"executor_info":\#(executorInfo),"container_id":\#(containerID),"pid":4242,"directory":"/var/lib/mesos/slaves/S0/frameworks/F0/executors/web/runs/5a2e7d6f-0c43-4d8a-9a58-3f1f7a1cba9e"}]"#
        case "orphans": return "[]"
        default: return "null"
        }
    }
}
