import CMesosCommandSpawn
import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §3: the timeout bounds the whole event as Mesos sees it — waiting for a `max_in_flight` slot included —
/// and the event answers at its deadline plus the grace period even if the killed process has not died.
@Suite(.serialized) struct EventDeadlineTests {
    let sandbox = Sandbox()

    @Test func waitingForASlotCountsAgainstTheTimeout() async throws {
        let script = sandbox.script("slow.sh", "#!/bin/sh\nsleep 0.7\n")
        let module = try isolator(sandbox, [
            ("isolator_prepare_command", script), ("isolator_prepare_timeout", "1"), ("max_in_flight", "1"),
            ("grace_period", "0.2"),
        ])
        let start = ContinuousClock.now
        async let first: Duration = {
            _ = try await module.prepare(containerID: cid("a"), containerConfig: "{}")
            return ContinuousClock.now - start
        }()
        try await Task.sleep(for: .milliseconds(50))
        let second = await thrownError { try await module.prepare(containerID: cid("b"), containerConfig: "{}") } as? EventError
        let secondTook = ContinuousClock.now - start
        #expect(try await first < .milliseconds(1000))
        // b waited ~0.7 s for the slot, so its command had ~0.3 s left, not a fresh second.
        #expect(second?.isTimeout == true)
        #expect(second?.message == "Command \"\(script)\" took too long to execute. Timeout: 1s.")
        #expect(secondTook < .milliseconds(1000 + 200 + 400), "\(secondTook)")
    }

