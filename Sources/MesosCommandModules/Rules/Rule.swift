/// A `<event>_when` rule (SPEC §9): conditions on the task, executor or container an event is about, all of which
/// must hold for the command to run. Decided inside the module, before any process is started.
///
/// Syntax — one line an operator writes by hand in a manifest parameter:
///
///     label:team=ml; role~prod-.*; nested=false
///
/// - conditions are separated by `;` (write `\;` for a `;` inside a value; other backslashes are kept);
/// - a condition is `<property> <operator> <value>`, or `label:<key>` alone ("the label is present");
/// - operators: `=` equals (byte for byte), `!=` differs, `~` matches, `!~` does not match. A pattern is a
///   POSIX extended regular expression (as `grep -E` takes, without back-references) that must match the whole
///   value, read as UTF-8 characters, in time linear in the value (see ``RegularExpression``); a value after an
///   operator cannot start with
///   `=` or `~` (`label:team==blue` is refused with a hint, not read as the value `=blue`);
/// - a property with several values (a label on both the task and the executor, the roles of the resources)
///   holds for `=`/`~` when any value does, and for `!=`/`!~` when none does.
public struct Rule: Sendable, CustomStringConvertible {
    public enum Property: Sendable, Equatable {
        /// A label of the task or of the executor.
        case label(String)
        case taskLabel(String)
        case executorLabel(String)
        /// FrameworkInfo.name.
        case framework
        /// The framework's id (FrameworkInfo.id, ExecutorInfo.framework_id, the status decorator's framework_id).
        case frameworkID
        /// The framework's roles and the roles the resources are allocated to.
        case role
        /// TaskInfo.name.
        case taskName
        /// Whether the container is nested (its ContainerID has a parent).
        case nested
        /// ContainerConfig.container_class: DEFAULT or DEBUG.
        case containerClass

        /// The property of `kind`; `key` is the label key of the label kinds, ignored for the others.
        init(_ kind: PropertyKind, key: String) {
            switch kind {
            case .label: self = .label(key)
            case .taskLabel: self = .taskLabel(key)
            case .executorLabel: self = .executorLabel(key)
            case .framework: self = .framework
            case .frameworkID: self = .frameworkID
            case .role: self = .role
            case .taskName: self = .taskName
            case .nested: self = .nested
            case .containerClass: self = .containerClass
            }
        }

        /// Which property it is, without its label key.
        var kind: PropertyKind {
            switch self {
            case .label: return .label
            case .taskLabel: return .taskLabel
            case .executorLabel: return .executorLabel
            case .framework: return .framework
            case .frameworkID: return .frameworkID
            case .role: return .role
            case .taskName: return .taskName
            case .nested: return .nested
            case .containerClass: return .containerClass
            }
        }

        /// How an operator writes it.
        var name: String {
            switch self {
            case .label(let key), .taskLabel(let key), .executorLabel(let key): return "\(kind.rawValue):\(key)"
            default: return kind.rawValue
            }
        }

        /// In an operator's words, for `validate`.
        var reading: String {
            switch self {
            case .label(let key): return "the task's or executor's label '\(key)'"
            case .taskLabel(let key): return "the task's label '\(key)'"
            case .executorLabel(let key): return "the executor's label '\(key)'"
            case .framework: return "the framework's name"
            case .frameworkID: return "the framework's id"
            case .role: return "a role (the framework's, or its resources' allocation)"
            case .taskName: return "the task's name"
            case .nested: return "nested"
            case .containerClass: return "the container's class"
            }
        }

        /// How an operator writes the properties of the given kinds (all of them by default), in one line.
        static func names(of kinds: Set<PropertyKind> = Set(PropertyKind.allCases)) -> String {
            PropertyKind.allCases.filter(kinds.contains).map(\.written).joined(separator: ", ")
        }
    }

    /// A property without its label key (what an event can test), named as an operator writes it.
    enum PropertyKind: String, CaseIterable, Hashable {
        case label
        case taskLabel = "task_label"
        case executorLabel = "executor_label"
        case framework
        case frameworkID = "framework_id"
        case role
        case taskName = "task_name"
        case nested
        case containerClass = "class"

        /// Whether it is written with a label key: `label:<key>`.
        var takesKey: Bool { self == .label || self == .taskLabel || self == .executorLabel }

        var written: String { takesKey ? "\(rawValue):<key>" : rawValue }
    }

