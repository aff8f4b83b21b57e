import CMesosCommandSpawn
import Glibc
import Logging

/// What a successful command run produced.
public struct CommandRun: Sendable {
    /// The output file's bytes (empty when the command wrote nothing, or the event takes no output).
    public var output: [UInt8]
    /// What the command wrote on stdout and stderr, bounded.
    public var console: String
    /// Wall time from spawn to exit.
    public var duration: Duration
    /// User + system CPU seconds of what the command ran (its cgroup's, or its reaped rusage).
    public var cpuSeconds = 0.0
    /// Processes still running in its cgroup when it exited (killed or kept, as its leftover policy says).
    public var leftovers: [Leftover] = []
}

/// Runs one command the way SPEC §3 says: argv `[command, inputFile, outputFile, errorFile]`, stdin = the input
/// file, no shell, its own process group, no fd of the agent beyond 0/1/2, a deadline that stops the whole
/// group, and every temporary file removed afterwards.
///
/// A direct `posix_spawn` rather than swift-subprocess: measured here, swift-subprocess 1.0.2 cost ~2× the bare
/// spawn per event, its teardown stopped once the leader had exited (a grandchild ignoring SIGTERM survived),
/// and it reported a non-executable file as "No such file or directory".
public struct CommandRunner: Sendable {
    /// How much of stdout+stderr is kept for logs.
    public static let consoleLimit = 64 << 10
    /// How much of the error file is quoted as the cause.
    public static let causeLimit = 16 << 10

    let temporaryArea: TemporaryArea
    public let gracePeriod: Double
    public let outputMaxBytes: Int
    /// containment=cgroup: the module's cgroups (nil: process groups only).
    let cgroups: CgroupTree?

    /// A runner whose private temporary directory is made under `temporaryDirectory`. `users`: the users its
    /// commands may run as (their files are then in a directory per user).
    public init(temporaryDirectory: String, moduleName: String, gracePeriod: Double, outputMaxBytes: Int,
                logger: Logger = Logger(label: "mesos-command-modules") { _ in SwiftLogNoOpLogHandler() },
                users: [CommandUser] = [])
        throws(CommandError.Setup)
    {
        try self.init(temporaryDirectory: temporaryDirectory, moduleName: moduleName, gracePeriod: gracePeriod,
                      outputMaxBytes: outputMaxBytes, cgroups: nil, logger: logger, users: users)
    }

    /// A runner that starts each command in a cgroup of `cgroups` (nil: process groups only).
    init(temporaryDirectory: String, moduleName: String, gracePeriod: Double, outputMaxBytes: Int, cgroups: CgroupTree?,
         logger: Logger, users: [CommandUser] = []) throws(CommandError.Setup) {
        temporaryArea = try TemporaryArea(
            parent: temporaryDirectory, moduleName: moduleName, logger: logger, users: users)
        self.gracePeriod = gracePeriod
        self.outputMaxBytes = outputMaxBytes
        self.cgroups = cgroups
    }

    /// The private directory holding the runs' files.
    public var temporaryDirectory: String { temporaryArea.directory }

    /// Runs `path` with `input` as its input file, and returns its output file when it exits 0.
    ///
    /// - Parameters:
    ///   - timeout: seconds from now before the command's group gets SIGTERM.
    ///   - readsOutput: false for events that take no output: the output file is then not read.
    /// - Throws: ``CommandError`` for every way the run can fail. Cancelling the task stops the command
    ///   (SIGTERM to its group, SIGKILL after the grace period) and throws `.cancelled`.
    public func run(_ path: String, input: [UInt8], timeout: Double, readsOutput: Bool = true) async throws(CommandError)
        -> CommandRun
    {
        try await run(
            path, input: input, deadline: Deadline(seconds: timeout), readsOutput: readsOutput, environment: [])
    }

