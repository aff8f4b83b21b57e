import Glibc
import Testing

@testable import MesosCommandModules

/// A small filesystem for one test: a tmpfs when this process may mount one (root, as in CI), else nil.
final class SmallFilesystem {
    let path: String

    init?(_ sandbox: Sandbox, size: String = "64k") {
        path = sandbox.mkdir("fs")
        guard shell("mount -t tmpfs -o size=\(size) tmpfs '\(path)' 2>/dev/null") == 0 else { return nil }
    }

    func makeReadOnly() -> Bool { shell("mount -o remount,ro '\(path)'") == 0 }

    func fill() { shell("dd if=/dev/zero of='\(path)/filler' bs=4k 2>/dev/null") }

    deinit { shell("umount '\(path)' 2>/dev/null") }
}

/// SPEC §5 under bad disks, bad files and races: prepare fails or logs, nothing corrupt remains, recover restores
/// every good container.
@Suite struct ReliabilityStateTests {
    let sandbox = Sandbox()

    func module(stateDir: String, _ extra: [(String, String)] = [], log: CapturedLog = CapturedLog()) throws -> IsolatorModule {
        let parameters: [(key: String, value: String)] = [("module_name", "m"), ("temp_dir", sandbox.path), ("state_dir", stateDir)]
            + extra.map { (key: $0.0, value: $0.1) }
        return try IsolatorModule(configuration: ModuleConfiguration(kind: .isolator, parameters: parameters), logger: log.logger)
    }

    @Test func aMissingStateDirectoryIsCreatedWhenTheModuleLoads() async throws {
        let isolator = try module(stateDir: sandbox.path + "/not/yet/there")
        #expect(Sandbox.entries(sandbox.path + "/not/yet/there") == ["m"])
        _ = try await isolator.prepare(containerID: cid("c"), containerConfig: "{}")
        #expect(Sandbox.entries(sandbox.path + "/not/yet/there/m") == ["c"])
    }

