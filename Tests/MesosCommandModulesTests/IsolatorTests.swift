import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §5: isolator events, state and recovery.
@Suite struct IsolatorTests {
    let sandbox = Sandbox()

    /// A script appending "<event> <input>" lines to `calls.log` and writing `output`.
    func recording(_ event: Event, output: String = "") -> (String, String) {
        sandbox.write(sandbox.path + "/\(event.key).out", output)
        let script = sandbox.script(event.key, """
            #!/bin/sh
            { printf '%s ' \(event.key); cat "$1"; echo; } >> \(sandbox.path)/calls.log
            cat "$0.out" > "$2"
            """)
        return (event.key + "_command", script)
    }

    var calls: [String] { (sandbox.read(sandbox.path + "/calls.log") ?? "").split(separator: "\n").map(String.init) }

    @Test func theContainerConfigFromPrepareReachesEveryLaterEvent() async throws {
        let module = try isolator(sandbox, [
            recording(.prepare, output: #"{"user":"app_user"}"#), recording(.isolate), recording(.update),
            recording(.usage, output: #"{"cpus_limit":2}"#), recording(.status, output: #"{"executor_pid":7}"#),
            recording(.cleanup),
        ])
        let id = cid("c1")
        let config = SampleEnvelopes.containerConfig(for: id)
        #expect(try await module.prepare(containerID: id, containerConfig: config) == #"{"user":"app_user"}"#)
        try await module.isolate(containerID: id, pid: 1234)
        try await module.update(containerID: id, resourceRequests: "[]", resourceLimits: #"{"cpus":{"value":2}}"#)
        let usage = try JSONValue(parsing: try await module.usage(containerID: id))
        #expect(usage["cpus_limit"] == .number("2"))
        #expect(usage["timestamp"]?.doubleValue ?? 0 > 1_700_000_000)
        #expect(try await module.status(containerID: id) == #"{"executor_pid":7}"#)
        try await module.cleanup(containerID: id)

        let expected: [(Event, [String])] = [
            (.prepare, ["container_id", "container_config"]), (.isolate, ["container_id", "container_config", "pid"]),
            (.update, ["container_id", "container_config", "resource_requests", "resource_limits"]),
            (.usage, ["container_id", "container_config"]), (.status, ["container_id", "container_config"]),
            (.cleanup, ["container_id", "container_config"]),
        ]
        #expect(calls.count == expected.count)
        for (line, (event, keys)) in zip(calls, expected) {
            #expect(line.hasPrefix(event.key + " "))
            let envelope = try JSONValue(parsing: String(line.dropFirst(event.key.count + 1)))
            #expect(envelope.objectMembers?.map(\.key) == keys)
            #expect(envelope["container_config"] == (try JSONValue(parsing: config)))
        }
        #expect(calls[1].contains(#""pid":1234"#))
    }

    /// SPEC §5: a container the isolator has no state for — it ran before the isolator was enabled (a rollout
    /// onto a busy agent), or its state file was lost — is never harmed. Its watch must not fail: Mesos destroys
    /// a container whose watch future fails.
    @Test func aContainerWithoutStateIsNeverHarmed() async throws {
        let log = CapturedLog()
        let ticks = sandbox.path + "/ticks"
        let watch = sandbox.script("watch.sh", """
            #!/bin/sh
            { printf 'isolator_watch '; cat "$1"; echo; } >> \(sandbox.path)/calls.log
            echo tick >> \(ticks)
            [ $(wc -l < \(ticks)) -ge 3 ] && echo '{"message":"over","reason":"REASON_CONTAINER_LIMITATION"}' > "$2"
            exit 0
            """)
        let module = try isolator(sandbox, [
            recording(.recover), recording(.usage, output: #"{"cpus_limit":1}"#), recording(.status, output: "{}"),
            recording(.update), recording(.cleanup), ("isolator_watch_command", watch), ("isolator_watch_frequence", "0.05"),
        ], log: log)
        let running = #"{"value":"running-before-rollout"}"#
        try await module.recover(states: "[{\"container_id\":\(running),\"pid\":4242}]", orphans: "[]")
        #expect(module.containers.isEmpty)

        let limitation = try await module.watch(containerID: running)
        #expect(limitation == #"{"message":"over","reason":"REASON_CONTAINER_LIMITATION"}"#)
        let usage = try JSONValue(parsing: try await module.usage(containerID: running))
        #expect(usage["cpus_limit"] == .number("1"))
        #expect(try await module.status(containerID: running) == "{}")
        try await module.update(containerID: running, resourceRequests: "[]", resourceLimits: "{}")
        try await module.cleanup(containerID: running)

        // Every command but cleanup ran, with the container's id and nothing else.
        let events = calls.map { String($0.prefix { $0 != " " }) }
        #expect(events == ["isolator_recover", "isolator_watch", "isolator_watch", "isolator_watch", "isolator_usage",
                           "isolator_status", "isolator_update"])
        for line in calls.dropFirst() {
            let envelope = try JSONValue(parsing: String(line.drop { $0 != " " }.dropFirst()))
            #expect(envelope["container_id"] == (try JSONValue(parsing: running)))
            #expect(envelope["container_config"] == nil)
        }
        // One warning for the container, not one per event.
        let warnings = log.all.filter { $0.contains("No state for this container") }
        #expect(warnings.count == 1)
        #expect(warnings.first?.contains("[TASK=running-before-rollout, METHOD=watch]") == true)
        #expect(log.contains("Missing container info during cleanup of mesos-command-module, won't call command."))
    }

    @Test func aStateFileLostWhileTheContainerRunsDoesNotFailItsWatchAfterARestart() async throws {
        let watch = sandbox.script("watch.sh", "#!/bin/sh\nexit 0\n")
        let parameters = [recording(.prepare), ("isolator_watch_command", watch), ("isolator_watch_frequence", "0.05")]
        let before = try isolator(sandbox, parameters)
        _ = try await before.prepare(containerID: cid("lost"), containerConfig: "{}")
        #expect(unlink(before.stateDirectory + "/lost") == 0)
        let after = try isolator(sandbox, parameters)
        try await after.recover(states: #"[{"container_id":{"value":"lost"},"pid":1}]"#, orphans: "[]")
        let watching = Task { try await after.watch(containerID: cid("lost")) }
        try await Task.sleep(for: .milliseconds(300))
        // Still watching, not failed; cleanup ends it without running a command.
        try await after.cleanup(containerID: cid("lost"))
        #expect(try await watching.value == nil)
    }

    @Test func aSecondPrepareOfTheSameContainerFails() async throws {
        let module = try isolator(sandbox, [recording(.prepare)])
        _ = try await module.prepare(containerID: cid("twice"), containerConfig: "{}")
        let error = await thrownError { try await module.prepare(containerID: cid("twice"), containerConfig: "{}") } as? EventError
        #expect(error?.description == "[TASK=twice, METHOD=prepare] mesos-command-module already initialized for container")
        #expect(calls.count == 1)
    }

    @Test func cleanupOfAnUnknownContainerDoesNotRunTheCommand() async throws {
        let log = CapturedLog()
        let module = try isolator(sandbox, [recording(.cleanup)], log: log)
        try await module.cleanup(containerID: cid("stranger"))
        #expect(calls.isEmpty)
        #expect(log.contains("[TASK=stranger, METHOD=cleanup] Missing container info during cleanup of mesos-command-module, won't call command."))
        // Expected (Mesos cleans up every container with every isolator): a warning, not an error.
        #expect(log.contains("warning: [TASK=stranger, METHOD=cleanup] Missing container info"))
    }

    /// SPEC §5: a cleanup that fails keeps the container's state, so that Mesos' retry — the container is an
    /// orphan at the next agent start — runs the command again with the container's config.
    @Test func aFailedCleanupKeepsTheStateAndTheRetryAfterARestartRunsTheCommandWithTheConfig() async throws {
        let busy = sandbox.path + "/device-busy"
        sandbox.write(busy, "")
        let cleanup = sandbox.script("cleanup.sh", """
            #!/bin/sh
            { printf 'isolator_cleanup '; cat "$1"; echo; } >> \(sandbox.path)/calls.log
            if [ -e \(busy) ]; then echo 'device busy' > "$3"; exit 1; fi
            """)
        let parameters = [recording(.prepare), ("isolator_cleanup_command", cleanup)]
        let config = #"{"directory":"/sandbox/c","command_info":{}}"#
        let before = try isolator(sandbox, parameters)
        _ = try await before.prepare(containerID: cid("c"), containerConfig: config)
        let error = await thrownError { try await before.cleanup(containerID: cid("c")) } as? EventError
        #expect(error?.message == "Command \"\(cleanup)\" exited with return code 1. Cause: device busy")
        #expect(Sandbox.entries(before.stateDirectory) == ["c"])
        #expect(sandbox.read(before.stateDirectory + "/c") == config)

        // The agent restarts; the container is an orphan, and Mesos cleans it up again.
        let log = CapturedLog()
        let after = try isolator(sandbox, parameters, log: log)
        try await after.recover(states: "[]", orphans: #"[{"value":"c"}]"#)
        #expect(await thrownError { try await after.cleanup(containerID: cid("c")) } != nil)
        #expect(Sandbox.entries(after.stateDirectory) == ["c"], "failed again: still kept")
        #expect(!log.contains("Missing container info"))
        #expect(log.contains("Cleanup failed: the container's state is kept in '\(after.stateDirectory)/c'"))
        unlink(busy)
        try await after.cleanup(containerID: cid("c"))
        let cleanups = calls.filter { $0.hasPrefix("isolator_cleanup ") }
        #expect(cleanups.count == 3)
        for line in cleanups {
            let envelope = try JSONValue(parsing: String(line.dropFirst("isolator_cleanup ".count)))
            #expect(envelope["container_config"] == (try JSONValue(parsing: config)))
        }
        #expect(Sandbox.entries(after.stateDirectory).isEmpty, "gone once cleanup succeeded")
        #expect(after.containers.isEmpty)
    }

    @Test func underTheIgnorePolicyAFailedCleanupRemovesTheState() async throws {
        let cleanup = sandbox.script("cleanup.sh", "#!/bin/sh\nexit 1\n")
        let module = try isolator(sandbox, [
            recording(.prepare), ("isolator_cleanup_command", cleanup), ("isolator_cleanup_failure_policy", "ignore"),
        ])
        _ = try await module.prepare(containerID: cid("c"), containerConfig: "{}")
        try await module.cleanup(containerID: cid("c"))
        #expect(Sandbox.entries(module.stateDirectory).isEmpty)
        #expect(module.containers.isEmpty)
    }

    @Test func stateIsPersistedAndRestoredByAFreshInstance() async throws {
        let parameters = [recording(.prepare), recording(.cleanup), recording(.recover)]
        let first = try isolator(sandbox, parameters)
        let nested = #"{"value":"child","parent":{"value":"parent"}}"#
        _ = try await first.prepare(containerID: cid("a"), containerConfig: #"{"directory":"/a","command_info":{}}"#)
        _ = try await first.prepare(containerID: nested, containerConfig: #"{"directory":"/n","command_info":{}}"#)
        #expect(Sandbox.entries(first.stateDirectory) == ["a", "parent.child"])
        // The seed's format: the file holds the ContainerConfig JSON.
        #expect(sandbox.read(first.stateDirectory + "/a") == #"{"directory":"/a","command_info":{}}"#)

        let second = try isolator(sandbox, parameters)  // the agent restarted
        #expect(second.containers.isEmpty)
        try await second.recover(states: #"[{"container_id":{"value":"a"},"pid":1,"directory":"/a"}]"#, orphans: "[\(nested)]")
        #expect(second.containerConfig(ContainerID("a")) == #"{"directory":"/a","command_info":{}}"#)
        #expect(second.containerConfig(ContainerID("child", parent: ContainerID("parent"))) == #"{"directory":"/n","command_info":{}}"#)
        try await second.cleanup(containerID: nested)
        #expect(calls.last?.contains(#""directory":"/n""#) == true)
        #expect(Sandbox.entries(second.stateDirectory) == ["a"])
    }

    @Test func recoverSkipsCorruptFilesAndRemovesStaleOnes() async throws {
        let log = CapturedLog()
        let module = try isolator(sandbox, [recording(.recover)], log: log)
        let dir = module.stateDirectory
        shell("mkdir -p '\(dir)'")
        sandbox.write(dir + "/good", #"{"directory":"/g"}"#)
        sandbox.write(dir + "/corrupt", #"{"directory":"#)
        sandbox.write(dir + "/stale", #"{"directory":"/s"}"#)
        sandbox.write(dir + "/.good.tmp.123", #"{"dire"#)
        let states = #"[{"container_id":{"value":"good"}},{"container_id":{"value":"corrupt"}},{"container_id":{"value":"missing"}}]"#
        try await module.recover(states: states, orphans: "[]")
        #expect(module.containers.map(\.description) == ["good"])
        #expect(log.contains("Cannot restore the state of container corrupt"))
        #expect(log.contains("Cannot restore the state of container missing"))
        #expect(log.contains("Removed the state of container 'stale'"))
        #expect(log.contains("left by an interrupted write"))
        #expect(Sandbox.entries(dir) == ["corrupt", "good"])
        #expect(calls.first?.hasPrefix("isolator_recover {\"states\":[") == true)
    }

    @Test func aListMesosRecoversThatCannotBeReadRemovesNoStateFile() async throws {
        let log = CapturedLog()
        let module = try isolator(sandbox, [recording(.recover)], log: log)
        let dir = module.stateDirectory
        shell("mkdir -p '\(dir)'")
        sandbox.write(dir + "/running", #"{"directory":"/r"}"#)
        sandbox.write(dir + "/orphan", #"{"directory":"/o"}"#)
        // Readable states, unreadable orphans: the known container is restored, nothing is removed.
        try await module.recover(states: #"[{"container_id":{"value":"running"}}]"#, orphans: #"[{"value":"orph"#)
        #expect(module.containers.map(\.description) == ["running"])
        #expect(log.contains("Cannot read the orphans Mesos recovers"))
        #expect(log.contains("no state file is removed"))
        #expect(Sandbox.entries(dir) == ["orphan", "running"])
        // Not an array: the same.
        let restarted = try isolator(sandbox, [recording(.recover)], log: log)
        try await restarted.recover(states: #"{"container_id":{"value":"running"}}"#, orphans: "[]")
        #expect(log.contains("The states Mesos recovers are not a JSON array"))
        #expect(Sandbox.entries(dir) == ["orphan", "running"])
        #expect(calls.count == 2, "the recover command still runs")
    }

    @Test func aFailingRecoverCommandIsOnlyLogged() async throws {
        let failing = sandbox.script("recover.sh", "#!/bin/sh\nexit 4\n")
        let log = CapturedLog()
        let module = try isolator(sandbox, [("isolator_recover_command", failing)], log: log)
        try await module.recover(states: "[]", orphans: "[]")
        #expect(log.contains("exited with return code 4"))
    }

    @Test func emptyOutputsPerEvent() async throws {
        let module = try isolator(sandbox, [recording(.prepare), recording(.usage), recording(.status), recording(.watch)])
        let id = cid("empty")
        #expect(try await module.prepare(containerID: id, containerConfig: "{}") == nil)
        let usage = try JSONValue(parsing: try await module.usage(containerID: id))
        #expect(usage.objectMembers?.map(\.key) == ["timestamp"])
        #expect(try await module.status(containerID: id) == "{}")
        #expect(try await module.watchOnce(containerID: id) == nil)
    }

    @Test func statusWithoutACommandIsEmpty() async throws {
        let module = try isolator(sandbox, [recording(.usage)])
        #expect(try await module.status(containerID: cid("stranger")) == "{}")
        #expect(calls.isEmpty)
    }

    @Test func isolateOfAnUnknownContainerWarnsAndRunsWithoutConfigAsTheSeedDid() async throws {
        let log = CapturedLog()
        let module = try isolator(sandbox, [recording(.isolate)], log: log)
        try await module.isolate(containerID: cid("stranger"), pid: 77)
        #expect(calls.count == 1 && !calls[0].contains("container_config") && calls[0].contains(#""pid":77"#))
        #expect(log.contains("Missing container info during isolation of container with pid 77"))
    }

    @Test func usageFailuresGiveTimestampOnlyStatisticsAsTheSeedDid() async throws {
        let failing = sandbox.script("usage.sh", "#!/bin/sh\necho '{\"cpus_limit\": \"lots\"}' > \"$2\"\n")
        let module = try isolator(sandbox, [("isolator_usage_command", failing)])
        try module.adopt(containerID: cid("u"), containerConfig: "{}")
        let usage = try JSONValue(parsing: try await module.usage(containerID: cid("u")))
        #expect(usage.objectMembers?.map(\.key) == ["timestamp"])
    }

    @Test func prepareFailsWithTheCommandAndPolicyFail() async throws {
        let failing = sandbox.script("prepare.sh", "#!/bin/sh\necho 'no network' > \"$3\"\nexit 1\n")
        let module = try isolator(sandbox, [("isolator_prepare_command", failing)])
        let error = await thrownError { try await module.prepare(containerID: cid("p"), containerConfig: "{}") } as? EventError
        #expect(error?.description == "[TASK=p, METHOD=prepare] Command \"\(failing)\" exited with return code 1. Cause: no network")
    }

    @Test func theWatchLoopPollsUntilALimitation() async throws {
        let counter = sandbox.path + "/ticks"
        let script = sandbox.script("watch.sh", """
            #!/bin/sh
            echo tick >> \(counter)
            [ "$(wc -l < \(counter))" -ge 3 ] && echo '{"message":"too much","reason":"REASON_CONTAINER_LIMITATION_MEMORY"}' > "$2"
            exit 0
            """)
        let module = try isolator(sandbox, [("isolator_watch_command", script), ("isolator_watch_frequence", "0.05")])
        try module.adopt(containerID: cid("w"), containerConfig: "{}")
        let limitation = try await module.watch(containerID: cid("w"))
        #expect(limitation == #"{"message":"too much","reason":"REASON_CONTAINER_LIMITATION_MEMORY"}"#)
        #expect(sandbox.read(counter) == "tick\ntick\ntick\n")
    }

    @Test func theWatchLoopKeepsPollingThroughFailuresAndStopsAtCleanup() async throws {
        let counter = sandbox.path + "/ticks"
        let script = sandbox.script("watch.sh", "#!/bin/sh\necho tick >> \(counter)\nexit 1\n")
        let log = CapturedLog()
        let module = try isolator(sandbox, [("isolator_watch_command", script), ("isolator_watch_frequence", "0.05")], log: log)
        try module.adopt(containerID: cid("w"), containerConfig: "{}")
        let watch = Task { try await module.watch(containerID: cid("w")) }
        #expect(await eventually(within: 5) { (sandbox.read(counter) ?? "").count >= 15 })
        try await module.cleanup(containerID: cid("w"))
        #expect(try await watch.value == nil)
        let ticks = sandbox.read(counter)
        try await Task.sleep(for: .milliseconds(300))
        #expect(sandbox.read(counter) == ticks)
    }

    @Test func cancellingTheWatchStopsTheLoopAndItsCommand() async throws {
        let pidFile = sandbox.path + "/watch.pid"
        let script = sandbox.script("watch.sh", "#!/bin/sh\necho $$ > \(pidFile)\nexec sleep 30\n")
        let module = try isolator(sandbox, [("isolator_watch_command", script), ("grace_period", "0.2")])
        try module.adopt(containerID: cid("w"), containerConfig: "{}")
        let watch = Task { try await module.watch(containerID: cid("w")) }
        #expect(await eventually(within: 3) { sandbox.read(pidFile)?.isEmpty == false })
        watch.cancel()
        #expect(try await watch.value == nil)
        let pid = pid_t(sandbox.read(pidFile)?.trimmingWhitespace ?? "") ?? 0
        #expect(await eventually(within: 3) { !processAlive(pid) })
    }

    @Test func eachWatchRunHasATimeout() async throws {
        let script = sandbox.script("watch.sh", "#!/bin/sh\nexec sleep 30\n")
        let log = CapturedLog()
        let module = try isolator(sandbox, [
            ("isolator_watch_command", script), ("isolator_watch_timeout", "0.2"), ("grace_period", "0.1"),
        ], log: log)
        try module.adopt(containerID: cid("w"), containerConfig: "{}")
        let start = ContinuousClock.now
        #expect(try await module.watchOnce(containerID: cid("w")) == nil)  // logged, and the loop keeps polling
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(log.contains("took too long to execute"))
    }

    @Test func preparesOfDifferentContainersDoNotWaitForEachOther() async throws {
        let script = sandbox.script("prepare.sh", "#!/bin/sh\nsleep 1\n")
        let module = try isolator(sandbox, [("isolator_prepare_command", script)])
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: String?.self) { group in
            for i in 0..<8 {
                group.addTask { try await module.prepare(containerID: cid("c\(i)"), containerConfig: "{}") }
            }
            for try await _ in group {}
        }
        let elapsed = ContinuousClock.now - start
        #expect(elapsed < .milliseconds(2500), "8 one-second prepares took \(elapsed)")
        #expect(module.containers.count == 8)
    }

    @Test func aSlowPrepareDoesNotDelayAnotherContainersUsage() async throws {
        let slow = sandbox.script("prepare.sh", "#!/bin/sh\nsleep 2\n")
        let usage = sandbox.script("usage.sh", "#!/bin/sh\necho '{\"cpus_limit\":1}' > \"$2\"\n")
        let module = try isolator(sandbox, [("isolator_prepare_command", slow), ("isolator_usage_command", usage)])
        try module.adopt(containerID: cid("busy"), containerConfig: "{}")
        let prepare = Task { try await module.prepare(containerID: cid("slow"), containerConfig: "{}") }
        try await Task.sleep(for: .milliseconds(100))
        let start = ContinuousClock.now
        _ = try await module.usage(containerID: cid("busy"))
        #expect(ContinuousClock.now - start < .milliseconds(1000))
        _ = try await prepare.value
    }

    @Test func maxInFlightBoundsConcurrentCommands() async throws {
        let script = sandbox.script("prepare.sh", "#!/bin/sh\nsleep 0.3\n")
        let module = try isolator(sandbox, [("isolator_prepare_command", script), ("max_in_flight", "2")])
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: String?.self) { group in
            for i in 0..<4 {
                group.addTask { try await module.prepare(containerID: cid("m\(i)"), containerConfig: "{}") }
            }
            for try await _ in group {}
        }
        #expect(ContinuousClock.now - start >= .milliseconds(600))
    }

    @Test func isolatorSupportsNestedContainerIDs() throws {
        let id = try #require(ContainerID(try JSONValue(parsing: #"{"value":"c","parent":{"value":"b","parent":{"value":"a"}}}"#)))
        #expect(id.description == "a.b.c")
        #expect(ContainerID(id.json) == id)
        #expect(ContainerStateStore.fileName(ContainerID("../etc/passwd")) == "%2E.%2Fetc%2Fpasswd")
    }
}
