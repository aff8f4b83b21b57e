import CMesosCommandSpawn
import Glibc

/// One worker process, watched by the event loop: its exec report, stdin (requests), stdout (answers, one per
/// line), stderr (lines for the log), exit and deadlines. Serves one request at a time.
///
/// Everything here runs on the loop thread, but for `input` (stdin), which the events' tasks use to send their
/// requests without waking the loop (see `WorkerInput`).
final class WorkerProcess: LoopClient {
    static let stdoutTag: UInt8 = 1
    static let stderrTag: UInt8 = 2
    static let exitTag: UInt8 = 3
    static let stdinTag: UInt8 = 4
    static let reportTag: UInt8 = 5
    /// How long after its stdout ended the worker's exit is awaited before the failure is reported.
    static let exitGrace: UInt64 = 50_000_000
    /// Lines of stderr logged per request (and between requests), as for a command in exec mode: the rest are
    /// counted, not logged.
    static let stderrLinesLogged = EventRunner.consoleLinesLogged

    struct Request {
        let id: UInt64
        /// The request line. The event's task writes what the socket takes at once (`WorkerInput.send`); what
        /// is left, the loop writes from `unsent` on (`continueWriting`).
        let bytes: [UInt8]
        var unsent: Int?
        /// When the event must be answered (its start plus its timeout: waiting for the worker counts).
        let eventDeadline: UInt64
        /// When the worker must have answered (the request's sending plus the timeout): only then is it
        /// stopped. A worker busy with earlier events is not killed for an event's wait.
        let workerDeadline: UInt64
        let completion: Completion<WorkerReply>
        /// Frees the worker's slot. Called here when the request fails, or is answered after its event was
        /// answered (cancelled, timed out); for an answer the event awaits, the event calls it once it has
        /// checked the answer (a worker whose answer breaks the protocol is stopped before its slot serves
        /// another event).
        let done: @Sendable () -> Void
        /// The event was answered without the worker's answer (cancelled, or its deadline passed): the answer,
        /// when it comes, is dropped.
        var abandoned = false
        /// The log prefix of the event, for the stderr lines written while serving it.
        let logPrefix: String
    }

    let id: UInt64
    let group: ProcessGroup
    /// stdin, shared with the events' tasks.
    let input: WorkerInput
    var stdoutFD: Int32
    var stderrFD: Int32
    /// Until exec(2) is done: end of file means it succeeded, 4 bytes are its errno.
    private var reportFD: Int32
    let lineLimit: Int
    private let gracePeriod: Double
    let name: String
    /// Receives the stderr lines (false) and what went wrong (true, a warning), already prefixed.
    let log: @Sendable (_ warning: Bool, _ message: String) -> Void
    /// Called once, when the worker can serve no more requests: with the failure, or nil (stopped on purpose).
    private var gone: (@Sendable (WorkerFailure?) -> Void)?
    /// Called once, when the worker has been reaped: nothing of it is left.
    private var reaped: (@Sendable () -> Void)?

    var request: Request?
    var stdoutBuffer = LineBuffer()
    var stderrBuffer = LineBuffer()
    var stderrBudget = WorkerProcess.stderrLinesLogged
    var stderrDropped = 0
    private(set) var stopping = false
    /// When stdout ended while the leader still ran: its exit, if it comes soon, says more than "closed its stdout".
    var stdoutEndedAt: UInt64?
    /// Why it stopped: what a request sent afterwards fails with.
    private var ended = WorkerFailure.stopped
    /// The last request answered (see `continueWriting`).
    private var lastAnswered: UInt64 = 0
    /// Stopping because the module goes away (rather than after a failure).
    private var shuttingDown = false
    private var writing = false

    init(id: UInt64, pid: pid_t, report: Int32, input: WorkerInput, stdout: Int32, stderr: Int32,
         cgroup: Cgroup? = nil, lineLimit: Int,
         gracePeriod: Double, name: String, log: @escaping @Sendable (Bool, String) -> Void,
         gone: @escaping @Sendable (WorkerFailure?) -> Void, reaped: @escaping @Sendable () -> Void) {
        self.id = id
        self.group = ProcessGroup(pid: pid)
        group.cgroup = cgroup
        self.reportFD = report
        self.input = input
        self.stdoutFD = stdout
        self.stderrFD = stderr
        self.lineLimit = lineLimit
        self.gracePeriod = gracePeriod
        self.name = name
        self.log = log
        self.gone = gone
        self.reaped = reaped
    }

    /// Starts watching the worker. A registration that fails stops it at once.
    func start(on loop: EventLoop) {
        loop.add(self, id: id)
        var code = group.register(on: loop, id: id, tag: Self.exitTag)
        for (fd, tag) in [(reportFD, Self.reportTag), (stdoutFD, Self.stdoutTag), (stderrFD, Self.stderrTag)]
        where code == 0 {
            code = loop.register(fd, id: id, tag: tag)
        }
        if code != 0 { fail(.cannotWatch(errno: code), loop) }
    }

