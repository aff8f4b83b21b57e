import Testing

/// SPEC §3: however the engine learns that a command exited — a pidfd, or polling where there is none (kernels
/// before 5.3, or a host that ignores SIGCHLD, whose children the kernel reaps before their pidfd can be opened)
/// —, the event is answered as soon as the command has exited, never only at its deadline. Each case runs
/// thousands of events in a host of its own (`mcm-abi-check exit-notice`), through the C ABI as the agent does;
/// an event still unanswered 1 s after it started (its deadline: 20 s) fails the case at once.
@Suite(.serialized) struct ExitNoticeTests {
    @Test(arguments: ["no-pidfd", "sigchld-ignored"])
    func everyExitIsNoticedAtOnceWhenTheEngineMustPoll(_ mode: String) {
        let (status, output) = runABICheck(["exit-notice", mode, "2000"], timeout: 120)
        #expect(status == 0, "\(output)")
        #expect(output.contains("ok - exit-notice (\(mode)): all 2000 events answered within 1.0 s of their start"),
                "\(output)")
        #expect(output.contains("ok - exit-notice (\(mode)): every answer is the command's failure (0 wrong)"),
                "\(output)")
        if mode == "no-pidfd" {
            #expect(output.contains("ok - exit-notice: pidfd_open fails with ENOSYS"), "\(output)")
        }
    }
}