    /// Runs `path` until `deadline` (the event's, which may have started before: time spent waiting for a
    /// slot counts). `environment` entries (`NAME=value`) are added to the agent's environment. `user`: the user
    /// it runs as (one the runner was made for), nil for the agent's.
    func run(_ path: String, input: [UInt8], deadline: Deadline, readsOutput: Bool, environment: [String],
             leftoverPolicy: LeftoverPolicy = .keep, user: CommandUser? = nil) async throws(CommandError) -> CommandRun
    {
        let loop: EventLoop
        let spawner: Spawner
        let files: TemporaryArea.Files
        do {
            loop = try EventLoop.shared()
            spawner = try Spawner.shared()
            files = try temporaryArea.makeFiles(input: input, user: user)
        } catch let failure as SystemFailure {
            throw CommandError(command: path, code: .setup("cannot start the engine's threads: \(failure)"))
        } catch let failure as CommandError.Setup {
            throw CommandError(command: path, code: .setup(failure.reason))
        } catch {
            throw CommandError(command: path, code: .setup("\(error)"))
        }
        defer { temporaryArea.remove(files) }

        var pipeFDs: [Int32] = [-1, -1]
        guard mcm_pipe(&pipeFDs, 0) == 0 else {
            throw CommandError(command: path, code: .setup("cannot create a pipe: \(SystemError.describe(errno))"))
        }
        // The start gets its own stdin: the event may be answered, and its files closed, before a start stuck
        // in exec(2) returns.
        let stdin = fcntl(files.inputFD, F_DUPFD_CLOEXEC, 3)
        guard stdin >= 0 else {
            let code = errno
            close(pipeFDs[0])
            close(pipeFDs[1])
            throw CommandError(command: path, code: .setup("cannot duplicate the input file's fd: \(SystemError.describe(code))"))
        }

        var cgroup: Cgroup?
        if let cgroups {
            cgroup = cgroups.acquire()
            if cgroup == nil {
                let code = errno
                close(pipeFDs[0])
                close(pipeFDs[1])
                close(stdin)
                throw CommandError(command: path, code: .setup(
                    "cannot create the command's cgroup in \(cgroups.path): \(SystemError.describe(code))"))
            }
        }
        let start = ContinuousClock.now
        let id = loop.makeClientID()
        // The console is watched from the moment the command exists: a command that fills the pipe (64 KiB)
        // before it exits must be drained, or it never exits. Registered here rather than by the loop, so that
        // the hand-over below need not wake it: the first bytes or the exit do (and the loop runs its inbox,
        // which then holds the child, before it looks at the fds that woke it).
        let registered = loop.register(pipeFDs[0], id: id, tag: ExecChild.consoleTag)
        guard registered == 0 else {
            close(pipeFDs[0])
            close(pipeFDs[1])
            close(stdin)
            if let cgroup, let cgroups { loop.execute { loop in cgroups.release(cgroup, keptOnPurpose: false, loop: loop) } }
            throw CommandError(command: path, code: .cannotWatch(errno: registered))
        }
        let completion = Completion<ChildExit>()
        let child = UncheckedSendable(ExecChild(
            id: id, consoleFD: pipeFDs[0], consoleLimit: Self.consoleLimit, deadline: deadline.nanoseconds,
            gracePeriod: gracePeriod, cgroup: cgroup, cgroups: cgroups, leftoverPolicy: leftoverPolicy,
            completion: completion))
        // Handed to the loop without waking it: the command's first output or its exit wakes it, or the
        // deadline does.
        loop.execute(wake: false) { loop in loop.add(child.value, id: id) }
        loop.wake(by: deadline.nanoseconds)
        let consoleWriter = pipeFDs[1]
        let argv = [path, files.input, files.output, files.error]
        let environment = environment + (user?.environment ?? [])
        let cgroupFD = cgroup?.fd ?? -1
        spawner.submit {
            Self.start(path, argv: argv, environment: environment, user: user, stdin: stdin, console: consoleWriter,
                       cgroupFD: cgroupFD, child: child, id: id, deadline: deadline, loop: loop)
        }
        let exit = await withTaskCancellationHandler {
            await completion.value
        } onCancel: {
            loop.execute { loop in (loop.client(id) as? ExecChild)?.cancel(on: loop) }
        }
        let duration = ContinuousClock.now - start

        var console = String(decoding: exit.console, as: UTF8.self)
        if exit.consoleDropped > 0 { console += "… (\(exit.consoleDropped) more bytes dropped)" }
        func failure(_ code: CommandError.Code, cause: String = "") -> CommandError {
            var error = CommandError(command: path, code: code, cause: cause, console: console)
            error.cpuSeconds = exit.cpuSeconds
            error.leftovers = exit.leftovers
            return error
        }
        func success(_ output: [UInt8]) -> CommandRun {
            CommandRun(output: output, console: console, duration: duration, cpuSeconds: exit.cpuSeconds,
                       leftovers: exit.leftovers)
        }

        let status: Int32
        switch exit.ending {
        case .timedOut: throw failure(.timedOut(timeout: deadline.timeout))
        case .cancelled: throw failure(.cancelled)
        case .cannotWatch(let code): throw failure(.cannotWatch(errno: code))
        case .cannotStart(let code): throw failure(.cannotStart(errno: code))
        case .statusLost(let code): throw failure(.statusLost(errno: code))
        case .exited(let raw): status = raw
        }
        if mcm_wifsignaled(status) != 0 {
            throw failure(.signaled(signal: mcm_wtermsig(status)), cause: readCause(files))
        }
        let code = mcm_wexitstatus(status)
        if code != 0 { throw failure(.exited(code: code), cause: readCause(files)) }
        if let reason = temporaryArea.replacement(files) {
            throw failure(.temporaryDirectoryReplaced(path: files.directory.path, reason: reason))
        }
        guard readsOutput else { return success([]) }
        let fd = files.openForReading(files.names.output)
        guard fd >= 0 else { throw failure(.outputUnreadable(errno: errno)) }
        defer { close(fd) }
        switch FileIO.read(fd: fd, limit: outputMaxBytes) {
        case .bytes(let output):
            return success(output)
        case .tooLarge(let size):
            throw failure(.outputTooLarge(size: size, limit: outputMaxBytes))
        case .failed(let code):
            throw failure(.outputUnreadable(errno: code))
        }
    }

