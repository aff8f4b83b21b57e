import Glibc
import Testing

@testable import MesosCommandModules

/// mesos/CMakeLists.txt, configured (not built) against fake Mesos trees: what it builds against, and for which
/// Mesos, follows the environment at every configure. Skipped without cmake (CI installs it with the bundles).
@Suite(.enabled(if: shell("command -v cmake > /dev/null && command -v c++ > /dev/null") == 0))
struct ModuleBuildTests {
    let sandbox = Sandbox()

    /// A Mesos source tree and build tree with only what the module's CMake looks at: version.hpp and libmesos.
    func fakeMesos(_ version: String) -> (root: String, build: String) {
        let top = sandbox.mkdir("mesos-\(version)")
        #expect(shell("mkdir -p '\(top)/root/include/mesos' '\(top)/build/include' '\(top)/build/src/.libs' "
            + "&& echo '#define MESOS_VERSION \"\(version)\"' > '\(top)/root/include/mesos/version.hpp' "
            + "&& touch '\(top)/build/src/.libs/libmesos.so'") == 0)
        return (top + "/root", top + "/build")
    }

    /// Configures the module's CMake in `build` with the environment `mesos` (and MESOS_COMMIT); returns its output.
    func configure(_ build: String, _ mesos: (root: String, build: String), commit: String, options: String = "")
        -> (status: Int32, output: String)
    {
        let status = shell("cd '\(repositoryRoot)' && MESOS_ROOT_DIR='\(mesos.root)' MESOS_BUILD_DIR='\(mesos.build)' "
            + "MESOS_COMMIT=\(commit) cmake -S mesos -B '\(build)' \(options) > '\(sandbox.path)/cmake.out' 2>&1")
        return (status, sandbox.read(sandbox.path + "/cmake.out") ?? "")
    }

    @Test func aBuildDirectoryConfiguredAgainForAnotherMesosBuildsForThatOne() {
        let build = sandbox.path + "/build"
        let old = fakeMesos("1.9.0")
        let new = fakeMesos("1.11.0")
        let first = configure(build, old, commit: "5e79a584")
        #expect(first.status == 0, "\(first.output)")
        #expect(first.output.contains("mesos-command-modules \(ProjectVersion.version) for Mesos 1.9.0 (commit 5e79a584): "
            + "\(old.build)/src/.libs/libmesos.so"))
        let second = configure(build, new, commit: "04bc7ee1")
        #expect(second.status == 0, "\(second.output)")
        #expect(second.output.contains("MESOS_BUILD_DIR: '\(new.build)' from the environment (this build directory had '\(old.build)')"))
        #expect(second.output.contains("This build directory was configured for \(old.build)/src/.libs/libmesos.so 1.9.0: "
            + "everything is rebuilt for this Mesos"))
        #expect(second.output.contains("for Mesos 1.11.0 (commit 04bc7ee1): \(new.build)/src/.libs/libmesos.so"))
        #expect(sandbox.read(build + "/build-identity.txt")
            == "version=\(ProjectVersion.version)\nmesos_version=1.11.0\nmesos_commit=04bc7ee1\n")
        #expect(sandbox.read(build + "/CMakeCache.txt")?.contains("MESOS_LIBRARY:FILEPATH=\(new.build)/src/.libs/libmesos.so\n") == true)
    }

    @Test func theInstalledExampleManifestNamesTheInstalledFiles() throws {
        let build = sandbox.path + "/build"
        #expect(configure(build, fakeMesos("1.12.0-dev"), commit: "c1b42f79").status == 0)
        #expect(sandbox.read(build + "/CMakeCache.txt")?.contains("CMAKE_INSTALL_PREFIX:PATH=/usr\n") == true)
        #expect(sandbox.read(build + "/CPackConfig.cmake")?.contains(
            "set(CPACK_DEBIAN_FILE_NAME \"mesos-command-modules_\(ProjectVersion.version)+mesos1.12.0~dev_") == true)
        let manifest = try ModulesManifest(contentsOf: build + "/stage/modules.json")
        #expect(manifest.commandModules.count == 2)
        for module in manifest.commandModules {
            #expect(module.library == "/usr/lib/mesos/modules/libmesos_command_modules.so")
            for (key, value) in module.parameters where key.hasSuffix("_command") {
                #expect(value.hasPrefix("/usr/share/mesos-command-modules/examples/"), "\(key): \(value)")
            }
        }
    }

    /// Issue 19: the package names no real person or company as its maintainer unless the builder says who:
    /// -DMCM_PACKAGE_MAINTAINER. On main it named Criteo, which does not maintain this project.
    @Test func thePackagesMaintainerIsABuildOptionWithANeutralDefault() {
        let mesos = fakeMesos("1.11.0")
        let neutral = "mesos-command-modules packagers <packagers@localhost.invalid>"
        let team = "Mesos team <mesos-team@example.com>"
        for (options, maintainer) in [("", neutral), ("-DMCM_PACKAGE_MAINTAINER='\(team)'", team)] {
            let build = sandbox.path + "/build" + String(options.count)
            let configured = configure(build, mesos, commit: "04bc7ee1", options: options)
            #expect(configured.status == 0, "\(configured.output)")
            let cpack = sandbox.read(build + "/CPackConfig.cmake") ?? ""
            #expect(cpack.contains("set(CPACK_DEBIAN_PACKAGE_MAINTAINER \"\(maintainer)\")"), "\(options)")
            #expect(!cpack.lowercased().contains("criteo.com"))
            #expect(sandbox.read(build + "/stage/changelog")?.contains("\n -- \(maintainer)  ") == true)
        }
        let wrong = configure(sandbox.path + "/wrong", mesos, commit: "04bc7ee1",
                              options: "-DMCM_PACKAGE_MAINTAINER=nobody")
        #expect(wrong.status != 0)
        #expect(wrong.output.contains("MCM_PACKAGE_MAINTAINER is 'nobody': give 'Name <address>'"), "\(wrong.output)")
    }
}
