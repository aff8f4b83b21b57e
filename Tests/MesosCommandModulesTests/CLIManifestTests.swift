import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §1 through the operator's tool, as a built binary: `validate` says everything that makes the agent refuse a
/// manifest before any module is created (the library, the module names, a name listed twice), and `inspect` /
/// `--version` say what a library and the tool are.
@Suite struct CLIManifestTests {
    let sandbox = Sandbox()

    /// A manifest in the sandbox: one library `file` holding `modules` (name, parameters).
    func manifest(file: String, _ modules: [(String, [(String, String)])]) -> String {
        let entries = modules.map { name, parameters in
            let list = parameters.map { #"{"key":"\#($0.0)","value":"\#($0.1)"}"# }.joined(separator: ",")
            return #"{"name":"\#(name)","parameters":[\#(list)]}"#
        }
        let path = sandbox.path + "/modules.json"
        sandbox.write(path, #"{"libraries":[{"file":"\#(file)","modules":[\#(entries.joined(separator: ","))]}]}"#)
        return path
    }

    /// A shared library built here with the build identity text mesos/link-module.sh writes.
    func library(_ name: String, version: String = ProjectVersion.version, mesos: String, commit: String = "5e79a584") -> String {
        let identity = BuildIdentity(version: version, mesosVersion: mesos, mesosCommit: commit).text
            .replacingAll("\n", with: "\\n")
        let source = sandbox.path + "/\(name).c"
        sandbox.write(source, """
            __attribute__((section(".mesos_command_modules"), used)) const char mcm_build_identity_text[] = "\(identity)";
            int com_criteo_mesos_CommandIsolator;
            """)
        let path = sandbox.path + "/\(name).so"
        #expect(shell("cc -shared -fPIC -o '\(path)' '\(source)'") == 0)
        return path
    }

    @Test func validateRefusesALibraryFileThatDoesNotExist() {
        let path = manifest(file: sandbox.path + "/missing.so", [("com_criteo_mesos_CommandIsolator", [("module_name", "m")])])
        let result = runCLI(["validate", path])
        #expect(result.status == 1)
        #expect(result.stdout.contains("FAIL  library \(sandbox.path)/missing.so\n        error: the file does not exist "
            + "(No such file or directory): the agent refuses to start (Error opening library)"), "\(result.stdout)")
        // Away from the agent, the operator can leave the library out of the check.
        #expect(runCLI(["validate", "--skip-library", path]).status == 0)
    }

