import CMesosCommandSpawn
import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §8: neither a worker nor anything it started outlives the agent — also when the agent dies without
/// destroying the module (a SIGTERM'd Mesos agent exits from its signal handler; a SIGKILL'd one just ends).
@Suite(.serialized) struct WorkerAgentDeathTests {
    let sandbox = Sandbox()

    /// A bash worker answering every request; it starts a helper (`sleep 1000 &`) and writes the helper's pid
    /// to `<name>.helper`, its own to `<name>.pid`, and what it saw of its end (`term`, `eof`) to `<name>.end`.
    /// A `stubborn` one ignores SIGTERM and keeps running after the end of its stdin; a polite one waits a second
    /// after the end of its stdin before it exits, for the SIGTERM: the kernel closes a dead host's fds (the end of
    /// stdin) before or after its thread that started the worker ends (the SIGTERM of PR_SET_PDEATHSIG), depending
    /// on which of the host's threads ends last.
    func worker(_ name: String, stubborn: Bool) -> String {
        let file = sandbox.path + "/" + name
        return sandbox.script(name, """
            #!/bin/bash
            echo $$ > '\(file).pid'
            sleep 1000 &
            echo $! > '\(file).helper'
            \(stubborn ? "trap '' TERM" : "trap 'echo term >> \(file).end' TERM")
            while IFS= read -r request; do
              id=${request#*\\"id\\":}; id=${id%%,*}
              printf '{"id":%s,"output":{"processes":1}}\\n' "$id"
            done
            echo eof >> '\(file).end'
            \(stubborn ? "while :; do sleep 0.2; done" : "sleep 1 & wait $!; kill $! 2> /dev/null; exit 0")
            """)
    }

    func pid(_ file: String) -> pid_t { pid_t(sandbox.read(sandbox.path + "/" + file)?.trimmingWhitespace ?? "") ?? 0 }

    /// Starts `mcm-abi-check worker-host …` as a child of this process (so that it can be reaped once killed, as
    /// systemd reaps an agent), its output in `host.out`; returns its pid once it printed "ready".
    func startHost(tempDir: String, usage: String, status: String) async throws -> pid_t {
        let output = sandbox.path + "/host.out"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, output, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let arguments = [builtBinary("mcm-abi-check"), "worker-host", tempDir, sandbox.path + "/state", usage, status]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        // Every signal unblocked and at its default, as in an agent (this test's thread blocks most of them).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        var all = sigset_t()
        sigemptyset(&none)
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        #expect(posix_spawn(&pid, arguments[0], &actions, &attributes, &argv, environ) == 0)
        let ready = await eventually(within: 20) { sandbox.read(output)?.contains("ready - worker-host") ?? false }
        #expect(ready, "\(sandbox.read(output) ?? "")")
        return pid
    }

    func entries(_ directory: String) -> [String] { Sandbox.entries(directory).filter { $0.hasPrefix("mesos-command-modules.") } }

