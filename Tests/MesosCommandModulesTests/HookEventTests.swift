import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §4: every hook event, its envelope, its output and what empty output and failures mean.
@Suite struct HookEventTests {
    let sandbox = Sandbox()

    /// A script that copies its input envelope next to it and writes `output` as its output.
    func recording(_ name: String, output: String) -> String {
        sandbox.write(sandbox.path + "/\(name).out", output)
        return sandbox.script(name, "#!/bin/sh\ncp \"$1\" \"$0.input\"\ncat \"$0.out\" > \"$2\"\n")
    }

    func envelopeSeen(by script: String) throws -> JSONValue {
        try JSONValue(parsing: try #require(sandbox.read(script + ".input")))
    }

    static let outputs: [Event: String] = [
        .masterLaunchTaskLabelDecorator: #"{"labels":[{"key":"a","value":"b"}]}"#,
        .masterLaunchTaskResourceDecorator: #"[{"name":"cpus","type":"SCALAR","scalar":{"value":1}}]"#,
        .slaveRunTaskLabelDecorator: #"{"labels":[{"key":"LABEL_1","value":"test1"}]}"#,
        .slaveExecutorEnvironmentDecorator: #"{"variables":[{"name":"ENV_1","value":"test1","type":"VALUE"}]}"#,
        .slavePreLaunchDockerTaskExecutorDecorator: #"{"taskEnvironment":{"variables":[{"name":"A","type":"VALUE","value":"1"}]}}"#,
        .slaveResourcesDecorator: #"[{"name":"gpus","type":"SCALAR","scalar":{"value":2}}]"#,
        .slaveAttributesDecorator: #"[{"name":"rack","type":"TEXT","text":{"value":"r1"}}]"#,
    ]

    @Test(arguments: Event.allCases.filter { $0.kind == .hook })
    func eachHookGetsItsEnvelopeAndReturnsItsOutput(_ event: Event) async throws {
        let output = Self.outputs[event] ?? #"{"ignored":true}"#
        let script = recording(event.key, output: output)
        let module = try hook(sandbox, [(event.key + "_command", script)])
        let result = try await module.run(event, envelope: SampleEnvelopes.envelope(for: event))

        let seen = try envelopeSeen(by: script)
        #expect(seen.objectMembers?.map(\.key) == event.envelopeKeys)
        switch event.output {
        case .none:
            #expect(result == nil)
        case .fields:
            break  // the status decorator: see its own test
        default:
            #expect(result.map { try? JSONValue(parsing: $0) } == (try JSONValue(parsing: output)))
        }
    }

    @Test(arguments: Event.allCases.filter { $0.kind == .hook && $0.output != .none })
    func emptyOutputMeansNoChange(_ event: Event) async throws {
        let script = recording(event.key, output: "")
        let module = try hook(sandbox, [(event.key + "_command", script)])
        #expect(try await module.run(event, envelope: SampleEnvelopes.envelope(for: event)) == nil)
        let blank = recording(event.key + "-blank", output: " \n\t\n")
        let blankModule = try hook(sandbox, [(event.key + "_command", blank)])
        #expect(try await blankModule.run(event, envelope: SampleEnvelopes.envelope(for: event)) == nil)
    }

    @Test func anUnconfiguredHookChangesNothingAndRunsNothing() async throws {
        let module = try hook(sandbox, [])
        for event in Event.allCases where event.kind == .hook {
            #expect(try await module.run(event, envelope: SampleEnvelopes.envelope(for: event)) == nil)
        }
        #expect(module.metrics.snapshot().isEmpty)
    }

    @Test func theStatusDecoratorMergesLabelsAndContainerStatusOverTheStatus() async throws {
        let script = recording("status", output: #"{"labels":{"labels":[{"key":"k","value":"v"}]},"state":"TASK_FAILED"}"#)
        let log = CapturedLog()
        let module = try hook(sandbox, [("hook_slave_task_status_decorator_command", script)], log: log)
        let envelope = SampleEnvelopes.envelope(for: .slaveTaskStatusDecorator)
        let result = try JSONValue(parsing: try #require(try await module.run(.slaveTaskStatusDecorator, envelope: envelope)))
        #expect(result["labels"] == (try JSONValue(parsing: #"{"labels":[{"key":"k","value":"v"}]}"#)))
        #expect(result["state"] == .string("TASK_RUNNING"))  // only labels and container_status are applied
        #expect(result["task_id"] == envelope.value("task_status")?["task_id"])
        #expect(result["container_status"] == envelope.value("task_status")?["container_status"])
        #expect(log.contains("only labels and container_status are applied; 'state' is ignored"))
    }

    @Test func malformedJSONIsAnErrorNamingTheCommand() async throws {
        let script = recording("malformed", output: #"{"labels": [{"key": "LABEL_1", "value": test1"}]}"#)
        let module = try hook(sandbox, [("hook_slave_run_task_label_decorator_command", script)])
        let error = await thrownError {
            try await module.run(.slaveRunTaskLabelDecorator, envelope: SampleEnvelopes.envelope(for: .slaveRunTaskLabelDecorator))
        } as? EventError
        #expect(error?.description == "[TASK=web.8f14e45f-ceea-11ee-9d2b-0242ac110002, METHOD=slaveRunTaskLabelDecorator] "
            + "Command \"\(script)\" wrote malformed JSON: invalid literal, expected 'true' at byte 41.")
    }

    @Test func wrongFieldNamesAreErrorsNamingTheField() async throws {
        let script = recording("wrong", output: #"{"variables":[{"bad_name":"ENV_1","value":"test1","type":"VALUE"}]}"#)
        let log = CapturedLog()
        let module = try hook(sandbox, [("hook_slave_executor_environment_decorator_command", script)], log: log)
        let error = await thrownError {
            try await module.run(.slaveExecutorEnvironmentDecorator, envelope: SampleEnvelopes.envelope(for: .slaveExecutorEnvironmentDecorator))
        } as? EventError
        #expect(error?.message == "Command \"\(script)\" wrote an invalid mesos.Environment: "
            + "field 'variables[0].name': missing required field 'name' of mesos.Environment.Variable.")
        #expect(log.contains("METHOD=slaveExecutorEnvironmentDecorator"))
    }

    @Test func anUnknownFieldAloneIsAWarningAsTheAgentIgnoresIt() async throws {
        let script = recording("lables", output: #"{"lables":[{"key":"a"}]}"#)
        let log = CapturedLog()
        let module = try hook(sandbox, [("hook_slave_run_task_label_decorator_command", script)], log: log)
        let result = try await module.run(.slaveRunTaskLabelDecorator, envelope: SampleEnvelopes.envelope(for: .slaveRunTaskLabelDecorator))
        #expect(result == #"{"lables":[{"key":"a"}]}"#)
        #expect(log.contains("field 'lables': mesos.Labels has no field 'lables'; the agent ignores it"))
    }

    @Test func failurePolicyIgnoreTurnsAFailureIntoNoChange() async throws {
        let script = sandbox.script("fail.sh", "#!/bin/sh\necho nope > \"$3\"\nexit 1\n")
        let log = CapturedLog()
        let module = try hook(sandbox, [
            ("hook_slave_executor_environment_decorator_command", script),
            ("hook_slave_executor_environment_decorator_failure_policy", "ignore"),
        ], log: log)
        let result = try await module.run(.slaveExecutorEnvironmentDecorator, envelope: SampleEnvelopes.envelope(for: .slaveExecutorEnvironmentDecorator))
        #expect(result == nil)
        #expect(log.contains("exited with return code 1. Cause: nope"))
        #expect(module.metrics.snapshot(.slaveExecutorEnvironmentDecorator).failures == 1)
    }

    @Test func metricsCountCallsFailuresAndTimeouts() async throws {
        let ok = recording("ok", output: "")
        let slow = sandbox.script("slow.sh", "#!/bin/sh\nexec sleep 10\n")
        let module = try hook(sandbox, [
            ("hook_slave_remove_executor_hook_command", ok), ("hook_slave_post_fetch_hook_command", slow),
            ("hook_slave_post_fetch_hook_timeout", "0.2"), ("grace_period", "0.1"),
        ])
        _ = try await module.run(.slaveRemoveExecutorHook, envelope: SampleEnvelopes.envelope(for: .slaveRemoveExecutorHook))
        _ = await thrownError { try await module.run(.slavePostFetchHook, envelope: SampleEnvelopes.envelope(for: .slavePostFetchHook)) }
        #expect(module.metrics.snapshot(.slaveRemoveExecutorHook).calls == 1)
        #expect(module.metrics.snapshot(.slaveRemoveExecutorHook).failures == 0)
        let fetch = module.metrics.snapshot(.slavePostFetchHook)
        #expect(fetch.calls == 1 && fetch.failures == 1 && fetch.timeouts == 1)
        #expect(fetch.maxSeconds >= 0.2)
    }

    @Test func debugLogsInputAndOutput() async throws {
        let script = recording("debug", output: #"{"variables":[]}"#)
        let log = CapturedLog()
        let module = try hook(sandbox, [("hook_slave_executor_environment_decorator_command", script), ("debug", "true")], log: log)
        _ = try await module.run(.slaveExecutorEnvironmentDecorator, envelope: SampleEnvelopes.envelope(for: .slaveExecutorEnvironmentDecorator))
        #expect(log.contains("with input {\"executor_info\":"))
        #expect(log.contains("with output {\"variables\":[]}"))
        let quiet = CapturedLog()
        let quietModule = try hook(sandbox, [("hook_slave_executor_environment_decorator_command", script)], log: quiet)
        _ = try await quietModule.run(.slaveExecutorEnvironmentDecorator, envelope: SampleEnvelopes.envelope(for: .slaveExecutorEnvironmentDecorator))
        #expect(quiet.all.isEmpty)
    }
}
