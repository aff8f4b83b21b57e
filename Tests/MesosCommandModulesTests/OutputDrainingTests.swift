import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §3: a command's stdout and stderr are drained from the moment it exists — how much it prints never
/// changes when its event ends — and no child, whatever it writes and however fast, delays another event, a
/// deadline or a kill (SPEC §8: a worker's stderr alike).
@Suite(.serialized) struct OutputDrainingTests {
    let sandbox = Sandbox()

    /// The issue's reproduction: 2000 lines of 100 bytes, then the output file — with the C++ module a
    /// chatty `prepare` worked; it must not wait for its timeout (and fail) here.
    @Test(arguments: [
        ("stdout", 0), ("stdout", 200_000), ("stderr", 200_000), ("stdout", 8 << 20), ("stderr", 8 << 20),
    ])
    func howMuchACommandPrintsNeverMakesItTimeOut(stream: String, bytes: Int) async throws {
        let redirect = stream == "stderr" ? " >&2" : ""
        let script = sandbox.script("chatty.sh", """
            #!/bin/sh
            head -c \(bytes) /dev/zero | tr '\\0' 'x' | fold -w 99\(redirect)
            echo '{"labels":[{"key":"printed","value":"\(bytes)"}]}' > "$2"
            """)
        let log = CapturedLog()
        let module = try hook(sandbox, [
            ("hook_slave_run_task_label_decorator_command", script), ("hook_slave_run_task_label_decorator_timeout", "20"),
        ], log: log)
        let start = ContinuousClock.now
        let output = try await module.run(
            .slaveRunTaskLabelDecorator, envelope: SampleEnvelopes.envelope(for: .slaveRunTaskLabelDecorator))
        #expect(output?.contains(#""value":"\#(bytes)""#) == true, "\(output ?? "nil")")
        #expect(ContinuousClock.now - start < .seconds(15), "it waited for its timeout")
        if bytes > 0 {
            #expect(log.all.contains { $0.contains("chatty.sh: xxxxxxxxxx") })
        }
    }

    /// Output in bursts with pauses, more than a pipe holds each time: the command is never left blocked.
    @Test func aCommandPrintingInBurstsIsDrainedBetweenThem() async throws {
        let script = sandbox.script("bursts.sh", """
            #!/bin/sh
            for i in 1 2 3 4 5; do head -c 300000 /dev/zero | tr '\\0' 'y' | fold -w 99; sleep 0.05; done
            echo '{}' > "$2"
            """)
        let runner = try makeRunner(sandbox)
        let run = try await runner.run(script, input: [], timeout: 20)
        #expect(run.duration < .seconds(10), "\(run.duration)")
        #expect(run.console.hasPrefix("yyyy"))
    }

    /// A background child writing without pause to the stdout of its command while the command runs: other
    /// events are answered, a 1 s timeout fires on time. Once its command has exited, the event's pipe is closed
    /// (SPEC §3 "Containment": no fd of the agent is held by a leftover), and the flood ends there (SIGPIPE).
    @Test func aBackgroundChildFloodingItsOutputDelaysNoOtherEvent() async throws {
        let pidFile = sandbox.path + "/yes.pid"
        let flood = sandbox.script("flood.sh", """
            #!/bin/sh
            yes 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' &
            echo $! > \(pidFile)
            sleep 4
            """)
        let hang = sandbox.script("hang.sh", "#!/bin/sh\nsleep 60\n")
        let quick = sandbox.script("quick.sh", "#!/bin/sh\necho '{}' > \"$2\"\n")
        let flooding = try isolator(sandbox, [("isolator_prepare_command", flood)])
        let event = Task { try await flooding.prepare(containerID: cid("flood"), containerConfig: "{}") }
        #expect(await eventually(within: 3) { sandbox.read(pidFile)?.hasSuffix("\n") == true })
        let yes = try #require(sandbox.read(pidFile).flatMap { pid_t($0.split(separator: "\n").first ?? "") })
        defer { kill(yes, SIGKILL) }
        #expect(processAlive(yes))

        try await expectTheLoopIsResponsive(hang: hang, quick: quick)
        #expect(processAlive(yes), "the flood went on all along")
        _ = try await event.value
        #expect(await eventually(within: 2) { !processAlive(yes) }, "its pipe closed with its event")
    }

    /// A worker whose background child writes without pause to stderr: exec events of other modules are
    /// answered, timeouts fire on time, and stopping the workers stops the worker and its child.
    @Test func aWorkerFloodingStderrFreezesNothing() async throws {
        let pidFile = sandbox.path + "/yes.pid"
        let worker = sandbox.script("worker.sh", """
            #!/bin/bash
            yes x >&2 &
            echo $! > \(pidFile)
            while IFS= read -r request; do
              id=${request#*\\"id\\":}; id=${id%%,*}
              printf '{"id":%s,"output":null}\\n' "$id"
            done
            """)
        let hang = sandbox.script("hang.sh", "#!/bin/sh\nsleep 60\n")
        let quick = sandbox.script("quick.sh", "#!/bin/sh\necho '{}' > \"$2\"\n")
        let log = CapturedLog()
        let module = try isolator(sandbox, [
            ("isolator_usage_command", worker), ("isolator_usage_mode", "worker"), ("grace_period", "0.3"),
        ], log: log)
        try module.adopt(containerID: cid("c1"), containerConfig: "{}")
        _ = try await module.usage(containerID: cid("c1"))
        let yes = try #require(sandbox.read(pidFile).flatMap { pid_t($0.split(separator: "\n").first ?? "") })
        let workerPID = try #require(module.workerPIDs.first)
        try await Task.sleep(for: .milliseconds(200))  // the flood is under way

        try await expectTheLoopIsResponsive(hang: hang, quick: quick)
        // The worker itself still answers.
        _ = try await module.usage(containerID: cid("c1"))
        #expect(log.all.contains { $0.contains("worker.sh: x") })

        let start = ContinuousClock.now
        module.stopWorkers()
        #expect(ContinuousClock.now - start < .seconds(3))
        #expect(await eventually(within: 3) { !processAlive(yes) && !processAlive(workerPID) },
                "the worker and its child are stopped")
        if processAlive(yes) { kill(yes, SIGKILL) }
    }

    /// Another module's quick exec event is answered at once, and a hanging one at its 1 s timeout.
    private func expectTheLoopIsResponsive(hang: String, quick: String) async throws {
        let other = try isolator(sandbox, [
            ("isolator_prepare_command", quick), ("isolator_cleanup_command", hang), ("isolator_cleanup_timeout", "1"),
            ("grace_period", "0.2"),
        ])
        let start = ContinuousClock.now
        _ = try await other.prepare(containerID: cid("other"), containerConfig: "{}")
        #expect(ContinuousClock.now - start < .seconds(3), "a quick event waited \(ContinuousClock.now - start)")
        let timeoutStart = ContinuousClock.now
        let failure = await thrownError { try await other.cleanup(containerID: cid("other")) }
        let took = ContinuousClock.now - timeoutStart
        #expect((failure as? EventError)?.message.contains("took too long to execute. Timeout: 1s.") == true,
                "\(String(describing: failure))")
        #expect(took >= .milliseconds(900) && took < .seconds(4), "the 1 s timeout fired after \(took)")
    }
}
