/// What a `libmesos_command_modules.so` was built from: the project's version and the Mesos it was built against
/// (an agent refuses a module built for another Mesos). mesos/link-module.sh writes it as text into the library's
/// `.mesos_command_modules` section, so that it can be read without loading the library into an agent
/// (`mesos-command-modules inspect`, `readelf -p .mesos_command_modules`) and by the engine once loaded (its
/// INFO line at load).
public struct BuildIdentity: Sendable, Equatable {
    /// The ELF section that holds the text.
    public static let sectionName = ".mesos_command_modules"
    /// The first line of the text, so that `strings FILE.so | grep -A3` finds it too.
    public static let header = "mesos-command-modules build identity"
    /// What link-module.sh writes for a Mesos field when it links the engine without the Mesos shim.
    public static let none = "none"

    /// The project's version the library was built from (`ProjectVersion.version` then).
    public var version: String
    /// The Mesos version of the headers the shim was compiled with (`MESOS_VERSION`), or `none`.
    public var mesosVersion: String
    /// The Mesos commit, when the build knew it (a git checkout, or `MESOS_COMMIT`); `unknown` otherwise.
    public var mesosCommit: String

    public init(version: String, mesosVersion: String, mesosCommit: String) {
        self.version = version
        self.mesosVersion = mesosVersion
        self.mesosCommit = mesosCommit
    }

    /// Reads the section's text: the header line, then `key=value` lines. Nil if it is not one.
    public init?(text: String) {
        guard text.split(separator: "\n").first == Substring(Self.header) else { return nil }
        let fields = text.keyValueLines
        guard let version = fields["version"] else { return nil }
        self.init(version: version, mesosVersion: fields["mesos_version"] ?? "unknown",
                  mesosCommit: fields["mesos_commit"] ?? "unknown")
    }

    /// The section's text, as link-module.sh writes it.
    public var text: String {
        "\(Self.header)\nversion=\(version)\nmesos_version=\(mesosVersion)\nmesos_commit=\(mesosCommit)\n"
    }

    /// Whether the library holds the Mesos shim (false for the engine linked alone, as CI's C checks do).
    public var isBuiltForMesos: Bool { mesosVersion != Self.none }

    /// "Mesos 1.11.0 (commit 04bc7ee1984d)", or what the library was built for instead.
    public var mesosDescription: String {
        guard isBuiltForMesos else { return "no Mesos (the engine linked without the Mesos shim)" }
        let commit = mesosCommit == "unknown" ? "commit unknown" : "commit \(mesosCommit.prefix(12))"
        return "Mesos \(mesosVersion) (\(commit))"
    }
}

extension ModuleConfiguration {
    /// The one line a module logs when it loads (SPEC §1): the project's version, the Mesos the library was built
    /// for, the module and each event it handles with its mode and rule.
    public func loadedLine(identity: BuildIdentity?) -> String {
        let built = identity.map { "built for \($0.mesosDescription)" } ?? "build identity unknown"
        let events = commands.values.sorted { $0.event.key < $1.event.key }.map { command in
            var how = command.mode.rawValue
            if command.mode == .worker && command.workers > 1 { how += " ×\(command.workers)" }
            if let rule = command.rule { how += ", when \(rule.text)" }
            if let breaker = command.breaker { how += ", \(breaker.summary)" }
            return "\(command.event.key) (\(how))"
        }
        return "mesos-command-modules \(ProjectVersion.version), \(built): \(kind.rawValue) module '\(moduleName)' "
            + "loaded, " + (events.isEmpty ? "no event handled" : "events: " + events.joined(separator: ", "))
    }
}
