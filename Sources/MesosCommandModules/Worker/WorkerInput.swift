import CMesosCommandSpawn
import Glibc
import Synchronization

/// A worker's stdin (our end of a socket pair): what an event's task writes its request to directly, so that
/// sending a request costs no wake-up of the event loop — measured here, each thread hand-over costs tens of
/// microseconds on a VM, a large share of a worker event.
///
/// The fd is used under a lock, so that the loop closing it (the worker is gone) can never leave a task writing
/// to a number the agent has since reused for another file.
final class WorkerInput: Sendable {

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

    private let stdin: Mutex<Int32>

    init(stdin: Int32) {
        self.stdin = Mutex(stdin)
    }

    /// Writes as much of `bytes[from...]` as the socket takes now.
    func send(_ bytes: [UInt8], from offset: Int = 0) -> Written {
        stdin.withLock { fd in
            guard fd >= 0 else { return .closed }
            var written = offset
            while written < bytes.count {
                let n = bytes.withUnsafeBytes { raw in mcm_send(fd, raw.baseAddress! + written, raw.count - written) }
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
    func close(beforeClosing: (Int32) -> Void) {
        stdin.withLock { fd in
            guard fd >= 0 else { return }
            beforeClosing(fd)
            Glibc.close(fd)
            fd = -1
        }
    }

    /// The stdin fd, for registering interest in writability (loop thread).
    var fd: Int32 { stdin.withLock { $0 } }
}
