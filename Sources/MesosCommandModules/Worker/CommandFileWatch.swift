import CMesosCommandSpawn
import Glibc
import Logging
import Synchronization

/// A worker's command file as `stat(2)` sees it, through symbolic links: what tells a deployment.
public struct CommandFileState: Equatable, Sendable {
    var device: UInt64
    var inode: UInt64
    var size: Int64
    var modifiedSeconds: Int
    var modifiedNanoseconds: Int
    var mode: UInt32

    /// The file at `path` now, or nil (errno set) if it cannot be stat'ed.
    public init?(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        self.init(info)
    }

    init(_ info: stat) {
        device = UInt64(info.st_dev)
        inode = UInt64(info.st_ino)
        size = Int64(info.st_size)
        modifiedSeconds = info.st_mtim.tv_sec
        modifiedNanoseconds = info.st_mtim.tv_nsec
        mode = info.st_mode
    }

    /// Whether `info` describes this very state (one stat, compared field by field: the per-event check).
    func matches(_ info: stat) -> Bool {
        inode == UInt64(info.st_ino) && size == Int64(info.st_size) && modifiedNanoseconds == info.st_mtim.tv_nsec
            && modifiedSeconds == info.st_mtim.tv_sec && device == UInt64(info.st_dev) && mode == info.st_mode
    }

    /// What makes `self` other code than `old` — a new file (inode), another size, another modification time —
    /// worded for the log; nil when it is the same (a change of mode or owner only).
    func difference(from old: CommandFileState) -> String? {
        if inode != old.inode || device != old.device { return "a new file (inode \(old.inode) → \(inode))" }
        if size != old.size { return "its size changed (\(old.size) → \(size) bytes)" }
        if modifiedSeconds != old.modifiedSeconds || modifiedNanoseconds != old.modifiedNanoseconds {
            return "it was modified (mtime \(old.modifiedSeconds).\(old.modifiedNanoseconds) → "
                + "\(modifiedSeconds).\(modifiedNanoseconds))"
        }
        return nil
    }
}

/// Notices that a worker's command file was replaced or changed on disk (SPEC §8: a worker serves the code that is
/// on disk), so that the workers started before are replaced by fresh ones.
///
/// How: a `stat(2)` of the path, compared with what the last one saw — about 1 µs, and nothing else to run.
/// inotify would cost nothing but misses what deployments do: a symbolic link switched in a directory above the
/// file (`/opt/app/current` → a new release) is a change in a directory it does not watch, network file systems
/// send no events, the agent's user has a bounded number of watches, and a full event queue loses them. `stat`
/// follows the path as exec(2) will.
///
/// Where: never on an event's thread. A `stat` of a file on a hung mount (NFS, FUSE) blocks until the mount
/// answers — forever, maybe; on one of Swift's cooperative threads (one per core) that would stop every module's
/// events after as many as there are cores. So each watch has its own thread that makes the checks, one at a
/// time, and an event reads what the last check saw:
/// - the last check was asked for under ``freshness`` ago: the event goes on at once (a clock read and a lock),
///   and one that finds it older than half of that asks for the next check without waiting for it — under a
///   steady flow of events no event waits, and the file is checked about every 5 ms;
/// - older (the first event after a pause): the event waits for a check asked for once it began — at most
///   ``patience``, and never past its deadline — and so sees a deployment made before it began;
/// - a check that does not return (a hung mount): events are served by the last known state, one warning says
///   so after ``hungAfter``, and an INFO line when the check returns. One thread per watch is pinned, never more.
///
/// The state the module loads with is read by the loading thread (which checked the command file already).
/// A file that disappears or stops being executable keeps the running workers (a fresh one could not start):
/// one warning, and a reload once a good file is back.
public final class CommandFileWatch: Sendable {
    public let path: String
    let checker: FileChecker

    /// How long what a check saw is taken as the file's state: a deployment is noticed by the events that begin
    /// this long after it, at the latest (those that begin sooner may still be served by the replaced code).
    public static let freshness: UInt64 = 10_000_000
    /// How long an event waits for the check it needs before it goes on with the last known state.
    static let patience: UInt64 = 50_000_000
    /// A check in flight for this long is reported (a hung mount).
    static let hungAfter: UInt64 = 1_000_000_000

    public init(path: String, logger: Logger) {
        self.path = path
        checker = FileChecker(path: path, logger: logger)
        checker.start()
    }

    deinit { checker.stop() }

    /// The generation of the code on disk, as the last check saw it (waiting for a new check only after a
    /// pause of ``freshness``, for ``patience`` at most, and never past `deadline`, monotonic ns). Never blocks
    /// its thread.
    public func generation(deadline: UInt64 = .max) async -> Int {
        switch checker.generation(now: MonotonicClock.now(), deadline: deadline) {
        case .known(let generation):
            return generation
        case .wait(let completion):
            return await completion.value
        }
    }

    /// Asks for a check and waits for it, however long it takes (tests: a change made before is then seen).
    func checkNow() async {
        if let completion = checker.checkNow() { _ = await completion.value }
    }