    public enum Operator: String, Sendable {
        case equals = "="
        case differs = "!="
        case matches = "~"
        case doesNotMatch = "!~"
        /// `label:<key>` alone.
        case present = ""

        var negated: Bool { self == .differs || self == .doesNotMatch }
    }

    public struct Condition: Sendable, CustomStringConvertible {
        public let property: Property
        public let op: Operator
        public let value: String
        let pattern: RegularExpression?

        /// Whether the condition holds for the property's values (empty: the property is absent).
        func holds(for values: [String]) -> Bool { holds(for: values, until: nil)! }

        /// Whether the condition holds; nil if `deadline` passed before a pattern was decided.
        func holds(for values: [String], until deadline: Deadline?) -> Bool? {
            switch op {
            case .present: return !values.isEmpty
            case .equals: return values.contains { Self.same($0, value) }
            case .differs: return !values.contains { Self.same($0, value) }
            case .matches, .doesNotMatch:
                for candidate in values {
                    guard let matched = pattern!.matchesWhole(candidate, until: deadline) else { return nil }
                    if matched { return op == .matches }
                }
                return op == .doesNotMatch
            }
        }

        /// Byte for byte, as Mesos compares labels (Swift's `==` would take `é` and `e` + U+0301 for the same).
        static func same(_ a: String, _ b: String) -> Bool { a.utf8.elementsEqual(b.utf8) }

        public var description: String { op == .present ? property.name : "\(property.name)\(op.rawValue)\(value)" }

        /// What the condition means, in words.
        var reading: String {
            let subject = property.reading
            switch op {
            case .present: return "\(subject) is present"
            case .equals: return property == .nested ? (value == "true" ? "the container is nested" : "the container is not nested") : "\(subject) is '\(value)'"
            case .differs: return "\(subject) is not '\(value)'"
            case .matches: return "\(subject) matches /\(value)/"
            case .doesNotMatch: return "\(subject) does not match /\(value)/"
            }
        }
    }

    public let conditions: [Condition]
    /// The parameter's text.
    public let text: String

    public var description: String { text }

    /// The rule in words: "the task's label 'team' is 'ml' and a role … matches /prod-.*/".
    public var reading: String { conditions.map(\.reading).joined(separator: " and ") }

    /// The properties the rule tests.
    var properties: [Property] { conditions.map(\.property) }
}

/// Why a rule does not parse, with the 1-based character position of the fault.
public struct RuleSyntaxError: Error, Sendable, CustomStringConvertible {
    public var position: Int
    public var reason: String
    public var description: String { "at character \(position): \(reason)" }
}

extension Rule {
    /// Parses a rule. Throws with the position of the first fault.
    public init(parsing text: String) throws(RuleSyntaxError) {
        var conditions: [Condition] = []
        let characters = Array(text)
        var start = 0
        var index = 0
        var current: [Character] = []
        func flush() throws(RuleSyntaxError) {
            let condition = try Self.condition(current, at: start, in: characters)
            if let condition { conditions.append(condition) }
            current = []
        }
        while index < characters.count {
            let character = characters[index]
            // `\;` is a `;` inside a value; any other backslash is the value's own (a pattern's escape).
            if character == "\\" && index + 1 < characters.count && characters[index + 1] == ";" {
                current.append(characters[index + 1])
                index += 2
                continue
            }
            if character == ";" {
                try flush()
                index += 1
                start = index
                continue
            }
            current.append(character)
            index += 1
        }
        try flush()
        guard !conditions.isEmpty else { throw RuleSyntaxError(position: 1, reason: "the rule has no condition") }
        self.conditions = conditions
        self.text = text
    }

