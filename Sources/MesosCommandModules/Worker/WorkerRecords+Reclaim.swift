import CMesosCommandSpawn
import Glibc
import Logging

extension WorkerRecords {
    /// At a module's start: for each records directory of this module in `parent` whose agent is proven gone
    /// (``TemporaryArea/isAbandoned(_:)``: its instance file names a process of this boot and pid namespace that
    /// ended — a pid reused since, in a pid namespace by this very process, does not count), kills what its
    /// workers left — the processes of each recorded group that are provably the worker or its children —, then
    /// removes the directory. Records of another boot only go: nothing of that boot runs.
    static func reclaim(in parent: String, moduleName: String, logger: Logger) {
        for (_, directory) in TemporaryArea.privateDirectories(in: parent, prefix: prefix(moduleName: moduleName)) {
            guard TemporaryArea.isAbandoned(directory) else { continue }
            let instance = read(instanceFile, in: directory.fd).flatMap(Instance.init(parsing:))
            if let instance, !instance.bootID.isEmpty, instance.bootID == ProcessIdentity.bootID {
                var groups: [pid_t: UInt64] = [:]
                for name in FileIO.entries(fd: directory.fd) where name != instanceFile {
                    guard let leader = pid_t(name), leader > 0,
                          let start = read(name, in: directory.fd).flatMap({ $0.keyValueLines["start"] }).flatMap({ UInt64($0) })
                    else { continue }
                    groups[leader] = start
                }
                if !groups.isEmpty {
                    killLeftovers(of: groups, token: instance.token, agent: instance.pid, logger: logger)
                }
            }
            directory.removeAll()
        }
    }

    /// What a check of one process found.
    enum Verdict: Equatable {
        case killed
        /// In a recorded group, but nothing proves it is the worker or one of its children.
        case unproven
        /// It ended, or left the group, before it could be checked.
        case gone
        /// It cannot be checked and signalled safely (the errno: ENOSYS without pidfds, before Linux 5.3).
        case cannot(Int32)
    }

    /// Kills (SIGKILL) the processes of `groups` (worker pid = group id → the worker's start time) that are
    /// provably a dead agent's workers or their children. A few passes, for children forked meanwhile.
    static func killLeftovers(of groups: [pid_t: UInt64], token: String, agent: pid_t, logger: Logger) {
        let tokenEntry = "\(tokenVariable)=\(token)"
        let me = getpid()
        var killed: [pid_t] = []
        var unproven = Set<pid_t>()
        passes: for _ in 0..<5 {
            var killedNow = false
            for pid in ProcessIdentity.allPIDs() where pid != me {
                guard let status = ProcessIdentity.status(of: pid), !status.isZombie,
                      let leaderStart = groups[status.group]
                else { continue }
                switch killIfProven(pid, group: status.group, leaderStart: leaderStart, tokenEntry: tokenEntry) {
                case .killed:
                    unproven.remove(pid)
                    if !killed.contains(pid) {
                        killed.append(pid)
                        killedNow = true
                    }
                case .unproven:
                    unproven.insert(pid)
                case .gone:
                    break
                case .cannot(let code):
                    let list = groups.keys.sorted().map { String($0) }.joined(separator: ", ")
                    let message = "Cannot kill what the workers of the \(previousHost(agent)) left in process "
                        + "group(s) \(list): "
                        + "pidfd_open or pidfd_send_signal failed (\(SystemError.describe(code))); a pid alone could "
                        + "name another process by now, so none is signalled"
                    logger.warning("\(message)")
                    break passes
                }
            }
            if !killedNow { break }
        }
        if !killed.isEmpty {
            let message = "The \(previousHost(agent)) ended without stopping its workers: killed (SIGKILL) "
                + "\(killed.count) process(es) they left: \(killed.map(String.init).joined(separator: ", "))"
            logger.warning("\(message)")
        }
        if !unproven.isEmpty {
            let message = "Left alone \(unproven.count) process(es) with the process group id of a worker of "
                + "the \(previousHost(agent)) (\(unproven.sorted().map(String.init).joined(separator: ", "))): "
                + "that worker is gone (its pid may name another process by now) and they lack its \(tokenVariable), so nothing "
                + "proves they are its own"
            logger.warning("\(message)")
        }
    }

    /// The process that recorded the workers, as the warnings name it: a hook module runs in a master as well as
    /// in an agent, and its records do not say which.
    static func previousHost(_ pid: pid_t) -> String { "agent or master that ran this module before (pid \(pid))" }

    /// Sends SIGKILL to `pid` if it is provably the recorded worker of `group` or one of its children: the worker
    /// itself (same pid and start time), a process whose environment holds the instance's token, or a member of
    /// the group while the worker still holds the group's id (so the group cannot be a later one with the same
    /// number). The signal goes through a pidfd opened before the checks: it reaches the process they examined,
    /// never one that took its pid since.
    static func killIfProven(_ pid: pid_t, group: pid_t, leaderStart: UInt64, tokenEntry: String) -> Verdict {
        let fd = mcm_pidfd_open(pid)
        guard fd >= 0 else { return errno == ESRCH ? .gone : .cannot(errno) }
        defer { close(fd) }
        guard let status = ProcessIdentity.status(of: pid), status.group == group, !status.isZombie else { return .gone }
        let proven = (pid == group && status.startTime == leaderStart)
            || ProcessIdentity.environment(of: pid, holds: tokenEntry)
            // Read after the member's own status: the worker, there at that time with its start time, held the
            // group's id all along, so the group the member was in is the worker's.
            || ProcessIdentity.status(of: group)?.startTime == leaderStart
        guard proven else { return .unproven }
        if mcm_pidfd_send_signal(fd, SIGKILL) == 0 { return .killed }
        return errno == ESRCH ? .gone : .cannot(errno)
    }
}
