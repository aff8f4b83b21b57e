import Logging

/// Log lines with the seed's prefix, `[TASK=<container or executor id>, METHOD=<Mesos method>]`, so that
/// operators' log searches keep working (SPEC §6).
struct EventLog: Sendable {
    let logger: Logger
    let event: Event
    let subject: String

    var prefix: String { "[TASK=\(subject), METHOD=\(event.methodName)] " }

    func info(_ message: @autoclosure () -> String) { logger.info("\(prefix)\(message())") }
    func warning(_ message: @autoclosure () -> String) { logger.warning("\(prefix)\(message())") }
    func error(_ message: @autoclosure () -> String) { logger.error("\(prefix)\(message())") }
}
