import CMesosCommandModules
import Glibc
import MesosCommandModulesABI
import Synchronization

/// An isolator made through the C ABI, as the Mesos module makes one, whose `isolator_usage` events are run with
/// `mcm_run_event` and waited for on a semaphore the result callback posts: what the agent sees, from its call to
/// the callback. (The Swift API's caller is a task, resumed on Swift's pool once its event is answered.)
final class ABIIsolator {
    private struct Waiter {
        var semaphore = sem_t()
        var status = MCM_STATUS_ERROR
    }

    fileprivate let module: OpaquePointer
    private let waiter = UnsafeMutablePointer<Waiter>.allocate(capacity: 1)

    init(parameters: [(String, String)]) throws {
        waiter.initialize(to: Waiter())
        sem_init(&waiter.pointee.semaphore, 0, 0)
        var error: UnsafeMutablePointer<CChar>?
        let keys: [UnsafePointer<CChar>?] = parameters.map { UnsafePointer(strdup($0.0)) }
        let values: [UnsafePointer<CChar>?] = parameters.map { UnsafePointer(strdup($0.1)) }
        defer { (keys + values).forEach { free(UnsafeMutablePointer(mutating: $0)) } }
        guard let created = mcm_module_create(MCM_KIND_ISOLATOR, keys, values, parameters.count, nil, &error) else {
            let message = error.map { String(cString: $0) } ?? "mcm_module_create failed"
            mcm_free(error)
            sem_destroy(&waiter.pointee.semaphore)
            waiter.deallocate()
            throw BenchFailure(message)
        }
        module = created
    }

    deinit {
        mcm_module_destroy(module)
        sem_destroy(&waiter.pointee.semaphore)
        waiter.deallocate()
    }

    /// One usage event, from `mcm_run_event` to its callback; throws unless it succeeded. Blocks the calling thread
    /// meanwhile (bench only: one event at a time).
    func usage() throws {
        let container = #"{"value":"bench"}"#
        let status = container.withCString { id in
            "container_id".withCString { key -> mcm_status in
                var fragment = mcm_fragment(key: key, json: id, json_length: strlen(id))
                _ = mcm_run_event(module, "isolator_usage", &fragment, 1, { context, status, _, _ in
                    let waiter = context!.assumingMemoryBound(to: Waiter.self)
                    waiter.pointee.status = status
                    sem_post(&waiter.pointee.semaphore)
                }, UnsafeMutableRawPointer(waiter))
                while sem_wait(&waiter.pointee.semaphore) != 0 && errno == EINTR {}
                return waiter.pointee.status
            }
        }
        guard status == MCM_STATUS_RESULT else {
            throw BenchFailure("isolator_usage through the C ABI answered status \(status.rawValue), not MCM_STATUS_RESULT")
        }
    }
}

extension ABIIsolator {
    /// Events answered per second with `inFlight` usage events in flight, each callback letting the next start.
    func throughput(inFlight: Int, events: Int) throws -> Double {
        let window = Window()
        let context = Unmanaged.passRetained(window)
        defer { context.release() }
        let container = #"{"value":"bench"}"#
        let start = ContinuousClock.now
        container.withCString { id in
            "container_id".withCString { key in
                var fragment = mcm_fragment(key: key, json: id, json_length: strlen(id))
                for submitted in 0..<events {
                    if submitted >= inFlight { while sem_wait(&window.semaphore) != 0 && errno == EINTR {} }
                    _ = mcm_run_event(module, "isolator_usage", &fragment, 1, { context, status, _, _ in
                        let window = Unmanaged<Window>.fromOpaque(context!).takeUnretainedValue()
                        if status != MCM_STATUS_RESULT { window.failures.add(1, ordering: .relaxed) }
                        sem_post(&window.semaphore)
                    }, context.toOpaque())
                }
                for _ in 0..<min(inFlight, events) { while sem_wait(&window.semaphore) != 0 && errno == EINTR {} }
            }
        }
        let (s, atto) = (ContinuousClock.now - start).components
        let failures = window.failures.load(ordering: .relaxed)
        if failures > 0 { throw BenchFailure("\(failures) of \(events) usage events through the C ABI failed") }
        return Double(events) / (Double(s) + Double(atto) / 1e18)
    }

    /// The events in flight's semaphore and failures, shared with the C callback.
    private final class Window: @unchecked Sendable {
        var semaphore = sem_t()
        let failures = Atomic<Int>(0)
        init() { sem_init(&semaphore, 0, 0) }
        deinit { sem_destroy(&semaphore) }
    }
}

struct BenchFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
