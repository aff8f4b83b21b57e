import Glibc
import Synchronization
import Testing

@testable import MesosCommandModules

/// A file system that never answers: a FUSE mount whose daemon (this test) reads no request. Every lookup under
/// it blocks in the kernel — as on an NFS server that went away — until the connection is closed, when it fails
/// with ENOTCONN. Root only (mount(2) of /dev/fuse).
final class HungMount: Sendable {
    let path: String
    /// The /dev/fuse connection; -1 once released (taken by whichever thread releases first).
    private let fd: Atomic<Int32>

    init?(at path: String) {
        guard getuid() == 0 else { return nil }
        let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        let options = "fd=\(fd),rootmode=40000,user_id=0,group_id=0"
        guard Glibc.mkdir(path, 0o755) == 0 || errno == EEXIST,
              mount("mcm-hung", path, "fuse", UInt(MS_NOSUID | MS_NODEV), options) == 0
        else {
            close(fd)
            return nil
        }
        self.path = path
        self.fd = Atomic(fd)
    }

    /// The file system answers again (with ENOTCONN): every blocked lookup returns. Idempotent, from any thread.
    func release() {
        let fd = fd.exchange(-1, ordering: .acquiringAndReleasing)
        guard fd >= 0 else { return }
        close(fd)
        umount2(path, Int32(MNT_DETACH))
        rmdir(path)
    }

    /// Releases the mount after `seconds` from a plain thread, whatever the test's tasks do: a test that
    /// regresses fails on its deadlines instead of hanging the suite.
    func releaseAfter(seconds: UInt32) {
        let context = Unmanaged.passRetained(Watchdog(mount: self, seconds: seconds)).toOpaque()
        var thread = pthread_t()
        if pthread_create(&thread, nil, { context in
            let watchdog = Unmanaged<Watchdog>.fromOpaque(context!).takeRetainedValue()
            sleep(watchdog.seconds)
            watchdog.mount.release()
            return nil
        }, context) == 0 {
            pthread_detach(thread)
        } else {
            Unmanaged<Watchdog>.fromOpaque(context).release()
        }
    }

    private final class Watchdog {
        let mount: HungMount
        let seconds: UInt32
        init(mount: HungMount, seconds: UInt32) {
            self.mount = mount
            self.seconds = seconds
        }
    }
}

/// Issue 19 item 5: a worker's command file is checked for deployments off Swift's cooperative pool, so a
/// command on a hung mount stops neither its own events (served by its running worker) nor other modules'.
@Suite(.serialized) struct HungMountTests {
    let sandbox = Sandbox()

    /// The next release's directory on a mount that hangs (released at the latest after 20 s), `current`
    /// switched to it as a deployment does, and time for a check to be due.
    func switchCurrentToAHungRelease() async throws -> HungMount {
        let hung = try #require(HungMount(at: sandbox.path + "/release-2"), "a FUSE mount (root, /dev/fuse)")
        hung.releaseAfter(seconds: 20)
        #expect(symlink("release-2", sandbox.path + "/current.new") == 0)
        #expect(rename(sandbox.path + "/current.new", sandbox.path + "/current") == 0)
        try await Task.sleep(for: .nanoseconds(2 * CommandFileWatch.freshness))
        return hung
    }

    func usage(_ module: IsolatorModule) async -> Result<Int, any Error> {
        do {
            let statistics = try JSONValue(parsing: try await module.usage(containerID: cid("c1")))
            return .success(Int(statistics["processes"]?.doubleValue ?? -1))
        } catch {
            return .failure(error)
        }
    }

