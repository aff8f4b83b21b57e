import CMesosCommandSpawn
import Glibc

/// One cgroup v2 directory of a module instance: a command's or a worker's. Holds its directory fd (what
/// clone3 starts a child in), and its `cpu.stat` and `cgroup.procs` open for re-reading with pread (no open per
/// event). Used by one event or worker at a time.
final class Cgroup: @unchecked Sendable {
    let name: String
    let path: String
    let fd: Int32
    private let cpuFD: Int32
    private let procsFD: Int32
    /// user + system µs of `cpu.stat` when the current use began: a reused cgroup keeps counting from where the
    /// previous event left it.
    var cpuBaseline: UInt64 = 0

    /// Makes `name` in the directory `parentFD` (at `parentPath`); nil with errno when it cannot.
    init?(creating name: String, in parentFD: Int32, at parentPath: String) {
        guard mkdirat(parentFD, name, 0o755) == 0 || errno == EEXIST else { return nil }
        let fd = openat(parentFD, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else {
            let code = errno
            unlinkat(parentFD, name, AT_REMOVEDIR)
            errno = code
            return nil
        }
        self.name = name
        self.path = parentPath + "/" + name
        self.fd = fd
        self.cpuFD = openat(fd, "cpu.stat", O_RDONLY | O_CLOEXEC)
        self.procsFD = openat(fd, "cgroup.procs", O_RDONLY | O_CLOEXEC)
        cpuBaseline = cpuMicroseconds() ?? 0
    }

    deinit {
        for descriptor in [fd, cpuFD, procsFD] where descriptor >= 0 { close(descriptor) }
    }

    /// user_usec + system_usec of everything that ever ran in it (cgroup v2 keeps them without the cpu
    /// controller), or nil when cpu.stat cannot be read.
    func cpuMicroseconds() -> UInt64? {
        guard cpuFD >= 0, let text = pread(cpuFD) else { return nil }
        var total: UInt64 = 0
        for line in text.split(separator: "\n") where line.hasPrefix("user_usec ") || line.hasPrefix("system_usec ") {
            total &+= line.split(separator: " ").last.flatMap { UInt64($0) } ?? 0
        }
        return total
    }

    /// The CPU time used since `cpuBaseline`, in seconds; the baseline moves to now.
    func takeCPUSeconds() -> Double {
        guard let now = cpuMicroseconds() else { return 0 }
        lastCPURead = MonotonicClock.now()
        defer { cpuBaseline = now }
        return now >= cpuBaseline ? Double(now - cpuBaseline) / 1e6 : 0
    }

    /// When `takeCPUSeconds` last read `cpu.stat` (CLOCK_MONOTONIC ns).
    private var lastCPURead: UInt64 = 0

    /// A worker's: `takeCPUSeconds` at most every `interval` ns, else 0 — what was used meanwhile counts at the next
    /// read, for a later event of the same worker. A read of `cpu.stat` flushes the kernel's per-CPU counters under
    /// a lock every CPU shares: at tens of thousands of worker events a second, once per event would cost more
    /// than the event.
    func takeCPUSeconds(atMostEvery interval: UInt64) -> Double {
        MonotonicClock.now() &- lastCPURead >= interval ? takeCPUSeconds() : 0
    }

    /// The processes in it now (zombies are not: an exited leader waiting to be reaped no longer counts).
    func processes() -> [pid_t] {
        guard procsFD >= 0, let text = pread(procsFD) else { return [] }
        return text.split(separator: "\n").compactMap { pid_t($0) }
    }

    /// Whether `kill` was ever used on it: such a cgroup is never used again. Seen on Linux 6.18: a child cloned
    /// (CLONE_INTO_CGROUP) into a cgroup that had been killed through `cgroup.kill` before — empty since — was
    /// itself killed at birth, as if the kill were still under way (one event in a few dozen of a script whose
    /// leftovers were killed failed "exited via signal 9").
    private(set) var killed = false

    /// SIGKILL to every process in it: `cgroup.kill` (Linux 5.14), else freeze it, SIGKILL each process, thaw it.
    func kill() {
        killed = true
        if write("cgroup.kill", "1") { return }
        let frozen = write("cgroup.freeze", "1")
        // Frozen, nothing in it can fork meanwhile; a few passes for what forked before the freeze took hold.
        for _ in 0..<(frozen ? 3 : 5) {
            let pids = processes()
            if pids.isEmpty { break }
            for pid in pids { Glibc.kill(pid, SIGKILL) }
        }
        if frozen { _ = write("cgroup.freeze", "0") }
    }

    /// Removes the directory (it must be empty). Returns whether it is gone.
    @discardableResult
    func remove(from parentFD: Int32) -> Bool { unlinkat(parentFD, name, AT_REMOVEDIR) == 0 || errno == ENOENT }

    private func write(_ file: String, _ value: String) -> Bool {
        let control = openat(fd, file, O_WRONLY | O_CLOEXEC)
        guard control >= 0 else { return false }
        defer { close(control) }
        return value.withCString { Glibc.write(control, $0, strlen($0)) } > 0
    }

    private func pread(_ descriptor: Int32) -> String? {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var text = ""
        var offset = 0
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.pread(descriptor, $0.baseAddress, $0.count, off_t(offset)) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { return offset == 0 ? nil : text }
            if n == 0 { return text }
            text += String(decoding: buffer[0..<n], as: UTF8.self)
            offset += n
            if n < buffer.count { return text }  // these files are generated whole: a short read is the end
        }
    }
}

extension ProcessIdentity {
    /// A process's name (/proc/<pid>/comm), or "?" when it has gone.
    static func name(of pid: pid_t) -> String {
        guard case .bytes(let bytes) = FileIO.read(path: "/proc/\(pid)/comm", limit: 64) else { return "?" }
        return String(decoding: bytes, as: UTF8.self).trimmingWhitespace.description
    }
}

/// A process still running when its command had exited normally.
public struct Leftover: Sendable, Equatable, CustomStringConvertible {
    public var pid: pid_t
    /// /proc/<pid>/comm.
    public var name: String
    public var description: String { "\(pid) (\(name))" }
}
