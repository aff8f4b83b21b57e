import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §8: a worker serves the code that is on disk (deployments), and `<event>_worker_max_events` recycles
/// workers of scripts that leak — each without failing an event.
@Suite(.serialized) struct WorkerDeploymentTests {
    let sandbox = Sandbox()

    /// A bash worker answering `{"processes": <version>, "threads": <its pid>}`; each start appends its pid to
    /// `<path>.start`.
    func body(version: Int) -> String {
        """
        #!/bin/bash
        echo $$ >> "$0.start"
        while IFS= read -r request; do
          id=${request#*\\"id\\":}; id=${id%%,*}
          printf '{"id":%s,"output":{"processes":\(version),"threads":%s}}\\n' "$id" "$$"
        done
        """
    }

    /// Deploys `version` as config management does: a new file beside the command, renamed over it.
    func deploy(_ path: String, version: Int) {
        sandbox.write(path + ".new", body(version: version))
        chmod(path + ".new", 0o755)
        #expect(rename(path + ".new", path) == 0)
    }

    /// Waits until a change of the file made before is seen by every event that begins from now on (the file is
    /// checked off the pool, SPEC §8): a check asked for now, waited for however long it takes on a busy machine.
    func settle(_ module: IsolatorModule) async { await module.checkWorkerCommandFiles() }

    func module(_ path: String, _ extra: [(String, String)] = [], log: CapturedLog) throws -> IsolatorModule {
        let module = try isolator(sandbox, [
            ("isolator_usage_command", path), ("isolator_usage_mode", "worker"), ("isolator_usage_failure_policy", "fail"),
            ("grace_period", "0.3"),
        ] + extra, log: log)
        try module.adopt(containerID: cid("c1"), containerConfig: "{}")
        return module
    }

    /// The version and the pid of the worker that answered.
    func usage(_ module: IsolatorModule) async throws -> (version: Int, pid: pid_t) {
        let statistics = try JSONValue(parsing: try await module.usage(containerID: cid("c1")))
        return (Int(statistics["processes"]?.doubleValue ?? -1), pid_t(statistics["threads"]?.doubleValue ?? -1))
    }

    func starts(_ path: String) -> [pid_t] {
        (sandbox.read(path + ".start") ?? "").split(separator: "\n").compactMap { pid_t($0) }
    }

    /// 10000 events, 4 at a time over 2 workers, while the script is replaced 10 times: no event fails, and every
    /// event that starts once a replacement is seen (`settle`) is answered by the new script.
    @Test func replacingTheScriptTenTimesDuringTenThousandEventsFailsNone() async throws {
        let path = sandbox.path + "/usage.sh"
        deploy(path, version: 0)
        let log = CapturedLog()
        let module = try module(path, [("isolator_usage_workers", "2")], log: log)
        let events = 10_000
        var failures: [String] = []
        var stale: [String] = []
        var answeredBy: [Int: Int] = [:]
        try await withThrowingTaskGroup(of: (index: Int, deployed: Int, answer: Result<Int, EventError>).self) { group in
            var deployed = 0
            func submit(_ index: Int) {
                let version = deployed
                group.addTask {
                    do {
                        return (index, version, .success(try await usage(module).version))
                    } catch let error as EventError {
                        return (index, version, .failure(error))
                    }
                }
            }
            for index in 0..<4 { submit(index) }
            var next = 4
            for try await result in group {
                switch result.answer {
                case .success(let version):
                    answeredBy[version, default: 0] += 1
                    if version < result.deployed { stale.append("event \(result.index): \(version) < \(result.deployed)") }
                case .failure(let error):
                    failures.append("event \(result.index): \(error.message)")
                }
                if next < events {
                    if next % 1000 == 500 {
                        deployed += 1
                        deploy(path, version: deployed)
                        await settle(module)
                    }
                    submit(next)
                    next += 1
                }
            }
        }
        #expect(failures.isEmpty, "\(failures.count) failures: \(failures.prefix(5))")
        #expect(stale.isEmpty, "events answered by a script replaced before they started: \(stale.prefix(5))")
        #expect(answeredBy.keys.sorted() == Array(0...10), "\(answeredBy)")
        #expect(answeredBy.values.reduce(0, +) == events)
        #expect(module.workerRestarts(.usage) == 0, "a replacement is no failure")
        let reloads = log.all.filter { $0.hasPrefix("info: Command \"\(path)\" (worker) changed on disk: a new file (inode ") }
        #expect(reloads.count == 10, "\(reloads)")
        // Two workers per version at most; the replaced ones are gone.
        let started = starts(path)
        #expect(started.count >= 11 && started.count <= 22, "\(started)")
        module.stopWorkers()
        #expect(await eventually(within: 3) { !started.contains(where: processAlive) })
    }

