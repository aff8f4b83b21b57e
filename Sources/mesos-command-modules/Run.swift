import ArgumentParser
import Glibc
import MesosCommandModules

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one event's command exactly as the agent would, and check its output.",
        discussion: """
            Prints the result JSON on stdout (nothing for "no change"), the timing on stderr, and exits 1 with \
            the error on stderr when the event fails — including output the agent would reject, with the field \
            at fault. Isolator state lives in a private directory unless --state-dir is given; an isolator \
            event other than prepare uses the container's state file there if any, else the input's \
            container_config. isolator_recover and isolator_cleanup need --input (a real envelope) or --force: \
            on a sample envelope they would run the module's real recover or cleanup command with containers \
            that do not exist.
            """)

    @Argument(help: "The event key, e.g. isolator_prepare or hook_slave_run_task_label_decorator.")
    var event: Event

    @Option(help: "The modules manifest.")
    var manifest: String

    @Option(help: "The module's module_name (or its Mesos name, e.g. com_criteo_mesos_CommandIsolator2).")
    var module: String

    @Option(help: "A whole input envelope (JSON object); a realistic sample when omitted (see `events`).")
    var input: String?

    @Option(help: "The container id (nested: parent.child) for isolator events.")
    var containerID: String?

    @Option(help: "The isolator's state directory (state_dir); a private one, removed afterwards, when omitted.")
    var stateDir: String?

    @Flag(help: "Also fail on output fields the agent would silently ignore (unknown fields, unknown enum names).")
    var strict = false

    @Flag(help: "Log every input and output, as debug=true does.")
    var verbose = false

    @Flag(help: ArgumentHelp(
        "Run isolator_recover or isolator_cleanup on a sample envelope; with --state-dir, really change the state there.",
        discussion: "Without --input, isolator_recover and isolator_cleanup run only with --force. With --state-dir, "
            + "isolator_recover removes the files of containers the input does not list, isolator_cleanup the "
            + "container's file, isolator_prepare replaces it only with --force (without it, nothing there is removed "
            + "or replaced; what would be is listed)."))
    var force = false

    func run() async throws {
        let manifest = try loadManifest(manifest)
        guard let entry = manifest.module(named: module) else {
            let names = manifest.commandModules.map { $0.moduleName ?? $0.name }.joined(separator: ", ")
            throw ValidationError("no module '\(module)' in the manifest (it has: \(names))")
        }
        guard entry.kind == event.kind else {
            let article: (ModuleKind) -> String = { $0 == .hook ? "a hook" : "an isolator" }
            throw ValidationError("'\(module)' is \(article(entry.kind!)) module; \(event.key) is \(article(event.kind)) event")
        }
        var configuration: ModuleConfiguration
        do {
            configuration = try manifest.configuration(of: entry)
        } catch {
            printError(error.description)
            throw ExitCode(1)
        }
        if verbose { configuration.debug = true }
        guard configuration.command(for: event) != nil else {
            printError("module '\(configuration.moduleName)' has no \(event.key)_command: the agent would not run anything for this event")
            throw ExitCode(1)
        }
        try refuseASampleForRecoverOrCleanup(configuration)

        var envelope = try readEnvelope()
        let logger = makeLogger(configuration.moduleName, verbose: verbose)
        let scratch = stateDir == nil ? try ScratchDirectory("mesos-command-modules-run") : nil
        defer { scratch?.remove() }
        configuration.stateDirectory = stateDir ?? scratch!.path

        let start = ContinuousClock.now
        let result: String?
        do {
            if event.kind == .hook {
                let hook = try HookModule(configuration: configuration, logger: logger)
                if let decision = hook.decision(for: event, envelope: envelope), !decision.matched {
                    printError("skipped: \(event.key)_when \(decision.reason): the agent would not run the command (no change)")
                }
                result = try await hook.run(event, envelope: envelope)
            } else {
                let isolator = try IsolatorModule(configuration: configuration, logger: logger)
                if event.isPerContainer && event != .prepare {
                    try adoptContainer(isolator, &envelope)
                }
                if event == .recover {
                    result = nil
                    try await recover(isolator, envelope)
                } else if event == .cleanup {
                    result = nil
                    try await cleanup(isolator, envelope)
                } else {
                    if event == .prepare { try refuseToReplaceState(isolator, envelope) }
                    result = try await isolator.run(event, envelope: envelope)
                }
                let id = envelope.value("container_id").flatMap(ContainerID.init)
                if event.isPerContainer, let id, let reason = isolator.skipReason(event, containerID: id) {
                    printError("skipped: \(event.key)_when \(reason): the agent would not run the command for this container")
                }
            }
        } catch let error as EventError {
            printError("error: \(error)")
            printError("\(event.key) failed after \(formatMilliseconds(ContinuousClock.now - start))")
            throw ExitCode(1)
        }
        let elapsed = ContinuousClock.now - start
        if let result {
            print((try? JSONValue(parsing: result).prettyText) ?? result)
        } else if event == .watch {
            printError("empty output: no limitation; the agent would run the command again in \(configuration.watchFrequency)s")
        }
        printError("\(event.key) took \(formatMilliseconds(elapsed))")
        if strict && CLILogHandler.warnings.withLock({ $0 }) > 0 {
            printError("error: --strict: the output has fields the agent would ignore (see the warnings above)")
            throw ExitCode(1)
        }
    }

    /// `recover` and `cleanup` commands act on the host's containers (a recover command may clean up what it is not
    /// told about, a cleanup command tears down what it finds for a container id): run on a sample envelope, the
    /// operator's real command would act on containers that do not exist — or, told of none, on every live one.
    func refuseASampleForRecoverOrCleanup(_ configuration: ModuleConfiguration) throws {
        guard event == .recover || event == .cleanup, input == nil, !force,
              let command = configuration.command(for: event) else { return }
        let what = event == .recover
            ? "with a sample envelope that lists none of this host's containers: a recover command that cleans up "
                + "the containers it is not given would act on every live one"
            : "on a sample container\(containerID.map { " with the id '\($0)'" } ?? ""): a cleanup command tears "
                + "down what it finds for that container id, maybe a live container's"
        printError("error: \(event.key) would run the module's real command (\(command.path)) \(what); nothing was "
            + "run. Give --input with a real envelope (`mesos-command-modules events \(event.key)` prints the "
            + "format), or --force to run it on the sample anyway")
        throw ExitCode(1)
    }

    /// `recover` removes the state files of containers Mesos no longer knows. In a directory the operator named
    /// (maybe the agent's own), the CLI removes nothing without --force: a sample envelope knows none of the live
    /// containers.
    func recover(_ isolator: IsolatorModule, _ envelope: Envelope) async throws(EventError) {
        let removing = stateDir == nil || force
        let unknown = try await isolator.recover(
            states: envelope.json("states") ?? "[]", orphans: envelope.json("orphans") ?? "[]",
            removeUnknownStateFiles: removing)
        guard !unknown.isEmpty, !removing else { return }
        printError("note: without --force, nothing was removed from \(isolator.stateDirectory); recover would remove "
            + "the state of \(unknown.count) container(s) the input does not list: \(unknown.joined(separator: ", "))")
    }

    /// `cleanup` removes the container's state file once its command succeeded. In a directory the operator
    /// named, the CLI leaves it without --force: it may be a live container's.
    func cleanup(_ isolator: IsolatorModule, _ envelope: Envelope) async throws(EventError) {
        let removing = stateDir == nil || force
        let file = try await isolator.cleanup(
            containerID: envelope.json("container_id") ?? "null", removeStateFile: removing)
        guard let file, !removing else { return }
        printError("note: without --force, \(file) was left in place; cleanup would remove it")
    }

    /// `prepare` replaces the container's state file. In a directory the operator named, the CLI does not
    /// without --force: it may be a live container's.
    func refuseToReplaceState(_ isolator: IsolatorModule, _ envelope: Envelope) throws {
        guard stateDir != nil, !force, let id = envelope.json("container_id"),
              let file = try isolator.stateFile(containerID: id) else { return }
        printError("error: \(file) exists: prepare would replace that container's state; nothing was run "
            + "(--force to replace it)")
        throw ExitCode(1)
    }

    func readEnvelope() throws -> Envelope {
        var envelope: Envelope
        if let input {
            guard let text = String(contentsOfFile: input) else { throw ValidationError("cannot read --input '\(input)'") }
            do {
                envelope = try Envelope(parsing: text)
            } catch {
                throw ValidationError("--input '\(input)' is not a JSON object: \(error)")
            }
        } else {
            envelope = SampleEnvelopes.envelope(for: event)
        }
        if let containerID {
            let id = ContainerID(path: containerID.split(separator: ".").map(String.init))
            envelope.set("container_id", value: id.json)
            if envelope.json("container_config") != nil || event == .prepare {
                envelope.set("container_config", json: envelope.json("container_config") ?? SampleEnvelopes.containerConfig(for: id.json.jsonText))
            }
        }
        return envelope
    }

    /// An event after prepare needs the container's state: from its state file, else from the input.
    func adoptContainer(_ isolator: IsolatorModule, _ envelope: inout Envelope) throws {
        let id = envelope.json("container_id") ?? SampleEnvelopes.containerID
        if try isolator.restoreFromStateFile(containerID: id) {
            printError("note: using the container's state from \(isolator.stateDirectory)")
            return
        }
        let config = envelope.json("container_config") ?? SampleEnvelopes.containerConfig(for: id)
        try isolator.adopt(containerID: id, containerConfig: config)
        printError("note: the container was not prepared in \(isolator.stateDirectory); using the input's container_config")
    }
}

extension String {
    init?(contentsOfFile path: String) {
        guard let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        self = String(decoding: bytes, as: UTF8.self)
    }
}
