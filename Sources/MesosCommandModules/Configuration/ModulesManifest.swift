/// A Mesos modules manifest (`--modules`): `{"libraries":[{"file":…,"modules":[{"name":…,"parameters":[{"key":…,
/// "value":…}]}]}]}`. Only what this project needs is read: the modules and their parameters.
public struct ModulesManifest: Sendable {
    public struct Module: Sendable {
        /// The Mesos module name, e.g. `com_criteo_mesos_CommandHook2`.
        public var name: String
        /// The library file the module is loaded from (`lib<name>.so` for a library given by `name`, as Mesos
        /// expands it).
        public var library: String
        /// Whether the library is given by `name` (found by the dynamic loader) rather than by `file`.
        public var libraryByName = false
        public var parameters: [(key: String, value: String)]

        /// Hook or isolator, if the module is one of ours.
        public var kind: ModuleKind? { ModuleKind(moduleName: name) }

        /// The `module_name` parameter, if set.
        public var moduleName: String? { parameters.last { $0.key == "module_name" }?.value }
    }

    public var modules: [Module]
    /// The directory of the manifest file: the CLI resolves relative command paths against it.
    public var directory: String

    /// Parses a manifest's text. Throws a message naming what is wrong.
    public init(parsing text: String, directory: String) throws(ManifestError) {
        let root: JSONValue
        do {
            root = try JSONValue(parsing: text)
        } catch {
            throw ManifestError("the manifest is not valid JSON: \(error)")
        }
        guard let libraries = root["libraries"]?.arrayValue else {
            throw ManifestError("the manifest has no \"libraries\" array")
        }
        var modules: [Module] = []
        for (l, library) in libraries.enumerated() {
            let libraryName = library["file"] == nil ? library["name"]?.stringValue : nil
            let file = library["file"]?.stringValue ?? libraryName.map { "lib\($0).so" } ?? ""
            for (m, module) in (library["modules"]?.arrayValue ?? []).enumerated() {
                guard let name = module["name"]?.stringValue else {
                    throw ManifestError("libraries[\(l)].modules[\(m)] has no \"name\"")
                }
                var parameters: [(key: String, value: String)] = []
                for (p, parameter) in (module["parameters"]?.arrayValue ?? []).enumerated() {
                    guard let key = parameter["key"]?.stringValue else {
                        throw ManifestError("module \(name): parameters[\(p)] has no string \"key\"")
                    }
                    guard let value = parameter["value"]?.stringValue else {
                        throw ManifestError("module \(name): parameter '\(key)' has no string \"value\"")
                    }
                    parameters.append((key, value))
                }
                modules.append(Module(name: name, library: file, libraryByName: libraryName != nil,
                                      parameters: parameters))
            }
        }
        self.modules = modules
        self.directory = directory
    }

    /// Reads the manifest at `path`.
    public init(contentsOf path: String) throws(ManifestError) {
        guard case .bytes(let bytes) = FileIO.read(path: path, limit: 16 << 20) else {
            throw ManifestError("cannot read the manifest '\(path)'")
        }
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]) } ?? "."
        try self.init(parsing: String(decoding: bytes, as: UTF8.self), directory: directory.isEmpty ? "/" : directory)
    }

    /// Our modules (hooks and isolators), in manifest order.
    public var commandModules: [Module] { modules.filter { $0.kind != nil } }

    /// The module whose `module_name` (or Mesos name) is `name`.
    public func module(named name: String) -> Module? {
        commandModules.first { $0.moduleName == name } ?? commandModules.first { $0.name == name }
    }

    /// The configuration of one of our modules, relative command paths resolved against the manifest.
    public func configuration(of module: Module) throws(ConfigurationError) -> ModuleConfiguration {
        try ModuleConfiguration(kind: module.kind ?? .hook, parameters: module.parameters, baseDirectory: directory)
    }
}

/// A manifest that cannot be read.
public struct ManifestError: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

extension ModuleKind {
    /// The module name of ours closest to `name` and how many edits apart they are, for a did-you-mean.
    public static func closestModuleName(to name: String) -> (name: String, distance: Int) {
        allCases.flatMap(\.moduleNames).map { ($0, ParameterReader.editDistance(name, $0)) }.min { $0.1 < $1.1 }!
    }
}
