import CMesosCommandSpawn
import Glibc

/// What happened to one request sent to a worker.
enum WorkerReply: Sendable {
    /// The worker wrote this line (without its newline): the answer, still to be checked.
    case line([UInt8])
    /// The worker failed while serving it; it is being stopped.
    case failed(WorkerFailure)
    /// The event was cancelled; the worker finishes the request, its answer is dropped.
    case cancelled
}

/// How a worker failed: each one stops it (SIGTERM, grace period, SIGKILL to its group) and a fresh worker
/// starts for the next event (SPEC §8).
enum WorkerFailure: Sendable, Equatable, CustomStringConvertible {
    case timedOut
    case exited(code: Int32)
    case signaled(signal: Int32)
    case statusLost(errno: Int32)
    case closedStdout
    case lineTooLong(limit: Int)
    case unexpectedLine(String)
    case cannotWrite(errno: Int32)
    case cannotWatch(errno: Int32)
    /// It wrote an answer that does not follow the protocol: what is wrong with it.
    case brokeProtocol(String)
    /// It was stopped for another reason (module destroyed).
    case stopped

    /// What the worker did, for `Command "<path>" (worker) <description>.`
    var description: String {
        switch self {
        case .timedOut: return "took too long to answer"
        case .exited(let code): return "exited with return code \(code)"
        case .signaled(let signal): return "exited via signal \(signal)"
        case .statusLost(let code):
            return "ended, and its exit status was lost (\(SystemError.describe(code)); is SIGCHLD ignored in this process?)"
        case .closedStdout: return "closed its stdout"
        case .lineTooLong(let limit): return "wrote an answer line longer than \(limit) bytes (output_max_bytes and the protocol's members)"
        case .unexpectedLine(let text): return "wrote a line while no event was asked of it: \(text)"
        case .cannotWrite(let code): return "could not be sent the event (\(SystemError.describe(code)))"
        case .cannotWatch(let code): return "could not be watched (epoll_ctl: \(SystemError.describe(code)))"
        case .brokeProtocol(let what): return what
        case .stopped: return "was stopped: the module is going away"
        }
    }
}

/// One worker process, watched by the event loop: its stdin (requests), stdout (answers, one per line), stderr
/// (lines for the log) and exit. Serves one request at a time. Loop thread only.
final class WorkerProcess: LoopClient {
    static let stdoutTag: UInt8 = 1
    static let stderrTag: UInt8 = 2
    static let exitTag: UInt8 = 3
    static let stdinTag: UInt8 = 4
    static let timerTag: UInt8 = 5
    /// How long after its stdout ended the worker's exit is awaited before the failure is reported.
    static let exitGrace: UInt64 = 50_000_000
    /// Lines of stderr logged per request (and between requests): the rest are counted, not logged.
    static let stderrLinesLogged = 100

    struct Request {
        let id: UInt64
        /// The request line, and how much of it the worker has been sent: the event's task writes what the
        /// socket takes at once (`WorkerInput.send`), the loop the rest (`continueWriting`).
        var bytes: [UInt8]
        var written = 0
        let deadline: UInt64
        let completion: Completion<WorkerReply>
        /// Frees the worker's slot. Called here when the request fails, or is answered after its event was
        /// cancelled; for an answer the event awaits, the event calls it once it has checked the answer (a
        /// worker whose answer breaks the protocol must be stopped before its slot serves another event).
        let done: @Sendable () -> Void
        /// The event was cancelled: the answer, when it comes, is dropped.
        var abandoned = false
        /// The log prefix of the event, for the stderr lines written while serving it.
        let logPrefix: String
    }

    let id: UInt64
    let group: ProcessGroup
    /// stdin and the deadline timer, shared with the events' tasks.
    let input: WorkerInput
    private var stdoutFD: Int32
    private var stderrFD: Int32
    private let lineLimit: Int
    private let gracePeriod: Double
    private let name: String
    /// Receives the stderr lines (false) and what went wrong (true, a warning), already prefixed; called on the
    /// loop thread.
    private let log: @Sendable (_ warning: Bool, _ message: String) -> Void
    /// Called once, when the worker can serve no more requests: with the failure, or nil (stopped on purpose).
    private var gone: (@Sendable (WorkerFailure?) -> Void)?
    /// Called once, when the worker has been reaped: nothing of it is left.
    private var reaped: (@Sendable () -> Void)?

