import Glibc
import Testing

@testable import MesosCommandModules
@testable import mesos_command_modules

/// Issue 19: `inspect` and `validate` read a library's section headers themselves (ELFFile); no file — damaged,
/// truncated or crafted — makes them trap: every offset and size is checked against the file.
@Suite struct ELFFileTests {
    let sandbox = Sandbox()

    /// A 64-bit little-endian shared-object ELF file: the header, each section's bytes, `.shstrtab`, then the
    /// section header table (a null section first). `patch` changes the result at the offsets it is given.
    func craft(_ name: String, sections: [(name: String, type: UInt32, bytes: [UInt8])],
               patch: (inout [UInt8], _ table: Int) -> Void = { _, _ in }) -> String {
        var names: [UInt8] = [0]
        var nameOffsets: [Int] = []
        for section in sections + [(name: ".shstrtab", type: 3, bytes: [])] {
            nameOffsets.append(names.count)
            names += Array(section.name.utf8) + [0]
        }
        var file = [UInt8](repeating: 0, count: 64)
        file.replaceSubrange(0..<6, with: [0x7f, 0x45, 0x4c, 0x46, 2, 1])
        put(&file, 16, 2, 3)  // ET_DYN
        var placed: [(offset: Int, size: Int)] = []
        for section in sections {
            placed.append((file.count, section.bytes.count))
            file += section.bytes
        }
        placed.append((file.count, names.count))
        file += names
        let table = file.count
        let all = sections.map { ($0.type) } + [3]
        file += [UInt8](repeating: 0, count: 64)  // the null section
        for (i, type) in all.enumerated() {
            var header = [UInt8](repeating: 0, count: 64)
            put(&header, 0, 4, UInt64(nameOffsets[i]))
            put(&header, 4, 4, UInt64(type))
            put(&header, 0x18, 8, UInt64(placed[i].offset))
            put(&header, 0x20, 8, UInt64(placed[i].size))
            file += header
        }
        put(&file, 0x28, 8, UInt64(table))
        put(&file, 0x3a, 2, 64)
        put(&file, 0x3c, 2, UInt64(all.count + 1))
        put(&file, 0x3e, 2, UInt64(all.count))
        patch(&file, table)
        let path = sandbox.path + "/" + name
        write(path, file)
        return path
    }

    func put(_ bytes: inout [UInt8], _ offset: Int, _ size: Int, _ value: UInt64) {
        for i in 0..<size { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    func write(_ path: String, _ bytes: [UInt8]) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0)
        _ = FileIO.writeAll(fd, bytes)
        close(fd)
    }

    var identity: [UInt8] {
        Array(BuildIdentity(version: "1.0.0", mesosVersion: "1.11.0", mesosCommit: "04bc7ee1").text.utf8) + [0]
    }

    /// The four files of the issue, each of which made `inspect` trap on main (rc 132/134): each is now a
    /// one-line reason, exit 1, for `inspect` and `validate` alike.
    @Test func theFourCraftedFilesOfTheIssueAreReasonsNotCrashes() {
        let tableAtTheEnd = craft("table-offset.so", sections: []) { file, _ in put(&file, 0x28, 8, .max) }
        let namesBeyond = craft("names-offset.so", sections: []) { file, table in
            put(&file, table + 64 + 0x18, 8, 1 << 63)  // .shstrtab's offset
        }
        var dynamic = [UInt8](repeating: 0, count: 32)
        put(&dynamic, 0, 8, 1)  // DT_NEEDED
        put(&dynamic, 8, 8, 1 << 63)
        let needed = craft("needed.so", sections: [
            (".mesos_command_modules", 1, identity), (".dynamic", 6, dynamic),
            (".dynstr", 3, Array("\0libmesos-1.11.0.so\0".utf8)),
        ])
        let hugeTable = craft("huge-table.so", sections: []) { file, _ in
            file = Array(file[0..<64])
            put(&file, 0x28, 8, 0)
            put(&file, 0x3a, 2, 0xFFFF)
            put(&file, 0x3c, 2, 0xFFFF)
            put(&file, 0x3e, 2, 0)
        }
        let expected = [
            tableAtTheEnd: "it is truncated or damaged (the section header table lies beyond its end)",
            namesBeyond: "it is truncated or damaged (the section names lie beyond its end)",
            hugeTable: "its section header table is missing or damaged",
        ]
        for (path, reason) in expected {
            let inspect = runCLI(["inspect", path])
            #expect(inspect.status == 1, "\(path): \(inspect.stderr)")
            #expect(inspect.stderr == "\(path): \(reason)\n")
        }
        // DT_NEEDED past .dynstr names nothing: the library is still identified.
        let inspect = runCLI(["inspect", needed])
        #expect(inspect.status == 0, "\(inspect.stderr)")
        #expect(inspect.stdout
            == "\(needed)\n  mesos-command-modules 1.0.0\n  built for Mesos 1.11.0, commit 04bc7ee1\n")
        for path in [tableAtTheEnd, namesBeyond, hugeTable, needed] {
            let manifest = sandbox.path + "/modules.json"
            sandbox.write(manifest, #"{"libraries":[{"file":"\#(path)","modules":[{"#
                + #""name":"com_criteo_mesos_CommandHook","parameters":[{"key":"module_name","value":"h"}]}]}]}"#)
            let validate = runCLI(["validate", "--mesos-agent", "/bin/false", manifest])
            #expect(validate.status == 0 || validate.status == 1, "\(path): \(validate.status) \(validate.stderr)")
            #expect(validate.stdout.contains("library \(path)"), "\(validate.stdout)")
        }
    }

