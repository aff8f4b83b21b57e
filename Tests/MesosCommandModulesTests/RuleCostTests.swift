import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §9: a rule costs time linear in the values it reads, within the event's timeout; SPEC §3: the timeout
/// counts from the moment Mesos called the module.
@Suite struct RuleCostTests {
    let sandbox = Sandbox()

    /// Issue 19's pattern on a 64 KiB label a tenant chose: glibc's `regexec` took 37 s (and 242 MB) on it. A
    /// correctness bound, not a benchmark: decided well within the event's (1 s) timeout, even in a debug build.
    @Test func issue19sPatternOnA64KiBLabelIsDecidedWithinTheTimeout() throws {
        let script = sandbox.script("labels.sh", "#!/bin/sh\n")
        let module = try hook(sandbox, [
            ("hook_slave_run_task_label_decorator_command", script),
            ("hook_slave_run_task_label_decorator_when", "label:team~(a|b)*a(a|b){18}"),
            ("hook_slave_run_task_label_decorator_timeout", "1"),
        ])
        var random = PatternTests.Generator(state: 19)
        for (value, matches) in [("b" + String(repeating: "a", count: 65_535), true), (randomAB(65_536, &random), nil)] {
            let labels = #"{"labels":{"labels":[{"key":"team","value":"\#(value)"}]}}"#
            var envelope = Envelope()
            envelope.set("task_info", json: labels)
            let start = ContinuousClock.now
            let decision = module.decision(for: .slaveRunTaskLabelDecorator, envelope: envelope)
            let took = ContinuousClock.now - start
            #expect(took < .seconds(1), "\(took)")
            // The 19th character from the end decides.
            let expected = matches ?? (Array(value.utf8)[value.utf8.count - 19] == UInt8(ascii: "a"))
            #expect(decision?.matched == expected)
        }
    }

    func randomAB(_ count: Int, _ random: inout PatternTests.Generator) -> String {
        String((0..<count).map { _ in Bool.random(using: &random) ? "a" : "b" })
    }

    /// A pattern that compiles to more steps than the bound is a load-time error naming the key; the bound is
    /// the pattern's size, not its length (`x{2001}` is 2001 steps).
    @Test func aPatternPastTheBoundIsALoadTimeErrorNamingTheKey() throws {
        let script = sandbox.script("s.sh", "#!/bin/sh\n")
        for pattern in ["a{2001}", "([a-z]{1,100}\\.){10}", "((a{100}){100}){100}"] {
            let error = #expect(throws: ConfigurationError.self) {
                try ModuleConfiguration(kind: .hook, parameters: [
                    ("module_name", "ruled"), ("hook_slave_run_task_label_decorator_command", script),
                    ("hook_slave_run_task_label_decorator_when", "label:host~" + pattern),
                ])
            }
            #expect(error?.description.contains("module 'ruled': parameter 'hook_slave_run_task_label_decorator_when': "
                + "'label:host~\(pattern)' does not parse: at character 12: '\(pattern)' is too big a pattern: it "
                + "compiles to more than the 2000 steps a pattern may have") == true, "\(String(describing: error))")
        }
        // A host name: 63 characters per part, up to 11 parts.
        #expect(throws: Never.self) { _ = try Rule(parsing: "label:host~[a-z0-9-]{1,63}(\\.[a-z0-9-]{1,63}){0,10}") }
    }

    /// One condition on a long value is cut at the deadline, not after the whole value: the clock is read every
    /// few thousand characters.
    @Test func oneConditionOnALongValueStopsAtTheDeadline() async throws {
        let script = sandbox.script("labels.sh", "#!/bin/sh\necho run >> \(sandbox.path)/spawns\n")
        let module = try hook(sandbox, [
            ("hook_slave_run_task_label_decorator_command", script),
            ("hook_slave_run_task_label_decorator_when", "label:team!~(.*a){30}x"),
            ("hook_slave_run_task_label_decorator_timeout", "0.2"),
        ])
        var envelope = Envelope()
        envelope.set("task_info", json: #"{"labels":{"labels":[{"key":"team","value":""#
            + String(repeating: "a", count: 16 << 20) + #""}]}}"#)
        let start = ContinuousClock.now
        let error = await thrownError { try await module.run(.slaveRunTaskLabelDecorator, envelope: envelope) } as? EventError
        let took = ContinuousClock.now - start
        #expect(error?.message.hasSuffix("Timeout: 0.2s (it never started: the event waited all that time for its "
            + "hook_slave_run_task_label_decorator_when rule to be decided).") == true, "\(String(describing: error))")
        #expect(took < .seconds(2), "\(took): 16 MiB take far longer")
        #expect(sandbox.read(sandbox.path + "/spawns") == nil)
    }

    /// The deadline counts from Mesos' call (`mcm_run_event` takes the clock first thing), carried down to the
    /// command: an event whose task ran only after its timeout fails as timed out, without a process — with a
    /// rule or not, hook or isolator.
    @Test func theTimeoutCountsFromTheMomentMesosCalledTheModule() async throws {
        let script = sandbox.script("record.sh", "#!/bin/sh\necho run >> \(sandbox.path)/spawns\n")
        let hookModule = try hook(sandbox, [
            ("hook_slave_executor_environment_decorator_command", script),
            ("hook_slave_executor_environment_decorator_timeout", "1"),
            ("hook_slave_run_task_label_decorator_command", script),
            ("hook_slave_run_task_label_decorator_when", "label:team~.*"),
            ("hook_slave_run_task_label_decorator_timeout", "1"),
        ])
        let isolatorModule = try isolator(sandbox, [
            ("isolator_usage_command", script), ("isolator_usage_timeout", "1"), ("isolator_usage_failure_policy", "fail"),
        ])
        try isolatorModule.adopt(containerID: cid("c1"), containerConfig: "{}")
        let call = EventCall(nanoseconds: MonotonicClock.now() - 2_000_000_000)
        let environment = await call.during { await thrownError {
            try await hookModule.run(.slaveExecutorEnvironmentDecorator, envelope: SampleEnvelopes.envelope(
                for: .slaveExecutorEnvironmentDecorator))
        } } as? EventError
        #expect(environment?.message == "Command \"\(script)\" took too long to execute. Timeout: 1s (it never started: "
            + "the event waited all that time for a thread of the engine to take it up).")
        let admitted = hookModule.admit(.slaveRunTaskLabelDecorator, envelope: SampleEnvelopes.envelope(
            for: .slaveRunTaskLabelDecorator), call: call)
        guard case .admitted(let event) = admitted else {
            Issue.record("the rule matches")
            return
        }
        let labels = await thrownError { try await hookModule.run(event) } as? EventError
        #expect(labels?.message.hasSuffix("(it never started: the event waited all that time for its "
            + "hook_slave_run_task_label_decorator_when rule to be decided).")
            == true, "\(String(describing: labels))")
        let usage = await call.during { await thrownError { try await isolatorModule.usage(containerID: cid("c1")) } }
            as? EventError
        #expect(usage?.message.hasSuffix("(it never started: the event waited all that time for a thread of the engine "
            + "to take it up).") == true, "\(String(describing: usage))")
        #expect(sandbox.read(sandbox.path + "/spawns") == nil)
        // Called now: the same events run.
        let now = await EventCall().during { await thrownError { try await hookModule.run(
            .slaveExecutorEnvironmentDecorator, envelope: SampleEnvelopes.envelope(for: .slaveExecutorEnvironmentDecorator)) } }
        #expect(now == nil)
        #expect(sandbox.read(sandbox.path + "/spawns") == "run\n")
    }
}
