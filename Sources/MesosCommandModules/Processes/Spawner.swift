import CMesosCommandSpawn
import Glibc
import Synchronization

/// The threads that start commands. `posix_spawn` blocks its caller until the child has called exec(2) —
/// forever if the command, or its `#!` interpreter, is on a hung mount. On one of Swift's few cooperative
/// threads that would stop every event of the engine, and the event could not answer at its deadline; here it
/// blocks one spawner thread, the event answers at its deadline, and the other threads start the next commands.
final class Spawner: @unchecked Sendable {
    private static let instance = Mutex<Spawner?>(nil)
    /// How many commands can be started at once (and hang in exec at once before new starts wait).
    static let threads = 4

    /// The process's spawner, started on first use. Throws when its threads cannot be created.
    static func shared() throws(SystemFailure) -> Spawner {
        try instance.withLock { (instance: inout Spawner?) throws(SystemFailure) -> Spawner in
            if let spawner = instance { return spawner }
            let spawner = try Spawner()
            instance = spawner
            return spawner
        }
    }

    // Allocated, not stored properties: a pthread mutex must keep its address, which `&property` does not
    // promise.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var jobs: [@Sendable () -> Void] = []
    private var idle = 0

    private init() throws(SystemFailure) {
        mutex.initialize(to: pthread_mutex_t())
        condition.initialize(to: pthread_cond_t())
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(condition, nil)
        var started = 0
        for _ in 0..<Self.threads {
            var thread = pthread_t()
            let context = Unmanaged.passRetained(self).toOpaque()
            let rc = pthread_create(&thread, nil, { context in
                Unmanaged<Spawner>.fromOpaque(context!).takeRetainedValue().work()
                return nil
            }, context)
            guard rc == 0 else {
                Unmanaged<Spawner>.fromOpaque(context).release()
                // Threads already started keep serving; none at all is a failure.
                if started > 0 { break }
                throw SystemFailure("pthread_create (the engine's spawner threads)", rc)
            }
            pthread_detach(thread)
            started += 1
        }
    }

    /// Only when no thread could be started (each thread holds the spawner for good).
    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    /// Runs `job` on a spawner thread, soon.
    func submit(_ job: @escaping @Sendable () -> Void) {
        HandOvers.note()
        pthread_mutex_lock(mutex)
        jobs.append(job)
        if idle > 0 { pthread_cond_signal(condition) }
        pthread_mutex_unlock(mutex)
    }

    /// The name of the spawner threads (in `ps -T`, `top -H`, /proc/<pid>/task/*/comm).
    static let threadName = "mcm-spawner"

    private func work() {
        mcm_name_thread(Self.threadName)
        while true {
            pthread_mutex_lock(mutex)
            while jobs.isEmpty {
                idle += 1
                pthread_cond_wait(condition, mutex)
                idle -= 1
            }
            let job = jobs.removeFirst()
            pthread_mutex_unlock(mutex)
            job()
        }
    }
}
