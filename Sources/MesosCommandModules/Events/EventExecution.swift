import CMesosCommandSpawn
import Synchronization

/// Which thread runs an event's task, for a caller that starts one per event (the C ABI, for Mesos' calls).
///
/// Most events run on Swift's shared pool: their work may wait on the file system (the input and output files of
/// exec mode, the state files of prepare and cleanup), which the engine's event loop must never do. An event of a
/// worker-mode command of a hook, `usage` or `status` touches no file: its envelope, its request (written to a
/// non-blocking socket), the answer read by the loop anyway, its checks and metrics are all in memory. Its task may
/// run on the event loop (``EventLoop`` is a `TaskExecutor`), so that the worker's answer, which the loop reads, goes
/// on to the caller on the same thread: one thread hand-over less per event than on the pool (issue 22).
public enum EventExecution {
    /// Whether such events run on the loop (true) or on the pool, as before (`bench` compares both in one run).
    public static let onTheLoop = Atomic<Bool>(true)

    /// The executor for a task that runs `event` of a module configured by `configuration`: the event loop for an
    /// event that never blocks (see above), nil (Swift's pool) for the others, or when the loop cannot be started.
    public static func executor(for event: Event, of configuration: ModuleConfiguration) -> (any TaskExecutor)? {
        guard onTheLoop.load(ordering: .relaxed), neverBlocks(event, of: configuration) else { return nil }
        return try? EventLoop.shared()
    }

    /// Runs `create`, which creates one task with the loop as its executor preference: that task's first part runs
    /// on this thread, up to its first suspension, before `create` returns — for an event that never blocks, the
    /// envelope and the request to its worker, instead of a hand-over to the loop for them. Only the first job
    /// handed to the loop from this thread inside `create` runs here.
    public static func startHere<T>(_ create: () -> T) -> T {
        mcm_set_start_here(1)
        defer { mcm_set_start_here(0) }
        return create()
    }

    /// Whether the caller is the first part of a task started by ``startHere(_:)``, still on its creator's thread:
    /// it has not waited yet — or what it waited for was there before it could suspend (a continuation resumed
    /// before its task suspended goes on on the same thread).
    public static var onTheCreatorsThread: Bool { mcm_running_loop_job() != 0 }

    /// Runs `work` on the loop thread (for an answer that must not reach its caller from the caller's own thread,
    /// before the call that started the event has returned); here if the loop cannot be had.
    public static func handToTheLoop(_ work: @escaping @Sendable () -> Void) {
        guard let loop = try? EventLoop.shared() else { return work() }
        loop.execute { _ in work() }
    }

    /// Whether `event` of such a module does nothing, from its start to its answer, that may block its thread.
    public static func neverBlocks(_ event: Event, of configuration: ModuleConfiguration) -> Bool {
        guard let command = configuration.command(for: event), command.mode == .worker else { return false }
        return event.kind == .hook || event == .usage || event == .status
    }
}
