// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "mesos-command-modules",
    products: [
        .library(name: "MesosCommandModules", targets: ["MesosCommandModules"]),
        .executable(name: "mesos-command-modules", targets: ["mesos-command-modules"]),
        // The engine behind the C ABI of include/mesos_command_modules.h, linked into the Mesos module by
        // mesos/CMakeLists.txt.
        .library(name: "MesosCommandModulesABI", type: .static, targets: ["MesosCommandModulesABI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // The few Linux calls Swift's Glibc module does not expose (posix_spawn's closefrom, pidfd_open).
        .target(name: "CMesosCommandSpawn"),
        // The engine: configuration, envelopes, running commands, container state, metrics. No Mesos.
        .target(
            name: "MesosCommandModules",
            dependencies: [
                "CMesosCommandSpawn",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The C ABI: one C header (CMesosCommandModules) and its Swift implementation.
        .target(name: "CMesosCommandModules"),
        .target(
            name: "MesosCommandModulesABI",
            dependencies: [
                "CMesosCommandModules", "MesosCommandModules",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A C program that drives the ABI as the Mesos shim does; run by the tests.
        .executableTarget(
            name: "mcm-abi-check",
            dependencies: ["CMesosCommandModules", "MesosCommandModulesABI"],
            path: "Tests/ABICheck",
            exclude: ["dlopen_check.c"]
        ),
        // The operator's command-line tool.
        .executableTarget(
            name: "mesos-command-modules",
            dependencies: [
                "MesosCommandModules",
                // `bench` measures events through the C ABI too, as the Mesos module calls them.
                "MesosCommandModulesABI", "CMesosCommandModules",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "MesosCommandModulesTests",
            // The CLI is a dependency so that `swift test` builds it: the CLI tests run the real binary.
            dependencies: ["MesosCommandModules", "CMesosCommandSpawn", "mesos-command-modules", "mcm-abi-check"]
        ),
    ]
)
