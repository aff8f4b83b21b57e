import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §3: what a command writes on stdout and stderr reaches the agent's log, line by line with the event's
/// prefix — as the C++ module's commands wrote into the agent's own output — bounded per run, and the whole
/// capture is attached to a failure.
@Suite struct ScriptOutputTests {
    let sandbox = Sandbox()

    @Test func eachLineOfStdoutAndStderrIsLoggedWithTheEventsPrefix() async throws {
        let log = CapturedLog()
        let script = sandbox.script("chat.sh", "#!/bin/sh\necho 'configuring eth0'\necho 'warning: slow disk' >&2\necho '{}' > \"$2\"\n")
        let module = try isolator(sandbox, [("isolator_prepare_command", script)], log: log)
        _ = try await module.prepare(containerID: cid("c1"), containerConfig: "{}")
        #expect(log.all.contains("info: [TASK=c1, METHOD=prepare] chat.sh: configuring eth0"), "\(log.all)")
        #expect(log.all.contains("info: [TASK=c1, METHOD=prepare] chat.sh: warning: slow disk"), "\(log.all)")
    }

    @Test func aChattyScriptCannotFloodTheLog() async throws {
        let log = CapturedLog()
        let script = sandbox.script("flood.sh", "#!/bin/sh\nseq 1 5000\n")
        let module = try hook(sandbox, [("hook_slave_remove_executor_hook_command", script)], log: log)
        _ = try await module.run(.slaveRemoveExecutorHook, envelope: SampleEnvelopes.envelope(for: .slaveRemoveExecutorHook))
        let lines = log.all.filter { $0.contains("flood.sh: ") }
        #expect(lines.count == EventRunner.consoleLinesLogged + 1)
        #expect(lines.first?.hasSuffix("flood.sh: 1") == true)
        #expect(lines.last?.hasSuffix("flood.sh: … 4900 more line(s) of output not logged") == true, "\(lines.last ?? "")")
    }

    @Test func aFailureStillCarriesTheWholeCapture() async throws {
        let log = CapturedLog()
        let script = sandbox.script("fail.sh", "#!/bin/sh\necho 'step 1 done'\necho 'step 2 failed' >&2\nexit 3\n")
        let module = try isolator(sandbox, [("isolator_prepare_command", script)], log: log)
        _ = await thrownError { try await module.prepare(containerID: cid("c1"), containerConfig: "{}") }
        #expect(log.all.contains("info: [TASK=c1, METHOD=prepare] fail.sh: step 2 failed"))
        #expect(log.all.contains {
            $0.hasPrefix("error: [TASK=c1, METHOD=prepare] Command \"\(script)\" exited with return code 3.")
                && $0.contains("Console output: step 1 done\nstep 2 failed")
        })
    }

    /// A helper a script leaves running in the background lives on (leftover_processes=keep, as with the C++
    /// module) when it redirects its output, as SPEC §3 asks of helpers meant to live on; one that still writes
    /// to its inherited stdout after the event ended finds the pipe closed (EPIPE, or its SIGPIPE): the agent
    /// keeps no fd for it, and the result waits for neither.
    @Test func aBackgroundChildOutlivesItsCommandWithoutHoldingAnFDOfTheAgent() async throws {
        let marker = sandbox.path + "/still-alive"
        let talker = sandbox.path + "/talker"
        let script = sandbox.script("daemon.sh", """
            #!/bin/sh
            (sleep 0.3; echo yes > \(marker)) >/dev/null 2>&1 &
            (sleep 0.3; if echo 'helper still talking'; then echo wrote; else echo refused; fi > \(talker)) 2>/dev/null &
            echo started
            """)
        let fds = openFDCount()
        let module = try isolator(sandbox, [("isolator_prepare_command", script)])
        let start = ContinuousClock.now
        _ = try await module.prepare(containerID: cid("c1"), containerConfig: "{}")
        #expect(ContinuousClock.now - start < .milliseconds(250), "the result does not wait for the helpers")
        #expect(await eventually(within: 3) { sandbox.read(marker) == "yes\n" }, "the quiet helper was not killed")
        // The talker was either told EPIPE or died of SIGPIPE: never did its write succeed into a pipe kept open.
        #expect(await eventually(within: 3) {
            sandbox.read(talker).map { $0 != "wrote\n" } == true && openFDCount() <= fds
        },
                "\(String(describing: sandbox.read(talker)))")
        await expectNothingLeft(fdsBefore: fds, temporaryDirectory: module.temporaryDirectory)
    }
}
