import CMesosCommandSpawn
import Glibc

/// `<event>_user`: the user an event's command — or its workers — runs as (SPEC §3 "Least privilege"), with its
/// primary and supplementary groups, as the user database (`/etc/passwd`, `/etc/group`, or the directory service
/// NSS is set up for) gave them when the module loaded, and `no_new_privs` (no set-user-ID program, no file
/// capability can give it more).
public struct CommandUser: Sendable, Equatable, CustomStringConvertible {
    /// The user's name in the user database.
    public var name: String
    public var uid: uid_t
    /// The primary group.
    public var gid: gid_t
    /// Every group of the user, the primary one first.
    public var groups: [gid_t]
    /// The home directory the user database gives (the command's `HOME`).
    public var home: String

    public var description: String { "\(name) (uid \(uid), gid \(gid))" }

    /// The most groups a user may have (the kernel's NGROUPS_MAX).
    static let maxGroups = 65536

    /// Resolves a user name, or a uid (all digits), in the user database. A uid without an entry is refused:
    /// its groups and home cannot be known, and a guessed group (gid = uid) may be somebody else's.
    static func resolve(_ text: String) -> Result<CommandUser, Problem> {
        let numeric = !text.isEmpty && text.utf8.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }
        var entry = passwd()
        var found: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        var rc: Int32
        repeat {
            if numeric {
                guard let uid = uid_t(text) else { return .failure(.unknownUID(text)) }
                rc = getpwuid_r(uid, &entry, &buffer, buffer.count, &found)
            } else {
                rc = getpwnam_r(text, &entry, &buffer, buffer.count, &found)
            }
            if rc == ERANGE && buffer.count < 1 << 20 { buffer = [CChar](repeating: 0, count: buffer.count * 4) }
        } while rc == ERANGE && buffer.count <= 1 << 20
        guard rc == 0 || rc == ENOENT || rc == ESRCH else { return .failure(.lookUpFailed(text, rc)) }
        guard found != nil else { return .failure(numeric ? .unknownUID(text) : .unknownName(text)) }
        let name = String(cString: entry.pw_name)
        let user = CommandUser(
            name: name, uid: entry.pw_uid, gid: entry.pw_gid, groups: [],
            home: entry.pw_dir.map { String(cString: $0) } ?? "/")
        return groups(of: user).map { groups in
            var user = user
            user.groups = groups
            return user
        }
    }

    /// getgrouplist: the primary group and every group that lists the user.
    private static func groups(of user: CommandUser) -> Result<[gid_t], Problem> {
        var count: Int32 = 32
        while true {
            var groups = [gid_t](repeating: 0, count: Int(count))
            var given = count
            if getgrouplist(user.name, user.gid, &groups, &given) >= 0 {
                return .success(Array(groups.prefix(Int(given))))
            }
            guard given > count, Int(given) <= maxGroups else {
                return .failure(.tooManyGroups(user.name, Int(given)))
            }
            count = given
        }
    }

    /// Why `<event>_user` cannot be used.
    enum Problem: Error, Equatable, CustomStringConvertible {
        case unknownName(String)
        case unknownUID(String)
        case lookUpFailed(String, Int32)
        case tooManyGroups(String, Int)

        var description: String {
            switch self {
            case .unknownName(let name):
                return "'\(name)' is not a user of this host (no such name in the user database)"
            case .unknownUID(let uid):
                return "uid \(uid) has no entry in the user database: its groups cannot be known; add the user "
                    + "(useradd), or give the name of one"
            case .lookUpFailed(let text, let code):
                return "'\(text)' cannot be looked up in the user database: \(SystemError.describe(code))"
            case .tooManyGroups(let name, let count):
                return "'\(name)' is in \(count) groups, more than the \(maxGroups) a process can have"
            }
        }
    }

    /// What the command's environment says of its user, as `runuser` and `su` set it: `HOME`, `USER`, `LOGNAME`.
    var environment: [String] { ["HOME=\(home)", "USER=\(name)", "LOGNAME=\(name)"] }

    /// Calls `body` with the user's credentials for the C side. The module changes ids only as root; as another
    /// user it can run commands only as itself (checked at load), and then only sets no_new_privs.
    func withCredentials<R>(_ body: (UnsafePointer<mcm_credentials>) -> R) -> R {
        groups.withUnsafeBufferPointer { groups in
            var credentials = mcm_credentials(
                uid: uid, gid: gid, groups: groups.baseAddress, group_count: groups.count,
                change_ids: geteuid() == 0 ? 1 : 0)
            return withUnsafePointer(to: &credentials) { body($0) }
        }
    }

    /// Whether this user can access `path` (`R_OK`, `W_OK`, `X_OK`), as the kernel decides for them: nil if it
    /// can, else why not. A check that cannot be made (e.g. the host ignores SIGCHLD) is no reason to refuse.
    func cannotAccess(_ path: String, _ mode: Int32) -> String? {
        let code = withCredentials { mcm_access_as($0, path, mode) }
        return code > 0 ? SystemError.describe(code) : nil
    }
}
