import ArgumentParser
import MesosCommandModules

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Say what a libmesos_command_modules.so is, without loading it.",
        discussion: """
            Prints the build identity the library carries: the project's version, the Mesos version and commit \
            it was built against (an agent refuses a module built for another Mesos), and the libmesos it needs. \
            Exits 1 if a file is not such a library.
            """)

    @Argument(help: "The library file(s), e.g. /usr/lib/mesos/modules/libmesos_command_modules.so.")
    var libraries: [String]

    func run() throws {
        var failed = false
        for path in libraries {
            switch LibraryReport(path: path) {
            case .identified(let identity, let needed):
                print(path)
                print("  mesos-command-modules \(identity.version)")
                print(identity.isBuiltForMesos
                    ? "  built for Mesos \(identity.mesosVersion), commit \(identity.mesosCommit)"
                    : "  built for \(identity.mesosDescription)")
                if !needed.isEmpty { print("  needs \(needed.joined(separator: ", "))") }
            case .unidentified(let cause):
                printError("\(path): \(cause)")
                failed = true
            }
        }
        if failed { throw ExitCode(1) }
    }
}

/// What a library file is, as `inspect` and `validate` say it.
enum LibraryReport {
    case identified(BuildIdentity, needed: [String])
    case unidentified(String)

    init(path: String) {
        let file: ELFFile
        do {
            file = try ELFFile(path: path)
        } catch {
            self = .unidentified(error.description)
            return
        }
        defer { file.close() }
        do {
            guard let identity = try file.buildIdentity() else {
                self = .unidentified("a shared library without a mesos-command-modules build identity (no "
                    + "\(BuildIdentity.sectionName) section): not built by this project's mesos/CMakeLists.txt "
                    + "(the C++ module, or another library)")
                return
            }
            self = .identified(identity, needed: try file.neededLibraries().filter { $0.hasPrefix("libmesos") })
        } catch {
            self = .unidentified(error.description)
        }
    }
}
