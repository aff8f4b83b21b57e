import Synchronization

/// Counters and latency of one event of one module (SPEC §6).
public struct EventMetrics: Sendable, Equatable {
    /// Events that ran their command.
    public var calls = 0
    /// Events whose command failed (timeouts included), whatever the failure policy did with it.
    public var failures = 0
    /// Events whose command took too long.
    public var timeouts = 0
    /// Events whose command did not run because their `<event>_when` rule did not match.
    public var skipped = 0
    /// Total and extreme wall time of the commands, in seconds.
    public var totalSeconds = 0.0
    public var maxSeconds = 0.0
    /// The most recent latency, in seconds.
    public var lastSeconds = 0.0
    /// User + system CPU seconds of everything the commands ran (SPEC §3 "Containment").
    public var cpuSeconds = 0.0

    public var meanSeconds: Double { calls == 0 ? 0 : totalSeconds / Double(calls) }
}

/// Receives the duration of every command run, in milliseconds, as it ends — for a latency histogram such as
/// libprocess' `Timer`, which the Mesos shim feeds. Called from engine threads.
public typealias LatencyObserver = @Sendable (Event, Double) -> Void

/// The metrics of one module, kept for export (the Mesos shim publishes them in `/metrics/snapshot`).
public final class ModuleMetrics: Sendable {
    private let events = Mutex<[Event: EventMetrics]>([:])
    private let latencyObserver: LatencyObserver?

    public init(latencyObserver: LatencyObserver? = nil) {
        self.latencyObserver = latencyObserver
    }

    func record(_ event: Event, seconds: Double, failed: Bool, timedOut: Bool, cpuSeconds: Double = 0) {
        latencyObserver?(event, seconds * 1000)
        events.withLock { events in
            var metrics = events[event] ?? EventMetrics()
            metrics.calls += 1
            if failed { metrics.failures += 1 }
            if timedOut { metrics.timeouts += 1 }
            metrics.totalSeconds += seconds
            metrics.maxSeconds = max(metrics.maxSeconds, seconds)
            metrics.lastSeconds = seconds
            metrics.cpuSeconds += cpuSeconds
            events[event] = metrics
        }
    }

    func recordSkip(_ event: Event) {
        events.withLock { $0[event, default: EventMetrics()].skipped += 1 }
    }

    /// The metrics of every event that ran (or was skipped) at least once.
    public func snapshot() -> [Event: EventMetrics] { events.withLock { $0 } }

    public func snapshot(_ event: Event) -> EventMetrics { events.withLock { $0[event] ?? EventMetrics() } }
}
