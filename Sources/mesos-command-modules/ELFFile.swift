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

    /// Opens `path` and reads its section headers; the error says what the file is instead.
    init(path: String) throws(ELFError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ELFError("cannot open it: \(String(cString: strerror(errno)))") }
        do throws(ELFError) {
            let header = try Self.read(fd, at: 0, count: 64)
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
            guard entrySize >= 64, count > 0, count < 65536, namesIndex < count else {
                throw ELFError("its section header table is missing or damaged")
            }
            let table = try Self.read(fd, at: tableOffset, count: entrySize * count)
            guard table.count == entrySize * count else { throw ELFError("it is truncated (section headers)") }
            let raw = (0..<count).map { i in
                let base = i * entrySize
                return (name: Int(Self.integer(table, at: base, size: 4)),
                        type: UInt32(Self.integer(table, at: base + 4, size: 4)),
                        offset: Self.integer(table, at: base + 0x18, size: 8),
                        size: Self.integer(table, at: base + 0x20, size: 8))
            }
            let names = try Self.read(fd, at: raw[namesIndex].offset, count: Int(min(raw[namesIndex].size, 1 << 20)))
            sections = raw.map {
                Section(name: Self.string(names, at: $0.name), type: $0.type, offset: $0.offset, size: $0.size)
            }
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
        return try Self.read(fd, at: section.offset, count: Int(min(section.size, UInt64(limit))))
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
                ? Self.string(strings, at: Int(Self.integer(dynamic, at: base + 8, size: 8))) : nil
        }
    }

    private static func read(_ fd: Int32, at offset: UInt64, count: Int) throws(ELFError) -> [UInt8] {
        guard count > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes {
                pread(fd, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw ELFError("cannot read it: \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            done += n
        }
        return Array(bytes.prefix(done))
    }

    private static func integer(_ bytes: [UInt8], at offset: Int, size: Int) -> UInt64 {
        guard offset >= 0, offset + size <= bytes.count else { return 0 }
        var value: UInt64 = 0
        for i in (0..<size).reversed() { value = value << 8 | UInt64(bytes[offset + i]) }
        return value
    }

    private static func string(_ bytes: [UInt8], at offset: Int) -> String {
        guard offset >= 0, offset < bytes.count else { return "" }
        return String(decoding: bytes[offset...].prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// Why a file could not be read as a library.
struct ELFError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