    /// One condition from its characters (nil for an empty one between two `;`). `offset` is where it starts in
    /// the whole rule, for positions.
    private static func condition(_ characters: [Character], at offset: Int, in rule: [Character]) throws(RuleSyntaxError)
        -> Condition?
    {
        let leading = characters.prefix { $0 == " " || $0 == "\t" }.count
        let text = String(characters).trimmingWhitespace
        guard !text.isEmpty else { return nil }
        let position = offset + leading + 1
        // The operator: the first of '!=', '!~', '=', '~' after the property name.
        let chars = Array(text)
        var opIndex: Int?
        var op: Operator = .present
        var i = 0
        while i < chars.count {
            if chars[i] == "!" && i + 1 < chars.count && (chars[i + 1] == "=" || chars[i + 1] == "~") {
                opIndex = i
                op = chars[i + 1] == "=" ? .differs : .doesNotMatch
                break
            }
            if chars[i] == "=" || chars[i] == "~" {
                opIndex = i
                op = chars[i] == "=" ? .equals : .matches
                break
            }
            i += 1
        }
        let name = String(chars[0..<(opIndex ?? chars.count)]).trimmingWhitespace
        let value = opIndex.map { String(chars[($0 + op.rawValue.count)...]).trimmingWhitespace } ?? ""
        let valuePosition = position + (opIndex.map { $0 + op.rawValue.count } ?? chars.count)
        let property = try Self.property(String(name), at: position)
        try Self.refuseDoubledOperator(name: name, op: op, value: value, of: property, at: valuePosition)
        if opIndex == nil {
            switch property {
            case .label, .taskLabel, .executorLabel: break
            default:
                throw RuleSyntaxError(
                    position: position,
                    reason: "'\(name)' needs an operator and a value (=, !=, ~ or !~), e.g. '\(name)=…'")
            }
            return Condition(property: property, op: .present, value: "", pattern: nil)
        }
        if value.isEmpty && (op == .matches || op == .doesNotMatch) {
            throw RuleSyntaxError(position: valuePosition, reason: "'\(name)\(op.rawValue)' needs a pattern")
        }
        switch property {
        case .nested:
            guard op == .equals || op == .differs, value == "true" || value == "false" else {
                throw RuleSyntaxError(position: valuePosition, reason: "nested takes =true or =false, not '\(op.rawValue)\(value)'")
            }
        case .containerClass:
            guard op != .equals && op != .differs || value == "DEFAULT" || value == "DEBUG" else {
                throw RuleSyntaxError(position: valuePosition, reason: "class is DEFAULT or DEBUG, not '\(value)'")
            }
        default:
            break
        }
        var pattern: RegularExpression?
        if op == .matches || op == .doesNotMatch {
            do {
                pattern = try RegularExpression(String(value))
            } catch {
                throw RuleSyntaxError(position: valuePosition, reason: "'\(value)' is "
                    + (error.tooBig ? "too big a pattern" : "not a regular expression") + ": \(error.reason)")
            }
        }
        return Condition(property: property, op: op, value: String(value), pattern: pattern)
    }

    /// `label:team==blue` reads as "equals blue" but would mean "equals '=blue'": a value or pattern that starts
    /// with `=` or `~` is refused, with the rule the author most likely meant (`==` → `=`, `=~`, `~~`, `~=` →
    /// `~`, and `!==`, `!=~`, `!~~`, `!~=` alike). Such a value is still written as a pattern: `~[=]blue`.
    private static func refuseDoubledOperator(
        name: Substring, op: Operator, value: Substring, of property: Property, at position: Int
    ) throws(RuleSyntaxError) {
        guard let second = value.first, second == "=" || second == "~" else { return }
        let written = op.rawValue + String(second)
        let meant: Operator
        switch op {
        case .equals: meant = second == "=" ? .equals : .matches
        case .differs: meant = second == "=" ? .differs : .doesNotMatch
        case .matches: meant = .matches
        case .doesNotMatch: meant = .doesNotMatch
        case .present: return
        }
        let rest = String(value.dropFirst()).trimmingWhitespace
        // nested and class take fixed words: no value of theirs starts with `=` or `~`.
        let literal = property == .nested || property == .containerClass ? ""
            : " (for a value that starts with '\(second)', write '\(name)\(op.negated ? "!~" : "~")[\(second)]\(rest)')"
        throw RuleSyntaxError(
            position: position,
            reason: "'\(written)' is not an operator: did you mean '\(name)\(meant.rawValue)\(rest)'?\(literal)")
    }

    private static func property(_ name: String, at position: Int) throws(RuleSyntaxError) -> Property {
        let colon = name.firstIndex(of: ":")
        let kindName = colon.map { String(name[..<$0]) } ?? name
        let key = colon.map { String(name[name.index(after: $0)...]) } ?? ""
        if colon != nil && key.isEmpty {
            throw RuleSyntaxError(position: position + name.count, reason: "'\(kindName):' needs a label key")
        }
        if let kind = PropertyKind(rawValue: kindName), kind.takesKey == (colon != nil) { return Property(kind, key: key) }
        throw RuleSyntaxError(
            position: position,
            reason: name.isEmpty ? "a condition needs a property (\(Property.names()))"
                : "unknown property '\(name)' (one of \(Property.names()))")
    }
}
