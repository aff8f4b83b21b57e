import Glibc

/// What a worker writes: answers on stdout, one per line; lines for the agent's log on stderr.
extension WorkerProcess {
    func readStdout(_ loop: EventLoop) {
        while stdoutFD >= 0 {
            var lines: [[UInt8]] = []
            let n = loop.read(stdoutFD) { bytes in
                var start = stdoutBuffer.count
                stdoutBuffer.append(contentsOf: bytes)
                while let newline = stdoutBuffer[start...].firstIndex(of: 0x0A) {
                    lines.append(Array(stdoutBuffer[..<newline]))
                    stdoutBuffer.removeSubrange(...newline)
                    start = 0
                }
            }
            for line in lines where !stopping {
                guard line.count <= lineLimit else { return fail(.lineTooLong(limit: lineLimit), loop) }
                answered(line, loop)
            }
            if n > 0 {
                if stdoutBuffer.count > lineLimit { return fail(.lineTooLong(limit: lineLimit), loop) }
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

    func readStderr(_ loop: EventLoop) {
        while stderrFD >= 0 {
            var lines: [String] = []
            let n = loop.read(stderrFD) { bytes in
                stderrBuffer.append(contentsOf: bytes)
                while let newline = stderrBuffer.firstIndex(of: 0x0A) {
                    lines.append(String(decoding: stderrBuffer[..<newline], as: UTF8.self))
                    stderrBuffer.removeSubrange(...newline)
                }
                if stderrBuffer.count > 4096 {  // a line without end: log it in pieces
                    lines.append(String(decoding: stderrBuffer, as: UTF8.self))
                    stderrBuffer.removeAll()
                }
            }
            for line in lines where !line.isEmpty { logStderr(line) }
            if n > 0 { continue }
            if n < 0 && (errno == EINTR) { continue }
            if n < 0 && errno == EAGAIN { return }
            loop.unregister(stderrFD)
            close(stderrFD)
            stderrFD = -1
            reportDroppedStderr()
        }
    }

    private func logStderr(_ line: String) {
        guard stderrBudget > 0 else {
            stderrDropped += 1
            return
        }
        stderrBudget -= 1
        log(false, (request?.logPrefix ?? "[worker \(name), pid \(group.pid)] ") + "\(name): \(EventRunner.clipped(line[...]))")
    }

    func reportDroppedStderr() {
        guard stderrDropped > 0 else { return }
        log(false, "[worker \(name), pid \(group.pid)] \(name): … \(stderrDropped) more line(s) of stderr not logged")
        stderrDropped = 0
    }
}
