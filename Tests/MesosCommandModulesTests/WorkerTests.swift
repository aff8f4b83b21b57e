import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §8: worker mode — one long-lived process serves many events over a line protocol.
@Suite(.serialized) struct WorkerTests {
    let sandbox = Sandbox()

    /// The project's Python helper, importable by the test workers.
    var helper: String { repositoryRoot + "/examples/lib" }

    /// A Python worker built on the helper: `body` is the handler's body (`envelope`, `event` in scope). At start
    /// it records its pid, its process group, the protocol variable and its open fds in `<name>.start`.
    func pythonWorker(_ name: String, _ body: String) -> String {
        sandbox.script(name, """
            #!/usr/bin/env python3
            import os, sys, time, json
            sys.path.insert(0, "\(helper)")
            import mesos_command_modules as mcm
            fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
            with open(__file__ + ".start", "a") as f:
                f.write(json.dumps({"pid": os.getpid(), "pgid": os.getpgid(0),
                                    "protocol": os.environ.get("MESOS_COMMAND_MODULES_PROTOCOL"), "fds": fds}) + "\\n")
            def handle(envelope, event):
            \(body.split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"))
            mcm.serve(handle)
            """)
    }

    /// A bash worker: `body` runs per request with `$id` and `$request` set.
    func bashWorker(_ name: String, _ body: String, prologue: String = "", epilogue: String = "") -> String {
        sandbox.script(name, """
            #!/bin/bash
            echo $$ >> "$0.start"
            \(prologue)
            while IFS= read -r request; do
              id=${request#*\\"id\\":}; id=${id%%,*}
              \(body)
            done
            \(epilogue)
            """)
    }

    func starts(_ script: String) -> [String] {
        (sandbox.read(script + ".start") ?? "").split(separator: "\n").map(String.init)
    }

    func pids(_ script: String) -> [pid_t] {
        starts(script).compactMap { line in
            if let pid = pid_t(line) { return pid }
            return (try? JSONValue(parsing: line))?["pid"]?.doubleValue.map { pid_t($0) }
        }
    }

    func workerIsolator(_ script: String, _ extra: [(String, String)] = [], log: CapturedLog = CapturedLog()) throws
        -> IsolatorModule
    {
        let module = try isolator(sandbox, [
            ("isolator_usage_command", script), ("isolator_usage_mode", "worker"), ("isolator_usage_failure_policy", "fail"),
            ("grace_period", "0.3"),
        ] + extra, log: log)
        try module.adopt(containerID: cid("c1"), containerConfig: #"{"directory":"/sandbox"}"#)
        return module
    }

    func usage(_ module: IsolatorModule, _ container: String = "c1") async -> Result<JSONValue, EventError> {
        do {
            return .success(try JSONValue(parsing: try await module.usage(containerID: cid(container))))
        } catch let error as EventError {
            return .failure(error)
        } catch {
            fatalError("\(error)")
        }
    }

    func message(_ result: Result<JSONValue, EventError>) -> String? {
        if case .failure(let error) = result { return error.message }
        return nil
    }

    // MARK: - The happy path

    @Test func oneWorkerServesManyEventsWithTheEnvelopeAndTheProtocol() async throws {
        let script = pythonWorker("usage.py", """
            assert event == "isolator_usage", event
            return {"cpus_limit": 2, "mem_limit_bytes": len(json.dumps(envelope["container_config"]))}
            """)
        let fds = openFDCount()
        do {
            let module = try workerIsolator(script)
            for _ in 0..<50 {
                let statistics = try #require(try? await usage(module).get())
                #expect(statistics["cpus_limit"] == .number("2"))
                #expect(statistics["mem_limit_bytes"] == .number(String(#"{"directory": "/sandbox"}"#.count)))
                #expect(statistics["timestamp"] != nil)
            }
            #expect(module.metrics.snapshot(.usage).calls == 50)
            // Started once, as SPEC §8 says: its own group, the protocol in its environment, no fd beyond 0/1/2.
            let start = try #require(starts(script).first.map { try JSONValue(parsing: $0) })
            #expect(starts(script).count == 1)
            #expect(start["pid"] == start["pgid"])
            #expect(start["protocol"] == .string("worker/1"))
            #expect(start["fds"]?.arrayValue?.compactMap(\.doubleValue).filter { $0 > 2 }.count == 1,
                    "only the fd listing /proc/self/fd itself: \(start)")
            #expect(module.workerPIDs == pids(script))
        }
        // The module is released: the worker sees the end of its stdin and exits; nothing is left.
        let pid = try #require(pids(script).first)
        #expect(await eventually(within: 3) { kill(pid, 0) != 0 })
        #expect(await eventually(within: 3) { zombieChildren().isEmpty && openFDCount() <= fds })
    }