    /// Starts the command, on a spawner thread, hands it to the loop and registers its pidfd.
    private static func start(_ path: String, argv: [String], environment: [String], user: CommandUser?,
                              stdin: Int32, console: Int32, cgroupFD: Int32, child: UncheckedSendable<ExecChild>,
                              id: UInt64, deadline: Deadline, loop: EventLoop) {
        var pid: pid_t = 0
        var pidFD: Int32 = -1
        let spawnError = withCStringArray(argv) { argv in
            withCStringArray(environment) { extra in
                path.withCString { path in
                    func spawn(_ credentials: UnsafePointer<mcm_credentials>?) -> Int32 {
                        var request = mcm_spawn_request(
                            path: path, argv: argv, extra_env: extra, stdin_fd: stdin, stdout_fd: console,
                            stderr_fd: console, cgroup_fd: cgroupFD, credentials: credentials)
                        return mcm_spawn_command(&request, &pid, &pidFD)
                    }
                    return user.map { $0.withCredentials(spawn) } ?? spawn(nil)
                }
            }
        }
        close(stdin)
        close(console)
        guard spawnError == 0 else {
            loop.execute { loop in child.value.failedToStart(errno: spawnError, on: loop) }
            return
        }
        let group = UncheckedSendable(ProcessGroup(pid: pid, pidFD: pidFD))
        // Handed over before its pidfd is registered, so that the exit it reports finds the child; without a
        // pidfd the loop must be woken to poll for the exit.
        loop.execute(wake: pidFD < 0) { loop in child.value.started(group.value, on: loop) }
        if pidFD >= 0 && loop.register(pidFD, id: id, tag: ExecChild.exitTag) != 0 {
            loop.execute { _ in group.value.pollInstead() }
        }
        // A start so late that its event was answered: the loop, which may have handled the deadline before
        // the hand-over, must kill it now.
        if deadline.hasPassed { loop.execute { _ in } }
    }

    /// The error file's content as the failure's cause: bounded, trailing white space trimmed, never failing.
    func readCause(_ files: TemporaryArea.Files) -> String {
        let fd = files.openForReading(files.names.error)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        guard let (bytes, size) = FileIO.readPrefix(fd: fd, limit: Self.causeLimit) else { return "" }
        var text = String(decoding: bytes, as: UTF8.self)
        while let last = text.last, last.isWhitespace { text.removeLast() }
        if size > bytes.count { text += "… (\(size - bytes.count) more bytes)" }
        return text
    }
}

/// When an event must be answered: its start plus its timeout, on the monotonic clock.
struct Deadline: Sendable {
    /// Monotonic nanoseconds.
    let nanoseconds: UInt64
    /// The timeout it was made from, for messages.
    let timeout: Double

    init(seconds timeout: Double, from start: UInt64 = MonotonicClock.now()) {
        self.timeout = timeout
        self.nanoseconds = start &+ MonotonicClock.nanoseconds(timeout)
    }

    var hasPassed: Bool { MonotonicClock.now() >= nanoseconds }
}

/// Hands a value confined to one thread at a time over to another (here: to the event loop, which then owns
/// it alone).
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
