import CMesosCommandSpawn
import Glibc
import Synchronization

/// The isolator's memory of each container's `container_config` (SPEC §5): kept from `prepare`, persisted as
/// one file per container under `<state_dir>/<module_name>/` — the seed's layout and format (the file is named
/// like Mesos writes the container id and holds the ContainerConfig JSON), so state written by the C++ module
/// is recovered after the `.so` is swapped — and restored by `recover`.
///
/// Writes are atomic and durable: a dot-file beside the target, fsync, rename, fsync of the directory. A reader
/// never sees half a file; a crash leaves at worst a dot-file, which `recover` removes; once `persist` returned,
/// a power loss cannot undo the rename.
///
/// The directory is made and trusted when the module loads (SPEC §3): every directory above it is checked, the
/// missing ones are made (0755; the module's own 0700) and checked again, and `<module_name>/` is opened without
/// following a link and checked (ours, not writable by others). That fd is kept for the module's life: every file
/// is made, read and removed through it — never through a path another user could redirect, nor in a directory
/// another user makes later where one was missing (a `state_dir` under a sticky `/tmp`). A state file that is a
/// symbolic link is refused, never followed nor removed through.
///
/// The `<event>_when` decisions taken at `prepare` live in the same file, so that they survive a restart: the
/// events whose rule did not match are listed under one extra member, `"mesos_command_modules":
/// {"skipped_events": [...]}`, written only when there are some. A file without it (every file the C++ module
/// or an earlier version wrote) means "every event matched". Mesos' JSON parser ignores unknown members, so the
/// file stays a valid ContainerConfig.
final class ContainerStateStore: Sendable {
    struct Record: Sendable {
        var id: ContainerID
        var idJSON: String
        var config: String
        /// The events whose `<event>_when` rule did not match this container, and why: their commands never run
        /// for it.
        var skipped: [Event: String] = [:]
    }

    /// The member of a state file that holds the module's own decisions.
    static let decisionsKey = "mesos_command_modules"

    /// `<state_dir>/<module_name>`.
    let directory: String
    /// Open on `directory` since the module loaded; every state operation goes through it.
    private let directoryFD: Int32
    private let records = Mutex<[String: Record]>([:])

    /// Checks that the directory can be trusted, makes what is missing of it, checks again and opens it (SPEC
    /// §3): a directory that cannot be made or trusted is a load-time error.
    init(stateDirectory: String, moduleName: String) throws(StateError) {
        directory = Self.directory(stateDirectory: stateDirectory, moduleName: moduleName)
        if let distrust = Self.distrust(stateDirectory: stateDirectory, moduleName: moduleName) {
            throw StateError("state_dir \(distrust.message(about: stateDirectory)): \(Self.distrustConsequence)")
        }
        directoryFD = try Self.makeAndOpen(directory)
    }

    deinit { close(directoryFD) }

    static func directory(stateDirectory: String, moduleName: String) -> String {
        stateDirectory.hasSuffix("/") ? stateDirectory + moduleName : stateDirectory + "/" + moduleName
    }

    /// What another user could do with a `state_dir` they can change (SPEC §3).
    static let distrustConsequence = "another user could make the module write or remove files through a link "
        + "of theirs, or plant the state its cleanup commands receive"

    /// Why `<state_dir>/<module_name>` cannot be trusted, or nil: a directory above it belongs to another user
    /// or is writable by others without the sticky bit, or it exists and is a link, another user's, or
    /// writable by others. Nothing is created.
    static func distrust(stateDirectory: String, moduleName: String) -> DirectoryTrust.Distrust? {
        let directory = directory(stateDirectory: stateDirectory, moduleName: moduleName)
        return DirectoryTrust.distrust(ofPath: split(directory).parent)
            ?? DirectoryTrust.distrust(ofOwnDirectory: directory)
    }

