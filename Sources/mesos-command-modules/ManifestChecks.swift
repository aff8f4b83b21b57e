import Glibc
import MesosCommandModules

/// What `validate` checks beyond each module's parameters: what makes the agent refuse the whole manifest before
/// any module is created (Mesos' ModuleManager: the library opens, each name is a symbol in it, one name is
/// loaded once with one set of parameters).
enum ManifestChecks {
    /// The error for a module named like ours but not one of the 22 names the library exports; nil if it is
    /// one of ours, or another library's module that does not look like ours.
    static func unknownName(_ module: ModulesManifest.Module, ourLibraries: Set<String>) -> String? {
        guard module.kind == nil else { return nil }
        let name = module.name
        let refusal = "the library exports no such module: the agent refuses to start (Error loading module '\(name)')"
        for kind in ModuleKind.allCases {
            let base = kind.moduleNames[0]
            if name.hasPrefix(base), let number = Int(name.dropFirst(base.count)) {
                return "\(refusal); the numbered copies are \(base)2 … \(base)11 (\(number) is beyond them): "
                    + "give two modules of one kind the same parameters, or split the work across the 11"
            }
        }
        let (closest, distance) = ModuleKind.closestModuleName(to: name)
        let looksLikeOurs = distance <= 3 || name.hasPrefix("com_criteo_mesos_Command")
        guard looksLikeOurs || ourLibraries.contains(module.library) else { return nil }
        return distance <= 3 ? "\(refusal) (did you mean '\(closest)'?)"
            : "\(refusal); it exports com_criteo_mesos_CommandHook … 11 and com_criteo_mesos_CommandIsolator … 11"
    }

    /// The version of the Mesos agent installed here (`mesos-agent --version`), with the path asked; nil if there
    /// is none (validating on a machine without an agent) or it did not say.
    static func installedMesos(agent: String?) -> (path: String, version: String)? {
        let found = ["mesos-agent", "mesos-slave"].lazy.compactMap { name -> String? in
            guard case .found(let path) = ExecutableCheck.lookUp(name) else { return nil }
            return path
        }.first
        guard let path = agent ?? found else { return nil }
        let quoted = "'" + path.replacingOccurrences(of: "'", with: "'\\''") + "'"
        guard let pipe = popen("timeout 20 \(quoted) --version 2>&1", "r") else { return nil }
        var output = ""
        var buffer = [CChar](repeating: 0, count: 512)
        while fgets(&buffer, Int32(buffer.count), pipe) != nil { output += String(cString: buffer) }
        pclose(pipe)
        // "mesos 1.11.0" on the first line.
        let words = output.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard words.count >= 2, words[0] == "mesos" else { return nil }
        return (path, String(words[1]))
    }

    /// Whether two entries have the same parameters in the same order, as Mesos compares them.
    static func sameParameters(_ a: ModulesManifest.Module, _ b: ModulesManifest.Module) -> Bool {
        a.parameters.count == b.parameters.count
            && zip(a.parameters, b.parameters).allSatisfy { $0.key == $1.key && $0.value == $1.value }
    }
}

extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
