import Glibc
import Testing

@testable import MesosCommandModules

/// A deterministic generator (SplitMix64), so that a failing fuzz case can be replayed from its seed.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func environmentInt(_ name: String, default value: Int) -> Int {
    guard let text = getenv(name) else { return value }
    return Int(String(cString: text)) ?? value
}

/// The long-run promises: after many events mixing good and hostile scripts, no fd, temporary file or zombie is
/// left and memory is back near where it started. `MCM_SOAK_EVENTS` sets the count (default 100000).
@Suite struct SoakTests {
    @Test func soakMixingGoodAndHostileScripts() async throws {
        let sandbox = Sandbox()
        let events = environmentInt("MCM_SOAK_EVENTS", default: 100_000)
        let good = sandbox.script("good.sh", "#!/bin/sh\necho '{\"cpus_limit\":1,\"processes\":2}' > \"$2\"\n")
        let hostile = sandbox.script("hostile.sh", """
            #!/bin/sh
            case "$(cat)" in
              *'"value":"fail'*) echo 'no luck' > "$3"; exit 3 ;;
              *'"value":"malformed'*) echo '{"cpus_limit":' > "$2" ;;
              *'"value":"wrongtype'*) echo '{"cpus_limit":"many"}' > "$2" ;;
              *'"value":"huge'*) head -c 5000 /dev/zero > "$2" ;;
              *'"value":"signal'*) kill -KILL $$ ;;
              *'"value":"background'*) (sleep 0.3; :) & echo '{}' > "$2" ;;
              *'"value":"slow'*) exec sleep 5 ;;
              *'"value":"rmdir'*) rm -rf "$(dirname "$1")" ;;
            esac
            exit 0
            """)
        let kinds = ["fail", "malformed", "wrongtype", "huge", "signal", "background", "slow", "rmdir"]
        let log = CapturedLog()
        let goodModule = try isolator(sandbox, [("isolator_usage_command", good), ("max_in_flight", "16")], log: log)
        let hostileModule = try IsolatorModule(configuration: configuration(.isolator, sandbox, name: "hostile", [
            ("isolator_usage_command", hostile), ("isolator_usage_timeout", "0.1"), ("grace_period", "0.1"),
            ("output_max_bytes", "4096"), ("max_in_flight", "16"),
        ]), logger: CapturedLog().logger)
        for kind in kinds { try hostileModule.adopt(containerID: cid(kind), containerConfig: "{}") }
        try goodModule.adopt(containerID: cid("good"), containerConfig: "{}")

        // Warm up, then take the baseline.
        for _ in 0..<200 { _ = try await goodModule.usage(containerID: cid("good")) }
        let fds = openFDCount()
        let baselineTargets = openFDTargets()
        let rss = residentBytes()
        let start = ContinuousClock.now

        var rng = SplitMix64(seed: 42)
        let hostileEvery = 20  // 5% hostile
        try await withThrowingTaskGroup(of: Bool.self) { group in
            var submitted = 0
            var completed = 0
            var goodResults = 0
            func submit() {
                let index = submitted
                submitted += 1
                if index % hostileEvery == 0 {
                    let kind = kinds[Int(rng.next() % UInt64(kinds.count))]
                    group.addTask { _ = try await hostileModule.usage(containerID: cid(kind)); return false }
                } else {
                    group.addTask { try await goodModule.usage(containerID: cid("good")).contains("\"processes\":2") }
                }
            }
            for _ in 0..<min(32, events) { submit() }
            for try await wasGood in group {
                completed += 1
                if wasGood { goodResults += 1 }
                if submitted < events { submit() }
            }
            #expect(completed == events)
            #expect(goodResults == events - (events + hostileEvery - 1) / hostileEvery)
        }
        let elapsed = ContinuousClock.now - start
        await expectNothingLeft(fdsBefore: fds, temporaryDirectory: goodModule.temporaryDirectory)
        #expect(Sandbox.runFiles(hostileModule.temporaryDirectory).isEmpty)
        let growth = residentBytes() - rss
        let newFDs = Set(openFDTargets()).subtracting(baselineTargets)
        if !newFDs.isEmpty { print("fds opened since the baseline (the runtime's own included): \(newFDs.sorted())") }
        print("soak: \(events) events in \(elapsed), RSS growth \(growth / 1024) KiB, fds \(openFDCount()) (baseline \(fds))")
        #expect(growth < 8 << 20, "resident memory grew by \(growth / 1024) KiB")
        let metrics = hostileModule.metrics.snapshot(.usage)
        #expect(metrics.failures > 0 && metrics.timeouts > 0)
        #expect(goodModule.metrics.snapshot(.usage).failures == 0)
    }
}

