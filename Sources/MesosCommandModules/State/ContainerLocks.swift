import Synchronization

/// One lock per container for the events that change its state (prepare, cleanup), so that a cleanup racing
/// a prepare of the same container sees it whole — remembered, persisted and its command run — or not at all.
/// Events of different containers never wait for each other; reads (usage, status, watch) take no lock.
final class ContainerLocks: Sendable {
    private let waiters = Mutex<[ContainerID: [CheckedContinuation<Void, Never>]]>([:])

    /// Runs `body` once no other event of the same container holds its lock.
    func withLock<T>(_ id: ContainerID, _ body: () async throws(EventError) -> T) async throws(EventError) -> T {
        await acquire(id)
        defer { release(id) }
        return try await body()
    }

    private func acquire(_ id: ContainerID) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let free = waiters.withLock { waiters in
                if waiters[id] == nil {
                    waiters[id] = []  // held, nobody waiting
                    return true
                }
                waiters[id]!.append(continuation)
                return false
            }
            if free { continuation.resume() }
        }
    }

    private func release(_ id: ContainerID) {
        let next = waiters.withLock { waiters -> CheckedContinuation<Void, Never>? in
            guard var queue = waiters[id], !queue.isEmpty else {
                waiters[id] = nil
                return nil
            }
            let next = queue.removeFirst()
            waiters[id] = queue
            return next
        }
        next?.resume()
    }
}
