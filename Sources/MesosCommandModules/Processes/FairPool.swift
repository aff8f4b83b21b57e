import Synchronization

/// A fixed set of items (command slots of `max_in_flight`, idle workers) handed out one per caller, first
/// come first served. A caller that waits gives up at its event's deadline — the time spent waiting counts
/// against the event's timeout (SPEC §3) — or when its task is cancelled.
final class FairPool<Item: Sendable>: Sendable {
    enum Failure: Error, Sendable {
        case timedOut
        case cancelled
        /// The deadline timer could not be set (the event loop cannot start).
        case system(SystemFailure)
    }

    private struct Waiter {
        let id: UInt64
        let continuation: CheckedContinuation<Result<Item, Failure>, Never>
        var timer: UInt64?
    }

    private struct State {
        var available: [Item]
        var waiters: [Waiter] = []
        var nextID: UInt64 = 0
    }

    private let state: Mutex<State>

    init(items: [Item]) { state = Mutex(State(available: items)) }

    /// Takes an item, waiting for one until `deadline`.
    func acquire(until deadline: Deadline) async throws(Failure) -> Item {
        // The common case, a free item, takes no continuation (and so no trip through the executor).
        let (item, id): (Item?, UInt64) = state.withLock { state in
            if !state.available.isEmpty && state.waiters.isEmpty { return (state.available.removeLast(), 0) }
            state.nextID += 1
            return (nil, state.nextID)
        }
        if let item { return item }
        if deadline.hasPassed { throw .timedOut }
        let loop: EventLoop
        do {
            loop = try EventLoop.shared()
        } catch {
            throw .system(error)
        }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<Item, Failure>, Never>) in
                // Checked under the lock: a cancellation either is seen here or finds the waiter queued.
                let immediate: Result<Item, Failure>? = state.withLock { state in
                    if Task.isCancelled { return .failure(.cancelled) }
                    if !state.available.isEmpty && state.waiters.isEmpty { return .success(state.available.removeLast()) }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return nil
                }
                if let immediate {
                    continuation.resume(returning: immediate)
                    return
                }
                let timer = loop.schedule(at: deadline.nanoseconds) { [self] in self.giveUp(id, .timedOut, loop: nil) }
                let stillWaiting = state.withLock { state in
                    guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return false }
                    state.waiters[index].timer = timer
                    return true
                }
                if !stillWaiting { loop.cancelTimer(timer) }
            }
        } onCancel: {
            giveUp(id, .cancelled, loop: loop)
        }
        return try result.get()
    }

    /// Gives an item back: to the first waiter, else to the pool — where it is handed out next, or, when not
    /// `preferred`, after every other free item (a worker slot whose worker died goes after the live ones).
    func release(_ item: Item, preferred: Bool = true) {
        let waiter = state.withLock { state -> Waiter? in
            if state.waiters.isEmpty {
                if preferred {
                    state.available.append(item)
                } else {
                    state.available.insert(item, at: 0)
                }
                return nil
            }
            return state.waiters.removeFirst()
        }
        guard let waiter else { return }
        if let timer = waiter.timer, let loop = try? EventLoop.shared() { loop.cancelTimer(timer) }
        waiter.continuation.resume(returning: .success(item))
    }

    private func giveUp(_ id: UInt64, _ failure: Failure, loop: EventLoop?) {
        let waiter = state.withLock { state -> Waiter? in
            guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return state.waiters.remove(at: index)
        }
        guard let waiter else { return }
        if let timer = waiter.timer, let loop { loop.cancelTimer(timer) }
        waiter.continuation.resume(returning: .failure(failure))
    }
}