    @Test(arguments: [SIGKILL, SIGTERM])
    func anAgentThatDiesWithoutDestroyingTheModuleLeavesNothingOnceTheModuleStartsAgain(signal: Int32) async throws {
        let tempDir = sandbox.mkdir("tmp")
        let polite = worker("polite.sh", stubborn: false)
        let stubborn = worker("stubborn.sh", stubborn: true)
        let host = try await startHost(tempDir: tempDir, usage: polite, status: stubborn)
        let processes = ["polite.sh.pid", "polite.sh.helper", "stubborn.sh.pid", "stubborn.sh.helper"].map(pid)
        #expect(processes.allSatisfy { $0 > 0 && processAlive($0) }, "\(processes)")
        // The host made its private temporary directory and the records of its workers.
        #expect(entries(tempDir).count == 2, "\(entries(tempDir))")

        kill(host, signal)
        var status: Int32 = 0
        #expect(waitpid(host, &status, 0) == host && mcm_wifsignaled(status) != 0 && mcm_wtermsig(status) == signal)

        // The kernel tells each worker: end of stdin and SIGTERM. The polite one exits; what ignores SIGTERM, and
        // the helpers, are still there.
        let politeEnd = sandbox.path + "/polite.sh.end"
        #expect(await eventually(within: 3) { !processAlive(processes[0]) }, "the polite worker exits")
        #expect(Set(sandbox.read(politeEnd)?.split(separator: "\n") ?? []) == ["eof", "term"], "\(sandbox.read(politeEnd) ?? "")")
        try await Task.sleep(for: .milliseconds(300))
        #expect(processAlive(processes[1]) && processAlive(processes[2]) && processAlive(processes[3]))
        #expect(entries(tempDir).count == 2, "what the dead host left: \(entries(tempDir))")

        // The module starts again (a restarted agent): what the dead one's workers left is killed, its
        // directories removed.
        let log = CapturedLog()
        var restarted: IsolatorModule? = try IsolatorModule(configuration: configuration(.isolator, sandbox, name: "abi_host", [
            ("temp_dir", tempDir), ("isolator_usage_command", polite), ("isolator_usage_mode", "worker"),
        ]), logger: log.logger)
        #expect(await eventually(within: 3) { !processes.contains(where: processAlive) }, "\(processes.filter(processAlive))")
        // The stubborn worker, the two helpers, and the stubborn worker's `sleep 0.2` of the moment.
        // Issue 19: a hook module's workers may be a master's: the warning names what the host may have been.
        #expect(log.contains("The agent or master that ran this module before (pid \(host)) ended without stopping its "
            + "workers: killed (SIGKILL) 4 process(es)"), "\(log.all)")
        #expect(entries(tempDir).count == 2, "only the new instance's: \(entries(tempDir))")
        #expect(entries(tempDir).allSatisfy { $0.contains(".\(getpid()).") }, "\(entries(tempDir))")
        restarted = nil
        _ = restarted
        #expect(await eventually(within: 3) { entries(tempDir).isEmpty }, "\(entries(tempDir))")
    }

    /// The records of a dead agent, written by hand: a directory as a module makes it, naming `agent` (a pid
    /// that is gone) with `token`, and one record per `(group, start time)`.
    func fakeRecords(in parent: String, agent: pid_t, token: String, _ records: [(pid_t, UInt64)]) -> String {
        let directory = parent + "/" + WorkerRecords.prefix(moduleName: "fake") + "\(agent).abcdef"
        #expect(mkdir(directory, 0o700) == 0)
        let instance = WorkerRecords.Instance(bootID: ProcessIdentity.bootID, pid: agent, startTime: 1, token: token)
        sandbox.write(directory + "/instance", instance.text)
        for (group, start) in records { sandbox.write(directory + "/\(group)", "start=\(start)\n") }
        return directory
    }

    /// A pid that was just used and is gone.
    func deadPID() -> pid_t {
        var pid: pid_t = 0
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { free(argv[0]) }
        posix_spawn(&pid, "/bin/true", nil, nil, &argv, environ)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        return pid
    }

    /// Starts `command` through `setsid` (a process group and session of its own, not our child) and returns the
    /// pid it writes to `file`.
    func startDetached(_ command: String, pidFile file: String) async -> pid_t {
        let path = sandbox.path + "/" + file
        shell("setsid sh -c '\(command)' > /dev/null 2>&1 < /dev/null &")
        _ = await eventually(within: 5) { pid(file) > 0 }
        _ = path
        return pid(file)
    }

    @Test func aProcessThatMerelyReusesARecordedPIDIsNeverKilled() async throws {
        let tempDir = sandbox.mkdir("tmp")
        let token = "0123456789abcdef0123456789abcdef"
        let path = sandbox.path
        // Four processes, each in a group of its own:
        // - one whose pid a record names, but with another start time: a process that reused a worker's pid;
        let reused = await startDetached("echo $$ > \(path)/reused; exec sleep 1000", pidFile: "reused")
        // - one a record names with its start time: the recorded worker itself;
        let worker = await startDetached("echo $$ > \(path)/worker; exec sleep 1000", pidFile: "worker")
        // - a helper whose worker (its group's leader) is gone, with the instance's token in its environment;
        let helper = await startDetached(
            "MESOS_COMMAND_MODULES_INSTANCE=\(token) sleep 1000 & echo $! > \(path)/helper; echo $$ > \(path)/helper.group",
            pidFile: "helper")
        // - a process in a recorded group whose leader is gone, without the token: nothing proves it is a worker's.
        let stranger = await startDetached("sleep 1000 & echo $! > \(path)/stranger; echo $$ > \(path)/stranger.group",
                                           pidFile: "stranger")
        let all = [reused, worker, helper, stranger]
        #expect(all.allSatisfy { $0 > 0 && processAlive($0) }, "\(all)")
        #expect(await eventually(within: 3) { !processAlive(pid("helper.group")) && !processAlive(pid("stranger.group")) })
        let start = { (pid: pid_t) in ProcessIdentity.status(of: pid)?.startTime ?? 0 }
        let agent = deadPID()
        let records = fakeRecords(in: tempDir, agent: agent, token: token, [
            (reused, start(reused) + 1), (worker, start(worker)), (pid("helper.group"), 7), (pid("stranger.group"), 7),
        ])
        defer { for pid in all { kill(pid, SIGKILL) } }

        let log = CapturedLog()
        _ = try IsolatorModule(configuration: configuration(.isolator, sandbox, name: "fake", [("temp_dir", tempDir)]),
                               logger: log.logger)
        #expect(await eventually(within: 3) { !processAlive(worker) && !processAlive(helper) }, "\(log.all)")
        try await Task.sleep(for: .milliseconds(200))
        #expect(processAlive(reused), "a process that reused a recorded pid is not touched")
        #expect(processAlive(stranger), "nothing proves it is a worker's")
        #expect(access(records, F_OK) != 0, "the records are gone with what they proved")
        #expect(log.contains("killed (SIGKILL) 2 process(es) they left: "), "\(log.all)")
        let left = [reused, stranger].sorted().map(String.init).joined(separator: ", ")
        #expect(log.contains("Left alone 2 process(es) with the process group id of a worker of the agent or master "
            + "that ran this module before (pid \(agent)) (\(left))"), "\(log.all)")
    }

    /// Records whose agent cannot be proven dead from here are left alone, and so is what they name: an agent in
    /// another pid namespace sharing the temp_dir (its pid means nothing here), or one whose start time was not
    /// known (an instance this version never writes).
    @Test func recordsThatCannotBeProvenDeadAreLeftAlone() async throws {
        let tempDir = sandbox.mkdir("tmp")
        let sleeper = await startDetached("echo $$ > \(sandbox.path)/live; exec sleep 1000", pidFile: "live")
        defer { kill(sleeper, SIGKILL) }
        let record = "start=\(ProcessIdentity.status(of: sleeper)?.startTime ?? 0)\n"
        var directories: [String] = []
        for (suffix, instance) in [
            ("aaaaaa", WorkerRecords.Instance(bootID: ProcessIdentity.bootID, namespace: "0:1", pid: deadPID(),
                                              startTime: 1, token: "feed")),
            ("bbbbbb", WorkerRecords.Instance(bootID: ProcessIdentity.bootID, pid: deadPID(), startTime: 0, token: "feed")),
        ] {
            let directory = tempDir + "/" + WorkerRecords.prefix(moduleName: "fake") + "\(instance.pid).\(suffix)"
            #expect(mkdir(directory, 0o700) == 0)
            sandbox.write(directory + "/instance", instance.text)
            sandbox.write(directory + "/\(sleeper)", record)
            directories.append(directory)
        }
        _ = try IsolatorModule(configuration: configuration(.isolator, sandbox, name: "fake", [("temp_dir", tempDir)]),
                               logger: CapturedLog().logger)
        try await Task.sleep(for: .milliseconds(200))
        #expect(processAlive(sleeper))
        #expect(directories.allSatisfy { access($0, F_OK) == 0 })
    }

    /// The records of a live agent — another process, or another module of this one — are left alone.
    @Test func theRecordsOfALiveAgentAreLeftAlone() async throws {
        let tempDir = sandbox.mkdir("tmp")
        let sleeper = await startDetached("echo $$ > \(sandbox.path)/live; exec sleep 1000", pidFile: "live")
        defer { kill(sleeper, SIGKILL) }
        let record = "start=\(ProcessIdentity.status(of: sleeper)?.startTime ?? 0)\n"
        // This process's pid in the name, in a directory it does not use — what a crashed agent's looks like in a
        // pid namespace —, but its instance file names this very process, still running.
        let mine = tempDir + "/" + WorkerRecords.prefix(moduleName: "fake") + "\(getpid()).ghijkl"
        #expect(mkdir(mine, 0o700) == 0)
        sandbox.write(mine + "/instance", WorkerRecords.Instance.current()!.text)
        sandbox.write(mine + "/\(sleeper)", record)
        // Another live process's.
        let other = tempDir + "/" + WorkerRecords.prefix(moduleName: "fake") + "\(sleeper).mnopqr"
        #expect(mkdir(other, 0o700) == 0)
        let instance = WorkerRecords.Instance(
            bootID: ProcessIdentity.bootID, pid: sleeper, startTime: ProcessIdentity.status(of: sleeper)?.startTime ?? 0,
            token: "feed")
        sandbox.write(other + "/instance", instance.text)
        sandbox.write(other + "/\(sleeper)", record)
        _ = try IsolatorModule(configuration: configuration(.isolator, sandbox, name: "fake", [("temp_dir", tempDir)]),
                               logger: CapturedLog().logger)
        try await Task.sleep(for: .milliseconds(200))
        #expect(processAlive(sleeper))
        #expect(access(mine, F_OK) == 0 && access(other, F_OK) == 0)
    }
}
