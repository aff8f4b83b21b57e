import Glibc

/// How one command run ended, as the event loop saw it.
struct ChildExit: Sendable {
    enum Ending: Sendable {
        /// The leader exited with this raw wait status.
        case exited(status: Int32)
        /// The leader exited but its status could not be read (the errno of the failed reap).
        case statusLost(errno: Int32)
        /// We stopped it: its deadline passed, or the event was cancelled.
        case timedOut
        case cancelled
        /// It started, but could not be watched (epoll registration failed: the errno); it was killed.
        case cannotWatch(errno: Int32)
        /// posix_spawn failed (ENOENT, EACCES, ENOEXEC, …): nothing was started.
        case cannotStart(errno: Int32)
    }

    var ending: Ending
    /// The command's stdout and stderr, interleaved, up to the capture limit.
    var console: [UInt8]
    /// Bytes the command wrote past the capture limit, dropped.
    var consoleDropped: Int
    /// Processes still running in the command's cgroup when it exited normally (killed or kept, as
    /// `leftoverPolicy` said).
    var leftovers: [Leftover] = []
    /// User + system CPU seconds of what the command ran (its cgroup's; without one, the reaped leader's
    /// rusage), as far as known when it was answered.
    var cpuSeconds = 0.0
}

/// One command run, watched by the event loop: its start (on a spawner thread), its exit (pidfd), its console
/// pipe, its deadline.
///
/// The event is answered as soon as the outcome is known — at the leader's exit, or at the deadline plus the
/// grace period even if the killed process has not died yet (stuck in the kernel), or at the deadline if it
/// has not even started (its exec stuck on a hung mount) — and the child stays in the loop until its leader can
/// be reaped, so that no zombie is left behind.
///
/// With a cgroup (containment=cgroup), whatever the command started is in it: the SIGKILL of a stop reaches a
/// child that left the process group; at a normal exit, what still runs there is a leftover, named in the
/// answer and killed or kept as `leftoverPolicy` says. The console pipe is closed once the command is reaped,
/// whoever still holds its other end (a kept helper then gets EPIPE, or SIGPIPE, at its next write).
final class ExecChild: LoopClient {
    static let consoleTag: UInt8 = 1
    static let exitTag: UInt8 = 2
    /// How long after the SIGKILL the event still waits to see the leader die before it answers anyway: a
    /// killed process normally dies within a millisecond; one stuck in the kernel may never.
    static let killSettleTime = 0.1

    let id: UInt64
    /// Once started.
    private var group: ProcessGroup?
    private var consoleFD: Int32
    private let consoleLimit: Int
    private let deadline: UInt64
    private let gracePeriod: Double
    private var console: [UInt8] = []
    private var consoleDropped = 0
    private var stop: ChildExit.Ending?
    private var reaped = false
    /// After the SIGKILL: when the event is answered even if the leader has not died.
    private var answerBy: UInt64?
    private var completion: Completion<ChildExit>?
    private let cgroup: Cgroup?
    private let cgroups: CgroupTree?
    private let leftoverPolicy: LeftoverPolicy
    private var leftovers: [Leftover] = []

    init(id: UInt64, consoleFD: Int32, consoleLimit: Int, deadline: UInt64, gracePeriod: Double,
         cgroup: Cgroup? = nil, cgroups: CgroupTree? = nil, leftoverPolicy: LeftoverPolicy = .keep,
         completion: Completion<ChildExit>) {
        self.id = id
        self.cgroup = cgroup
        self.cgroups = cgroups
        self.leftoverPolicy = leftoverPolicy
        self.consoleFD = consoleFD
        self.consoleLimit = consoleLimit
        self.deadline = deadline
        self.gracePeriod = gracePeriod
        self.completion = completion
    }

    /// The command started (on a spawner thread, which registers its pidfd). One the event no longer waits for
    /// (its deadline passed, it was cancelled) is killed at once.
    func started(_ group: ProcessGroup, on loop: EventLoop) {
        group.cgroup = cgroup
        self.group = group
        if stop != nil || completion == nil { group.killGroup() }
    }

    /// The command could not start.
    func failedToStart(errno code: Int32, on loop: EventLoop) {
        answer(.cannotStart(errno: code))
        closeConsole(loop)
        reaped = true
        releaseCgroup(loop)
        finishIfReaped(loop)
    }

    /// Stops the command as a timeout would (SIGTERM, grace period, SIGKILL). A finished run is left alone.
    func cancel(on loop: EventLoop) {
        guard stop == nil, completion != nil, group?.leaderExited != true else { return }
        stop = .cancelled
        guard let group else { return answer(.cancelled) }  // not started yet: killed when it does
        group.terminate(gracePeriod: gracePeriod, now: MonotonicClock.now())
    }

    func ready(tag: UInt8, loop: EventLoop) {
        if tag == Self.consoleTag {
            readConsole(loop)
        } else if let group, group.noticeExit(on: loop) {
            leaderExited(loop)
        }
    }

    var wakeAt: UInt64? {
        guard let group else { return completion != nil ? deadline : nil }
        var due = group.killAt ?? (stop == nil && completion != nil ? deadline : UInt64.max)
        if let answerBy, completion != nil { due = min(due, answerBy) }
        if let poll = group.nextPoll { due = min(due, poll) }
        return due == .max ? nil : due
    }

