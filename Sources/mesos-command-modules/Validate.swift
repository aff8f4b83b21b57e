import ArgumentParser
import Glibc
import MesosCommandModules

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every com_criteo_mesos_Command* module of a Mesos modules manifest.",
        discussion: """
            Reports what would stop the agent, with its module and key: a library file that does not exist, a \
            module name the library does not export (a typo, or a numbered copy beyond 11), one module name \
            listed twice with different parameters, a library built for another Mesos than the installed \
            agent's, unknown keys (typos), missing or non-executable command files, numbers past their bounds, a \
            missing or malformed module_name. Warns about what works differently than it reads: a path \
            relative to the agent's working directory. Exits 1 if the agent would refuse the manifest or a \
            module would fail to load.
            """)

    @Argument(help: "The modules manifest (the agent's --modules file).")
    var manifest: String

    @Flag(help: "Do not look at the library files (when checking a manifest away from the agent).")
    var skipLibrary = false

    @Option(help: ArgumentHelp(
        "The agent whose Mesos version each library must be built for.",
        discussion: "Default: mesos-agent (or mesos-slave) in PATH, if any; without one, the version is not compared."))
    var mesosAgent: String?

    func run() throws {
        let manifest = try loadManifest(manifest)
        let ours = Set(manifest.modules.filter { $0.kind != nil || $0.library.hasSuffix("libmesos_command_modules.so") }
            .map(\.library))
        let unknown = manifest.modules.compactMap { module in
            ManifestChecks.unknownName(module, ourLibraries: ours).map { (module, $0) }
        }
        guard !manifest.commandModules.isEmpty || !unknown.isEmpty else {
            printError("\(self.manifest): no com_criteo_mesos_CommandHook* or com_criteo_mesos_CommandIsolator* module")
            throw ExitCode(1)
        }
        var failed = skipLibrary ? false : checkLibraries(ours.sorted())
        for (module, error) in unknown {
            print("FAIL  \(module.name) (library \(module.library))")
            print("        error: \(error)")
            failed = true
        }
        if checkModules(manifest) { failed = true }
        if failed { throw ExitCode(1) }
    }

    /// Prints one report per library; true if the agent would refuse one.
    func checkLibraries(_ libraries: [String]) -> Bool {
        var failed = false
        var installed: (path: String, version: String)??
        for library in libraries {
            var errors: [String] = []
            var warnings: [String] = []
            var summary = ""
            if !library.hasPrefix("/") {
                warnings.append(library.contains("/")
                    ? "the path is relative: the agent opens it from its working directory; give an absolute path"
                    : "no '/': the agent has the dynamic loader look for it (LD_LIBRARY_PATH, ld.so.conf); not checked")
            } else if access(library, F_OK) != 0 {
                errors.append("the file does not exist (\(String(cString: strerror(errno)))): the agent refuses to "
                    + "start (Error opening library); install the package, or give --skip-library away from the agent")
            } else {
                switch LibraryReport(path: library) {
                case .unidentified(let cause):
                    warnings.append(cause)
                case .identified(let identity, let needed):
                    summary = ": mesos-command-modules \(identity.version), built for \(identity.mesosDescription)"
                    if !needed.isEmpty { summary += ", needs \(needed.joined(separator: ", "))" }
                    if !identity.isBuiltForMesos {
                        errors.append("it holds no Mesos module (the engine linked alone): the agent refuses to start")
                    }
                    if identity.version != ProjectVersion.version {
                        let this = ProjectVersion.version
                        warnings.append("built from mesos-command-modules \(identity.version); this tool is \(this) "
                            + "and checks the parameters as \(this) reads them")
                    }
                    if installed == nil { installed = .some(ManifestChecks.installedMesos(agent: mesosAgent)) }
                    if identity.isBuiltForMesos, let agent = installed ?? nil, agent.version != identity.mesosVersion {
                        errors.append("built for Mesos \(identity.mesosVersion), but the installed agent "
                            + "(\(agent.path)) is Mesos \(agent.version): that agent refuses it; install the build of "
                            + "this project for Mesos \(agent.version)")
                    }
                }
            }
            print("\(errors.isEmpty ? "ok  " : "FAIL")  library \(library)\(summary)")
            for error in errors { print("        error: \(error)") }
            for warning in warnings { print("        warning: \(warning)") }
            if !errors.isEmpty { failed = true }
        }
        return failed
    }

    /// Prints one report per module of ours; true if one would fail to load, or the agent refuse the manifest.
    func checkModules(_ manifest: ModulesManifest) -> Bool {
        var failed = false
        var seen: [String: ModulesManifest.Module] = [:]
        var seenModuleNames: [String: String] = [:]
        for module in manifest.commandModules {
            let label = "\(module.name) (module_name \(module.moduleName.map { "'\($0)'" } ?? "missing"))"
            var problems: [String] = []
            var warnings: [String] = []
            if let other = seen[module.name] {
                if other.library != module.library {
                    problems.append("\(module.name) is listed in two libraries (\(other.library) and "
                        + "\(module.library)): the agent refuses to start")
                } else if ManifestChecks.sameParameters(other, module) {
                    print("ok    \(label): listed again with the same parameters; the agent loads it once")
                    continue
                } else {
                    problems.append("\(module.name) is listed twice with different parameters: the agent refuses to "
                        + "start (A module with same name but different parameters already exists); give the other "
                        + "configuration one of \(module.name.trimmingDigits)2 … 11")
                }
            }
            seen[module.name] = module
            if let name = module.moduleName, let other = seenModuleNames[name] {
                problems.append("module_name '\(name)' is already used by \(other): logs, metrics and state would mix")
            }
            if let name = module.moduleName { seenModuleNames[name] = module.name }
            do {
                let configuration = try manifest.configuration(of: module)
                warnings += configuration.warnings.map(\.description)
                let commands = configuration.commands.values.sorted { $0.event.key < $1.event.key }
                for parameter in module.parameters where parameter.key.hasSuffix("_command")
                    && parameter.value.contains("/") && !parameter.value.hasPrefix("/")
                {
                    warnings.append("parameter '\(parameter.key)': '\(parameter.value)' is relative: the agent "
                        + "resolves it against its working directory (this tool against the manifest's); give an "
                        + "absolute path")
                }
                if problems.isEmpty {
                    print("ok    \(label): \(commands.count) command(s)")
                    for command in commands {
                        print("        \(command.event.key) → \(command.path) (timeout \(command.timeout)s, on failure: "
                            + "\(command.failurePolicy.rawValue)\(command.user.map { ", as \($0)" } ?? ""))")
                        if let breaker = command.breaker {
                            print("          circuit breaker: after \(breaker.failures) consecutive failure(s), answered "
                                + "at once (on failure: \(command.failurePolicy.rawValue)) for "
                                + "\(breaker.coolDown), then one event runs the command again")
                        }
                        if let rule = command.rule {
                            print("          when \(rule.text)")
                            print("            = runs only when \(rule.reading)")
                        }
                    }
                    for note in configuration.notes { print("        note: \(note)") }
                }
            } catch {
                problems += error.issues.map(\.description)
            }
            if !problems.isEmpty {
                failed = true
                print("FAIL  \(label)")
                for problem in problems { print("        error: \(problem)") }
            }
            for warning in warnings { print("        warning: \(warning)") }
        }
        return failed
    }
}

extension String {
    /// The name without its trailing number: com_criteo_mesos_CommandHook for com_criteo_mesos_CommandHook2.
    var trimmingDigits: String {
        var name = self
        while name.last?.isNumber == true { name.removeLast() }
        return name
    }
}