    private var request: Request?
    private var stdoutBuffer: [UInt8] = []
    private var stderrBuffer: [UInt8] = []
    private var stderrBudget = WorkerProcess.stderrLinesLogged
    private var stderrDropped = 0
    private var stopping = false
    /// When stdout ended while the leader still ran: its exit, if it comes soon, says more than "closed its stdout".
    private var stdoutEndedAt: UInt64?
    /// Why it stopped: what a request sent afterwards fails with.
    private var ended = WorkerFailure.stopped
    /// Stopping because the module goes away (rather than after a failure).
    private var shuttingDown = false
    private var writing = false

    init(id: UInt64, pid: pid_t, input: WorkerInput, stdout: Int32, stderr: Int32, lineLimit: Int, gracePeriod: Double,
         name: String, log: @escaping @Sendable (Bool, String) -> Void,
         gone: @escaping @Sendable (WorkerFailure?) -> Void, reaped: @escaping @Sendable () -> Void) {
        self.id = id
        self.group = ProcessGroup(pid: pid)
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
        if code == 0 { code = loop.register(stdoutFD, id: id, tag: Self.stdoutTag) }
        if code == 0 { code = loop.register(stderrFD, id: id, tag: Self.stderrTag) }
        if code == 0 { code = loop.register(input.timerFD, id: id, tag: Self.timerTag) }
        if code != 0 { fail(.cannotWatch(errno: code), loop) }
    }

    /// Takes charge of a request whose event's task writes it to stdin itself (handed over without waking the
    /// loop: it runs before the worker's answer can be read). The worker serves one at a time: the pool never
    /// hands over a second before `done`.
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

    /// The task could write only `written` bytes of the request: the loop writes the rest as the worker reads.
    func continueWriting(_ requestID: UInt64, from written: Int, on loop: EventLoop) {
        guard request?.id == requestID else { return }
        request?.written = written
        write(loop)
    }

    /// The task's write failed (EPIPE: the worker is gone; its exit, if seen soon, says how).
    func writeFailed(_ requestID: UInt64, errno code: Int32, on loop: EventLoop) {
        guard request?.id == requestID, !stopping else { return }
        if let failure = exitFailure() { return fail(failure, loop) }
        fail(.cannotWrite(errno: code), loop)
    }

    /// The event of request `requestID` was cancelled: its task goes on at once, the worker finishes the request.
    func abandon(_ requestID: UInt64) {
        guard request?.id == requestID else { return }
        request?.abandoned = true
        request?.completion.complete(.cancelled)
    }

    /// Its answer did not follow the protocol: it cannot be trusted with the next event.
    func stop(because what: String, on loop: EventLoop) { fail(.brokeProtocol(what), loop) }

