import Synchronization

/// A value handed over once, from the loop thread (or any thread) to the one task that awaits it (a single
/// waiter: `value` must not be awaited twice at once).
final class Completion<Value: Sendable>: Sendable {
    private struct State {
        var value: Value?
        var waiter: CheckedContinuation<Value, Never>?
        /// The waiter's task runs on the event loop (``EventExecution``): resumed there, it goes on in the same pass.
        var waiterOnLoop = false
    }

    private let state = Mutex(State())

    /// Completes with `value`; later calls are ignored. Returns whether this call completed it.
    @discardableResult
    func complete(_ value: Value) -> Bool {
        let (waiter, onLoop, completed) = state.withLock { state -> (CheckedContinuation<Value, Never>?, Bool, Bool) in
            guard state.value == nil else { return (nil, false, false) }
            state.value = value
            defer { state.waiter = nil }
            return (state.waiter, state.waiterOnLoop, true)
        }
        if let waiter {
            // A task of the loop resumed by the loop goes on in the same pass: no hand-over.
            if HandOvers.isCounting && !(onLoop && EventLoop.isOnLoopThread) { HandOvers.note() }
            waiter.resume(returning: value)
        }
        return completed
    }

    var isCompleted: Bool { state.withLock { $0.value != nil } }

    var value: Value {
        get async {
            await withCheckedContinuation { continuation in
                let onLoop = HandOvers.isCounting && EventLoop.runsLoopJob
                let value = state.withLock { state in
                    if state.value == nil { (state.waiter, state.waiterOnLoop) = (continuation, onLoop) }
                    return state.value
                }
                if let value { continuation.resume(returning: value) }
            }
        }
    }
}
