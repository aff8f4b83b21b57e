import ArgumentParser
import MesosCommandModules

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check every com_criteo_mesos_Command* module of a Mesos modules manifest.",
        discussion: """
            Reports each problem with its module and key: unknown keys (typos), missing or non-executable \
            command files, bad numbers, a missing module_name. Exits 1 if any module would fail to load.
            """)

    @Argument(help: "The modules manifest (the agent's --modules file).")
    var manifest: String

    func run() throws {
        let manifest = try loadManifest(manifest)
        let modules = manifest.commandModules
        guard !modules.isEmpty else {
            printError("\(self.manifest): no com_criteo_mesos_CommandHook* or com_criteo_mesos_CommandIsolator* module")
            throw ExitCode(1)
        }
        var failed = false
        var seenNames: [String: String] = [:]
        var seenModuleNames: [String: String] = [:]
        for module in modules {
            let label = "\(module.name) (module_name \(module.moduleName.map { "'\($0)'" } ?? "missing"))"
            var problems: [String] = []
            var warnings: [String] = []
            if let other = seenNames[module.name] {
                problems.append("the module name \(module.name) is used twice (\(other)); Mesos loads a name once — use \(module.name)2 … 11")
            }
            seenNames[module.name] = label
            if let name = module.moduleName, let other = seenModuleNames[name] {
                problems.append("module_name '\(name)' is already used by \(other): logs, metrics and state would mix")
            }
            if let name = module.moduleName { seenModuleNames[name] = module.name }
            do {
                let configuration = try manifest.configuration(of: module)
                warnings += configuration.warnings.map(\.description)
                let commands = configuration.commands.values.sorted { $0.event.key < $1.event.key }
                for parameter in module.parameters where parameter.key.hasSuffix("_command") && !parameter.value.isEmpty
                    && !parameter.value.hasPrefix("/")
                {
                    warnings.append("parameter '\(parameter.key)': '\(parameter.value)' is relative: the agent resolves it against its working directory (this tool against the manifest's)")
                }
                if problems.isEmpty {
                    print("ok    \(label): \(commands.count) command(s)")
                    for command in commands {
                        print("        \(command.event.key) → \(command.path) (timeout \(command.timeout)s, on failure: \(command.failurePolicy.rawValue))")
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
        if failed { throw ExitCode(1) }
    }
}