/// The same promises in worker mode: `MCM_SOAK_EVENTS` events (default 100000) over two pools — a good Python
/// worker (the project's helper, 2 workers) and, for 5% of the events, a hostile one that crashes, hangs, writes
/// garbage or the wrong id — then no fd, zombie or worker is left, memory is back near where it started, and the
/// hostile worker's failures were each followed by a fresh worker.
@Suite struct WorkerSoakTests {
    @Test func soakInWorkerMode() async throws {
        let sandbox = Sandbox()
        let events = environmentInt("MCM_SOAK_EVENTS", default: 100_000)
        let good = sandbox.script("good.py", """
            #!/usr/bin/env python3
            import sys
            sys.path.insert(0, "\(repositoryRoot)/examples/lib")
            import mesos_command_modules as mcm
            mcm.serve(lambda envelope, event: {"cpus_limit": 1, "processes": 2})
            """)
        let hostile = sandbox.script("hostile.sh", """
            #!/bin/bash
            while IFS= read -r request; do
              id=${request#*\\"id\\":}; id=${id%%,*}
              case "$request" in
                *'"value":"crash'*) kill -KILL $$ ;;
                *'"value":"exit'*) exit 3 ;;
                *'"value":"garbage'*) echo 'not json' ;;
                *'"value":"wrongid'*) printf '{"id":%s,"output":null}\\n' $((id + 1)) ;;
                *'"value":"slow'*) sleep 5 ;;
                *'"value":"error'*) printf '{"id":%s,"error":"no luck"}\\n' "$id" ;;
                *) printf '{"id":%s,"output":{"processes":3}}\\n' "$id" ;;
              esac
            done
            """)
        let kinds = ["crash", "exit", "garbage", "wrongid", "slow", "error", "fine"]
        let goodModule = try isolator(sandbox, [
            ("isolator_usage_command", good), ("isolator_usage_mode", "worker"), ("isolator_usage_workers", "2"),
        ])
        let hostileModule = try IsolatorModule(configuration: configuration(.isolator, sandbox, name: "hostile", [
            ("isolator_usage_command", hostile), ("isolator_usage_mode", "worker"), ("isolator_usage_timeout", "0.1"),
            ("grace_period", "0.1"), ("isolator_usage_workers", "2"),
        ]), logger: CapturedLog().logger)
        for kind in kinds { try hostileModule.adopt(containerID: cid(kind), containerConfig: "{}") }
        try goodModule.adopt(containerID: cid("good"), containerConfig: SampleEnvelopes.containerConfig())

        for _ in 0..<200 { _ = try await goodModule.usage(containerID: cid("good")) }
        let fds = openFDCount()
        let rss = residentBytes()
        let start = ContinuousClock.now
        var rng = SplitMix64(seed: 43)
        var hostileSent = 0
        try await withThrowingTaskGroup(of: Bool.self) { group in
            var submitted = 0
            var goodResults = 0
            func submit() {
                let index = submitted
                submitted += 1
                if index % 20 == 0 {
                    // The first reaches a fresh worker before any backoff, so the timeout path is always taken;
                    // after it, which hostile events find a live worker depends on the backoff and the clock.
                    let kind = hostileSent == 0 ? "slow" : kinds[Int(rng.next() % UInt64(kinds.count))]
                    hostileSent += 1
                    group.addTask { _ = try await hostileModule.usage(containerID: cid(kind)); return false }
                } else {
                    group.addTask { try await goodModule.usage(containerID: cid("good")).contains("\"processes\":2") }
                }
            }
            for _ in 0..<min(16, events) { submit() }
            for try await wasGood in group {
                if wasGood { goodResults += 1 }
                if submitted < events { submit() }
            }
            #expect(goodResults == events - hostileSent)
        }
        let elapsed = ContinuousClock.now - start
        #expect(goodModule.workerPIDs.count == 2)
        #expect(goodModule.metrics.snapshot(.usage).failures == 0)
        #expect(goodModule.workerRestarts(.usage) == 0)
        let hostileMetrics = hostileModule.metrics.snapshot(.usage)
        #expect(hostileMetrics.failures > 0 && hostileModule.workerRestarts(.usage) > 0 && hostileMetrics.timeouts > 0)
        let workers = goodModule.workerPIDs + hostileModule.workerPIDs
        goodModule.stopWorkers()
        hostileModule.stopWorkers()
        #expect(await eventually(within: 5) { workers.allSatisfy { kill($0, 0) != 0 } }, "no worker is left")
        await expectNothingLeft(fdsBefore: fds, temporaryDirectory: goodModule.temporaryDirectory)
        let growth = residentBytes() - rss
        print("worker soak: \(events) events in \(elapsed), RSS growth \(growth / 1024) KiB, fds \(openFDCount()) "
            + "(baseline \(fds)), hostile: \(hostileMetrics.failures) failures, \(hostileModule.workerRestarts(.usage)) restarts")
        #expect(growth < 8 << 20, "resident memory grew by \(growth / 1024) KiB")
    }
}

