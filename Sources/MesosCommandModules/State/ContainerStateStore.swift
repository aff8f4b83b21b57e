import Glibc
import Synchronization

/// The isolator's memory of each container's `container_config` (SPEC §5): kept from `prepare`, persisted as
/// one file per container under `<state_dir>/<module_name>/` — the seed's layout and format (the file is named
/// like Mesos writes the container id and holds the ContainerConfig JSON), so state written by the C++ module
/// is recovered after the `.so` is swapped — and restored by `recover`.
///
/// Writes are atomic: a dot-file beside the target, fsync, rename. A reader never sees half a file; a crash
/// leaves at worst a dot-file, which `recover` removes.
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

    let directory: String
    private let records = Mutex<[String: Record]>([:])

    init(stateDirectory: String, moduleName: String) {
        directory = stateDirectory.hasSuffix("/") ? stateDirectory + moduleName : stateDirectory + "/" + moduleName
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

    /// Writes a container's config atomically. Throws a message naming the path and the cause.
    func persist(_ record: Record) throws(StateError) {
        try makeDirectory()
        let target = path(record.id)
        let temporary = directory + "/." + Self.fileName(record.id) + ".tmp." + String(getpid())
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else { throw StateError("cannot create '\(temporary)': \(SystemError.describe(errno))") }
        var code = FileIO.writeAll(fd, Array(Self.fileContent(record).utf8))
        if code == 0 && fsync(fd) != 0 { code = errno }
        if close(fd) != 0 && code == 0 { code = errno }
        if code == 0 && rename(temporary, target) != 0 { code = errno }
        if code != 0 {
            unlink(temporary)
            throw StateError("cannot write '\(target)': \(SystemError.describe(code))")
        }
    }

    /// Removes a container's file; a missing file is fine.
    func removeFile(_ id: ContainerID) throws(StateError) {
        if unlink(path(id)) != 0 && errno != ENOENT {
            throw StateError("cannot remove '\(path(id))': \(SystemError.describe(errno))")
        }
    }

    /// The state file's text: the ContainerConfig, and the skipped events if any.
    static func fileContent(_ record: Record) -> String {
        guard !record.skipped.isEmpty, let config = try? JSONValue(parsing: record.config) else { return record.config }
        let events = JSONValue.array(record.skipped.keys.map(\.key).sorted().map(JSONValue.string))
        return config.setting(decisionsKey, to: .object([("skipped_events", events)])).jsonText
    }

    /// Reads a container's persisted config and the events skipped for it, checking that it is a JSON object.
    func load(_ id: ContainerID) throws(StateError) -> (config: String, skipped: [Event: String]) {
        switch FileIO.read(path: path(id), limit: 64 << 20) {
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

    /// The names of the files in the state directory.
    func fileNames() -> [String] { FileIO.entries(directory) }

    func removeFile(named name: String) { unlink(directory + "/" + name) }

    private func makeDirectory() throws(StateError) {
        var built = ""
        for component in directory.split(separator: "/") {
            built += "/" + component
            if mkdir(built, 0o755) != 0 && errno != EEXIST {
                throw StateError("cannot create the state directory '\(built)' (state_dir): \(SystemError.describe(errno))")
            }
        }
    }
}

/// A state file could not be written, read or removed.
struct StateError: Error, Sendable, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
