import Glibc
import Testing

@testable import MesosCommandModules

/// A real temporary directory for one test, with helpers to write executable scripts into it.
final class Sandbox: @unchecked Sendable {
    let path: String

    init() {
        var template = Array("/tmp/mcm-test.XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil)
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        _ = shell("chmod -R u+w '\(path)' 2>/dev/null; rm -rf '\(path)'")
    }

    /// Writes an executable script named `name` and returns its path.
    @discardableResult
    func script(_ name: String, _ body: String, mode: mode_t = 0o755) -> String {
        let file = path + "/" + name
        write(file, body)
        chmod(file, mode)
        return file
    }

    func write(_ file: String, _ content: String) {
        let fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0, "cannot write \(file)")
        _ = FileIO.writeAll(fd, Array(content.utf8))
        close(fd)
    }

    func read(_ file: String) -> String? {
        guard case .bytes(let bytes) = FileIO.read(path: file, limit: 1 << 24) else { return nil }
        return String(decoding: bytes, as: UTF8.self)
    }

    func mkdir(_ name: String) -> String {
        let dir = path + "/" + name
        Glibc.mkdir(dir, 0o755)
        return dir
    }

    /// The attack of issue 14 on state_dir (needs root to chown): `theirs`, a directory of `nobody` whose `m`
    /// (a module's state directory) is their link to `victim`, which holds root's file `precious`.
    func stateDirOfAnotherUser() -> (victim: String, theirs: String) {
        let victim = mkdir("victim")
        write(victim + "/precious", "root's")
        let theirs = mkdir("theirs")
        chown(theirs, 65534, 65534)
        symlink(victim, theirs + "/m")
        lchown(theirs + "/m", 65534, 65534)
        return (victim, theirs)
    }

    /// Entries of a directory (without . and ..).
    static func entries(_ dir: String) -> [String] { FileIO.entries(dir).sorted() }

    /// What a private temporary directory holds besides the record of the process that made it (`instance`).
    static func runFiles(_ dir: String) -> [String] { entries(dir).filter { $0 != ProcessIdentity.Maker.fileName } }
}

/// Runs a shell command and returns its exit status (for test setup only).
@discardableResult
func shell(_ command: String) -> Int32 {
    let status = system(command)
    return status == -1 ? -1 : (status >> 8) & 0xff
}

/// Whether process `pid` exists (and is not a zombie).
func processAlive(_ pid: pid_t) -> Bool {
    guard kill(pid, 0) == 0 else { return false }
    guard let fd = fopen("/proc/\(pid)/stat", "r") else { return false }
    defer { fclose(fd) }
    var buffer = [CChar](repeating: 0, count: 512)
    guard fgets(&buffer, 512, fd) != nil else { return false }
    let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let close = text.lastIndex(of: ")") else { return false }
    let state = text[text.index(close, offsetBy: 2)]
    return state != "Z" && state != "X"
}

/// Waits until `condition` holds, up to `seconds`; returns whether it did.
func eventually(within seconds: Double, _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

/// The number of this process's open fds of the kinds the engine opens per command: pipes, pidfds, files
/// (after the engine's one event loop has its epoll and eventfd). The Swift runtime's own fds (Dispatch's
/// timerfds, the test harness's sockets) come and go on their own and are not counted, nor is the one fd each
/// live module keeps on its private temporary directory, nor the one each live isolator keeps on its state
/// directory (`…/state/<module_name>`).
func openFDCount() -> Int {
    _ = try? EventLoop.shared()
    return openFDTargets().filter { entry in
        let target = entry.split(separator: " ", maxSplits: 1).last.map(String.init) ?? ""
        if target.contains("/mesos-command-modules.") && !target.hasSuffix(".in") && !target.hasSuffix(".out")
            && !target.hasSuffix(".err")
        {
            return false
        }
        if target.split(separator: "/").dropLast().last == "state" { return false }
        return target.hasPrefix("pipe:") || target.contains("pidfd") || target.hasPrefix("/tmp")
            || target.hasPrefix("/var") || target.contains("eventpoll") || target.contains("eventfd")
    }.count
}

/// Our children (running or zombies), if any.
func children() -> [pid_t] {
    let me = getpid()
    return Sandbox.entries("/proc").compactMap { entry -> pid_t? in
        guard let pid = pid_t(entry), let fd = fopen("/proc/\(pid)/stat", "r") else { return nil }
        var buffer = [CChar](repeating: 0, count: 512)
        let line = fgets(&buffer, 512, fd) != nil
        fclose(fd)
        guard line else { return nil }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(close, offsetBy: 2)...].split(separator: " ")
        return fields.count > 1 && pid_t(fields[1]) == me ? pid : nil
    }
}

