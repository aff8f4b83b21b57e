import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §3: the private temporary directory is trusted only while it is provably the one the module made.
@Suite(.serialized) struct TemporaryDirectoryTests {
    let sandbox = Sandbox()

    /// An isolator whose prepare command writes the directory of its output file into the ContainerLaunchInfo
    /// (as an environment variable), so a test sees where the files were.
    func module(_ log: CapturedLog = CapturedLog()) throws -> IsolatorModule {
        let prepare = sandbox.script("prepare.sh", """
            #!/bin/sh
            dir=$(dirname "$2")
            printf '{"environment":{"variables":[{"name":"DIR","type":"VALUE","value":"%s"},{"name":"MODES","type":"VALUE","value":"%s %s"}]}}' \
              "$dir" "$(stat -c %a "$dir")" "$(stat -c %a "$1")" > "$2"
            """)
        return try isolator(sandbox, [("isolator_prepare_command", prepare)], log: log)
    }

    func directoryUsed(_ module: IsolatorModule, _ container: String) async throws -> (dir: String, modes: String) {
        let result = try await module.prepare(containerID: cid(container), containerConfig: "{}") ?? ""
        let variables = try JSONValue(parsing: result)["environment"]?["variables"]?.arrayValue ?? []
        return (variables.first?["value"]?.stringValue ?? "", variables.last?["value"]?.stringValue ?? "")
    }

    @Test func theDirectoryIsPrivateWithARandomNameAndItsFilesTooAndItIsRemovedWithTheModule() async throws {
        var module: IsolatorModule? = try module()
        let made = module!.temporaryDirectory
        let (dir, modes) = try await directoryUsed(module!, "c1")
        #expect(dir == made)
        #expect(modes == "700 600")
        let name = made.split(separator: "/").last.map(String.init) ?? ""
        #expect(name.hasPrefix("mesos-command-modules.test_module.\(getpid())."))
        #expect(name.count == "mesos-command-modules.test_module.\(getpid()).".count + 6)
        var info = stat()
        #expect(lstat(made, &info) == 0 && info.st_uid == geteuid())
        module = nil
        #expect(access(made, F_OK) != 0)
    }

    /// A command that makes its own scratch tree beside its files does not keep the directory from going with
    /// the module; a link in that tree is removed, never followed.
    @Test func whatACommandMadeInTheDirectoryGoesWithIt() async throws {
        let outside = sandbox.path + "/outside"
        #expect(shell("mkdir -p '\(outside)' && echo keep > '\(outside)/file'") == 0)
        let prepare = sandbox.script("scratch.sh", """
            #!/bin/sh
            dir=$(dirname "$2")
            mkdir -p "$dir/scratch/deeper" && echo x > "$dir/scratch/deeper/f" && ln -s '\(outside)' "$dir/scratch/link"
            """)
        var module: IsolatorModule? = try isolator(sandbox, [("isolator_prepare_command", prepare)])
        let made = module!.temporaryDirectory
        _ = try await module!.prepare(containerID: cid("c1"), containerConfig: "{}")
        #expect(Sandbox.runFiles(made) == ["scratch"])
        module = nil
        #expect(access(made, F_OK) != 0, "the directory is gone")
        #expect(sandbox.read(outside + "/file") == "keep\n", "the link was not followed")
    }

