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
/// How: one `stat(2)` of the path per event, compared with what the last one saw — about 1 µs (`bench` measures
/// it against a worker event), and nothing else to run. inotify would cost nothing per event but misses what
/// deployments do: a symbolic link switched in a directory above the file (`/opt/app/current` → a new release) is
/// a change in a directory it does not watch, network file systems send no events, the agent's user has a bounded
/// number of watches, and a full event queue loses them. `stat` follows the path as exec(2) will.
///
/// A file that disappears or stops being executable keeps the running workers (a fresh one could not start):
/// one warning, and a reload once a good file is back.
public final class CommandFileWatch: Sendable {
    public let path: String
    private let logger: Logger
    private let seen: Mutex<Seen>

    private struct Seen {
        /// The last state seen (the good one workers run, while the file is missing or not executable).
        var state: CommandFileState?
        /// Bumped at each change of code: workers started under an older generation are replaced.
        var generation = 0
        /// Why the file cannot start a worker now, if it cannot (warned once per cause).
        var problem: String?
    }

    public init(path: String, logger: Logger) {
        self.path = path
        self.logger = logger
        self.seen = Mutex(Seen(state: CommandFileState(path: path)))
    }

    /// The generation of the code on disk now: one stat, and in the common case (nothing changed) nothing else.
    public func generation() -> Int {
        var info = stat()
        let found = stat(path, &info) == 0
        let code = errno
        return seen.withLock { seen in
            if found, let state = seen.state, seen.problem == nil, state.matches(info) { return seen.generation }
            noticeChange(&seen, found ? .success(info) : .failure(Errno(code: code)))
            return seen.generation
        }
    }

    private func noticeChange(_ seen: inout Seen, _ result: Result<stat, Errno>) {
        let name = "Command \"\(path)\" (worker)"
        let problem: String?
        switch result {
        case .failure(let code):
            problem = code.code == ENOENT ? "is gone from disk" : "cannot be read (\(SystemError.describe(code.code)))"
        case .success(let info):
            problem = ExecutableCheck.problem(with: path)
            if problem == nil {
                let now = CommandFileState(info)
                if let old = seen.state, let why = now.difference(from: old) {
                    seen.generation += 1
                    let message = "\(name) changed on disk: \(why). Its workers finish the event in hand and are "
                        + "replaced by fresh ones."
                    logger.info("\(message)")
                } else if seen.problem != nil {
                    logger.info("\(name) is back on disk, unchanged: its workers keep serving.")
                }
                seen.state = now
            }
        }
        if let problem, problem != seen.problem {
            let message = "\(name) \(problem): its running workers keep serving, but a worker started now (after a "
                + "failure, or once one is replaced) would fail."
            logger.warning("\(message)")
        }
        seen.problem = problem
    }

    /// An errno value, as a `Result` failure.
    struct Errno: Error {
        var code: Int32
    }
}
