import CMesosCommandSpawn
import Glibc
import Logging
import Synchronization

/// The private directory (0700) where one module's input, output and error files live (0600), and their life.
///
/// One long-lived directory per module rather than one per event: measured here, `mkdtemp`+`rmdir` per event
/// cost ~3.2 ms on /tmp, three file creations ~40 µs — the difference is most of an event's budget.
///
/// The module runs as root; the directory's path is handed to commands, so it is trusted only while it is
/// provably the one the module made (SPEC §3). It is made with `mkdtemp`, kept open (an `O_DIRECTORY` fd that
/// every file is created, read and removed through), and before and after each run its path must still name
/// that same inode, owned by us, mode 0700. If it vanished (a tmp cleaner, an operator's `rm`) or changed, a
/// fresh directory with a new random name is made and the change is logged — never a path that someone else
/// could have re-created.
///
/// When a command runs as another user (`<event>_user`), the directory is 0711 — others may pass through it, not
/// list it — and holds a private directory per user (0700, owned by the user, a random name) with that user's
/// events' files (owned by the user), and one for the agent's user's events (root's, 0700): a command reaches its
/// own files by their paths, and nothing of another event's, nor of the module's.
final class TemporaryArea: Sendable {
    /// One directory the module made: its path, an open fd on it, and its identity.
    final class Directory: Sendable {
        let path: String
        let fd: Int32
        let device: UInt64
        let inode: UInt64
        /// Who must own it: the agent's user, or the user whose events' files it holds.
        let owner: uid_t
        /// What its mode must be: 0700, or 0711 for the module's directory that holds users' directories.
        let mode: mode_t

        init(path: String, fd: Int32, device: UInt64, inode: UInt64, owner: uid_t = geteuid(), mode: mode_t = 0o700) {
            self.path = path
            self.fd = fd
            self.device = device
            self.inode = inode
            self.owner = owner
            self.mode = mode
        }

        deinit { close(fd) }

        enum Trust: Equatable {
            case trusted
            /// Nothing is at its path any more.
            case gone(String)
            /// Something else is at its path, or it is no longer private.
            case changed(String)
        }

        /// Whether `path` still names this directory, with its owner and mode.
        func trust() -> Trust {
            var byPath = stat()
            guard lstat(path, &byPath) == 0 else { return .gone("it is gone (\(SystemError.describe(errno)))") }
            guard UInt64(byPath.st_dev) == device, UInt64(byPath.st_ino) == inode else {
                return .changed("another \(Self.kind(byPath)) is at its path now (owner uid \(byPath.st_uid), mode "
                    + "\(String(byPath.st_mode & 0o7777, radix: 8)))")
            }
            var byFD = stat()
            guard fstat(fd, &byFD) == 0 else { return .changed("it cannot be checked (\(SystemError.describe(errno)))") }
            if byFD.st_uid != owner { return .changed("its owner is now uid \(byFD.st_uid)") }
            if byFD.st_mode & 0o7777 != mode { return .changed("its mode is now \(String(byFD.st_mode & 0o7777, radix: 8))") }
            return .trusted
        }

        static func kind(_ info: stat) -> String {
            switch info.st_mode & S_IFMT {
            case S_IFDIR: return "directory"
            case S_IFLNK: return "symbolic link"
            default: return "file"
            }
        }

        /// Removes what this directory holds (what a command made in it included) and, if its path still names
        /// it, the directory itself.
        func removeAll() {
            // The record of who made it goes last: a directory half removed by an agent that died meanwhile still
            // proves whose it was.
            let names = FileIO.entries(fd: fd).sorted { $1 == ProcessIdentity.Maker.fileName && $0 != $1 }
            for name in names { FileIO.removeTree(name, in: fd) }
            var byPath = stat()
            if lstat(path, &byPath) == 0, UInt64(byPath.st_dev) == device, UInt64(byPath.st_ino) == inode {
                rmdir(path)
            }
        }
    }

