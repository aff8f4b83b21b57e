import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §7: the operator's tool, tested as a built binary.
@Suite struct CLITests {
    let sandbox = Sandbox()

    /// A manifest in the sandbox with one module of `kind` and `parameters`.
    func manifest(_ parameters: [(String, String)], name: String = "com_criteo_mesos_CommandIsolator") -> String {
        let list = parameters.map { #"{"key":"\#($0.0)","value":"\#($0.1)"}"# }.joined(separator: ",")
        let path = sandbox.path + "/modules.json"
        sandbox.write(path, #"{"libraries":[{"file":"/x.so","modules":[{"name":"\#(name)","parameters":[\#(list)]}]}]}"#)
        return path
    }

    @Test func simulateRunsTheBundledExamples() {
        let result = runCLI(["simulate"])
        #expect(result.status == 0, "\(result.stderr)")
        for event in Event.allCases where event != .slavePostFetchHook {
            #expect(result.stdout.contains("✓  \(event.key)"), "no step for \(event.key)")
        }
        // The example's post-fetch hook runs for nested containers only (hook_slave_post_fetch_hook_when).
        #expect(result.stdout.contains("-  hook_slave_post_fetch_hook: skipped, no process started: "
            + "hook_slave_post_fetch_hook_when 'nested=true' does not hold (nested: 'false')"))
        #expect(result.stdout.contains("✓  container B restored after the restart"))
        #expect(result.stdout.contains("✓  no state file left after cleanup"))
        #expect(result.stdout.contains("{\"message\":\"example limit reached\""))
        #expect(result.stdout.contains("0 failed"))
    }

    @Test func validateAcceptsTheExamples() {
        // The checkout's manifest names the library where the package installs it: not here.
        let result = runCLI(["validate", "--skip-library", "examples/modules.json"])
        #expect(result.status == 0, "\(result.stdout)")
        #expect(result.stdout.contains("ok    com_criteo_mesos_CommandHook (module_name 'example_hook'): 11 command(s)"))
        #expect(result.stdout.contains("ok    com_criteo_mesos_CommandIsolator (module_name 'example_isolator'): 8 command(s)"))
    }

    @Test func validateReportsATypoAndANonExecutableScriptWithModuleAndKey() {
        let plain = sandbox.script("cleanup.sh", "#!/bin/sh\n", mode: 0o644)
        let path = manifest([("module_name", "edge"), ("isolator_prepar_command", "/bin/true"), ("isolator_cleanup_command", plain)])
        let result = runCLI(["validate", path])
        #expect(result.status == 1)
        #expect(result.stdout.contains("FAIL  com_criteo_mesos_CommandIsolator (module_name 'edge')"))
        #expect(result.stdout.contains("error: parameter 'isolator_prepar_command': unknown parameter (did you mean 'isolator_prepare_command'?)"))
        #expect(result.stdout.contains("error: parameter 'isolator_cleanup_command': '\(plain)' is not executable (chmod +x)"))
    }

