import ArgumentParser
import Glibc
import Logging
import MesosCommandModules

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure what the engine costs beyond spawning the script itself.",
        discussion: """
            In one run, on the same script: the floor (bare posix_spawn + waitpid, sequentially) against the \
            engine's whole isolator_usage event (envelope, temporary files, spawn, wait, read, parse, cleanup), \
            with p50, p99 and their ratios; worker mode, with what its per-event deployment check costs; \
            throughput with 1, 8 and 64 events in flight; the wall time of 16 \
            concurrent one-second prepares; and a soak's resident memory and open fds before and after. Build \
            with -c release for meaningful numbers.
            """)

    @Option(help: "Sequential events per latency measurement.")
    var events = 2000

    @Option(help: "Also measure this script (besides the trivial #!/bin/sh + exit 0).")
    var script: String?

    @Option(help: "Events of the stability soak (0 to skip).")
    var soak = 100_000

    @Option(help: "Events per throughput measurement.")
    var throughputEvents = 4000

    @Option(help: "The modules' temp_dir (where the input/output/error files live); a private directory in $TMPDIR or /tmp by default. A tmpfs (e.g. /dev/shm) makes file creation cheaper.")
    var tempDir: String?

    @Option(help: "The Python usage example, measured in exec and in worker mode (0 events to skip).")
    var pythonEvents = 100

    @Flag(help: "Only the latency and worker lines (no throughput, prepares or soak).")
    var quick = false

    func run() async throws {
        let scratch = try ScratchDirectory("mesos-command-modules-bench")
        defer { scratch.remove() }
        let trivial = scratch.path + "/trivial.sh"
        writeFile(trivial, "#!/bin/sh\nexit 0\n", mode: 0o755)
        let logger = Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() }

        print("mesos-command-modules bench — \(cpuCount()) cores, \(events) sequential events per measurement, "
            + "temp_dir \(tempDir ?? scratch.path)")
        print("")
        print("Latency per event (sequential):")
        print("  script                                   floor p50   floor p99   engine p50  engine p99  ratio p50  ratio p99")
        for path in [trivial] + (script.map { [$0] } ?? []) {
            let module = try makeIsolator(path, scratch: scratch, logger: logger, name: "latency")
            let (floor, engine) = try await measureLatency(path, module, scratch: scratch)
            let name = path == trivial ? "trivial (#!/bin/sh + exit 0)" : path
            print("  \(name.padding(40)) \(ms(floor.p50))  \(ms(floor.p99))  \(ms(engine.p50))  \(ms(engine.p99))  "
                + "\(ratio(engine.p50 / floor.p50))  \(ratio(engine.p99 / floor.p99))")
        }

        try await benchWorkers(trivial: trivial, scratch: scratch, logger: logger)
        try await benchContainment(trivial: trivial, scratch: scratch, logger: logger)
        try await benchRules(scratch: scratch, logger: logger)
        try await benchHandOvers(trivial: trivial, scratch: scratch, logger: logger)
        if quick { return }

        print("")
        print("Throughput (trivial script, \(throughputEvents) isolator_usage events):")
        let throughputModule = try makeIsolator(trivial, scratch: scratch, logger: logger, name: "throughput", maxInFlight: 64)
        var single = 0.0
        for inFlight in [1, 8, 64] {
            let perSecond = try await measureThroughput(throughputModule, inFlight: inFlight, events: throughputEvents)
            if inFlight == 1 { single = perSecond }
            print("  \(String(inFlight).padding(3)) in flight: \(Int(perSecond)) events/s (\(ratio(perSecond / single)) × 1 in flight)")
        }

        print("")
        let sleeper = scratch.path + "/sleep1.sh"
        writeFile(sleeper, "#!/bin/sh\nsleep 1\n", mode: 0o755)
        let prepareModule = try makeIsolator(sleeper, scratch: scratch, logger: logger, name: "prepare", event: .prepare)
        let wall = try await measureConcurrentPrepares(prepareModule, count: 16)
        print("16 concurrent isolator_prepare of 16 containers, script sleeps 1 s: \(String(format2(wall))) s wall time")

        if soak > 0 {
            print("")
            let soakModule = try makeIsolator(trivial, scratch: scratch, logger: logger, name: "soak", maxInFlight: 8)
            _ = try await measureThroughput(soakModule, inFlight: 8, events: 500)  // warm up
            let rssBefore = residentKiB()
            let fdsBefore = openFDs()
            let start = ContinuousClock.now
            _ = try await measureThroughput(soakModule, inFlight: 8, events: soak)
            let elapsed = seconds(ContinuousClock.now - start)
            let rssAfter = residentKiB()
            let fdsAfter = openFDs()
            print("Soak: \(soak) events in \(format2(elapsed)) s; resident memory \(rssBefore / 1024) MiB → \(rssAfter / 1024) MiB "
                + "(\(rssAfter - rssBefore >= 0 ? "+" : "")\(rssAfter - rssBefore) KiB); open fds \(fdsBefore) → \(fdsAfter); "
                + "temporary files left: \(try directoryEntries(soakModule.temporaryDirectory).count)")
        }
    }

    // MARK: - Worker mode and rules

    /// A worker as small as one can be in Python: it parses each request and answers null.
    static let trivialWorker = """
        #!/usr/bin/env python3
        import json, sys
        out = sys.stdout.buffer
        for line in sys.stdin.buffer:
            request = json.loads(line)
            out.write(b'{"id":%d,"output":null}\\n' % request["id"])
            out.flush()
        """

    /// Worker mode against the exec floor, in the same run: per-event latency (floor and worker alternated),
    /// throughput with 1 and 8 events in flight over 8 workers, and the Python usage example in both modes.
    func benchWorkers(trivial: String, scratch: ScratchDirectory, logger: Logger) async throws {
        let worker = scratch.path + "/worker.py"
        writeFile(worker, Self.trivialWorker, mode: 0o755)
        let module = try makeIsolator(worker, scratch: scratch, logger: logger, name: "worker", mode: .worker, workers: 8)
        let (floor, engine) = try await measureLatency(trivial, module, scratch: scratch)
        print("")
        print("Worker mode (a Python worker that parses each request and answers null), against the exec floor:")
        print("  floor p50 / p99 (bare posix_spawn + waitpid of #!/bin/sh + exit 0): \(ms(floor.p50)) / \(ms(floor.p99))")
        print("  worker event p50 / p99, each after a floor spawn:                 \(ms(engine.p50)) / \(ms(engine.p99))"
            + "  → \(ratio(engine.p50 / floor.p50)) / \(ratio(engine.p99 / floor.p99)) × the floor")
        // Events back to back, as a /monitor/statistics request calls usage for each container in turn.
        let back = try await backToBack(warmUp: events / 10) { _ = try await module.usage(containerID: Self.container) }
        print("  worker event p50 / p99, back to back:                             \(ms(back.p50)) / \(ms(back.p99))"
            + "  → \(ratio(back.p50 / floor.p50)) / \(ratio(back.p99 / floor.p99)) × the floor")
        try await benchWorkersThroughTheABI(worker, trivial: trivial, scratch: scratch, floor: floor)
        let check = await measureChangeDetection(worker)
        print("  of which the deployment check (the last stat, made off the pool):\(us(check.p50)) / \(us(check.p99))"
            + "  → \(format2(check.p50 / back.p50 * 100)) % of the back-to-back p50")
        _ = try await measureThroughput(module, inFlight: 8, events: 5000)  // warm-up: the workers, their CPUs
        for inFlight in [1, 8] {
            let perSecond = try await measureThroughput(module, inFlight: inFlight, events: max(throughputEvents, 50000))
            print("  \(inFlight) in flight over 8 workers: \(Int(perSecond)) events/s")
        }
        module.stopWorkers()

        guard pythonEvents > 0 else { return }
        let manifest = try examplesManifest()
        let example = String(manifest[..<(manifest.lastIndex(of: "/") ?? manifest.startIndex)]) + "/isolator/usage.py"
        let exec = try makeIsolator(example, scratch: scratch, logger: logger, name: "python_exec")
        let served = try makeIsolator(example, scratch: scratch, logger: logger, name: "python_worker", mode: .worker)
        _ = try await served.usage(containerID: Self.container)  // the worker's start is not an event's cost
        var execTimes: [Double] = []
        var workerTimes: [Double] = []
        for _ in 0..<pythonEvents {
            var start = ContinuousClock.now
            _ = try await exec.usage(containerID: Self.container)
            execTimes.append(seconds(ContinuousClock.now - start))
            start = ContinuousClock.now
            _ = try await served.usage(containerID: Self.container)
            workerTimes.append(seconds(ContinuousClock.now - start))
        }
        served.stopWorkers()
        let (e, w) = (Percentiles(execTimes), Percentiles(workerTimes))
        print("  examples/isolator/usage.py: exec p50 \(ms(e.p50)), worker p50 \(ms(w.p50)) → \(ratio(e.p50 / w.p50)) × faster "
            + "(p99 \(ms(e.p99)) / \(ms(w.p99)))")
    }

    /// Worker events as the Mesos module runs them: `mcm_run_event`, answered through the C callback (see
    /// ``ABIIsolator``), the event's task on the event loop (``EventExecution``) and, in the same run, on Swift's
    /// pool as before; back to back and each after a floor spawn; with the hand-overs counted.
    func benchWorkersThroughTheABI(_ worker: String, trivial: String, scratch: ScratchDirectory, floor: Percentiles)
        async throws
    {
        let module = try ABIIsolator(parameters: [
            ("module_name", "bench_abi_worker"), ("temp_dir", tempDir ?? scratch.path),
            ("state_dir", scratch.path + "/state"), ("isolator_usage_command", worker),
            ("isolator_usage_mode", "worker"), ("isolator_usage_workers", "8"), ("isolator_usage_failure_policy", "fail")])
        defer { EventExecution.onTheLoop.store(true, ordering: .relaxed) }
        for onTheLoop in [true, false] {
            EventExecution.onTheLoop.store(onTheLoop, ordering: .relaxed)
            for _ in 0..<(events / 10) { try module.usage() }
            let back = try await backToBack(warmUp: 0) { try module.usage() }
            let after = try await measureLatency(trivial, scratch: scratch, warmUp: 0) { try module.usage() }
            HandOvers.startCounting()
            for _ in 0..<200 { try module.usage() }
            HandOvers.stopCounting()
            let handOvers = Double(HandOvers.count) / 200
            _ = try module.throughput(inFlight: 8, events: 5000)  // warm-up: the workers, their CPUs
            let perSecond = try module.throughput(inFlight: 8, events: max(throughputEvents, 50000))
            let place = onTheLoop ? "task on the event loop" : "task on Swift's pool   "
            print("  C ABI (as Mesos calls it), \(place), back to back: \(ms(back.p50)) / \(ms(back.p99))"
                + "  → \(ratio(back.p50 / floor.p50)) / \(ratio(back.p99 / floor.p99)) × the floor; after a floor spawn "
                + "\(ratio(after.engine.p50 / after.floor.p50)) / \(ratio(after.engine.p99 / after.floor.p99)) ×; "
                + "hand-overs \(format2(handOvers)); 8 in flight over 8 workers \(Int(perSecond)) events/s")
        }
    }

    /// containment=cgroup against containment=process_group, in the same run, events alternated with the floor:
    /// exec (a cgroup from the free list, clone3 into it, the leftover check and cpu.stat read at the exit) and
    /// worker mode (one Python worker).
    func benchContainment(trivial: String, scratch: ScratchDirectory, logger: Logger) async throws {
        print("")
        guard case .success(let hierarchy) = CgroupHierarchy.find() else {
            print("Containment: no writable cgroup v2 hierarchy here; containment=cgroup not measured")
            return
        }
        print("Containment (cgroups under \(hierarchy.base)), p50 / p99, each event after a floor spawn:")
        let worker = scratch.path + "/worker.py"
        writeFile(worker, Self.trivialWorker, mode: 0o755)
        var modules: [(String, IsolatorModule)] = []
        for mode in [CommandMode.exec, .worker] {
            for containment in [ContainmentMode.processGroup, .cgroup] {
                let module = try makeIsolator(mode == .exec ? trivial : worker, scratch: scratch, logger: logger,
                                              name: "containment_\(mode.rawValue)_\(containment.rawValue)", mode: mode,
                                              containment: containment)
                _ = try await module.usage(containerID: Self.container)
                modules.append(("\(mode.rawValue) containment=\(containment.rawValue)", module))
            }
        }
        let floorSpawn = FloorSpawn(trivial, scratch: scratch, bench: self)
        var floor: [Double] = []
        var times = Array(repeating: [Double](), count: modules.count)
        for i in 0..<(events + events / 10) {
            for (index, (_, module)) in modules.enumerated() {
                let floorSeconds = try floorSpawn.run()
                let start = ContinuousClock.now
                _ = try await module.usage(containerID: Self.container)
                if i >= events / 10 {
                    if index == 0 { floor.append(floorSeconds) }
                    times[index].append(seconds(ContinuousClock.now - start))
                }
            }
        }
        let floorP = Percentiles(floor)
        print("  floor: \(ms(floorP.p50)) / \(ms(floorP.p99))")
        let p = times.map(Percentiles.init)
        for (index, (name, _)) in modules.enumerated() {
            print("  \(name.padding(36)) \(ms(p[index].p50)) / \(ms(p[index].p99))")
        }
        for (base, mode) in [(0, "exec"), (2, "worker")] {
            print("  \(mode): cgroup − process_group p50 = \(format2((p[base + 1].p50 - p[base].p50) / floorP.p50)) × the floor")
        }
        for (_, module) in modules { module.stopWorkers() }
    }

    /// What noticing a deployment costs each worker event: the check a worker pool makes before handing an event
    /// to a worker (``CommandFileWatch``), timed in batches of 1000 (a clock read per call would weigh as much).
    func measureChangeDetection(_ path: String) async -> Percentiles {
        let watch = CommandFileWatch(path: path, logger: Logger(label: "bench") { _ in SwiftLogNoOpLogHandler() })
        var generations = 0
        var batches: [Double] = []
        for _ in 0..<max(events / 10, 50) {
            let start = ContinuousClock.now
            for _ in 0..<1000 { generations &+= await watch.generation() }
            batches.append(seconds(ContinuousClock.now - start) / 1000)
        }
        if generations != 0 { print("  (the command file changed during the measurement)") }
        return Percentiles(batches)
    }

    /// What an event skipped by its `<event>_when` rule costs — decided in the module, no process started.
    func benchRules(scratch: ScratchDirectory, logger: Logger) async throws {
        var configuration = ModuleConfiguration(kind: .hook, moduleName: "bench_rules")
        var command = CommandConfiguration(event: .slaveRunTaskLabelDecorator, path: "/bin/true")
        command.rule = try Rule(parsing: "label:team=nobody; framework~marathon|aurora")
        configuration.commands[.slaveRunTaskLabelDecorator] = command
        configuration.temporaryDirectory = tempDir ?? scratch.path
        let hook = try HookModule(configuration: configuration, logger: logger)
        let envelope = SampleEnvelopes.envelope(for: .slaveRunTaskLabelDecorator)
        let skipped = try await backToBack(warmUp: events / 10) {
            _ = try await hook.run(.slaveRunTaskLabelDecorator, envelope: envelope)
        }
        let isolator = try makeSkippedUsageIsolator(name: "bench_rules_isolator", scratch: scratch, logger: logger)
        let usage = try await backToBack(warmUp: 0) { _ = try await isolator.usage(containerID: Self.container) }
        print("")
        print("Events skipped by their `when` rule (no process started):")
        print("  hook_slave_run_task_label_decorator, rule on labels and framework, sample task: p50 \(us(skipped.p50)) "
            + "p99 \(us(skipped.p99))")
        print("  isolator_usage of a container whose rule did not match at prepare:           p50 \(us(usage.p50)) "
            + "p99 \(us(usage.p99))")
    }

    /// An isolator whose usage command's rule did not match the bench's container at prepare: its usage events
    /// are skipped, no process started.
    func makeSkippedUsageIsolator(name: String, scratch: ScratchDirectory, logger: Logger) throws -> IsolatorModule {
        var configuration = ModuleConfiguration(
            kind: .isolator, moduleName: name, commands: [CommandConfiguration(event: .usage, path: "/bin/true")])
        configuration.commands[.usage]?.rule = try Rule(parsing: "label:team=nobody")
        configuration.temporaryDirectory = tempDir ?? scratch.path
        configuration.stateDirectory = scratch.path + "/state"
        let isolator = try IsolatorModule(configuration: configuration, logger: logger)
        try isolator.adopt(containerID: Self.container, containerConfig: SampleEnvelopes.containerConfig())
        return isolator
    }

    /// How many times an event's work passes from one thread to another (``HandOvers``: counted by the engine
    /// while `bench` asks, never assumed), per path, over sequential events.
    func benchHandOvers(trivial: String, scratch: ScratchDirectory, logger: Logger) async throws {
        func perEvent(_ count: Int = 200, _ event: () async throws -> Void) async throws -> Double {
            try await event()  // started, warm
            HandOvers.startCounting()
            defer { HandOvers.stopCounting() }
            for _ in 0..<count { try await event() }
            return Double(HandOvers.count) / Double(count)
        }
        let exec = try makeIsolator(trivial, scratch: scratch, logger: logger, name: "hand_overs_exec")
        let worker = scratch.path + "/worker.py"
        writeFile(worker, Self.trivialWorker, mode: 0o755)
        let workers = try makeIsolator(worker, scratch: scratch, logger: logger, name: "hand_overs_worker", mode: .worker)
        let skipped = try makeSkippedUsageIsolator(name: "bench_hand_overs_skipped", scratch: scratch, logger: logger)
        let counts = [
            ("exec", try await perEvent { _ = try await exec.usage(containerID: Self.container) }),
            ("worker", try await perEvent { _ = try await workers.usage(containerID: Self.container) }),
            ("skipped by its rule", try await perEvent { _ = try await skipped.usage(containerID: Self.container) }),
        ]
        workers.stopWorkers()
        print("")
        print("Thread hand-overs per event (counted by the engine; a call from Mesos adds 1, its task's start):")
        print("  " + counts.map { "\($0.0) \(format2($0.1))" }.joined(separator: ", "))
    }

    // MARK: - Measurements

    struct Percentiles {
        var p50: Double
        var p99: Double
        init(_ samples: [Double]) {
            let sorted = samples.sorted()
            p50 = sorted[sorted.count / 2]
            p99 = sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
        }
    }

    /// The floor — posix_spawn of the same script with the same argv and a blocking waitpid — and the engine's
    /// whole isolator_usage event, alternated event by event so that the machine's drift weighs on both alike.
    /// `events` runs of `event`, one after the other, after `warmUp` runs that are not measured.
    func backToBack(warmUp: Int, _ event: () async throws -> Void) async throws -> Percentiles {
        var times: [Double] = []
        for i in 0..<(warmUp + events) {
            let start = ContinuousClock.now
            try await event()
            if i >= warmUp { times.append(seconds(ContinuousClock.now - start)) }
        }
        return Percentiles(times)
    }

    func measureLatency(_ path: String, _ module: IsolatorModule, scratch: ScratchDirectory) async throws
        -> (floor: Percentiles, engine: Percentiles)
    {
        try await measureLatency(path, scratch: scratch, warmUp: events / 10) {
            _ = try await module.usage(containerID: Self.container)
        }
    }

    /// `events` runs of the floor and `event`, alternated, after `warmUp` pairs that are not measured.
    func measureLatency(_ path: String, scratch: ScratchDirectory, warmUp: Int, _ event: () async throws -> Void)
        async throws -> (floor: Percentiles, engine: Percentiles)
    {
        let floorSpawn = FloorSpawn(path, scratch: scratch, bench: self)
        var floor: [Double] = []
        var engine: [Double] = []
        for i in 0..<(warmUp + events) {
            let floorSeconds = try floorSpawn.run()
            let start = ContinuousClock.now
            try await event()
            let engineSeconds = seconds(ContinuousClock.now - start)
            if i >= warmUp {
                floor.append(floorSeconds)
                engine.append(engineSeconds)
            }
        }
        return (Percentiles(floor), Percentiles(engine))
    }

    /// The floor: a bare posix_spawn of the script, with the engine's argv (its three files), and a blocking waitpid.
    final class FloorSpawn {
        let path: String
        private var argv: [UnsafeMutablePointer<CChar>?]

        init(_ path: String, scratch: ScratchDirectory, bench: Bench) {
            let files = ["in", "out", "err"].map { scratch.path + "/floor-" + $0 }
            for file in files { bench.writeFile(file, "{}", mode: 0o600) }
            self.path = path
            argv = ([path] + files).map { strdup($0) } + [nil]
        }

        deinit { argv.forEach { free($0) } }

        /// One spawn and wait; its seconds.
        func run() throws -> Double {
            let start = ContinuousClock.now
            var pid: pid_t = 0
            let rc = posix_spawn(&pid, path, nil, nil, &argv, environ)
            guard rc == 0 else { throw ValidationError("posix_spawn \(path): \(String(cString: strerror(rc)))") }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let (s, atto) = (ContinuousClock.now - start).components
            return Double(s) + Double(atto) / 1e18
        }
    }

    func measureThroughput(_ module: IsolatorModule, inFlight: Int, events: Int) async throws -> Double {
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            var submitted = 0
            for _ in 0..<min(inFlight, events) {
                submitted += 1
                group.addTask { _ = try await module.usage(containerID: Self.container) }
            }
            for try await _ in group where submitted < events {
                submitted += 1
                group.addTask { _ = try await module.usage(containerID: Self.container) }
            }
        }
        return Double(events) / seconds(ContinuousClock.now - start)
    }

    func measureConcurrentPrepares(_ module: IsolatorModule, count: Int) async throws -> Double {
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<count {
                group.addTask { _ = try await module.prepare(containerID: #"{"value":"bench-\#(i)"}"#, containerConfig: "{}") }
            }
            try await group.waitForAll()
        }
        return seconds(ContinuousClock.now - start)
    }

    // MARK: - Helpers

    static let container = #"{"value":"bench"}"#

    func makeIsolator(_ script: String, scratch: ScratchDirectory, logger: Logger, name: String, event: Event = .usage,
                      maxInFlight: Int = 64, mode: CommandMode = .exec, workers: Int = 1,
                      containment: ContainmentMode = .auto) throws -> IsolatorModule {
        // Failures fail the event (usage would ignore them): a benchmark must not count failed events as fast ones.
        var command = CommandConfiguration(event: event, path: script, failurePolicy: .fail)
        command.mode = mode
        command.workers = workers
        var configuration = ModuleConfiguration(kind: .isolator, moduleName: "bench_\(name)", commands: [command])
        configuration.temporaryDirectory = tempDir ?? scratch.path
        configuration.stateDirectory = scratch.path + "/state"
        configuration.maxInFlight = maxInFlight
        configuration.containment = containment
        let module = try IsolatorModule(configuration: configuration, logger: logger)
        if event != .prepare { try module.adopt(containerID: Self.container, containerConfig: SampleEnvelopes.containerConfig()) }
        return module
    }

    func writeFile(_ path: String, _ content: String, mode: mode_t) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        _ = content.withCString { write(fd, $0, strlen($0)) }
        fchmod(fd, mode)
        close(fd)
    }

    func seconds(_ duration: Duration) -> Double {
        let (s, atto) = duration.components
        return Double(s) + Double(atto) / 1e18
    }

    func ms(_ seconds: Double) -> String { (format3(seconds * 1000) + " ms").padding(10) }
    func us(_ seconds: Double) -> String { (format2(seconds * 1_000_000) + " µs").padding(10) }
    func ratio(_ value: Double) -> String { format2(value).padding(9) }
    func format2(_ value: Double) -> String { String(Double(Int((value * 100).rounded())) / 100) }
    func format3(_ value: Double) -> String {
        let scaled = Int((value * 1000).rounded())
        let fraction = String(scaled % 1000)
        return "\(scaled / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }

    func cpuCount() -> Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    func residentKiB() -> Int {
        guard let file = fopen("/proc/self/status", "r") else { return 0 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, 256, file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasPrefix("VmRSS:") { return Int(text.split(separator: " ")[1]) ?? 0 }
        }
        return 0
    }

    func openFDs() -> Int { ((try? directoryEntries("/proc/self/fd")) ?? []).count - 1 }
}
