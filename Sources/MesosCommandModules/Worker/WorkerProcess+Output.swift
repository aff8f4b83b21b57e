import Glibc

/// What a worker writes: answers on stdout, one per line; lines for the agent's log on stderr.
extension WorkerProcess {
    /// Reads answers, a bounded amount per loop pass (`EventLoop.readsPerPass`).
    func readStdout(_ loop: EventLoop) {
        for _ in 0..<EventLoop.readsPerPass where stdoutFD >= 0 {
            var lines: [[UInt8]] = []
            let n = loop.read(stdoutFD) { bytes in
                stdoutBuffer.append(bytes)
                stdoutBuffer.takeLines { lines.append(Array($0)) }
            }
            for line in lines where !stopping {
                guard line.count <= lineLimit else { return fail(.lineTooLong(limit: lineLimit), loop) }
                answered(line, loop)
            }
            if n > 0 {
                if stdoutBuffer.pendingCount > lineLimit { return fail(.lineTooLong(limit: lineLimit), loop) }
                continue
            }
            if n < 0 && (errno == EINTR) { continue }
            if n < 0 && errno == EAGAIN { return }
            // End of stdout: the worker can answer no more. An exiting worker closes its stdout just before its
            // exit shows: wait a moment for it, to report the exit code rather than "closed its stdout".
            loop.unregister(stdoutFD)
            close(stdoutFD)
            stdoutFD = -1
            if !stopping {
                if let failure = endFailure(loop) {
                    fail(failure, loop)
                } else {
                    stdoutEndedAt = MonotonicClock.now()
                }
            }
        }
    }

    /// Reads lines for the log, a bounded amount per loop pass: a worker (or a child of it) writing without pause
    /// costs the loop one pass of reads at a time, and a line past the budget costs no String.
    func readStderr(_ loop: EventLoop) {
        for _ in 0..<EventLoop.readsPerPass where stderrFD >= 0 {
            let n = loop.read(stderrFD) { bytes in
                stderrBuffer.append(bytes)
                stderrBuffer.takeLines(logStderr)
                if stderrBuffer.pendingCount > 4096 { stderrBuffer.takePending(logStderr) }  // a line without end: in pieces
            }
            if n > 0 || (n < 0 && errno == EINTR) { continue }
            if n < 0 && errno == EAGAIN { return }
            loop.unregister(stderrFD)
            close(stderrFD)
            stderrFD = -1
            reportDroppedStderr()
        }
    }

    private func logStderr(_ line: ArraySlice<UInt8>) {
        guard !line.isEmpty else { return }
        guard stderrBudget > 0 else {
            stderrDropped += 1
            return
        }
        stderrBudget -= 1
        let text = String(decoding: line, as: UTF8.self)
        log(false, (request?.logPrefix ?? "[worker \(name), pid \(group.pid)] ") + "\(name): \(EventRunner.clipped(text[...]))")
    }
    func reportDroppedStderr() {
        guard stderrDropped > 0 else { return }
        log(false, "[worker \(name), pid \(group.pid)] \(name): … \(stderrDropped) more line(s) of stderr not logged")
        stderrDropped = 0
    }
}