    /// Takes charge of a request that the event's task writes itself, right after handing it over (without
    /// waking the loop: it runs its inbox before it reads an answer, and `EventLoop.wake(by:)` wakes it at the
    /// event's deadline).
    /// The worker serves one request at a time: the pool never hands over a second before `done`.
    func accept(_ request: Request, on loop: EventLoop) {
        guard !stopping else {
            request.completion.complete(.failed(ended))
            request.done()
            return
        }
        stderrBudget = Self.stderrLinesLogged
        reportDroppedStderr()
        self.request = request
    }

    /// The task could write only `written` bytes of the request: the loop writes the rest as the worker reads
    /// it. A worker that already answered that request answered before reading all of it: the stream between
    /// the two can no longer be trusted.
    func continueWriting(_ requestID: UInt64, from written: Int, on loop: EventLoop) {
        guard request?.id == requestID else {
            if requestID == lastAnswered { fail(.brokeProtocol("answered before reading the whole request"), loop) }
            return
        }
        request?.unsent = written
        write(loop)
    }

    /// The task's write failed (EPIPE: the worker is gone; its exit, if seen soon, says how).
    func writeFailed(_ requestID: UInt64, errno code: Int32, on loop: EventLoop) {
        guard request?.id == requestID, !stopping else { return }
        fail(endFailure(loop) ?? .cannotWrite(errno: code), loop)
    }

    /// The event of request `requestID` was cancelled: its task goes on at once, the worker finishes the request.
    func abandon(_ requestID: UInt64) {
        guard request?.id == requestID else { return }
        request?.abandoned = true
        request?.completion.complete(.cancelled)
    }

    /// It broke the protocol: it cannot be trusted with the next event.
    func stop(because what: String, on loop: EventLoop) { fail(.brokeProtocol(what), loop) }

    /// The module is going away, or the pool replaces this worker, idle, by a fresh one (its command changed on
    /// disk, or it served its `<event>_worker_max_events`): stdin is closed (the worker must exit at its end),
    /// and the group is killed after the grace period — at once if the worker exits before.
    func shutdown(on loop: EventLoop) {
        if !stopping {
            stopping = true
            shuttingDown = true
            goneNow(nil)
            closeStdin(loop)
            group.scheduleKill(after: gracePeriod, now: MonotonicClock.now())
            if group.leaderExited { killAndReap(loop) }
        }
        failRequest(.stopped)
    }

    // MARK: - The loop

    func ready(tag: UInt8, loop: EventLoop) {
        switch tag {
        case Self.stdoutTag: readStdout(loop)
        case Self.stderrTag: readStderr(loop)
        case Self.stdinTag: write(loop)
        case Self.reportTag: readReport(loop)
        default: if group.noticeExit(on: loop) { leaderExited(loop) }
        }
    }

    var wakeAt: UInt64? {
        var due = group.killAt ?? UInt64.max
        if let request, !stopping {
            due = min(due, request.abandoned ? request.workerDeadline : request.eventDeadline)
        }
        if let ended = stdoutEndedAt, !stopping { due = min(due, ended &+ Self.exitGrace) }
        if group.polls { due = min(due, MonotonicClock.now() &+ 2_000_000) }
        return due == .max ? nil : due
    }

    func wake(now: UInt64, loop: EventLoop) {
        if group.polls && group.noticeExit(on: loop) { leaderExited(loop) }
        if let current = request, !stopping {
            if now >= current.workerDeadline {
                fail(.timedOut, loop)
            } else if now >= current.eventDeadline && !current.abandoned {
                // The event is answered; the worker keeps its own deadline (in `wakeAt` from now on).
                request?.abandoned = true
                current.completion.complete(.timedOut)
            }
        }
        if let ended = stdoutEndedAt, !stopping, now >= ended &+ Self.exitGrace { fail(endFailure(loop) ?? .closedStdout, loop) }
        if group.killIfDue(now: now) { finishIfReaped(loop) }
    }

    // MARK: - Requests and answers

    /// Writes what is left of the request, waiting for stdin to be writable as long as needed; stops waiting as
    /// soon as nothing is left to write.
    func write(_ loop: EventLoop) {
        guard let current = request, !stopping, let unsent = current.unsent else {
            stopWaitingToWrite(loop)
            return
        }
        switch input.send(current.bytes, from: unsent, requestID: current.id) {
        case .all:
            request?.unsent = nil
            stopWaitingToWrite(loop)
        case .part(let written):
            request?.unsent = written
            if !writing {
                let code = loop.register(input.fd, id: id, tag: Self.stdinTag, writable: true)
                if code != 0 { return fail(.cannotWatch(errno: code), loop) }
                writing = true
            }
        case .closed:
            fail(ended, loop)
        case .failed(let code):
            fail(endFailure(loop) ?? .cannotWrite(errno: code), loop)
        }
    }

    private func stopWaitingToWrite(_ loop: EventLoop) {
        guard writing else { return }
        loop.unregister(input.fd)
        writing = false
    }

