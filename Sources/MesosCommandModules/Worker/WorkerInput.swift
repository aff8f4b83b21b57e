import CMesosCommandSpawn
import Glibc
import Synchronization

/// A worker's stdin (our end of a socket pair) and the timer of its request's deadline: what an event's task
/// touches directly, so that sending a request costs no wake-up of the event loop — measured here, each thread
/// hand-over costs tens of microseconds on a VM, a large share of a worker event.
///
/// Both fds are used under one lock, so that the loop closing them (the worker is gone) can never leave a task
/// writing to a number the agent has since reused for another file.
final class WorkerInput: Sendable {
    private struct FDs {
        var stdin: Int32
        var timer: Int32
    }

    /// How a write went.
    enum Written: Equatable {
        /// All of it.
        case all
        /// This many bytes; the rest must wait until the worker reads (the loop finishes the write).
        case part(Int)
        /// stdin is closed: the worker is being stopped.
        case closed
        /// send(2) failed with this errno (EPIPE: the worker is gone).
        case failed(Int32)
    }

    private let fds: Mutex<FDs>

    init(stdin: Int32, timer: Int32) {
        fds = Mutex(FDs(stdin: stdin, timer: timer))
    }

    /// The timer's fd, for the loop's registration (it stays open until `close`).
    var timerFD: Int32 { fds.withLock { $0.timer } }

    /// Arms the deadline timer and writes as much of `bytes[from...]` as the socket takes now.
    func send(_ bytes: [UInt8], from offset: Int = 0, deadline: UInt64? = nil) -> Written {
        fds.withLock { fds in
            guard fds.stdin >= 0 else { return .closed }
            if let deadline, fds.timer >= 0 { mcm_timerfd_arm(fds.timer, deadline) }
            var written = offset
            while written < bytes.count {
                let n = bytes.withUnsafeBytes { raw in mcm_send(fds.stdin, raw.baseAddress! + written, raw.count - written) }
                if n > 0 {
                    written += n
                } else if n < 0 && errno == EAGAIN {
                    return .part(written)
                } else {
                    return .failed(n < 0 ? errno : EPIPE)
                }
            }
            return .all
        }
    }

    /// Closes stdin: the worker reads the end of it. `beforeClosing` gets the fd first (to unregister it).
    func closeStdin(beforeClosing: (Int32) -> Void) {
        fds.withLock { fds in
            guard fds.stdin >= 0 else { return }
            beforeClosing(fds.stdin)
            close(fds.stdin)
            fds.stdin = -1
        }
    }

    /// Closes the timer too: nothing of the worker is left.
    func closeAll(beforeClosing: (Int32) -> Void) {
        closeStdin(beforeClosing: beforeClosing)
        fds.withLock { fds in
            guard fds.timer >= 0 else { return }
            beforeClosing(fds.timer)
            close(fds.timer)
            fds.timer = -1
        }
    }

    /// The stdin fd, for registering interest in writability (loop thread).
    var stdinFD: Int32 { fds.withLock { $0.stdin } }

    /// Arms the deadline timer (loop thread: the worker's own deadline, once the event's has passed).
    func arm(_ deadline: UInt64) {
        fds.withLock { fds in if fds.timer >= 0 { mcm_timerfd_arm(fds.timer, deadline) } }
    }

    /// Reads the timer's expirations (loop thread).
    func clearTimer() {
        fds.withLock { fds in
            guard fds.timer >= 0 else { return }
            var expirations: UInt64 = 0
            _ = Glibc.read(fds.timer, &expirations, 8)
        }
    }
}
