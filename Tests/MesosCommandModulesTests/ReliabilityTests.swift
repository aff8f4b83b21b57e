import Glibc
import Testing

@testable import MesosCommandModules

/// Hostile scripts run through the engine: each failure names the command, the event and the cause, returns
/// within its time bound, and leaves no fd, temporary file or zombie behind.
@Suite struct ReliabilityTests {
    let sandbox = Sandbox()

    /// Runs `script` as the prepare command of a fresh isolator and returns the event's error, if any.
    func prepare(_ script: String, _ extra: [(String, String)] = [], container: String = "c1") async throws
        -> (error: EventError?, result: String?, module: IsolatorModule)
    {
        let module = try isolator(sandbox, [("isolator_prepare_command", script)] + extra)
        do {
            let result = try await module.prepare(containerID: cid(container), containerConfig: "{}")
            return (nil, result, module)
        } catch {
            return (error, nil, module)
        }
    }

    func expectFailure(_ body: String, message: String, within seconds: Double = 5, extra: [(String, String)] = [],
                       sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let script = sandbox.script("script-\(UInt32.random(in: 0...UInt32.max))", body)
        let fds = openFDCount()
        let start = ContinuousClock.now
        let (error, _, module) = try await prepare(script, extra)
        #expect(ContinuousClock.now - start < .milliseconds(Int(seconds * 1000)), sourceLocation: sourceLocation)
        let expected = "[TASK=c1, METHOD=prepare] " + message.replacingAll("SCRIPT", with: script)
        #expect(error?.description == expected, sourceLocation: sourceLocation)
        await expectNothingLeft(fdsBefore: fds, temporaryDirectory: module.temporaryDirectory, sourceLocation: sourceLocation)
    }

    // MARK: - Commands that cannot start

    @Test func missingDirectoryNotExecutableBadInterpreter() async throws {
        let fds = openFDCount()
        let cases: [(String, String)] = [
            (sandbox.path + "/missing.sh", "No such file or directory (no such file)"),
            (sandbox.mkdir("dir"), "Permission denied (not executable, or a directory)"),
            (sandbox.script("plain.sh", "#!/bin/sh\n", mode: 0o644), "Permission denied (not executable, or a directory)"),
            (sandbox.script("interp.sh", "#!/no/such/interpreter\n"),
             "No such file or directory (the file exists: its #! interpreter line names a program that does not exist)"),
        ]
        // The configuration refuses them at load time; an agent whose file disappears later still gets a clean
        // error per event.
        let module = try isolator(sandbox, [])
        let runner = module.events
        for (path, cause) in cases {
            let command = CommandConfiguration(event: .prepare, path: path)
            let error = await thrownError { try await runner.run(command, envelope: Envelope(), subject: "c1") } as? EventError
            #expect(error?.description == "[TASK=c1, METHOD=prepare] Error launching external command \"\(path)\": \(cause)")
        }
        await expectNothingLeft(fdsBefore: fds, temporaryDirectory: module.temporaryDirectory)
    }

    // MARK: - Exit codes and signals

    @Test(arguments: [1, 2, 127, 255])
    func exitCodesWithAndWithoutCause(_ code: Int) async throws {
        try await expectFailure("#!/bin/sh\nexit \(code)\n", message: "Command \"SCRIPT\" exited with return code \(code).")
        try await expectFailure("#!/bin/sh\nprintf 'disk full\\n' > \"$3\"\nexit \(code)\n",
                                message: "Command \"SCRIPT\" exited with return code \(code). Cause: disk full")
    }

    @Test func killedBySIGKILLAndSIGSEGV() async throws {
        try await expectFailure("#!/bin/sh\nkill -KILL $$\n", message: "Command \"SCRIPT\" exited via signal 9.")
        try await expectFailure("#!/bin/sh\necho segfault > \"$3\"\nkill -SEGV $$\n",
                                message: "Command \"SCRIPT\" exited via signal 11. Cause: segfault")
    }

    // MARK: - Scripts that do not end

    @Test func sleepsForever() async throws {
        try await expectFailure("#!/bin/sh\nwhile true; do sleep 1; done\n",
                                message: "Command \"SCRIPT\" took too long to execute. Timeout: 0.5s.",
                                within: 0.5 + 1 + 2, extra: [("isolator_prepare_timeout", "0.5")])
    }

    @Test func trapsSIGTERMAndKeepsRunning() async throws {
        try await expectFailure("#!/bin/bash\ntrap '' TERM\nwhile true; do sleep 0.1; done\n",
                                message: "Command \"SCRIPT\" took too long to execute. Timeout: 0.5s.",
                                within: 0.5 + 0.5 + 2, extra: [("isolator_prepare_timeout", "0.5"), ("grace_period", "0.5")])
    }