    @Test func eventsOfOneModuleNamingTheSameCommandShareItsWorkers() async throws {
        let script = pythonWorker("shared.py", """
            return {"cpus_limit": 1} if event == "isolator_usage" else {"executor_pid": os.getpid()}
            """)
        let module = try workerIsolator(script, [("isolator_status_command", script), ("isolator_status_mode", "worker")])
        _ = try await usage(module).get()
        let status = try JSONValue(parsing: try await module.status(containerID: cid("c1")))
        #expect(starts(script).count == 1)
        #expect(status["executor_pid"]?.doubleValue.map { pid_t($0) } == pids(script).first)
    }

    @Test func workersServeEventsInParallelOneEventEach() async throws {
        let script = pythonWorker("slow.py", "time.sleep(0.5)\nreturn {\"processes\": os.getpid()}")
        let module = try workerIsolator(script, [("isolator_usage_workers", "3")])
        let start = ContinuousClock.now
        let results = await withTaskGroup(of: Double?.self) { group in
            for _ in 0..<3 { group.addTask { try? await usage(module).get()["processes"]?.doubleValue } }
            return await group.reduce(into: [Double?]()) { $0.append($1) }
        }
        #expect(ContinuousClock.now - start < .milliseconds(1400), "three workers, not one after the other")
        #expect(Set(results.compactMap { $0 }).count == 3)
    }

    @Test func anErrorAnswerFailsTheEventWithItsCauseAndKeepsTheWorker() async throws {
        let script = pythonWorker("error.py", "raise RuntimeError('no cgroup for ' + envelope['container_id']['value'])")
        let module = try workerIsolator(script)
        #expect(message(await usage(module)) == "Command \"\(script)\" failed. Cause: no cgroup for c1")
        #expect(message(await usage(module)) == "Command \"\(script)\" failed. Cause: no cgroup for c1")
        #expect(starts(script).count == 1)
        #expect(module.workerRestarts(.usage) == 0)
    }

