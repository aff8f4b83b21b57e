import ArgumentParser
import MesosCommandModules

@main
struct MesosCommandModulesCLI: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesos-command-modules",
        abstract: "Check, try and measure mesos-command-modules scripts without a Mesos agent.",
        discussion: """
            Every command runs scripts exactly as the module inside the agent does: same argv, input, output and
            error files, timeouts, envelopes and isolator state (see README.md, "The script contract").
            """,
        version: "mesos-command-modules \(ProjectVersion.version)",
        subcommands: [Simulate.self, Run.self, Validate.self, Inspect.self, Events.self, Bench.self],
        defaultSubcommand: nil
    )
}
