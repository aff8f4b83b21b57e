import Synchronization

/// `<event>_breaker_failures` and `<event>_breaker_seconds` (SPEC §6): after `failures` consecutive failures of
/// the event's command, the event is answered at once under its failure policy for `seconds`, then one event
/// runs the command again.
public struct BreakerSettings: Sendable, Equatable {
    /// Consecutive failures of the command that open the breaker (1 … ``maxFailures``).
    public var failures: Int
    /// Seconds the breaker stays open before one event runs the command again (decimals allowed).
    public var seconds: Double

    public static let defaultSeconds = 30.0
    /// A breaker that waits for more failures than this protects nothing: with a 1 s timeout, a thousand
    /// failures already held Mesos for a quarter of an hour.
    public static let maxFailures = 1000
    /// The longest cool-down: a dependency down for longer is an incident, not something to wait out unseen.
    public static let maxSeconds = 86_400.0

    /// "breaker after 3 failures, 30 s": for the module's load line and the CLI.
    public var summary: String { "breaker after \(failures) failure\(failures == 1 ? "" : "s"), \(coolDown)" }
    /// The cool-down as logs and the CLI write it: "30 s", "1.5 s".
    public var coolDown: String { CircuitBreaker.seconds(seconds) }

    public init(failures: Int, seconds: Double = Self.defaultSeconds) {
        self.failures = failures
        self.seconds = seconds
    }
}

/// What the breaker of one event of a module says now (for `/metrics/snapshot` and tools).
public struct BreakerState: Sendable, Equatable {
    /// Open: events are answered at once (or one event is running the command again to probe it).
    public var isOpen: Bool
    /// Events answered at once, without running the command, since the module started.
    public var shortCircuited: Int
    /// Failures of the command in a row, as the breaker counts them.
    public var consecutiveFailures: Int
}

/// The circuit breaker of one event of one module.
///
/// What "consecutive" means with events in flight at once: outcomes are counted in the order the events
/// complete. While closed, a failure of the command adds one, a success resets the count to zero. Once open, only
/// the probe (the one event admitted after the cool-down) decides: a success closes the breaker, a failure adds
/// one and re-opens it for another cool-down; events that were already in flight when it opened change nothing
/// when they complete, nor do those still in flight from before it last closed (their failures belong to the
/// outage that is over). A failure is what `…/failures` counts: any error of the command or worker — non-zero
/// exit, signal, timeout (waiting for a slot or a worker included), bad output, a worker that broke or backs off,
/// a command that cannot start. A skipped rule, an event the isolator refused and a cancelled event never reach
/// the breaker.
final class CircuitBreaker: Sendable {
    /// An event allowed to run the command: when (in which closed period), and whether it is the probe.
    struct Admission: Sendable {
        let generation: UInt64
        let isProbe: Bool
    }

    enum Decision {
        case run(Admission)
        /// Answer at once: `retryIn` seconds until the command runs again, nil while the probe runs it.
        case shortCircuit(failures: Int, retryIn: Double?, lastFailure: String)
    }

    enum Transition: Equatable {
        case none
        case opened(failures: Int, lastFailure: String)
        case reopened(failures: Int, lastFailure: String)
        case closed(failures: Int, openSeconds: Double, shortCircuited: Int)
    }

    private struct State {
        var consecutiveFailures = 0
        var lastFailure = ""
        var isOpen = false
        var openedAt: UInt64 = 0
        var retryAt: UInt64 = 0
        var probeInFlight = false
        /// Bumped each time the breaker closes: admissions of an earlier closed period no longer count.
        var generation: UInt64 = 0
        var shortCircuited = 0
        var shortCircuitedAtOpen = 0
    }

    let settings: BreakerSettings
    private let state = Mutex(State())

    init(_ settings: BreakerSettings) {
        self.settings = settings
    }

    var snapshot: BreakerState {
        state.withLock { BreakerState(isOpen: $0.isOpen, shortCircuited: $0.shortCircuited,
                                      consecutiveFailures: $0.consecutiveFailures) }
    }

    /// Whether an event starting now runs the command.
    func admit(now: UInt64 = MonotonicClock.now()) -> Decision {
        state.withLock { state in
            guard state.isOpen else { return .run(Admission(generation: state.generation, isProbe: false)) }
            if !state.probeInFlight && now >= state.retryAt {
                state.probeInFlight = true
                return .run(Admission(generation: state.generation, isProbe: true))
            }
            state.shortCircuited += 1
            let retryIn = state.probeInFlight ? nil : Double(state.retryAt - now) / 1e9
            return .shortCircuit(failures: state.consecutiveFailures, retryIn: retryIn, lastFailure: state.lastFailure)
        }
    }

