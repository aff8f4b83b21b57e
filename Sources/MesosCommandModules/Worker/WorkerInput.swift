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

    private struct State {
        var fd: Int32
        /// The request whose line is only partly written: the worker cannot have read all of it.
        var partlyWritten: UInt64?
    }

    private let stdin: Mutex<State>

    init(stdin: Int32) {
        self.stdin = Mutex(State(fd: stdin))
    }

    /// Writes as much of request `requestID`'s line `bytes[from...]` as the socket takes now.
    ///
    /// Whether the line is whole is recorded under the same lock as the write: the loop, which may read the
    /// worker's answer before this task has said how its write went, asks ``isPartlyWritten(_:)`` and so never
    /// takes the answer to a request the worker cannot have read whole for a good one.
    func send(_ bytes: [UInt8], from offset: Int = 0, requestID: UInt64) -> Written {
        stdin.withLock { state in
            guard state.fd >= 0 else { return .closed }
            var written = offset
            while written < bytes.count {
                let n = bytes.withUnsafeBytes { raw in mcm_send(state.fd, raw.baseAddress! + written, raw.count - written) }
                if n > 0 {
                    written += n
                } else if n < 0 && errno == EAGAIN {
                    state.partlyWritten = requestID
                    return .part(written)
                } else {
                    return .failed(n < 0 ? errno : EPIPE)
                }
            }
            if state.partlyWritten == requestID { state.partlyWritten = nil }
            return .all
        }
    }

    /// Whether request `requestID`'s line is only partly written so far.
    func isPartlyWritten(_ requestID: UInt64) -> Bool { stdin.withLock { $0.partlyWritten == requestID } }

    /// Closes stdin: the worker reads the end of it. `beforeClosing` gets the fd first (to unregister it).
    func close(beforeClosing: (Int32) -> Void) {
        stdin.withLock { state in
            guard state.fd >= 0 else { return }
            beforeClosing(state.fd)
            Glibc.close(state.fd)
            state.fd = -1
        }
    }

    /// The stdin fd, for registering interest in writability (loop thread).
    var fd: Int32 { stdin.withLock { $0.fd } }
}
