import Testing

/// The C ABI (include/mesos_command_modules.h) exercised from a C program linked against the engine, as the
/// Mesos shim uses it: bad parameters, results, errors, async callbacks, cancellation, concurrency, logs,
/// metrics, destroy.
@Suite struct ABITests {
    @Test func theCProgramPassesEveryCheck() {
        let (status, output) = runABICheck(timeout: 120)
        #expect(status == 0, "\(output)")
        #expect(output.contains(" passed, 0 failed"), "\(output)")
        #expect(output.split(separator: "\n").filter { $0.hasPrefix("ok - ") }.count > 35, "\(output)")
        #expect(!output.contains("not ok"), "\(output)")
    }
}

/// SPEC §9 and §3 through the C ABI, as Mesos calls it: a hook's `when` rule is decided on the thread that called
/// the module, never on a thread other modules' events need; an event's timeout counts from Mesos' call.
@Suite struct ABIRuleTests {
    @Test func slowRulesOfOneModuleNeverDelayAnotherModulesEvent() {
        let (status, output) = runABICheck(["rule-starvation"], timeout: 300)
        #expect(status == 0, "\(output)")
        #expect(output.split(separator: "\n").filter { $0.hasPrefix("ok - ") }.count == 2, "\(output)")
    }
}
