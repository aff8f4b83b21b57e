import CMesosCommandSpawn
import Glibc

/// A started command or worker: the leader's pid (= its process group id), a pidfd that becomes readable when
/// the leader exits (or -1: then the loop polls `waitid(WNOWAIT)`), and the stopping sequence SPEC §3 asks for:
/// SIGTERM to the whole group, SIGKILL to the whole group `gracePeriod` later — even when the leader has
/// already exited, so that a grandchild ignoring SIGTERM dies too.
///
/// The leader is reaped only once no signal to its group is still due: until then its zombie keeps its pid,
/// and so the group id, from being reused by an unrelated process. Loop thread only.
final class ProcessGroup {
    let pid: pid_t
    private(set) var pidFD: Int32
    /// The leader has exited (it may still be an unreaped zombie).
    private(set) var leaderExited = false
    /// When the group gets its SIGKILL, if a stop is under way.
    private(set) var killAt: UInt64?
    /// The leader has been reaped (or its status found lost); nothing more to do for this process.
    private(set) var reaped = false
    /// The cgroup it runs in (containment=cgroup): the SIGKILL goes to everything in it too — a child that left
    /// the process group (`setsid`) included.
    var cgroup: Cgroup?
    /// User + system CPU µs of the leader and the children it waited for, once reaped (its rusage).
    private(set) var reapedCPUMicroseconds: UInt64 = 0

    /// How the leader ended, once reaped: its raw wait status, or the errno of a failed reap (ECHILD: the exit
    /// status is lost, e.g. SIGCHLD is ignored in this process).
    enum Reaped {
        case status(Int32)
        case lost(Int32)
    }

    init(pid: pid_t) {
        self.pid = pid
        self.pidFD = mcm_pidfd_open(pid)
    }

    /// A group whose pidfd (or -1) was opened, and maybe registered, by the thread that started it.
    init(pid: pid_t, pidFD: Int32) {
        self.pid = pid
        self.pidFD = pidFD
    }

    /// The pidfd could not be registered: the loop polls for the exit instead.
    func pollInstead() {
        if pidFD >= 0 { close(pidFD) }
        pidFD = -1
    }

    /// Whether the loop must poll for the leader's exit (no pidfd, or it could not be registered).
    var polls: Bool { pidFD < 0 && !leaderExited }

    /// Registers the pidfd; on failure the loop falls back to polling. Returns the errno of the failure, or 0.
    func register(on loop: EventLoop, id: UInt64, tag: UInt8) -> Int32 {
        guard pidFD >= 0 else { return 0 }
        let code = loop.register(pidFD, id: id, tag: tag)
        if code != 0 {
            close(pidFD)
            pidFD = -1
        }
        return code
    }

    /// Checks (without reaping) whether the leader exited; records it. Returns true when it newly did.
    func noticeExit(on loop: EventLoop) -> Bool {
        guard !leaderExited else { return false }
        if pidFD < 0 {
            // 1: exited; -1: not (or no longer) our child — the kernel reaped it (SIGCHLD ignored): gone too.
            guard mcm_child_exited(pid) != 0 else { return false }
        }
        leaderExited = true
        if pidFD >= 0 {
            loop.unregister(pidFD)
            close(pidFD)
            pidFD = -1
        }
        return true
    }

    /// SIGTERM to the group now, SIGKILL after `gracePeriod`.
    func terminate(gracePeriod: Double, now: UInt64) {
        guard killAt == nil else { return }
        kill(-pid, SIGTERM)
        killAt = now &+ MonotonicClock.nanoseconds(gracePeriod)
    }

    /// SIGKILL to the group after `delay`, without a SIGTERM first (a worker whose stdin was closed).
    func scheduleKill(after delay: Double, now: UInt64) {
        guard killAt == nil else { return }
        killAt = now &+ MonotonicClock.nanoseconds(delay)
    }

    /// SIGKILL to the group now, and to its cgroup.
    func killGroup() {
        kill(-pid, SIGKILL)
        cgroup?.kill()
        killAt = nil
    }

    /// Sends the SIGKILL if it is due. Returns true when it was sent now.
    func killIfDue(now: UInt64) -> Bool {
        guard let due = killAt, due <= now else { return false }
        killGroup()
        return true
    }

    /// Reaps the leader once it has exited and no signal to its group is due; nil until then.
    func reapIfPossible() -> Reaped? {
        guard leaderExited, killAt == nil, !reaped else { return nil }
        reaped = true
        var status: Int32 = 0
        return mcm_reap_usage(pid, &status, &reapedCPUMicroseconds) == 0 ? .status(status) : .lost(errno)
    }

    deinit {
        if pidFD >= 0 { close(pidFD) }
    }
}