/// Our zombie children, if any.
func zombieChildren() -> [pid_t] {
    let me = getpid()
    var zombies: [pid_t] = []
    for entry in Sandbox.entries("/proc") {
        guard let pid = pid_t(entry), let fd = fopen("/proc/\(pid)/stat", "r") else { continue }
        var buffer = [CChar](repeating: 0, count: 512)
        let line = fgets(&buffer, 512, fd) != nil
        fclose(fd)
        guard line else { continue }
        let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard let close = text.lastIndex(of: ")") else { continue }
        let fields = text[text.index(close, offsetBy: 2)...].split(separator: " ")
        if fields.count > 1, fields[0] == "Z", pid_t(fields[1]) == me { zombies.append(pid) }
    }
    return zombies
}

func makeRunner(_ sandbox: Sandbox, grace: Double = 1, outputMax: Int = 1 << 20) throws -> CommandRunner {
    try CommandRunner(temporaryDirectory: sandbox.path, moduleName: "test", gracePeriod: grace, outputMaxBytes: outputMax)
}

import Logging
import Synchronization

/// Log lines captured from a module, to assert on what an operator would see.
final class CapturedLog: Sendable {
    let lines = Mutex<[String]>([])

    var all: [String] { lines.withLock { $0 } }

    func contains(_ text: String) -> Bool { all.contains { $0.contains(text) } }

    var logger: Logger {
        Logger(label: "test") { _ in CapturingHandler(log: self) }
    }

    struct CapturingHandler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            log.lines.withLock { $0.append("\(event.level): \(event.message)") }
        }
    }
}

/// A module configuration whose commands are scripts in `sandbox`.
func configuration(_ kind: ModuleKind, _ sandbox: Sandbox, name: String = "test_module",
                   _ parameters: [(String, String)]) throws -> ModuleConfiguration {
    var all: [(key: String, value: String)] = [("module_name", name), ("temp_dir", sandbox.path)]
    if kind == .isolator { all.append(("state_dir", sandbox.path + "/state")) }
    all += parameters.map { (key: $0.0, value: $0.1) }
    return try ModuleConfiguration(kind: kind, parameters: all)
}

func hook(_ sandbox: Sandbox, _ parameters: [(String, String)], log: CapturedLog = CapturedLog()) throws -> HookModule {
    try HookModule(configuration: configuration(.hook, sandbox, parameters), logger: log.logger)
}

func isolator(_ sandbox: Sandbox, _ parameters: [(String, String)], log: CapturedLog = CapturedLog()) throws
    -> IsolatorModule
{
    try IsolatorModule(configuration: configuration(.isolator, sandbox, parameters), logger: log.logger)
}

