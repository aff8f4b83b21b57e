import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §6: `<event>_breaker_failures` / `<event>_breaker_seconds` — after N consecutive failures of the command
/// the event is answered at once under its failure policy, then one event probes the command again.
@Suite(.serialized) struct BreakerTests {
    let sandbox = Sandbox()
    let label = Event.masterLaunchTaskLabelDecorator

    /// A script driven by files beside it: `<script>.hang` makes it wait for `<script>.release` (having noted
    /// that it started in `<script>.started`), `<script>.fail` makes it exit 1 (checked once it would exit). Every
    /// run appends a line to `<script>.runs`.
    func controlled(_ name: String, output: String = "") -> String {
        sandbox.script(name, """
            #!/bin/sh
            echo run >> "$0.runs"
            if [ -e "$0.hang" ]; then
              echo started >> "$0.started"
              while [ ! -e "$0.release" ]; do sleep 0.02; done
            fi
            if [ -e "$0.fail" ]; then echo "inventory service down" > "$3"; exit 1; fi
            printf '%s' '\(output)' > "$2"
            """)
    }

    func set(_ script: String, _ flag: String) { sandbox.write(script + "." + flag, "") }
    func clear(_ script: String, _ flag: String) { unlink(script + "." + flag) }
    func lines(_ script: String, _ file: String) -> Int {
        (sandbox.read(script + "." + file) ?? "").split(separator: "\n").count
    }

    func labelHook(_ script: String, failures: Int, seconds: Double? = nil, timeout: String = "5",
                   extra: [(String, String)] = [], log: CapturedLog = CapturedLog()) throws -> HookModule {
        var parameters = [(label.key + "_command", script), (label.key + "_timeout", timeout),
                          (label.key + "_breaker_failures", String(failures)), ("grace_period", "0.2")]
        if let seconds { parameters.append((label.key + "_breaker_seconds", String(seconds))) }
        return try hook(sandbox, parameters + extra, log: log)
    }

    func decorate(_ module: HookModule) async -> Result<String?, EventError> {
        do {
            return .success(try await module.run(label, envelope: SampleEnvelopes.envelope(for: label)))
        } catch {
            return .failure(error)
        }
    }

    func message(_ result: Result<String?, EventError>) -> String {
        if case .failure(let error) = result { return error.message }
        return "(no error)"
    }

    // MARK: - Opening

