import Glibc

/// `<event>_user` (SPEC §3 "Least privilege"): resolved at load, and checked there against what the user must be
/// able to reach, so that a command that could never run as that user stops the module at load, naming the key,
/// rather than failing at every event.
extension ParameterReader {
    /// The user of `event`'s command, if `<event>_user` names one (empty: the agent's user).
    mutating func user(_ event: Event) -> CommandUser? {
        let key = event.key + "_user"
        guard let given = values[key] else { return nil }
        let text = String(given.trimmingWhitespace)
        guard !text.isEmpty else { return nil }
        switch CommandUser.resolve(text) {
        case .failure(let problem):
            error(key, problem.description)
            return nil
        case .success(let user):
            if geteuid() != 0 && user.uid != geteuid() {
                error(key, "'\(text)': the module runs as uid \(geteuid()), not as root: it can run commands as no "
                    + "other user than its own")
                return nil
            }
            return user
        }
    }

    /// Each command's user can run its command; in exec mode, it can reach `temp_dir`, where its input, output
    /// and error files are made. Events sharing a worker agree on its user.
    mutating func checkUsers(_ configuration: ModuleConfiguration) {
        let commands = configuration.commands.values.sorted { $0.event.key < $1.event.key }
        for command in commands {
            guard let user = command.user else { continue }
            let key = command.event.key + "_user"
            if let why = user.cannotAccess(command.path, X_OK) ?? (Self.isScript(command.path)
                ? user.cannotAccess(command.path, R_OK) : nil)
            {
                error(key, "\(user.name) cannot run '\(command.path)': \(why); let them read and execute it and "
                    + "search the directories above it")
            }
            if command.mode == .exec, let (path, why) = unreachable(configuration.temporaryDirectory, by: user) {
                error(key, "\(user.name) cannot reach temp_dir '\(configuration.temporaryDirectory)', where the "
                    + "input, output and error files of their commands are made: '\(path)': \(why); let others "
                    + "search it and the directories above it (chmod o+x), or choose another temp_dir")
            }
        }
        let shared = Dictionary(grouping: commands.filter { $0.mode == .worker }, by: \.path)
        for (_, group) in shared where group.count > 1 {
            let first = group[0]
            for other in group.dropFirst() where other.user != first.user {
                error(other.event.key + "_user",
                      "\(other.user?.name ?? "the agent's user") differs from \(first.event.key)_user "
                        + "(\(first.user?.name ?? "the agent's user")), and both events share the worker '\(first.path)'")
            }
        }
    }

    /// The directory on the way to `temp_dir` that `user` cannot search, and why; nil if there is none. A
    /// directory the module makes is made searchable by others (0711) when a command runs as another user,
    /// and so is the default temp_dir, the module's own: what exists above them is checked.
    func unreachable(_ temporaryDirectory: String, by user: CommandUser) -> (String, String)? {
        var path = temporaryDirectory
        var info = stat()
        func parent(_ path: String) -> String {
            let components = path.split(separator: "/").dropLast()
            return components.isEmpty ? "/" : "/" + components.joined(separator: "/")
        }
        if TemporaryArea.isModulesOwn(path) { path = parent(path) }
        while path != "/" && stat(path, &info) != 0 { path = parent(path) }
        return user.cannotAccess(path, X_OK).map { (path, $0) }
    }

    /// Whether `path` begins with `#!` (its interpreter must read it).
    static func isScript(_ path: String) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var head: [UInt8] = [0, 0]
        return Glibc.read(fd, &head, 2) == 2 && head == [0x23, 0x21]
    }
}
