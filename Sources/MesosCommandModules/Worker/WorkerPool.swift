import CMesosCommandSpawn
import Glibc
import Logging
import Synchronization

/// The worker processes of one command of one module (SPEC §8): `<event>_workers` long-lived processes, started
/// on first use, each serving one event at a time over a line protocol, shared by the module's events whose
/// `<event>_command` names this file in worker mode.
///
/// A worker that fails (times out, exits, crashes, breaks the protocol) is stopped and a fresh one starts for
/// the next event; after repeated failures the restarts back off exponentially, and events fail at once
/// meanwhile, naming the last failure. No event ever waits on a dead worker.
///
/// A worker is also replaced, without failing anything, before its next event once the command's file changed on
/// disk (``CommandFileWatch``) or it served `<event>_worker_max_events` events: its stdin is closed (it is idle,
/// its last event answered), its group killed once it exits or after the grace period, and a fresh worker serves
/// the event. Such a replacement is no failure: no backoff, not in `restarts`.
final class WorkerPool: Sendable {
    /// The protocol a worker is started with, in `MESOS_COMMAND_MODULES_PROTOCOL`.
    static let protocolVersion = "worker/1"

    let path: String
    let count: Int
    /// `<event>_worker_max_events`: events a worker serves before it is replaced (nil: no limit).
    let maxEvents: Int?
    /// That key, for the log.
    private let maxEventsKey: String?
    /// `<event>_user`: the user the workers run as (nil: the agent's).
    let user: CommandUser?
    private let gracePeriod: Double
    private let lineLimit: Int
    private let logger: Logger
    let file: CommandFileWatch
    private let records: WorkerRecords?
    /// containment=cgroup: each worker runs in a cgroup of its own, killed with it.
    private let cgroups: CgroupTree?
    private let slots: FairPool<Int>
    private let processes: Mutex<[Handle?]>
    private let health = Mutex(Health())
    private let nextRequestID = Atomic<UInt64>(1)
    private let closed = Atomic<Bool>(false)
    /// Worker processes not yet reaped.
    private let alive = Atomic<Int>(0)
    /// Workers stopped after a failure (each is replaced by a fresh one for the next event).
    let restarts = Atomic<Int>(0)

    /// A running worker: its loop client id and the process, owned by the loop thread; the generation of the
    /// command file it was started from, and how many events it was handed.
    private struct Handle: @unchecked Sendable {
        let id: UInt64
        let process: WorkerProcess
        let generation: Int
        var served = 0
        /// The worker's cgroup (containment=cgroup): what it used while it served an event is that event's CPU.
        var cgroup: Cgroup?
    }

    /// Consecutive failures and when the next start is allowed.
    private struct Health {
        var failures = 0
        var retryAt: UInt64 = 0
        var lastFailure = ""
    }

    /// The delay before a restart after `failures` consecutive failures: none after the first (a fresh worker
    /// serves the next event), then 0.5 s, 1 s, 2 s … up to 30 s.
    static func backoff(afterFailures failures: Int) -> Double {
        failures <= 1 ? 0 : min(0.5 * Double(1 << min(failures - 2, 10)), 30)
    }

    init(path: String, count: Int, gracePeriod: Double, outputMaxBytes: Int,
         maxEvents: (count: Int, key: String)? = nil, records: WorkerRecords? = nil, cgroups: CgroupTree? = nil,
         user: CommandUser? = nil, logger: Logger) {
        self.cgroups = cgroups
        self.path = path
        self.user = user
        self.count = count
        self.maxEvents = maxEvents?.count
        self.maxEventsKey = maxEvents?.key
        self.file = CommandFileWatch(path: path, logger: logger)
        self.records = records
        self.gracePeriod = gracePeriod
        // An answer line holds the output and a few members around it.
        self.lineLimit = outputMaxBytes + 4096
        self.logger = logger
        self.slots = FairPool(items: Array((0..<count).reversed()))
        self.processes = Mutex(Array(repeating: nil, count: count))
    }

    deinit { shutdown() }