    @Test func failingNTimesInARowOpensItAndEventsAreThenAnsweredAtOnceSayingSo() async throws {
        let script = controlled("inventory.sh")
        set(script, "fail")
        let log = CapturedLog()
        let module = try labelHook(script, failures: 3, log: log)
        for _ in 0..<3 {
            #expect(message(await decorate(module)).contains("exited with return code 1. Cause: inventory service down"))
        }
        #expect(lines(script, "runs") == 3)
        #expect(module.breaker(label)?.isOpen == true)

        let shortCircuited = await decorate(module)
        #expect(message(shortCircuited).hasPrefix(
            "Command \"\(script)\" not run: circuit open after 3 consecutive failures; the command runs again in 30 s. "
                + "Last failure: Command \"\(script)\" exited with return code 1. Cause: inventory service down"),
            "\(message(shortCircuited))")
        if case .failure(let error) = shortCircuited {
            #expect(error.kind == .command && error.isShortCircuit)
            #expect(error.description.hasPrefix("[TASK=web.8f14e45f-ceea-11ee-9d2b-0242ac110002, METHOD=masterLaunchTaskLabelDecorator] Command"), "\(error)")
        }
        _ = await decorate(module)
        #expect(lines(script, "runs") == 3, "an open breaker never runs the command")

        let metrics = module.metrics.snapshot(label)
        #expect(metrics.calls == 3 && metrics.failures == 3, "short-circuited events are not command runs")
        #expect(module.breaker(label) == BreakerState(isOpen: true, shortCircuited: 2, consecutiveFailures: 3))
        let opened = log.all.filter { $0.contains("Circuit breaker") }
        #expect(opened.count == 1, "\(opened)")
        #expect(opened.first?.hasPrefix("warning: [TASK=") == true)
        #expect(opened.first?.contains(
            "Circuit breaker of \(label.key)_command opened after 3 consecutive failures: for 30 s events are answered "
                + "at once under \(label.key)_failure_policy=fail") == true, "\(opened)")
        #expect(opened.first?.contains("Last failure: Command \"\(script)\" exited with return code 1") == true)
        #expect(!log.all.contains { $0.contains("not run: circuit open") }, "short-circuits are not logged one by one")
    }

    @Test func timeoutsCountAndAnIgnorePolicyAnswersAsAnIgnoredFailure() async throws {
        let script = controlled("slow.sh", output: #"{"labels":[]}"#)
        set(script, "hang")
        let log = CapturedLog()
        let module = try labelHook(script, failures: 2, timeout: "0.3",
                                   extra: [(label.key + "_failure_policy", "ignore")], log: log)
        #expect(try await module.run(label, envelope: SampleEnvelopes.envelope(for: label)) == nil)
        #expect(try await module.run(label, envelope: SampleEnvelopes.envelope(for: label)) == nil)
        #expect(module.metrics.snapshot(label).timeouts == 2)
        #expect(module.breaker(label)?.isOpen == true)
        #expect(log.contains("opened after 2 consecutive failures"))
        #expect(log.contains("Last failure: Command \"\(script)\" took too long to execute. Timeout: 0.3s."))
        let ignoredBefore = log.all.filter { $0.contains("Ignoring the failure") }.count
        for _ in 0..<5 {
            // No change to the labels, as an ignored failure; the command is not started.
            #expect(try await module.run(label, envelope: SampleEnvelopes.envelope(for: label)) == nil)
        }
        #expect(lines(script, "runs") == 2)
        #expect(module.breaker(label)?.shortCircuited == 5)
        #expect(log.all.filter { $0.contains("Ignoring the failure") }.count == ignoredBefore)
    }

    @Test func aSuccessResetsTheCount() async throws {
        let script = controlled("flaky.sh")
        let module = try labelHook(script, failures: 3)
        for round in 0..<3 {
            set(script, "fail")
            _ = await decorate(module)
            _ = await decorate(module)
            clear(script, "fail")
            #expect(try await module.run(label, envelope: SampleEnvelopes.envelope(for: label)) == nil, "round \(round)")
        }
        #expect(module.breaker(label) == BreakerState(isOpen: false, shortCircuited: 0, consecutiveFailures: 0))
        #expect(lines(script, "runs") == 9)
    }

    // MARK: - Cool-down, probe, closing

    @Test func afterTheCoolDownOneEventProbesWhileTheOthersAreStillAnsweredAtOnce() async throws {
        let script = controlled("inventory.sh", output: #"{"labels":[{"key":"rack","value":"r1"}]}"#)
        set(script, "fail")
        let log = CapturedLog()
        let module = try labelHook(script, failures: 2, seconds: 0.5, log: log)
        _ = await decorate(module)
        _ = await decorate(module)
        let early = await decorate(module)
        #expect(message(early).contains("circuit open after 2 consecutive failures; the command runs again in 0."),
                "\(message(early))")
        try await Task.sleep(for: .milliseconds(600))

        // The dependency is back, slowly: the probe holds until released.
        clear(script, "fail")
        set(script, "hang")
        let probe = Task { await decorate(module) }
        #expect(await eventually(within: 10) { lines(script, "started") == 1 })
        for _ in 0..<3 {
            let meanwhile = await decorate(module)
            #expect(message(meanwhile).contains(
                "not run: circuit open after 2 consecutive failures; one event is running the command again now. "
                    + "Last failure: "), "\(message(meanwhile))")
        }
        #expect(lines(script, "runs") == 3, "only the probe ran the command")
        #expect(module.breaker(label)?.isOpen == true)
        set(script, "release")
        let probed = await probe.value
        #expect(try probed.get()?.contains("rack") == true)
        #expect(module.breaker(label) == BreakerState(isOpen: false, shortCircuited: 4, consecutiveFailures: 0))
        let closed = log.all.filter { $0.contains("closed") && $0.contains("Circuit breaker") }
        #expect(closed.count == 1 && closed[0].hasPrefix("info: [TASK="), "\(closed)")
        #expect(closed.first?.contains("Circuit breaker of \(label.key)_command closed: the command succeeded again "
            + "after 2 consecutive failures") == true, "\(closed)")
        #expect(closed.first?.contains("answered 4 event(s) at once") == true, "\(closed)")

        // Closed: every event runs the command again.
        clear(script, "hang")
        #expect(try await decorate(module).get()?.contains("rack") == true)
        #expect(lines(script, "runs") == 4)
    }

    @Test func aFailedProbeReopensItForAnotherCoolDown() async throws {
        let script = controlled("down.sh")
        set(script, "fail")
        let log = CapturedLog()
        let module = try labelHook(script, failures: 1, seconds: 0.4, log: log)
        _ = await decorate(module)
        #expect(message(await decorate(module)).contains("circuit open after 1 consecutive failures"))
        try await Task.sleep(for: .milliseconds(500))
        let probe = await decorate(module)
        #expect(message(probe).contains("exited with return code 1"), "the probe's own failure: \(message(probe))")
        #expect(lines(script, "runs") == 2)
        let again = await decorate(module)
        #expect(message(again).contains("circuit open after 2 consecutive failures; the command runs again in 0.4 s."),
                "\(message(again))")
        #expect(module.breaker(label)?.isOpen == true)
        #expect(log.all.filter { $0.contains("Circuit breaker of \(label.key)_command stays open: the command failed "
            + "again (2 consecutive failures); it runs again in 0.4 s. Last failure: Command") }.count == 1, "\(log.all)")

        try await Task.sleep(for: .milliseconds(500))
        clear(script, "fail")
        _ = try await decorate(module).get()
        #expect(module.breaker(label)?.isOpen == false)
        #expect(lines(script, "runs") == 3)
    }

    // MARK: - Events in flight at once

    @Test func eventsInFlightAtOnceAreCountedInTheOrderTheyComplete() async throws {
        let script = controlled("inventory.sh")
        set(script, "hang")
        set(script, "fail")
        let log = CapturedLog()
        let module = try labelHook(script, failures: 3, log: log)
        let inFlight = (0..<5).map { _ in Task { await decorate(module) } }
        #expect(await eventually(within: 10) { lines(script, "started") == 5 })
        set(script, "release")
        var failures = 0
        for event in inFlight where message(await event.value).contains("exited with return code 1") { failures += 1 }
        #expect(failures == 5, "all five ran their command: they started while the breaker was closed")
        // The third completion opened it; the two that completed after it changed nothing.
        #expect(module.breaker(label) == BreakerState(isOpen: true, shortCircuited: 0, consecutiveFailures: 3))
        #expect(log.all.filter { $0.contains("Circuit breaker") }.count == 1)
        #expect(message(await decorate(module)).contains("circuit open after 3 consecutive failures"))
    }

    @Test func failuresOfEventsThatStartedBeforeTheBreakerLastClosedDoNotCount() async throws {
        let script = controlled("inventory.sh")
        let module = try labelHook(script, failures: 2, seconds: 0.3)
        // One event hangs from before the outage…
        set(script, "hang")
        let stale = Task { await decorate(module) }
        #expect(await eventually(within: 10) { lines(script, "started") == 1 })
        clear(script, "hang")
        // …the outage opens the breaker, the probe after the cool-down closes it…
        set(script, "fail")
        _ = await decorate(module)
        _ = await decorate(module)
        #expect(module.breaker(label)?.isOpen == true)
        try await Task.sleep(for: .milliseconds(400))
        clear(script, "fail")
        _ = try await decorate(module).get()
        #expect(module.breaker(label)?.isOpen == false)
        // …then the old event fails: it belongs to the outage that is over.
        set(script, "fail")
        set(script, "release")
        #expect(message(await stale.value).contains("exited with return code 1"))
        #expect(module.breaker(label)?.consecutiveFailures == 0)
        _ = await decorate(module)
        #expect(module.breaker(label) == BreakerState(isOpen: false, shortCircuited: 0, consecutiveFailures: 1),
                "one new failure: not yet the two that open it")
    }

    // MARK: - Worker mode, isolator events

    @Test func workerModeUsageIsAnsweredWithEmptyStatisticsWhileOpen() async throws {
        let worker = sandbox.script("usage-worker.sh", """
            #!/bin/bash
            while IFS= read -r request; do
              id=${request#*\\"id\\":}; id=${id%%,*}
              echo x >> "$0.requests"
              if [ -e "$0.fail" ]; then
                echo "{\\"id\\": $id, \\"error\\": \\"cgroup gone\\"}"
              else
                echo "{\\"id\\": $id, \\"output\\": {\\"cpus_user_time_secs\\": 1.5}}"
              fi
            done
            """)
        set(worker, "fail")
        let log = CapturedLog()
        let module = try isolator(sandbox, [
            ("isolator_usage_command", worker), ("isolator_usage_mode", "worker"), ("isolator_usage_breaker_failures", "2"),
            ("isolator_usage_breaker_seconds", "0.3"), ("grace_period", "0.3"),
        ], log: log)
        defer { module.stopWorkers() }
        try module.adopt(containerID: cid("c1"), containerConfig: #"{"directory":"/sandbox"}"#)
        for _ in 0..<5 {
            let statistics = try JSONValue(parsing: try await module.usage(containerID: cid("c1")))
            #expect(statistics.objectMembers?.map(\.key) == ["timestamp"], "the ignore policy: empty statistics")
        }
        #expect(lines(worker, "requests") == 2, "the worker got the two events that opened the breaker only")
        #expect(module.breaker(.usage) == BreakerState(isOpen: true, shortCircuited: 3, consecutiveFailures: 2))
        #expect(log.contains("Circuit breaker of isolator_usage_command opened after 2 consecutive failures"))
        #expect(log.contains("Last failure: Command \"\(worker)\" failed. Cause: cgroup gone"))
        try await Task.sleep(for: .milliseconds(400))
        clear(worker, "fail")
        let recovered = try JSONValue(parsing: try await module.usage(containerID: cid("c1")))
        #expect(recovered["cpus_user_time_secs"] == .number(1.5))
        #expect(module.breaker(.usage)?.isOpen == false)
        #expect(log.contains("Circuit breaker of isolator_usage_command closed"))
    }

    @Test func aPrepareUnderTheFailPolicyFailsAtOnceWhileOpen() async throws {
        let script = controlled("prepare.sh")
        set(script, "fail")
        let module = try isolator(sandbox, [("isolator_prepare_command", script), ("isolator_prepare_breaker_failures", "1")])
        let first = await thrownError { try await module.prepare(containerID: cid("c1"), containerConfig: "{}") }
        #expect((first as? EventError)?.message.contains("exited with return code 1") == true)
        let second = await thrownError { try await module.prepare(containerID: cid("c2"), containerConfig: "{}") }
        let error = try #require(second as? EventError)
        #expect(error.description.hasPrefix("[TASK=c2, METHOD=prepare] Command \"\(script)\" not run: circuit open after "
            + "1 consecutive failures; the command runs again in 30 s."), "\(error)")
        #expect(lines(script, "runs") == 1)
        // A refusal of the isolator's own (a second prepare of one container) never reaches the breaker.
        let refused = await thrownError { try await module.prepare(containerID: cid("c2"), containerConfig: "{}") }
        #expect((refused as? EventError)?.kind == .refused)
        #expect(module.breaker(.prepare)?.shortCircuited == 1)
    }

    @Test func aWatchKeepsPollingWhileOpenAndResolvesOnceTheCommandWorksAgain() async throws {
        let script = controlled("watch.sh", output: #"{"reason":"REASON_CONTAINER_LIMITATION_MEMORY","message":"oom"}"#)
        set(script, "fail")
        let log = CapturedLog()
        let module = try isolator(sandbox, [
            ("isolator_watch_command", script), ("isolator_watch_frequence", "0.05"),
            ("isolator_watch_breaker_failures", "2"), ("isolator_watch_breaker_seconds", "0.5"),
        ], log: log)
        try module.adopt(containerID: cid("c1"), containerConfig: "{}")
        let watch = Task { try await module.watch(containerID: cid("c1")) }
        #expect(await eventually(within: 10) { (module.breaker(.watch)?.shortCircuited ?? 0) >= 3 })
        #expect(lines(script, "runs") == 2, "polls while open do not run the command")
        clear(script, "fail")
        let limitation = try await watch.value
        #expect(limitation?.contains("oom") == true)
        #expect(lines(script, "runs") == 3)
        #expect(log.contains("Circuit breaker of isolator_watch_command closed"))
    }

    // MARK: - Parameters

    @Test func theKeysAreKnownBoundedAndOffByDefault() throws {
        let script = controlled("x.sh")
        let key = label.key
        let off = try configuration(.hook, sandbox, [(key + "_command", script)])
        #expect(off.command(for: label)?.breaker == nil)
        let zero = try configuration(.hook, sandbox, [(key + "_command", script), (key + "_breaker_failures", "0")])
        #expect(zero.command(for: label)?.breaker == nil)
        let on = try configuration(.hook, sandbox, [(key + "_command", script), (key + "_breaker_failures", "3")])
        #expect(on.command(for: label)?.breaker == BreakerSettings(failures: 3, seconds: 30))
        #expect(on.loadedLine(identity: nil).contains("\(key) (exec, breaker after 3 failures, 30 s)"))
        let fractional = try configuration(.isolator, sandbox, [
            ("isolator_usage_command", script), ("isolator_usage_breaker_failures", "1000"),
            ("isolator_usage_breaker_seconds", "1.5"),
        ])
        #expect(fractional.command(for: .usage)?.breaker == BreakerSettings(failures: 1000, seconds: 1.5))

        func refusal(_ suffix: String, _ value: String) -> String {
            do {
                _ = try configuration(.hook, sandbox, [(key + "_command", script), (key + "_breaker_failures", "2"),
                                                       (key + suffix, value)])
                return "(loaded)"
            } catch {
                return "\(error)"
            }
        }
        #expect(refusal("_breaker_failures", "1001").contains("parameter '\(key)_breaker_failures': '1001' is more "
            + "than 1000, the most consecutive failures a breaker may wait for before it opens"))
        #expect(refusal("_breaker_failures", "-1").contains("'-1' is not a whole number from 0 (no breaker) to 1000"))
        #expect(refusal("_breaker_failures", "three").contains("parameter '\(key)_breaker_failures': 'three' is not"))
        #expect(refusal("_breaker_failures", "99999999999999999999999").contains("is not a whole number"))
        #expect(refusal("_breaker_seconds", "0").contains("parameter '\(key)_breaker_seconds': '0' must be greater than zero"))
        #expect(refusal("_breaker_seconds", "86401").contains("parameter '\(key)_breaker_seconds': '86401' is more than "
            + "86400 seconds (a day), the most it may be"))
        #expect(refusal("_breaker_seconds", "soon").contains("'soon' is not a number of seconds"))
        #expect(refusal("_breaker_seconds", "86400") == "(loaded)")

        let secondsAlone = try configuration(.hook, sandbox, [(key + "_command", script), (key + "_breaker_seconds", "5")])
        #expect(secondsAlone.command(for: label)?.breaker == nil)
        #expect(secondsAlone.warnings.contains { $0.key == key + "_breaker_seconds" && $0.message.contains("no breaker") })
        #expect(ParameterReader.knownKeys.contains("isolator_cleanup_breaker_failures"))
        #expect(ParameterReader.knownKeys.contains("hook_slave_post_fetch_hook_breaker_seconds"))
    }
}
