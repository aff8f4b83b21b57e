import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §3: how a command is run. Real scripts, real processes.
@Suite struct CommandRunnerTests {
    let sandbox = Sandbox()

    func failure(_ runner: CommandRunner, _ script: String, timeout: Double = 5, input: String = "") async -> CommandError? {
        await thrownError { try await runner.run(script, input: Array(input.utf8), timeout: timeout) } as? CommandError
    }

    @Test func passesArgvAndStdinAsTheSeedDid() async throws {
        let script = sandbox.script("args.sh", """
            #!/bin/sh
            { echo "argc=$#"; echo "0=$0"; cat "$1"; echo; cat; } > "$2"
            [ "$3" != "" ] && [ -f "$3" ] && echo ok >> "$2"
            """)
        let run = try await makeRunner(sandbox).run(script, input: Array(#"{"a":1}"#.utf8), timeout: 5)
        #expect(String(decoding: run.output, as: UTF8.self) == "argc=3\n0=\(script)\n{\"a\":1}\n{\"a\":1}ok\n")
    }

    @Test func noShellIsInvolved() async throws {
        // A path with a space and a quote runs as one argv[0]; a shell would split it.
        let script = sandbox.script("it's a script.sh", "#!/bin/sh\necho -n ran > \"$2\"\n")
        let run = try await makeRunner(sandbox).run(script, input: [], timeout: 5)
        #expect(run.output == Array("ran".utf8))
    }

    @Test func temporaryFilesArePrivateAndRemoved() async throws {
        let script = sandbox.script("modes.sh", "#!/bin/sh\nstat -c '%a' \"$(dirname \"$1\")\" \"$1\" \"$2\" \"$3\" > \"$2\"\n")
        let runner = try makeRunner(sandbox)
        let run = try await runner.run(script, input: [], timeout: 5)
        #expect(String(decoding: run.output, as: UTF8.self) == "700\n600\n600\n600\n")
        #expect(Sandbox.runFiles(runner.temporaryDirectory).isEmpty)
        let failing = sandbox.script("fails.sh", "#!/bin/sh\nexit 1\n")
        _ = await failure(runner, failing)
        #expect(Sandbox.runFiles(runner.temporaryDirectory).isEmpty)
    }

    @Test func theCommandInheritsNoFileDescriptorOfTheAgent() async throws {
        // An fd of "the agent" opened without O_CLOEXEC must not reach the command anyway.
        let marker = sandbox.path + "/agent-secret"
        sandbox.write(marker, "x")
        let leaked = open(marker, O_RDONLY)
        defer { close(leaked) }
        let script = sandbox.script("fds.sh", "#!/bin/sh\nexec find /proc/self/fd -mindepth 1 -maxdepth 1 -printf '%f %l\\n' > \"$2\"\n")
        let run = try await makeRunner(sandbox).run(script, input: [], timeout: 5)
        let lines = String(decoding: run.output, as: UTF8.self).split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("0 ") } && lines.contains { $0.hasPrefix("2 pipe:") })
        // Above 2, only what find itself opened (its working directory, /proc): no file, pipe, socket, epoll
        // or pidfd of the agent.
        let above2 = lines.filter { Int($0.prefix { $0 != " " }) ?? 0 > 2 }
        #expect(above2.allSatisfy { !$0.contains("agent-secret") && $0.split(separator: " ").last?.hasPrefix("/") == true },
                "\(above2)")
    }

    @Test(arguments: [1, 2, 127, 255])
    func nonZeroExitQuotesTheErrorFile(_ code: Int) async throws {
        let script = sandbox.script("fail\(code).sh", "#!/bin/sh\necho 'This is the cause.' > \"$3\"\nexit \(code)\n")
        let error = await failure(try makeRunner(sandbox), script)
        #expect(error?.description == "Command \"\(script)\" exited with return code \(code). Cause: This is the cause.")
    }

    @Test func noCauseWithoutAnErrorFile() async throws {
        let script = sandbox.script("fail.sh", "#!/bin/sh\nexit 2\n")
        #expect(await failure(try makeRunner(sandbox), script)?.description == "Command \"\(script)\" exited with return code 2.")
    }

    @Test(arguments: [SIGKILL, SIGSEGV])
    func killedByASignal(_ signal: Int32) async throws {
        let script = sandbox.script("signal\(signal).sh", "#!/bin/sh\necho boom > \"$3\"\nkill -\(signal) $$\n")
        let error = await failure(try makeRunner(sandbox), script)
        #expect(error?.description == "Command \"\(script)\" exited via signal \(signal). Cause: boom")
    }

    @Test func aSleepingScriptTimesOut() async throws {
        let script = sandbox.script("sleep.sh", "#!/bin/sh\nsleep 30\n")
        let start = ContinuousClock.now
        let error = await failure(try makeRunner(sandbox), script, timeout: 0.5)
        #expect(error?.description == "Command \"\(script)\" took too long to execute. Timeout: 0.5s.")
        #expect(error?.isTimeout == true)
        #expect(ContinuousClock.now - start < .seconds(3))
        // The leader is kept as a zombie until the group gets its SIGKILL at the end of the grace period.
        #expect(await eventually(within: 3) { zombieChildren().isEmpty })
    }

    @Test func aScriptTrappingSIGTERMIsKilledAfterTheGracePeriod() async throws {
        let pidFile = sandbox.path + "/trap.pid"
        let script = sandbox.script("trap.sh", """
            #!/bin/bash
            trap 'echo "got TERM"' TERM
            echo $$ > \(pidFile)
            while true; do sleep 0.05; done
            """)
        let start = ContinuousClock.now
        let error = await failure(try makeRunner(sandbox, grace: 0.5), script, timeout: 0.5)
        let elapsed = ContinuousClock.now - start
        #expect(error?.isTimeout == true)
        #expect(elapsed >= .milliseconds(900) && elapsed < .seconds(3))
        #expect(error?.console.contains("got TERM") == true)
        let pid = pid_t(sandbox.read(pidFile)?.trimmingWhitespace ?? "") ?? 0
        #expect(pid > 0 && !processAlive(pid))
    }

    @Test func aGrandchildIgnoringSIGTERMIsKilledWithTheGroup() async throws {
        let pidFile = sandbox.path + "/grandchild.pid"
        let script = sandbox.script("grandchild.sh", """
            #!/bin/bash
            bash -c 'trap "" TERM; echo $$ > \(pidFile); while true; do sleep 0.05; done' &
            sleep 30
            """)
        let error = await failure(try makeRunner(sandbox, grace: 0.5), script, timeout: 0.5)
        #expect(error?.isTimeout == true)
        let pid = pid_t(sandbox.read(pidFile)?.trimmingWhitespace ?? "") ?? 0
        #expect(pid > 0)
        #expect(await eventually(within: 3) { !processAlive(pid) })
    }

    @Test func aBackgroundChildHoldingStdoutDoesNotDelayTheResult() async throws {
        let pidFile = sandbox.path + "/bg.pid"
        let script = sandbox.script("background.sh", """
            #!/bin/sh
            sh -c 'echo $$ > \(pidFile); exec sleep 20' &
            echo '{"labels":[]}' > "$2"
            exit 0
            """)
        let start = ContinuousClock.now
        let run = try await makeRunner(sandbox).run(script, input: [], timeout: 10)
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(String(decoding: run.output, as: UTF8.self) == "{\"labels\":[]}\n")
        if let pid = pid_t(sandbox.read(pidFile)?.trimmingWhitespace ?? "") { kill(pid, SIGKILL) }
    }

    @Test func aMissingCommand() async throws {
        let error = await failure(try makeRunner(sandbox), sandbox.path + "/missing.sh")
        #expect(error?.description == "Error launching external command \"\(sandbox.path)/missing.sh\": No such file or directory (no such file)")
    }

    @Test func aNonExecutableCommand() async throws {
        let script = sandbox.script("plain.sh", "#!/bin/sh\n", mode: 0o644)
        let error = await failure(try makeRunner(sandbox), script)
        #expect(error?.description == "Error launching external command \"\(script)\": Permission denied (not executable, or a directory)")
    }

    @Test func aDirectoryAsCommand() async throws {
        let error = await failure(try makeRunner(sandbox), sandbox.mkdir("dir"))
        #expect(error?.code == .cannotStart(errno: EACCES))
    }

    @Test func aBadInterpreterLine() async throws {
        let script = sandbox.script("badinterp.sh", "#!/nonexistent/interpreter\n")
        let error = await failure(try makeRunner(sandbox), script)
        #expect(error?.description.hasSuffix("its #! interpreter line names a program that does not exist)") == true)
    }

    @Test func outputLargerThanTheCapIsAnError() async throws {
        let script = sandbox.script("big.sh", "#!/bin/sh\nhead -c 2048 /dev/zero > \"$2\"\n")
        let error = await failure(try makeRunner(sandbox, outputMax: 1024), script)
        #expect(error?.description == "Command \"\(script)\" wrote 2048 bytes of output, more than output_max_bytes (1024).")
    }

    @Test func consoleOutputIsCapturedAndBounded() async throws {
        let script = sandbox.script("noisy.sh", "#!/bin/sh\necho to-stdout\necho to-stderr >&2\nhead -c 200000 /dev/zero | tr '\\0' x\nexit 1\n")
        let error = await failure(try makeRunner(sandbox), script)
        #expect(error?.console.hasPrefix("to-stdout\nto-stderr\nxxx") == true)
        #expect(error?.console.contains("bytes dropped)") == true)
        #expect((error?.console.utf8.count ?? 0) < CommandRunner.consoleLimit + 100)
    }

    @Test func cancellingTheTaskStopsTheCommand() async throws {
        let pidFile = sandbox.path + "/cancel.pid"
        let script = sandbox.script("cancel.sh", "#!/bin/sh\necho $$ > \(pidFile)\nexec sleep 30\n")
        let runner = try makeRunner(sandbox, grace: 0.2)
        let task = Task { try await runner.run(script, input: [], timeout: 30) }
        #expect(await eventually(within: 3) { sandbox.read(pidFile)?.isEmpty == false })
        task.cancel()
        let error = await thrownError { try await task.value } as? CommandError
        #expect(error?.code == .cancelled)
        let pid = pid_t(sandbox.read(pidFile)?.trimmingWhitespace ?? "") ?? 0
        #expect(await eventually(within: 3) { !processAlive(pid) })
    }

    /// SPEC §3: a private directory of an earlier instance is removed only when its `instance` record proves that
    /// instance gone (the proof of worker records: boot, pid namespace, pid, start time).
    @Test func theDirectoryOfACrashedAgentIsRemovedAtStartAndNoOtherOne() throws {
        let here = try #require(ProcessIdentity.Maker.current)
        func made(_ name: String, by maker: ProcessIdentity.Maker?) -> String {
            let dir = sandbox.mkdir(name)
            chmod(dir, 0o700)
            if let maker { sandbox.write(dir + "/instance", maker.text) }
            return dir
        }
        func maker(pid: pid_t, start: UInt64, namespace: String = ProcessIdentity.pidNamespace,
                   boot: String = ProcessIdentity.bootID) -> ProcessIdentity.Maker {
            ProcessIdentity.Maker(bootID: boot, namespace: namespace, pid: pid, startTime: start)
        }
        // A process of this namespace that no longer exists (pid 2^22 + 1 is above pid_max's default range of
        // live pids here), with a file its command left.
        let dead = made("mesos-command-modules.test.4194305.AbCdEf", by: maker(pid: 4194305, start: 1))
        sandbox.write(dead + "/in.123456", "{}")
        // This process's pid, but another start time: a crashed agent's whose pid was reused (a pid namespace).
        let reused = made("mesos-command-modules.test.\(getpid()).XyZxYz", by: maker(pid: getpid(), start: 1))
        // Another boot's.
        let earlierBoot = made("mesos-command-modules.test.7.BoOtBo", by: maker(pid: 7, start: 1, boot: "another-boot"))
        // A live process (pid 1, its real start time); this very process (another module of it).
        let alive = made("mesos-command-modules.test.1.XyZxYz",
                         by: maker(pid: 1, start: ProcessIdentity.status(of: 1)?.startTime ?? 0))
        let mine = made("mesos-command-modules.test.\(getpid()).MiNeMi", by: here)
        // Another pid namespace's (its pid means nothing here), and one without a record (being made, or of an
        // older version): nothing proves them gone.
        let otherNamespace = made("mesos-command-modules.test.4194305.NsNsNs", by: maker(pid: 4194305, start: 1, namespace: "0:1"))
        let unproven = made("mesos-command-modules.test.4194306.NoNoNo", by: nil)
        // A directory of that name that is not private (not made by a module) is not ours to remove.
        let notPrivate = sandbox.mkdir("mesos-command-modules.test.4194306.AbCdEf")
        sandbox.write(notPrivate + "/instance", maker(pid: 4194306, start: 1).text)
        let other = made("mesos-command-modules.other.4194305.AbCdEf", by: maker(pid: 4194305, start: 1))
        let runner = try makeRunner(sandbox)
        #expect(access(dead, F_OK) != 0)
        #expect(access(reused, F_OK) != 0)
        #expect(access(earlierBoot, F_OK) != 0)
        for kept in [alive, mine, otherNamespace, unproven, notPrivate] { #expect(access(kept, F_OK) == 0, "\(kept)") }
        #expect(access(other, F_OK) == 0)  // another module's: not ours to judge
        #expect(runner.temporaryDirectory.hasPrefix(sandbox.path + "/mesos-command-modules.test.\(getpid())."))
        #expect(sandbox.read(runner.temporaryDirectory + "/instance") == here.text)
    }

    @Test func aCommandThatRemovesTheTemporaryDirectoryFailsAndTheNextRunGetsAFreshOne() async throws {
        let runner = try makeRunner(sandbox)
        let first = runner.temporaryDirectory
        let script = sandbox.script("rmdir.sh", "#!/bin/sh\nrm -rf \"$(dirname \"$1\")\"\n")
        let error = await failure(runner, script, timeout: 5)
        #expect(error?.description == "Command \"\(script)\" left no readable output file: No such file or directory.")
        let ok = sandbox.script("ok.sh", "#!/bin/sh\necho -n '{}' > \"$2\"\n")
        #expect(try await runner.run(ok, input: [], timeout: 5).output == Array("{}".utf8))
        #expect(runner.temporaryDirectory != first)
    }
}
