import CMesosCommandSpawn
import Glibc
import Logging
import Synchronization

/// The cgroups of one module instance (SPEC §3 "Containment"), in
/// `<hierarchy base>/<module_name>.<pid ns>.<agent pid>.<agent start time>.<n>/`:
/// - `e<N>`: a cgroup per exec command in flight. Reused: a command's cgroup, empty once its command is reaped,
///   goes back to a free list for the next event — no mkdir/rmdir per event. One that still holds processes
///   (kept leftovers, or killed ones still dying) leaves the list, gets an empty `kept` child as a mark (kept
///   leftovers only), and is removed by ``CgroupWatch`` once empty.
/// - `w<N>`: one per worker started, killed with the worker and removed once empty.
/// The name says which agent process made it, so that the next start can tell a dead instance's subtree
/// (``reclaim(_:moduleName:logger:)``). The instance directory goes with the module, or, when kept leftovers
/// outlive it, with the last of them.
final class CgroupTree: Sendable {
    let hierarchy: CgroupHierarchy
    /// The instance directory.
    let path: String
    private let fd: Int32
    private let free = Mutex<[UncheckedSendable<Cgroup>]>([])
    private let counter = Atomic<Int>(0)

    /// The mark of an exec cgroup whose leftovers are kept on purpose: a dead agent's reclaim leaves those alone.
    static let keptMark = "kept"
    private static let instances = Atomic<Int>(0)

