import Glibc
import Testing

@testable import MesosCommandModules

/// A user of this host with supplementary groups besides its primary one, if there is one.
let userWithSupplementaryGroups: CommandUser? = {
    setpwent()
    defer { endpwent() }
    while let entry = getpwent() {
        let name = String(cString: entry.pointee.pw_name)
        if case .success(let user) = CommandUser.resolve(name), user.uid != 0, user.groups.count > 1 { return user }
    }
    return nil
}()

/// SPEC §3 "Least privilege, opt-in": `<event>_user` runs a command, or a worker, as that user with its groups
/// and no_new_privs; it reaches its own input, output and error files and nothing else of the module's.
@Suite(.enabled(if: geteuid() == 0, "changing users needs root, as an agent runs"))
struct LeastPrivilegeTests {
    let sandbox = Sandbox()
    /// Where the test's commands, whatever their user, write what they found.
    let reports: String
    let nobody = try! CommandUser.resolve("nobody").get()
    let daemon = try! CommandUser.resolve("daemon").get()

    init() {
        // Scripts in the sandbox must be reachable by the users they run as; the module's own directories are
        // made private below it.
        chmod(sandbox.path, 0o755)
        reports = sandbox.mkdir("reports")
        chmod(reports, 0o777)
    }

    func report(_ name: String) -> String { sandbox.read(reports + "/" + name) ?? "" }

    /// What `id -G` prints for `user` (the user database's view, computed apart from the module).
    func groupsOf(_ name: String) -> String {
        let file = sandbox.path + "/groups-" + name
        shell("id -G \(name) > \(file)")
        return (sandbox.read(file) ?? "").trimmingWhitespace.description
    }

    /// A script that reports, as JSON of environment variables, who runs it.
    func whoAmI(_ name: String) -> String {
        sandbox.script(name, """
            #!/bin/sh
            grep -q executor_info "$1" && grep -q executor_info || exit 3
            printf '{"variables":[{"name":"UID","value":"%s"},{"name":"GID","value":"%s"},{"name":"GROUPS","value":"%s"},' \
              "$(id -u)" "$(id -g)" "$(id -G)" > "$2"
            printf '{"name":"NNP","value":"%s"},{"name":"HOME","value":"%s"},{"name":"USER","value":"%s"}]}' \
              "$(awk '/^NoNewPrivs/ {print $2}' /proc/self/status)" "$HOME" "$USER" >> "$2"
            """)
    }

