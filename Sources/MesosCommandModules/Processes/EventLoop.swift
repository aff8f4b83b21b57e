import CMesosCommandSpawn
import Glibc
import Synchronization

/// Something the event loop watches: its file descriptors (registered with a tag) and, optionally, a time at
/// which it wants to be woken. Clients live on the loop thread only: every method is called there.
protocol LoopClient: AnyObject {
    /// One of the client's fds, registered with `tag`, is ready (readable, writable, or closed).
    func ready(tag: UInt8, loop: EventLoop)
    /// When `wake(now:loop:)` is next due (monotonic nanoseconds), if ever. Read after every loop iteration.
    var wakeAt: UInt64? { get }
    func wake(now: UInt64, loop: EventLoop)
}

/// The engine's one waiting thread, for the whole process: epoll over the pidfds and pipes of every command
/// and worker, the deadlines of every event, and work handed over by other threads (`execute`).
///
/// Why one thread and not one per command: at 64 commands in flight that is 64 blocked threads; why not
/// SIGCHLD: the agent owns its signal handlers, and `waitpid(-1)` would steal the agent's own children.
/// The loop thread never exits, which also makes it the right thread to start workers from (their
/// PR_SET_PDEATHSIG follows the thread that started them).
///
/// Nothing here may crash the agent: failing to create the loop (no fds, no threads) is an error for the
/// event that needed it, and the next event tries again.
final class EventLoop: @unchecked Sendable {
    private static let instance = Mutex<EventLoop?>(nil)

    /// The process's loop, started on first use. Throws when it cannot be started (out of fds, threads).
    static func shared() throws(SystemFailure) -> EventLoop {
        try instance.withLock { (instance: inout EventLoop?) throws(SystemFailure) -> EventLoop in
            if let loop = instance { return loop }
            let loop = try EventLoop()
            instance = loop
            return loop
        }
    }

    private struct Inbox {
        var work: [@Sendable (EventLoop) -> Void] = []
        /// The eventfd was written since the loop last took the work: no need to write it again.
        var wakePending = false
    }

    private let inbox = Mutex(Inbox())
    private let nextClientID = Atomic<UInt64>(1)
    private let epollFD: Int32
    private let wakeFD: Int32
    /// Wakes the loop at the earliest deadline handed over lazily (see `wake(by:)`).
    private let timerFD: Int32
    /// When `timerFD` is armed for (UInt64.max: not armed).
    private let armedAt = Mutex<UInt64>(.max)
    /// The epoll user data of the wake eventfd and of the timer; clients' data starts at 1 << 3.
    private static let wakeData: UInt64 = 0
    /// How many reads (of up to 64 KiB each) a client makes of one fd per loop pass. A child writing without
    /// pause must not keep the loop from its other fds, deadlines and kills: what is left is read at the next
    /// pass (epoll is level-triggered). 1 MiB covers a pipe of the largest size an unprivileged process can set
    /// (/proc/sys/fs/pipe-max-size), so a child that exited leaves nothing unread after one pass.
    static let readsPerPass = 17

    private static let timerData: UInt64 = 1
    private var thread = pthread_t()

    // Owned by the loop thread.
    private var clients: [UInt64: any LoopClient] = [:]
    /// Jobs of tasks that prefer the loop (``TaskExecutor``) enqueued by the loop thread itself — typically a task
    /// resumed by a client's `ready`: run at the end of the same pass, without a wake-up.
    private var jobs: [UnownedJob] = []
    private var scratch = [UInt8](repeating: 0, count: 1 << 16)

