import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §3: an operating-system failure fails the event, never the agent, and is never reported as a success.
@Suite(.serialized) struct SystemFailureTests {
    let sandbox = Sandbox()

    /// With SIGCHLD ignored in the host process (inherited from a launcher, or set by a library), the kernel
    /// reaps our children itself and their exit status is lost: that is an error, never a success.
    @Test func anExitStatusThatCannotBeReadIsAnError() async throws {
        let failing = sandbox.script("seven.sh", "#!/bin/sh\nexit 7\n")
        let succeeding = sandbox.script("zero.sh", "#!/bin/sh\necho '{}' > \"$2\"\n")
        let runner = try makeRunner(sandbox)
        let previous = signal(SIGCHLD, SIG_IGN)
        defer { signal(SIGCHLD, previous) }
        for script in [failing, succeeding] {
            let error = await thrownError { try await runner.run(script, input: [], timeout: 5) } as? CommandError
            #expect(error?.code == .statusLost(errno: ECHILD))
            #expect(error?.description == "Command \"\(script)\" ended but its exit status was lost (waitpid: No child "
                + "processes; is SIGCHLD ignored in this process?): it is not reported as a success.")
        }
    }

    /// Out of file descriptors at the first command — at every point of the run: the temporary files, the
    /// event loop's epoll and eventfd, the console pipe, the pidfd — the event fails with a clear message or
    /// succeeds, the agent does not crash, and once fds are back the next event works. Each case runs in a
    /// fresh process (the C ABI check), where the engine's event loop does not exist yet.
    @Test(arguments: 0...9)
    func runningOutOfFileDescriptorsFailsTheEventNotTheAgent(_ free: Int) {
        let (status, output) = runABICheck(["emfile", String(free)], timeout: 60)
        #expect(status == 0, "\(output)")
        #expect(output.contains("ok - out of fds (\(free) free): the event fails with a message or succeeds"), "\(output)")
        #expect(output.contains("ok - out of fds (\(free) free): the next event works once fds are back"), "\(output)")
    }
}