    /// The module is going away: stdin is closed (the worker must exit at its end), and the group is killed
    /// after the grace period — at once if the worker exits before.
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
        case Self.timerTag: input.clearTimer()  // the deadline is checked in wake(now:)
        default: if group.noticeExit(on: loop) { leaderExited(loop) }
        }
    }

    var wakeAt: UInt64? {
        var due = group.killAt ?? UInt64.max
        if let request, !stopping { due = min(due, request.deadline) }
        if let ended = stdoutEndedAt, !stopping { due = min(due, ended &+ Self.exitGrace) }
        if group.polls { due = min(due, MonotonicClock.now() &+ 2_000_000) }
        return due == .max ? nil : due
    }

    func wake(now: UInt64, loop: EventLoop) {
        if group.polls && group.noticeExit(on: loop) { leaderExited(loop) }
        if let request, !stopping, now >= request.deadline { fail(.timedOut, loop) }
        if let ended = stdoutEndedAt, !stopping, now >= ended &+ Self.exitGrace { fail(exitFailure() ?? .closedStdout, loop) }
        if group.killIfDue(now: now) { finishIfReaped(loop) }
    }

    // MARK: - Requests and answers

    /// Writes what is left of the request, waiting for stdin to be writable as long as needed.
    private func write(_ loop: EventLoop) {
        guard let current = request, !stopping else { return }
        switch input.send(current.bytes, from: current.written) {
        case .all:
            request?.written = current.bytes.count
            if writing {
                loop.unregister(input.stdinFD)
                writing = false
            }
        case .part(let written):
            request?.written = written
            if !writing {
                let code = loop.register(input.stdinFD, id: id, tag: Self.stdinTag, writable: true)
                if code != 0 { return fail(.cannotWatch(errno: code), loop) }
                writing = true
            }
        case .closed:
            fail(ended, loop)
        case .failed(let code):
            fail(exitFailure() ?? .cannotWrite(errno: code), loop)
        }
    }

    private func readStdout(_ loop: EventLoop) {
        while stdoutFD >= 0 {
            var lines: [[UInt8]] = []
            let n = loop.read(stdoutFD) { bytes in
                var start = stdoutBuffer.count
                stdoutBuffer.append(contentsOf: bytes)
                while let newline = stdoutBuffer[start...].firstIndex(of: 0x0A) {
                    lines.append(Array(stdoutBuffer[..<newline]))
                    stdoutBuffer.removeSubrange(...newline)
                    start = 0
                }
            }
            for line in lines where !stopping {
                guard line.count <= lineLimit else { return fail(.lineTooLong(limit: lineLimit), loop) }
                answered(line, loop)
            }
            if n > 0 {
                if stdoutBuffer.count > lineLimit { return fail(.lineTooLong(limit: lineLimit), loop) }
                continue
            }
            if n < 0 && (errno == EINTR) { continue }
            if n < 0 && errno == EAGAIN { return }
            // End of stdout: the worker can answer no more. An exiting worker closes its stdout just before its
            // exit shows: wait a moment for it, to report the exit code rather than "closed its stdout".
            loop.unregister(stdoutFD)
            close(stdoutFD)
            stdoutFD = -1
            if !stopping {
                if let failure = exitFailure() {
                    fail(failure, loop)
                } else {
                    stdoutEndedAt = MonotonicClock.now()
                }
            }
        }
    }

    private func answered(_ line: [UInt8], _ loop: EventLoop) {
        // The request of this answer may have been handed over after the loop last ran its inbox (the worker
        // answered while the previous answer was being read): run it before calling the line unexpected.
        if request == nil { loop.runHandedOverWork() }
        if stopping { return }
        guard let request else {
            let text = String(decoding: line.prefix(200), as: UTF8.self)
            return fail(.unexpectedLine(text), loop)
        }
        self.request = nil
        if request.abandoned {
            request.done()
        } else {
            request.completion.complete(.line(line))
        }
    }

    private func readStderr(_ loop: EventLoop) {
        while stderrFD >= 0 {
            var lines: [String] = []
            let n = loop.read(stderrFD) { bytes in
                stderrBuffer.append(contentsOf: bytes)
                while let newline = stderrBuffer.firstIndex(of: 0x0A) {
                    lines.append(String(decoding: stderrBuffer[..<newline], as: UTF8.self))
                    stderrBuffer.removeSubrange(...newline)
                }
                if stderrBuffer.count > 4096 {  // a line without end: log it in pieces
                    lines.append(String(decoding: stderrBuffer, as: UTF8.self))
                    stderrBuffer.removeAll()
                }
            }
            for line in lines where !line.isEmpty { logStderr(line) }
            if n > 0 { continue }
            if n < 0 && (errno == EINTR) { continue }
            if n < 0 && errno == EAGAIN { return }
            loop.unregister(stderrFD)
            close(stderrFD)
            stderrFD = -1
            reportDroppedStderr()
        }
    }

    private func logStderr(_ line: String) {
        guard stderrBudget > 0 else {
            stderrDropped += 1
            return
        }
        stderrBudget -= 1
        let text = line.count > 2000 ? line.prefix(2000) + "…" : Substring(line)
        log(false, (request?.logPrefix ?? "[worker \(name), pid \(group.pid)] ") + "\(name): \(text)")
    }

    private func reportDroppedStderr() {
        guard stderrDropped > 0 else { return }
        log(false, "[worker \(name), pid \(group.pid)] \(name): … \(stderrDropped) more line(s) of stderr not logged")
        stderrDropped = 0
    }

    // MARK: - Failures and the end

    private func leaderExited(_ loop: EventLoop) {
        if !stopping {
            // Read what it wrote last: an answer may be there before the end.
            readStdout(loop)
            if !stopping { fail(exitFailure() ?? .exited(code: -1), loop) }
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
    private func exitFailure() -> WorkerFailure? {
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
    private func fail(_ failure: WorkerFailure, _ loop: EventLoop) {
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
        input.closeStdin { fd in loop.unregister(fd) }
        writing = false
    }

    private func killAndReap(_ loop: EventLoop) {
        group.killGroup()
        finishIfReaped(loop)
    }

    private func finishIfReaped(_ loop: EventLoop) {
        guard group.reapIfPossible() != nil else { return }
        for fd in [stdoutFD, stderrFD] where fd >= 0 {
            loop.unregister(fd)
            close(fd)
        }
        stdoutFD = -1
        stderrFD = -1
        writing = false
        input.closeAll { fd in loop.unregister(fd) }  // unregistering one that was not registered is harmless
        reportDroppedStderr()
        loop.remove(id)
        goneNow(ended)
        let reaped = self.reaped
        self.reaped = nil
        reaped?()
    }
}