    @Test func aScriptThatDisappearsOrStopsBeingExecutableKeepsItsWorkers() async throws {
        let path = sandbox.path + "/usage.sh"
        deploy(path, version: 1)
        let log = CapturedLog()
        let module = try module(path, log: log)
        let first = try await usage(module)
        #expect(first.version == 1)

        unlink(path)
        await settle(module)
        for _ in 0..<3 { #expect(try await usage(module) == first) }
        let gone = "warning: Command \"\(path)\" (worker) is gone from disk: its running workers keep serving, but a "
            + "worker started now (after a failure, or once one is replaced) would fail."
        #expect(log.all.filter { $0 == gone }.count == 1, "one warning: \(log.all)")

        deploy(path, version: 2)
        await settle(module)
        let second = try await usage(module)
        #expect(second.version == 2 && second.pid != first.pid)
        #expect(await eventually(within: 3) { !processAlive(first.pid) }, "the replaced worker is gone")

        chmod(path, 0o644)
        await settle(module)
        for _ in 0..<3 { #expect(try await usage(module) == second) }
        #expect(log.all.filter { $0.hasSuffix("(worker) is not executable (chmod +x): its running workers keep serving, "
            + "but a worker started now (after a failure, or once one is replaced) would fail.") }.count == 1, "\(log.all)")
        chmod(path, 0o755)
        await settle(module)
        #expect(try await usage(module) == second, "the same file, executable again: no reload")
        #expect(log.contains("info: Command \"\(path)\" (worker) is back on disk, unchanged: its workers keep serving."))

        // Edited in place to the same size: its modification time tells.
        sandbox.write(path, body(version: 3))
        let later = timespec(tv_sec: time(nil) + 10, tv_nsec: 0)
        var times = [later, later]
        #expect(utimensat(AT_FDCWD, path, &times, 0) == 0)
        await settle(module)
        #expect(try await usage(module).version == 3)
        #expect(log.contains("info: Command \"\(path)\" (worker) changed on disk: it was modified (mtime "), "\(log.all)")
        #expect(module.workerRestarts(.usage) == 0)
        #expect(starts(path).count == 2 + 1)
    }

    @Test func aWorkerIsReplacedAfterMaxEventsWithoutFailingAnEvent() async throws {
        let path = sandbox.path + "/leaky.sh"
        deploy(path, version: 1)
        let log = CapturedLog()
        let module = try module(path, [("isolator_usage_worker_max_events", "5")], log: log)
        var served: [pid_t] = []
        for _ in 0..<23 { served.append(try await usage(module).pid) }
        let workers = starts(path)
        #expect(workers.count == 5, "\(workers)")
        #expect(served == workers.flatMap { Array(repeating: $0, count: 5) }.prefix(23).map { $0 }, "\(served)")
        #expect(module.workerRestarts(.usage) == 0, "a recycled worker is no failure")
        let recycled = log.all.filter { $0.hasSuffix("Served 5 events (isolator_usage_worker_max_events=5): replaced by a fresh worker") }
        #expect(recycled.count == 4, "\(log.all)")
        #expect(await eventually(within: 3) { !workers.dropLast().contains(where: processAlive) }, "the replaced workers are gone")
        #expect(processAlive(workers.last ?? 0))
    }

    @Test func workerMaxEventsIsCheckedLikeEveryKey() throws {
        let script = sandbox.script("w.sh", "#!/bin/sh\n")
        for bad in ["0", "-3", "lots", "1.5"] {
            let error = #expect(throws: ConfigurationError.self) {
                try configuration(.isolator, sandbox, [
                    ("isolator_usage_command", script), ("isolator_usage_mode", "worker"),
                    ("isolator_usage_worker_max_events", bad),
                ])
            }
            #expect(error?.description == "module 'test_module': parameter 'isolator_usage_worker_max_events': '\(bad)' "
                + "is not a whole number from 1 to 1000000000")
        }
        let exec = try configuration(.isolator, sandbox, [
            ("isolator_usage_command", script), ("isolator_usage_worker_max_events", "10"),
        ])
        #expect(exec.warnings.map(\.description) == [
            "parameter 'isolator_usage_worker_max_events': applies to isolator_usage_mode=worker only; ignored in exec mode",
        ])
        // Events sharing a worker must agree.
        let shared = #expect(throws: ConfigurationError.self) {
            try configuration(.isolator, sandbox, [
                ("isolator_usage_command", script), ("isolator_usage_mode", "worker"), ("isolator_usage_worker_max_events", "10"),
                ("isolator_status_command", script), ("isolator_status_mode", "worker"), ("isolator_status_worker_max_events", "20"),
            ])
        }
        #expect(shared?.description == "module 'test_module': parameter 'isolator_usage_worker_max_events': 10 differs "
            + "from isolator_status_worker_max_events=20, and both events share the worker '\(script)'")
        let one = try configuration(.isolator, sandbox, [
            ("isolator_usage_command", script), ("isolator_usage_mode", "worker"), ("isolator_usage_worker_max_events", "10"),
            ("isolator_status_command", script), ("isolator_status_mode", "worker"),
        ])
        #expect(one.commands[.usage]?.workerMaxEvents == 10 && one.commands[.status]?.workerMaxEvents == nil)
    }
}
