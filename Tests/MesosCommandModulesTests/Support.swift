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

    /// Entries of a directory (without . and ..).
    static func entries(_ dir: String) -> [String] {
        guard let handle = opendir(dir) else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }
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

/// The number of open fds of this process.
func openFDCount() -> Int { Sandbox.entries("/proc/self/fd").count }

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