    /// Serves one event: waits for a free worker (the wait counts against `deadline`), starts it if needed,
    /// sends the request and waits for the answer until `deadline`.
    ///
    /// - Returns: the answer's output; nil for `null`.
    /// - Throws: ``CommandError`` with the seed's wording where it applies (`took too long to execute`), a
    ///   worker's own error as `Command "<path>" failed. Cause: …`, and what a broken worker did.
    /// The worker's answer to one event, and the CPU seconds its worker used since it last answered (its cgroup's
    /// `cpu.stat`; 0 under containment=process_group, where a live worker's use cannot be read).
    /// `exactCPU` (debug, where each event's CPU is logged): `cpu.stat` read at every answer, not every 10 ms at most.
    func run(_ event: Event, envelope: String, deadline: Deadline, logPrefix: String, exactCPU: Bool = false)
        async throws(CommandError) -> (output: JSONValue?, cpuSeconds: Double)
    {
        let slot = try await acquireSlot(until: deadline)
        var released = false
        let release: @Sendable () -> Void = { [self] in releaseSlot(slot) }
        defer { if !released { release() } }

        let loop: EventLoop
        do {
            loop = try EventLoop.shared()
        } catch {
            throw failure(.setup("cannot start the engine's event loop: \(error)"))
        }
        let handle = try await process(in: slot, deadline: deadline, loop: loop)
        let requestID = nextRequestID.wrappingAdd(1, ordering: .relaxed).oldValue
        let completion = Completion<WorkerReply>()
        released = true  // from here, the slot is freed by the worker (failure, dropped answer) or below
        send(event, envelope, requestID, to: handle, deadline: deadline, completion: completion, release: release,
             logPrefix: logPrefix, loop: loop)
        let process = UncheckedSendable(handle.process)
        let reply = await withTaskCancellationHandler {
            await completion.value
        } onCancel: {
            loop.execute { _ in process.value.abandon(requestID) }
        }
        // Read before the slot is free again (the next event of this worker counts from here); at most every 10 ms
        // per worker unless each event's is logged (debug).
        let cpuSeconds: Double = if case .line = reply, let cgroup = handle.cgroup {
            exactCPU ? cgroup.takeCPUSeconds() : cgroup.takeCPUSeconds(atMostEvery: 10_000_000)
        } else { 0 }
        do {
            let output = try interpret(reply, requestID, process: process, deadline: deadline, release: release,
                                       loop: loop)
            return (output, cpuSeconds)
        } catch {
            var error = error
            error.cpuSeconds = cpuSeconds
            throw error
        }
    }

    /// A free slot, waiting until `deadline`. A slot handed over at or after the deadline (or to a cancelled
    /// event) is given back at once: nothing is sent to a worker for an event that is already over.
    private func acquireSlot(until deadline: Deadline) async throws(CommandError) -> Int {
        let waitingFor = "one of the \(count) worker(s) of this command to be free"
        let slot: Int
        do {
            slot = try await slots.acquire(until: deadline)
        } catch {
            switch error {
            case .timedOut: throw failure(.timedOutWaiting(timeout: deadline.timeout, waitingFor: waitingFor))
            case .cancelled: throw failure(.cancelled)
            case .system(let cause): throw failure(.setup("\(cause)"))
            }
        }
        if deadline.hasPassed || Task.isCancelled {
            releaseSlot(slot)
            throw failure(Task.isCancelled ? .cancelled : .timedOutWaiting(timeout: deadline.timeout, waitingFor: waitingFor))
        }
        return slot
    }

    /// Writes the request from this thread (the loop is not woken when all of it goes at once), then hands it to
    /// the loop, which reads the answer and enforces the deadlines: the event's, and the worker's own — the
    /// timeout counted from now, so that a worker is never killed for the time an event waited for it.
    private func send(_ event: Event, _ envelope: String, _ requestID: UInt64, to handle: Handle, deadline: Deadline,
                      completion: Completion<WorkerReply>, release: @escaping @Sendable () -> Void, logPrefix: String,
                      loop: EventLoop) {
        var line = "{\"id\":\(requestID),\"event\":\"\(event.key)\",\"input\":"
        line += envelope
        line += "}\n"
        let bytes = Array(line.utf8)
        let workerDeadline = MonotonicClock.now() &+ MonotonicClock.nanoseconds(deadline.timeout)
        let request = WorkerProcess.Request(
            id: requestID, bytes: bytes, eventDeadline: deadline.nanoseconds, workerDeadline: workerDeadline,
            completion: completion, done: release, logPrefix: logPrefix)
        let process = UncheckedSendable(handle.process)
        // Handed to the loop before the write, without waking it: the loop runs its inbox before it reads an
        // answer, and wakes by the event's deadline. It needs waking only to write the rest, or to fail.
        loop.execute(wake: false) { loop in process.value.accept(request, on: loop) }
        loop.wake(by: deadline.nanoseconds)
        switch handle.process.input.send(bytes, requestID: requestID) {
        case .all:
            break
        case .part(let written):
            loop.execute { loop in process.value.continueWriting(requestID, from: written, on: loop) }
        case .closed:
            loop.execute { loop in process.value.writeFailed(requestID, errno: EPIPE, on: loop) }
        case .failed(let code):
            loop.execute { loop in process.value.writeFailed(requestID, errno: code, on: loop) }
        }
    }

