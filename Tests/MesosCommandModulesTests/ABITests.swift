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
