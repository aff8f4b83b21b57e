import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §9: `<event>_when` rules — parsed at load, decided inside the module before any process is started.
@Suite struct RuleTests {
    let sandbox = Sandbox()

    // MARK: - Syntax

    @Test func theRuleSyntaxAnOperatorWritesByHand() throws {
        let rule = try Rule(parsing: " label:team=ml ;role~prod-.* ; nested=false;class!=DEBUG; task_label:gpu; executor_label:x!~a\\;b ")
        #expect(rule.conditions.map(\.description) == [
            "label:team=ml", "role~prod-.*", "nested=false", "class!=DEBUG", "task_label:gpu", "executor_label:x!~a;b",
        ])
        #expect(rule.reading == "the task's or executor's label 'team' is 'ml' and a role (the framework's, or its "
            + "resources' allocation) matches /prod-.*/ and the container is not nested and the container's class is not "
            + "'DEBUG' and the task's label 'gpu' is present and the executor's label 'x' does not match /a;b/")
    }

    @Test(arguments: [
        ("lable:team=ml", "at character 1: unknown property 'lable:team' (one of label:<key>, task_label:<key>, executor_label:<key>, framework, framework_id, role, task_name, nested, class)"),
        ("label:team=ml; role", "at character 16: 'role' needs an operator and a value (=, !=, ~ or !~), e.g. 'role=…'"),
        ("role~(prod", #"at character 6: '(prod' is not a regular expression: Unmatched ( or \("#),
        ("nested=maybe", "at character 8: nested takes =true or =false, not '=maybe'"),
        ("class=GPU", "at character 7: class is DEFAULT or DEBUG, not 'GPU'"),
        ("label:team~ml)|(.*", #"at character 12: 'ml)|(.*' is not a regular expression: Unmatched ( or \("#),
        ("label:=x", "at character 7: 'label:' needs a label key"),
        ("framework~", "at character 11: 'framework~' needs a pattern"),
        (" ; ", "at character 1: the rule has no condition"),
        (#"label:team~(se)\1arch"#, #"at character 12: '(se)\1arch' is not a regular expression: back-references (\1) "#
            + "are refused: matching one can take time polynomial in the length of the value, which a tenant chooses"),
        (#"label:team~(s)(e)\2arch"#, #"at character 12: '(s)(e)\2arch' is not a regular expression: back-references "#
            + "(\\2) are refused: matching one can take time polynomial in the length of the value, which a tenant chooses"),
        ("label:team~a|)", #"at character 12: 'a|)' is not a regular expression: unmatched ) (write \) for the character)"#),
        ("label:team~a\u{0}b", "at character 12: 'a\u{0}b' is not a regular expression: a pattern cannot hold a NUL character"),
    ])
    func aRuleThatDoesNotParseNamesThePositionOfTheFault(_ text: String, _ expected: String) {
        let error = #expect(throws: RuleSyntaxError.self) { try Rule(parsing: text) }
        #expect(error?.description == expected)
    }

    @Test func aBackslashOtherThanBeforeASemicolonIsThePatternsOwn() throws {
        let rule = try Rule(parsing: #"label:path~c:\\temp\;.*"#)
        #expect(rule.conditions.map(\.value) == [#"c:\\temp;.*"#])
        #expect(rule.conditions[0].holds(for: [#"c:\temp;x"#]))
        #expect(!rule.conditions[0].holds(for: [#"c:temp;x"#]))
    }

    @Test func aBadRuleIsALoadTimeErrorNamingTheModuleAndTheKey() throws {
        let script = sandbox.script("s.sh", "#!/bin/sh\n")
        let cases: [(ModuleKind, String, String, String)] = [
            (.isolator, "isolator_usage", "lable:x=1", "'lable:x=1' does not parse: at character 1: unknown property 'lable:x'"),
            (.isolator, "isolator_usage", "framework=marathon",
             "'framework' cannot be tested for isolator_usage: its input does not hold it (it can test label:<key>, "
                + "task_label:<key>, executor_label:<key>, framework_id, role, task_name, nested, class)"),
            (.isolator, "isolator_recover", "role=web", "recover concerns every container at once: a rule cannot apply"),
            (.hook, "hook_slave_resources_decorator", "role=web",
             "this event concerns the agent, not a task or a container: a rule cannot apply"),
            (.hook, "hook_master_launch_task_label_decorator", #"label:team~(se)\1arch"#,
             #"'label:team~(se)\1arch' does not parse: at character 12: '(se)\1arch' is not a regular expression: "#
                + "back-references (\\1) are refused: matching one can take time polynomial in the length of the value, "
                + "which a tenant chooses"),
            (.hook, "hook_slave_run_task_label_decorator", "label:team==blue",
             "'label:team==blue' does not parse: at character 12: '==' is not an operator: did you mean "
                + "'label:team=blue'? (for a value that starts with '=', write 'label:team~[=]blue')"),
            (.hook, "hook_slave_executor_environment_decorator", "task_name=web",
             "'task_name' cannot be tested for hook_slave_executor_environment_decorator: its input does not hold it "
                + "(it can test label:<key>, executor_label:<key>, framework_id, role)"),
        ]
        for (kind, event, rule, message) in cases {
            let error = #expect(throws: ConfigurationError.self) {
                try ModuleConfiguration(kind: kind, parameters: [
                    ("module_name", "ruled"), ("\(event)_command", script), ("\(event)_when", rule),
                ])
            }
            #expect(error?.description.contains("module 'ruled': parameter '\(event)_when': \(message)") == true,
                    "\(String(describing: error))")
        }
    }

    @Test func theScannerReadsOneMemberAndSkipsTheRest() throws {
        let text = #"""
            {"command":{"value":"echo \"}{\" [1,2]","arguments":["a","b"]},"n":-1.5e3,"t":true,"z":null,
             "labels":{"labels":[{"key":"team","value":"ml"}]},"name":"first","name":"second","e\u0073c":"x"}
            """#
        #expect(JSONScanner.value(at: ["labels", "labels"], in: text) == (try JSONValue(parsing: #"[{"key":"team","value":"ml"}]"#)))
        #expect(JSONScanner.value(at: ["name"], in: text) == .string("second"))  // the last one, as stout keeps it
        #expect(JSONScanner.value(at: ["esc"], in: text) == .string("x"))
        #expect(JSONScanner.value(at: ["n"], in: text) == .number("-1.5e3"))
        #expect(JSONScanner.value(at: ["command", "value"], in: text) == .string(#"echo "}{" [1,2]"#))
        #expect(JSONScanner.value(at: ["missing"], in: text) == nil)
        #expect(JSONScanner.value(at: ["t", "x"], in: text) == nil)
        #expect(JSONScanner.contains(["z"], in: text))
        #expect(JSONScanner.value(at: ["labels"], in: #"{"labels": {"#) == nil)
    }

    // MARK: - Hooks

    /// A hook whose label decorator records every run; `when` is its rule.
    func labelHook(_ when: String) throws -> HookModule {
        let script = sandbox.script("labels.sh", """
            #!/bin/sh
            echo run >> \(sandbox.path)/spawns
            echo '{"labels":[{"key":"decorated","value":"yes"}]}' > "$2"
            """)
        return try hook(sandbox, [
            ("hook_slave_run_task_label_decorator_command", script), ("hook_slave_run_task_label_decorator_when", when),
        ])
    }

    var spawns: Int { (sandbox.read(sandbox.path + "/spawns") ?? "").split(separator: "\n").count }

    /// The sample task: labels team=search and tier=frontend, framework marathon (role web), resources
    /// allocated to role web.
    @Test(arguments: [
        ("label:team=search", true), ("label:team=ml", false), ("label:team~sea.*", true), ("label:team~sea", false),
        ("label:team!=ml", true), ("label:owner", false), ("label:tier", true), ("executor_label:team=search", false),
        ("task_label:tier~front.*|back.*; framework=marathon", true), ("task_label:tier~front|back", false), ("framework~chronos|aurora", false), ("role=web", true),
        ("role~prod-.*", false), ("task_name=web", true), ("framework_id~.*-0000", true), ("label:team=search; role=batch", false),
    ])
    func aHookRunsOnlyForTheTasksItsRuleMatches(_ when: String, _ runs: Bool) async throws {
        let module = try labelHook(when)
        let result = try await module.run(.slaveRunTaskLabelDecorator, envelope: SampleEnvelopes.envelope(for: .slaveRunTaskLabelDecorator))
        #expect((result != nil) == runs)
        #expect(spawns == (runs ? 1 : 0), "a skipped event starts no process")
        let metrics = module.metrics.snapshot(.slaveRunTaskLabelDecorator)
        #expect(metrics.calls == (runs ? 1 : 0) && metrics.skipped == (runs ? 0 : 1))
        let decision = module.decision(for: .slaveRunTaskLabelDecorator, envelope: SampleEnvelopes.envelope(for: .slaveRunTaskLabelDecorator))
        #expect(decision?.matched == runs)
    }

    @Test func aSkippedDecisionSaysWhichConditionFailedAndWhatWasFound() throws {
        let module = try labelHook("label:tier=frontend; label:team=ml")
        let decision = module.decision(for: .slaveRunTaskLabelDecorator, envelope: SampleEnvelopes.envelope(for: .slaveRunTaskLabelDecorator))
        #expect(decision == RuleDecision(matched: false, reason: "'label:team=ml' does not hold (the task's label 'team': 'search'; the executor's: absent)"))
        let absent = try labelHook("label:owner=me").decision(
            for: .slaveRunTaskLabelDecorator, envelope: SampleEnvelopes.envelope(for: .slaveRunTaskLabelDecorator))
        #expect(absent?.reason == "'label:owner=me' does not hold (the task's or executor's label 'owner': absent)")
    }

    /// The sample label decorator's envelope with the task's and the executor's label `team` set to these JSON
    /// strings (nil: no such label).
    func envelope(task: String?, executor: String?) -> Envelope {
        func labels(_ value: String?) -> String {
            #""labels":{"labels":[\#(value.map { #"{"key":"team","value":\#($0)}"# } ?? "")]}"#
        }
        var envelope = SampleEnvelopes.envelope(for: .slaveRunTaskLabelDecorator)
        envelope.set("task_info", json: #"{"name":"web",\#(labels(task))}"#)
        envelope.set("executor_info", json: #"{"executor_id":{"value":"e"},\#(labels(executor))}"#)
        return envelope
    }

    @Test func aSkippedDecisionNamesWhoseLabelHadWhichValue() throws {
        let module = try labelHook("label:team=ml")
        func reason(_ task: String?, _ executor: String?) -> String? {
            module.decision(for: .slaveRunTaskLabelDecorator, envelope: envelope(task: task, executor: executor))?.reason
        }
        #expect(reason(#""search""#, #""search""#)
            == "'label:team=ml' does not hold (the task's label 'team': 'search'; the executor's: 'search')")
        #expect(reason(nil, #""ops""#) == "'label:team=ml' does not hold (the task's label 'team': absent; the executor's: 'ops')")
        #expect(reason(nil, nil) == "'label:team=ml' does not hold (the task's or executor's label 'team': absent)")
        // A tenant's value is shown escaped and cut: a NUL or a newline does not break the log line.
        #expect(reason(#""a\u0000b\nc""#, nil)
            == #"'label:team=ml' does not hold (the task's label 'team': 'a\u0000b\u000ac'; the executor's: absent)"#)
        #expect(reason("\"\(String(repeating: "x", count: 300))\"", nil) == "'label:team=ml' does not hold (the task's "
            + "label 'team': '\(String(repeating: "x", count: 200))…' (300 characters); the executor's: absent)")
    }

    // MARK: - Matching (SPEC §9: whole value, author's groups, NUL, UTF-8, no back-references)

    /// The pattern is anchored as `^(…)$`: whole-value matching, alternation included, and a group an author
    /// cannot observe (back-references are refused, a `)` must close a `(`).
    @Test(arguments: [
        ("a|b", "a", true), ("a|b", "ab", false), ("a|b", "b", true), ("ml", "html", false), ("(s)(e)arch", "search", true),
        ("x|y(z|w)", "yw", true), ("x|y(z|w)", "xw", false), ("^a$|^b$", "b", true), ("[)(]x", ")x", true),
        (#"a\)"#, "a)", true), (#"[\1]x"#, "1x", true), (#"[\1]x"#, #"\x"#, true), (#"\\1"#, #"\1"#, true),
        ("[[:digit:]]+|[]a]", "]", true),
    ])
    func aPatternMatchesTheWholeValueOnly(_ pattern: String, _ value: String, _ matches: Bool) throws {
        let condition = try Rule(parsing: "label:team~" + pattern).conditions[0]
        #expect(condition.holds(for: [value]) == matches)
    }

    /// A NUL inside a value is a character like any other (which `.` does not match, as in POSIX): the value is
    /// never cut at it.
    @Test(arguments: [
        ("label:team~search", false), ("label:team=search", false), ("label:team!~search", true),
        ("label:team~search.*", false), ("label:team~search.-not-really", false), ("label:team~search[^a]-not-really", true),
    ])
    func aValueWithANULIsMatchedWholeNeverCutAtTheNUL(_ when: String, _ matches: Bool) throws {
        let decision = try labelHook(when).decision(
            for: .slaveRunTaskLabelDecorator, envelope: envelope(task: #""search\u0000-not-really""#, executor: nil))
        #expect(decision?.matched == matches)
    }

    /// Values are UTF-8 text: `.` is one character (a code point), and `=` compares bytes.
    @Test(arguments: [
        ("label:team~s.arch", "séarch", true), ("label:team~.{6}", "séarch", true), ("label:team~.{7}", "séarch", false),
        ("label:team~s[é]arch", "séarch", true), ("label:team~s[^a]arch", "séarch", true),
        ("label:team~[[:alpha:]]+", "séarch", true), ("label:team~s.arch", "se\u{301}arch", false),
        ("label:team~s..arch", "se\u{301}arch", true), ("label:team~日本.", "日本語", true),
        ("label:team=séarch", "séarch", true), ("label:team=séarch", "se\u{301}arch", false),
    ])
    func aPatternMatchesCharactersNotBytes(_ when: String, _ value: String, _ matches: Bool) throws {
        let rule = try Rule(parsing: when)
        let before = uselocale(nil)
        #expect(rule.conditions[0].holds(for: [value]) == matches)
        #expect(uselocale(nil) == before, "the thread's locale is restored")
    }

    /// A second `=` or `~` after an operator is a mistake far more often than a value that starts with it.
    @Test(arguments: [
        ("label:team==blue", "at character 12: '==' is not an operator: did you mean 'label:team=blue'? "
            + "(for a value that starts with '=', write 'label:team~[=]blue')"),
        ("label:team=~blu.*", "at character 12: '=~' is not an operator: did you mean 'label:team~blu.*'? "
            + "(for a value that starts with '~', write 'label:team~[~]blu.*')"),
        ("role~~web", "at character 6: '~~' is not an operator: did you mean 'role~web'? "
            + "(for a value that starts with '~', write 'role~[~]web')"),
        ("role~=web", "at character 6: '~=' is not an operator: did you mean 'role~web'? "
            + "(for a value that starts with '=', write 'role~[=]web')"),
        ("label:team!==blue", "at character 13: '!==' is not an operator: did you mean 'label:team!=blue'? "
            + "(for a value that starts with '=', write 'label:team!~[=]blue')"),
        ("label:team!=~blue", "at character 13: '!=~' is not an operator: did you mean 'label:team!~blue'? "
            + "(for a value that starts with '~', write 'label:team!~[~]blue')"),
        ("task_name!~~web", "at character 12: '!~~' is not an operator: did you mean 'task_name!~web'? "
            + "(for a value that starts with '~', write 'task_name!~[~]web')"),
        ("nested==true", "at character 8: '==' is not an operator: did you mean 'nested=true'?"),
    ])
    func aDoubledOperatorIsAnErrorWithAHint(_ text: String, _ expected: String) throws {
        let error = #expect(throws: RuleSyntaxError.self) { try Rule(parsing: text) }
        #expect(error?.description == expected)
        #expect(try Rule(parsing: "label:team~[=]blue").conditions[0].holds(for: ["=blue"]))
    }

    /// Conditions that hold for `slowValue` and each take tens of milliseconds to decide: `!~` must try the
    /// whole value, and this pattern makes glibc's matcher carry many states along it.
    static func slowRule(_ conditions: Int) -> String {
        Array(repeating: "label:team!~(.*a){30}x", count: conditions).joined(separator: "; ")
    }

    static let slowValue = "\"" + String(repeating: "a", count: 256 * 1024) + "\""

    /// SPEC §9: a rule is evaluated within the event's timeout — its time counts, and a rule still undecided at
    /// the deadline fails the event as timed out (answered after one more condition at most), no process started.
    @Test func aHookRuleIsDecidedWithinTheEventsTimeout() async throws {
        let script = sandbox.script("labels.sh", "#!/bin/sh\necho run >> \(sandbox.path)/spawns\n")
        let module = try hook(sandbox, [
            ("hook_slave_run_task_label_decorator_command", script), ("hook_slave_run_task_label_decorator_when", Self.slowRule(20)),
            ("hook_slave_run_task_label_decorator_timeout", "0.2"),
        ])
        let input = envelope(task: Self.slowValue, executor: nil)
        let whole = ContinuousClock.now
        #expect(module.decision(for: .slaveRunTaskLabelDecorator, envelope: input)?.matched == true)
        let wholeRule = ContinuousClock.now - whole
        let start = ContinuousClock.now
        let error = await thrownError { try await module.run(.slaveRunTaskLabelDecorator, envelope: input) } as? EventError
        let took = ContinuousClock.now - start
        #expect(error?.message == "Command \"\(script)\" took too long to execute. Timeout: 0.2s (it never started: the "
            + "event waited all that time for its hook_slave_run_task_label_decorator_when rule to be decided).")
        #expect(spawns == 0)
        #expect(module.metrics.snapshot(.slaveRunTaskLabelDecorator).timeouts == 1)
        // Stopped at the deadline, not after all 20 conditions.
        #expect(took < wholeRule / 2, "\(took) against \(wholeRule) for the whole rule")
    }

    // MARK: - Isolators

    func recording(_ event: Event, output: String = "") -> (String, String) {
        let script = sandbox.script(event.key, """
            #!/bin/sh
            echo \(event.key) >> \(sandbox.path)/spawns
            printf '%s' '\(output)' > "$2"
            """)
        return (event.key + "_command", script)
    }

    var spawned: [String] { (sandbox.read(sandbox.path + "/spawns") ?? "").split(separator: "\n").map(String.init) }

    func ruledIsolator(_ rules: [(Event, String)]) throws -> IsolatorModule {
        try isolator(sandbox, [recording(.prepare), recording(.usage, output: #"{"cpus_limit":4}"#), recording(.status),
                               recording(.cleanup), recording(.isolate)]
            + rules.map { ("\($0.0.key)_when", $0.1) })
    }

    /// For an isolator the decision is taken at prepare, from the container's config, and holds for every later
    /// event of the container, across a restart.
    @Test func anIsolatorDecidesAtPrepareKeepsTheDecisionInStateAndAcrossARestart() async throws {
        let rules: [(Event, String)] = [(.usage, "label:team=ml"), (.cleanup, "label:team=ml"), (.status, "label:team=search")]
        let module = try ruledIsolator(rules)
        let id = SampleEnvelopes.containerID
        _ = try await module.prepare(containerID: id, containerConfig: SampleEnvelopes.containerConfig())
        let usage = try JSONValue(parsing: try await module.usage(containerID: id))
        #expect(usage.objectMembers?.map(\.key) == ["timestamp"])
        _ = try await module.status(containerID: id)
        #expect(spawned == ["isolator_prepare", "isolator_status"])
        // The decision is in the state file, which Mesos' parser still reads as a ContainerConfig.
        let file = try #require(sandbox.read(module.stateDirectory + "/5a2e7d6f-0c43-4d8a-9a58-3f1f7a1cba9e"))
        let saved = try JSONValue(parsing: file)
        #expect(saved["mesos_command_modules"] == (try JSONValue(parsing: #"{"skipped_events":["isolator_cleanup","isolator_usage"]}"#)))
        #expect(saved["directory"] != nil)

        // The agent restarts: the new module instance recovers the decision with the config.
        let restarted = try ruledIsolator(rules)
        try await restarted.recover(states: "[{\"container_id\":\(id),\"pid\":1}]", orphans: "[]")
        #expect(restarted.containerConfig(ContainerID(SampleEnvelopes.containerIDValue)).map { !$0.contains("mesos_command_modules") } == true)
        _ = try await restarted.usage(containerID: id)
        _ = try await restarted.status(containerID: id)
        try await restarted.cleanup(containerID: id)
        #expect(spawned == ["isolator_prepare", "isolator_status", "isolator_status"])
        // The skipped cleanup still forgets the container.
        #expect(Sandbox.entries(restarted.stateDirectory).isEmpty)
        #expect(restarted.metrics.snapshot(.usage).skipped == 1 && restarted.metrics.snapshot(.cleanup).skipped == 1)
    }

    /// At prepare every rule of the container is decided (each event's decision is kept), on prepare's time: cut
    /// at its deadline, the container then has no state and no command ran.
    @Test func anIsolatorsRulesAreDecidedWithinPreparesTimeout() async throws {
        let module = try isolator(sandbox, [
            recording(.prepare), ("isolator_prepare_timeout", "0.1"), recording(.usage),
            ("isolator_usage_when", Self.slowRule(6)),
        ])
        let config = #"{"directory":"/d","task_info":{"name":"web","labels":{"labels":[{"key":"team","value":\#(Self.slowValue)}]}}}"#
        let error = await thrownError {
            try await module.prepare(containerID: SampleEnvelopes.containerID, containerConfig: config)
        } as? EventError
        #expect(error?.message == "Command \"\(sandbox.path)/isolator_prepare\" took too long to execute. Timeout: 0.1s (it "
            + "never started: the event waited all that time for the container's when rules to be decided).")
        #expect(spawned.isEmpty)
        #expect(module.skipReason(.usage, containerID: ContainerID(SampleEnvelopes.containerIDValue)) == nil)
    }

    @Test func aStateFileWrittenBeforeRulesExistedMeansMatched() async throws {
        let module = try ruledIsolator([(.usage, "label:team=ml")])
        _ = sandbox.mkdir("state")
        let dir = sandbox.mkdir("state/test_module")
        sandbox.write(dir + "/old", SampleEnvelopes.containerConfig())  // the C++ module's format: the config only
        try await module.recover(states: #"[{"container_id":{"value":"old"},"pid":1}]"#, orphans: "[]")
        let usage = try JSONValue(parsing: try await module.usage(containerID: #"{"value":"old"}"#))
        #expect(usage["cpus_limit"] == .number("4"))
        #expect(spawned == ["isolator_usage"])
    }

    /// A task of a task group runs in a nested container, whose ContainerConfig Mesos gives no TaskInfo and its
    /// ExecutorInfo only best effort: the rule reads the executor from the parent container the isolator
    /// remembers, so that it decides alike before and after an agent failover.
    @Test func aNestedContainerIsDecidedWithItsParentsExecutor() async throws {
        let module = try ruledIsolator([(.usage, "executor_label:team=ml")])
        let parent = #"{"value":"executor-container"}"#
        let executorConfig = #"{"directory":"/d","command_info":{},"executor_info":{"executor_id":{"value":"e"},"#
            + #""labels":{"labels":[{"key":"team","value":"ml"}]}}}"#
        _ = try await module.prepare(containerID: parent, containerConfig: executorConfig)
        let nested = #"{"value":"task-1","parent":{"value":"executor-container"}}"#
        _ = try await module.prepare(containerID: nested, containerConfig: #"{"directory":"/d/t","command_info":{}}"#)
        #expect(module.skipReason(.usage, containerID: ContainerID(path: ["executor-container", "task-1"])) == nil)
        let usage = try JSONValue(parsing: try await module.usage(containerID: nested))
        #expect(usage["cpus_limit"] == .number("4"))
    }

    @Test func aSkippedPrepareStillRemembersTheContainerForItsOtherEvents() async throws {
        let module = try ruledIsolator([(.prepare, "nested=true"), (.isolate, "class=DEFAULT")])
        let id = SampleEnvelopes.containerID
        #expect(try await module.prepare(containerID: id, containerConfig: SampleEnvelopes.containerConfig()) == nil)
        try await module.isolate(containerID: id, pid: 42)
        let usage = try JSONValue(parsing: try await module.usage(containerID: id))
        #expect(usage["cpus_limit"] == .number("4"))
        #expect(spawned == ["isolator_isolate", "isolator_usage"])
        #expect(module.skipReason(.prepare, containerID: ContainerID(SampleEnvelopes.containerIDValue))
            == "'nested=true' does not hold (nested: 'false')")
    }
}
