import CMesosCommandSpawn
import Glibc

/// What a successful command run produced.
public struct CommandRun: Sendable {
    /// The output file's bytes (empty when the command wrote nothing, or the event takes no output).
    public var output: [UInt8]
    /// What the command wrote on stdout and stderr, bounded.
    public var console: String
    /// Wall time from spawn to exit.
    public var duration: Duration
}

/// Runs one command the way SPEC §3 says: argv `[command, inputFile, outputFile, errorFile]`, stdin = the input
/// file, no shell, its own process group, no fd of the agent beyond 0/1/2, a timeout that stops the whole group,
/// and every temporary file removed afterwards.
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

    /// A runner whose private temporary directory is made under `temporaryDirectory`.
    public init(temporaryDirectory: String, moduleName: String, gracePeriod: Double, outputMaxBytes: Int)
        throws(CommandError.Setup)
    {
        temporaryArea = try TemporaryArea(parent: temporaryDirectory, moduleName: moduleName)
        self.gracePeriod = gracePeriod
        self.outputMaxBytes = outputMaxBytes
    }

    /// The private directory holding the runs' files.
    public var temporaryDirectory: String { temporaryArea.directory }

    /// Runs `path` with `input` as its input file, and returns its output file when it exits 0.
    ///
    /// - Parameter readsOutput: false for events that take no output: the output file is then not read.
    /// - Throws: ``CommandError`` for every way the run can fail. Cancelling the task stops the command
    ///   (SIGTERM to its group, SIGKILL after the grace period) and throws `.cancelled`.
    public func run(_ path: String, input: [UInt8], timeout: Double, readsOutput: Bool = true) async throws(CommandError)
        -> CommandRun
    {
        let files: TemporaryArea.Files
        do {
            files = try temporaryArea.makeFiles(input: input)
        } catch {
            throw CommandError(command: path, code: .setup(error.reason))
        }
        defer { temporaryArea.remove(files) }

        var pipeFDs: [Int32] = [-1, -1]
        guard mcm_pipe_for_console(&pipeFDs) == 0 else {
            throw CommandError(command: path, code: .setup("cannot create a pipe: \(SystemError.describe(errno))"))
        }

        let start = ContinuousClock.now
        var pid: pid_t = 0
        let spawnError = withCStringArray([path, files.input, files.output, files.error]) { argv in
            argv.withUnsafeBufferPointer { argvPointer in
                mcm_spawn(path, argvPointer.baseAddress, files.inputFD, pipeFDs[1], pipeFDs[1], &pid)
            }
        }
        close(pipeFDs[1])
        if spawnError != 0 {
            close(pipeFDs[0])
            throw CommandError(command: path, code: .cannotStart(errno: spawnError))
        }

        let pidFD = mcm_pidfd_open(pid)
        let monitor = ChildMonitor.shared
        let (token, box) = monitor.watch(
            pid, pidFD: pidFD, consoleFD: pipeFDs[0], consoleLimit: Self.consoleLimit, timeout: timeout,
            gracePeriod: gracePeriod)
        let exit = await withTaskCancellationHandler {
            await box.value
        } onCancel: {
            monitor.cancel(token)
        }
        let duration = ContinuousClock.now - start

        var console = String(decoding: exit.console, as: UTF8.self)
        if exit.consoleDropped > 0 { console += "… (\(exit.consoleDropped) more bytes dropped)" }

        switch exit.stop {
        case .timedOut: throw CommandError(command: path, code: .timedOut(timeout: timeout), console: console)
        case .cancelled: throw CommandError(command: path, code: .cancelled, console: console)
        case nil: break
        }
        if mcm_wifsignaled(exit.status) != 0 {
            throw CommandError(
                command: path, code: .signaled(signal: mcm_wtermsig(exit.status)), cause: readCause(files.error),
                console: console)
        }
        let status = mcm_wexitstatus(exit.status)
        if status != 0 {
            throw CommandError(
                command: path, code: .exited(code: status), cause: readCause(files.error), console: console)
        }
        guard readsOutput else { return CommandRun(output: [], console: console, duration: duration) }
        switch FileIO.read(path: files.output, limit: outputMaxBytes) {
        case .bytes(let output):
            return CommandRun(output: output, console: console, duration: duration)
        case .tooLarge(let size):
            throw CommandError(
                command: path, code: .outputTooLarge(size: size, limit: outputMaxBytes), console: console)
        case .failed(let code):
            throw CommandError(command: path, code: .outputUnreadable(errno: code), console: console)
        }
    }

    /// The error file's content as the failure's cause: bounded, trailing white space trimmed, never failing.
    func readCause(_ path: String) -> String {
        guard let (bytes, size) = FileIO.readPrefix(path: path, limit: Self.causeLimit) else { return "" }
        var text = String(decoding: bytes, as: UTF8.self)
        while let last = text.last, last.isWhitespace { text.removeLast() }
        if size > bytes.count { text += "… (\(size - bytes.count) more bytes)" }
        return text
    }
}