    /// Makes this instance's directory (and the hierarchy's base directory if needed).
    init(hierarchy: CgroupHierarchy, moduleName: String) throws(CommandError.Setup) {
        self.hierarchy = hierarchy
        let namespace = ProcessIdentity.pidNamespace.replacingColons
        let start = ProcessIdentity.status(of: getpid())?.startTime ?? 0
        let name = "\(TemporaryArea.safeName(moduleName)).\(namespace).\(getpid()).\(start)."
            + "\(Self.instances.wrappingAdd(1, ordering: .relaxed).oldValue)"
        path = hierarchy.base + "/" + name
        var made = false
        for _ in 0..<3 where !made {
            // Another instance's last exit may remove the base directory between the two mkdirs: try again.
            if mkdir(hierarchy.base, 0o755) != 0 && errno != EEXIST { break }
            made = mkdir(path, 0o755) == 0 || errno == EEXIST
        }
        let fd = made ? open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW) : -1
        guard fd >= 0 else {
            throw CommandError.Setup("cannot create the module's cgroup \(path): \(SystemError.describe(errno))")
        }
        self.fd = fd
    }

    deinit {
        let cgroups = free.withLock { list in
            defer { list.removeAll() }
            return list
        }
        for cgroup in cgroups { cgroup.value.remove(from: fd) }
        close(fd)
        Self.removeIfEmpty(path, base: hierarchy.base)
    }

    /// An empty cgroup for an exec command: a free one, or a new one. Nil with errno when none can be made.
    func acquire() -> Cgroup? {
        if let cgroup = free.withLock({ $0.popLast() }) { return cgroup.value }
        return Cgroup(creating: "e\(counter.wrappingAdd(1, ordering: .relaxed).oldValue)", in: fd, at: path)
    }

    /// Gives back an exec command's cgroup once its command has been reaped: reused while empty; one that still
    /// holds processes, or that was killed (``Cgroup/killed``), is removed when they are gone (``CgroupWatch``).
    /// Loop thread.
    func release(_ cgroup: Cgroup, keptOnPurpose: Bool, loop: EventLoop) {
        if !cgroup.killed && cgroup.processes().isEmpty {
            free.withLock { $0.append(UncheckedSendable(cgroup)) }
            return
        }
        if keptOnPurpose { mkdirat(cgroup.fd, Self.keptMark, 0o755) }
        CgroupWatch.removeWhenEmpty(cgroup, parent: path, base: hierarchy.base, owner: self, loop: loop)
    }

    /// A new cgroup for a worker. Nil with errno when it cannot be made.
    func makeWorkerCgroup() -> Cgroup? {
        Cgroup(creating: "w\(counter.wrappingAdd(1, ordering: .relaxed).oldValue)", in: fd, at: path)
    }

    /// A worker was reaped: whatever is left in its cgroup is killed, and the cgroup goes once empty. Loop thread.
    func retireWorkerCgroup(_ cgroup: Cgroup, loop: EventLoop) {
        if !cgroup.processes().isEmpty { cgroup.kill() }
        CgroupWatch.removeWhenEmpty(cgroup, parent: path, base: hierarchy.base, owner: self, loop: loop)
    }

    /// Removes `path` and then `base` if they are empty (another instance may still use the base).
    static func removeIfEmpty(_ path: String, base: String) {
        if rmdir(path) == 0 || errno == ENOENT { rmdir(base) }
    }

    /// The tree of a module being created, per its `containment` (nil: process groups). What a dead instance
    /// left is reclaimed after its worker records (``WorkerPool/pools(for:cgroups:logger:)``).
    static func forModule(_ configuration: ModuleConfiguration, logger: Logger) throws(CommandError.Setup) -> CgroupTree? {
        switch ContainmentChoice.resolve(configuration.containment) {
        case .failure(let unavailable):
            throw CommandError.Setup("containment=cgroup is not possible on this host: \(unavailable.reason)")
        case .success(let choice):
            guard let hierarchy = choice.hierarchy else { return nil }
            return try CgroupTree(hierarchy: hierarchy, moduleName: configuration.moduleName)
        }
    }

    // MARK: - A dead instance's subtree

    /// At a module's start: for each subtree of this module name whose agent is provably gone (in this pid
    /// namespace, no process with its pid and start time; cgroups do not outlive a boot), kills what its workers
    /// left (each `w<N>`) and what its commands were running (each populated `e<N>` not marked `kept`), leaves
    /// kept leftovers alone, and removes each cgroup — and the subtree — once empty.
    static func reclaim(_ hierarchy: CgroupHierarchy, moduleName: String, logger: Logger) {
        let prefix = TemporaryArea.safeName(moduleName) + "."
        let namespace = ProcessIdentity.pidNamespace.replacingColons
        for entry in FileIO.entries(hierarchy.base) where entry.hasPrefix(prefix) {
            let fields = entry.dropFirst(prefix.count).split(separator: ".")
            guard fields.count == 4, String(fields[0]) == namespace, let pid = pid_t(fields[1]),
                  let start = UInt64(fields[2]), pid > 0
            else { continue }
            let alive = ProcessIdentity.status(of: pid).map { $0.startTime == start } ?? !ProcessIdentity.isGone(pid)
            guard !alive else { continue }
            reclaimInstance(hierarchy.base + "/" + entry, agent: pid, base: hierarchy.base, logger: logger)
        }
    }

    private static func reclaimInstance(_ path: String, agent: pid_t, base: String, logger: Logger) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var killed: [String] = []
        var kept = 0
        for name in FileIO.entries(fd: fd) where name.hasPrefix("w") || name.hasPrefix("e") {
            guard Int(name.dropFirst()) != nil, let cgroup = Cgroup(opening: name, in: fd, at: path) else { continue }
            var pids = cgroup.processes()
            // What the worker records' reclaim killed just before may take a moment to be gone.
            for _ in 0..<20 where !pids.isEmpty && !cgroup.isMarkedKept {
                usleep(10_000)
                pids = cgroup.processes()
            }
            if !pids.isEmpty {
                if name.hasPrefix("e") && cgroup.isMarkedKept {
                    kept += pids.count
                } else {
                    killed += pids.map { Leftover(pid: $0, name: ProcessIdentity.name(of: $0)).description }
                    cgroup.kill()
                }
            }
            if let loop = try? EventLoop.shared() {
                let handed = UncheckedSendable(cgroup)
                loop.execute { loop in CgroupWatch.removeWhenEmpty(handed.value, parent: path, base: base, owner: nil, loop: loop) }
            }
        }
        if !killed.isEmpty {
            let message = "The \(WorkerRecords.previousHost(agent)) ended without stopping what its commands and workers "
                + "ran: killed (cgroup.kill) \(killed.count) process(es) in \(path): \(killed.joined(separator: ", "))"
            logger.warning("\(message)")
        }
        if kept > 0 {
            let message = "Left alone \(kept) process(es) the \(WorkerRecords.previousHost(agent)) kept after their command "
                + "exited (<event>_leftover_processes=keep) in \(path); their cgroups go once they exit"
            logger.info("\(message)")
        }
        removeIfEmpty(path, base: base)
    }
}

extension Cgroup {
    /// An existing cgroup `name` of the directory `parentFD`; nil if it is not there.
    convenience init?(opening name: String, in parentFD: Int32, at parentPath: String) {
        var info = stat()
        guard fstatat(parentFD, name, &info, AT_SYMLINK_NOFOLLOW) == 0, info.st_mode & S_IFMT == S_IFDIR else {
            return nil
        }
        self.init(creating: name, in: parentFD, at: parentPath)
    }

    /// Marked as holding leftovers kept on purpose.
    var isMarkedKept: Bool {
        var info = stat()
        return fstatat(fd, CgroupTree.keptMark, &info, AT_SYMLINK_NOFOLLOW) == 0
    }

    /// Removes the `kept` mark, then the cgroup itself (both must be empty). Returns whether it is gone.
    @discardableResult
    func removeWithMark() -> Bool {
        unlinkat(fd, CgroupTree.keptMark, AT_REMOVEDIR)
        return rmdir(path) == 0 || errno == ENOENT
    }
}

extension String {
    /// `dev:ino` as one component of a cgroup name.
    fileprivate var replacingColons: String { String(map { $0 == ":" ? "-" : $0 }) }
}
