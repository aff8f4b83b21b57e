import Glibc

/// The isolator's state on disk (SPEC §5): what `recover` restores and removes, and the CLI's look at one file.
extension IsolatorModule {
    /// `recover`: restores the state of every container Mesos still knows (`states`) and of the `orphans` it
    /// will clean up; a missing or corrupt file is logged and skipped, never fatal. Files of containers Mesos
    /// no longer knows, and temporary files of an interrupted write, are removed. Then runs the recover
    /// command, whose failure is only logged by default.
    ///
    /// - Parameter removeUnknownStateFiles: false leaves the files of containers Mesos no longer knows in place
    ///   and only reports them (the CLI, on a directory an operator named).
    /// - Returns: the state files of containers Mesos no longer knows (removed, unless asked not to).
    @discardableResult
    public func recover(states: String, orphans: String, removeUnknownStateFiles: Bool = true) async throws(EventError)
        -> [String]
    {
        let log = events.log(.recover, "-")
        var known: [String: ContainerID] = [:]
        // A list that cannot be read says nothing about which containers Mesos knows: then no file is removed,
        // or one bad byte would cost every running container its state (and its cleanup command).
        var listsRead = true
        for (name, list) in [("states", states), ("orphans", orphans)] {
            let elements: [JSONValue]
            switch Result(catching: { () throws(JSONParseError) in try JSONValue(parsing: list) }) {
            case .success(.array(let array)):
                elements = array
            case .success:
                log.error("The \(name) Mesos recovers are not a JSON array: no state file is removed")
                listsRead = false
                continue
            case .failure(let error):
                log.error("Cannot read the \(name) Mesos recovers (\(error)): no state file is removed")
                listsRead = false
                continue
            }
            for element in elements {
                // A ContainerState holds its id under container_id; an orphan is the ContainerID itself.
                if let id = ContainerID(element["container_id"] ?? element) { known[ContainerStateStore.fileName(id)] = id }
            }
        }
        for (_, id) in known.sorted(by: { $0.key < $1.key }) where store.record(id) == nil {
            do {
                let (config, skipped) = try store.load(id)
                store.put(.init(id: id, idJSON: id.json.jsonText, config: config, skipped: skipped))
                log.info("Restored the state of container \(id)")
            } catch {
                log.error("Cannot restore the state of container \(id): \(error)")
            }
        }
        let unknown = listsRead ? removeUnknownFiles(known, removing: removeUnknownStateFiles, log) : []
        var envelope = Envelope()
        envelope.set("states", json: states)
        envelope.set("orphans", json: orphans)
        _ = try await runCommand(.recover, envelope, subject: "-")
        return unknown
    }

    /// Removes (or, without `removing`, only lists) the state files of containers Mesos no longer knows and the
    /// dot-files of interrupted writes. A link or a directory is never removed, only logged.
    private func removeUnknownFiles(_ known: [String: ContainerID], removing: Bool, _ log: EventLog) -> [String] {
        let entries: [ContainerStateStore.Entry]
        do {
            entries = try store.entries()
        } catch {
            log.error("Cannot list the state files: \(error)")
            return []
        }
        var unknown: [String] = []
        for entry in entries.sorted(by: { $0.name < $1.name }) where known[entry.name] == nil {
            guard entry.isFile else {
                log.warning("'\(store.directory)/\(entry.name)' is not a regular file, so not a state file: left in place")
                continue
            }
            unknown.append(entry.name)
            let what = entry.name.hasPrefix(".")
                ? "'\(store.directory)/\(entry.name)', left by an interrupted write"
                : "the state of container '\(entry.name)', which Mesos no longer knows"
            guard removing else {
                log.warning("Would remove \(what) (left in place)")
                continue
            }
            do {
                try store.removeFile(named: entry.name)
                log.warning("Removed \(what)")
            } catch {
                log.error("Cannot remove \(what): \(error)")
            }
        }
        return unknown
    }

    /// Loads one container's state from its file, as `recover` would. Returns false when there is no file.
    public func restoreFromStateFile(containerID: String) throws(EventError) -> Bool {
        let id = try parseID(containerID, .recover)
        if store.record(id) != nil { return true }
        do {
            guard try store.hasFile(id) else { return false }
            let (config, skipped) = try store.load(id)
            store.put(.init(id: id, idJSON: containerID, config: config, skipped: skipped))
            return true
        } catch {
            throw EventError(.recover, subject: id.description, refused: error.description)
        }
    }

    /// The path of a container's state file if there is one (a link included: it would be refused, not read).
    public func stateFile(containerID: String) throws(EventError) -> String? {
        let id = try parseID(containerID, .recover)
        do {
            return try store.hasFile(id) ? store.path(id) : nil
        } catch {
            throw EventError(.recover, subject: id.description, refused: error.description)
        }
    }
}