    /// A line from the worker: the answer to the request in flight.
    func answered(_ line: [UInt8], _ loop: EventLoop) {
        // Work handed over since the loop last ran its inbox may concern this answer: the request itself (the
        // worker answered while the previous answer was being read), how much of it was written.
        loop.runHandedOverWork()
        if stopping { return }
        guard let request else {
            return fail(.unexpectedLine(String(decoding: line.prefix(200), as: UTF8.self)), loop)
        }
        // `unsent` is known once the task's report is in the inbox; `isPartlyWritten` even before.
        guard request.unsent == nil, !input.isPartlyWritten(request.id) else {
            return fail(.brokeProtocol("answered before reading the whole request"), loop)
        }
        self.request = nil
        lastAnswered = request.id
        if request.abandoned {
            // Nobody waits for this answer, but a worker that broke the protocol is stopped before its slot
            // serves another event (which would get the rest of the stream).
            if case .invalid(let what) = WorkerAnswer(parsing: line, requestID: request.id) { stop(because: what, on: loop) }
            request.done()
        } else {
            request.completion.complete(.line(line))
        }
    }

    /// exec(2) is done: end of file means it succeeded; an errno means it failed, and nothing runs.
    private func readReport(_ loop: EventLoop) {
        if let failure = execFailure(loop) { fail(failure, loop) }
    }

    /// Reads the exec report if it is there: the failed exec's errno, or nil (it succeeded, or is not done).
    private func execFailure(_ loop: EventLoop) -> WorkerFailure? {
        guard reportFD >= 0 else { return nil }
        var code: Int32 = 0
        let n = Glibc.read(reportFD, &code, 4)
        if n < 0 && (errno == EAGAIN || errno == EINTR) { return nil }
        loop.unregister(reportFD)
        close(reportFD)
        reportFD = -1
        return n == 4 ? .cannotExec(errno: code) : nil
    }

    /// Why the worker can serve no more, from what it left: a failed exec says more than its exit code 127,
    /// an exit more than a closed pipe.
    func endFailure(_ loop: EventLoop) -> WorkerFailure? { execFailure(loop) ?? exitFailure() }

    // MARK: - Failures and the end

    private func leaderExited(_ loop: EventLoop) {
        if !stopping {
            // Read what it wrote last: an answer may be there before the end.
            readStdout(loop)
            if !stopping { fail(endFailure(loop) ?? .exited(code: -1), loop) }
        }
        if shuttingDown {
            // It exited at the end of its stdin, as it must: what is left of its group dies now.
            killAndReap(loop)
        } else {
            finishIfReaped(loop)
        }
    }

    /// How the leader ended if it has, read without reaping it (its zombie keeps the group id until the group
    /// is killed); nil while it runs.
    func exitFailure() -> WorkerFailure? {
        var exited: Int32 = 0
        var value: Int32 = 0
        switch mcm_peek_exit(group.pid, &exited, &value) {
        case 1: return exited != 0 ? .exited(code: value) : .signaled(signal: value)
        case -1: return .statusLost(errno: errno)
        default: return nil
        }
    }

    /// A failure: the request in flight (if any) fails with it, and the worker is stopped — stdin closed,
    /// SIGTERM to its group, SIGKILL after the grace period.
    func fail(_ failure: WorkerFailure, _ loop: EventLoop) {
        if !stopping {
            // The pool forgets this worker before the request is answered, so that the slot, free again, starts
            // a fresh worker for the next event.
            stopping = true
            ended = failure
            goneNow(failure)
            log(true, "[worker \(name), pid \(group.pid)] \(failure); stopping it (SIGTERM, then SIGKILL after "
                + "\(CommandError.seconds(gracePeriod)))")
            closeStdin(loop)
            group.terminate(gracePeriod: gracePeriod, now: MonotonicClock.now())
        }
        failRequest(failure)
    }

    private func failRequest(_ failure: WorkerFailure) {
        guard let request else { return }
        self.request = nil
        request.completion.complete(.failed(failure))
        request.done()
    }

    private func goneNow(_ failure: WorkerFailure?) {
        let gone = self.gone
        self.gone = nil
        gone?(failure)
    }

    private func closeStdin(_ loop: EventLoop) {
        input.close { fd in loop.unregister(fd) }
        writing = false
    }

    private func killAndReap(_ loop: EventLoop) {
        group.killGroup()
        finishIfReaped(loop)
    }

    func finishIfReaped(_ loop: EventLoop) {
        guard group.reapIfPossible() != nil else { return }
        for fd in [stdoutFD, stderrFD, reportFD] where fd >= 0 {
            loop.unregister(fd)
            close(fd)
        }
        stdoutFD = -1
        stderrFD = -1
        reportFD = -1
        closeStdin(loop)
        reportDroppedStderr()
        loop.remove(id)
        goneNow(ended)
        let reaped = self.reaped
        self.reaped = nil
        reaped?()
    }
}