    /// The three files of one command run, created in `directory`. `inputFD` is open on the input file, at
    /// offset 0: it is the command's stdin.
    struct Files: Sendable {
        let directory: Directory
        let names: (input: String, output: String, error: String)
        let inputFD: Int32

        var input: String { directory.path + "/" + names.input }
        var output: String { directory.path + "/" + names.output }
        var error: String { directory.path + "/" + names.error }

        /// Opens the run's file `name` to read what the command wrote, or -1 with errno. A file of a directory
        /// another user owns must still be a regular file of theirs (EPERM if not): never a link they made to a
        /// file of root's, which the module would then read for them.
        func openForReading(_ name: String) -> Int32 {
            let fd = mcm_open_read_at(directory.fd, name)
            guard fd >= 0, directory.owner != geteuid() else { return fd }
            var info = stat()
            if fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG, info.st_uid == directory.owner { return fd }
            close(fd)
            errno = EPERM
            return -1
        }
    }

    /// Where the module's directories are made (`temp_dir`).
    let parent: String
    /// `mesos-command-modules.<module_name>.`: with the pid after it, it lets a later agent find the directory
    /// of one that crashed (its `instance` file proves whether that agent is gone).
    private let prefix: String
    private let logger: Logger
    private let current: Mutex<Directory>
    private let nextFile = Atomic<UInt64>(0)
    /// Whether commands run as other users: then every event's files are in a directory per user.
    let openToUsers: Bool
    /// Per uid: its directory, and the module's directory it is in.
    private let userDirectories = Mutex<[uid_t: (in: Directory, directory: Directory)]>([:])

    /// `users`: the users commands run as (`<event>_user`), besides the agent's.
    init(parent: String, moduleName: String, logger: Logger, users: [CommandUser] = []) throws(CommandError.Setup) {
        self.parent = parent
        self.prefix = "mesos-command-modules.\(Self.safeName(moduleName))."
        self.logger = logger
        self.openToUsers = users.contains { $0.uid != geteuid() }
        try Self.prepareParent(parent, openToUsers: openToUsers)
        Self.removeAbandonedDirectories(in: parent, prefix: prefix)
        current = Mutex(try Self.makeDirectory(in: parent, prefix: prefix, mode: openToUsers ? 0o711 : 0o700,
                                               maker: ProcessIdentity.Maker.current))
    }

    deinit {
        current.withLock { Self.retire($0) }
    }

