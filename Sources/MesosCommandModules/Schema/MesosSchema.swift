/// The field tables of the Mesos messages commands produce, and a checker that judges a command's JSON output
/// the way stout's `protobuf::parse` will in the agent — so the CLI reports, before deployment, the mistakes the
/// agent would reject, and the engine names the field at fault instead of a bare "parse error".
///
/// What the agent rejects (an ``SchemaIssue/Severity/error``): a JSON type a field cannot take, a missing
/// required field, an unknown name for a required enum, a bytes field that is not base64. What it silently
/// drops (a ``SchemaIssue/Severity/warning``): a field the message does not have, an unknown name for an
/// optional enum.
public enum MesosSchema {
    public enum FieldType: Sendable, Equatable {
        case scalar(String)
        case message(String)
        case enumeration(String)
        indirect case map(key: FieldType, value: FieldType)
    }

    public enum Label: Sendable { case optional, required, repeated }

    public struct Field: Sendable {
        public var name: String
        public var label: Label
        public var type: FieldType
    }

    public struct Message: Sendable {
        public var name: String
        public var fields: [Field]
        public func field(named name: String) -> Field? { fields.first { $0.name == name } }
    }

    struct Tables: Sendable {
        var messages: [String: Message] = [:]
        var enums: [String: Set<String>] = [:]
    }

    static let tables: Tables = {
        var tables = Tables()
        var current: Message?
        for line in definitions.split(separator: "\n") {
            let parts = line.split(separator: " ").map(String.init)
            switch parts.first {
            case "M":
                if let current { tables.messages[current.name] = current }
                current = Message(name: parts[1], fields: [])
            case "F":
                let label: Label = parts[2] == "!" ? .required : parts[2] == "*" ? .repeated : .optional
                current?.fields.append(Field(name: parts[1], label: label, type: fieldType(parts[3])))
            case "E":
                tables.enums[parts[1]] = Set(parts.dropFirst(2))
            default: break
            }
        }
        if let current { tables.messages[current.name] = current }
        return tables
    }()

    static func fieldType(_ text: String) -> FieldType {
        if text.hasPrefix("msg:") { return .message(String(text.dropFirst(4))) }
        if text.hasPrefix("enum:") { return .enumeration(String(text.dropFirst(5))) }
        if text.hasPrefix("map:") {
            let rest = text.dropFirst(4)
            let key = rest.prefix { $0 != ":" }
            let value = rest.dropFirst(key.count + 1)
            return .map(key: fieldType(String(key)), value: fieldType(String(value)))
        }
        return .scalar(text)
    }

    /// The message table named `name` (e.g. `mesos.Labels`), if the schema has it.
    public static func message(_ name: String) -> Message? { tables.messages[name] }

    /// Checks `value` as the JSON form of message `messageName`.
    public static func check(_ value: JSONValue, as messageName: String) -> [SchemaIssue] {
        var checker = Checker()
        checker.checkMessage(value, messageName, path: "")
        return checker.issues
    }

    /// Checks `value` as an object holding some of the `fields` of `messageName` (required fields of the
    /// message are not required here: the command writes only what it changes).
    public static func checkFields(_ value: JSONValue, _ fields: [String], of messageName: String) -> [SchemaIssue] {
        guard case .object(let members) = value, let message = message(messageName) else {
            return [SchemaIssue(.error, path: "", "expected a JSON object (\(messageName) fields), got \(value.typeName)")]
        }
        var checker = Checker()
        for member in members {
            guard fields.contains(member.key), let field = message.field(named: member.key) else {
                checker.warning(member.key, "only \(fields.joined(separator: " and ")) are applied; '\(member.key)' is ignored")
                continue
            }
            checker.checkField(member.value, field, path: member.key)
        }
        return checker.issues
    }

    /// Checks `value` as a JSON array of `messageName` (e.g. an array of `mesos.Resource`).
    public static func checkArray(_ value: JSONValue, of messageName: String) -> [SchemaIssue] {
        guard case .array(let elements) = value else {
            return [SchemaIssue(.error, path: "", "expected a JSON array of \(messageName), got \(value.typeName)")]
        }
        var checker = Checker()
        for (i, element) in elements.enumerated() {
            checker.checkMessage(element, messageName, path: "[\(i)]")
        }
        return checker.issues
    }
}

/// One finding of the schema check, with the path of the field at fault (`labels[0].key`).
public struct SchemaIssue: Sendable, Equatable, CustomStringConvertible {
    public enum Severity: Sendable { case error, warning }
    public var severity: Severity
    public var path: String
    public var message: String

    init(_ severity: Severity, path: String, _ message: String) {
        self.severity = severity
        self.path = path
        self.message = message
    }

    public var description: String { path.isEmpty ? message : "field '\(path)': \(message)" }
}