/// A container id's JSON.
func cid(_ value: String) -> String { #"{"value":"\#(value)"}"# }

/// The error an async call throws, if any.
func thrownError<T>(_ body: () async throws -> T) async -> (any Error)? {
    do {
        _ = try await body()
        return nil
    } catch {
        return error
    }
}

/// A binary of this package, built next to the test bundle.
func builtBinary(_ name: String) -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, 4095)
    let exe = String(decoding: buffer[0..<max(0, n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let dir = exe.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    return dir + "/" + name
}

/// The built CLI.
var cliPath: String { builtBinary("mesos-command-modules") }

/// The repository's root (for the examples).
let repositoryRoot: String = {
    let source = #filePath
    return source.split(separator: "/", omittingEmptySubsequences: false).dropLast(3).joined(separator: "/")
}()

/// Runs the CLI with `arguments` in `directory`; returns its exit status, stdout and stderr.
func runCLI(_ arguments: [String], in directory: String = repositoryRoot) -> (status: Int32, stdout: String, stderr: String) {
    let sandbox = Sandbox()
    let quoted = arguments.map { "'" + $0.replacingAll("'", with: "'\\''") + "'" }.joined(separator: " ")
    let status = shell("cd '\(directory)' && '\(cliPath)' \(quoted) > '\(sandbox.path)/out' 2> '\(sandbox.path)/err'")
    return (status, sandbox.read(sandbox.path + "/out") ?? "", sandbox.read(sandbox.path + "/err") ?? "")
}

/// Runs the C ABI check program (Tests/ABICheck/main.c) with `arguments`, its temporary files in a fresh sandbox,
/// killed after `timeout` seconds; returns its exit status and its output (stdout and stderr).
func runABICheck(_ arguments: [String] = [], timeout: Int) -> (status: Int32, output: String) {
    let sandbox = Sandbox()
    let quoted = arguments.map { " '" + $0.replacingAll("'", with: "'\\''") + "'" }.joined()
    let status = shell("TMPDIR='\(sandbox.path)' timeout \(timeout) '\(builtBinary("mcm-abi-check"))'\(quoted) "
        + "> '\(sandbox.path)/out' 2>&1")
    return (status, sandbox.read(sandbox.path + "/out") ?? "")
}

extension String {
    func replacingAll(_ target: String, with replacement: String) -> String {
        var result = ""
        var rest = Substring(self)
        while let range = rest.range(of: target) {
            result += rest[..<range.lowerBound] + replacement
            rest = rest[range.upperBound...]
        }
        return result + rest
    }
}

extension Substring {
    func range(of target: String) -> Range<Index>? {
        guard !target.isEmpty else { return nil }
        var index = startIndex
        while index < endIndex {
            if self[index...].hasPrefix(target) { return index..<self.index(index, offsetBy: target.count) }
            index = self.index(after: index)
        }
        return nil
    }
}

/// The targets of this process's open fds, for diagnosing a leak.
func openFDTargets() -> [String] {
    Sandbox.entries("/proc/self/fd").map { fd in
        var buffer = [CChar](repeating: 0, count: 512)
        let n = readlink("/proc/self/fd/" + fd, &buffer, 511)
        return fd + " " + String(decoding: buffer[0..<max(0, n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Resident memory of this process, in bytes.
func residentBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    var size = 0
    var resident = 0
    _ = withUnsafeMutablePointer(to: &size) { s in
        withUnsafeMutablePointer(to: &resident) { r in
            withVaList([s, r]) { vfscanf(file, "%ld %ld", $0) }
        }
    }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// What a module left behind after its events: open fds beyond the baseline, files in its temporary
/// directory, zombie children (after the grace period).
func expectNothingLeft(fdsBefore: Int, temporaryDirectory: String, sourceLocation: SourceLocation = #_sourceLocation) async {
    #expect(await eventually(within: 5) { zombieChildren().isEmpty }, "zombies left", sourceLocation: sourceLocation)
    #expect(Sandbox.runFiles(temporaryDirectory).isEmpty, "temporary files left", sourceLocation: sourceLocation)
    #expect(await eventually(within: 5) { openFDCount() <= fdsBefore }, "fds: \(openFDTargets()) > \(fdsBefore)",
            sourceLocation: sourceLocation)
}

/// CPU time (user + system) this process has used, in seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
        + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
}
