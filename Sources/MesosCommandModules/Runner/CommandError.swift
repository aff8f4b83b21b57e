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
    }

    /// The command's path.
    public var command: String
    public var code: Code
    /// The error file's content, trimmed and bounded; empty when the command wrote none.
    public var cause: String
    /// What the command wrote on stdout and stderr (bounded).
    public var console: String

    public init(command: String, code: Code, cause: String = "", console: String = "") {
        self.command = command
        self.code = code
        self.cause = cause
        self.console = console
    }

    public var isTimeout: Bool {
        if case .timedOut = code { return true }
        return false
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