/// The two parsers that take outside input — module parameters and command output — give a value or a clear
/// error for any input, never a crash or a hang. Fixed seeds in CI; `MCM_FUZZ_ITERATIONS` for a longer run.
@Suite struct FuzzTests {
    static let iterations = environmentInt("MCM_FUZZ_ITERATIONS", default: 3000)

    static let seeds: [String] = [
        #"{"labels":[{"key":"a","value":"b"}]}"#,
        #"[{"name":"cpus","type":"SCALAR","scalar":{"value":1.5},"role":"*"}]"#,
        #"{"environment":{"variables":[{"name":"A","type":"VALUE","value":"1"}]},"rlimits":{"rlimits":[{"type":"RLMT_NOFILE","hard":10,"soft":5}]}}"#,
        #"{"timestamp":1.5e9,"mem_limit_bytes":18446744073709551615,"cpus_limit":"0.5"}"#,
        #"{"message":"oom","reason":"REASON_CONTAINER_LIMITATION_MEMORY","resources":[{"name":"mem","type":"SCALAR","scalar":{"value":1}}]}"#,
        #"{"a":"\u00e9\ud83d\ude00\n","b":[null,true,false,-0.0e-0],"c":{}}"#,
    ]

    static let messages = ["mesos.Labels", "mesos.slave.ContainerLaunchInfo", "mesos.ResourceStatistics",
                           "mesos.slave.ContainerLimitation", "mesos.ContainerStatus", "mesos.Environment", "mesos.TaskStatus"]

    func mutate(_ bytes: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
        var bytes = bytes
        let alphabet = Array(#"{}[]":,.-+eE0123456789truefalsn\u"#.utf8) + [0x00, 0xFF, 0xC3, 0x80, 0x0A]
        for _ in 0...(rng.next() % 4) {
            let position = bytes.isEmpty ? 0 : Int(rng.next() % UInt64(bytes.count))
            switch rng.next() % 5 {
            case 0 where !bytes.isEmpty: bytes.remove(at: position)
            case 1: bytes.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: position)
            case 2 where !bytes.isEmpty: bytes[position] = UInt8(truncatingIfNeeded: rng.next())
            case 3 where !bytes.isEmpty:
                let end = min(bytes.count, position + Int(rng.next() % 16))
                bytes.insert(contentsOf: bytes[position..<end], at: position)
            default: bytes = Array(bytes.prefix(position))
            }
        }
        return bytes
    }