    /// What the worker's reply means for the event.
    private func interpret(_ reply: WorkerReply, _ requestID: UInt64, process: UncheckedSendable<WorkerProcess>,
                           deadline: Deadline, release: @escaping @Sendable () -> Void, loop: EventLoop)
        throws(CommandError) -> JSONValue?
    {
        switch reply {
        case .cancelled:
            throw failure(.cancelled)
        case .timedOut:
            throw failure(.timedOut(timeout: deadline.timeout))
        case .failed(let failure):
            switch failure {
            case .timedOut: throw self.failure(.timedOut(timeout: deadline.timeout))
            case .cannotExec(let code): throw self.failure(.cannotStart(errno: code))
            default: throw self.failure(.workerBroke(failure.description))
            }
        case .line(let bytes):
            switch WorkerAnswer(parsing: bytes, requestID: requestID) {
            case .output(let output):
                recordSuccess()
                release()
                return output
            case .error(let cause):
                recordSuccess()
                release()
                throw failure(.workerAnsweredError(cause: cause))
            case .invalid(let what):
                // A worker that does not follow the protocol cannot be trusted with the next event: stopped
                // before its slot is free again.
                loop.execute { loop in
                    process.value.stop(because: what, on: loop)
                    release()
                }
                throw failure(.workerBroke(what))
            }
        }
    }

    /// Frees `slot`. One whose worker is gone goes after the live ones: a free live worker serves the next
    /// event, even while restarts are on hold.
    private func releaseSlot(_ slot: Int) {
        slots.release(slot, preferred: processes.withLock { $0[slot] != nil })
    }

    /// The worker of `slot`, started if it is not running, or replaced by a fresh one if its command changed on
    /// disk or it served `maxEvents` events — unless repeated failures put restarts on hold: then the event fails
    /// at once, naming the last failure (a live worker due for replacement serves it meanwhile).
    private func process(in slot: Int, deadline: Deadline, loop: EventLoop) async throws(CommandError) -> Handle {
        let generation = await file.generation(deadline: deadline.nanoseconds)
        let maxEvents = self.maxEvents ?? .max
        let (current, due) = processes.withLock { processes -> (Handle?, Bool) in
            guard let handle = processes[slot] else { return (nil, false) }
            if handle.generation == generation && handle.served < maxEvents {
                processes[slot]?.served += 1
                return (handle, false)
            }
            return (handle, true)
        }
        if let current, !due { return current }
        let now = MonotonicClock.now()
        let backingOff = health.withLock { health -> (Double, String)? in
            health.retryAt > now ? (Double(health.retryAt - now) / 1e9, health.lastFailure) : nil
        }
        if let (retryIn, last) = backingOff {
            if let current, let handle = serveOnce(current, in: slot) { return handle }
            throw failure(.workerBackingOff(retryIn: retryIn, lastFailure: last))
        }
        if let current, current.generation == generation, let key = maxEventsKey {
            let message = "[worker \(current.process.name), pid \(current.process.group.pid)] Served \(current.served) "
                + "events (\(key)=\(maxEvents)): replaced by a fresh worker"
            logger.info("\(message)")
        }
        let started = Completion<Result<Handle, CommandError>>()
        let retiring = current.map { UncheckedSendable($0.process) }
        loop.execute { [self] loop in
            // Idle (its slot is this event's): it reads the end of its stdin and exits; its group is killed then,
            // or after the grace period.
            retiring?.value.shutdown(on: loop)
            started.complete(start(slot, generation: generation, on: loop))
        }
        switch await started.value {
        case .success(let handle): return handle
        case .failure(let error):
            recordFailure(error.description)
            throw error
        }
    }

    /// `handle`, counted one more event, if it still is the worker of `slot`.
    private func serveOnce(_ handle: Handle, in slot: Int) -> Handle? {
        processes.withLock { processes in
            guard processes[slot]?.id == handle.id else { return nil }
            processes[slot]?.served += 1
            return processes[slot]
        }
    }