    @Test func validatePrintsEachRuleAsItUnderstoodIt() {
        let result = runCLI(["validate", "--skip-library", "examples/modules.json"])
        #expect(result.stdout.contains("\n          when label:team~search|ml; role=web\n"), "\(result.stdout)")
        #expect(result.stdout.contains("\n            = runs only when the task's or executor's label 'team' matches "
            + "/search|ml/ and a role (the framework's, or its resources' allocation) is 'web'\n"))
    }

    @Test func runSaysWhenAnEventWasSkippedByItsRuleAndWhy() {
        let script = sandbox.script("usage.sh", "#!/bin/sh\necho '{\"cpus_limit\":1}' > \"$2\"\n")
        let path = manifest([("module_name", "m"), ("isolator_usage_command", script), ("isolator_usage_when", "label:team=ml")])
        let result = runCLI(["run", "isolator_usage", "--manifest", path, "--module", "m"])
        #expect(result.status == 0)
        #expect(result.stderr.contains("skipped: isolator_usage_when 'label:team=ml' does not hold (the task's label 'team': "
            + "'search'; the executor's: absent): the agent would not run the command for this container"), "\(result.stderr)")
        #expect(!result.stdout.contains("cpus_limit"))
    }

    /// `run` of a later event adopts the container without running prepare: prepare's rule decision is not news.
    @Test func runOfALaterEventSaysNothingOfPrepare() {
        let script = sandbox.script("usage.sh", "#!/bin/sh\necho '{\"cpus_limit\":1}' > \"$2\"\n")
        let prepare = sandbox.script("prepare.sh", "#!/bin/sh\n")
        let path = manifest([("module_name", "m"), ("isolator_usage_command", script),
                             ("isolator_prepare_command", prepare), ("isolator_prepare_when", "label:team=ml")])
        let result = runCLI(["run", "isolator_usage", "--manifest", path, "--module", "m"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("cpus_limit"))
        #expect(!(result.stdout + result.stderr).contains("isolator_prepare"), "\(result.stderr)")
    }

    /// The agent restores state without a recover command, and so does the simulation; a prepare skipped by its
    /// rule is shown skipped, for both containers.
    @Test func simulateWithoutARecoverCommandAndWithAPrepareRule() {
        let prepare = sandbox.script("prepare.sh", "#!/bin/sh\necho '{}' > \"$2\"\n")
        let cleanup = sandbox.script("cleanup.sh", "#!/bin/sh\n")
        let path = manifest([("module_name", "m"), ("isolator_prepare_command", prepare),
                             ("isolator_prepare_when", "label:team=ml"), ("isolator_cleanup_command", cleanup)])
        let result = runCLI(["simulate", "--manifest", path])
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("-  isolator_recover: no command; the state files were read"), "\(result.stdout)")
        #expect(result.stdout.contains("✓  container B restored after the restart"), "\(result.stdout)")
        #expect(result.stdout.contains("✓  no state file left after cleanup"), "\(result.stdout)")
        let skips = result.stdout.split(separator: "\n").filter {
            $0.contains("-  isolator_prepare: skipped, no process started: isolator_prepare_when 'label:team=ml'")
        }
        #expect(skips.count == 2, "\(result.stdout)")
        #expect(!result.stdout.contains("✓  isolator_prepare"), "\(result.stdout)")
    }

    /// A failed check of the simulation is marked ✗ where it is listed, and counted.
    @Test func simulateMarksAFailedCheckWhereItIsListed() {
        let prepare = sandbox.script("prepare.sh", "#!/bin/sh\necho '{}' > \"$2\"\n")
        let cleanup = sandbox.script("cleanup.sh", "#!/bin/sh\nexit 4\n")
        let path = manifest([("module_name", "m"), ("isolator_prepare_command", prepare),
                             ("isolator_cleanup_command", cleanup)])
        let result = runCLI(["simulate", "--manifest", path])
        #expect(result.status == 1)
        #expect(result.stdout.contains("✗  isolator_cleanup"), "\(result.stdout)")
        // The failed cleanup keeps B's state for Mesos' retry (SPEC §5): the check after it says so, marked.
        #expect(result.stdout.contains("✗  no state file left after cleanup: NO ("), "\(result.stdout)")
    }

    @Test func validateRefusesTooManyWorkersNamingTheKey() {
        let script = sandbox.script("usage.sh", "#!/bin/sh\n")
        let path = manifest([("module_name", "w"), ("isolator_usage_command", script), ("isolator_usage_mode", "worker"),
                             ("isolator_usage_workers", "1000000000000")])
        let result = runCLI(["validate", path])
        #expect(result.status == 1)
        #expect(result.stdout.contains("error: parameter 'isolator_usage_workers': '1000000000000' is more than 64, the "
            + "most worker processes a command may have"), "\(result.stdout)")
    }

    @Test func validateReportsDuplicateModuleNames() {
        let path = sandbox.path + "/dup.json"
        sandbox.write(path, """
            {"libraries":[{"file":"/x.so","modules":[
              {"name":"com_criteo_mesos_CommandHook","parameters":[{"key":"module_name","value":"a"}]},
              {"name":"com_criteo_mesos_CommandHook2","parameters":[{"key":"module_name","value":"a"}]}]}]}
            """)
        let result = runCLI(["validate", "--skip-library", path])
        #expect(result.status == 1)
        #expect(result.stdout.contains("error: module_name 'a' is already used by com_criteo_mesos_CommandHook: logs, "
            + "metrics and state would mix"), "\(result.stdout)")
    }

    @Test(arguments: Event.allCases)
    func runPrintsWhatEachExampleScriptProduced(_ event: Event) throws {
        let module = event.kind == .hook ? "example_hook" : "example_isolator"
        // The bundled examples' recover and cleanup may run on a sample envelope: they act on nothing.
        let force = event == .recover || event == .cleanup ? ["--force"] : []
        let result = runCLI(["run", event.key, "--manifest", "examples/modules.json", "--module", module] + force)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("\(event.key) took"))
        let expected: String? = switch event {
        case .slaveRunTaskLabelDecorator: #""value": "agent-1.example.com""#
        case .slaveExecutorEnvironmentDecorator: #""name": "DATACENTER""#
        case .masterLaunchTaskLabelDecorator: #""scheduled_by""#
        case .slaveAttributesDecorator: #""eu-west-1a""#
        case .slavePreLaunchDockerTaskExecutorDecorator: #""DOCKER_DECORATED""#
        case .slaveTaskStatusDecorator: #""status_decorated""#
        case .prepare: #""PREPARED_BY""#
        case .usage: #""mem_limit_bytes": 268435456"#
        case .status: #""10.1.2.3""#
        default: nil
        }
        if let expected { #expect(result.stdout.contains(expected), "\(result.stdout)") }
        if event.output == .none || expected == nil && event != .watch && event != .usage {
            #expect(result.stdout.isEmpty || expected != nil)
        }
    }

    @Test func runReportsTheFieldAtFaultAndExitsNonZero() {
        let script = sandbox.script("prepare.sh", "#!/bin/sh\necho '{\"user\": \"app\", \"rootfs\": 4}' > \"$2\"\n")
        let path = manifest([("module_name", "m"), ("isolator_prepare_command", script)])
        let result = runCLI(["run", "isolator_prepare", "--manifest", path, "--module", "m"])
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains("wrote an invalid mesos.slave.ContainerLaunchInfo: field 'rootfs': expected a string, got a number."))
    }

    @Test func runStrictFailsOnFieldsTheAgentWouldIgnore() {
        let script = sandbox.script("env.sh", "#!/bin/sh\necho '{\"variabls\": []}' > \"$2\"\n")
        let path = manifest([("module_name", "h"), ("hook_slave_executor_environment_decorator_command", script)], name: "com_criteo_mesos_CommandHook2")
        let lenient = runCLI(["run", "hook_slave_executor_environment_decorator", "--manifest", path, "--module", "h"])
        #expect(lenient.status == 0)
        #expect(lenient.stderr.contains("mesos.Environment has no field 'variabls'; the agent ignores it"))
        let strict = runCLI(["run", "hook_slave_executor_environment_decorator", "--manifest", path, "--module", "h", "--strict"])
        #expect(strict.status == 1)
    }

    @Test func runUsesTheInputFileAndContainerID() throws {
        let script = sandbox.script("prepare.sh", "#!/bin/sh\ncp \"$1\" \(sandbox.path)/seen.json\n")
        let path = manifest([("module_name", "m"), ("isolator_prepare_command", script)])
        let input = sandbox.path + "/input.json"
        sandbox.write(input, #"{"container_id":{"value":"x"},"container_config":{"directory":"/sandbox","command_info":{}}}"#)
        let result = runCLI(["run", "isolator_prepare", "--manifest", path, "--module", "m", "--input", input, "--container-id", "p.c"])
        #expect(result.status == 0, "\(result.stderr)")
        let seen = try JSONValue(parsing: try #require(sandbox.read(sandbox.path + "/seen.json")))
        #expect(seen["container_id"] == (try JSONValue(parsing: #"{"value":"c","parent":{"value":"p"}}"#)))
        #expect(seen["container_config"]?["directory"] == .string("/sandbox"))
    }

    @Test func runKeepsStateInAGivenStateDirectory() {
        let prepare = sandbox.script("prepare.sh", "#!/bin/sh\n")
        let usage = sandbox.script("usage.sh", "#!/bin/sh\ngrep -q '\"directory\":\"/kept\"' \"$1\" && echo '{\"cpus_limit\":3}' > \"$2\"\n")
        let path = manifest([("module_name", "m"), ("isolator_prepare_command", prepare), ("isolator_usage_command", usage)])
        let state = sandbox.mkdir("state")
        let input = sandbox.path + "/input.json"
        sandbox.write(input, #"{"container_id":{"value":"k"},"container_config":{"directory":"/kept","command_info":{}}}"#)
        let first = runCLI(["run", "isolator_prepare", "--manifest", path, "--module", "m", "--input", input, "--state-dir", state])
        #expect(first.status == 0)
        #expect(Sandbox.entries(state + "/m") == ["k"])
        let second = runCLI(["run", "isolator_usage", "--manifest", path, "--module", "m", "--container-id", "k", "--state-dir", state])
        #expect(second.status == 0, "\(second.stderr)")
        #expect(second.stderr.contains("using the container's state"))
        #expect(second.stdout.contains("\"cpus_limit\": 3"))
    }

    @Test func runRejectsAnEventOfTheOtherKindAndAnUnknownModule() {
        let path = manifest([("module_name", "m")])
        #expect(runCLI(["run", "hook_slave_post_fetch_hook", "--manifest", path, "--module", "m"]).stderr.contains("'m' is an isolator module; hook_slave_post_fetch_hook is a hook event"))
        #expect(runCLI(["run", "isolator_usage", "--manifest", path, "--module", "other"]).stderr.contains("no module 'other'"))
        #expect(runCLI(["run", "isolator_usage", "--manifest", path, "--module", "m"]).stderr.contains("has no isolator_usage_command"))
        #expect(runCLI(["run", "isolator_usge", "--manifest", path, "--module", "m"]).status != 0)
    }

    @Test func eventsPrintsOneJSONDocumentOnStdoutAndTheDescriptionsOnStderr() throws {
        let one = runCLI(["events", "isolator_update"])
        #expect(one.status == 0)
        let envelope = try JSONValue(parsing: one.stdout)
        #expect(envelope.objectMembers?.map(\.key) == Event.update.envelopeKeys)
        #expect(one.stderr.contains("# isolator_update — Mesos Isolator::update"))
        // A script author redirects it to a file and runs a script on it.
        let script = sandbox.script("update.sh", "#!/bin/sh\ngrep -q resource_limits \"$1\"\n")
        #expect(shell("'\(cliPath)' events isolator_update > '\(sandbox.path)/in.json' 2>/dev/null && '\(script)' '\(sandbox.path)/in.json' out err") == 0)

        let all = runCLI(["events"])
        #expect(all.status == 0)
        let document = try JSONValue(parsing: all.stdout)
        #expect(document.objectMembers?.map(\.key) == Event.allCases.map(\.key))
        for event in Event.allCases {
            #expect(all.stderr.contains("# \(event.key) —"))
            #expect(document[event.key]?.objectMembers?.map(\.key).allSatisfy(event.envelopeKeys.contains) == true)
        }
    }

    @Test func aCommandNamedWithoutASlashLoadsValidatesAndRunsFromPATH() throws {
        let path = manifest([("module_name", "h"), ("hook_slave_remove_executor_hook_command", "true")],
                            name: "com_criteo_mesos_CommandHook")
        let validate = runCLI(["validate", "--skip-library", path])
        #expect(validate.status == 0, "\(validate.stdout)")
        #expect(!validate.stdout.contains("relative"), "a name looked up in PATH is not a relative path")
        #expect(validate.stdout.contains("hook_slave_remove_executor_hook → /usr/bin/true"), "\(validate.stdout)")
        #expect(validate.stdout.contains("note: parameter 'hook_slave_remove_executor_hook_command': 'true' found in PATH: /usr/bin/true"))
        let run = runCLI(["run", "hook_slave_remove_executor_hook", "--manifest", path, "--module", "h"])
        #expect(run.status == 0, "\(run.stderr)")
    }

    @Test func validateWarnsWhenAMasterHookMayBlockTheMasterLong() {
        let script = sandbox.script("labels.sh", "#!/bin/sh\n")
        let path = manifest([("module_name", "m"), ("hook_master_launch_task_label_decorator_command", script),
                             ("hook_master_slave_lost_hook_command", script), ("hook_master_slave_lost_hook_timeout", "2")],
                            name: "com_criteo_mesos_CommandHook")
        let result = runCLI(["validate", "--skip-library", path])
        #expect(result.status == 0)
        #expect(result.stdout.contains("warning: parameter 'hook_master_launch_task_label_decorator_timeout': 30s (the default) "
            + "is long for a master hook: the master runs it on its only actor, so every offer, launch and status update of "
            + "the cluster waits up to that long for each task; keep it at 5s or less"), "\(result.stdout)")
        #expect(!result.stdout.contains("hook_master_slave_lost_hook_timeout"))
    }

    /// `run isolator_recover` with an envelope that does not list every live container: on a state directory an
    /// operator named (maybe the agent's own), it removes nothing unless told to.
    @Test func runRecoverNeverDeletesAnOperatorsStateWithoutForce() {
        let script = sandbox.script("recover.sh", "#!/bin/sh\n")
        let path = manifest([("module_name", "m"), ("isolator_recover_command", script)])
        let state = sandbox.mkdir("state")
        _ = sandbox.mkdir("state/m")
        sandbox.write(state + "/m/live-container", "{}")
        let input = sandbox.path + "/input.json"
        sandbox.write(input, #"{"states":[],"orphans":[]}"#)
        let dry = runCLI(["run", "isolator_recover", "--manifest", path, "--module", "m", "--state-dir", state,
                          "--input", input])
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(Sandbox.entries(state + "/m") == ["live-container"])
        #expect(dry.stderr.contains("note: without --force, nothing was removed from \(state)/m; recover would remove the "
            + "state of 1 container(s) the input does not list: live-container"), "\(dry.stderr)")
        let forced = runCLI(["run", "isolator_recover", "--manifest", path, "--module", "m", "--state-dir", state,
                             "--input", input, "--force"])
        #expect(forced.status == 0)
        #expect(Sandbox.entries(state + "/m").isEmpty)
    }

    /// Issue 14: `run isolator_cleanup` on a state directory an operator named (maybe the agent's own) runs the
    /// command with the container's state but removes its file only with --force.
    @Test func runCleanupNeverDeletesAnOperatorsStateWithoutForce() {
        let script = sandbox.script("cleanup.sh", "#!/bin/sh\ncat \"$1\" >> \(sandbox.path)/seen\n")
        let path = manifest([("module_name", "m"), ("isolator_cleanup_command", script)])
        let state = sandbox.mkdir("state")
        _ = sandbox.mkdir("state/m")
        sandbox.write(state + "/m/c-live", #"{"directory":"/live"}"#)
        let input = sandbox.path + "/input.json"
        sandbox.write(input, #"{"container_id":{"value":"c-live"}}"#)
        let arguments = ["run", "isolator_cleanup", "--manifest", path, "--module", "m", "--input", input,
                         "--state-dir", state]
        let dry = runCLI(arguments)
        #expect(dry.status == 0, "\(dry.stderr)")
        #expect(Sandbox.entries(state + "/m") == ["c-live"])
        #expect(dry.stderr.contains("note: without --force, \(state)/m/c-live was left in place; cleanup would remove it"), "\(dry.stderr)")
        #expect(sandbox.read(sandbox.path + "/seen")?.contains(#""directory":"/live""#) == true)
        let forced = runCLI(arguments + ["--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(Sandbox.entries(state + "/m").isEmpty)
    }

    /// `run isolator_prepare` would replace a container's state file: not in a directory an operator named
    /// without --force.
    @Test func runPrepareNeverReplacesAnOperatorsStateWithoutForce() {
        let script = sandbox.script("prepare.sh", "#!/bin/sh\ntouch \(sandbox.path)/prepared\n")
        let path = manifest([("module_name", "m"), ("isolator_prepare_command", script)])
        let state = sandbox.mkdir("state")
        _ = sandbox.mkdir("state/m")
        sandbox.write(state + "/m/c-live", #"{"directory":"/live"}"#)
        let arguments = ["run", "isolator_prepare", "--manifest", path, "--module", "m", "--container-id", "c-live", "--state-dir", state]
        let dry = runCLI(arguments)
        #expect(dry.status == 1)
        #expect(dry.stderr.contains("error: \(state)/m/c-live exists: prepare would replace that container's state; nothing "
            + "was run (--force to replace it)"), "\(dry.stderr)")
        #expect(sandbox.read(state + "/m/c-live") == #"{"directory":"/live"}"#)
        #expect(access(sandbox.path + "/prepared", F_OK) != 0)
        let forced = runCLI(arguments + ["--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(sandbox.read(state + "/m/c-live") != #"{"directory":"/live"}"#)
    }

    /// SPEC §3: `validate` reports a state_dir another user owns as the load does; `run` refuses it too.
    @Test(.enabled(if: geteuid() == 0, "chown needs root"))
    func validateAndRunRefuseAStateDirOfAnotherUser() {
        let (victim, theirs) = sandbox.stateDirOfAnotherUser()
        let script = sandbox.script("recover.sh", "#!/bin/sh\n")
        let path = manifest([("module_name", "m"), ("isolator_recover_command", script), ("state_dir", theirs)])
        let validate = runCLI(["validate", path])
        #expect(validate.status == 1)
        #expect(validate.stdout.contains("error: parameter 'state_dir': '\(theirs)' cannot be trusted: it belongs to uid 65534 "
            + "(nobody), not to root or the agent's user (uid 0)"), "\(validate.stdout)")
        let good = manifest([("module_name", "m"), ("isolator_recover_command", script)])
        let run = runCLI(["run", "isolator_recover", "--manifest", good, "--module", "m", "--state-dir", theirs, "--force"])
        #expect(run.status != 0)
        #expect(run.stderr.contains("state_dir '\(theirs)' cannot be trusted"), "\(run.stderr)")
        #expect(Sandbox.entries(victim) == ["precious"])
    }
}