    @Test func anEventThatNeverGetsASlotFailsAtItsDeadlineSayingSo() async throws {
        let slow = sandbox.script("slow.sh", "#!/bin/sh\nsleep 2\n")
        let module = try isolator(sandbox, [
            ("isolator_prepare_command", slow), ("isolator_prepare_timeout", "3"), ("max_in_flight", "1"),
            ("isolator_cleanup_command", slow), ("isolator_cleanup_timeout", "0.5"),
        ])
        async let holder: String? = module.prepare(containerID: cid("holder"), containerConfig: "{}")
        try await Task.sleep(for: .milliseconds(100))
        try module.adopt(containerID: cid("waiter"), containerConfig: "{}")
        let start = ContinuousClock.now
        let error = await thrownError { try await module.cleanup(containerID: cid("waiter")) } as? EventError
        let took = ContinuousClock.now - start
        #expect(error?.description == "[TASK=waiter, METHOD=cleanup] Command \"\(slow)\" took too long to execute. "
            + "Timeout: 0.5s (it never started: the event waited all that time for one of the module's "
            + "max_in_flight=1 command slots).")
        #expect(error?.isTimeout == true)
        #expect(took >= .milliseconds(450) && took < .milliseconds(900), "\(took)")
        #expect(module.metrics.snapshot(.cleanup).timeouts == 1)
        _ = try await holder
    }

    @Test(.enabled(if: Freezer.available, "needs root and the cgroup v1 freezer"))
    func aKilledProcessStuckInTheKernelDoesNotHoldTheEventPastItsDeadlineAndIsReapedLater() async throws {
        let pidFile = sandbox.path + "/pid"
        let script = sandbox.script("stuck.sh", "#!/bin/sh\necho $$ > \(pidFile)\nexec sleep 30\n")
        let module = try isolator(sandbox, [
            ("isolator_prepare_command", script), ("isolator_prepare_timeout", "1"), ("grace_period", "0.3"),
        ])
        let freezer = try Freezer()
        defer { freezer.remove() }
        let start = ContinuousClock.now
        async let outcome = thrownError { try await module.prepare(containerID: cid("stuck"), containerConfig: "{}") }
        #expect(await eventually(within: 2) { sandbox.read(pidFile)?.isEmpty == false })
        let pid = pid_t(sandbox.read(pidFile)?.trimmingWhitespace ?? "") ?? 0
        try freezer.freeze(pid)  // like a process in uninterruptible sleep: SIGTERM and SIGKILL wait
        let error = await outcome as? EventError
        let took = ContinuousClock.now - start
        #expect(error?.isTimeout == true)
        #expect(took < .milliseconds(1000 + 300 + 100 + 400), "\(took)")
        #expect(processAlive(pid) || kill(pid, 0) == 0, "the process is still there, stuck")
        freezer.thaw()
        // Once the kernel lets it die, it is reaped: no zombie is left.
        #expect(await eventually(within: 5) { kill(pid, 0) != 0 && zombieChildren().isEmpty })
    }

    /// A command whose start hangs in the kernel (its file, or its interpreter, on a hung mount: exec(2) never
    /// returns) does not block the engine, and its event answers at its deadline. Here the threads that start
    /// commands are frozen instead; once thawed, the late command is killed at once.
    @Test(.enabled(if: Freezer.available, "needs root and the cgroup v1 freezer"))
    func aStartStuckInTheKernelDoesNotHoldTheEventPastItsDeadline() async throws {
        let pidFile = sandbox.path + "/late.pid"
        let script = sandbox.script("late.sh", "#!/bin/sh\necho $$ > \(pidFile)\nexec sleep 30\n")
        let module = try isolator(sandbox, [("isolator_prepare_command", script), ("isolator_prepare_timeout", "0.5")])
        _ = try Spawner.shared()
        let spawners = threads(named: Spawner.threadName)
        #expect(spawners.count == Spawner.threads)
        let freezer = try Freezer()
        defer { freezer.remove() }
        for thread in spawners { try freezer.freeze(thread) }
        let start = ContinuousClock.now
        let error = await thrownError { try await module.prepare(containerID: cid("late"), containerConfig: "{}") } as? EventError
        let took = ContinuousClock.now - start
        #expect(error?.message == "Command \"\(script)\" took too long to execute. Timeout: 0.5s.")
        #expect(took < .milliseconds(500 + 400), "\(took)")
        freezer.thaw()
        // The command starts late, and is killed as soon as it does (maybe before it wrote its pid): nothing of
        // it is left.
        #expect(await eventually(within: 5) { children().isEmpty }, "\(children())")
        if let pid = pid_t(sandbox.read(pidFile)?.trimmingWhitespace ?? "") { #expect(kill(pid, 0) != 0) }
    }

    @Test func aCancelledCommandIsStoppedAndAnsweredWithinTheGracePeriod() async throws {
        let pidFile = sandbox.path + "/pid"
        let script = sandbox.script("trap.sh", "#!/bin/sh\ntrap '' TERM\necho $$ > \(pidFile)\nwhile :; do sleep 0.05; done\n")
        let runner = try makeRunner(sandbox, grace: 0.3)
        let task = Task { try await runner.run(script, input: [], timeout: 30) }
        #expect(await eventually(within: 2) { sandbox.read(pidFile)?.isEmpty == false })
        let start = ContinuousClock.now
        task.cancel()
        let error = await thrownError { try await task.value } as? CommandError
        #expect(error?.code == .cancelled)
        #expect(ContinuousClock.now - start < .milliseconds(300 + 100 + 400))
    }

    /// The SIGKILL at the end of the grace period ends the leader and the last writer of its console at once:
    /// the loop may see the console's end while it handles the leader's exit, before it has answered. The
    /// command was stopped, and is answered so — not as "exited via signal 9". The test plays the event loop's
    /// part (on its thread) in that order, which a real loop takes now and then.
    @Test func aStoppedCommandIsAnsweredAsStoppedWhenItsConsoleEndedBeforeItsExitWasSeen() async throws {
        let readyFile = sandbox.path + "/ready"
        let script = sandbox.script("stubborn.sh", "#!/bin/sh\ntrap '' TERM\necho > \(readyFile)\nexec sleep 30\n")
        let loop = try EventLoop.shared()
        var console: [Int32] = [-1, -1]
        try #require(mcm_pipe(&console, 0) == 0)
        let stdin = open("/dev/null", O_RDONLY | O_CLOEXEC)
        var pid: pid_t = 0
        let spawned = withCStringArray([script]) { argv in
            withCStringArray([]) { extra in mcm_spawn(script, argv, extra, stdin, console[1], console[1], &pid) }
        }
        close(stdin)
        close(console[1])
        try #require(spawned == 0)
        #expect(await eventually(within: 3) { sandbox.read(readyFile)?.isEmpty == false })

        let completion = Completion<ChildExit>()
        // Not added to the loop: only this test calls it, on the loop thread.
        let child = UncheckedSendable(ExecChild(
            id: loop.makeClientID(), consoleFD: console[0], consoleLimit: 1024,
            deadline: MonotonicClock.now() &+ 30_000_000_000, gracePeriod: 0.3, completion: completion))
        let group = UncheckedSendable(ProcessGroup(pid: pid, pidFD: mcm_pidfd_open(pid)))
        await onLoop(loop) { loop in
            child.value.started(group.value, on: loop)
            child.value.cancel(on: loop)  // SIGTERM, ignored
            guard let killAt = group.value.killAt else { return }
            child.value.wake(now: killAt, loop: loop)  // the grace period is over: SIGKILL
        }
        // Dead, and so its console ended, before the loop looks at its exit.
        #expect(await eventually(within: 3) { zombieChildren().contains(pid) })
        await onLoop(loop) { loop in child.value.ready(tag: ExecChild.exitTag, loop: loop) }

        #expect(completion.isCompleted)
        let ending = await completion.value.ending
        let cancelled = if case .cancelled = ending { true } else { false }
        #expect(cancelled, "answered \(ending)")
        #expect(!zombieChildren().contains(pid), "reaped")
    }
}