    /// Starts a worker on the loop thread (whose life its PR_SET_PDEATHSIG follows), and records it (see
    /// ``WorkerRecords``).
    private func start(_ slot: Int, generation: Int, on loop: EventLoop) -> Result<Handle, CommandError> {
        var stdin: [Int32] = [-1, -1]
        var stdout: [Int32] = [-1, -1]
        var stderr: [Int32] = [-1, -1]
        guard mcm_socketpair(&stdin) == 0, mcm_pipe(&stdout, 0) == 0, mcm_pipe(&stderr, 0) == 0 else {
            let code = errno
            for fd in stdin + stdout + stderr where fd >= 0 { close(fd) }
            return .failure(failure(.setup("cannot create the worker's pipes: \(SystemError.describe(code))")))
        }
        var pid: pid_t = 0
        var report: Int32 = -1
        let records = self.records
        let cgroups = self.cgroups
        let cgroup = cgroups?.makeWorkerCgroup()
        if let cgroups, cgroup == nil {
            let code = errno
            for fd in stdin + stdout + stderr { close(fd) }
            return .failure(failure(.setup(
                "cannot create the worker's cgroup in \(cgroups.path): \(SystemError.describe(code))")))
        }
        // The token lets the next start tell this worker's children from processes that reuse their pids.
        let environment = ["MESOS_COMMAND_MODULES_PROTOCOL=\(Self.protocolVersion)"] + (records.map { [$0.tokenEntry] } ?? [])
            + (user?.environment ?? [])
        let user = self.user
        let spawnError = withCStringArray([path]) { argv in
            withCStringArray(environment) { extra in
                path.withCString { path in
                    func spawn(_ credentials: UnsafePointer<mcm_credentials>?) -> Int32 {
                        var request = mcm_spawn_request(
                            path: path, argv: argv, extra_env: extra, stdin_fd: stdin[0], stdout_fd: stdout[1],
                            stderr_fd: stderr[1], cgroup_fd: cgroup?.fd ?? -1, credentials: credentials)
                        return mcm_spawn_worker(&request, &pid, &report)
                    }
                    return user.map { $0.withCredentials(spawn) } ?? spawn(nil)
                }
            }
        }
        close(stdin[0])
        close(stdout[1])
        close(stderr[1])
        guard spawnError == 0 else {
            for fd in [stdin[1], stdout[0], stderr[0]] { close(fd) }
            if let cgroup, let cgroups { cgroups.retireWorkerCgroup(cgroup, loop: loop) }
            return .failure(failure(.cannotStart(errno: spawnError)))
        }
        records?.record(pid)
        let leader = pid
        let id = loop.makeClientID()
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let logger = self.logger
        let process = WorkerProcess(
            id: id, pid: pid, report: report, input: WorkerInput(stdin: stdin[1]), stdout: stdout[0],
            stderr: stderr[0], cgroup: cgroup, lineLimit: lineLimit,
            gracePeriod: gracePeriod, name: name,
            log: { warning, message in
                if warning { logger.warning("\(message)") } else { logger.info("\(message)") }
            },
            gone: { [weak self] failure in self?.gone(slot, id: id, failure) },
            reaped: { [weak self] in
                if let cgroup, let cgroups { cgroups.retireWorkerCgroup(cgroup, loop: loop) }
                records?.forget(leader)
                self?.alive.subtract(1, ordering: .relaxed)
            })
        alive.add(1, ordering: .relaxed)
        let handle = Handle(id: id, process: process, generation: generation, served: 1, cgroup: cgroup)
        processes.withLock { $0[slot] = handle }
        logger.info("[worker \(name), pid \(pid)] Started worker \"\(path)\" (\(Self.protocolVersion))")
        process.start(on: loop)
        if closed.load(ordering: .relaxed) { process.shutdown(on: loop) }
        return .success(handle)
    }

    /// A worker can serve no more: its slot starts a fresh one for the next event (after the backoff, if it
    /// failed).
    private func gone(_ slot: Int, id: UInt64, _ failure: WorkerFailure?) {
        processes.withLock { if $0[slot]?.id == id { $0[slot] = nil } }
        guard let failure, failure.isTheWorkersFault else { return }
        restarts.add(1, ordering: .relaxed)
        recordFailure("Command \"\(path)\" (worker) \(failure).")
    }

    private func recordSuccess() {
        health.withLock { health in
            health.failures = 0
            health.retryAt = 0
        }
    }

    private func recordFailure(_ description: String) {
        let now = MonotonicClock.now()
        health.withLock { health in
            health.failures += 1
            health.lastFailure = description
            health.retryAt = now &+ MonotonicClock.nanoseconds(Self.backoff(afterFailures: health.failures))
        }
    }

    private func failure(_ code: CommandError.Code) -> CommandError { CommandError(command: path, code: code) }

    /// Closes the workers' stdin; each is killed (its whole group) after the grace period, or as soon as it
    /// exits. Returns at once.
    func shutdown() {
        guard !closed.exchange(true, ordering: .relaxed) else { return }
        file.stop()
        let running = processes.withLock { processes in
            defer { processes = Array(repeating: nil, count: processes.count) }
            return processes.compactMap { $0 }
        }
        guard !running.isEmpty, let loop = try? EventLoop.shared() else { return }
        for handle in running {
            let process = UncheckedSendable(handle.process)
            loop.execute { loop in process.value.shutdown(on: loop) }
        }
    }

    /// Waits (blocking) until every worker has been reaped, up to `deadline` (monotonic ns). Returns whether
    /// they all were.
    @discardableResult
    func waitUntilStopped(until deadline: UInt64) -> Bool {
        while alive.load(ordering: .relaxed) > 0 && MonotonicClock.now() < deadline { usleep(2000) }
        return alive.load(ordering: .relaxed) == 0
    }

    /// The pids of the running workers (for tests and the CLI).
    var pids: [pid_t] { processes.withLock { $0.compactMap { $0?.process.group.pid } } }
}
