import CMesosCommandSpawn
import Glibc
import Logging

/// What a module records about its running workers, so that whatever they leave behind when the agent dies
/// without destroying the module (a SIGTERM'd Mesos agent exits from its signal handler; a SIGKILL'd one just
/// ends) is killed when the module next starts (SPEC §8).
///
/// The agent's death tells each worker itself to end — its stdin ends, and the kernel sends it SIGTERM
/// (PR_SET_PDEATHSIG) — but a worker that ignores both, and a worker's own children (`sleep 1000 &`, a cache
/// daemon), outlive it. The records say which process groups were the module's and how to prove that a
/// process found later is one of them, never one that merely reuses a recorded pid (see ``ProcessIdentity``).
///
/// They live in a private directory beside the module's temporary directory, made and trusted the same way
/// (``TemporaryArea``: `mkdtemp`, 0700, owned by the agent's user, files made and removed through its fd):
/// `<temp_dir>/mesos-command-modules.<module_name>.workers.<agent pid>.XXXXXX/` (a module name in a file name has
/// no `.`, so this never reads as a temporary directory's `<module_name>.<pid>.XXXXXX`), holding
/// - `instance`: the agent's boot id, pid and start time, and the random token put in each worker's
///   environment as `MESOS_COMMAND_MODULES_INSTANCE=<token>` (inherited by whatever it starts);
/// - one file per running worker, named with its pid (= its process group id), holding its start time. Made
///   when the worker starts, removed once its whole group has been killed and the worker reaped.
/// The directory goes when the module is destroyed; a crashed agent's goes at the next start, after what it
/// records has been killed.
final class WorkerRecords: Sendable {
    /// The environment variable that carries the instance's token to its workers and their children.
    static let tokenVariable = "MESOS_COMMAND_MODULES_INSTANCE"
    static let instanceFile = ProcessIdentity.Maker.fileName

    /// Which agent process made a records directory (its ``ProcessIdentity/Maker``), and the token of its workers.
    struct Instance: Equatable {
        var bootID: String
        /// The agent's pid namespace (``ProcessIdentity/pidNamespace``): its pid and start time mean nothing in
        /// another one (two agents sharing a temp_dir across containers).
        var namespace: String
        var pid: pid_t
        var startTime: UInt64
        var token: String

        /// This process, with a fresh random token; nil when what identifies it cannot be read (then nothing
        /// is recorded: an instance that could not be told from a dead one must never be written).
        static func current() -> Instance? {
            let token = (0..<2).map { _ in
                let hex = String(UInt64.random(in: .min ... .max), radix: 16)
                return String(repeating: "0", count: 16 - hex.count) + hex
            }.joined()
            guard let maker = ProcessIdentity.Maker.current else { return nil }
            return Instance(bootID: maker.bootID, namespace: maker.namespace, pid: maker.pid,
                            startTime: maker.startTime, token: token)
        }

        /// The proof of which process it was.
        var maker: ProcessIdentity.Maker {
            ProcessIdentity.Maker(bootID: bootID, namespace: namespace, pid: pid, startTime: startTime)
        }

        var text: String { maker.text + "token=\(token)\n" }

        init(bootID: String, namespace: String = ProcessIdentity.pidNamespace, pid: pid_t, startTime: UInt64,
             token: String) {
            self.bootID = bootID
            self.namespace = namespace
            self.pid = pid
            self.startTime = startTime
            self.token = token
        }

        init?(parsing text: String) {
            let values = text.keyValueLines
            guard let maker = ProcessIdentity.Maker(parsing: values), let token = values["token"], !token.isEmpty
            else { return nil }
            self.init(bootID: maker.bootID, namespace: maker.namespace, pid: maker.pid, startTime: maker.startTime,
                      token: token)
        }
    }

    /// `mesos-command-modules.<module_name>.workers.`: the pid and a random suffix follow.
    static func prefix(moduleName: String) -> String {
        "mesos-command-modules.\(TemporaryArea.safeName(moduleName)).workers."
    }

    let directory: TemporaryArea.Directory
    let instance: Instance
    private let logger: Logger

    /// `MESOS_COMMAND_MODULES_INSTANCE=<token>`, for a worker's environment.
    var tokenEntry: String { "\(Self.tokenVariable)=\(instance.token)" }

    /// Makes this instance's records directory in `parent` (`temp_dir`, already prepared and trusted).
    init(parent: String, moduleName: String, logger: Logger, instance: Instance? = .current()) throws(CommandError.Setup) {
        guard let instance else {
            throw CommandError.Setup("cannot record the module's workers: this process's boot id, pid namespace or "
                + "start time cannot be read from /proc")
        }
        self.directory = try TemporaryArea.makeDirectory(in: parent, prefix: Self.prefix(moduleName: moduleName))
        self.instance = instance
        self.logger = logger
        if let failure = write(Self.instanceFile, instance.text) {
            TemporaryArea.retire(directory)
            throw CommandError.Setup("cannot record the module's workers in '\(directory.path)': \(failure)")
        }
    }

    deinit { TemporaryArea.retire(directory) }

    /// Records a worker just started (its pid is its process group id). A record that cannot be made is logged:
    /// the worker runs, but what it leaves if the agent dies will not be cleaned up.
    func record(_ pid: pid_t) {
        let failure: String?
        if let status = ProcessIdentity.status(of: pid) {
            failure = directory.trust() == .trusted ? write(String(pid), "start=\(status.startTime)\n")
                : "the directory '\(directory.path)' can no longer be trusted"
        } else {
            failure = "/proc/\(pid)/stat cannot be read"
        }
        if let failure {
            let message = "Cannot record worker pid \(pid) (\(failure)): should the agent die without stopping "
                + "the module, what it leaves will not be killed at the next start"
            logger.warning("\(message)")
        }
    }

    /// Forgets a worker whose group has been killed and which has been reaped.
    func forget(_ pid: pid_t) { unlinkat(directory.fd, String(pid), 0) }

    /// The error of writing `text` to a new file `name` of the directory, or nil.
    private func write(_ name: String, _ text: String) -> String? {
        let fd = mcm_create_file_at(directory.fd, name)
        guard fd >= 0 else { return "cannot create '\(name)': \(SystemError.describe(errno))" }
        let code = FileIO.writeAll(fd, Array(text.utf8))
        close(fd)
        if code != 0 {
            unlinkat(directory.fd, name, 0)
            return "cannot write '\(name)': \(SystemError.describe(code))"
        }
        return nil
    }

    /// The text of file `name` in the directory open at `fd`, or nil.
    static func read(_ name: String, in fd: Int32) -> String? {
        let file = mcm_open_read_at(fd, name)
        guard file >= 0 else { return nil }
        defer { close(file) }
        guard case .bytes(let bytes) = FileIO.read(fd: file, limit: 4096) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }
}
