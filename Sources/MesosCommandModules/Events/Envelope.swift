/// The JSON object written to a command's input file: the event's Mesos messages under their envelope keys
/// (SPEC §4, §5). Built from JSON fragments — the Mesos shim hands each protobuf already rendered by stout's
/// `JSON::protobuf` — so the common path concatenates text and parses nothing.
public struct Envelope: Sendable {
    /// The members in the order they are written.
    public private(set) var members: [(key: String, json: String)] = []

    public init() {}

    /// An envelope from `(key, JSON text)` pairs.
    public init(_ members: [(key: String, json: String)]) {
        for member in members { set(member.key, json: member.json) }
    }

    /// Splits a whole envelope (e.g. the CLI's `--input` file) into its members.
    public init(parsing text: String) throws(JSONParseError) {
        guard case .object(let members) = try JSONValue(parsing: text) else {
            throw JSONParseError(reason: "an envelope must be a JSON object", offset: 0)
        }
        for member in members { set(member.key, value: member.value) }
    }

    /// Sets `key` to a JSON fragment (replacing an earlier value).
    public mutating func set(_ key: String, json: String) {
        if let index = members.firstIndex(where: { $0.key == key }) {
            members[index].json = json
        } else {
            members.append((key, json))
        }
    }

    public mutating func set(_ key: String, value: JSONValue) { set(key, json: value.jsonText) }

    public mutating func remove(_ key: String) { members.removeAll { $0.key == key } }

    /// The JSON text of `key`, if present.
    public func json(_ key: String) -> String? { members.first { $0.key == key }?.json }

    /// The parsed value of `key`, if present and valid JSON.
    public func value(_ key: String) -> JSONValue? {
        guard let json = json(key) else { return nil }
        return try? JSONValue(parsing: json)
    }

    /// The envelope as one JSON object.
    public var jsonText: String {
        var out = "{"
        for (i, member) in members.enumerated() {
            if i > 0 { out += "," }
            JSONValue.writeString(member.key, to: &out)
            out += ":"
            out += member.json
        }
        return out + "}"
    }
}

extension Envelope {
    /// Who an event is about, for the `[TASK=…]` log prefix: the container, else the executor (as the seed
    /// did), else the task, else the agent.
    var subject: String {
        if let id = value("container_id").flatMap(ContainerID.init) { return id.description }
        if let id = value("executor_info")?["executor_id"]?["value"]?.stringValue { return id }
        if let id = value("task_info")?["task_id"]?["value"]?.stringValue { return id }
        if let id = value("task_status")?["task_id"]?["value"]?.stringValue { return id }
        if let agent = value("slave_info") {
            return agent["id"]?["value"]?.stringValue ?? agent["hostname"]?.stringValue ?? "agent"
        }
        return "-"
    }
}

/// A Mesos `ContainerID`, nested containers included, written as Mesos writes it: `parent.child`.
public struct ContainerID: Sendable, Hashable, CustomStringConvertible {
    /// The ids from the outermost parent to this container.
    public var path: [String]

    public init(_ value: String, parent: ContainerID? = nil) {
        path = (parent?.path ?? []) + [value]
    }

    /// The container of `path`, from the outermost parent to the container itself.
    public init(path: [String]) {
        self.path = path.isEmpty ? [""] : path
    }

    /// Reads the JSON form `{"value": "…", "parent": {…}}`.
    public init?(_ json: JSONValue) {
        var path: [String] = []
        var current: JSONValue? = json
        while let node = current {
            guard let value = node["value"]?.stringValue else { return nil }
            path.insert(value, at: 0)
            current = node["parent"]
            if path.count > 64 { return nil }
        }
        guard !path.isEmpty else { return nil }
        self.path = path
    }

    public var description: String { path.joined(separator: ".") }

    /// The JSON form Mesos uses.
    public var json: JSONValue {
        var value: JSONValue?
        for id in path {
            var members: [(key: String, value: JSONValue)] = [("value", .string(id))]
            if let parent = value { members.append(("parent", parent)) }
            value = .object(members)
        }
        return value!
    }
}
