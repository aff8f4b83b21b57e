import ArgumentParser
import MesosCommandModules

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the input envelope each event's command receives, with a realistic sample.")

    @Argument(help: "An event key (e.g. isolator_prepare); all events when omitted.")
    var event: Event?

    func run() {
        for event in event.map({ [$0] }) ?? Event.allCases {
            let output: String
            switch event.output {
            case .none: output = "nothing (the output file is not read)"
            case .message(let name): output = name
            case .array(let name): output = "a JSON array of \(name)"
            case .fields(let fields, let name): output = "the \(name) fields to change: \(fields.joined(separator: ", "))"
            }
            print("# \(event.key) — Mesos \(event.kind == .hook ? "Hook" : "Isolator")::\(event.methodName)")
            print("# parameter: \(event.key)_command; output: \(output); on failure by default: \(event.defaultFailurePolicy.rawValue)")
            let envelope = SampleEnvelopes.envelope(for: event)
            print((try? JSONValue(parsing: envelope.jsonText).prettyText) ?? envelope.jsonText)
            print("")
        }
    }
}