    /// Stops the watch's thread once its check in hand returns. Later calls of ``generation(deadline:)`` keep
    /// answering with the last known state.
    func stop() { checker.stop() }

    /// Whether the watch's thread is running (for tests).
    var isRunning: Bool { checker.isRunning }
}

/// The state of one watch, shared with its thread (which outlives the watch while a check hangs).
final class FileChecker: @unchecked Sendable {
    let path: String
    let logger: Logger

    /// An event waiting for a check asked for at or after `began`.
    private struct Waiter {
        var completion: Completion<Int>
        var began: UInt64
    }

    private struct State {
        /// The last state seen (the good one workers run, while the file is missing or not executable).
        var file: CommandFileState?
        /// Bumped at each change of code: workers started under an older generation are replaced.
        var generation = 0
        /// Why the file cannot start a worker now, if it cannot (warned once per cause).
        var problem: String?
        /// When the last completed check was asked for (what it saw is the file at that time or later).
        var checkedAt: UInt64
        /// When the check in flight was asked for.
        var inFlightSince: UInt64?
        /// Events waiting for a check.
        var waiters: [Waiter] = []
        /// The check in flight was reported as hung.
        var warnedHung = false
        /// The thread's wake-up (an eventfd; -1 once closed, by the thread, under the lock).
        var wakeFD: Int32 = -1
        var stopped = false
        var running = false
    }

    private let state: Mutex<State>

