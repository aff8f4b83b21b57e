import CMesosCommandSpawn
import Glibc

/// The private directory (0700) where one module's input, output and error files live (0600), and their life.
///
/// One long-lived directory per module, with `mkostemp` files inside, rather than a directory per event:
/// measured here, `mkdtemp`+`rmdir` per event cost ~3.2 ms on /tmp, three `mkostemp` ~40 µs — the difference
/// is most of an event's budget at thousands of events per second.
final class TemporaryArea: Sendable {
    /// `<temp_dir>/mesos-command-modules.<module_name>.<pid>.XXXXXX`: the pid lets a later agent remove the
    /// directory of one that crashed.
    let directory: String

    /// The three files of one command run. `inputFD` is open on the input file, at offset 0: it is the
    /// command's stdin.
    struct Files {
        let input: String
        let output: String
        let error: String
        let inputFD: Int32
    }

    init(parent: String, moduleName: String) throws(CommandError.Setup) {
        let safeName = String(moduleName.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
        let prefix = "mesos-command-modules.\(safeName)."
        Self.removeDirectoriesOfDeadProcesses(in: parent, prefix: prefix)
        var template = Array("\(parent)/\(prefix)\(getpid()).XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else {
            throw CommandError.Setup(
                "cannot create a private temporary directory in '\(parent)' (temp_dir): \(SystemError.describe(errno))")
        }
        directory = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        Self.removeAll(directory)
    }

    /// Removes `<parent>/<prefix><pid>.*` directories whose process is gone (an agent that crashed), with what
    /// its commands left in them.
    static func removeDirectoriesOfDeadProcesses(in parent: String, prefix: String) {
        var stale: [String] = []
        for name in FileIO.entries(parent) where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            guard let dot = rest.firstIndex(of: "."), let pid = pid_t(rest[..<dot]), pid > 0 else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH { stale.append(parent + "/" + name) }
        }
        for path in stale {
            var info = stat()
            // Only our own private directories.
            if lstat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFDIR, info.st_uid == geteuid() { removeAll(path) }
        }
    }

    /// Removes a directory and the files a command left in it.
    static func removeAll(_ directory: String) {
        for name in FileIO.entries(directory) { unlink(directory + "/" + name) }
        rmdir(directory)
    }

    /// Creates the input file holding `input` and the empty output and error files.
    func makeFiles(input: [UInt8]) throws(CommandError.Setup) -> Files {
        let inputFile = try makeFile("in")
        let inputFD = inputFile.fd
        let written = FileIO.writeAll(inputFD, input)
        if written != 0 || lseek(inputFD, 0, SEEK_SET) != 0 {
            let code = written != 0 ? written : errno
            close(inputFD)
            unlink(inputFile.path)
            throw CommandError.Setup("cannot write the input file in '\(directory)': \(SystemError.describe(code))")
        }
        let outputFile: (path: String, fd: Int32)
        let errorFile: (path: String, fd: Int32)
        do {
            outputFile = try makeFile("out")
            close(outputFile.fd)
        } catch {
            close(inputFD)
            unlink(inputFile.path)
            throw error
        }
        do {
            errorFile = try makeFile("err")
            close(errorFile.fd)
        } catch {
            close(inputFD)
            unlink(inputFile.path)
            unlink(outputFile.path)
            throw error
        }
        return Files(input: inputFile.path, output: outputFile.path, error: errorFile.path, inputFD: inputFD)
    }

    /// Closes and removes a run's files, whatever the command did to them.
    func remove(_ files: Files) {
        close(files.inputFD)
        unlink(files.input)
        unlink(files.output)
        unlink(files.error)
    }

    private func makeFile(_ prefix: String) throws(CommandError.Setup) -> (path: String, fd: Int32) {
        for attempt in 0..<2 {
            var template = Array("\(directory)/\(prefix).XXXXXX".utf8CString)
            let fd = template.withUnsafeMutableBufferPointer { mcm_mkstemp_cloexec($0.baseAddress!) }
            if fd >= 0 { return (String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self), fd) }
            // The directory was removed under us (a command, a tmp cleaner): make it again, once.
            if errno == ENOENT, attempt == 0, mkdir(directory, 0o700) == 0 || errno == EEXIST { continue }
            throw CommandError.Setup(
                "cannot create a temporary file in '\(directory)': \(SystemError.describe(errno))")
        }
        throw CommandError.Setup("cannot create a temporary file in '\(directory)'")
    }
}
