import Glibc
import Testing

@testable import MesosCommandModules

/// Issue 19: what `validate` and `run` refuse, through the built binary.
extension CLITests {
    /// SPEC §1: a number past its bound is refused by `validate` and by the load (`run`), with the key and the bound.
    /// On main both manifests passed `validate`, then `run` aborted: "failed to allocate 9223372036854775839 bytes"
    /// (rc 134), and an arithmetic overflow trap in WorkerPool (rc 132).
    @Test func aNumberPastItsBoundIsRefusedByValidateAndTheLoadNotACrash() {
        let prepare = sandbox.script("prepare.sh", "#!/bin/sh\n")
        let usage = sandbox.script("usage.sh", "#!/bin/sh\nwhile read -r line; do :; done\n")
        let cases: [(event: String, parameters: [(String, String)], error: String)] = [
            ("isolator_prepare", [("max_in_flight", "9223372036854775807"), ("isolator_prepare_command", prepare)],
             "parameter 'max_in_flight': '9223372036854775807' is more than 1024, the most commands a module may run "
                + "at once"),
            ("isolator_usage", [("output_max_bytes", "9223372036854775807"), ("isolator_usage_command", usage),
                                ("isolator_usage_mode", "worker")],
             "parameter 'output_max_bytes': '9223372036854775807' is more than 1073741824, the largest output the "
                + "module reads into memory"),
        ]
        for (event, parameters, error) in cases {
            let path = manifest([("module_name", "m")] + parameters)
            let validate = runCLI(["validate", "--skip-library", path])
            #expect(validate.status == 1, "\(validate.stdout)")
            let report = "FAIL  com_criteo_mesos_CommandIsolator (module_name 'm')\n        error: \(error)"
            #expect(validate.stdout.contains(report), "\(validate.stdout)")
            let run = runCLI(["run", event, "--manifest", path, "--module", "m"])
            #expect(run.status == 1, "\(run.stderr)")
            #expect(run.stderr.contains("module 'm': \(error)"), "\(run.stderr)")
        }
    }

    /// SPEC §1: module_name is one path component. On main `module_name=..` passed `validate`, and
    /// `run isolator_recover --force` removed the files beside state_dir as "containers Mesos no longer knows".
    @Test func aModuleNameThatLeavesTheStateDirectoryIsRefusedAndNothingIsRemoved() {
        let script = sandbox.script("recover.sh", "#!/bin/sh\n")
        let path = manifest([("module_name", ".."), ("isolator_recover_command", script)])
        let state = sandbox.mkdir("state")
        sandbox.write(sandbox.path + "/app.conf", "precious")
        let validate = runCLI(["validate", "--skip-library", path])
        #expect(validate.status == 1)
        #expect(validate.stdout.contains("FAIL  com_criteo_mesos_CommandIsolator (module_name '..')\n        error: "
            + "parameter 'module_name': '..' is not a name but a directory ('..' in a path): it would put the state "
            + "directory above state_dir"), "\(validate.stdout)")
        let run = runCLI(["run", "isolator_recover", "--manifest", path, "--module", "..", "--state-dir", state,
                          "--force"])
        #expect(run.status == 1)
        #expect(run.stderr.contains("module '..': parameter 'module_name': '..' is not a name"), "\(run.stderr)")
        #expect(sandbox.read(sandbox.path + "/app.conf") == "precious")
    }
}

extension CLITests {
    /// Issue 19: `run isolator_recover` and `run isolator_cleanup` never run the operator's command on a sample
    /// envelope unasked — a recover script that collects what it is not told about would act on every live
    /// container. On main both ran the command (exit 0); now they need --input or --force.
    @Test func runRecoverAndCleanupNeedARealEnvelopeOrForce() {
        let ran = sandbox.path + "/ran"
        let recover = sandbox.script("recover.sh", "#!/bin/sh\necho recover >> \(ran)\n")
        let cleanup = sandbox.script("cleanup.sh", "#!/bin/sh\necho cleanup >> \(ran)\n")
        let path = manifest([("module_name", "m"), ("isolator_recover_command", recover),
                             ("isolator_cleanup_command", cleanup)])
        let refusals = [
            (["isolator_recover"], "error: isolator_recover would run the module's real command (\(recover)) with a "
                + "sample envelope that lists none of this host's containers: a recover command that cleans up the "
                + "containers it is not given would act on every live one; nothing was run. Give --input with a real "
                + "envelope (`mesos-command-modules events isolator_recover` prints the format), or --force to run "
                + "it on the sample anyway"),
            (["isolator_cleanup", "--container-id", "c-live"], "error: isolator_cleanup would run the module's real "
                + "command (\(cleanup)) on a sample container with the id 'c-live': a cleanup command tears down what "
                + "it finds for that container id, maybe a live container's; nothing was run. Give --input with a "
                + "real envelope (`mesos-command-modules events isolator_cleanup` prints the format), or --force to "
                + "run it on the sample anyway"),
        ]
        for (arguments, refusal) in refusals {
            let refused = runCLI(["run"] + arguments + ["--manifest", path, "--module", "m"])
            #expect(refused.status == 1)
            #expect(refused.stderr.contains(refusal), "\(refused.stderr)")
            #expect(sandbox.read(ran) == nil, "the command ran")
        }
        let recoverInput = sandbox.path + "/recover.json"
        sandbox.write(recoverInput, #"{"states":[],"orphans":[]}"#)
        let cleanupInput = sandbox.path + "/cleanup.json"
        sandbox.write(cleanupInput, #"{"container_id":{"value":"c-gone"}}"#)
        for arguments in [["isolator_recover", "--input", recoverInput], ["isolator_cleanup", "--input", cleanupInput],
                          ["isolator_recover", "--force"], ["isolator_cleanup", "--force"]] {
            let result = runCLI(["run"] + arguments + ["--manifest", path, "--module", "m"])
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
        }
        #expect(sandbox.read(ran) == "recover\ncleanup\nrecover\ncleanup\n")
    }
}
