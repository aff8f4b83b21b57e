import CMesosCommandModules
import Glibc
import MesosCommandModulesABI
import Synchronization

/// An isolator made through the C ABI, as the Mesos module makes one, whose `isolator_usage` events are run with
/// `mcm_run_event` and waited for on a semaphore the result callback posts: what the agent sees, from its call to
/// the callback. (The Swift API's caller is a task, resumed on Swift's pool once its event is answered.)
final class ABIIsolator {
    private let module: OpaquePointer
    /// The answered events' semaphore and failures, shared with the C callback.
    private let answers = Answers()

    private final class Answers: @unchecked Sendable {
        var semaphore = sem_t()
        let failures = Atomic<Int>(0)
        init() { sem_init(&semaphore, 0, 0) }
        deinit { sem_destroy(&semaphore) }

        /// Waits for one more answer.
        func wait() { while sem_wait(&semaphore) != 0 && errno == EINTR {} }
    }

    init(parameters: [(String, String)]) throws {
        var error: UnsafeMutablePointer<CChar>?
        let keys: [UnsafePointer<CChar>?] = parameters.map { UnsafePointer(strdup($0.0)) }
        let values: [UnsafePointer<CChar>?] = parameters.map { UnsafePointer(strdup($0.1)) }
        defer { (keys + values).forEach { free(UnsafeMutablePointer(mutating: $0)) } }
        guard let created = mcm_module_create(MCM_KIND_ISOLATOR, keys, values, parameters.count, nil, &error) else {
            let message = error.map { String(cString: $0) } ?? "mcm_module_create failed"
            mcm_free(error)
            throw BenchFailure(message)
        }
        module = created
    }

    deinit { mcm_module_destroy(module) }

    /// One usage event, from `mcm_run_event` to its callback; throws unless it succeeded. Blocks the calling thread
    /// meanwhile (bench only).
    func usage() throws { _ = try throughput(inFlight: 1, events: 1) }

    /// Events answered per second with `inFlight` usage events in flight, each answer letting the next start;
    /// throws if any did not succeed.
    func throughput(inFlight: Int, events: Int) throws -> Double {
        let failuresBefore = answers.failures.load(ordering: .relaxed)
        let context = Unmanaged.passUnretained(answers).toOpaque()
        let start = ContinuousClock.now
        #"{"value":"bench"}"#.withCString { id in
            "container_id".withCString { key in
                var fragment = mcm_fragment(key: key, json: id, json_length: strlen(id))
                for submitted in 0..<events {
                    if submitted >= inFlight { answers.wait() }
                    _ = mcm_run_event(module, "isolator_usage", &fragment, 1, { context, status, _, _ in
                        let answers = Unmanaged<Answers>.fromOpaque(context!).takeUnretainedValue()
                        if status != MCM_STATUS_RESULT { answers.failures.add(1, ordering: .relaxed) }
                        sem_post(&answers.semaphore)
                    }, context)
                }
                for _ in 0..<min(inFlight, events) { answers.wait() }
            }
        }
        let (s, atto) = (ContinuousClock.now - start).components
        let failures = answers.failures.load(ordering: .relaxed) - failuresBefore
        if failures > 0 {
            throw BenchFailure("\(failures) of \(events) isolator_usage events through the C ABI did not answer MCM_STATUS_RESULT")
        }
        return Double(events) / (Double(s) + Double(atto) / 1e18)
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
