import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §3: the module makes and checks its state directory when it loads and keeps a directory fd of it: no
/// directory another user creates later is ever written through.
@Suite(.serialized) struct StateDirectoryTests {
    let sandbox = Sandbox()

    /// `command` run by the real user `nobody`; its exit status.
    func asNobody(_ command: String) -> Int32 {
        shell("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c '\(command)' 2>/dev/null")
    }

    /// Issue 19: with `state_dir` missing under a sticky world-writable directory, the module loaded; `nobody`
    /// then made it (0777) before the first prepare, which wrote root's state file inside nobody's directory —
    /// where nobody could rename it away, hiding the container from the next recover and its cleanup.
    @Test(.enabled(if: geteuid() == 0 && access("/usr/bin/setpriv", X_OK) == 0, "needs root and setpriv"))
    func aStateDirMissingUnderAStickyDirectoryIsMadeAtLoadBeforeAnotherUserCanMakeIt() async throws {
        chmod(sandbox.path, 0o755)
        let shared = sandbox.mkdir("shared")
        chmod(shared, 0o1777)
        let stateDir = shared + "/state"
        let prepare = sandbox.script("prepare.sh", "#!/bin/sh\n")
        let isolator = try IsolatorModule(configuration: ModuleConfiguration(kind: .isolator, parameters: [
            ("module_name", "m"), ("temp_dir", sandbox.path), ("state_dir", stateDir),
            ("isolator_prepare_command", prepare),
        ]), logger: CapturedLog().logger)
        // Made at load, root's.
        var info = stat()
        #expect(lstat(stateDir, &info) == 0 && info.st_uid == 0 && info.st_mode & 0o7777 == 0o755)
        #expect(lstat(stateDir + "/m", &info) == 0 && info.st_uid == 0 && info.st_mode & 0o7777 == 0o700)

        // nobody races the first prepare: too late to make the directory, or to move root's away.
        #expect(asNobody("mkdir -m 0777 \(stateDir)") != 0, "nobody made the state directory after the module loaded")
        _ = try await isolator.prepare(containerID: cid("c1"), containerConfig: "{}")
        #expect(asNobody("mv \(stateDir)/m \(stateDir)/hidden") != 0, "nobody renamed root's state directory away")
        #expect(lstat(stateDir, &info) == 0 && info.st_uid == 0, "the directory above the state file is root's")
        #expect(Sandbox.entries(stateDir + "/m") == ["c1"])
        #expect(Sandbox.entries(stateDir) == ["m"])
    }

    /// The kept fd is used, not the path: removed and replaced after the module loaded (an operator's `rm -rf`
    /// and a directory someone made again), the directory is never written through its path; the event says why.
    @Test func aStateDirectoryRemovedAfterLoadIsNeverReplacedByWhatIsAtItsPathNow() async throws {
        let isolator = try isolator(sandbox, [("isolator_prepare_command", sandbox.script("prepare.sh", "#!/bin/sh\n"))])
        let dir = isolator.stateDirectory
        #expect(shell("rm -rf '\(dir)' && mkdir -m 0700 '\(dir)'") == 0)
        let error = await thrownError { try await isolator.prepare(containerID: cid("c1"), containerConfig: "{}") }
        #expect((error as? EventError)?.message.contains("the state directory '\(dir)' was removed after the module "
            + "loaded; nothing is written to what is at its path now (restarting the agent makes it again)") == true,
                "\(String(describing: error))")
        #expect(Sandbox.entries(dir).isEmpty)
    }
}