    @Test func validateRefusesAMisspeltModuleNameWithASuggestion() {
        let path = manifest(file: "/x.so", [("com_criteo_mesos_CommandIsolater", [("module_name", "m")])])
        let result = runCLI(["validate", "--skip-library", path])
        #expect(result.status == 1)
        #expect(result.stdout.contains("FAIL  com_criteo_mesos_CommandIsolater (library /x.so)\n        error: the library "
            + "exports no such module: the agent refuses to start (Error loading module 'com_criteo_mesos_CommandIsolater') "
            + "(did you mean 'com_criteo_mesos_CommandIsolator'?)"), "\(result.stdout)")
    }

    @Test func validateRefusesANumberedCopyBeyondEleven() {
        let path = manifest(file: "/x.so", [("com_criteo_mesos_CommandIsolator12", [("module_name", "m")]),
                                            ("com_criteo_mesos_CommandHook11", [("module_name", "h")])])
        let result = runCLI(["validate", "--skip-library", path])
        #expect(result.status == 1)
        #expect(result.stdout.contains("FAIL  com_criteo_mesos_CommandIsolator12 (library /x.so)"), "\(result.stdout)")
        #expect(result.stdout.contains("the numbered copies are com_criteo_mesos_CommandIsolator2 … "
            + "com_criteo_mesos_CommandIsolator11 (12 is beyond them)"))
        #expect(result.stdout.contains("ok    com_criteo_mesos_CommandHook11 (module_name 'h')"))
    }

    @Test func validateLeavesOtherLibrariesModulesAlone() {
        let path = sandbox.path + "/two.json"
        sandbox.write(path, """
            {"libraries":[{"file":"/x.so","modules":[{"name":"com_criteo_mesos_CommandHook","parameters":[{"key":"module_name","value":"h"}]}]},
                          {"file":"/other.so","modules":[{"name":"org_apache_mesos_TestHook"}]}]}
            """)
        let result = runCLI(["validate", "--skip-library", path])
        #expect(result.status == 0, "\(result.stdout)")
        #expect(!result.stdout.contains("org_apache_mesos_TestHook"))
    }

    @Test func validateRefusesOneNameListedTwiceWithDifferentParameters() {
        let script = sandbox.script("cleanup.sh", "#!/bin/sh\n")
        let first = [("module_name", "a"), ("isolator_cleanup_command", script)]
        let different = manifest(file: "/x.so", [("com_criteo_mesos_CommandIsolator", first),
                                                 ("com_criteo_mesos_CommandIsolator", [("module_name", "b")])])
        let refused = runCLI(["validate", "--skip-library", different])
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("FAIL  com_criteo_mesos_CommandIsolator (module_name 'b')\n        error: "
            + "com_criteo_mesos_CommandIsolator is listed twice with different parameters: the agent refuses to start "
            + "(A module with same name but different parameters already exists); give the other configuration one of "
            + "com_criteo_mesos_CommandIsolator2 … 11"), "\(refused.stdout)")
        // Mesos loads a name listed twice with the very same parameters once, and says nothing.
        let same = manifest(file: "/x.so", [("com_criteo_mesos_CommandIsolator", first), ("com_criteo_mesos_CommandIsolator", first)])
        let accepted = runCLI(["validate", "--skip-library", same])
        #expect(accepted.status == 0, "\(accepted.stdout)")
        #expect(accepted.stdout.contains("ok    com_criteo_mesos_CommandIsolator (module_name 'a'): listed again with the "
            + "same parameters; the agent loads it once"))
    }

    @Test func validateWarnsAboutACommandRelativeToTheAgentsWorkingDirectory() {
        _ = sandbox.mkdir("scripts")
        sandbox.script("scripts/prepare.sh", "#!/bin/sh\n")
        let path = manifest(file: "/x.so", [("com_criteo_mesos_CommandIsolator", [("module_name", "m"),
            ("isolator_prepare_command", "scripts/prepare.sh")])])
        let result = runCLI(["validate", "--skip-library", path])
        #expect(result.status == 0, "\(result.stdout)")
        #expect(result.stdout.contains("warning: parameter 'isolator_prepare_command': 'scripts/prepare.sh' is relative: "
            + "the agent resolves it against its working directory (this tool against the manifest's); give an absolute path"))
    }

    /// Issue 19: a library built for another Mesos than the installed agent fails validate (exit 1): the systemd
    /// drop-in's validate step must not let an agent start that refuses the module. On main: a warning, exit 0.
    @Test func validateSaysWhichMesosALibraryWasBuiltForAndFailsWhenTheAgentIsAnother() {
        let built = library("libmesos_command_modules", mesos: "1.9.0")
        let agent = sandbox.script("mesos-agent", "#!/bin/sh\n[ \"$1\" = --version ] && echo 'mesos 1.11.0'\n")
        let path = manifest(file: built, [("com_criteo_mesos_CommandIsolator", [("module_name", "m")])])
        let refusal = "FAIL  library \(built): mesos-command-modules \(ProjectVersion.version), built for Mesos 1.9.0 "
            + "(commit 5e79a584)\n        error: built for Mesos 1.9.0, but the installed agent (\(agent)) is Mesos "
            + "1.11.0: that agent refuses it; install the build of this project for Mesos 1.11.0"
        let result = runCLI(["validate", "--mesos-agent", agent, path])
        #expect(result.status == 1, "\(result.stdout)")
        #expect(result.stdout.contains(refusal), "\(result.stdout)")
        // The agent found in PATH, as on an agent host (the systemd drop-in gives no --mesos-agent).
        let bin = sandbox.path + "/bin"
        #expect(shell("mkdir '\(bin)' && mv '\(agent)' '\(bin)/' && cd / && PATH='\(bin):/usr/bin:/bin' '\(cliPath)' "
            + "validate '\(path)' > '\(sandbox.path)/out'") == 1)
        let found = sandbox.read(sandbox.path + "/out") ?? ""
        #expect(found.contains(refusal.replacingAll(agent, with: bin + "/mesos-agent")), "\(found)")
        let sameMesos = runCLI(["validate", "--mesos-agent", agent, manifest(file: library("l2", mesos: "1.11.0"),
            [("com_criteo_mesos_CommandIsolator", [("module_name", "m")])])])
        #expect(sameMesos.status == 0)
        #expect(!sameMesos.stdout.contains("warning"), "\(sameMesos.stdout)")
    }

    @Test func validateRefusesTheEngineLinkedWithoutTheMesosShim() {
        let engine = library("libmcm_engine", mesos: BuildIdentity.none, commit: BuildIdentity.none)
        let result = runCLI(["validate", manifest(file: engine, [("com_criteo_mesos_CommandHook", [("module_name", "h")])])])
        #expect(result.status == 1)
        #expect(result.stdout.contains("error: it holds no Mesos module (the engine linked alone): the agent refuses to start"))
    }

    @Test func inspectPrintsTheBuildIdentityWithoutLoadingTheLibrary() {
        let built = library("libmesos_command_modules", version: "0.9.1", mesos: "1.12.0-dev", commit: "c1b42f79d")
        let result = runCLI(["inspect", built])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "\(built)\n  mesos-command-modules 0.9.1\n  built for Mesos 1.12.0-dev, commit c1b42f79d\n")
    }

    @Test func inspectSaysWhatAFileIsWhenItIsNotOurLibrary() {
        let text = sandbox.path + "/modules.json"
        sandbox.write(text, "{}")
        let other = sandbox.path + "/libother.so"
        #expect(shell("echo 'int f(void) { return 0; }' | cc -shared -fPIC -x c -o '\(other)' -") == 0)
        let result = runCLI(["inspect", text, other, sandbox.path + "/absent.so"])
        #expect(result.status == 1)
        #expect(result.stdout.isEmpty)
        #expect(result.stderr.contains("\(text): not an ELF file (a shared library starts with \\x7fELF)"))
        #expect(result.stderr.contains("\(other): a shared library without a mesos-command-modules build identity "
            + "(no .mesos_command_modules section): not built by this project's mesos/CMakeLists.txt"))
        #expect(result.stderr.contains("\(sandbox.path)/absent.so: cannot open it: No such file or directory"))
    }

    @Test func versionPrintsTheProjectsVersion() {
        let result = runCLI(["--version"])
        #expect(result.status == 0)
        #expect(result.stdout == "mesos-command-modules \(ProjectVersion.version)\n")
        #expect(ProjectVersion.version.split(separator: ".").count == 3, "CMake and Debian read it as X.Y.Z")
    }
}
