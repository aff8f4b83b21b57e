import CMesosCommandSpawn
import Glibc
import Synchronization

/// How a watched child ended.
struct ChildExit: Sendable {
    enum Stop: Sendable { case timedOut, cancelled }
    /// The raw wait status; meaningless when `stop` is set.
    var status: Int32
    /// Why we stopped the command, if we did.
    var stop: Stop?
    /// The command's stdout and stderr, interleaved, up to the capture limit.
    var console: [UInt8]
    /// Bytes the command wrote past the capture limit, dropped.
    var consoleDropped: Int
}

/// One thread for the whole process that waits for every command the engine starts, with epoll on a pidfd per
/// child (Linux ≥ 5.3; a short poll of `waitid(WNOWAIT)` otherwise) and on the pipe that carries the child's
/// stdout and stderr. It enforces timeouts: SIGTERM to the child's process group, then SIGKILL to the group
/// after the grace period — even when the leader has already exited, so a grandchild that ignores SIGTERM
/// dies too. The leader is reaped only after that SIGKILL, so its pid (= the group id) cannot be reused in
/// between.
///
/// Why not one waiting thread per command: at 64 commands in flight that is 64 blocked threads; why not
/// SIGCHLD: the agent owns its signal handlers, and `waitpid(-1)` would steal the agent's own children.
final class ChildMonitor: @unchecked Sendable {
    static let shared = ChildMonitor()

    struct Watch: Sendable {
        let token: UInt64
        let pid: pid_t
        let pidFD: Int32
        let consoleFD: Int32
        let consoleLimit: Int
        let timeout: Double
        let gracePeriod: Double
    }

    private enum Request {
        case watch(Watch, ExitBox)
        case cancel(UInt64)
    }

    private struct Inbox {
        var requests: [Request] = []
        var nextToken: UInt64 = 1
    }

    private let inbox = Mutex(Inbox())
    private let epollFD: Int32
    private let wakeFD: Int32

    // Owned by the monitor thread only.
    private var children: [UInt64: Child] = [:]

    private final class Child {
        let watch: Watch
        var consoleFD: Int32
        var console: [UInt8] = []
        var consoleDropped = 0
        let deadline: UInt64
        var killAt: UInt64?
        var stop: ChildExit.Stop?
        var leaderExited = false
        var box: ExitBox?

        init(_ watch: Watch, _ box: ExitBox) {
            self.watch = watch
            self.consoleFD = watch.consoleFD
            self.box = box
            self.deadline = MonotonicClock.now() &+ MonotonicClock.nanoseconds(watch.timeout)
        }
    }

