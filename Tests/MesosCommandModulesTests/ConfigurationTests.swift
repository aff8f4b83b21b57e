import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §1 and §2: loading a module from its manifest parameters.
@Suite struct ConfigurationTests {
    let sandbox = Sandbox()

    func parse(_ parameters: [(String, String)], kind: ModuleKind = .isolator) throws(ConfigurationError)
        -> ModuleConfiguration
    {
        try ModuleConfiguration(kind: kind, parameters: parameters.map { (key: $0.0, value: $0.1) })
    }

    func issues(_ parameters: [(String, String)], kind: ModuleKind = .isolator) -> [ConfigurationIssue] {
        do {
            _ = try parse(parameters, kind: kind)
            return []
        } catch {
            return error.issues
        }
    }

    @Test func theTwentyTwoModuleNamesOfTheSeed() {
        #expect(ModuleKind.hook.moduleNames.count == 11)
        #expect(ModuleKind.isolator.moduleNames.count == 11)
        #expect(ModuleKind(moduleName: "com_criteo_mesos_CommandHook") == .hook)
        #expect(ModuleKind(moduleName: "com_criteo_mesos_CommandHook11") == .hook)
        #expect(ModuleKind(moduleName: "com_criteo_mesos_CommandIsolator7") == .isolator)
        #expect(ModuleKind(moduleName: "com_criteo_mesos_CommandIsolator12") == nil)
        #expect(ModuleKind(moduleName: "com_criteo_mesos_CommandHook1") == nil)
    }

    @Test func moduleNameIsMandatory() {
        let found = issues([("debug", "true")])
        #expect(found.map(\.key) == ["module_name"])
        #expect(found.first?.message == "module_name parameter is mandatory for all defined modules")
    }

    @Test func theSeedDefaults() throws {
        let script = sandbox.script("prepare.sh", "#!/bin/sh\n")
        let configuration = try parse([("module_name", "m"), ("isolator_prepare_command", script)])
        let command = try #require(configuration.command(for: .prepare))
        #expect(command.timeout == 30)
        #expect(command.failurePolicy == .fail)
        #expect(configuration.watchFrequency == 30)
        #expect(configuration.gracePeriod == 1)
        #expect(configuration.stateDirectory == "/var/run/mesos/isolators/command")
        #expect(configuration.debug == false)
        #expect(configuration.command(for: .cleanup) == nil)
    }

    @Test func everyParameterIsRead() throws {
        let script = sandbox.script("watch.sh", "#!/bin/sh\n")
        let configuration = try parse([
            ("module_name", "m"), ("debug", "true"), ("isolator_watch_command", script), ("isolator_watch_timeout", "2.5"),
            ("isolator_watch_frequence", "10"), ("isolator_watch_failure_policy", "fail"), ("grace_period", "0"),
            ("state_dir", "/srv/state"), ("temp_dir", "/srv/tmp"), ("output_max_bytes", "1024"), ("max_in_flight", "3"),
        ])
        #expect(configuration.debug)
        #expect(configuration.command(for: .watch) == CommandConfiguration(event: .watch, path: script, timeout: 2.5, failurePolicy: .fail))
        #expect(configuration.watchFrequency == 10)
        #expect(configuration.gracePeriod == 0)
        #expect(configuration.stateDirectory == "/srv/state")
        #expect(configuration.temporaryDirectory == "/srv/tmp")
        #expect(configuration.outputMaxBytes == 1024)
        #expect(configuration.maxInFlight == 3)
    }

    @Test func frequencyIsAcceptedToo() throws {
        #expect(try parse([("module_name", "m"), ("isolator_watch_frequency", "5")]).watchFrequency == 5)
        #expect(issues([("module_name", "m"), ("isolator_watch_frequency", "5"), ("isolator_watch_frequence", "6")]).count == 1)
    }

    @Test func defaultFailurePoliciesFollowTheTables() {
        #expect(Event.recover.defaultFailurePolicy == .ignore)
        #expect(Event.usage.defaultFailurePolicy == .ignore)
        #expect(Event.status.defaultFailurePolicy == .ignore)
        #expect(Event.watch.defaultFailurePolicy == .ignore)
        #expect(Event.prepare.defaultFailurePolicy == .fail)
        #expect(Event.cleanup.defaultFailurePolicy == .fail)
        #expect(Event.slaveRunTaskLabelDecorator.defaultFailurePolicy == .fail)
    }