    func variables(_ output: String?) throws -> [String: String] {
        let value = try JSONValue(parsing: Array(try #require(output).utf8))
        var variables: [String: String] = [:]
        for variable in value["variables"]?.arrayValue ?? [] {
            if let name = variable["name"]?.stringValue, let text = variable["value"]?.stringValue { variables[name] = text }
        }
        return variables
    }

    @Test func aCommandRunsAsTheUserWithItsGroupsAndNoNewPrivilegesAndItsAnswerComesBack() async throws {
        let event = Event.slaveExecutorEnvironmentDecorator
        let module = try hook(sandbox, [(event.key + "_command", whoAmI("who.sh")), (event.key + "_user", "nobody")])
        let seen = try variables(try await module.run(event, envelope: SampleEnvelopes.envelope(for: event)))
        #expect(seen["UID"] == "65534")
        #expect(seen["GID"] == String(nobody.gid))
        #expect(seen["GROUPS"] == groupsOf("nobody"))
        #expect(seen["NNP"] == "1")
        #expect(seen["HOME"] == nobody.home && seen["USER"] == "nobody")
        // A uid names the same user.
        let byUID = try hook(sandbox, [(event.key + "_command", whoAmI("who2.sh")), (event.key + "_user", "65534")])
        #expect(try variables(try await byUID.run(event, envelope: SampleEnvelopes.envelope(for: event)))["UID"] == "65534")
    }

    @Test(.enabled(if: userWithSupplementaryGroups != nil, "no user with supplementary groups on this host"))
    func itGetsTheSupplementaryGroupsOfTheUserDatabase() async throws {
        let user = try #require(userWithSupplementaryGroups)
        let event = Event.slaveExecutorEnvironmentDecorator
        let module = try hook(sandbox, [(event.key + "_command", whoAmI("who.sh")), (event.key + "_user", user.name)])
        let seen = try variables(try await module.run(event, envelope: SampleEnvelopes.envelope(for: event)))
        #expect(seen["UID"] == String(user.uid))
        #expect(seen["GROUPS"] == groupsOf(user.name))
        #expect(seen["GROUPS"]?.split(separator: " ").count == user.groups.count)
    }

    @Test func itWritesItsErrorFileAndTheCauseComesBack() async throws {
        let event = Event.slaveExecutorEnvironmentDecorator
        let script = sandbox.script("fails.sh", "#!/bin/sh\necho \"no luck for $(id -un)\" > \"$3\"\nexit 4\n")
        let module = try hook(sandbox, [(event.key + "_command", script), (event.key + "_user", "nobody")])
        let error = await thrownError { try await module.run(event, envelope: SampleEnvelopes.envelope(for: event)) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("exited with return code 4. Cause: no luck for nobody"))
    }

    @Test func itCannotReadTheStateDirectoryNorListTheModulesDirectory() async throws {
        let probe = sandbox.script("usage.sh", """
            #!/bin/sh
            state=$(cat \(reports)/state-file)
            { cat "$state" > /dev/null 2>&1 && echo "state file: READ" || echo "state file: denied"
              ls "$(dirname "$state")" > /dev/null 2>&1 && echo "state dir: LISTED" || echo "state dir: denied"
              ls "$(dirname "$(dirname "$1")")" > /dev/null 2>&1 && echo "module dir: LISTED" || echo "module dir: denied"
              ls "$(dirname "$1")" > /dev/null 2>&1 && echo "own dir: listed" || echo "own dir: DENIED"
            } > \(reports)/usage
            echo '{}' > "$2"
            """)
        let module = try isolator(sandbox, [
            ("isolator_prepare_command", "/bin/true"), ("isolator_usage_command", probe), ("isolator_usage_user", "nobody"),
        ])
        _ = try await module.prepare(containerID: cid("c1"), containerConfig: #"{"directory":"/sandbox"}"#)
        let stateDir = sandbox.path + "/state/test_module"
        let stateFile = stateDir + "/" + (try #require(Sandbox.entries(stateDir).first))
        #expect(sandbox.read(stateFile)?.contains("/sandbox") == true)  // root reads it
        sandbox.write(reports + "/state-file", stateFile)
        _ = try await module.usage(containerID: cid("c1"))
        #expect(report("usage") == "state file: denied\nstate dir: denied\nmodule dir: denied\nown dir: listed\n")
    }

    @Test func itCannotReadTheInputOfAnotherEventOfRootOrOfAnotherUser() async throws {
        let runner = try CommandRunner(
            temporaryDirectory: sandbox.path, moduleName: "test", gracePeriod: 1, outputMaxBytes: 1 << 20,
            users: [nobody, daemon])
        // Root's and daemon's events hold their input until nobody's has tried to read it.
        let holder = sandbox.script("hold.sh", """
            #!/bin/sh
            echo "$1" > \(reports)/input-$(id -un)
            i=0; while [ ! -e \(reports)/release ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
            cat "$1" > "$2"
            """)
        let prober = sandbox.script("probe.sh", """
            #!/bin/sh
            i=0; while { [ ! -e \(reports)/input-root ] || [ ! -e \(reports)/input-daemon ]; } && [ $i -lt 400 ]; do
              sleep 0.05; i=$((i + 1))
            done
            for owner in root daemon; do
              input=$(cat \(reports)/input-$owner)
              cat "$input" > /dev/null 2>&1 && echo "$owner's input: READ" || echo "$owner's input: denied"
              ls "$(dirname "$input")" > /dev/null 2>&1 && echo "$owner's dir: LISTED" || echo "$owner's dir: denied"
            done > \(reports)/probe
            cat "$1" > "$2"
            touch \(reports)/release
            """)
        let deadline = Deadline(seconds: 30)
        func run(_ script: String, _ input: String, as user: CommandUser?) async throws -> String {
            let run = try await runner.run(script, input: Array(input.utf8), deadline: deadline, readsOutput: true,
                                           environment: [], user: user)
            return String(decoding: run.output, as: UTF8.self)
        }
        async let root = run(holder, "root's secret", as: nil)
        async let other = run(holder, "daemon's secret", as: daemon)
        async let probe = run(prober, "nobody's own", as: nobody)
        #expect(try await probe == "nobody's own")
        #expect(try await root == "root's secret")
        #expect(try await other == "daemon's secret")
        #expect(report("probe") == "root's input: denied\nroot's dir: denied\ndaemon's input: denied\ndaemon's dir: denied\n")
        // Each user's files are in a directory of its own, all gone once the events ended.
        for directory in Sandbox.entries(runner.temporaryDirectory) {
            #expect(Sandbox.entries(runner.temporaryDirectory + "/" + directory).isEmpty)
        }
    }

    @Test func itHasNoFileDescriptorOfTheAgent() async throws {
        let marker = sandbox.path + "/agent-secret"
        sandbox.write(marker, "x")
        let leaked = open(marker, O_RDONLY)
        defer { close(leaked) }
        let runner = try CommandRunner(
            temporaryDirectory: sandbox.path, moduleName: "test", gracePeriod: 1, outputMaxBytes: 1 << 20, users: [nobody])
        let script = sandbox.script("fds.sh", "#!/bin/sh\nexec find /proc/self/fd -mindepth 1 -maxdepth 1 -printf '%f %l\\n' > \"$2\"\n")
        let run = try await runner.run(script, input: [], deadline: Deadline(seconds: 10), readsOutput: true,
                                       environment: [], user: nobody)
        let lines = String(decoding: run.output, as: UTF8.self).split(separator: "\n")
        #expect(lines.contains { $0.hasPrefix("0 ") } && lines.contains { $0.hasPrefix("2 pipe:") })
        // Above 2, only what find itself opened (its working directory, /proc): no file, pipe, socket, epoll or
        // pidfd of the agent.
        let above2 = lines.filter { Int($0.prefix { $0 != " " }) ?? 0 > 2 }
        #expect(above2.allSatisfy { !$0.contains("agent-secret") && $0.split(separator: " ").last?.hasPrefix("/") == true },
                "\(above2)")
    }

    @Test func itCannotMakeTheModuleReadAFileOfRootsAsItsOutput() async throws {
        let secret = sandbox.path + "/root-only"
        sandbox.write(secret, #"{"variables":[{"name":"SECRET","value":"root's"}]}"#)
        chmod(secret, 0o600)
        // A file of root's that others may write (so that the kernel lets them link it, fs.protected_hardlinks).
        let shared = sandbox.path + "/root-shared"
        sandbox.write(shared, #"{"variables":[{"name":"SHARED","value":"root's"}]}"#)
        chmod(shared, 0o666)
        let event = Event.slaveExecutorEnvironmentDecorator
        func output(replacingItWith command: String) async throws -> String {
            let script = sandbox.script("attack.sh", "#!/bin/sh\n\(command) 2>/dev/null; exit 0\n")
            let module = try hook(sandbox, [(event.key + "_command", script), (event.key + "_user", "nobody")])
            do {
                return try await module.run(event, envelope: SampleEnvelopes.envelope(for: event)) ?? "no output"
            } catch {
                return "\(error)"
            }
        }
        for attack in ["ln -sf \(secret) \"$2\"", "ln -f \(secret) \"$2\"", "ln -sf \(shared) \"$2\""] {
            let seen = try await output(replacingItWith: attack)
            #expect(!seen.contains("root's"), "\(attack): \(seen)")
        }
        #expect(try await output(replacingItWith: "ln -f \(shared) \"$2\"").contains(
            "left no readable output file: Operation not permitted"))
    }

    @Test func aWorkerRunsAsTheUserAndServesEvents() async throws {
        let worker = sandbox.script("worker.sh", """
            #!/bin/bash
            { id -u; id -G; awk '/^NoNewPrivs/ {print $2}' /proc/self/status; } > \(reports)/worker
            while IFS= read -r request; do
              id=${request#*\\"id\\":}; id=${id%%,*}
              printf '{"id":%s,"output":{"processes":%s}}\\n' "$id" "$(id -u)"
            done
            """)
        let module = try isolator(sandbox, [
            ("isolator_usage_command", worker), ("isolator_usage_mode", "worker"), ("isolator_usage_user", "nobody"),
            ("isolator_usage_failure_policy", "fail"), ("grace_period", "0.3"),
        ])
        defer { module.stopWorkers() }
        try module.adopt(containerID: cid("c1"), containerConfig: #"{"directory":"/sandbox"}"#)
        for _ in 0..<3 {
            let statistics = try JSONValue(parsing: Array(try await module.usage(containerID: cid("c1")).utf8))
            #expect(statistics["processes"]?.doubleValue == 65534)
        }
        #expect(report("worker") == "65534\n\(groupsOf("nobody"))\n1\n")
    }

    func loadError(_ parameters: [(String, String)], kind: ModuleKind = .hook) -> String {
        do {
            _ = try configuration(kind, sandbox, parameters)
            return "loaded"
        } catch {
            return "\(error)"
        }
    }

    @Test func anUnknownUserOrAUIDWithoutAnEntryIsALoadTimeErrorNamingTheKey() throws {
        let key = Event.slaveExecutorEnvironmentDecorator.key
        let script = whoAmI("who.sh")
        #expect(loadError([(key + "_command", script), (key + "_user", "no-such-user")]) == "module 'test_module': "
            + "parameter '\(key)_user': 'no-such-user' is not a user of this host (no such name in the user database)")
        #expect(loadError([(key + "_command", script), (key + "_user", "3999999")]) == "module 'test_module': "
            + "parameter '\(key)_user': uid 3999999 has no entry in the user database: its groups cannot be known; "
            + "add the user (useradd), or give the name of one")
        #expect(loadError([("isolator_usage_command", script), ("isolator_usage_user", "no-such-user")], kind: .isolator)
            .contains("parameter 'isolator_usage_user': 'no-such-user' is not a user of this host"))
        // Empty: the agent's user, as when unset.
        #expect(loadError([(key + "_command", script), (key + "_user", "")]) == "loaded")
    }

    @Test func aUserWhoCannotRunTheCommandOrReachTempDirIsALoadTimeError() throws {
        let key = Event.slaveExecutorEnvironmentDecorator.key
        let hidden = sandbox.mkdir("hidden")
        chmod(hidden, 0o700)
        let script = sandbox.script("hidden/who.sh", "#!/bin/sh\n")
        #expect(loadError([(key + "_command", script), (key + "_user", "nobody")])
            .contains("parameter '\(key)_user': nobody cannot run '\(script)': Permission denied"))
        let closed = sandbox.mkdir("closed")
        chmod(closed, 0o700)
        let message = loadError([("temp_dir", closed), (key + "_command", whoAmI("who.sh")), (key + "_user", "nobody")])
        #expect(message.contains("parameter '\(key)_user': nobody cannot reach temp_dir '\(closed)', where the input, "
            + "output and error files of their commands are made: '\(closed)': Permission denied"), "\(message)")
    }

    @Test func eventsSharingAWorkerAgreeOnItsUser() throws {
        let worker = sandbox.script("worker.sh", "#!/bin/sh\ncat > /dev/null\n")
        let message = loadError([
            ("isolator_usage_command", worker), ("isolator_usage_mode", "worker"), ("isolator_usage_user", "nobody"),
            ("isolator_status_command", worker), ("isolator_status_mode", "worker"),
        ], kind: .isolator)
        #expect(message.contains("parameter 'isolator_usage_user': nobody differs from isolator_status_user "
            + "(the agent's user), and both events share the worker '\(worker)'"), "\(message)")
    }

    @Test func validateSaysItAndRunHonoursIt() throws {
        let script = whoAmI("who.sh")
        let key = Event.slaveExecutorEnvironmentDecorator.key
        func manifest(user: String) -> String {
            let path = sandbox.path + "/modules-\(user).json"
            sandbox.write(path, """
                {"libraries":[{"file":"/x.so","modules":[{"name":"com_criteo_mesos_CommandHook","parameters":[
                {"key":"module_name","value":"m"},{"key":"temp_dir","value":"\(sandbox.path)"},
                {"key":"\(key)_command","value":"\(script)"},{"key":"\(key)_user","value":"\(user)"}]}]}]}
                """)
            return path
        }
        let refused = runCLI(["validate", "--skip-library", manifest(user: "no-such-user")])
        #expect(refused.status == 1)
        #expect(refused.stdout.contains("error: parameter '\(key)_user': 'no-such-user' is not a user of this host"),
                "\(refused.stdout)")
        let accepted = runCLI(["validate", "--skip-library", manifest(user: "nobody")])
        #expect(accepted.status == 0, "\(accepted.stdout)")
        #expect(accepted.stdout.contains("as nobody (uid 65534"), "\(accepted.stdout)")
        let ran = runCLI(["run", key, "--manifest", manifest(user: "nobody"), "--module", "m"])
        #expect(ran.status == 0, "\(ran.stderr)")
        #expect(ran.stdout.contains("\"name\": \"UID\",\n      \"value\": \"65534\""), "\(ran.stdout)")
    }
}
