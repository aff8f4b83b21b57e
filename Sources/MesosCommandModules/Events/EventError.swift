/// Why an event failed, with everything an operator pastes in a ticket: the event, who it was about, the
/// command and the cause. `description` is `[TASK=<subject>, METHOD=<method>] <message>`, the seed's prefix
/// followed by the seed's wording (``CommandError``).
public struct EventError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The command failed: see ``command``.
        case command
        /// The isolator's own rules refused the event (a second prepare, an unknown container, state I/O).
        case refused
        /// The event was cancelled.
        case cancelled
    }

    public var event: Event
    /// The container, executor or task the event is about.
    public var subject: String
    public var kind: Kind
    /// The seed-worded message, without the prefix.
    public var message: String
    /// The command's failure, when ``kind`` is `.command`.
    public var command: CommandError?

    public var isTimeout: Bool { command?.isTimeout ?? false }

    /// Answered at once: the event's circuit breaker is open (the command did not run).
    public var isShortCircuit: Bool {
        if case .circuitOpen = command?.code { return true }
        return false
    }

    public var description: String { "[TASK=\(subject), METHOD=\(event.methodName)] \(message)" }

    init(_ event: Event, subject: String, command: CommandError) {
        self.event = event
        self.subject = subject
        self.kind = command.code == .cancelled ? .cancelled : .command
        self.message = command.description
        self.command = command
    }

    init(_ event: Event, subject: String, refused message: String) {
        self.event = event
        self.subject = subject
        self.kind = .refused
        self.message = message
        self.command = nil
    }
}