    private static func split(_ path: String) -> (parent: String, leaf: String) {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return (".", String(trimmed)) }
        let parent = trimmed[..<slash]
        return (parent.isEmpty ? "/" : String(parent), String(trimmed[trimmed.index(after: slash)...]))
    }

    /// The record of a container, if known.
    func record(_ id: ContainerID) -> Record? { records.withLock { $0[id.description] } }

    var containers: [ContainerID] { records.withLock { $0.values.map(\.id) } }

    /// Remembers a new container; false if it is already known.
    func insertNew(_ record: Record) -> Bool {
        records.withLock { records in
            guard records[record.id.description] == nil else { return false }
            records[record.id.description] = record
            return true
        }
    }

    /// Remembers a container (replacing what was known).
    func put(_ record: Record) { records.withLock { $0[record.id.description] = record } }

    /// Forgets a container in memory and returns what was known.
    func take(_ id: ContainerID) -> Record? { records.withLock { $0.removeValue(forKey: id.description) } }

    // MARK: - Files

    /// A file name for a container id: Mesos ids are `[A-Za-z0-9_.-]`; anything else (a `/`, a leading dot) is
    /// escaped so that no id can name a path outside the directory or collide with a temporary dot-file.
    static func fileName(_ id: ContainerID) -> String {
        var name = ""
        for (i, byte) in id.description.utf8.enumerated() {
            let safe =
                (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x5F || byte == 0x2D || (byte == 0x2E && i > 0)
            if safe {
                name.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                name += "%" + String(byte >> 4, radix: 16, uppercase: true) + String(byte & 15, radix: 16, uppercase: true)
            }
        }
        return name
    }

    func path(_ id: ContainerID) -> String { directory + "/" + Self.fileName(id) }

    /// Writes a container's config atomically and durably. Throws a message naming the path and the cause.
    func persist(_ record: Record) throws(StateError) {
        let name = Self.fileName(record.id)
        let target = directory + "/" + name
        let temporary = "." + name + ".tmp." + String(getpid())
        var fd = mcm_create_file_at(directoryFD, temporary)
        if fd < 0 && errno == EEXIST {
            // Left by a crashed agent whose pid this one reuses.
            unlinkat(directoryFD, temporary, 0)
            fd = mcm_create_file_at(directoryFD, temporary)
        }
        guard fd >= 0 else {
            throw StateError("cannot create '\(directory)/\(temporary)': \(cause(errno))")
        }
        var code = FileIO.writeAll(fd, Array(Self.fileContent(record).utf8))
        if code == 0 && fsync(fd) != 0 { code = errno }
        if close(fd) != 0 && code == 0 { code = errno }
        if code == 0 && renameat(directoryFD, temporary, directoryFD, name) != 0 { code = errno }
        if code != 0 {
            unlinkat(directoryFD, temporary, 0)
            throw StateError("cannot write '\(target)': \(cause(code))")
        }
        // Without it a power loss can keep the fsynced dot-file and lose the rename; recover would then remove it.
        // A file system that cannot fsync a directory (EINVAL, ENOTSUP) makes a rename durable its own way.
        if fsync(directoryFD) != 0 && errno != EINVAL && errno != ENOTSUP {
            let code = errno
            unlinkat(directoryFD, name, 0)
            throw StateError("cannot make '\(target)' durable (fsync of '\(directory)'): \(SystemError.describe(code))")
        }
    }

    /// Removes a container's file (a link is removed, never followed); a missing file is fine.
    func removeFile(_ id: ContainerID) throws(StateError) {
        if unlinkat(directoryFD, Self.fileName(id), 0) != 0 && errno != ENOENT {
            throw StateError("cannot remove '\(path(id))': \(cause(errno))")
        }
    }

    /// Whether the container has a state file (of any kind: a link is there too, and refused by ``load(_:)``).
    func hasFile(_ id: ContainerID) throws(StateError) -> Bool {
        var info = stat()
        return fstatat(directoryFD, Self.fileName(id), &info, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// The state file's text: the ContainerConfig, and the skipped events if any.
    static func fileContent(_ record: Record) -> String {
        guard !record.skipped.isEmpty, let config = try? JSONValue(parsing: record.config) else { return record.config }
        let events = JSONValue.array(record.skipped.keys.map(\.key).sorted().map(JSONValue.string))
        return config.setting(decisionsKey, to: .object([("skipped_events", events)])).jsonText
    }

    /// Reads a container's persisted config and the events skipped for it, checking that it is a JSON object.
    func load(_ id: ContainerID) throws(StateError) -> (config: String, skipped: [Event: String]) {
        let fd = mcm_open_read_at(directoryFD, Self.fileName(id))
        guard fd >= 0 else {
            let code = errno
            var info = stat()
            if code == ELOOP, fstatat(directoryFD, Self.fileName(id), &info, AT_SYMLINK_NOFOLLOW) == 0,
               info.st_mode & S_IFMT == S_IFLNK
            {
                throw StateError("'\(path(id))' is a symbolic link, not a state file: refused (never followed)")
            }
            throw StateError("cannot read '\(path(id))': \(cause(code))")
        }
        defer { close(fd) }
        switch FileIO.read(fd: fd, limit: 64 << 20) {
        case .failed(let code):
            throw StateError("cannot read '\(path(id))': \(SystemError.describe(code))")
        case .tooLarge(let size):
            throw StateError("'\(path(id))' is \(size) bytes, too large to be a ContainerConfig")
        case .bytes(let bytes):
            let value: JSONValue
            do {
                value = try JSONValue(parsing: bytes)
            } catch {
                throw StateError("'\(path(id))' is corrupt: \(error)")
            }
            guard case .object(var members) = value else { throw StateError("'\(path(id))' is corrupt: not a JSON object") }
            var skipped: [Event: String] = [:]
            if let index = members.lastIndex(where: { $0.key == Self.decisionsKey }) {
                for key in members[index].value["skipped_events"]?.arrayValue ?? [] {
                    if let event = key.stringValue.flatMap(Event.init(rawValue:)) {
                        skipped[event] = "its rule did not match when the container was prepared"
                    }
                }
                members.remove(at: index)
            }
            return (JSONValue.object(members).jsonText, skipped)
        }
    }

    /// An entry of the state directory: a state file (or a dot-file of an interrupted write) when `isFile`.
    struct Entry {
        var name: String
        /// A regular file; a link, a directory or anything else is never removed by the module.
        var isFile: Bool
    }

    /// What the state directory holds (empty once it was removed).
    func entries() throws(StateError) -> [Entry] {
        // A fresh open file description: reading a directory moves its offset, which the kept fd must not share.
        let listing = openat(directoryFD, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard listing >= 0 else {
            throw StateError("cannot read the state directory '\(directory)': \(cause(errno))")
        }
        defer { close(listing) }
        return FileIO.entries(fd: listing).map { name in
            var info = stat()
            let isFile = fstatat(directoryFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0 && info.st_mode & S_IFMT == S_IFREG
            return Entry(name: name, isFile: isFile)
        }
    }

    /// Removes a regular file of the state directory (never through a link, never a directory).
    func removeFile(named name: String) throws(StateError) {
        var info = stat()
        guard fstatat(directoryFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & S_IFMT == S_IFREG else { return }
        if unlinkat(directoryFD, name, 0) != 0 && errno != ENOENT {
            throw StateError("cannot remove '\(directory)/\(name)': \(cause(errno))")
        }
    }

    /// The cause of a failed operation in the directory: `code`, or — when the directory itself is gone (an
    /// operator removed it) — that. Nothing is then written elsewhere, even if its path names a directory again.
    private func cause(_ code: Int32) -> String {
        var info = stat()
        guard fstat(directoryFD, &info) == 0, info.st_nlink == 0 else { return SystemError.describe(code) }
        return "the state directory '\(directory)' was removed after the module loaded; nothing is written to "
            + "what is at its path now (restarting the agent makes it again)"
    }

    /// Makes what is missing of `<state_dir>/<module_name>` (0755 above, 0700 for the module's own), checks the
    /// directories above it again — what was made, or what another user made meanwhile under a sticky parent — and
    /// returns an fd on it, opened without following a link at its name and checked (a directory of ours that
    /// others cannot write).
    private static func makeAndOpen(_ directory: String) throws(StateError) -> Int32 {
        let (parent, leaf) = split(directory)
        var built = ""
        for component in parent.split(separator: "/") {
            built += "/" + component
            if mkdir(built, 0o755) != 0 && errno != EEXIST {
                throw StateError("cannot create the state directory '\(built)' (state_dir): \(SystemError.describe(errno))")
            }
        }
        // From here on, no directory above the module's own can be changed by another user.
        if let distrust = DirectoryTrust.distrust(ofPath: parent) {
            throw StateError("state_dir \(distrust.message(about: parent)): \(distrustConsequence)")
        }
        let parentFD = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard parentFD >= 0 else {
            throw StateError("cannot open the state directory '\(parent)' (state_dir): \(SystemError.describe(errno))")
        }
        defer { close(parentFD) }
        if mkdirat(parentFD, leaf, 0o700) != 0 && errno != EEXIST {
            throw StateError("cannot create the state directory '\(directory)' (state_dir): \(SystemError.describe(errno))")
        }
        let fd = openat(parentFD, leaf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        var info = stat()
        guard fd >= 0 else {
            let code = errno
            if fstatat(parentFD, leaf, &info, AT_SYMLINK_NOFOLLOW) == 0,
               let distrust = DirectoryTrust.distrust(of: info, at: directory, own: true)
            {
                throw StateError("the state directory \(distrust.message(about: directory))")
            }
            throw StateError("cannot open the state directory '\(directory)' (state_dir): \(SystemError.describe(code))")
        }
        if fstat(fd, &info) != 0 {
            let code = errno
            close(fd)
            throw StateError("cannot check the state directory '\(directory)': \(SystemError.describe(code))")
        }
        if let distrust = DirectoryTrust.distrust(of: info, at: directory, own: true) {
            close(fd)
            throw StateError("the state directory \(distrust.message(about: directory))")
        }
        return fd
    }
}

/// A state file could not be written, read or removed.
struct StateError: Error, Sendable, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