    /// A state directory that cannot be made is a load-time error naming state_dir; one that becomes read-only
    /// after the module loaded fails prepare cleanly, before its command runs.
    @Test func aReadOnlyStateDirectoryIsALoadErrorAndFailsPrepareCleanlyOnceLoaded() async throws {
        guard let filesystem = SmallFilesystem(sandbox) else {
            print("skipped: cannot mount a tmpfs here (not root?)")
            return
        }
        let script = sandbox.script("prepare.sh", "#!/bin/sh\ntouch \(sandbox.path)/prepare-ran\n")
        let isolator = try module(stateDir: filesystem.path, [("isolator_prepare_command", script)])
        #expect(filesystem.makeReadOnly())
        let error = #expect(throws: ModuleError.self) { try module(stateDir: filesystem.path + "/other") }
        #expect(error?.description == "module 'm': cannot create the state directory '\(filesystem.path)/other' "
            + "(state_dir): Read-only file system")
        let failure = await thrownError { try await isolator.prepare(containerID: cid("c"), containerConfig: "{}") } as? EventError
        #expect(failure?.description.hasPrefix("[TASK=c, METHOD=prepare] Cannot persist the container's state: cannot create "
            + "'\(filesystem.path)/m/.c.tmp.") == true && failure?.description.hasSuffix("Read-only file system") == true,
                "\(String(describing: failure))")
        #expect(access(sandbox.path + "/prepare-ran", F_OK) != 0)  // the command did not run
        #expect(isolator.containers.isEmpty)  // a retried prepare is not refused as a duplicate
    }

    @Test func aFullFilesystemFailsPrepareAndLeavesNoPartialFile() async throws {
        guard let filesystem = SmallFilesystem(sandbox) else {
            print("skipped: cannot mount a tmpfs here (not root?); the read-only case covers the error path")
            return
        }
        let isolator = try module(stateDir: filesystem.path)
        _ = try await isolator.prepare(containerID: cid("before"), containerConfig: #"{"directory":"/b"}"#)
        filesystem.fill()
        let big = #"{"directory":"\#(String(repeating: "x", count: 100_000))"}"#
        let error = await thrownError { try await isolator.prepare(containerID: cid("after"), containerConfig: big) } as? EventError
        #expect(error?.message.contains("No space left on device") == true, "\(String(describing: error))")
        #expect(Sandbox.entries(filesystem.path + "/m") == ["before"])
        #expect(sandbox.read(filesystem.path + "/m/before") == #"{"directory":"/b"}"#)
    }

    @Test func recoverRestoresEveryGoodContainerAndLogsTheRest() async throws {
        let dir = sandbox.path + "/state/m"
        shell("mkdir -p '\(dir)/subdir'")
        sandbox.write(dir + "/good1", #"{"directory":"/1","command_info":{}}"#)
        sandbox.write(dir + "/good2", #"{"directory":"/2","command_info":{}}"#)
        sandbox.write(dir + "/truncated", #"{"directory":"/3","comm"#)
        sandbox.write(dir + "/foreign", "\u{7f}ELF\u{02}\u{01}\u{01}binary garbage")
        sandbox.write(dir + "/array", "[1,2]")
        sandbox.write(dir + "/.good1.tmp.4242", #"{"direc"#)
        let log = CapturedLog()
        let isolator = try module(stateDir: sandbox.path + "/state", log: log)
        let ids = ["good1", "good2", "truncated", "foreign", "array", "subdir"]
        let states = "[" + ids.map { #"{"container_id":{"value":"\#($0)"},"pid":1,"directory":"/"}"# }.joined(separator: ",") + "]"
        try await isolator.recover(states: states, orphans: "[]")
        #expect(Set(isolator.containers.map(\.description)) == ["good1", "good2"])
        for bad in ["truncated", "foreign", "array", "subdir"] {
            #expect(log.contains("Cannot restore the state of container \(bad)"), "\(bad)")
        }
        #expect(!Sandbox.entries(dir).contains(".good1.tmp.4242"))
        #expect(isolator.containerConfig(ContainerID("good1")) == #"{"directory":"/1","command_info":{}}"#)
    }

    @Test func prepareAndCleanupOfTheSameContainerRacing() async throws {
        let prepare = sandbox.script("prepare.sh", "#!/bin/sh\nsleep 0.$(( $$ % 3 ))\n")
        let cleanup = sandbox.script("cleanup.sh", "#!/bin/sh\necho cleaned >> \(sandbox.path)/cleanups\n")
        let isolator = try module(stateDir: sandbox.path + "/state", [("isolator_prepare_command", prepare), ("isolator_cleanup_command", cleanup)])
        for round in 0..<50 {
            let id = cid("race\(round)")
            async let prepared: String? = try? isolator.prepare(containerID: id, containerConfig: "{}")
            async let cleaned: Void? = try? isolator.cleanup(containerID: id)
            _ = await (prepared, cleaned)
            // Whatever the order, a final cleanup leaves nothing behind.
            try await isolator.cleanup(containerID: id)
        }
        #expect(isolator.containers.isEmpty)
        #expect(Sandbox.entries(isolator.stateDirectory).isEmpty)
        let cleanups = (sandbox.read(sandbox.path + "/cleanups") ?? "").split(separator: "\n").count
        #expect(cleanups == 50)  // exactly one cleanup command per prepared container
    }

    @Test func cleanupWhileTheWatchLoopIsMidRun() async throws {
        let started = sandbox.path + "/watch-started"
        let watch = sandbox.script("watch.sh", "#!/bin/sh\ntouch \(started)\nsleep 5\n")
        let isolator = try module(stateDir: sandbox.path + "/state", [
            ("isolator_watch_command", watch), ("isolator_watch_frequence", "0.05"), ("grace_period", "0.2"),
        ])
        let fds = openFDCount()
        try isolator.adopt(containerID: cid("w"), containerConfig: "{}")
        let loop = Task { try await isolator.watch(containerID: cid("w")) }
        #expect(await eventually(within: 3) { access(started, F_OK) == 0 })
        let start = ContinuousClock.now
        try await isolator.cleanup(containerID: cid("w"))
        #expect(try await loop.value == nil)
        #expect(ContinuousClock.now - start < .seconds(2))
        await expectNothingLeft(fdsBefore: fds, temporaryDirectory: isolator.temporaryDirectory)
    }

    @Test func aHundredPreparesAtOnce() async throws {
        let script = sandbox.script("prepare.sh", "#!/bin/sh\nsleep 0.5\necho '{\"user\":\"u\"}' > \"$2\"\n")
        let isolator = try module(stateDir: sandbox.path + "/state", [("isolator_prepare_command", script), ("max_in_flight", "100")])
        let fds = openFDCount()
        let start = ContinuousClock.now
        let results = try await withThrowingTaskGroup(of: String?.self) { group in
            for i in 0..<100 { group.addTask { try await isolator.prepare(containerID: cid("h\(i)"), containerConfig: "{}") } }
            return try await group.reduce(into: [String?]()) { $0.append($1) }
        }
        #expect(results.count == 100 && results.allSatisfy { $0 == #"{"user":"u"}"# })
        #expect(ContinuousClock.now - start < .seconds(10))
        #expect(Sandbox.entries(isolator.stateDirectory).count == 100)
        await expectNothingLeft(fdsBefore: fds, temporaryDirectory: isolator.temporaryDirectory)
    }

    // MARK: - Trust of the state directory (SPEC §3)

    static let consequence = "another user could make the module write or remove files through a link of theirs, "
        + "or plant the state its cleanup commands receive"

    /// Issue 14: a state_dir another user made, whose `<module_name>` is a link to root's files, made recover
    /// remove those files (and let that user plant the configs root's cleanup commands receive).
    @Test(.enabled(if: geteuid() == 0, "chown needs root"))
    func aStateDirOfAnotherUserIsRefusedAtLoadAndNothingIsRemovedThroughIt() async throws {
        let (victim, theirs) = sandbox.stateDirOfAnotherUser()
        let parameters: [(key: String, value: String)] = [("module_name", "m"), ("temp_dir", sandbox.path), ("state_dir", theirs)]
        let error = #expect(throws: ConfigurationError.self) { try ModuleConfiguration(kind: .isolator, parameters: parameters) }
        #expect(error?.description == "module 'm': parameter 'state_dir': '\(theirs)' cannot be trusted: it belongs to uid "
            + "65534 (nobody), not to root or the agent's user (uid 0): \(Self.consequence)")
        // A state directory given in code (the CLI's --state-dir) is checked when the module starts.
        var configuration = ModuleConfiguration(kind: .isolator, moduleName: "m")
        configuration.temporaryDirectory = sandbox.path
        configuration.stateDirectory = theirs
        let module = try? IsolatorModule(configuration: configuration, logger: CapturedLog().logger)
        #expect(module == nil)
        if let module { try await module.recover(states: "[]", orphans: "[]") }
        #expect(Sandbox.entries(victim) == ["precious"])
    }

    /// The module's own directory is opened without following a link when it loads, and used through that fd
    /// only: replaced by a link after the module loaded, nothing is read, written or removed through it.
    @Test func aStateDirectoryReplacedByALinkIsNeverFollowed() async throws {
        let victim = sandbox.mkdir("victim")
        sandbox.write(victim + "/precious", "root's")
        sandbox.write(victim + "/planted", #"{"directory":"/planted"}"#)
        let log = CapturedLog()
        let isolator = try module(stateDir: sandbox.path + "/state", log: log)
        _ = try await isolator.prepare(containerID: cid("c0"), containerConfig: "{}")
        #expect(shell("rm -rf '\(isolator.stateDirectory)' && ln -s '\(victim)' '\(isolator.stateDirectory)'") == 0)

        try await isolator.recover(states: #"[{"container_id":{"value":"planted"}}]"#, orphans: "[]")
        #expect(isolator.containerConfig(ContainerID("planted")) == nil)
        let removed = "the state directory '\(isolator.stateDirectory)' was removed after the module loaded; nothing is "
            + "written to what is at its path now (restarting the agent makes it again)"
        #expect(log.contains("Cannot restore the state of container planted: cannot read '\(isolator.stateDirectory)/planted': "
            + removed), "\(log.all)")
        let prepare = await thrownError { try await isolator.prepare(containerID: cid("c1"), containerConfig: "{}") } as? EventError
        #expect(prepare?.message.hasPrefix("Cannot persist the container's state: cannot create '\(isolator.stateDirectory)/.c1.tmp.")
            == true && prepare?.message.hasSuffix(removed) == true, "\(String(describing: prepare))")
        try await isolator.cleanup(containerID: cid("c0"))
        #expect(Sandbox.entries(victim) == ["planted", "precious"])
        // A new module (the agent restarted) refuses to load.
        let error = #expect(throws: ConfigurationError.self) {
            try ModuleConfiguration(kind: .isolator, parameters: [("module_name", "m"), ("state_dir", sandbox.path + "/state")])
        }
        #expect(error?.description == "module 'm': parameter 'state_dir': '\(sandbox.path)/state' cannot be trusted: "
            + "'\(isolator.stateDirectory)' is a symbolic link (never followed): \(Self.consequence)")
    }

    @Test func aStateFileThatIsALinkIsRefusedNeverFollowedNorRemoved() async throws {
        let victim = sandbox.mkdir("victim")
        sandbox.write(victim + "/config", #"{"directory":"/planted"}"#)
        sandbox.write(victim + "/precious", "root's")
        let log = CapturedLog()
        let isolator = try module(stateDir: sandbox.path + "/state", log: log)
        let dir = isolator.stateDirectory
        #expect(shell("mkdir -m 0700 -p '\(dir)' && ln -s '\(victim)/config' '\(dir)/c1' && ln -s '\(victim)/precious' '\(dir)/gone'") == 0)
        try await isolator.recover(states: #"[{"container_id":{"value":"c1"}}]"#, orphans: "[]")
        #expect(isolator.containers.isEmpty)
        #expect(log.contains("Cannot restore the state of container c1: '\(dir)/c1' is a symbolic link, not a state file: "
            + "refused (never followed)"), "\(log.all)")
        #expect(log.contains("'\(dir)/gone' is not a regular file, so not a state file: left in place"), "\(log.all)")
        #expect(Sandbox.entries(dir) == ["c1", "gone"])
        #expect(Sandbox.entries(victim) == ["config", "precious"])
    }

    /// The rename that makes a state file visible is durable: the directory is fsynced after it (else a power
    /// loss can keep the fsynced dot-file and lose the rename, and recover then removes the dot-file).
    @Test(.enabled(if: access("/usr/bin/strace", X_OK) == 0, "needs strace"))
    func theRenameOfAStateFileIsFollowedByAnFsyncOfTheDirectory() throws {
        let script = sandbox.script("prepare.sh", "#!/bin/sh\n")
        let manifest = sandbox.path + "/modules.json"
        sandbox.write(manifest, #"{"libraries":[{"file":"/x.so","modules":[{"name":"com_criteo_mesos_CommandIsolator","#
            + #""parameters":[{"key":"module_name","value":"m"},{"key":"isolator_prepare_command","value":"\#(script)"}]}]}]}"#)
        let trace = sandbox.path + "/trace"
        let status = shell("strace -f -qq -e trace=open,openat,rename,renameat,renameat2,fsync -o '\(trace)' '\(cliPath)' run "
            + "isolator_prepare --manifest '\(manifest)' --module m --container-id k --state-dir '\(sandbox.path)/state' >/dev/null 2>&1")
        #expect(status == 0)
        #expect(Sandbox.entries(sandbox.path + "/state/m") == ["k"])
        let lines = (sandbox.read(trace) ?? "").split(separator: "\n").map(String.init)
        // The fds opened on the state directory, and where the state file was renamed into place.
        let directoryFDs = Set(lines.compactMap { line -> String? in
            guard line.contains("O_DIRECTORY"), line.contains(#""m""#) || line.contains(#"/m""#),
                  let equals = Substring(line).range(of: "= ") else { return nil }
            return String(line[equals.upperBound...].prefix { $0.isNumber })
        })
        let rename = try #require(lines.firstIndex { $0.contains("rename") && $0.contains(#"k")"#) }, "\(lines)")
        let fsyncs = lines[rename...].filter { line in directoryFDs.contains { line.contains("fsync(\($0))") } }
        #expect(!fsyncs.isEmpty, "no fsync of the state directory after \(lines[rename]); opened: \(directoryFDs)")
    }
}
