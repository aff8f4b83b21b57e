import Glibc

/// Small helpers over libc, in the spirit of swift-nio's `syscall(blocking:where:_:)`: EINTR is retried,
/// environment errors are returned as errno values for the caller to turn into a message.
enum SystemError {
    static func describe(_ code: Int32) -> String { String(cString: strerror(code)) }
}

/// An operating-system call failed: the call and its errno, worded for an operator.
public struct SystemFailure: Error, Sendable, CustomStringConvertible {
    public var call: String
    public var code: Int32

    init(_ call: String, _ code: Int32) {
        self.call = call
        self.code = code
    }

    public var description: String { "\(call) failed: \(SystemError.describe(code))" }
}

enum FileIO {
    /// Writes all of `bytes` to `fd`, retrying EINTR and short writes. Returns 0 or an errno value.
    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32 {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
            }
            if written < 0 {
                if errno == EINTR { continue }
                return errno
            }
            offset += written
        }
        return 0
    }

    enum ReadResult {
        case bytes([UInt8])
        case tooLarge(Int)
        case failed(Int32)
    }

    /// Reads the whole file at `path`, refusing one larger than `limit` bytes before reading it. Never blocks
    /// on a FIFO and never follows a symbolic link.
    static func read(path: String, limit: Int) -> ReadResult {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)
        if fd < 0 { return .failed(errno) }
        defer { close(fd) }
        return read(fd: fd, limit: limit)
    }

    /// Reads the whole regular file open at `fd` (from its current offset), refusing one larger than `limit`.
    static func read(fd: Int32, limit: Int) -> ReadResult {
        var info = stat()
        if fstat(fd, &info) != 0 { return .failed(errno) }
        if (info.st_mode & S_IFMT) != S_IFREG { return .failed(EINVAL) }
        if Int(info.st_size) > limit { return .tooLarge(Int(info.st_size)) }
        var result: [UInt8] = []
        result.reserveCapacity(Int(info.st_size))
        var chunk = [UInt8](repeating: 0, count: max(4096, min(Int(info.st_size) + 1, 1 << 16)))
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failed(errno)
            }
            if n == 0 { break }
            // The file may grow after fstat (a background child still writing): the cap still holds.
            if result.count + n > limit { return .tooLarge(result.count + n) }
            result.append(contentsOf: chunk[0..<n])
        }
        return .bytes(result)
    }
}

extension FileIO {
    /// The first `limit` bytes of the regular file open at `fd` and the file's size; nil if it is not one.
    static func readPrefix(fd: Int32, limit: Int) -> (bytes: [UInt8], size: Int)? {
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        var bytes = [UInt8](repeating: 0, count: limit)
        var filled = 0
        while filled < limit {
            let n = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + filled, limit - filled) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            filled += n
        }
        return (Array(bytes[0..<filled]), max(Int(info.st_size), filled))
    }
}

extension FileIO {
    /// The names in a directory (without . and ..); empty if it cannot be read.
    static func entries(_ directory: String) -> [String] {
        entries(opendir(directory))
    }

    /// The names in the directory open at `fd` (without . and ..); `fd` stays open.
    static func entries(fd: Int32) -> [String] {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        guard copy >= 0 else { return [] }
        guard let handle = fdopendir(copy) else {
            close(copy)
            return []
        }
        rewinddir(handle)
        return entries(handle)
    }

    /// Removes `name` from the directory open at `fd`, and if it is a directory, what it holds first — through
    /// fds only, never following a link, down to `depth` levels (deeper content is left, and so is the directory).
    static func removeTree(_ name: String, in fd: Int32, depth: Int = 16) {
        if unlinkat(fd, name, 0) == 0 || errno != EISDIR || depth == 0 { return }
        let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard child >= 0 else { return }
        for entry in entries(fd: child) { removeTree(entry, in: child, depth: depth - 1) }
        close(child)
        unlinkat(fd, name, AT_REMOVEDIR)
    }

    private static func entries(_ handle: OpaquePointer?) -> [String] {
        guard let handle else { return [] }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

enum MonotonicClock {
    /// Nanoseconds on CLOCK_MONOTONIC.
    static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func nanoseconds(_ seconds: Double) -> UInt64 {
        seconds <= 0 ? 0 : UInt64(min(seconds, 1e9) * 1e9)
    }
}

/// Runs `body` with `strings` as a NULL-terminated C `char *[]`, all in one buffer of Swift's (no strdup that
/// could fail and silently shorten the list).
func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var buffer: [CChar] = []
    var offsets: [Int] = []
    for string in strings {
        offsets.append(buffer.count)
        buffer.append(contentsOf: string.utf8.map { CChar(bitPattern: $0) })
        buffer.append(0)
    }
    return buffer.withUnsafeMutableBufferPointer { chars in
        var pointers: [UnsafeMutablePointer<CChar>?] = offsets.map { chars.baseAddress! + $0 }
        pointers.append(nil)
        return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
