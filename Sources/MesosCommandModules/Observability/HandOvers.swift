import Synchronization

/// Counts the thread hand-overs of events (issue 22: the event path's cost is in them, not in the kernel): each
/// time an event's work passes to another thread that must be woken for it to go on — a task started from a
/// thread outside Swift's pool (Mesos' call), work queued to the event loop with a wake-up or to a spawner
/// thread, a waiting task resumed from another thread (the loop, a watch's thread). Off unless `bench` turns it
/// on: a relaxed load when off.
///
/// Not counted: work queued to the loop without waking it (`execute(wake: false)`: it runs when the loop wakes
/// anyway, for the child's exit or the worker's answer — those wake-ups are the kernel's, and the resumes they
/// lead to are counted), what Swift's executor does on its own between two suspension points of one task, and
/// work an event does not wait for (a watch's check asked for in passing).
public enum HandOvers {
    private static let enabled = Atomic<Bool>(false)
    private static let counter = Atomic<Int>(0)

    /// Starts counting (from 0); `bench` only.
    public static func startCounting() {
        counter.store(0, ordering: .relaxed)
        enabled.store(true, ordering: .relaxed)
    }

    public static func stopCounting() { enabled.store(false, ordering: .relaxed) }

    /// The hand-overs counted since `startCounting`.
    public static var count: Int { counter.load(ordering: .relaxed) }

    public static var isCounting: Bool { enabled.load(ordering: .relaxed) }

    @inline(__always)
    public static func note() {
        if enabled.load(ordering: .relaxed) { counter.add(1, ordering: .relaxed) }
    }
}
