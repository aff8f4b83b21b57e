import Testing

@testable import MesosCommandModules

/// SPEC §6 and §7: the operator's tool knows the breaker keys — `validate` accepts and explains them or names the
/// one at fault, `simulate` shows the breaker of each event that has one.
@Suite struct BreakerCLITests {
    let sandbox = Sandbox()
    let key = Event.masterLaunchTaskLabelDecorator.key

    func manifest(_ parameters: [(String, String)]) -> String {
        let list = ([("module_name", "inventory"), ("temp_dir", sandbox.path)] + parameters)
            .map { #"{"key":"\#($0.0)","value":"\#($0.1)"}"# }.joined(separator: ",")
        let path = sandbox.path + "/modules.json"
        sandbox.write(path, #"{"libraries":[{"file":"/nowhere/libmesos_command_modules.so","modules":[{"#
            + #""name":"com_criteo_mesos_CommandHook","parameters":[\#(list)]}]}]}"#)
        return path
    }

    @Test func validateExplainsTheBreakerAndNamesABadKey() {
        let script = sandbox.script("inventory.sh", "#!/bin/sh\nexit 1\n")
        let good = runCLI(["validate", "--skip-library", manifest([
            (key + "_command", script), (key + "_timeout", "2"), (key + "_breaker_failures", "3"),
            (key + "_breaker_seconds", "10"),
        ])])
        #expect(good.status == 0, "\(good)")
        #expect(good.stdout.contains("circuit breaker: after 3 consecutive failure(s), answered at once (on failure: "
            + "fail) for 10 s, then one event runs the command again"), "\(good.stdout)")

        let bad = runCLI(["validate", "--skip-library", manifest([
            (key + "_command", script), (key + "_breaker_failures", "5000"),
        ])])
        #expect(bad.status == 1)
        #expect(bad.stdout.contains("parameter '\(key)_breaker_failures': '5000' is more than 1000"), "\(bad)")
    }

    @Test func simulateShowsTheBreakerOfAnEventThatHasOne() {
        let script = sandbox.script("inventory.sh", "#!/bin/sh\necho down > \"$3\"\nexit 1\n")
        let result = runCLI(["simulate", "--manifest", manifest([
            (key + "_command", script), (key + "_breaker_failures", "1"), (key + "_breaker_seconds", "1.5"),
        ])])
        #expect(result.stdout.contains("inventory.sh (breaker after 1 failure, 1.5 s) ← {"), "\(result.stdout)")
        #expect(result.stdout.contains("breaker OPEN, 0 answered at once"), "\(result.stdout)")
    }
}
