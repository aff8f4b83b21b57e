import Glibc
import MesosCommandModules

/// The little of a 64-bit little-endian ELF file (x86-64, aarch64 Linux) that tells what a module library is,
/// read with pread from its section headers: never loaded, so a library built for another Mesos (which would not
/// load) or a file that is not a library at all is read the same way.
struct ELFFile {
    struct Section {
        var name: String
        var type: UInt32
        var offset: UInt64
        var size: UInt64
    }

    let path: String
    let sections: [Section]
    private let fd: Int32
    /// The file's size: every offset and size the file gives is checked against it before anything is read or
    /// allocated, so a damaged or crafted file is an error, never a trap or a huge allocation.
    private let size: UInt64

    /// Opens `path` and reads its section headers; the error says what the file is instead.
    init(path: String) throws(ELFError) {
        self.path = path
        // O_NONBLOCK: a FIFO named like a library must not hang the tool (it is refused below).
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw ELFError("cannot open it: \(String(cString: strerror(errno)))") }
        do throws(ELFError) {
            var info = stat()
            guard fstat(fd, &info) == 0 else { throw ELFError("cannot read it: \(String(cString: strerror(errno)))") }
            guard info.st_mode & S_IFMT == S_IFREG else { throw ELFError("not a regular file") }
            let size = UInt64(clamping: info.st_size)
            let header = try Self.read(fd, size: size, at: 0, count: 64)
            guard header.count == 64, header[0..<4].elementsEqual([0x7f, 0x45, 0x4c, 0x46]) else {
                throw ELFError("not an ELF file (a shared library starts with \\x7fELF)")
            }
            guard header[4] == 2, header[5] == 1 else {
                throw ELFError("not a 64-bit little-endian ELF file (class \(header[4]), data \(header[5]))")
            }
            guard Self.integer(header, at: 16, size: 2) == 3 else {
                throw ELFError("an ELF file, but not a shared library (type \(Self.integer(header, at: 16, size: 2)))")
            }
            let tableOffset = Self.integer(header, at: 0x28, size: 8)
            let entrySize = Int(Self.integer(header, at: 0x3a, size: 2))
            let count = Int(Self.integer(header, at: 0x3c, size: 2))
            let namesIndex = Int(Self.integer(header, at: 0x3e, size: 2))
            // An ELF64 section header is 64 bytes; larger entries are allowed, not beyond reason.
            guard (64...256).contains(entrySize), count > 0, namesIndex < count else {
                throw ELFError("its section header table is missing or damaged")
            }
            let tableSize = entrySize * count  // at most 256 × 65535: no overflow
            guard Self.lies(at: tableOffset, count: UInt64(tableSize), within: size) else {
                throw ELFError("it is truncated or damaged (the section header table lies beyond its end)")
            }
            let table = try Self.read(fd, size: size, at: tableOffset, count: tableSize)
            guard table.count == tableSize else { throw ELFError("it is truncated (section headers)") }
            let raw = (0..<count).map { i in
                let base = i * entrySize
                return (name: Self.integer(table, at: base, size: 4),
                        type: UInt32(truncatingIfNeeded: Self.integer(table, at: base + 4, size: 4)),
                        offset: Self.integer(table, at: base + 0x18, size: 8),
                        size: Self.integer(table, at: base + 0x20, size: 8))
            }
            let namesSection = raw[namesIndex]
            guard Self.lies(at: namesSection.offset, count: namesSection.size, within: size) else {
                throw ELFError("it is truncated or damaged (the section names lie beyond its end)")
            }
            let names = try Self.read(fd, size: size, at: namesSection.offset,
                                      count: Int(min(namesSection.size, 1 << 20)))
            sections = raw.map {
                Section(name: Self.string(names, at: $0.name), type: $0.type, offset: $0.offset, size: $0.size)
            }
            self.size = size
        } catch {
            Glibc.close(fd)
            throw error
        }
        self.fd = fd
    }

    func close() { _ = Glibc.close(fd) }

    /// The bytes of the section named `name`, at most `limit`; nil if there is no such section.
    func contents(of name: String, limit: Int = 1 << 20) throws(ELFError) -> [UInt8]? {
        guard let section = sections.first(where: { $0.name == name }) else { return nil }
        guard Self.lies(at: section.offset, count: section.size, within: size) else {
            throw ELFError("it is truncated or damaged (its \(name) section lies beyond its end)")
        }
        return try Self.read(fd, size: size, at: section.offset, count: Int(min(section.size, UInt64(limit))))
    }

    /// The build identity the library carries, if any.
    func buildIdentity() throws(ELFError) -> BuildIdentity? {
        guard let bytes = try contents(of: BuildIdentity.sectionName, limit: 4096) else { return nil }
        return BuildIdentity(text: String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self))
    }

    /// The libraries it needs (DT_NEEDED), e.g. `libmesos-1.11.0.so`: the one the agent must have.
    func neededLibraries() throws(ELFError) -> [String] {
        guard let dynamic = try contents(of: ".dynamic"), let strings = try contents(of: ".dynstr") else { return [] }
        return stride(from: 0, to: dynamic.count - 15, by: 16).compactMap { base in
            Self.integer(dynamic, at: base, size: 8) == 1  // DT_NEEDED
                ? Self.string(strings, at: Self.integer(dynamic, at: base + 8, size: 8)) : nil
        }
    }

    /// Whether `count` bytes at `offset` are all inside a file of `size` bytes (no wrap-around).
    static func lies(at offset: UInt64, count: UInt64, within size: UInt64) -> Bool {
        let (end, overflow) = offset.addingReportingOverflow(count)
        return !overflow && end <= size
    }

    /// Up to `count` bytes at `offset`, never past the end of a file of `size` bytes (which bounds the buffer).
    private static func read(_ fd: Int32, size: UInt64, at offset: UInt64, count: Int) throws(ELFError) -> [UInt8] {
        guard count > 0, offset < size else { return [] }
        let count = Int(min(UInt64(count), size - offset))
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            // offset < size ≤ Int64.max (an off_t), and offset + done < size.
            let at = off_t(offset + UInt64(done))
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, at) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw ELFError("cannot read it: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            done += n
        }
        return Array(bytes.prefix(done))
    }

    private static func integer(_ bytes: [UInt8], at offset: Int, size: Int) -> UInt64 {
        guard offset >= 0, size <= bytes.count, offset <= bytes.count - size else { return 0 }
        var value: UInt64 = 0
        for i in (0..<size).reversed() { value = value << 8 | UInt64(bytes[offset + i]) }
        return value
    }

    private static func string(_ bytes: [UInt8], at offset: UInt64) -> String {
        guard offset < UInt64(bytes.count) else { return "" }
        return String(decoding: bytes[Int(offset)...].prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// Why a file could not be read as a library.
struct ELFError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
