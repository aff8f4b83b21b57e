/// What happened to one request sent to a worker.
enum WorkerReply: Sendable {
    /// The worker wrote this line (without its newline): the answer, still to be checked.
    case line([UInt8])
    /// The event's deadline passed before the answer; the worker still has until its own deadline to answer
    /// (then it is dropped) before it is stopped.
    case timedOut
    /// The worker failed while serving it; it is being stopped.
    case failed(WorkerFailure)
    /// The event was cancelled; the worker finishes the request, its answer is dropped.
    case cancelled
}

/// How a worker failed: each one stops it (SIGTERM, grace period, SIGKILL to its group) and a fresh worker
/// starts for the next event (SPEC §8).
enum WorkerFailure: Sendable, Equatable, CustomStringConvertible {
    /// It did not answer within the command's timeout from the moment it was sent the request.
    case timedOut
    /// exec(2) of the command failed (the errno): nothing was started.
    case cannotExec(errno: Int32)
    case exited(code: Int32)
    case signaled(signal: Int32)
    case statusLost(errno: Int32)
    case closedStdout
    case lineTooLong(limit: Int)
    case unexpectedLine(String)
    case cannotWrite(errno: Int32)
    case cannotWatch(errno: Int32)
    /// It broke the protocol: what it did.
    case brokeProtocol(String)
    /// It was stopped for another reason (module destroyed).
    case stopped

    /// What the worker did, for `Command "<path>" (worker) <description>.`
    var description: String {
        switch self {
        case .timedOut: return "took too long to answer"
        case .cannotExec(let code): return "could not be started (\(SystemError.describe(code)))"
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

    /// Whether it counts as the worker's failure (a restart, the backoff) rather than the module's decision.
    var isTheWorkersFault: Bool { self != .stopped }
}
