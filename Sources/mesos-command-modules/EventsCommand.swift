import ArgumentParser
import MesosCommandModules

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the input envelope each event's command receives, with a realistic sample.",
        discussion: """
            stdout holds one JSON document — the envelope of EVENT, or an object of every event's envelope — so \
            that a script author can redirect it to a file and run a script on it \
            (`mesos-command-modules events isolator_prepare > in.json && ./prepare.sh in.json out.json err.json`). \
            What each event is, its parameter and its output go to stderr.
            """)

    @Argument(help: "An event key (e.g. isolator_prepare); all events when omitted.")
    var event: Event?

    func run() {
        let events = event.map { [$0] } ?? Event.allCases
        for event in events {
            let output: String
            switch event.output {
            case .none: output = "nothing (the output file is not read)"
            case .message(let name): output = name
            case .array(let name): output = "a JSON array of \(name)"
            case .fields(let fields, let name): output = "the \(name) fields to change: \(fields.joined(separator: ", "))"
            }
            printError("# \(event.key) — Mesos \(event.kind == .hook ? "Hook" : "Isolator")::\(event.methodName)")
            printError("# parameter: \(event.key)_command; output: \(output); on failure by default: \(event.defaultFailurePolicy.rawValue)")
        }
        func sample(_ event: Event) -> JSONValue {
            (try? JSONValue(parsing: SampleEnvelopes.envelope(for: event).jsonText)) ?? .object([])
        }
        let document = event.map(sample) ?? .object(events.map { ($0.key, sample($0)) })
        print(document.prettyText)
    }
}