    @Test(.enabled(if: getuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0))
    func aWorkersCommandOnAHungMountStopsNoEvent() async throws {
        // A release directory, reached through `current` as deployments do.
        _ = sandbox.mkdir("release-1")
        sandbox.script("release-1/usage.sh", """
            #!/bin/bash
            while IFS= read -r request; do
              id=${request#*\\"id\\":}; id=${id%%,*}
              printf '{"id":%s,"output":{"processes":1}}\\n' "$id"
            done
            """)
        #expect(symlink("release-1", sandbox.path + "/current") == 0)
        // Two modules with a worker each on that path: on a pool of two threads (this machine's cores), a stat
        // made by each event on its own thread would pin both.
        let log = CapturedLog()
        let workers = try ["hung_worker", "hung_worker2"].map { name in
            let module = try isolator(sandbox, [
                ("module_name", name), ("isolator_usage_command", sandbox.path + "/current/usage.sh"),
                ("isolator_usage_mode", "worker"), ("isolator_usage_timeout", "3"),
                ("isolator_usage_failure_policy", "fail"),
            ], log: log)
            try module.adopt(containerID: cid("c1"), containerConfig: "{}")
            return module
        }
        let other = try isolator(sandbox, [
            ("module_name", "other"), ("isolator_usage_command", sandbox.script("other.sh", #"""
                #!/bin/sh
                echo '{"processes":2}' > "$2"
                """#)),
            ("isolator_usage_timeout", "2"), ("isolator_usage_failure_policy", "fail"),
        ])
        try other.adopt(containerID: cid("c1"), containerConfig: "{}")
        for worker in workers { #expect(try await usage(worker).get() == 1, "the worker serves") }

        let hung = try await switchCurrentToAHungRelease()
        defer { hung.release() }

        // More events at once than Swift has cooperative threads, for 1.5 s: each is answered by the running
        // worker, and the other module's events go on, each well within its timeout.
        let start = ContinuousClock.now
        var slowest = Duration.zero
        var answers: [Result<Int, any Error>] = []
        while ContinuousClock.now - start < .milliseconds(1500) {
            let round = ContinuousClock.now
            let results = await withTaskGroup(of: Result<Int, any Error>.self) { group in
                for index in 0..<8 { group.addTask { await usage(workers[index % 2]) } }
                group.addTask { await usage(other) }
                return await group.reduce(into: []) { $0.append($1) }
            }
            slowest = max(slowest, ContinuousClock.now - round)
            answers += results
        }
        let failures = answers.compactMap { if case .failure(let error) = $0 { "\(error)" } else { nil } }
        #expect(failures.isEmpty, "\(failures.count) failed: \(failures.prefix(3))")
        #expect(answers.filter { (try? $0.get()) == 1 }.count == answers.count * 8 / 9, "every worker event answered")
        #expect(answers.filter { (try? $0.get()) == 2 }.count == answers.count / 9, "every other module's event answered")
        #expect(slowest < .milliseconds(500), "a round of 9 events took \(slowest)")
        let warning = "warning: Command \"\(sandbox.path)/current/usage.sh\" (worker): the stat(2) of its file has not "
            + "returned for "
        #expect(log.all.filter { $0.hasPrefix(warning) }.count == 2, "one warning per module: \(log.all)")
        #expect(!log.contains("changed on disk"), "\(log.all)")

        // The mount answers again (an error): the check returns, says so, and the file's problem is told.
        hung.release()
        let returned = "info: Command \"\(sandbox.path)/current/usage.sh\" (worker): the stat(2) of its file returned after "
        #expect(await eventually(within: 3) { log.all.filter { $0.hasPrefix(returned) }.count == 2 }, "\(log.all)")
        try await Task.sleep(for: .nanoseconds(2 * CommandFileWatch.freshness))
        for worker in workers {
            #expect(try await usage(worker).get() == 1, "the running worker keeps serving")
            worker.stopWorkers()
        }
        #expect(log.contains("(worker) cannot be read ("), "\(log.all)")
    }

    /// Many events reading one watch at once, as 8 events in flight over 8 workers do: a thread that read the
    /// clock before another wrote its later reading must not take the difference for a hung check (the wrapped
    /// difference made `bench` trap in the log line's arithmetic).
    @Test func eventsReadingAWatchAtOnceSeeNoHungCheck() async throws {
        let path = sandbox.script("w.sh", "#!/bin/sh\n")
        let log = CapturedLog()
        let watch = CommandFileWatch(path: path, logger: log.logger)
        let generations = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var sum = 0
                    let end = ContinuousClock.now + .milliseconds(1500)
                    while ContinuousClock.now < end {
                        for _ in 0..<100 { sum += await watch.generation() }
                        await Task.yield()  // other suites' tasks keep their turn on the pool
                    }
                    return sum
                }
            }
            return await group.reduce(0, +)
        }
        #expect(generations == 0, "the file did not change")
        #expect(log.all.isEmpty, "\(log.all.prefix(3))")
        watch.stop()
    }

    /// A watch's thread ends with its watch — when the last reference goes, and when the watch goes while its
    /// check hangs (then once the mount answers).
    @Test func aWatchsThreadEndsWithItsWatch() async throws {
        let before = threads(named: "mcm-watch").count
        var watch: CommandFileWatch? = CommandFileWatch(path: sandbox.script("w.sh", "#!/bin/sh\n"), logger: CapturedLog().logger)
        #expect(await watch?.generation() == 0)
        #expect(await eventually(within: 2) { threads(named: "mcm-watch").count == before + 1 }, "its thread runs")
        watch = nil
        #expect(await eventually(within: 2) { threads(named: "mcm-watch").count == before }, "the thread ended")
    }

    @Test(.enabled(if: getuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0))
    func aWatchGoneWhileItsCheckHangsEndsItsThreadOnceTheMountAnswers() async throws {
        _ = sandbox.mkdir("release-1")
        sandbox.script("release-1/w.sh", "#!/bin/sh\n")
        #expect(symlink("release-1", sandbox.path + "/current") == 0)
        let log = CapturedLog()
        let before = threads(named: "mcm-watch").count
        var watch: CommandFileWatch? = CommandFileWatch(path: sandbox.path + "/current/w.sh", logger: log.logger)
        let hung = try await switchCurrentToAHungRelease()
        defer { hung.release() }
        let start = ContinuousClock.now
        #expect(await watch?.generation() == 0, "the last known state, the check hanging")
        #expect(ContinuousClock.now - start < .milliseconds(500), "waited at most its patience")
        watch = nil
        try await Task.sleep(for: .milliseconds(100))
        #expect(threads(named: "mcm-watch").count == before + 1, "pinned by the hung stat")
        hung.release()
        #expect(await eventually(within: 3) { threads(named: "mcm-watch").count == before }, "gone once the mount answers")
        #expect(!log.contains("cannot be read"), "a watch already gone says nothing more: \(log.all)")
    }
}
