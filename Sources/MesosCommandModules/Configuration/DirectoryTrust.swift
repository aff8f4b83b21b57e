import Glibc

/// Trust of directories (SPEC §3). The module runs as root and writes, reads and removes files in `temp_dir` and
/// `<state_dir>/<module_name>`: if another local user could rename or replace one of those directories, or one
/// above them, they could make root write a command's output, or remove a state file, through a symbolic link
/// of theirs, or plant the config root's cleanup command then receives. So each of those directories, and
/// every one above it up to `/`, must belong to root or the agent's user (its effective uid) and not be writable
/// by others — unless sticky, as `/tmp` is, where nobody can rename or remove what is not theirs. The module's own
/// directory must not be writable by others at all.
enum DirectoryTrust {
    /// Why a directory cannot be trusted: the directory at fault (the one checked, or one above it, symbolic
    /// links resolved) and what is wrong with it.
    struct Distrust: Error, Sendable, Equatable {
        var directory: String
        /// E.g. "belongs to uid 65534 (nobody), not to root or the agent's user (uid 0)".
        var reason: String

        /// `'<path>' cannot be trusted: it <reason>`, or `… '<directory at fault>' <reason>` for one above it.
        func message(about path: String) -> String {
            "'\(path)' cannot be trusted: " + (directory == path ? "it" : "'\(directory)'") + " " + reason
        }
    }

    /// Why `path` (absolute) or a directory above it could be changed by another local user, or nil. The path
    /// need not exist: its deepest existing ancestor is checked (what the module creates below is its own).
    /// Symbolic links on the way are followed, and must belong to root or the agent's user too.
    static func distrust(ofPath path: String) -> Distrust? {
        var pending = components(path)
        var current = "/"
        if let distrust = distrust(ofDirectory: current) { return distrust }
        var links = 0
        while !pending.isEmpty {
            let component = pending.removeFirst()
            if component == "." { continue }
            if component == ".." {
                current = parent(of: current)
                continue
            }
            let candidate = current == "/" ? "/" + component : current + "/" + component
            var info = stat()
            guard lstat(candidate, &info) == 0 else {
                if errno == ENOENT { return nil }
                return Distrust(directory: candidate, reason: "cannot be checked (\(SystemError.describe(errno)))")
            }
            if info.st_mode & S_IFMT == S_IFLNK {
                if !trustedOwner(info.st_uid) {
                    return Distrust(directory: candidate, reason: "is a symbolic link that " + ownerReason(info.st_uid))
                }
                links += 1
                guard links <= 40, let target = readLink(candidate) else {
                    return Distrust(directory: candidate, reason: "is a symbolic link that cannot be resolved")
                }
                if target.hasPrefix("/") { current = "/" }
                pending = components(target) + pending
                continue
            }
            // Nothing can be below a file: making or opening the directory will fail, with its own message.
            if info.st_mode & S_IFMT != S_IFDIR { return nil }
            if let distrust = distrust(of: info, at: candidate, own: false) { return distrust }
            current = candidate
        }
        return nil
    }

    /// Why the module's own directory at `path` — never a symbolic link, not writable by others even with the
    /// sticky bit — cannot be trusted, or nil (also when it does not exist yet). The directories above it are
    /// ``distrust(ofPath:)``'s concern.
    static func distrust(ofOwnDirectory path: String) -> Distrust? {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return nil }
            return Distrust(directory: path, reason: "cannot be checked (\(SystemError.describe(errno)))")
        }
        return distrust(of: info, at: path, own: true)
    }

    /// Why a directory whose `lstat`/`fstat` is `info` cannot be trusted, or nil. `own`: the module's own
    /// directory, which the sticky bit does not excuse.
    static func distrust(of info: stat, at path: String, own: Bool) -> Distrust? {
        switch info.st_mode & S_IFMT {
        case S_IFDIR: break
        case S_IFLNK: return Distrust(directory: path, reason: "is a symbolic link (never followed)")
        default: return Distrust(directory: path, reason: "is not a directory")
        }
        if !trustedOwner(info.st_uid) { return Distrust(directory: path, reason: ownerReason(info.st_uid)) }
        let mode = String(info.st_mode & 0o7777, radix: 8)
        if info.st_mode & 0o022 != 0 && (own || info.st_mode & S_ISVTX == 0) {
            return Distrust(directory: path, reason: own
                ? "is writable by other users (mode \(mode))"
                : "is writable by other users without the sticky bit (mode \(mode))")
        }
        return nil
    }

    private static func distrust(ofDirectory path: String) -> Distrust? {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            return Distrust(directory: path, reason: "cannot be checked (\(SystemError.describe(errno)))")
        }
        return distrust(of: info, at: path, own: false)
    }

    /// Root and the agent's user.
    static func trustedOwner(_ uid: uid_t) -> Bool { uid == 0 || uid == geteuid() }

    private static func ownerReason(_ uid: uid_t) -> String {
        let me = geteuid()
        return "belongs to uid \(uid)\(userName(uid).map { " (\($0))" } ?? ""), not to root or the agent's user (uid \(me))"
    }

    private static func userName(_ uid: uid_t) -> String? {
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &found) == 0, found != nil, let name = entry.pw_name else {
            return nil
        }
        return String(cString: name)
    }

    private static func readLink(_ path: String) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private static func components(_ path: String) -> [String] { path.split(separator: "/").map(String.init) }

    private static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }
}
