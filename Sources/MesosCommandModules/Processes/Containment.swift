import CMesosCommandSpawn
import Glibc
import Synchronization

/// `containment`: how the processes a command starts are kept track of and stopped (SPEC §3 "Containment").
public enum ContainmentMode: String, Sendable, CaseIterable {
    /// A cgroup where a writable cgroup v2 hierarchy exists, else process groups (said once at load).
    case auto
    /// A cgroup per command and per worker; a load-time error where the host has no writable cgroup v2 hierarchy.
    case cgroup
    /// The process group only, as before: a child that calls `setsid` escapes it.
    case processGroup = "process_group"
}

/// `<event>_leftover_processes`: what happens to processes still running when a command exited normally.
public enum LeftoverPolicy: String, Sendable, CaseIterable {
    /// They live on (the C++ module's behaviour: a `prepare` may start a container's helper on purpose); logged.
    case keep
    /// Killed at once (the whole cgroup); logged.
    case kill
}

/// Where a module's cgroups can live on this host: the cgroup v2 hierarchy (`/sys/fs/cgroup` on a unified host,
/// `/sys/fs/cgroup/unified` on a hybrid one) and, in it, the directory under which each module instance makes its
/// subtree:
///
///     <hierarchy>/<the agent's own cgroup>/mesos-command-modules/<module_name>.<pid ns>.<pid>.<start time>.<n>/
///
/// The agent's own cgroup (the `0::` line of /proc/self/cgroup) is the one a systemd unit with `Delegate=yes`
/// hands to the agent (`/system.slice/mesos-agent.service`); a host without systemd has the agent at `/`. It is
/// never one of Mesos' own cgroups: where the agent itself runs inside Mesos' cgroup root (`/mesos…`), the
/// subtree goes to the hierarchy's top level instead.
public struct CgroupHierarchy: Sendable, Equatable {
    /// The cgroup v2 mount.
    public var mount: String
    /// `…/mesos-command-modules`: the parent of every instance's subtree.
    public var base: String

    public static let subtreeName = "mesos-command-modules"

    /// Points the search at another directory (tests: a directory that is no cgroup makes the host look like one
    /// without cgroup v2). nil: the real candidates.
    static let testingRoot = Mutex<String?>(nil)

    /// The hierarchy, or why there is none usable by this process (no cgroup v2 mount, or not writable).
    public static func find() -> Result<CgroupHierarchy, Unavailable> {
        let candidates = testingRoot.withLock { $0 }.map { [$0] } ?? ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        guard let mount = candidates.first(where: { mcm_is_cgroup2($0) == 1 }) else {
            return .failure(Unavailable(reason: "no cgroup v2 hierarchy at \(candidates.joined(separator: " or "))"))
        }
        var own = agentCgroup() ?? "/"
        if own == "/mesos" || own.hasPrefix("/mesos/") { own = "/" }  // never inside Mesos' cgroups
        let parent = mount + (own == "/" ? "" : own)
        let base = parent + "/" + subtreeName
        // Made by the first module instance (and removed with the last): only whether it could be is checked here.
        let writable = access(base, W_OK) == 0 ? base : parent
        guard access(writable, W_OK) == 0 else {
            return .failure(Unavailable(reason: "\(writable) is not writable by this process"))
        }
        return .success(CgroupHierarchy(mount: mount, base: base))
    }

    /// This process's cgroup in the v2 hierarchy (`0::<path>` in /proc/self/cgroup), or nil.
    static func agentCgroup() -> String? {
        guard case .bytes(let bytes) = FileIO.read(path: "/proc/self/cgroup", limit: 1 << 16) else { return nil }
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") where line.hasPrefix("0::") {
            let path = String(line.dropFirst(3))
            // A cgroup outside this process's cgroup namespace reads `/..`: not one to make ours under.
            return path.hasPrefix("/") && !path.contains("/..") ? path : nil
        }
        return nil
    }

    public struct Unavailable: Error, Sendable, Equatable, CustomStringConvertible {
        public var reason: String
        public var description: String { reason }
    }
}

/// What `containment` resolves to on this host, and the message that says so (a note at load, and `validate`).
public struct ContainmentChoice: Sendable, Equatable {
    /// The hierarchy when commands run in cgroups; nil for process groups.
    public var hierarchy: CgroupHierarchy?
    public var message: String

    /// Resolves `mode`: nil `hierarchy` with a message for the fallback, or a failure for `cgroup` where it
    /// cannot.
    public static func resolve(_ mode: ContainmentMode) -> Result<ContainmentChoice, CgroupHierarchy.Unavailable> {
        if mode == .processGroup {
            return .success(ContainmentChoice(
                hierarchy: nil, message: "containment=process_group: a command's processes are stopped by process "
                    + "group (a child that calls setsid escapes it)"))
        }
        switch CgroupHierarchy.find() {
        case .success(let hierarchy):
            return .success(ContainmentChoice(
                hierarchy: hierarchy, message: "containment=\(mode.rawValue): each command and worker runs in a "
                    + "cgroup of its own under \(hierarchy.base)"))
        case .failure(let unavailable):
            if mode == .cgroup { return .failure(unavailable) }
            return .success(ContainmentChoice(
                hierarchy: nil, message: "containment=auto: \(unavailable.reason); a command's processes are stopped "
                    + "by process group (a child that calls setsid escapes it)"))
        }
    }
}