/// A cgroup v1 freezer group: its processes stop in the kernel, and not even SIGKILL ends them until thawed —
/// the closest a test gets to a process stuck in uninterruptible sleep.
struct Freezer {
    static let root = "/sys/fs/cgroup/freezer"
    static var available: Bool { geteuid() == 0 && access(root + "/cgroup.procs", W_OK) == 0 }

    let path: String

    init() throws {
        path = Self.root + "/mcm-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(path, 0o755) == 0 else { throw FreezerError() }
    }

    /// Freezes a process, or a single thread (a tid: cgroup v1's `tasks` takes threads one by one).
    func freeze(_ pid: pid_t) throws {
        guard shell("echo \(pid) > '\(path)/tasks' && echo FROZEN > '\(path)/freezer.state'") == 0 else {
            throw FreezerError()
        }
    }

    func thaw() { _ = shell("echo THAWED > '\(path)/freezer.state'") }

    func remove() {
        thaw()
        // Threads of this process go back to the root group (a thread cannot leave by exiting).
        for task in (sandboxRead(path + "/tasks") ?? "").split(separator: "\n") {
            _ = shell("echo \(task) > '\(Self.root)/tasks'")
        }
        // The group can be removed once empty.
        for _ in 0..<100 where rmdir(path) != 0 { usleep(50_000) }
    }

    struct FreezerError: Error {}
}

/// Runs `work` on the event loop's thread and waits for it.
func onLoop(_ loop: EventLoop, _ work: @escaping @Sendable (EventLoop) -> Void) async {
    let done = Completion<Void>()
    loop.execute { loop in
        work(loop)
        done.complete(())
    }
    await done.value
}

func sandboxRead(_ path: String) -> String? {
    guard case .bytes(let bytes) = FileIO.read(path: path, limit: 1 << 20) else { return nil }
    return String(decoding: bytes, as: UTF8.self)
}

/// The thread ids of this process whose name is `name`.
func threads(named name: String) -> [pid_t] {
    Sandbox.entries("/proc/self/task").compactMap { tid in
        (sandboxRead("/proc/self/task/\(tid)/comm") ?? "").trimmingWhitespace == name ? pid_t(tid) : nil
    }
}