    private init() {
        epollFD = mcm_epoll_create()
        wakeFD = mcm_eventfd()
        precondition(epollFD >= 0 && wakeFD >= 0, "epoll/eventfd unavailable: \(SystemError.describe(errno))")
        mcm_epoll_add(epollFD, wakeFD, 0)

        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { context in
            let monitor = Unmanaged<ChildMonitor>.fromOpaque(context!).takeRetainedValue()
            monitor.run()
            return nil
        }, context)
        precondition(rc == 0, "cannot start the command monitor thread: \(SystemError.describe(rc))")
        pthread_detach(thread)
    }

    /// Starts watching a started child. The returned box gets its exit; `cancel(token)` stops it early.
    func watch(_ pid: pid_t, pidFD: Int32, consoleFD: Int32, consoleLimit: Int, timeout: Double,
               gracePeriod: Double) -> (token: UInt64, exit: ExitBox) {
        let box = ExitBox()
        let token = inbox.withLock { inbox in
            let token = inbox.nextToken
            inbox.nextToken += 1
            let watch = Watch(
                token: token, pid: pid, pidFD: pidFD, consoleFD: consoleFD, consoleLimit: consoleLimit,
                timeout: timeout, gracePeriod: gracePeriod)
            inbox.requests.append(.watch(watch, box))
            return token
        }
        wake()
        return (token, box)
    }

    /// Stops the child of `token` as a timeout would (SIGTERM, grace period, SIGKILL). A child that already
    /// finished is left alone.
    func cancel(_ token: UInt64) {
        inbox.withLock { $0.requests.append(.cancel(token)) }
        wake()
    }

    private func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)
    }

    // MARK: - The monitor thread

    private static let pidTag: UInt64 = 1
    private static let consoleTag: UInt64 = 2

    private func run() {
        var events = [UInt64](repeating: 0, count: 64)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let timeout = nextTimeoutMilliseconds()
            let count = events.withUnsafeMutableBufferPointer {
                mcm_epoll_wait(epollFD, $0.baseAddress, Int32($0.count), timeout)
            }
            if count < 0 && errno != EINTR {
                fatalError("epoll_wait failed in the command monitor: \(SystemError.describe(errno))")
            }
            for i in 0..<max(0, Int(count)) {
                let data = events[i]
                if data == 0 {
                    var value: UInt64 = 0
                    _ = Glibc.read(wakeFD, &value, 8)
                    continue
                }
                guard let child = children[data >> 2] else { continue }
                if data & 3 == Self.consoleTag {
                    readConsole(child, &chunk)
                } else {
                    leaderExited(child, &chunk)
                }
            }
            drainInbox(&chunk)
            pollChildrenWithoutPidFD(&chunk)
            enforceDeadlines(&chunk)
        }
    }

    private func nextTimeoutMilliseconds() -> Int32 {
        guard !children.isEmpty else { return -1 }
        let now = MonotonicClock.now()
        var earliest = UInt64.max
        var polling = false
        for child in children.values {
            if child.watch.pidFD < 0 && !child.leaderExited { polling = true }
            if let killAt = child.killAt {
                earliest = min(earliest, killAt)
            } else if child.stop == nil {
                earliest = min(earliest, child.deadline)
            }
        }
        var milliseconds: Int64 = earliest == .max ? -1 : Int64((earliest &- min(earliest, now)) / 1_000_000) + 1
        if polling { milliseconds = milliseconds < 0 ? 2 : min(milliseconds, 2) }
        return Int32(clamping: milliseconds)
    }

    private func drainInbox(_ chunk: inout [UInt8]) {
        let requests = inbox.withLock { inbox in
            defer { inbox.requests.removeAll(keepingCapacity: true) }
            return inbox.requests
        }
        for request in requests {
            switch request {
            case .watch(let watch, let box):
                let child = Child(watch, box)
                children[watch.token] = child
                register(watch.consoleFD, tag: Self.consoleTag, token: watch.token)
                if watch.pidFD >= 0 { register(watch.pidFD, tag: Self.pidTag, token: watch.token) }
            case .cancel(let token):
                guard let child = children[token] else { continue }
                if child.stop == nil && !child.leaderExited { terminate(child, reason: .cancelled) }
            }
        }
    }

    private func register(_ fd: Int32, tag: UInt64, token: UInt64) {
        mcm_epoll_add(epollFD, fd, token << 2 | tag)
    }

    private func readConsole(_ child: Child, _ chunk: inout [UInt8]) {
        while child.consoleFD >= 0 {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(child.consoleFD, $0.baseAddress, $0.count) }
            if n > 0 {
                let room = max(0, child.watch.consoleLimit - child.console.count)
                child.console.append(contentsOf: chunk[0..<min(n, room)])
                child.consoleDropped += n - min(n, room)
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && errno == EAGAIN { return }
            closeConsole(child)  // EOF or error
        }
    }

    private func closeConsole(_ child: Child) {
        guard child.consoleFD >= 0 else { return }
        mcm_epoll_remove(epollFD, child.consoleFD)
        close(child.consoleFD)
        child.consoleFD = -1
    }

    private func pollChildrenWithoutPidFD(_ chunk: inout [UInt8]) {
        for child in children.values where child.watch.pidFD < 0 && !child.leaderExited {
            if mcm_child_exited(child.watch.pid) != 0 { leaderExited(child, &chunk) }
        }
    }

    /// The leader exited (it is a zombie until reaped). Its output so far is collected; a background child
    /// that still holds the pipe does not delay the result.
    private func leaderExited(_ child: Child, _ chunk: inout [UInt8]) {
        if child.watch.pidFD >= 0 && !child.leaderExited {
            mcm_epoll_remove(epollFD, child.watch.pidFD)
        }
        child.leaderExited = true
        readConsole(child, &chunk)
        closeConsole(child)
        if child.killAt == nil {
            finish(child)
        } else {
            // Stopped and within the grace period: answer now, keep the zombie (and so the group id) until the
            // group gets its SIGKILL.
            resume(child, status: 0)
        }
    }

    private func enforceDeadlines(_ chunk: inout [UInt8]) {
        let now = MonotonicClock.now()
        for child in Array(children.values) {
            if child.stop == nil && !child.leaderExited && now >= child.deadline {
                terminate(child, reason: .timedOut)
            }
            if let killAt = child.killAt, now >= killAt {
                kill(-child.watch.pid, SIGKILL)
                child.killAt = nil
                if child.leaderExited { finish(child) }
            }
        }
    }

    private func terminate(_ child: Child, reason: ChildExit.Stop) {
        child.stop = reason
        kill(-child.watch.pid, SIGTERM)
        child.killAt = MonotonicClock.now() &+ MonotonicClock.nanoseconds(child.watch.gracePeriod)
    }

    /// Reaps the leader, releases the child's fds and answers the waiter if not done yet.
    private func finish(_ child: Child) {
        var status: Int32 = 0
        _ = mcm_reap(child.watch.pid, &status)
        if child.watch.pidFD >= 0 { close(child.watch.pidFD) }
        closeConsole(child)
        resume(child, status: status)
        children[child.watch.token] = nil
    }

    private func resume(_ child: Child, status: Int32) {
        guard let box = child.box else { return }
        child.box = nil
        box.complete(
            ChildExit(
                status: status, stop: child.stop, console: child.console, consoleDropped: child.consoleDropped))
    }
}

/// Where the monitor thread leaves a child's exit for the task that waits for it.
final class ExitBox: Sendable {
    private struct State {
        var exit: ChildExit?
        var waiter: CheckedContinuation<ChildExit, Never>?
    }

    private let state = Mutex(State())

    func complete(_ exit: ChildExit) {
        let waiter = state.withLock { state in
            guard let waiter = state.waiter else {
                state.exit = exit
                return nil as CheckedContinuation<ChildExit, Never>?
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume(returning: exit)
    }

    var value: ChildExit {
        get async {
            await withCheckedContinuation { continuation in
                let exit = state.withLock { state in
                    if state.exit == nil { state.waiter = continuation }
                    return state.exit
                }
                if let exit { continuation.resume(returning: exit) }
            }
        }
    }
}
