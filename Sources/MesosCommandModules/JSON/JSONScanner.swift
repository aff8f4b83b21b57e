/// Reads one member of a JSON document without building the rest: the values on the way are skipped, not
/// parsed. A rule tests a few fields of messages that are mostly other things (a task's command, resources,
/// container info…); reading only those keeps a rule's decision in microseconds.
///
/// The document is assumed to be valid JSON (it comes from Mesos, through stout): on anything unexpected the
/// scanner gives up and answers nil, which a rule reads as "absent".
struct JSONScanner {
    /// The value at `path` (object keys, outermost first) in `text`, parsed; nil if absent (or not an object on
    /// the way). The last occurrence of a repeated key wins, as with stout and `JSONValue`.
    static func value(at path: [String], in text: String) -> JSONValue? {
        var text = text
        return text.withUTF8 { bytes in
            var scanner = JSONScanner(bytes: bytes)
            return scanner.find(path[...], parse: true)
        }
    }

    /// Whether `text` has a value at `path` (not parsed).
    static func contains(_ path: [String], in text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            var scanner = JSONScanner(bytes: bytes)
            return scanner.find(path[...], parse: false) != nil
        }
    }

    private let bytes: UnsafeBufferPointer<UInt8>
    private var index = 0

    private init(bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    private mutating func find(_ path: ArraySlice<String>, parse: Bool) -> JSONValue? {
        skipWhitespace()
        guard let key = path.first else { return parse ? parseHere() : .null }
        guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { return nil }
        index += 1
        var found: JSONValue?
        while true {
            skipWhitespace()
            guard index < bytes.count else { return nil }
            if bytes[index] == UInt8(ascii: "}") { return found }
            guard let name = readKey() else { return nil }
            skipWhitespace()
            guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { return nil }
            index += 1
            if name == key {
                var inner = self
                found = inner.find(path.dropFirst(), parse: parse)
            }
            skipWhitespace()
            guard skipValue() else { return nil }
            skipWhitespace()
            guard index < bytes.count else { return nil }
            if bytes[index] == UInt8(ascii: ",") {
                index += 1
            } else if bytes[index] == UInt8(ascii: "}") {
                return found
            } else {
                return nil
            }
        }
    }

    /// The value that starts here, parsed (its own extent found by skipping it first).
    private mutating func parseHere() -> JSONValue? {
        let start = index
        guard skipValue() else { return nil }
        return try? JSONValue(parsing: UnsafeBufferPointer(rebasing: bytes[start..<index]))
    }

    /// A key without escapes is compared as is; one with escapes is decoded.
    private mutating func readKey() -> String? {
        guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { return nil }
        let start = index + 1
        var escaped = false
        guard skipString(escaped: &escaped) else { return nil }
        let raw = UnsafeBufferPointer(rebasing: bytes[start..<(index - 1)])
        if !escaped { return String(decoding: raw, as: UTF8.self) }
        return (try? JSONValue(parsing: UnsafeBufferPointer(rebasing: bytes[(start - 1)..<index])))?.stringValue
    }

    private mutating func skipWhitespace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
            index += 1
        }
    }

    /// Skips a string (at its opening quote); false if it does not end.
    private mutating func skipString(escaped: inout Bool) -> Bool {
        index += 1
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: "\""):
                index += 1
                return true
            case UInt8(ascii: "\\"):
                escaped = true
                index += 2
            default:
                index += 1
            }
        }
        return false
    }

    /// Skips one value of any kind, nested ones included, without building anything.
    private mutating func skipValue() -> Bool {
        guard index < bytes.count else { return false }
        var depth = 0
        repeat {
            guard index < bytes.count else { return false }
            switch bytes[index] {
            case UInt8(ascii: "\""):
                var escaped = false
                guard skipString(escaped: &escaped) else { return false }
            case UInt8(ascii: "{"), UInt8(ascii: "["):
                depth += 1
                index += 1
            case UInt8(ascii: "}"), UInt8(ascii: "]"):
                guard depth > 0 else { return false }
                depth -= 1
                index += 1
            default:
                // A number, a literal, a separator or white space inside a container.
                index += 1
                if depth == 0 {
                    while index < bytes.count, !Self.endsAScalar(bytes[index]) { index += 1 }
                }
            }
        } while depth > 0
        return true
    }

    private static func endsAScalar(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: ",") || byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") || byte == 0x20
            || byte == 0x0A || byte == 0x0D || byte == 0x09
    }
}
