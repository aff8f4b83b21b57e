/// Bytes read from a pipe, cut into lines in time linear in the bytes: each byte is scanned once for a newline,
/// and what is left of a line is moved once per read (`append`), not once per line.
struct LineBuffer {
    private var bytes: [UInt8] = []
    /// Where the first line not yet taken starts.
    private var start = 0
    /// Up to where `bytes` has been scanned for a newline (from `start`: none there).
    private var scanned = 0

    /// The bytes of the line not yet complete (no newline yet).
    var pendingCount: Int { bytes.count - start }

    mutating func append(_ chunk: UnsafeRawBufferPointer) {
        if start > 0 {
            bytes.removeSubrange(0..<start)
            scanned -= start
            start = 0
        }
        bytes.append(contentsOf: chunk)
    }

    /// Calls `body` with each complete line (without its newline), in order, and forgets them.
    mutating func takeLines(_ body: (ArraySlice<UInt8>) -> Void) {
        while let newline = bytes[scanned...].firstIndex(of: 0x0A) {
            body(bytes[start..<newline])
            start = newline + 1
            scanned = start
        }
        scanned = bytes.count
    }

    /// Calls `body` with the incomplete line, and forgets it.
    mutating func takePending(_ body: (ArraySlice<UInt8>) -> Void) {
        body(bytes[start...])
        bytes.removeAll(keepingCapacity: true)
        start = 0
        scanned = 0
    }
}