private struct Checker {
    var issues: [SchemaIssue] = []

    mutating func error(_ path: String, _ message: String) { issues.append(SchemaIssue(.error, path: path, message)) }
    mutating func warning(_ path: String, _ message: String) {
        issues.append(SchemaIssue(.warning, path: path, message))
    }

    func join(_ path: String, _ name: String) -> String { path.isEmpty ? name : "\(path).\(name)" }

    mutating func checkMessage(_ value: JSONValue, _ messageName: String, path: String) {
        guard let message = MesosSchema.message(messageName) else { return }
        guard case .object(let members) = value else {
            error(path, "expected a JSON object (\(messageName)), got \(value.typeName)")
            return
        }
        var present = Set<String>()
        for member in members {
            let fieldPath = join(path, member.key)
            guard let field = message.field(named: member.key) else {
                warning(fieldPath, "\(messageName) has no field '\(member.key)'; the agent ignores it")
                continue
            }
            if member.value != .null { present.insert(member.key) }
            checkField(member.value, field, path: fieldPath)
        }
        for field in message.fields where field.label == .required && !present.contains(field.name) {
            error(join(path, field.name), "missing required field '\(field.name)' of \(messageName)")
        }
    }

    mutating func checkField(_ value: JSONValue, _ field: MesosSchema.Field, path: String) {
        if case .map(let keyType, let valueType) = field.type {
            checkMap(value, key: keyType, value: valueType, path: path)
            return
        }
        switch value {
        case .null:
            return
        case .array(let elements):
            guard field.label == .repeated else {
                error(path, "not expecting a JSON array for field '\(field.name)'")
                return
            }
            for (i, element) in elements.enumerated() {
                checkField(element, field, path: "\(path)[\(i)]")
            }
        default:
            checkSingle(value, field.type, required: field.label == .required, name: field.name, path: path)
        }
    }

    mutating func checkMap(_ value: JSONValue, key: MesosSchema.FieldType, value valueType: MesosSchema.FieldType,
                           path: String) {
        guard case .object(let members) = value else {
            if value != .null { error(path, "expected a JSON object (a map), got \(value.typeName)") }
            return
        }
        for member in members {
            checkSingle(.string(member.key), key, required: false, name: "key", path: join(path, member.key))
            checkSingle(member.value, valueType, required: false, name: member.key, path: join(path, member.key))
        }
    }

    mutating func checkSingle(_ value: JSONValue, _ type: MesosSchema.FieldType, required: Bool, name: String,
                              path: String) {
        switch (type, value) {
        case (_, .null):
            return
        case (.message(let messageName), .object):
            checkMessage(value, messageName, path: path)
        case (.message(let messageName), _):
            error(path, "expected a JSON object (\(messageName)), got \(value.typeName)")
        case (.enumeration(let enumName), .string(let text)):
            let names = MesosSchema.tables.enums[enumName] ?? []
            if !names.contains(text) {
                let known = names.sorted().prefix(12).joined(separator: ", ")
                if required {
                    error(path, "'\(text)' is not a value of \(enumName) (\(known)…)")
                } else {
                    warning(path, "'\(text)' is not a value of \(enumName) (\(known)…); the agent drops it")
                }
            }
        case (.enumeration(let enumName), _):
            error(path, "expected the name of a \(enumName) value as a string, got \(value.typeName)")
        case (.scalar(let scalar), _):
            checkScalar(value, scalar, name: name, path: path)
        case (.map, _):
            error(path, "unexpected map")
        }
    }

    mutating func checkScalar(_ value: JSONValue, _ scalar: String, name: String, path: String) {
        switch scalar {
        case "string":
            if case .string = value { return }
            error(path, "expected a string, got \(value.typeName)")
        case "bytes":
            guard case .string(let text) = value else {
                error(path, "expected a base64 string, got \(value.typeName)")
                return
            }
            if !Base64.isValid(text) { error(path, "'\(text.prefix(40))' is not valid base64 (a bytes field)") }
        case "bool":
            switch value {
            case .bool: return
            case .string(let text) where text == "true" || text == "false": return
            default: error(path, "expected a boolean, got \(value.typeName)")
            }
        default:  // every number type
            switch value {
            case .number: return
            case .string(let text) where Double(text) != nil || text == "Infinity" || text == "-Infinity": return
            default: error(path, "expected a number (\(scalar)), got \(value.typeName)")
            }
        }
    }
}

enum Base64 {
    static func isValid(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count % 4 == 0 else { return false }
        var padding = 0
        for (i, byte) in bytes.enumerated() {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "+"), UInt8(ascii: "/"):
                if padding > 0 { return false }
            case UInt8(ascii: "="):
                padding += 1
                if i < bytes.count - 2 { return false }
            default: return false
            }
        }
        return padding <= 2
    }
}
