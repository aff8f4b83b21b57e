import ArgumentParser

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure the engine's cost against a bare posix_spawn.")

    func run() async throws {
        throw ValidationError("not built yet")
    }
}
