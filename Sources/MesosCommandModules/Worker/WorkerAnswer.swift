/// A worker's answer line, checked against the protocol: `{"id": <the request's id>, "output": <JSON or null>}`
/// or `{"id": …, "error": "<cause>"}`.
enum WorkerAnswer {
    case output(JSONValue?)
    case error(String)
    /// What is wrong with the line, for `Command "<path>" (worker) <what>.`
    case invalid(String)

    init(parsing line: [UInt8], requestID: UInt64) {
        // Only a line at fault is quoted: a good answer costs no copy of it.
        var quoted: String { String(decoding: line.prefix(200), as: UTF8.self) + (line.count > 200 ? "…" : "") }
        let value: JSONValue
        // What the operator needs is the line itself (a stray print() in the script, most of the time), not
        // the parser's view of it.
        guard let parsed = try? JSONValue(parsing: line) else {
            self = .invalid("wrote a line that is not JSON: \(quoted)")
            return
        }
        value = parsed
        guard case .object = value else {
            self = .invalid("wrote a line that is not a JSON object: \(quoted)")
            return
        }
        guard let id = value["id"] else {
            self = .invalid("wrote an answer without an id: \(quoted)")
            return
        }
        guard case .number(let text) = id, UInt64(text) == requestID else {
            self = .invalid("answered id \(id.jsonText) to request \(requestID)")
            return
        }
        if let error = value["error"] {
            self = .error(error.stringValue ?? error.jsonText)
        } else if let output = value["output"] {
            self = .output(output == .null ? nil : output)
        } else {
            self = .invalid("wrote an answer with neither \"output\" nor \"error\": \(quoted)")
        }
    }
}
