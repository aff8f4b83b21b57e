import ArgumentParser
import Glibc
import Logging
import MesosCommandModules

struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Drive every configured hook event and whole container lifecycles against a manifest's scripts.",
        discussion: """
            Hooks: every hook event with a sample envelope. Isolators: container A goes through prepare, \
            isolate, watch ticks, usage, update, status and cleanup; container B (nested) is prepared, then the \
            agent "restarts" — a fresh module instance recovers B from the state files — and B is cleaned up. \
            Isolator state lives in a private directory. With no --manifest, the bundled examples are used.
            """)

    @Option(help: "The modules manifest; the bundled examples/modules.json when omitted.")
    var manifest: String?

    @Option(help: "How many watch runs to show.")
    var watchTicks = 3

    @Flag(help: "Print whole envelopes and results, and log as debug=true does.")
    var verbose = false

    func run() async throws {
        let path = try manifest ?? examplesManifest()
        let manifest = try loadManifest(path)
        print("Manifest: \(path)")
        var report = Report(manifestDirectory: manifest.directory, verbose: verbose)
        let scratch = try ScratchDirectory("mesos-command-modules-simulate")
        defer { scratch.remove() }

        for entry in manifest.commandModules {
            var configuration: ModuleConfiguration
            do {
                configuration = try manifest.configuration(of: entry)
            } catch {
                print("\n\(entry.name): cannot load\n\(error)")
                report.failures += 1
                continue
            }
            configuration.debug = configuration.debug || verbose
            let logger = makeLogger(configuration.moduleName, verbose: verbose, quiet: !verbose)
            if entry.kind == .hook {
                print("\nHook module '\(configuration.moduleName)' (\(entry.name))")
                let hook = try HookModule(configuration: configuration, logger: logger)
                for event in Event.allCases where event.kind == .hook {
                    let envelope = SampleEnvelopes.envelope(for: event)
                    let skipped = hook.decision(for: event, envelope: envelope).flatMap { $0.matched ? nil : $0.reason }
                    await report.step(event, configuration, envelope, skipped: { skipped }) {
                        try await hook.run(event, envelope: $0)
                    }
                }
                report.metrics(hook.metrics, breakers: hook.breaker)
            } else {
                configuration.stateDirectory = scratch.path + "/state"
                print("\nIsolator module '\(configuration.moduleName)' (\(entry.name)), state in \(configuration.stateDirectory)")
                try await simulateIsolator(configuration, logger: logger, scratch: scratch, report: &report)
            }
        }
        print("\n\(report.steps) steps, \(report.failures) failed")
        if report.failures > 0 { throw ExitCode(1) }
    }

    func simulateIsolator(_ configuration: ModuleConfiguration, logger: Logger, scratch: ScratchDirectory,
                          report: inout Report) async throws {
        let limitDirectory = scratch.path + "/limits"
        mkdir(limitDirectory, 0o700)
        setenv("MCM_EXAMPLE_LIMIT_DIR", limitDirectory, 1)

        var isolator = try IsolatorModule(configuration: configuration, logger: logger)
        let a = SampleEnvelopes.containerID
        let b = #"{"value":"check-1","parent":{"value":"9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e"}}"#

        print("  Container A: \(ContainerIDText(a))")
        let idA = ContainerID(path: [ContainerIDText(a)])
        for event in [Event.prepare, .isolate] {
            await report.step(event, configuration, SampleEnvelopes.envelope(for: event, containerID: a),
                              skipped: { isolator.skipReason(event, containerID: idA) }) {
                try await isolator.run(event, envelope: $0)
            }
        }
        for tick in 1...max(1, watchTicks) {
            if tick == max(1, watchTicks) {
                // The example watch.sh limits a container once this file exists.
                fclose(fopen(limitDirectory + "/" + ContainerIDText(a), "w"))
            }
            await report.step(.watch, configuration, SampleEnvelopes.envelope(for: .watch, containerID: a),
                              label: "isolator_watch #\(tick)", emptyMeaning: "no limitation, keep polling",
                              skipped: { isolator.skipReason(.watch, containerID: idA) }) {
                try await isolator.run(.watch, envelope: $0)
            }
        }
        for event in [Event.usage, .usage, .update, .status, .cleanup] {
            let reason = isolator.skipReason(event, containerID: idA)  // before cleanup forgets the container
            await report.step(event, configuration, SampleEnvelopes.envelope(for: event, containerID: a),
                              skipped: { reason }) {
                try await isolator.run(event, envelope: $0)
            }
        }

        print("  Container B (nested): \(ContainerIDText(b))")
        let idB = ContainerID(path: ["9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e", "check-1"])
        await report.step(.prepare, configuration, SampleEnvelopes.envelope(for: .prepare, containerID: b),
                          skipped: { isolator.skipReason(.prepare, containerID: idB) }) {
            try await isolator.run(.prepare, envelope: $0)
        }
        let files = (try? directoryEntries(isolator.stateDirectory)) ?? []
        print("    state files before the restart: \(files.joined(separator: ", "))")
        report.metrics(isolator.metrics, breakers: isolator.breaker)

        print("  Agent restart: a new module instance recovers from \(isolator.stateDirectory)")
        isolator = try IsolatorModule(configuration: configuration, logger: logger)
        var recover = SampleEnvelopes.envelope(for: .recover, containerID: b)
        recover.set("states", json: #"[{"container_id":\#(b),"pid":4343,"directory":"/var/lib/mesos/slaves/S0/frameworks/F0/executors/check/runs/check-1"}]"#)
        // The agent calls recover whether or not it has a command: the state files are read either way.
        await report.step(.recover, configuration, recover, withoutCommand: "no command; the state files were read") {
            try await isolator.run(.recover, envelope: $0)
        }
        report.check(isolator.containerConfig(idB) != nil, "container B restored after the restart")
        for event in [Event.usage, .cleanup] {
            let reason = isolator.skipReason(event, containerID: idB)  // before cleanup forgets the container
            await report.step(event, configuration, SampleEnvelopes.envelope(for: event, containerID: b),
                              skipped: { reason }) {
                try await isolator.run(event, envelope: $0)
            }
        }
        let left = (try? directoryEntries(isolator.stateDirectory)) ?? []
        report.check(left.isEmpty, "no state file left after cleanup", otherwise: left.joined(separator: ", "))
        report.metrics(isolator.metrics, breakers: isolator.breaker)
    }
}