    @Test func aGrandchildHoldingStdoutAndStderrAfterTheScriptExits() async throws {
        let pidFile = sandbox.path + "/holder.pid"
        let script = sandbox.script("holder.sh", """
            #!/bin/sh
            sh -c 'echo $$ > \(pidFile); exec sleep 30' &
            echo '{"user":"app"}' > "$2"
            """)
        let fds = openFDCount()
        let start = ContinuousClock.now
        let (error, result, module) = try await prepare(script)
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(error == nil && result == #"{"user":"app"}"#)
        #expect(Sandbox.runFiles(module.temporaryDirectory).isEmpty)
        // The holder keeps the pipe (and so the module's end of it) until it ends.
        #expect(await eventually(within: 3) { sandbox.read(pidFile)?.isEmpty == false })
        if let pid = pid_t(sandbox.read(pidFile)?.trimmingWhitespace ?? "") { kill(pid, SIGKILL) }
        await expectNothingLeft(fdsBefore: fds, temporaryDirectory: module.temporaryDirectory)
    }

    @Test func aGrandchildIgnoringSIGTERMDiesWithTheGroup() async throws {
        let pidFile = sandbox.path + "/stubborn.pid"
        let body = "#!/bin/bash\nbash -c 'trap \"\" TERM; echo $$ > \(pidFile); while true; do sleep 0.1; done' &\nwait\n"
        try await expectFailure(body, message: "Command \"SCRIPT\" took too long to execute. Timeout: 0.5s.",
                                within: 0.5 + 0.5 + 2, extra: [("isolator_prepare_timeout", "0.5"), ("grace_period", "0.5")])
        let pid = pid_t(sandbox.read(pidFile)?.trimmingWhitespace ?? "") ?? 0
        #expect(pid > 0)
        #expect(await eventually(within: 3) { !processAlive(pid) })
    }

    // MARK: - Bad output

    @Test func malformedJSON() async throws {
        try await expectFailure("#!/bin/sh\necho '{\"rootfs\" \"/x\"}' > \"$2\"\n",
                                message: "Command \"SCRIPT\" wrote malformed JSON: expected ':' after key \"rootfs\" at byte 10.")
    }

    @Test func jsonOfTheWrongShape() async throws {
        try await expectFailure("#!/bin/sh\necho '[1, 2]' > \"$2\"\n",
                                message: "Command \"SCRIPT\" wrote an invalid mesos.slave.ContainerLaunchInfo: expected a JSON object (mesos.slave.ContainerLaunchInfo), got an array.")
    }

    @Test func anEmptyObjectWhereAMessageWithRequiredFieldsIsExpected() async throws {
        let script = sandbox.script("resources.sh", "#!/bin/sh\necho '[{}]' > \"$2\"\n")
        let module = try hook(sandbox, [("hook_slave_resources_decorator_command", script)])
        let error = await thrownError {
            try await module.run(.slaveResourcesDecorator, envelope: SampleEnvelopes.envelope(for: .slaveResourcesDecorator))
        } as? EventError
        #expect(error?.description == "[TASK=d3f6a9e2-1b7c-4c2e-8f4a-5e9b0c7d1a23-S0, METHOD=slaveResourcesDecorator] "
            + "Command \"\(script)\" wrote an invalid array of mesos.Resource: field '[0].name': missing required field "
            + "'name' of mesos.Resource; field '[0].type': missing required field 'type' of mesos.Resource.")
    }

    @Test func aOneGigabyteOutputFileIsRefusedWithoutReadingIt() async throws {
        let rss = residentBytes()
        try await expectFailure("#!/bin/sh\ntruncate -s 1G \"$2\"\n",
                                message: "Command \"SCRIPT\" wrote 1073741824 bytes of output, more than output_max_bytes (8388608).")
        #expect(residentBytes() - rss < 64 << 20)
    }

    @Test func invalidUTF8Output() async throws {
        try await expectFailure("#!/bin/sh\nprintf '{\"user\":\"\\377\\376\"}' > \"$2\"\n",
                                message: "Command \"SCRIPT\" wrote malformed JSON: invalid UTF-8 in a string at byte 9.")
    }

    // MARK: - Scripts that play with their files

    @Test func deletesItsOwnFilesOrTheWholeDirectory() async throws {
        try await expectFailure("#!/bin/sh\nrm -f \"$1\" \"$2\" \"$3\"\n",
                                message: "Command \"SCRIPT\" left no readable output file: No such file or directory.")
        try await expectFailure("#!/bin/sh\nrm -rf \"$(dirname \"$1\")\"\n",
                                message: "Command \"SCRIPT\" left no readable output file: No such file or directory.")
        // Without output to read (cleanup), deleting them is harmless.
        let script = sandbox.script("rm.sh", "#!/bin/sh\nrm -rf \"$(dirname \"$1\")\"\n")
        let module = try isolator(sandbox, [("isolator_cleanup_command", script)])
        try module.adopt(containerID: cid("c1"), containerConfig: "{}")
        try await module.cleanup(containerID: cid("c1"))
        #expect(Sandbox.runFiles(module.temporaryDirectory).isEmpty)
    }

    @Test func readsStdinToTheEndOrClosesIt() async throws {
        let reader = sandbox.script("stdin.sh", "#!/bin/sh\ncat > /dev/null\ncmp - \"$1\" < \"$1\" && echo '{\"user\":\"read\"}' > \"$2\"\n")
        #expect(try await prepare(reader).result == #"{"user":"read"}"#)
        let closer = sandbox.script("close.sh", "#!/bin/sh\nexec 0<&-\necho '{\"user\":\"closed\"}' > \"$2\"\n")
        #expect(try await prepare(closer, container: "c2").result == #"{"user":"closed"}"#)
    }

    @Test func writesItsOutputThenExitsNonZero() async throws {
        try await expectFailure("#!/bin/sh\necho '{\"user\":\"x\"}' > \"$2\"\nexit 3\n",
                                message: "Command \"SCRIPT\" exited with return code 3.")
    }
}
