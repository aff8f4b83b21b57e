import CMesosCommandSpawn
import Glibc

/// What proves, from /proc, that a process is still one the module started — a pid alone never does: after its
/// process ends, the kernel gives its number to the next process that needs one.
///
/// - A process is the one started if it has the same pid *and* the same start time (clock ticks after boot,
///   field 22 of /proc/<pid>/stat), in the same boot (/proc/sys/kernel/random/boot_id): two processes of one
///   boot never share both.
/// - A process descends from one started if its environment (/proc/<pid>/environ, the block it was exec'd with)
///   holds the random token the module put in its worker's environment: children inherit it, an unrelated
///   process cannot have it by chance.
enum ProcessIdentity {
    /// What /proc/<pid>/stat says about a process.
    struct Status: Equatable {
        var pid: pid_t
        /// Its process group id.
        var group: pid_t
        /// Clock ticks after boot at which it started.
        var startTime: UInt64
        /// A zombie has ended: only its pid is left, until its parent reaps it.
        var isZombie: Bool
    }

    /// This boot's id, or "" when /proc does not say (then no record of another instance is trusted).
    static let bootID: String = {
        guard case .bytes(let bytes) = FileIO.read(path: "/proc/sys/kernel/random/boot_id", limit: 100) else { return "" }
        return String(decoding: bytes, as: UTF8.self).trimmingWhitespace.description
    }()

    /// This process's pid namespace (the inode of /proc/self/ns/pid), or "" when it cannot be read. Pids, start
    /// times and /proc only mean the same thing within one namespace.
    static let pidNamespace: String = {
        var info = stat()
        guard stat("/proc/self/ns/pid", &info) == 0 else { return "" }
        return "\(info.st_dev):\(info.st_ino)"
    }()

    /// Whether `pid` is provably gone (no such process), as opposed to alive or not known: only ESRCH says so.
    static func isGone(_ pid: pid_t) -> Bool { pid > 0 && kill(pid, 0) != 0 && errno == ESRCH }

    /// The status of `pid`, or nil if it is gone (or /proc cannot be read).
    static func status(of pid: pid_t) -> Status? {
        guard pid > 0, case .bytes(let bytes) = FileIO.read(path: "/proc/\(pid)/stat", limit: 4096) else { return nil }
        return parseStatus(bytes, pid: pid)
    }

    /// Parses /proc/<pid>/stat: `pid (comm) state ppid pgrp …`. The command name may hold spaces and
    /// parentheses, so fields are counted from the last `)`.
    static func parseStatus(_ bytes: [UInt8], pid: pid_t) -> Status? {
        guard let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = bytes[(close + 1)...].split(separator: UInt8(ascii: " "))
        // fields[0] is field 3 (state); field N is fields[N - 3].
        guard fields.count > 19, let state = fields[0].first,
              let group = pid_t(String(decoding: fields[2], as: UTF8.self)),
              let startTime = UInt64(String(decoding: fields[19], as: UTF8.self))
        else { return nil }
        return Status(pid: pid, group: group, startTime: startTime,
                      isZombie: state == UInt8(ascii: "Z") || state == UInt8(ascii: "X"))
    }

    /// Whether the environment `pid` was exec'd with holds `entry` (`NAME=value`). False when it cannot be read.
    static func environment(of pid: pid_t, holds entry: String) -> Bool {
        guard case .bytes(let bytes) = FileIO.read(path: "/proc/\(pid)/environ", limit: 1 << 20) else { return false }
        let wanted = Array(entry.utf8)
        return bytes.split(separator: 0, omittingEmptySubsequences: true).contains { $0.elementsEqual(wanted) }
    }

    /// The processes of this pid namespace, by pid (from the names in /proc).
    static func allPIDs() -> [pid_t] { FileIO.entries("/proc").compactMap { pid_t($0) } }
}

extension ProcessIdentity {
    /// Which process made something that outlives it — a private temporary directory, the records of its
    /// workers — and so whether that process has provably ended: the one proof both use (SPEC §3, §8).
    ///
    /// A pid alone proves nothing: after its process ends the kernel gives its number to another, and in another
    /// pid namespace (an agent in a container sharing the `temp_dir`) it names an unrelated process, or none.
    /// Boot, pid namespace, pid and start time together name one process of one boot.
    struct Maker: Equatable, Sendable {
        var bootID: String
        /// Its pid namespace (``ProcessIdentity/pidNamespace``): its pid and start time mean nothing in another.
        var namespace: String
        var pid: pid_t
        var startTime: UInt64

        /// The file of a directory that holds the record of its maker (``text``).
        static let fileName = "instance"

        /// This process; nil when what identifies it cannot be read (then nothing is recorded: a maker that
        /// could not be told from a dead one must never be written).
        static let current: Maker? = {
            guard !ProcessIdentity.bootID.isEmpty, !ProcessIdentity.pidNamespace.isEmpty,
                  let start = ProcessIdentity.status(of: getpid())?.startTime, start > 0
            else { return nil }
            return Maker(bootID: ProcessIdentity.bootID, namespace: ProcessIdentity.pidNamespace, pid: getpid(),
                         startTime: start)
        }()

        var text: String { "boot=\(bootID)\nns=\(namespace)\npid=\(pid)\nstart=\(startTime)\n" }

        init(bootID: String, namespace: String, pid: pid_t, startTime: UInt64) {
            self.bootID = bootID
            self.namespace = namespace
            self.pid = pid
            self.startTime = startTime
        }

        /// From the `key=value` lines of a record (``text``, possibly with more lines).
        init?(parsing values: [String: String]) {
            guard let boot = values["boot"], let namespace = values["ns"], let pid = values["pid"].flatMap({ pid_t($0) }),
                  let start = values["start"].flatMap({ UInt64($0) })
            else { return nil }
            self.init(bootID: boot, namespace: namespace, pid: pid, startTime: start)
        }

        /// The record of the directory open at `fd`, if it holds a readable one.
        init?(recordIn fd: Int32) {
            let file = mcm_open_read_at(fd, Self.fileName)
            guard file >= 0 else { return nil }
            defer { close(file) }
            guard case .bytes(let bytes) = FileIO.read(fd: file, limit: 4096) else { return nil }
            self.init(parsing: String(decoding: bytes, as: UTF8.self).keyValueLines)
        }

        /// Whether it is this very process.
        var isThisProcess: Bool { self == Self.current }

        /// Whether it has provably ended: another boot, or — in this pid namespace — no process with its pid, or
        /// one that started at another time. Anything less certain (another namespace, /proc unreadable for a
        /// moment) is "not ended".
        var hasEnded: Bool {
            if !bootID.isEmpty && !ProcessIdentity.bootID.isEmpty && bootID != ProcessIdentity.bootID { return true }
            guard bootID == ProcessIdentity.bootID, !namespace.isEmpty, namespace == ProcessIdentity.pidNamespace,
                  startTime > 0
            else { return false }
            if ProcessIdentity.isGone(pid) { return true }
            guard let status = ProcessIdentity.status(of: pid) else { return false }
            return status.startTime != startTime
        }
    }
}
