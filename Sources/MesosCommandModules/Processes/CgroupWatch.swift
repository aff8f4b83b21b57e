import CMesosCommandSpawn
import Glibc

/// Removes cgroups once the last process in them has gone, without polling each: the kernel signals a change of
/// `cgroup.events` (`populated 1` → `0`) as an IN_MODIFY of that file, which one inotify fd, watched by the event
/// loop, receives for all of them. Where inotify cannot be had (out of fds, out of watches), the few cgroups
/// concerned are checked every ``fallbackPeriod``. Loop thread only.
final class CgroupWatch: LoopClient {
    /// The process's watch, made on first use (loop thread only: no lock).
    nonisolated(unsafe) private static var instance: CgroupWatch?
    static let fallbackPeriod: UInt64 = 5_000_000_000

    private struct Entry {
        let cgroup: Cgroup
        /// The instance directory, removed after its last cgroup once the module is gone (`owner` nil); then the
        /// base.
        let parent: String
        let base: String
        weak var owner: CgroupTree?
    }

    private let id: UInt64
    private var inotifyFD: Int32 = -1
    private var watched: [Int32: Entry] = [:]
    /// Entries inotify could not take: checked every `fallbackPeriod`.
    private var unwatched: [Entry] = []
    private var checkAt: UInt64?

    private init(id: UInt64, loop: EventLoop) {
        self.id = id
        inotifyFD = mcm_inotify_create()
        if inotifyFD >= 0 && loop.register(inotifyFD, id: id, tag: 1) != 0 {
            close(inotifyFD)
            inotifyFD = -1
        }
    }

    /// Removes `cgroup` (at once if it is empty already) once nothing runs in it; then, unless its `owner` still
    /// lives, its instance directory `parent` and the `base`, if they are empty.
    static func removeWhenEmpty(_ cgroup: Cgroup, parent: String, base: String, owner: CgroupTree?, loop: EventLoop) {
        let watch: CgroupWatch
        if let instance {
            watch = instance
        } else {
            watch = CgroupWatch(id: loop.makeClientID(), loop: loop)
            loop.add(watch, id: watch.id)
            instance = watch
        }
        watch.add(Entry(cgroup: cgroup, parent: parent, base: base, owner: owner))
    }

    /// How many cgroups are waiting to be removed (tests).
    static var pending: Int { instance.map { $0.watched.count + $0.unwatched.count } ?? 0 }

    private func add(_ entry: Entry) {
        if inotifyFD >= 0 {
            let wd = mcm_inotify_watch_modify(inotifyFD, entry.cgroup.path + "/cgroup.events")
            if wd >= 0 {
                watched[wd] = entry
                // It may have emptied before the watch was there: no event would come for that.
                if !Self.populated(entry.cgroup) { finish(wd) }
                return
            }
        }
        if !Self.populated(entry.cgroup) { return Self.remove(entry) }
        unwatched.append(entry)
        if checkAt == nil { checkAt = MonotonicClock.now() &+ Self.fallbackPeriod }
    }

    private func finish(_ wd: Int32) {
        guard let entry = watched.removeValue(forKey: wd) else { return }
        mcm_inotify_unwatch(inotifyFD, wd)
        Self.remove(entry)
    }

    private static func remove(_ entry: Entry) {
        entry.cgroup.removeWithMark()
        if entry.owner == nil { CgroupTree.removeIfEmpty(entry.parent, base: entry.base) }
    }

    /// Whether something still runs in it (`populated 1` in cgroup.events; a cgroup that is gone is not).
    private static func populated(_ cgroup: Cgroup) -> Bool {
        let fd = openat(cgroup.fd, "cgroup.events", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return false }
        return String(decoding: buffer[0..<n], as: UTF8.self).contains("populated 1")
    }

    func ready(tag: UInt8, loop: EventLoop) {
        var wds = [Int32](repeating: 0, count: 256)
        while true {
            let count = wds.withUnsafeMutableBufferPointer { mcm_inotify_read(inotifyFD, $0.baseAddress, 256) }
            guard count > 0 else { return }
            for wd in Set(wds[0..<Int(count)]) {
                if let entry = watched[wd], !Self.populated(entry.cgroup) { finish(wd) }
            }
        }
    }

    var wakeAt: UInt64? { unwatched.isEmpty ? nil : checkAt }

    func wake(now: UInt64, loop: EventLoop) {
        let due = unwatched
        unwatched.removeAll()
        checkAt = nil
        for entry in due {
            if Self.populated(entry.cgroup) { unwatched.append(entry) } else { Self.remove(entry) }
        }
        if !unwatched.isEmpty { checkAt = now &+ Self.fallbackPeriod }
    }
}