    @Test func commandOutputParserAndSchemaCheckerNeverCrash() {
        var rng = SplitMix64(seed: 7)
        var parsed = 0
        var rejected = 0
        for i in 0..<Self.iterations {
            let seed = Array(Self.seeds[i % Self.seeds.count].utf8)
            let input: [UInt8]
            if i % 10 == 0 {
                input = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                input = mutate(seed, &rng)
            }
            // The rules' scanner reads members of any input without crashing, and agrees with the parser.
            let text = String(decoding: input, as: UTF8.self)
            let scanned = JSONScanner.value(at: ["labels"], in: text)
            do {
                let value = try JSONValue(parsing: input)
                parsed += 1
                if Array(text.utf8) == input, case .object = value { #expect(scanned == value["labels"], "\(text)") }
                for message in Self.messages { _ = MesosSchema.check(value, as: message) }
                _ = MesosSchema.checkArray(value, of: "mesos.Resource")
                // What parses must survive a round trip through the writer.
                #expect(try JSONValue(parsing: value.jsonText) == value)
            } catch {
                rejected += 1
                #expect(!error.reason.isEmpty && error.offset >= 0 && error.offset <= input.count)
            }
        }
        #expect(parsed > 0 && rejected > 0)
    }

    @Test func pathologicalOutputsAreBounded() {
        let cases: [String] = [
            String(repeating: "[", count: 100_000),
            String(repeating: "{\"a\":", count: 50_000),
            "\"" + String(repeating: "\\u0041", count: 100_000) + "\"",
            "[" + Array(repeating: "1", count: 200_000).joined(separator: ",") + "]",
        ]
        for text in cases {
            let start = ContinuousClock.now
            _ = try? JSONValue(parsing: text)
            #expect(ContinuousClock.now - start < .seconds(5))
        }
    }

    @Test func moduleParametersNeverCrash() {
        var rng = SplitMix64(seed: 11)
        let keys = ParameterReader.knownKeys + ["", "module_name", "debug", "x", "isolator_", "_command", "hook_slave"]
        let values = ["", "0", "-1", "1e400", "nan", "30", "0.001", "true", "TRUE", "ignore", "fail", "/", "/bin/sh",
                      "relative", "/nonexistent", String(repeating: "9", count: 400), "\u{0}", "é", " 5 "]
        var loaded = 0
        var refused = 0
        for _ in 0..<Self.iterations {
            var parameters: [(key: String, value: String)] = []
            for _ in 0..<(rng.next() % 8) {
                var key = keys[Int(rng.next() % UInt64(keys.count))]
                if rng.next() % 5 == 0, !key.isEmpty {
                    var bytes = Array(key.utf8)
                    bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next() % 128)
                    key = String(decoding: bytes, as: UTF8.self)
                }
                parameters.append((key, values[Int(rng.next() % UInt64(values.count))]))
            }
            let kind: ModuleKind = rng.next() % 2 == 0 ? .hook : .isolator
            do {
                let configuration = try ModuleConfiguration(kind: kind, parameters: parameters)
                loaded += 1
                #expect(!configuration.moduleName.isEmpty)
                #expect(configuration.commands.values.allSatisfy { $0.timeout > 0 && $0.timeout.isFinite })
            } catch {
                refused += 1
                #expect(!error.issues.isEmpty)
                #expect(error.issues.allSatisfy { !$0.key.isEmpty || $0.message.contains("unknown") })
            }
        }
        #expect(loaded > 0 && refused > 0)
    }
}