    @Test func aFileThatIsNotRegularIsRefusedWithoutBlocking() {
        let fifo = sandbox.path + "/fifo.so"
        #expect(mkfifo(fifo, 0o644) == 0)
        let inspect = runCLI(["inspect", fifo, "/dev/zero"])
        #expect(inspect.status == 1)
        #expect(inspect.stderr == "\(fifo): not a regular file\n/dev/zero: not a regular file\n")
    }

    /// Thousands of truncations and bit flips of a real library (built here with a build identity and a
    /// DT_NEEDED), read in this process: a trap would end the test run. Bounded memory: nothing read is larger
    /// than the file. A fixed seed keeps any failure reproducible.
    @Test func truncatedAndBitFlippedLibrariesNeverCrashTheReader() throws {
        let source = sandbox.path + "/lib.c"
        let text = String(decoding: identity.dropLast(), as: UTF8.self).replacingAll("\n", with: "\\n")
        sandbox.write(source, """
            __attribute__((section(".mesos_command_modules"), used)) const char identity[] = "\(text)";
            double f(double x) { return x; }
            """)
        let library = sandbox.path + "/libmesos_command_modules.so"
        #expect(shell("cc -shared -fPIC -o '\(library)' '\(source)' -Wl,--no-as-needed -lm") == 0)
        guard case .bytes(let original) = FileIO.read(path: library, limit: 1 << 24) else {
            Issue.record("cannot read \(library)")
            return
        }
        guard case .identified(_, _) = LibraryReport(path: library) else {
            Issue.record("the unchanged library is not identified")
            return
        }
        // The section header table: e_shoff, e_shentsize × e_shnum.
        let start = (0..<8).reduce(0) { $0 | Int(original[0x28 + $1]) << (8 * $1) }
        let table = start..<(start + (Int(original[0x3a]) | Int(original[0x3b]) << 8) * Int(original[0x3c]))
        #expect(table.upperBound == original.count && table.count >= 64 * 10, "\(table) of \(original.count)")
        let mutant = sandbox.path + "/mutant.so"
        let file = open(mutant, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        #expect(file >= 0)
        defer { close(file) }
        var random = SplitMix64(seed: 19)
        var identified = 0
        let residentBefore = residentBytes()
        let fdsBefore = openFDCount()
        for round in 0..<10000 {
            var bytes = original
            if round % 3 == 0 {
                bytes = Array(bytes[0..<Int(random.next() % UInt64(bytes.count))])
            } else {
                for _ in 0..<(1 + random.next() % 8) {
                    // Half the flips in the header and the section table, where offsets and sizes live.
                    let anywhere = Int(random.next() % UInt64(bytes.count))
                    let header = Int(random.next() % 64)
                    let inTable = table.lowerBound + Int(random.next() % UInt64(table.count))
                    let index = random.next() % 2 == 0 ? (random.next() % 2 == 0 ? header : inTable) : anywhere
                    bytes[index] ^= UInt8(1) << (random.next() % 8)
                }
            }
            // Rewritten in place, not truncated to 0 first: ext4 flushes a file truncated to 0 when it is closed.
            _ = bytes.withUnsafeBytes { pwrite(file, $0.baseAddress, $0.count, 0) }
            ftruncate(file, off_t(bytes.count))
            if case .identified = LibraryReport(path: mutant) { identified += 1 }
        }
        // Many mutants stay readable: the fuzzing reached the sections and their contents, not only the header.
        #expect(identified > 1000 && identified < 9000, "\(identified) of 10000 identified")
        #expect(residentBytes() - residentBefore < 64 << 20)
        #expect(openFDCount() == fdsBefore, "every file opened is closed, whatever it held")
    }
}