    @Test func nullIsAnEmptyOutputAndAnOutputIsCheckedLikeAnOutputFile() async throws {
        let script = pythonWorker("checked.py", """
            return None if envelope['container_id']['value'] == 'c1' else {"cpus_limit": "lots"}
            """)
        let module = try workerIsolator(script)
        try module.adopt(containerID: cid("c2"), containerConfig: "{}")
        #expect(try await usage(module).get().objectMembers?.map(\.key) == ["timestamp"])
        let invalid = await usage(module, "c2")
        #expect(message(invalid) == "Command \"\(script)\" wrote an invalid mesos.ResourceStatistics: "
            + "field 'cpus_limit': expected a number (double), got a string.", "\(invalid)")
    }

    // MARK: - Workers that fail: the event fails, a fresh worker serves the next one

    /// Runs a failing first event, checks its message, then checks that a fresh worker serves the next event and
    /// that nothing of the first is left.
    func expectFailureThenFreshWorker(_ script: String, message expected: String, timeout: String = "5",
                                      within seconds: Double = 3, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let fds = openFDCount()
        let module = try workerIsolator(script, [("isolator_usage_timeout", timeout)])
        try module.adopt(containerID: cid("ok"), containerConfig: "{}")
        let start = ContinuousClock.now
        let first = await usage(module)
        #expect(ContinuousClock.now - start < .milliseconds(Int(seconds * 1000)), sourceLocation: sourceLocation)
        #expect(message(first) == expected.replacingAll("SCRIPT", with: script), sourceLocation: sourceLocation)
        let firstPID = pids(script).first
        let second = await usage(module, "ok")
        #expect(try second.get()["processes"] == .number("1"), sourceLocation: sourceLocation)
        #expect(pids(script).count == 2 && pids(script).last != firstPID, "a fresh worker", sourceLocation: sourceLocation)
        #expect(module.workerRestarts(.usage) == 1, sourceLocation: sourceLocation)
        if let firstPID {
            #expect(await eventually(within: 3) { kill(firstPID, 0) != 0 }, "the failed worker is gone",
                    sourceLocation: sourceLocation)
        }
        module.stopWorkers()
        #expect(await eventually(within: 3) { zombieChildren().isEmpty && openFDCount() <= fds },
                "\(openFDTargets())", sourceLocation: sourceLocation)
    }

    /// A bash worker answering {"processes":1} for container "ok" and running `hostile` for the others.
    func hostileWorker(_ name: String, _ hostile: String, prologue: String = "") -> String {
        bashWorker(name, """
            case "$request" in
              *'"value":"ok"'*) printf '{"id":%s,"output":{"processes":1}}\\n' "$id" ;;
              *) \(hostile) ;;
            esac
            """, prologue: prologue)
    }

    @Test func aWorkerThatHangsFailsTheEventAtItsTimeout() async throws {
        try await expectFailureThenFreshWorker(
            hostileWorker("hang.sh", "sleep 60"), message: "Command \"SCRIPT\" took too long to execute. Timeout: 0.5s.",
            timeout: "0.5", within: 0.5 + 0.4)
    }

    @Test func aWorkerThatIgnoresSIGTERMAndStartsAGrandchildIsKilledWithItsGroup() async throws {
        let grandchild = sandbox.path + "/grandchild.pid"
        let script = hostileWorker("stubborn.sh", "sleep 60 & echo $! > \(grandchild); wait", prologue: "trap '' TERM")
        try await expectFailureThenFreshWorker(
            script, message: "Command \"SCRIPT\" took too long to execute. Timeout: 0.5s.", timeout: "0.5", within: 0.9)
        let pid = pid_t(sandbox.read(grandchild)?.trimmingWhitespace ?? "") ?? 0
        #expect(pid > 0)
        #expect(await eventually(within: 3) { kill(pid, 0) != 0 }, "the grandchild died with the group")
    }

    @Test func aWorkerThatExitsOrCrashes() async throws {
        try await expectFailureThenFreshWorker(
            hostileWorker("exit.sh", "exit 3"), message: "Command \"SCRIPT\" (worker) exited with return code 3.")
        try await expectFailureThenFreshWorker(
            hostileWorker("crash.sh", "kill -SEGV $$"), message: "Command \"SCRIPT\" (worker) exited via signal 11.")
    }

    @Test func aWorkerThatWritesGarbageOrAnswersAnotherID() async throws {
        try await expectFailureThenFreshWorker(
            hostileWorker("garbage.sh", "echo 'hello, world'"),
            message: "Command \"SCRIPT\" (worker) wrote a line that is not JSON: hello, world.")
        // A line that starts like a JSON literal: still no parser detail ("expected 'true' at byte 1").
        try await expectFailureThenFreshWorker(
            hostileWorker("print.sh", "echo 'tracing: request received'"),
            message: "Command \"SCRIPT\" (worker) wrote a line that is not JSON: tracing: request received.")
        try await expectFailureThenFreshWorker(
            hostileWorker("array.sh", "echo '[1, 2]'"),
            message: "Command \"SCRIPT\" (worker) wrote a line that is not a JSON object: [1, 2].")
        try await expectFailureThenFreshWorker(
            hostileWorker("wrongid.sh", #"printf '{"id":%s,"output":null}\n' $((id + 1))"#),
            message: "Command \"SCRIPT\" (worker) answered id 2 to request 1.")
    }

    @Test func aWorkerThatWritesAHugeLineOrClosesItsStdout() async throws {
        let module = try workerIsolator(hostileWorker("huge.sh", "head -c 100000 /dev/zero | tr '\\\\0' x; echo"),
                                        [("output_max_bytes", "1000")])
        #expect(message(await usage(module)) == "Command \"\(sandbox.path)/huge.sh\" (worker) wrote an answer line longer "
            + "than 5096 bytes (output_max_bytes and the protocol's members).")
        module.stopWorkers()
        try await expectFailureThenFreshWorker(
            hostileWorker("closes.sh", "exec 1>&-; sleep 60"), message: "Command \"SCRIPT\" (worker) closed its stdout.")
    }

    @Test func repeatedFailuresBackOffAndEventsMeanwhileFailAtOnceNamingTheLastCause() async throws {
        let script = bashWorker("dies.sh", "exit 1", prologue: "")
        let module = try workerIsolator(script)
        let exited = "Command \"\(script)\" (worker) exited with return code 1."
        #expect(message(await usage(module)) == exited)
        #expect(message(await usage(module)) == exited)  // restarted at once after one failure
        let start = ContinuousClock.now
        let backingOff = message(await usage(module))
        #expect(ContinuousClock.now - start < .milliseconds(100))
        #expect(backingOff == "Command \"\(script)\" (worker) is not restarted yet after repeated failures (next try in "
            + "0.5s); last failure: \(exited)", "\(backingOff ?? "")")
        #expect(pids(script).count == 2)
        try await Task.sleep(for: .milliseconds(600))
        #expect(message(await usage(module)) == exited)
        #expect(pids(script).count == 3)
        #expect(WorkerPool.backoff(afterFailures: 1) == 0 && WorkerPool.backoff(afterFailures: 3) == 1
            && WorkerPool.backoff(afterFailures: 20) == 30)
    }

    @Test func aCommandThatCannotStartFailsNamingIt() async throws {
        let script = sandbox.script("plain.py", "#!/usr/bin/env python3\n", mode: 0o755)
        chmod(script, 0o644)
        let module = try isolator(sandbox, [("isolator_usage_command", sandbox.script("ok.sh", "#!/bin/sh\n"))])
        _ = module
        var configuration = try configuration(.isolator, sandbox, [])
        configuration.commands[.usage] = {
            var command = CommandConfiguration(event: .usage, path: script, failurePolicy: .fail)
            command.mode = .worker
            return command
        }()
        let direct = try IsolatorModule(configuration: configuration, logger: CapturedLog().logger)
        try direct.adopt(containerID: cid("c1"), containerConfig: "{}")
        #expect(message(await usage(direct)) == "Error launching external command \"\(script)\": Permission denied "
            + "(not executable, or a directory)")
    }

    // MARK: - Load: waiting is the event's, not the worker's

    /// Under a burst, events that wait too long for the worker fail at their deadline — but the worker, which
    /// answers each request in time, is never killed for their wait, and the backoff never starts.
    @Test func aBusyWorkerIsNotKilledForTheTimeEventsWaitedForIt() async throws {
        let script = bashWorker("busy.sh", #"sleep 0.1; printf '{"id":%s,"output":{"processes":1}}\n' "$id""#)
        let module = try workerIsolator(script, [("isolator_usage_timeout", "1")])
        _ = try await usage(module).get()
        let results = await withTaskGroup(of: Result<JSONValue, EventError>.self) { group in
            for _ in 0..<14 { group.addTask { await usage(module) } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let served = results.filter { (try? $0.get()) != nil }.count
        let failures = results.compactMap(message)
        #expect(served >= 7, "\(failures)")
        #expect(failures.allSatisfy { $0.hasPrefix("Command \"\(script)\" took too long to execute. Timeout: 1s") }, "\(failures)")
        #expect(module.workerRestarts(.usage) == 0)
        #expect(pids(script).count == 1, "the same worker served the burst")
        // And it serves the next event at once: no backoff.
        #expect(try await usage(module).get()["processes"] == .number("1"))
    }

    /// An event nobody waits for any more (cancelled, or over while it waited for its worker) still has its
    /// answer checked: a worker that then writes a line that is not a valid answer is stopped before its slot
    /// serves the next event, which is not blamed for it.
    @Test func theAnswerToAnAbandonedEventIsCheckedToo() async throws {
        let script = hostileWorker("late.sh", #"sleep 0.3; echo 'not json'; sleep 0.5; printf '{"id":%s,"output":{"processes":1}}\n' "$id""#)
        let module = try workerIsolator(script, [("isolator_usage_timeout", "5")])
        try module.adopt(containerID: cid("ok"), containerConfig: "{}")
        try module.adopt(containerID: cid("late"), containerConfig: "{}")
        _ = try await usage(module, "ok").get()
        let late = Task { await usage(module, "late") }
        try await Task.sleep(for: .milliseconds(100))
        late.cancel()
        #expect(message(await late.value) != nil, "a cancelled event fails")
        // Waits for the worker's slot, which its garbage line frees.
        #expect(try await usage(module, "ok").get()["processes"] == .number("1"))
        #expect(module.workerRestarts(.usage) == 1)
        #expect(pids(script).count == 2, "a fresh worker served the next event")
    }

    /// One bad input that makes workers exit repeatedly puts restarts on hold — not the workers still healthy:
    /// a free live worker serves the next event.
    @Test func restartsOnHoldDoNotStopAHealthyWorker() async throws {
        let script = hostileWorker("poison.sh", "exit 1")
        let module = try workerIsolator(script, [("isolator_usage_workers", "3")])
        try module.adopt(containerID: cid("ok"), containerConfig: "{}")
        try module.adopt(containerID: cid("poison"), containerConfig: "{}")
        // Three events at once start the three workers.
        let warm = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<3 { group.addTask { (try? await usage(module, "ok").get()) != nil } }
            return await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
        }
        #expect(warm == 3 && pids(script).count == 3)
        // Two workers die in a row: restarts are on hold for 0.5 s.
        _ = await usage(module, "poison")
        _ = await usage(module, "poison")
        #expect(module.workerRestarts(.usage) == 2)
        for _ in 0..<3 { #expect(try await usage(module, "ok").get()["processes"] == .number("1")) }
        #expect(pids(script).count == 3, "the healthy worker served them, nothing was restarted")
    }

    /// A worker that answers before it has read the whole request breaks the stream between the module and it:
    /// it is stopped, and the engine does not spin on the socket meanwhile.
    @Test func aWorkerThatAnswersBeforeReadingItsWholeRequestIsStopped() async throws {
        let script = sandbox.script("early.sh", """
            #!/bin/bash
            echo $$ >> "$0.start"
            while :; do
              head -c 20 > /dev/null || exit 0
              printf '{"id":1,"output":null}\n'
              sleep 1
            done
            """)
        let module = try workerIsolator(script)
        let big = "{\"directory\":\"" + String(repeating: "x", count: 4 << 20) + "\"}"
        try module.adopt(containerID: cid("big"), containerConfig: big)
        let cpu = processCPUSeconds()
        let result = await usage(module, "big")
        #expect(message(result) == "Command \"\(script)\" (worker) answered before reading the whole request.", "\(result)")
        try await Task.sleep(for: .milliseconds(1000))
        #expect(processCPUSeconds() - cpu < 0.6, "the engine spun on the worker's stdin")
    }

    // MARK: - The end of a module

    @Test func stoppingTheWorkersClosesStdinWaitsTheGracePeriodThenKillsTheGroup() async throws {
        // A worker that ignores the end of its stdin (and SIGTERM): killed after the grace period.
        let stubborn = bashWorker("stubborn.sh", #"printf '{"id":%s,"output":null}\n' "$id""#,
                                  prologue: "trap '' TERM; (while :; do sleep 1; done) &", epilogue: "while :; do sleep 0.1; done")
        let module = try workerIsolator(stubborn)
        _ = try await usage(module).get()
        let pid = try #require(pids(stubborn).first)
        let start = ContinuousClock.now
        module.stopWorkers()
        let took = ContinuousClock.now - start
        #expect(took >= .milliseconds(250) && took < .milliseconds(1500), "\(took)")
        #expect(kill(pid, 0) != 0)
        // A worker that exits at the end of its stdin, as it should: stopped at once.
        let polite = pythonWorker("polite.py", "return None")
        let second = try workerIsolator(polite)
        _ = try await usage(second).get()
        let quick = ContinuousClock.now
        second.stopWorkers()
        #expect(ContinuousClock.now - quick < .milliseconds(250))
        #expect(await eventually(within: 3) { zombieChildren().isEmpty })
    }

    @Test func anEventInFlightWhenTheModuleStopsFailsAtOnce() async throws {
        let script = hostileWorker("busy.sh", "sleep 60")
        let module = try workerIsolator(script)
        let inFlight = Task { await usage(module) }
        #expect(await eventually(within: 3) { !pids(script).isEmpty })
        try await Task.sleep(for: .milliseconds(100))
        module.stopWorkers()
        let result = await inFlight.value
        #expect(message(result) == "Command \"\(script)\" (worker) was stopped: the module is going away.")
        #expect(await eventually(within: 3) { zombieChildren().isEmpty })
    }
}