    /// An admitted event's command succeeded (`failure` nil) or failed with that message.
    func complete(_ admission: Admission, failure: String?, now: UInt64 = MonotonicClock.now()) -> Transition {
        state.withLock { state in
            if admission.isProbe {
                state.probeInFlight = false
                guard let failure else {
                    // Saturated: a clock read by another thread never makes it trap.
                    let open = now > state.openedAt ? now - state.openedAt : 0
                    let transition = Transition.closed(
                        failures: state.consecutiveFailures, openSeconds: Double(open) / 1e9,
                        shortCircuited: state.shortCircuited - state.shortCircuitedAtOpen)
                    state.isOpen = false
                    state.consecutiveFailures = 0
                    state.generation &+= 1
                    return transition
                }
                state.consecutiveFailures += 1
                state.lastFailure = failure
                state.retryAt = now &+ MonotonicClock.nanoseconds(settings.seconds)
                return .reopened(failures: state.consecutiveFailures, lastFailure: failure)
            }
            guard !state.isOpen, admission.generation == state.generation else { return .none }
            guard let failure else {
                state.consecutiveFailures = 0
                return .none
            }
            state.consecutiveFailures += 1
            state.lastFailure = failure
            guard state.consecutiveFailures >= settings.failures else { return .none }
            state.isOpen = true
            state.openedAt = now
            state.retryAt = now &+ MonotonicClock.nanoseconds(settings.seconds)
            state.shortCircuitedAtOpen = state.shortCircuited
            return .opened(failures: state.consecutiveFailures, lastFailure: failure)
        }
    }

    /// An admitted event ended without a verdict on the command (it was cancelled): a probe gives its turn to
    /// the next event.
    func abandon(_ admission: Admission) {
        guard admission.isProbe else { return }
        state.withLock { $0.probeInFlight = false }
    }

    /// "27 s", "0.4 s": the time left, rounded up to a tenth of a second (a whole second from 10 s on).
    static func seconds(_ value: Double) -> String {
        let rounded = value >= 10 ? value.rounded(.up) : (value * 10).rounded(.up) / 10
        return (rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)) + " s"
    }
}

extension EventRunner {
    static func breakers(for configuration: ModuleConfiguration) -> [Event: CircuitBreaker] {
        var breakers: [Event: CircuitBreaker] = [:]
        for command in configuration.commands.values {
            if let settings = command.breaker { breakers[command.event] = CircuitBreaker(settings) }
        }
        return breakers
    }

    /// The breaker of `event`, if it has one.
    func breakerState(_ event: Event) -> BreakerState? { breakers[event]?.snapshot }

    /// Lets the event run its command (nil: no breaker), or answers it at once when the breaker is open.
    func admit(_ command: CommandConfiguration, subject: String) throws(EventError) -> CircuitBreaker.Admission? {
        guard let breaker = breakers[command.event] else { return nil }
        switch breaker.admit() {
        case .run(let admission):
            return admission
        case .shortCircuit(let failures, let retryIn, let lastFailure):
            let error = CommandError(
                command: command.path, code: .circuitOpen(failures: failures, retryIn: retryIn, lastFailure: lastFailure))
            if configuration.debug { log(command.event, subject).info(error.description) }
            throw EventError(command.event, subject: subject, command: error)
        }
    }

    /// Tells the breaker how the admitted event's command did, and logs when that opens or closes it.
    func settle(_ admission: CircuitBreaker.Admission?, _ command: CommandConfiguration, subject: String,
                failure: CommandError?)
    {
        guard let admission, let breaker = breakers[command.event] else { return }
        if failure?.code == .cancelled { return breaker.abandon(admission) }
        let settings = breaker.settings
        let key = command.event.key
        let policy = "\(key)_failure_policy=\(command.failurePolicy.rawValue)"
        switch breaker.complete(admission, failure: failure?.description) {
        case .none:
            break
        case .opened(let failures, let lastFailure):
            log(command.event, subject).warning(
                "Circuit breaker of \(key)_command opened after \(failures) consecutive failures: for "
                    + "\(Self.breakerSeconds(settings.seconds)) events are answered at once under \(policy), without "
                    + "running \"\(command.path)\"; then one event runs it again. Last failure: \(lastFailure)")
        case .reopened(let failures, let lastFailure):
            log(command.event, subject).warning(
                "Circuit breaker of \(key)_command stays open: the command failed again (\(failures) consecutive "
                    + "failures); it runs again in \(Self.breakerSeconds(settings.seconds)). Last failure: \(lastFailure)")
        case .closed(let failures, let openSeconds, let shortCircuited):
            log(command.event, subject).info(
                "Circuit breaker of \(key)_command closed: the command succeeded again after \(failures) consecutive "
                    + "failures; it was open \(Self.breakerSeconds(openSeconds)) and answered \(shortCircuited) "
                    + "event(s) at once")
        }
    }

    private static func breakerSeconds(_ value: Double) -> String { CircuitBreaker.seconds(value) }
}