    init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
        let now = MonotonicClock.now()
        let file = CommandFileState(path: path)
        state = Mutex(State(file: file, checkedAt: now))
    }

    enum Answer {
        case known(Int)
        case wait(Completion<Int>)
    }

    var knownGeneration: Int { state.withLock { $0.generation } }
    var isRunning: Bool { state.withLock { $0.running } }

    /// Starts the thread. Without it (no fds, no threads), every event is served by the state known at load,
    /// and a warning says deployments are not noticed.
    func start() {
        let fd = mcm_eventfd()
        guard fd >= 0 else { return unwatched("cannot create an eventfd (\(SystemError.describe(errno)))") }
        state.withLock { state in
            state.wakeFD = fd
            state.running = true
        }
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { context in
            Unmanaged<FileChecker>.fromOpaque(context!).takeRetainedValue().work()
            return nil
        }, context)
        guard rc == 0 else {
            Unmanaged<FileChecker>.fromOpaque(context).release()
            state.withLock { state in
                close(state.wakeFD)
                state.wakeFD = -1
                state.running = false
            }
            return unwatched("cannot start its thread (\(SystemError.describe(rc)))")
        }
        pthread_detach(thread)
    }

    private func unwatched(_ why: String) {
        logger.warning("Command \"\(path)\" (worker): \(why): a change of its file on disk is not noticed.")
    }

    func stop() {
        let waiters = state.withLock { state -> [Waiter] in
            state.stopped = true
            wake(state)
            defer { state.waiters = [] }
            return state.waiters
        }
        let generation = knownGeneration
        for waiter in waiters { waiter.completion.complete(generation) }
    }

    /// Under the lock.
    private func wake(_ state: State) {
        guard state.wakeFD >= 0 else { return }
        var one: UInt64 = 1
        _ = write(state.wakeFD, &one, 8)
    }

    /// Under the lock: a check asked for now, unless one is in flight.
    private func ask(_ state: inout State, now: UInt64) {
        guard state.inFlightSince == nil else { return }
        state.inFlightSince = now
        wake(state)
    }

    func generation(now: UInt64, deadline: UInt64) -> Answer {
        var hungFor: UInt64?
        var bound: UInt64?
        let answer = state.withLock { state -> Answer in
            guard state.running, !state.stopped else { return .known(state.generation) }
            let age = Self.elapsed(since: state.checkedAt, now: now)
            if age < CommandFileWatch.freshness / 2 { return .known(state.generation) }
            if let since = state.inFlightSince {
                let waited = Self.elapsed(since: since, now: now)
                if waited >= CommandFileWatch.hungAfter && !state.warnedHung {
                    state.warnedHung = true
                    hungFor = waited
                }
                // A check that has not returned in `patience` may never: the last known state serves.
                if waited >= CommandFileWatch.patience { return .known(state.generation) }
            } else {
                ask(&state, now: now)
            }
            guard age >= CommandFileWatch.freshness else { return .known(state.generation) }
            let completion = Completion<Int>()
            state.waiters.append(Waiter(completion: completion, began: now))
            bound = min(now &+ CommandFileWatch.patience, deadline)
            return .wait(completion)
        }
        if let hungFor {
            let message = "Command \"\(path)\" (worker): the stat(2) of its file has not returned for "
                + "\(seconds(hungFor)) s (a hung mount?): its running workers keep serving, and a change of the file "
                + "is noticed once it returns."
            logger.warning("\(message)")
        }
        if case .wait(let completion) = answer {
            // Should the check hang, the event goes on at its bound with the last known state.
            if let bound, let loop = try? EventLoop.shared() {
                loop.schedule(at: bound) { [self] in completion.complete(knownGeneration) }
            } else {
                completion.complete(knownGeneration)
            }
        }
        return answer
    }

    /// A check asked for now, and the completion of the first one that answers it; nil without a thread.
    func checkNow() -> Completion<Int>? {
        state.withLock { state -> Completion<Int>? in
            guard state.running, !state.stopped else { return nil }
            let now = MonotonicClock.now()
            let completion = Completion<Int>()
            // Asked for after any check in flight began: that one may have read the file before a change.
            state.waiters.append(Waiter(completion: completion, began: now))
            ask(&state, now: now)
            return completion
        }
    }

    // MARK: - The watch's thread

    static let threadName = "mcm-watch"

    private func work() {
        mcm_name_thread(Self.threadName)
        let fd = state.withLock { $0.wakeFD }
        while true {
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            if poll(&ready, 1, -1) < 0 && errno != EINTR { usleep(1000) }
            var count: UInt64 = 0
            _ = read(fd, &count, 8)
            // Checks one after the other while they are asked for: waiters that began after a check was asked
            // for need the next one.
            while let since = state.withLock({ $0.stopped ? nil : $0.inFlightSince }) {
                check(askedAt: since)
            }
            if state.withLock({ $0.stopped }) { break }
        }
        state.withLock { state in
            close(state.wakeFD)
            state.wakeFD = -1
            state.running = false
        }
    }

    /// One check: the stat, and what it means, made without the lock (they may hang); then its result.
    private func check(askedAt since: UInt64) {
        var info = stat()
        let found = stat(path, &info) == 0
        let code = errno
        let (known, problem) = state.withLock { ($0.file, $0.problem) }
        var result = Outcome(generation: 0, file: known, problem: problem, messages: [])
        if !(found && known != nil && problem == nil && known!.matches(info)) {
            result = interpret(found ? .success(info) : .failure(Errno(code: code)), known: known, problem: problem)
        }
        let now = MonotonicClock.now()
        let (answered, generation, wasHung, stopped) = state.withLock {
            state -> ([Waiter], Int, Bool, Bool) in
            state.generation += result.generation
            state.file = result.file
            state.problem = result.problem
            state.checkedAt = since
            state.inFlightSince = nil
            let wasHung = state.warnedHung
            state.warnedHung = false
            // This check answers those that began before it was asked for; the others get the next one.
            let answered = state.waiters.filter { $0.began <= since }
            state.waiters.removeAll { $0.began <= since }
            if !state.waiters.isEmpty { state.inFlightSince = now }
            return (answered, state.generation, wasHung, state.stopped)
        }
        // Logged before the waiting events go on: what they do next follows the lines. A module already gone
        // says nothing more.
        if !stopped {
            if wasHung {
                let message = "Command \"\(path)\" (worker): the stat(2) of its file returned after "
                    + "\(seconds(Self.elapsed(since: since, now: now))) s."
                logger.info("\(message)")
            }
            for (warning, message) in result.messages {
                if warning { logger.warning("\(message)") } else { logger.info("\(message)") }
            }
        }
        for waiter in answered { waiter.completion.complete(generation) }
    }
    private struct Outcome {
        /// 1 when the code changed.
        var generation: Int
        var file: CommandFileState?
        var problem: String?
        var messages: [(warning: Bool, String)]
    }

    private func interpret(_ stat: Result<stat, Errno>, known: CommandFileState?, problem old: String?) -> Outcome {
        let name = "Command \"\(path)\" (worker)"
        var result = Outcome(generation: 0, file: known, problem: nil, messages: [])
        switch stat {
        case .failure(let error):
            let code = error.code
            result.problem = code == ENOENT ? "is gone from disk" : "cannot be read (\(SystemError.describe(code)))"
        case .success(let info):
            result.problem = ExecutableCheck.problem(with: path)
            if result.problem == nil {
                let now = CommandFileState(info)
                if let known, let why = now.difference(from: known) {
                    result.generation = 1
                    result.messages.append((false, "\(name) changed on disk: \(why). Its workers finish the event in "
                        + "hand and are replaced by fresh ones."))
                } else if old != nil {
                    result.messages.append((false, "\(name) is back on disk, unchanged: its workers keep serving."))
                }
                result.file = now
            }
        }
        if let problem = result.problem, problem != old {
            result.messages.append((true, "\(name) \(problem): its running workers keep serving, but a worker "
                + "started now (after a failure, or once one is replaced) would fail."))
        }
        return result
    }

    /// An errno value, as a `Result` failure.
    struct Errno: Error {
        var code: Int32
    }

    /// The time from `since` to `now`, 0 when `since` is later: another thread may have read the clock after
    /// this one and written what it read first.
    static func elapsed(since: UInt64, now: UInt64) -> UInt64 { now > since ? now - since : 0 }

    /// Seconds with one decimal, for the log (never traps, whatever the value).
    private func seconds(_ nanoseconds: UInt64) -> String {
        let tenths = nanoseconds / 100_000_000
        return "\(tenths / 10).\(tenths % 10)"
    }
}