    /// `module_name` as it can appear in a file name: letters, digits, `-` and `_`; anything else becomes `_`.
    static func safeName(_ moduleName: String) -> String {
        String(moduleName.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" ? $0 : "_" })
    }

    /// The directory in use now.
    var directory: String { current.withLock { $0.path } }

    /// Creates the input file holding `input` and the empty output and error files, in a directory that is
    /// still provably ours — or `user`'s, then owned by them.
    func makeFiles(input: [UInt8], user: CommandUser? = nil) throws(CommandError.Setup) -> Files {
        let directory = try trustedDirectory(for: user)
        let serial = nextFile.wrappingAdd(1, ordering: .relaxed).oldValue
        let names = (input: "\(serial).in", output: "\(serial).out", error: "\(serial).err")
        let owner = user.flatMap { directory.owner == $0.uid && $0.uid != geteuid() ? $0 : nil }
        let inputFD = mcm_create_file_at(directory.fd, names.input)
        guard inputFD >= 0 else { throw cannotCreate(names.input, in: directory, errno) }
        var failure: (name: String, code: Int32)?
        var code = FileIO.writeAll(inputFD, input)
        if code == 0 && lseek(inputFD, 0, SEEK_SET) != 0 { code = errno }
        if code == 0, let owner, fchown(inputFD, owner.uid, owner.gid) != 0 { code = errno }
        if code != 0 { failure = (names.input, code) }
        var created = [names.input]
        for name in [names.output, names.error] where failure == nil {
            let fd = mcm_create_file_at(directory.fd, name)
            guard fd >= 0 else {
                failure = (name, errno)
                break
            }
            created.append(name)
            if let owner, fchown(fd, owner.uid, owner.gid) != 0 { failure = (name, errno) }
            close(fd)
        }
        if let failure {
            close(inputFD)
            for name in created { unlinkat(directory.fd, name, 0) }
            throw cannotCreate(failure.name, in: directory, failure.code)
        }
        return Files(directory: directory, names: names, inputFD: inputFD)
    }

    /// Closes and removes a run's files, whatever the command did to them.
    func remove(_ files: Files) {
        close(files.inputFD)
        for name in [files.names.input, files.names.output, files.names.error] { unlinkat(files.directory.fd, name, 0) }
    }

    /// Why the directory of `files` was replaced by something else during a run, or nil. A directory that is
    /// merely gone (the command removed it) is not a reason: what the command wrote is read through the
    /// directory's fd or not at all.
    func replacement(_ files: Files) -> String? {
        if case .changed(let reason) = files.directory.trust() { return reason }
        return nil
    }

    private func cannotCreate(_ name: String, in directory: Directory, _ code: Int32) -> CommandError.Setup {
        CommandError.Setup("cannot create '\(directory.path)/\(name)': \(SystemError.describe(code))")
    }

    /// Where the files of an event of `user` (nil: the agent's) are made: the module's directory, or its directory
    /// of that user when commands run as other users — made on first use, and anew (logged) when it can no longer
    /// be trusted (its user changed its mode) or the module's directory was replaced.
    private func trustedDirectory(for user: CommandUser?) throws(CommandError.Setup) -> Directory {
        let top = try trustedDirectory()
        guard openToUsers else { return top }
        let uid = user?.uid ?? geteuid()
        let known = userDirectories.withLock { $0[uid] }
        if let known, known.in === top, known.directory.trust() == .trusted { return known.directory }
        return try userDirectories.withLock { (directories: inout [uid_t: (in: Directory, directory: Directory)])
            throws(CommandError.Setup) -> Directory in
            let stale = directories[uid]
            // Another event may have made it meanwhile.
            if let stale, stale.in === top, stale.directory !== known?.directory, stale.directory.trust() == .trusted {
                return stale.directory
            }
            let fresh = try Self.makeUserDirectory(in: top, uid: uid, gid: user?.gid ?? getegid())
            if let stale {
                if stale.in === top, case .changed(let reason) = stale.directory.trust() {
                    let message = "The private temporary directory '\(stale.directory.path)' of uid \(uid) can no "
                        + "longer be trusted: \(reason). Its commands now use a new one, '\(fresh.path)'."
                    logger.warning("\(message)")
                }
                stale.directory.removeAll()
            }
            directories[uid] = (top, fresh)
            return fresh
        }
    }

    /// Makes `<top>/u<uid>.<random>`, 0700, owned by `uid` and `gid`, through `top`'s fd.
    static func makeUserDirectory(in top: Directory, uid: uid_t, gid: gid_t) throws(CommandError.Setup) -> Directory {
        var name = ""
        var code: Int32 = EEXIST
        for _ in 0..<16 where code == EEXIST {
            name = "u\(uid).\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
            code = mkdirat(top.fd, name, 0o700) == 0 ? 0 : errno
        }
        let path = top.path + "/" + name
        guard code == 0 else {
            throw CommandError.Setup("cannot create the private temporary directory '\(path)': \(SystemError.describe(code))")
        }
        let fd = openat(top.fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        var info = stat()
        guard fd >= 0, uid == geteuid() || fchown(fd, uid, gid) == 0, fstat(fd, &info) == 0 else {
            let code = errno
            if fd >= 0 { close(fd) }
            unlinkat(top.fd, name, AT_REMOVEDIR)
            throw CommandError.Setup("cannot prepare the private temporary directory '\(path)' of uid \(uid): "
                + SystemError.describe(code))
        }
        return Directory(path: path, fd: fd, device: UInt64(info.st_dev), inode: UInt64(info.st_ino), owner: uid)
    }

    /// The current directory if it is still trusted, else a fresh one (logged).
    private func trustedDirectory() throws(CommandError.Setup) -> Directory {
        let directory = current.withLock { $0 }
        let reason: String
        switch directory.trust() {
        case .trusted: return directory
        case .gone(let why), .changed(let why): reason = why
        }
        return try current.withLock { (current: inout Directory) throws(CommandError.Setup) -> Directory in
            // Another event may have replaced it meanwhile.
            if current !== directory, current.trust() == .trusted { return current }
            let fresh = try Self.makeDirectory(in: parent, prefix: prefix, mode: openToUsers ? 0o711 : 0o700,
                                               maker: ProcessIdentity.Maker.current)
            logger.warning(
                "The private temporary directory '\(current.path)' can no longer be trusted: \(reason). Commands now use a new one, '\(fresh.path)'.")
            Self.retire(current)
            current = fresh
            return fresh
        }
    }

    /// Removes a directory this process made and no longer uses.
    static func retire(_ directory: Directory) { directory.removeAll() }

    /// Makes `<parent>/<prefix><this pid>.XXXXXX`, 0700 (or `mode`), and opens it; this process uses it until
    /// `retire`. With `maker`, the directory holds its record (``ProcessIdentity/Maker``, in the file `instance`)
    /// before it is used: what proves, to another instance sharing `parent`, whether the one that made it is gone.
    static func makeDirectory(in parent: String, prefix: String, mode: mode_t = 0o700,
                              maker: ProcessIdentity.Maker? = nil) throws(CommandError.Setup) -> Directory
    {
        var template = Array("\(parent)/\(prefix)\(getpid()).XXXXXX".utf8CString)
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw CommandError.Setup(
                "cannot create a private temporary directory in '\(parent)' (temp_dir): \(SystemError.describe(errno))")
        }
        let path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let fd = mcm_open_directory(path)
        var info = stat()
        guard fd >= 0, mode == 0o700 || fchmod(fd, mode) == 0, fstat(fd, &info) == 0 else {
            let code = errno
            if fd >= 0 { close(fd) }
            rmdir(path)
            throw CommandError.Setup("cannot open the private temporary directory '\(path)': \(SystemError.describe(code))")
        }
        let directory = Directory(path: path, fd: fd, device: UInt64(info.st_dev), inode: UInt64(info.st_ino),
                                  mode: mode)
        if let maker {
            let record = mcm_create_file_at(fd, ProcessIdentity.Maker.fileName)
            let code = record < 0 ? errno : FileIO.writeAll(record, Array(maker.text.utf8))
            if record >= 0 { close(record) }
            if code != 0 {
                directory.removeAll()
                throw CommandError.Setup("cannot record which process made the private temporary directory '\(path)': "
                    + SystemError.describe(code))
            }
        }
        return directory
    }

    /// What another user could do with a `temp_dir` they can change (SPEC §3).
    static let distrustConsequence =
        "another user could replace the module's private directory and the files commands read and write"

    /// Why `temp_dir` cannot be trusted (SPEC §3), or nil: it, or a directory above it, belongs to another user
    /// or is writable by others without the sticky bit (as /tmp has). Nothing is created.
    static func distrust(ofParent parent: String) -> DirectoryTrust.Distrust? { DirectoryTrust.distrust(ofPath: parent) }

    /// Makes `temp_dir` if it does not exist (0700 for the last component; 0711 when commands run as other users,
    /// who must pass through it), once it and every directory above it are trusted: none that another user could
    /// rename or replace. The default temp_dir, the module's own, is made 0711 then even if it exists.
    static func prepareParent(_ parent: String, openToUsers: Bool = false) throws(CommandError.Setup) {
        func refuse(_ distrust: DirectoryTrust.Distrust) -> CommandError.Setup {
            CommandError.Setup("temp_dir \(distrust.message(about: parent)): \(distrustConsequence)")
        }
        if let distrust = distrust(ofParent: parent) { throw refuse(distrust) }
        var info = stat()
        if stat(parent, &info) != 0 {
            var built = ""
            let components = parent.split(separator: "/")
            for (i, component) in components.enumerated() {
                built += "/" + component
                if mkdir(built, i < components.count - 1 ? 0o755 : openToUsers ? 0o711 : 0o700) != 0 && errno != EEXIST {
                    throw CommandError.Setup(
                        "cannot create the temporary directory '\(built)' (temp_dir): \(SystemError.describe(errno))")
                }
            }
            // What was made is ours; what another process may have made meanwhile is checked again.
            if let distrust = distrust(ofParent: parent) { throw refuse(distrust) }
            guard stat(parent, &info) == 0 else {
                throw CommandError.Setup("cannot use '\(parent)' (temp_dir): \(SystemError.describe(errno))")
            }
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            throw CommandError.Setup("'\(parent)' (temp_dir) is not a directory")
        }
        if openToUsers, isModulesOwn(parent), info.st_uid == geteuid(), info.st_mode & 0o7777 == 0o700,
           chmod(parent, 0o711) != 0
        {
            throw CommandError.Setup("cannot let users pass through '\(parent)' (temp_dir): \(SystemError.describe(errno))")
        }
    }

    /// Whether `parent` is the default temp_dir of an agent, a directory the module makes for itself.
    static func isModulesOwn(_ parent: String) -> Bool {
        geteuid() == 0 && parent == ModuleConfiguration.defaultTemporaryDirectory
    }

    /// Removes the `<parent>/<prefix><pid>.*` directories of module instances proven gone (an agent that
    /// crashed), with what its commands left in them.
    static func removeAbandonedDirectories(in parent: String, prefix: String) {
        for (_, directory) in privateDirectories(in: parent, prefix: prefix) where isAbandoned(directory) {
            directory.removeAll()
        }
    }

    /// Whether the instance that made a private directory — temporary files or worker records — is proven gone
    /// (SPEC §3, §8): the `instance` file it wrote first names a process of another boot, or of this boot and pid
    /// namespace that has ended (no process with its pid, or one that started at another time: a pid reused
    /// since, by this very process in a pid namespace, does not count). Never because a pid of another pid
    /// namespace is not running here — an agent in a container sharing `temp_dir` is alive there. Without a
    /// record (one being made right now, or a directory of a version that wrote none) nothing proves it: the
    /// directory is left alone.
    static func isAbandoned(_ directory: Directory) -> Bool {
        ProcessIdentity.Maker(recordIn: directory.fd)?.hasEnded ?? false
    }

    /// The directories `<parent>/<prefix><pid>.*` that are provably made by a module of this user: directories
    /// (opened without following a link) owned by the agent's user, mode 0700 (0711 where commands ran as other
    /// users) — with the pid in their name.
    static func privateDirectories(in parent: String, prefix: String) -> [(pid: pid_t, directory: Directory)] {
        var found: [(pid: pid_t, directory: Directory)] = []
        for name in FileIO.entries(parent) where name.hasPrefix(prefix) {
            let rest = name.dropFirst(prefix.count)
            guard let dot = rest.firstIndex(of: "."), let pid = pid_t(rest[..<dot]), pid > 0 else { continue }
            let path = parent + "/" + name
            let fd = mcm_open_directory(path)
            guard fd >= 0 else { continue }
            var info = stat()
            if fstat(fd, &info) == 0, info.st_uid == geteuid(), [0o700, 0o711].contains(info.st_mode & 0o7777) {
                found.append((pid, Directory(path: path, fd: fd, device: UInt64(info.st_dev), inode: UInt64(info.st_ino),
                                             mode: info.st_mode & 0o7777)))
            } else {
                close(fd)
            }
        }
        return found
    }
}
