/// Why a command did not produce a usable result, worded as the seed worded it (SPEC §3) so that operators'
/// alerts keep matching: `Command "<path>" exited with return code N. Cause: …`, `… exited via signal N.`,
/// `… took too long to execute.`
public struct CommandError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// posix_spawn failed (ENOENT, EACCES, ENOEXEC, …).
        case cannotStart(errno: Int32)
        case exited(code: Int32)
        case signaled(signal: Int32)
        /// Stopped after `timeout` seconds.
        case timedOut(timeout: Double)
        /// Never started: `timeout` passed while the event waited for one of `max_in_flight` slots (or, in
        /// worker mode, for a free worker).
        case timedOutWaiting(timeout: Double, waitingFor: String)
        /// The command exited, but its exit status could not be read (the errno of the failed reap): never
        /// reported as a success.
        case statusLost(errno: Int32)
        /// The command started but the engine could not watch it (the errno of epoll_ctl); it was killed.
        case cannotWatch(errno: Int32)
        /// The private temporary directory was removed or replaced while the command ran: what the command
        /// wrote is not where the engine reads it.
        case temporaryDirectoryReplaced(path: String, reason: String)
        /// The event was cancelled (a watch whose container went away) and the command stopped.
        case cancelled
        /// The output file is larger than `output_max_bytes`.
        case outputTooLarge(size: Int, limit: Int)
        /// The output file could not be read (e.g. the command removed it).
        case outputUnreadable(errno: Int32)
        /// The output is not JSON.
        case malformedOutput(JSONParseError)
        /// The output is JSON but not the Mesos message the event expects.
        case invalidOutput(message: String, issues: [SchemaIssue])
        /// The engine could not prepare the run (temporary files, pipes).
        case setup(String)
        /// A worker answered the event with an error (worker mode's non-zero exit).
        case workerAnsweredError(cause: String)
        /// A worker broke the protocol or died while serving the event: what it did. The worker is restarted.
        case workerBroke(String)
        /// The worker failed repeatedly and is not restarted before `retryIn` seconds; its last failure.
        case workerBackingOff(retryIn: Double, lastFailure: String)
    }

    /// The command's path.
    public var command: String
    public var code: Code
    /// The error file's content, trimmed and bounded; empty when the command wrote none.
    public var cause: String
    /// What the command wrote on stdout and stderr (bounded).
    public var console: String
    /// User + system CPU seconds of what the command ran, as far as known.
    public var cpuSeconds = 0.0
    /// Processes still running in its cgroup when it exited (a non-zero exit leaves them too).
    public var leftovers: [Leftover] = []

    public init(command: String, code: Code, cause: String = "", console: String = "") {
        self.command = command
        self.code = code
        self.cause = cause
        self.console = console
    }

    public var isTimeout: Bool {
        switch code {
        case .timedOut, .timedOutWaiting: return true
        default: return false
        }
    }

    public var description: String {
        let quoted = "Command \"\(command)\""
        let causeSuffix = cause.isEmpty ? "" : " Cause: \(cause)"
        switch code {
        case .exited(let status):
            return "\(quoted) exited with return code \(status).\(causeSuffix)"
        case .signaled(let signal):
            return "\(quoted) exited via signal \(signal).\(causeSuffix)"
        case .timedOut(let timeout):
            return "\(quoted) took too long to execute. Timeout: \(Self.seconds(timeout))."
        case .timedOutWaiting(let timeout, let waitingFor):
            return "\(quoted) took too long to execute. Timeout: \(Self.seconds(timeout)) (it never started: the "
                + "event waited all that time for \(waitingFor))."
        case .statusLost(let errno):
            return "\(quoted) ended but its exit status was lost (waitpid: \(SystemError.describe(errno)); is SIGCHLD "
                + "ignored in this process?): it is not reported as a success."
        case .cannotWatch(let errno):
            return "\(quoted) was started but the engine could not watch it (epoll_ctl: \(SystemError.describe(errno))); "
                + "it was killed."
        case .temporaryDirectoryReplaced(let path, let reason):
            return "\(quoted) ran, but its private temporary directory '\(path)' was replaced meanwhile (\(reason)): "
                + "its output cannot be trusted."
        case .cancelled:
            return "\(quoted) was stopped: the event was cancelled."
        case .cannotStart(let errno):
            return "Error launching external command \"\(command)\": \(SystemError.describe(errno))"
                + Self.hint(errno: errno, path: command)
        case .outputTooLarge(let size, let limit):
            return "\(quoted) wrote \(size) bytes of output, more than output_max_bytes (\(limit))."
        case .outputUnreadable(let errno):
            return "\(quoted) left no readable output file: \(SystemError.describe(errno))."
        case .malformedOutput(let error):
            return "\(quoted) wrote malformed JSON: \(error)."
        case .invalidOutput(let message, let issues):
            let errors = issues.filter { $0.severity == .error }.map(\.description)
            return "\(quoted) wrote an invalid \(message): " + errors.joined(separator: "; ") + "."
        case .setup(let reason):
            return "\(quoted) could not be run: \(reason)."
        case .workerAnsweredError(let cause):
            return "\(quoted) failed. Cause: \(cause)"
        case .workerBroke(let what):
            return "\(quoted) (worker) \(what)."
        case .workerBackingOff(let retryIn, let lastFailure):
            return "\(quoted) (worker) is not restarted yet after repeated failures (next try in "
                + "\(Self.seconds((retryIn * 10).rounded(.up) / 10))); last failure: \(lastFailure)"
        }
    }

    static func seconds(_ value: Double) -> String {
        value.rounded() == value ? "\(Int(value))s" : "\(value)s"
    }

    /// The likely reason behind a spawn errno, in operator's words.
    static func hint(errno code: Int32, path: String) -> String {
        switch code {
        case ENOENT_:
            if ExecutableCheck.problem(with: path) == nil {
                return " (the file exists: its #! interpreter line names a program that does not exist)"
            }
            return " (no such file)"
        case EACCES_: return " (not executable, or a directory)"
        case ENOEXEC_: return " (not a binary and no #! interpreter line)"
        default: return ""
        }
    }
}

import Glibc

private let ENOENT_ = ENOENT
private let EACCES_ = EACCES
private let ENOEXEC_ = ENOEXEC

extension CommandError {
    /// A failure to set up a run, before any command exists to blame.
    public struct Setup: Error, Sendable, CustomStringConvertible {
        public var reason: String
        init(_ reason: String) { self.reason = reason }
        public var description: String { reason }
    }
}
