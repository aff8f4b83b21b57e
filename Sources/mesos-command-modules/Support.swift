import ArgumentParser
import Glibc
import Logging
import MesosCommandModules
import Synchronization

/// Prints to stderr.
func printError(_ text: String) {
    var line = text
    if !line.hasSuffix("\n") { line += "\n" }
    _ = line.withCString { write(2, $0, strlen($0)) }
}

/// A failure already reported on stderr: exit with `code`.
struct Failed: Error {}

/// Where the built-in examples are: `$MESOS_COMMAND_MODULES_EXAMPLES`, `./examples`, where the package installs
/// them beside this binary (`<prefix>/bin/` → `<prefix>/share/mesos-command-modules/examples`), or the checkout
/// a SwiftPM build of it is in. Found from where the binary is, never
/// from a path built into it.
func examplesManifest() throws -> String {
    var candidates: [String] = []
    if let dir = getenv("MESOS_COMMAND_MODULES_EXAMPLES") { candidates.append(String(cString: dir)) }
    candidates.append("examples")
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    if length > 0 {
        let binary = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let directory = binary.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        candidates.append(directory + "/../share/mesos-command-modules/examples")
        candidates.append(directory + "/../../../examples")  // <checkout>/.build/<triple>/<configuration>/
    }
    for dir in candidates where access(dir + "/modules.json", R_OK) == 0 {
        return dir + "/modules.json"
    }
    throw ValidationError("cannot find the bundled examples (tried \(candidates.joined(separator: ", "))); "
        + "give --manifest or set MESOS_COMMAND_MODULES_EXAMPLES")
}

func loadManifest(_ path: String) throws -> ModulesManifest {
    do {
        return try ModulesManifest(contentsOf: path)
    } catch {
        throw ValidationError("\(path): \(error)")
    }
}

/// A log handler for the CLI: lines on stderr, and a count of warnings and errors (for `run --strict`).
struct CLILogHandler: LogHandler {
    static let warnings = Mutex(0)

    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level
    let quiet: Bool

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        if event.level >= .warning { Self.warnings.withLock { $0 += 1 } }
        if quiet && event.level < .warning { return }
        printError("\(event.level.rawValue.uppercased()): \(event.message)")
    }
}

func makeLogger(_ label: String, verbose: Bool, quiet: Bool = false) -> Logger {
    Logger(label: label) { _ in CLILogHandler(logLevel: verbose ? .debug : .info, quiet: quiet) }
}

/// A fresh private directory, removed by `remove()`.
struct ScratchDirectory {
    let path: String

    init(_ name: String) throws {
        var template = Array("\(ModuleConfiguration.userTemporaryDirectory)/\(name).XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw ValidationError("cannot create a temporary directory: \(String(cString: strerror(errno)))")
        }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func remove() { _ = system("rm -rf '\(path)'") }
}

func formatMilliseconds(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    let ms = Double(seconds) * 1000 + Double(attoseconds) / 1e15
    return ms < 10 ? String(Double(Int(ms * 100)) / 100) + " ms" : String(Double(Int(ms * 10)) / 10) + " ms"
}

extension Event: ExpressibleByArgument {
    public init?(argument: String) { self.init(rawValue: argument) }
    public static var allValueStrings: [String] { allCases.map(\.key) }
}

/// Writes a line to stdout at once (the CLI's `print`), so that it stays in step with the log lines on stderr.
func print(_ text: String = "") {
    let line = text + "\n"
    _ = line.withCString { write(1, $0, strlen($0)) }
}