    func wake(now: UInt64, loop: EventLoop) {
        guard let group else {
            // Not started by the deadline (its exec stuck in the kernel, or no spawner thread free): answered now,
            // killed when it starts.
            if now >= deadline && completion != nil {
                stop = .timedOut
                answer(.timedOut)
            }
            return
        }
        if group.pollExit(now: now, on: loop) { leaderExited(loop) }
        if stop == nil && completion != nil && !group.leaderExited && now >= deadline {
            stop = .timedOut
            group.terminate(gracePeriod: gracePeriod, now: now)
        }
        if group.killIfDue(now: now) {
            answerBy = now &+ MonotonicClock.nanoseconds(Self.killSettleTime)
            finishIfReaped(loop)
        }
        if let answerBy, now >= answerBy, completion != nil {
            // Killed and still not dead (stuck in the kernel): answer now; the reaping waits for the kernel.
            answer(stop ?? .timedOut)
            closeConsole(loop)
        }
    }

    /// The leader exited. Its output so far is collected; a background child that still holds the pipe does
    /// not delay the result, nor keeps an fd of the agent: the pipe is closed once the leader is reaped (SPEC
    /// §3), and such a child gets EPIPE (or SIGPIPE) at its next write to it.
    private func leaderExited(_ loop: EventLoop) {
        if stop == nil, let cgroup, completion != nil {
            // It exited on its own: what still runs in its cgroup is a leftover, named now (before a kill) — and
            // before the console is read: its end may be there already, and then the leader is reaped, its cgroup
            // given back and the event answered, leftovers unseen (a helper that redirected its output escaped
            // both the name and the kill so, in about a third of the events).
            leftovers = cgroup.processes().map { Leftover(pid: $0, name: ProcessIdentity.name(of: $0)) }
            if !leftovers.isEmpty && leftoverPolicy == .kill { cgroup.kill() }
        }
        readConsole(loop)
        if let stop {
            // Stopped, within the grace period: answer now; the zombie (and so the group id) stays until the
            // group gets its SIGKILL.
            answer(stop)
        }
        finishIfReaped(loop)
    }

    private func finishIfReaped(_ loop: EventLoop) {
        if !reaped, let ending = group?.reapIfPossible() {
            reaped = true
            // A command we stopped is answered as stopped, however it died: the SIGKILL ends the leader and the
            // console's last writer at once, and `leaderExited` may see the console's end (and so get here)
            // before it answers.
            // The event is over: its pipe goes too, even if a leftover still holds the other end; its cgroup is
            // free for the next event before this one is answered.
            closeConsole(loop)
            measureCPU()
            releaseCgroup(loop)
            switch ending {
            case .status(let status): answer(stop ?? .exited(status: status))
            case .lost(let code): answer(stop ?? .statusLost(errno: code))
            }
        }
        // Gone from the loop once reaped and its console closed (background children still writing keep it).
        if reaped && consoleFD < 0 { loop.remove(id) }
    }

    /// Reads what the console holds, a bounded amount per loop pass (`EventLoop.readsPerPass`): a child that
    /// writes without pause (a background `yes`) gets its turn again at the next pass, after every other fd,
    /// deadline and kill of this one.
    private func readConsole(_ loop: EventLoop) {
        for _ in 0..<EventLoop.readsPerPass where consoleFD >= 0 {
            let n = loop.read(consoleFD) { bytes in
                guard completion != nil else { return }  // after the result: dropped
                let room = max(0, consoleLimit - console.count)
                console.append(contentsOf: bytes.prefix(room))
                consoleDropped += bytes.count - min(bytes.count, room)
            }
            if n > 0 || (n < 0 && errno == EINTR) { continue }
            if n < 0 && errno == EAGAIN { return }
            closeConsole(loop)  // EOF or error
            finishIfReaped(loop)
        }
    }

    private func closeConsole(_ loop: EventLoop) {
        guard consoleFD >= 0 else { return }
        loop.unregister(consoleFD)
        close(consoleFD)
        consoleFD = -1
    }

    private func answer(_ ending: ChildExit.Ending) {
        guard let completion else { return }
        self.completion = nil
        measureCPU()
        completion.complete(ChildExit(
            ending: ending, console: console, consoleDropped: consoleDropped, leftovers: leftovers,
            cpuSeconds: cpuSeconds ?? 0))
    }

    /// What the command ran used: its cgroup's cpu.stat since the event began, or the reaped leader's rusage.
    private var cpuSeconds: Double?
    private func measureCPU() {
        guard cpuSeconds == nil else { return }
        if let cgroup, !cgroupReleased {
            cpuSeconds = cgroup.takeCPUSeconds()
        } else if let group, group.reaped {
            cpuSeconds = Double(group.reapedCPUMicroseconds) / 1e6
        }
    }

    /// The cgroup back to the module's (reused if empty, else removed once empty). Once only.
    private var cgroupReleased = false
    private func releaseCgroup(_ loop: EventLoop) {
        guard let cgroup, let cgroups, !cgroupReleased else { return }
        cgroupReleased = true
        cgroups.release(cgroup, keptOnPurpose: !leftovers.isEmpty && leftoverPolicy == .keep, loop: loop)
    }
}
