import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §3: how a command is run.
@Suite(.serialized) struct CommandRunnerTests {
    @Test func passesArgvAndStdinAsTheSeedDid() async throws {
        let sandbox = Sandbox()
        let script = sandbox.script("args.sh", """
            #!/bin/sh
            { echo "argc=$#"; echo "0=$0"; cat "$1"; echo; cat; } > "$2"
            [ "$3" != "" ] && [ -f "$3" ] && echo ok >> "$2"
            """)
        let runner = try makeRunner(sandbox)
        let run = try await runner.run(script, input: Array(#"{"a":1}"#.utf8), timeout: 5)
        let text = String(decoding: run.output, as: UTF8.self)
        #expect(text == "argc=3\n0=\(script)\n{\"a\":1}\n{\"a\":1}ok\n")
    }

    @Test func temporaryFilesArePrivateAndRemoved() async throws {
        let sandbox = Sandbox()
        let script = sandbox.script("modes.sh", """
            #!/bin/sh
            stat -c '%a' "$(dirname "$1")" "$1" "$2" "$3" > "$2"
            """)
        let runner = try makeRunner(sandbox)
        let run = try await runner.run(script, input: [], timeout: 5)
        #expect(String(decoding: run.output, as: UTF8.self) == "700\n600\n600\n600\n")
        #expect(Sandbox.entries(runner.temporaryDirectory).isEmpty)
    }

    @Test func nonZeroExitQuotesTheErrorFile() async throws {
        let sandbox = Sandbox()
        let script = sandbox.script("fail.sh", "#!/bin/sh\necho 'This is the cause.' > \"$3\"\nexit 3\n")
        let runner = try makeRunner(sandbox)
        await #expect {
            _ = try await runner.run(script, input: [], timeout: 5)
        } throws: { error in
            (error as? CommandError)?.description
                == "Command \"\(script)\" exited with return code 3. Cause: This is the cause."
        }
    }

    @Test func aSleepingScriptTimesOut() async throws {
        let sandbox = Sandbox()
        let script = sandbox.script("sleep.sh", "#!/bin/sh\nsleep 30\n")
        let runner = try makeRunner(sandbox)
        let start = ContinuousClock.now
        await #expect {
            _ = try await runner.run(script, input: [], timeout: 0.5)
        } throws: { error in
            (error as? CommandError)?.description.hasPrefix("Command \"\(script)\" took too long to execute.") == true
        }
        #expect(ContinuousClock.now - start < .seconds(3))
        // The leader is kept as a zombie until the group gets its SIGKILL at the end of the grace period.
        #expect(await eventually(within: 3) { zombieChildren().isEmpty })
    }
}