    private init() throws(SystemFailure) {
        epollFD = mcm_epoll_create()
        guard epollFD >= 0 else { throw SystemFailure("epoll_create1", errno) }
        wakeFD = mcm_eventfd()
        guard wakeFD >= 0 else {
            let code = errno
            close(epollFD)
            throw SystemFailure("eventfd", code)
        }
        timerFD = mcm_timerfd()
        guard timerFD >= 0 else {
            let code = errno
            close(epollFD)
            close(wakeFD)
            throw SystemFailure("timerfd_create", code)
        }
        if mcm_epoll_add(epollFD, wakeFD, Self.wakeData, 0) != 0 || mcm_epoll_add(epollFD, timerFD, Self.timerData, 0) != 0 {
            let code = errno
            close(epollFD)
            close(wakeFD)
            close(timerFD)
            throw SystemFailure("epoll_ctl", code)
        }
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { context in
            let loop = Unmanaged<EventLoop>.fromOpaque(context!).takeRetainedValue()
            loop.run()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<EventLoop>.fromOpaque(context).release()
            close(epollFD)
            close(wakeFD)
            close(timerFD)
            throw SystemFailure("pthread_create (the engine's event loop thread)", rc)
        }
        pthread_detach(thread)
    }

    /// A fresh client id, from any thread (so that a caller knows the id it may cancel before the client runs).
    func makeClientID() -> UInt64 { nextClientID.wrappingAdd(1, ordering: .relaxed).oldValue }

    /// Runs `work` on the loop thread, soon — or, with `wake` false, when the loop next wakes for any reason
    /// (a ready fd, a deadline, other work): for work that only matters together with such an event. Each
    /// iteration runs the inbox before it looks at the fds that woke it, so work handed over before a fd became
    /// ready runs before that fd is handled.
    func execute(wake: Bool = true, _ work: @escaping @Sendable (EventLoop) -> Void) {
        if wake && HandOvers.isCounting && !isLoopThread { HandOvers.note() }
        let needsWake = inbox.withLock { inbox in
            inbox.work.append(work)
            guard wake, !inbox.wakePending else { return false }
            inbox.wakePending = true
            return true
        }
        // One wake-up per batch: the loop drains the whole inbox each time.
        if needsWake {
            var one: UInt64 = 1
            _ = Glibc.write(wakeFD, &one, 8)
        }
    }

    /// Makes sure the loop wakes no later than `deadline` (monotonic ns), from any thread, without waking it
    /// now: for work handed over lazily (`execute(wake: false)`) that has a deadline. A timer syscall at most,
    /// and none when the loop is already due to wake earlier.
    func wake(by deadline: UInt64) {
        armedAt.withLock { armedAt in
            guard deadline < armedAt else { return }
            mcm_timerfd_arm(timerFD, max(deadline, 1))
            armedAt = deadline
        }
    }

    /// Runs `work` on the loop thread at `deadline` (monotonic ns), unless cancelled with `cancelTimer`.
    @discardableResult
    func schedule(at deadline: UInt64, _ work: @escaping @Sendable () -> Void) -> UInt64 {
        let id = makeClientID()
        execute { loop in loop.add(Timer(id: id, deadline: deadline, work: work), id: id) }
        return id
    }

    func cancelTimer(_ id: UInt64) {
        execute { loop in loop.remove(id) }
    }

    // MARK: - Loop thread only

    func add(_ client: any LoopClient, id: UInt64) { clients[id] = client }

    func remove(_ id: UInt64) { clients[id] = nil }

    func client(_ id: UInt64) -> (any LoopClient)? { clients[id] }

    /// Whether the caller runs on the loop thread.
    var isLoopThread: Bool { pthread_equal(pthread_self(), thread) != 0 }

    /// Whether the caller runs on the thread of the process's loop, if it was started.
    static var isOnLoopThread: Bool { instance.withLock { $0 }?.isLoopThread ?? false }

    /// Whether the caller runs a task whose executor is the loop: on the loop thread, or the first part of a task
    /// started on its creator's thread (``EventExecution/startHere(_:)``).
    static var runsLoopJob: Bool { mcm_running_loop_job() != 0 || isOnLoopThread }

    /// Registers `fd` of client `id`; returns 0 or the errno of epoll_ctl.
    func register(_ fd: Int32, id: UInt64, tag: UInt8, writable: Bool = false) -> Int32 {
        mcm_epoll_add(epollFD, fd, id << 3 | UInt64(tag & 7), writable ? 1 : 0) == 0 ? 0 : errno
    }

    func unregister(_ fd: Int32) { mcm_epoll_remove(epollFD, fd) }