    @Test func anUnknownKeyIsAnErrorWithASuggestion() {
        let found = issues([("module_name", "m"), ("isolator_prepar_command", "/bin/true")])
        #expect(found.count == 1)
        #expect(found.first?.key == "isolator_prepar_command")
        #expect(found.first?.message == "unknown parameter (did you mean 'isolator_prepare_command'?)")
        // The seed's examples used the event key alone.
        #expect(issues([("module_name", "m"), ("isolator_cleanup", "/bin/true")]).first?.message
            == "unknown parameter (did you mean 'isolator_cleanup_command'?)")
    }

    @Test func aMissingCommandFileNamesTheKey() {
        let found = issues([("module_name", "m"), ("isolator_prepare_command", sandbox.path + "/nope.sh")])
        #expect(found.map(\.description) == ["parameter 'isolator_prepare_command': '\(sandbox.path)/nope.sh' does not exist"])
    }

    @Test func aNonExecutableCommandNamesTheKey() {
        let script = sandbox.script("plain.sh", "#!/bin/sh\n", mode: 0o644)
        let found = issues([("module_name", "m"), ("hook_slave_remove_executor_hook_command", script)], kind: .hook)
        #expect(found.map(\.description) == ["parameter 'hook_slave_remove_executor_hook_command': '\(script)' is not executable (chmod +x)"])
    }

    @Test func aDirectoryIsNotACommand() {
        let found = issues([("module_name", "m"), ("isolator_prepare_command", sandbox.path)])
        #expect(found.first?.message == "'\(sandbox.path)' is a directory, not an executable file")
    }

    @Test(arguments: ["abc", "-1", "0", "10s", "", "nan", "inf", "1e9"])
    func badSecondsNameTheKey(_ value: String) {
        let found = issues([("module_name", "m"), ("isolator_usage_timeout", value)])
        #expect(found.map(\.key) == ["isolator_usage_timeout"])
    }

    @Test func badCountsBooleansPoliciesAndPaths() {
        let found = issues([
            ("module_name", "m"), ("max_in_flight", "0"), ("output_max_bytes", "lots"), ("debug", "yes"),
            ("isolator_prepare_failure_policy", "retry"), ("state_dir", "relative/dir"),
        ])
        #expect(Set(found.map(\.key)) == ["max_in_flight", "output_max_bytes", "debug", "isolator_prepare_failure_policy", "state_dir"])
    }

    /// SPEC §7: `<event>_workers` is bounded — a load-time error naming the key, never an allocation failure
    /// when the first event starts the pool.
    @Test func workersAreBoundedAtLoadNamingTheKey() throws {
        let script = sandbox.script("w.sh", "#!/bin/sh\n")
        func workers(_ count: String) -> [ConfigurationIssue] {
            issues([("module_name", "m"), ("isolator_usage_command", script), ("isolator_usage_mode", "worker"),
                    ("isolator_usage_workers", count)])
        }
        #expect(workers("1000000000000") == [ConfigurationIssue(
            key: "isolator_usage_workers", message: "'1000000000000' is more than 64, the most worker processes a command may have")])
        #expect(workers("65").map(\.description) == [
            "parameter 'isolator_usage_workers': '65' is more than 64, the most worker processes a command may have"])
        #expect(workers("64").isEmpty)
        #expect(workers("99999999999999999999").map(\.message) == [
            "'99999999999999999999' is more than 64, the most worker processes a command may have"])
        #expect(workers("many").map(\.message) == ["'many' is not a whole number from 1 to 64"])
    }

    /// SPEC §1, issue 19: every number a parameter gives is bounded. Past its bound (the README's table) a value is
    /// a load-time error naming the key and the bound; at the bound it loads. On main, max_in_flight and
    /// output_max_bytes took any Int (an allocation failure, an overflow trap when the first event ran).
    @Test(arguments: [
        ("max_in_flight", "1024", "1025", "is more than 1024, the most commands a module may run at once"),
        ("output_max_bytes", "1073741824", "1073741825",
         "is more than 1073741824, the largest output the module reads into memory"),
        ("isolator_usage_workers", "64", "65", "is more than 64, the most worker processes a command may have"),
        ("isolator_usage_worker_max_events", "1000000000", "1000000001",
         "is more than 1000000000, the most events a worker may serve before it is replaced (unset: no limit)"),
        ("isolator_prepare_timeout", "604800", "604800.5", "is more than 604800 seconds (a week), the most it may be"),
        ("grace_period", "604800", "1e300", "is more than 604800 seconds (a week), the most it may be"),
        ("isolator_watch_frequence", "604800", "inf", "is more than 604800 seconds (a week), the most it may be"),
    ])
    func everyNumberIsBoundedNamingTheKeyAndTheBound(_ key: String, _ bound: String, _ past: String,
                                                     _ message: String) {
        let script = sandbox.script("usage.sh", "#!/bin/sh\n")
        let base = [("module_name", "m"), ("isolator_usage_command", script), ("isolator_usage_mode", "worker")]
        #expect(issues(base + [(key, bound)]).isEmpty)
        for value in [past, "9223372036854775807", "99999999999999999999999"] {
            #expect(issues(base + [(key, value)]).map(\.description) == ["parameter '\(key)': '\(value)' \(message)"])
        }
    }

    /// The audit behind the table above: every key that takes a number refuses one past any sensible bound, with
    /// "more than" and the bound — a key added later without a bound fails here.
    @Test func noNumericKeyTakesAnyNumber() {
        let notNumbers = ["module_name", "debug", "state_dir", "temp_dir", "containment"]
        let notNumberSuffixes = ["_command", "_failure_policy", "_when", "_mode", "_user", "_leftover_processes"]
        for key in ParameterReader.knownKeys where !notNumbers.contains(key)
            && !notNumberSuffixes.contains(where: { key.hasSuffix($0) })
        {
            let kind: ModuleKind = key.hasPrefix("hook_") ? .hook : .isolator
            let found = issues([("module_name", "m"), (key, "9223372036854775807")], kind: kind)
            #expect(found.count == 1 && found[0].key == key && found[0].message.contains("is more than"),
                    "\(key) takes 9223372036854775807: \(found)")
        }
    }

    /// SPEC §1, issue 19: module_name names `<state_dir>/<module_name>`: one path component. On main `..` loaded,
    /// and recover removed the "unknown containers' state files" of state_dir's parent.
    @Test func moduleNameIsOnePathComponent() {
        let accepted = ["netns", "my-isolator", "command_v2", "example.isolator", "A9",
                        String(repeating: "n", count: 128)]
        for name in accepted {
            #expect(issues([("module_name", name)]).isEmpty, "\(name)")
        }
        let component = "module_name names a directory, so it is one path component made of letters (A–Z, a–z), "
            + "digits, '.', '_' and '-'"
        let long = String(repeating: "n", count: 129)
        let refused: [(String, String)] = [
            ("..", "'..' is not a name but a directory ('..' in a path): it would put the state directory above "
                + "state_dir; give a name of letters, digits, '.', '_' or '-'"),
            (".", "'.' is not a name but a directory ('.' in a path): it would put the state directory in state_dir; "
                + "give a name of letters, digits, '.', '_' or '-'"),
            ("../../..", "'../../..' holds '/': " + component),
            ("a\u{0}b", "'a?b' holds U+0: " + component),
            ("my isolator", "'my isolator' holds ' ': " + component),
            ("réseau", "'r?seau' holds U+E9: " + component),
            (long, "'\(long)' is 129 characters long, more than 128, the most a module_name may have"),
        ]
        for (name, message) in refused {
            for kind in ModuleKind.allCases {
                #expect(issues([("module_name", name)], kind: kind)
                    == [ConfigurationIssue(key: "module_name", message: message)])
            }
        }
    }

    @Test func everyProblemIsReportedWithTheModule() {
        do throws(ConfigurationError) {
            _ = try parse([("module_name", "edge"), ("bogus", "1"), ("isolator_usage_timeout", "x")])
            Issue.record("expected an error")
        } catch {
            #expect(error.description.contains("module 'edge': parameter 'bogus': unknown parameter"))
            #expect(error.description.contains("module 'edge': parameter 'isolator_usage_timeout': 'x' is not a number of seconds"))
        }
    }

    @Test func anEmptyCommandMeansNotHandledAsInTheSeed() throws {
        let configuration = try parse([("module_name", "m"), ("isolator_prepare_command", "")])
        #expect(configuration.command(for: .prepare) == nil)
    }

    @Test func aKeyOfTheOtherKindIsAWarningNotAnError() throws {
        let script = sandbox.script("p.sh", "#!/bin/sh\n")
        let configuration = try parse([("module_name", "m"), ("isolator_prepare_command", script)], kind: .hook)
        #expect(configuration.command(for: .prepare) == nil)
        #expect(configuration.warnings.map(\.key) == ["isolator_prepare_command"])
    }

    @Test func relativeCommandPathsResolveAgainstABaseDirectory() throws {
        _ = sandbox.mkdir("scripts")
        sandbox.script("scripts/rel.sh", "#!/bin/sh\n")
        let configuration = try ModuleConfiguration(
            kind: .isolator, parameters: [("module_name", "m"), ("isolator_prepare_command", "scripts/rel.sh")],
            baseDirectory: sandbox.path)
        #expect(configuration.command(for: .prepare)?.path == sandbox.path + "/scripts/rel.sh")
    }

    @Test func aCommandWithoutASlashIsLookedUpInPATHAtLoadTimeAsExecvpDid() throws {
        let bin = sandbox.mkdir("bin")
        sandbox.script("bin/labels-from-path", "#!/bin/sh\n")
        sandbox.script("bin/not-executable", "#!/bin/sh\n", mode: 0o644)
        let saved = getenv("PATH").map { String(cString: $0) }
        setenv("PATH", "\(sandbox.path)/empty:\(bin):/usr/bin:/bin", 1)
        defer { if let saved { setenv("PATH", saved, 1) } }
        let configuration = try parse([
            ("module_name", "m"), ("isolator_prepare_command", "labels-from-path"), ("isolator_usage_command", "true"),
        ])
        #expect(configuration.command(for: .prepare)?.path == bin + "/labels-from-path")
        #expect(configuration.command(for: .usage)?.path == "/usr/bin/true")
        // (The containment note, said on every host, is ContainmentTests'.)
        #expect(configuration.notes.filter { $0.key != "containment" }.map(\.description) == [
            "parameter 'isolator_prepare_command': 'labels-from-path' found in PATH: \(bin)/labels-from-path",
            "parameter 'isolator_usage_command': 'true' found in PATH: /usr/bin/true",
        ])
        // Not found, or found only as a file that cannot be executed: an error naming the key and PATH.
        for name in ["no-such-command-anywhere", "not-executable"] {
            let error = #expect(throws: ConfigurationError.self) { try parse([("module_name", "m"), ("isolator_prepare_command", name)]) }
            #expect(error?.description == "module 'm': parameter 'isolator_prepare_command': '\(name)' was not found in PATH "
                + "(\(sandbox.path)/empty:\(bin):/usr/bin:/bin)")
        }
    }

    @Test func theManifestFormatOfMesos() throws {
        let manifest = try ModulesManifest(parsing: """
            {"libraries":[{"file":"/x/libmesos_command_modules.so","modules":[
              {"name":"com_criteo_mesos_CommandHook","parameters":[{"key":"module_name","value":"h"}]},
              {"name":"org_apache_mesos_Other","parameters":[]},
              {"name":"com_criteo_mesos_CommandIsolator3","parameters":[{"key":"module_name","value":"i"}]}]}]}
            """, directory: "/x")
        #expect(manifest.modules.count == 3)
        #expect(manifest.commandModules.map(\.name) == ["com_criteo_mesos_CommandHook", "com_criteo_mesos_CommandIsolator3"])
        #expect(manifest.module(named: "i")?.kind == .isolator)
        #expect(throws: ManifestError.self) { try ModulesManifest(parsing: "{\"libraries\": 3}", directory: "/") }
    }
}
