import Logging

extension WorkerPool {
    /// The pools of a module's commands in worker mode, by path, at the module's start — after killing what the
    /// workers of a previous agent left (``WorkerRecords/reclaim(in:moduleName:logger:)``); those pools record
    /// their workers in a fresh records directory of this instance.
    static func pools(for configuration: ModuleConfiguration, cgroups: CgroupTree? = nil, logger: Logger)
        throws(CommandError.Setup)
        -> [String: WorkerPool]
    {
        let parent = configuration.temporaryDirectory
        WorkerRecords.reclaim(in: parent, moduleName: configuration.moduleName, logger: logger)
        // Then by cgroup: whatever those records could not prove, and what its exec commands were running.
        if let cgroups { CgroupTree.reclaim(cgroups.hierarchy, moduleName: configuration.moduleName, logger: logger) }
        let byPath = Dictionary(grouping: configuration.commands.values.filter { $0.mode == .worker }, by: \.path)
        guard !byPath.isEmpty else { return [:] }
        // Without records the workers still serve; only what they would leave after an agent crash is not
        // cleaned up at the next start (said once, here).
        let records: WorkerRecords?
        do {
            records = try WorkerRecords(parent: parent, moduleName: configuration.moduleName, logger: logger)
        } catch {
            records = nil
            logger.warning("\(error.reason); should the agent die without stopping the module, what its workers leave will not be killed at the next start")
        }
        var pools: [String: WorkerPool] = [:]
        for (path, commands) in byPath {
            let limited = commands.filter { $0.workerMaxEvents != nil }.min { $0.event.key < $1.event.key }
            pools[path] = WorkerPool(
                path: path, count: commands.map(\.workers).max() ?? 1, gracePeriod: configuration.gracePeriod,
                outputMaxBytes: configuration.outputMaxBytes,
                maxEvents: limited.flatMap { command in command.workerMaxEvents.map { ($0, command.event.key + "_worker_max_events") } },
                records: records, cgroups: cgroups, user: commands.first?.user, logger: logger)
        }
        return pools
    }
}