    /// One read(2) of `fd` into the loop's buffer; `body` sees the bytes read. Returns read's result (errno set
    /// when negative).
    func read(_ fd: Int32, _ body: (UnsafeRawBufferPointer) -> Void) -> Int {
        scratch.withUnsafeMutableBytes { buffer in
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n > 0 { body(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) }
            return n
        }
    }

    /// Runs the work handed over so far (loop thread). The loop does so before it handles ready fds; a client
    /// may call it when what it just read may depend on work handed over meanwhile.
    func runHandedOverWork() {
        let work = inbox.withLock { inbox in
            defer {
                inbox.work.removeAll(keepingCapacity: true)
                inbox.wakePending = false
            }
            return inbox.work
        }
        for item in work { item(self) }
    }

    private final class Timer: LoopClient {
        let id: UInt64
        let deadline: UInt64
        let work: @Sendable () -> Void
        init(id: UInt64, deadline: UInt64, work: @escaping @Sendable () -> Void) {
            self.id = id
            self.deadline = deadline
            self.work = work
        }
        func ready(tag: UInt8, loop: EventLoop) {}
        var wakeAt: UInt64? { deadline }
        func wake(now: UInt64, loop: EventLoop) {
            loop.remove(id)
            work()
        }
    }

    /// The name of the loop thread (in `ps -T`, `top -H`, /proc/<pid>/task/*/comm).
    static let threadName = "mcm-event-loop"

    private func run() {
        mcm_name_thread(Self.threadName)
        var ready = [UInt64](repeating: 0, count: 64)
        while true {
            let count = ready.withUnsafeMutableBufferPointer {
                mcm_epoll_wait(epollFD, $0.baseAddress, Int32($0.count), timeoutMilliseconds())
            }
            if count < 0 && errno != EINTR {
                // Only a broken epoll fd fails here; never spin, never crash the agent.
                usleep(10_000)
            }
            // The eventfd and the timer first, then the inbox: work handed over after this either is taken
            // below or writes the eventfd again; a deadline handed over after the timer is reset arms it again,
            // and one handed over before is in the inbox, whose deadlines the loop knows from then on.
            for i in 0..<max(0, Int(count)) where ready[i] <= Self.timerData {
                var value: UInt64 = 0
                _ = Glibc.read(ready[i] == Self.wakeData ? wakeFD : timerFD, &value, 8)
                if ready[i] == Self.timerData { armedAt.withLock { $0 = .max } }
            }
            runHandedOverWork()
            for i in 0..<max(0, Int(count)) where ready[i] > Self.timerData {
                clients[ready[i] >> 3]?.ready(tag: UInt8(ready[i] & 7), loop: self)
            }
            let now = MonotonicClock.now()
            for client in Array(clients.values) {
                if let due = client.wakeAt, due <= now { client.wake(now: now, loop: self) }
            }
            runJobs()
        }
    }

    /// Runs the jobs the loop thread enqueued for itself, and those they enqueue in turn.
    private func runJobs() {
        while !jobs.isEmpty {
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }

    private func timeoutMilliseconds() -> Int32 {
        var earliest = UInt64.max
        for client in clients.values {
            if let due = client.wakeAt { earliest = min(earliest, due) }
        }
        guard earliest != .max else { return -1 }
        let now = MonotonicClock.now()
        guard earliest > now else { return 0 }
        return Int32(clamping: (earliest - now + 999_999) / 1_000_000)
    }
}

/// The loop as the executor of the tasks of events that never block (``EventExecution``): a task resumed by
/// what the loop learns — a worker's answer — goes on on the loop thread in the same pass, instead of waiting for a
/// thread of Swift's pool to be woken for it. Work enqueued from another thread is handed over as any other.
///
/// A task created inside ``EventExecution/startHere(_:)`` runs its first part on the creating thread instead: up to
/// its first suspension, before its creation returns.
extension EventLoop: TaskExecutor {
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if isLoopThread {
            jobs.append(job)
        } else if mcm_take_start_here() != 0 {
            mcm_set_running_loop_job(1)
            defer { mcm_set_running_loop_job(0) }
            job.runSynchronously(on: asUnownedTaskExecutor())
        } else {
            execute { loop in job.runSynchronously(on: loop.asUnownedTaskExecutor()) }
        }
    }
}
