import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §3: private temporary directories of an earlier instance are removed only when that instance is proven
/// gone, never because a pid of another pid namespace is not running here.
@Suite(.serialized) struct TemporaryDirectoryInstancesTests {
    let sandbox = Sandbox()

    /// Issue 19: instance B, started in another pid namespace with the same temp_dir and module_name, removed live
    /// instance A's private directory (A's pid does not exist in B's namespace), and A's running event failed
    /// ("0.in: No such file or directory"). B here is the real CLI, in a pid namespace of its own.
    @Test(.enabled(if: geteuid() == 0 && access("/usr/bin/unshare", X_OK) == 0, "needs root and unshare"))
    func anInstanceInAnotherPidNamespaceLeavesALiveInstancesDirectoryAlone() async throws {
        let tempDir = sandbox.mkdir("tmp")
        let started = sandbox.path + "/started"
        let go = sandbox.path + "/go"
        // A's event: reads its input file by path once B has run, and answers with what it read.
        let prepare = sandbox.script("prepare.sh", """
            #!/bin/sh
            touch '\(started)'
            while [ ! -e '\(go)' ]; do sleep 0.05; done
            grep -q '"container_id"' "$1" || exit 3
            echo '{"user":"read"}' > "$2"
            """)
        let a = try IsolatorModule(configuration: configuration(.isolator, sandbox, name: "shared", [
            ("temp_dir", tempDir), ("isolator_prepare_command", prepare),
        ]), logger: CapturedLog().logger)
        let event = Task { try await a.prepare(containerID: cid("c1"), containerConfig: "{}") }
        #expect(await eventually(within: 5) { access(started, F_OK) == 0 })

        let hook = sandbox.script("hook.sh", "#!/bin/sh\n")
        let manifest = sandbox.path + "/modules.json"
        sandbox.write(manifest, #"{"libraries":[{"file":"/x.so","modules":[{"name":"com_criteo_mesos_CommandHook","#
            + #""parameters":[{"key":"module_name","value":"shared"},{"key":"temp_dir","value":"\#(tempDir)"},"#
            + #"{"key":"hook_slave_remove_executor_hook_command","value":"\#(hook)"}]}]}]}"#)
        let status = shell("unshare --pid --fork --mount-proc '\(cliPath)' run hook_slave_remove_executor_hook "
            + "--manifest '\(manifest)' --module shared > '\(sandbox.path)/b.out' 2>&1")
        #expect(status == 0, "\(sandbox.read(sandbox.path + "/b.out") ?? "")")
        #expect(access(a.temporaryDirectory, F_OK) == 0, "B removed A's private directory")

        sandbox.write(go, "")
        let result = try await event.value
        #expect(result == #"{"user":"read"}"#)
    }
}