    @Test func aDirectoryReCreatedAtTheSamePathByAnotherUserIsNeverUsed() async throws {
        let log = CapturedLog()
        let module = try module(log)
        let original = module.temporaryDirectory
        _ = try await directoryUsed(module, "c1")
        // A tmp cleaner removes it; another local user re-creates the path as their own open directory and
        // plants what the next command would read.
        #expect(shell("rm -rf '\(original)' && mkdir -m 0777 '\(original)' && echo planted > '\(original)/1.in'") == 0)
        if geteuid() == 0 { chown(original, 65534, 65534) }
        let (dir, modes) = try await directoryUsed(module, "c2")
        #expect(dir != original)
        #expect(dir.hasPrefix(sandbox.path + "/mesos-command-modules.test_module.\(getpid())."))
        #expect(modes == "700 600")
        #expect(module.temporaryDirectory == dir)
        // The other user's directory is left as it was: not used, not cleaned.
        #expect(Sandbox.entries(original) == ["1.in"])
        #expect(log.contains("The private temporary directory '\(original)' can no longer be trusted: another directory "
            + "is at its path now (owner uid \(geteuid() == 0 ? 65534 : geteuid()), mode 777). Commands now use a new one, '\(dir)'."))
        _ = shell("rm -rf '\(original)'")
    }

    @Test func aDirectoryWhoseModeWasChangedIsReplaced() async throws {
        let log = CapturedLog()
        let module = try module(log)
        let original = module.temporaryDirectory
        chmod(original, 0o755)
        let (dir, _) = try await directoryUsed(module, "c1")
        #expect(dir != original)
        #expect(log.contains("'\(original)' can no longer be trusted: its mode is now 755"))
        // It was ours: it is removed.
        #expect(access(original, F_OK) != 0)
    }

    @Test func aDirectoryReplacedWhileTheCommandRunsFailsTheEvent() async throws {
        let prepare = sandbox.script("swap.sh", """
            #!/bin/sh
            dir=$(dirname "$2")
            mv "$dir" "$dir.moved" && mkdir -m 0700 "$dir" && echo '{"user":"planted"}' > "$2"
            """)
        let module = try isolator(sandbox, [("isolator_prepare_command", prepare)])
        let original = module.temporaryDirectory
        let error = await thrownError { try await module.prepare(containerID: cid("c1"), containerConfig: "{}") }
        #expect((error as? EventError)?.description == "[TASK=c1, METHOD=prepare] Command \"\(prepare)\" ran, but its private "
            + "temporary directory '\(original)' was replaced meanwhile (another directory is at its path now (owner uid "
            + "\(geteuid()), mode 700)): its output cannot be trusted.")
        _ = shell("rm -rf '\(original)' '\(original).moved'")
    }

    @Test func anOutputFileReplacedByAFIFOOrALinkIsAnErrorNotAHang() async throws {
        let fifo = sandbox.script("fifo.sh", "#!/bin/sh\nrm -f \"$2\" && mkfifo \"$2\"\n")
        let link = sandbox.script("link.sh", "#!/bin/sh\nrm -f \"$2\" && ln -s /etc/hostname \"$2\"\n")
        for script in [fifo, link] {
            let module = try isolator(sandbox, [("isolator_prepare_command", script)])
            let start = ContinuousClock.now
            let error = await thrownError { try await module.prepare(containerID: cid("c1"), containerConfig: "{}") }
            #expect(ContinuousClock.now - start < .seconds(2))
            #expect((error as? EventError)?.message.hasPrefix("Command \"\(script)\" left no readable output file") == true,
                    "\(String(describing: error))")
        }
    }

    static let consequence = "another user could replace the module's private directory and the files commands read and write"

    @Test func aParentWritableByOthersWithoutTheStickyBitIsRefusedAtLoad() throws {
        let open = sandbox.mkdir("open")
        chmod(open, 0o777)
        let error = #expect(throws: ConfigurationError.self) {
            try ModuleConfiguration(kind: .hook, parameters: [("module_name", "m"), ("temp_dir", open)])
        }
        #expect(error?.description == "module 'm': parameter 'temp_dir': '\(open)' cannot be trusted: it is writable by "
            + "other users without the sticky bit (mode 777): \(Self.consequence)")
        // A configuration made in code (the CLI's) is checked when the module starts.
        var configuration = ModuleConfiguration(kind: .hook, moduleName: "m")
        configuration.temporaryDirectory = open
        let moduleError = #expect(throws: ModuleError.self) { try HookModule(configuration: configuration, logger: CapturedLog().logger) }
        #expect(moduleError?.description == "module 'm': temp_dir '\(open)' cannot be trusted: it is writable by other "
            + "users without the sticky bit (mode 777): \(Self.consequence)")
        // Sticky, as /tmp: nobody can rename or remove what is not theirs.
        chmod(open, 0o1777)
        _ = try HookModule(
            configuration: try ModuleConfiguration(kind: .hook, parameters: [("module_name", "m"), ("temp_dir", open)]),
            logger: CapturedLog().logger)
        // A missing temp_dir is made, private.
        let missing = sandbox.path + "/made/here"
        _ = try HookModule(
            configuration: try ModuleConfiguration(kind: .hook, parameters: [("module_name", "m"), ("temp_dir", missing)]),
            logger: CapturedLog().logger)
        var info = stat()
        #expect(stat(missing, &info) == 0 && info.st_mode & 0o777 == 0o700)
    }

    /// SPEC §3: a temp_dir another user owns — even mode 0755 — or one under a directory of theirs, or reached
    /// through a link of theirs: its owner could swap the module's private directory and have root write a
    /// command's output through a link.
    @Test(.enabled(if: geteuid() == 0, "chown needs root"))
    func aTempDirThatAnotherUserOwnsOrIsAboveIsRefusedAtLoad() throws {
        let theirs = sandbox.mkdir("theirs")
        chown(theirs, 65534, 65534)
        let below = sandbox.mkdir("theirs/below")
        let link = sandbox.path + "/link"
        symlink(sandbox.mkdir("ours"), link)
        lchown(link, 65534, 65534)
        let cases = [
            (theirs, "it belongs to uid 65534 (nobody)"), (below, "'\(theirs)' belongs to uid 65534 (nobody)"),
            (link + "/tmp", "'\(link)' is a symbolic link that belongs to uid 65534 (nobody)"),
        ]
        for (dir, fault) in cases {
            let error = #expect(throws: ConfigurationError.self) {
                try ModuleConfiguration(kind: .hook, parameters: [("module_name", "m"), ("temp_dir", dir)])
            }
            #expect(error?.description == "module 'm': parameter 'temp_dir': '\(dir)' cannot be trusted: \(fault), "
                + "not to root or the agent's user (uid 0): \(Self.consequence)")
            var configuration = ModuleConfiguration(kind: .hook, moduleName: "m")
            configuration.temporaryDirectory = dir
            #expect(throws: ModuleError.self) { try HookModule(configuration: configuration, logger: CapturedLog().logger) }
        }
        #expect(Sandbox.entries(theirs) == ["below"], "nothing was made in it")
    }

    @Test(.enabled(if: geteuid() == 0, "as root only"))
    func asRootTheDefaultIsARootOnlyDirectoryUnderRun() throws {
        #expect(ModuleConfiguration.defaultTemporaryDirectory == "/run/mesos-command-modules")
        let configuration = try ModuleConfiguration(kind: .hook, parameters: [("module_name", "default_temp_dir")])
        let module = try HookModule(configuration: configuration, logger: CapturedLog().logger)
        #expect(module.temporaryDirectory.hasPrefix("/run/mesos-command-modules/mesos-command-modules.default_temp_dir."))
        var info = stat()
        #expect(stat("/run/mesos-command-modules", &info) == 0 && info.st_uid == 0 && info.st_mode & 0o022 == 0)
    }
}