func ContainerIDText(_ json: String) -> String {
    ((try? JSONValue(parsing: json)).flatMap(ContainerID.init)).map(\.description) ?? json
}

func directoryEntries(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}

/// The simulation's output: one line per step with its command, duration and result.
struct Report {
    let manifestDirectory: String
    let verbose: Bool
    var steps = 0
    var failures = 0

    func display(_ path: String) -> String {
        path.hasPrefix(manifestDirectory + "/") ? String(path.dropFirst(manifestDirectory.count + 1)) : path
    }

    /// One event: ✓ and its outcome, ✗ and its error, or - when skipped by its rule or not configured. An event
    /// the module handles without a command (`withoutCommand`: what it does then, e.g. recover) still runs.
    mutating func step(_ event: Event, _ configuration: ModuleConfiguration, _ envelope: Envelope, label: String? = nil,
                       emptyMeaning: String? = nil, skipped: () -> String? = { nil }, withoutCommand: String? = nil,
                       _ body: (Envelope) async throws -> String?) async {
        steps += 1
        let name = label ?? event.key
        guard let command = configuration.command(for: event) else {
            guard let withoutCommand else { return print("    -  \(name): not configured") }
            do {
                _ = try await body(envelope)
                print("    -  \(name): \(withoutCommand)")
            } catch {
                failures += 1
                print("    ✗  \(name)  → error: \(error)")
            }
            return
        }
        let start = ContinuousClock.now
        let outcome: String
        do {
            let result = try await body(envelope)
            if let reason = skipped() {
                print("    -  \(name): skipped, no process started: \(event.key)_when \(reason)")
                return
            }
            if let result {
                outcome = verbose ? "\n" + ((try? JSONValue(parsing: result).prettyText) ?? result) : truncate(result)
            } else {
                outcome = emptyMeaning ?? (event.output == .none ? "done" : "no change")
            }
            print("    ✓  \(name)  \(formatMilliseconds(ContinuousClock.now - start))  → \(outcome)")
        } catch {
            failures += 1
            print("    ✗  \(name)  \(formatMilliseconds(ContinuousClock.now - start))  → error: \(error)")
        }
        let keys = envelope.members.map(\.key).joined(separator: ", ")
        let breaker = command.breaker.map { " (\($0.summary))" } ?? ""
        print("         \(display(command.path))\(command.mode == .worker ? " (worker)" : "")\(breaker) ← {\(keys)}")
        if verbose { print((try? JSONValue(parsing: envelope.jsonText).prettyText) ?? envelope.jsonText) }
    }

    /// A check of the simulation's own (state after a restart, after cleanup): ✓, or ✗ and a failure, on the
    /// line that says what was checked.
    mutating func check(_ holds: Bool, _ what: String, otherwise detail: String = "") {
        steps += 1
        if holds { return print("    ✓  \(what)") }
        failures += 1
        print("    ✗  \(what): NO\(detail.isEmpty ? "" : " (\(detail))")")
    }

    func truncate(_ text: String) -> String {
        text.count <= 100 ? text : String(text.prefix(97)) + "..."
    }

    /// The metrics of each event that ran, and its circuit breaker's state when it has one (`breakers`).
    func metrics(_ metrics: ModuleMetrics, breakers: (Event) -> BreakerState? = { _ in nil }) {
        let snapshot = metrics.snapshot().sorted { $0.key.key < $1.key.key }
        guard !snapshot.isEmpty else { return }
        print("    metrics (calls/failures/timeouts/skipped, mean latency):")
        for (event, value) in snapshot {
            let breaker = breakers(event).map { state in
                "  breaker \(state.isOpen ? "OPEN" : "closed"), \(state.shortCircuited) answered at once"
            } ?? ""
            print("      \(event.key.padding(52)) \(value.calls)/\(value.failures)/\(value.timeouts)/\(value.skipped)  \(formatMilliseconds(.milliseconds(Int64(value.meanSeconds * 1_000_000)) / 1000))\(breaker)")
        }
    }
}

extension String {
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
