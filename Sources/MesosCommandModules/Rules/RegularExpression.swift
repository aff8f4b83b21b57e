import Glibc

/// A POSIX extended regular expression (what `grep -E` takes), matched against a whole value (SPEC §9):
///
/// - anchored as `^(pattern)$`. Back-references are refused, and `(`/`)` must pair up, so that the wrapper's
///   group changes nothing an author can observe;
/// - the value is matched by its length, not as a C string: a NUL inside it is a character like any other (one
///   that `.` does not match, as in POSIX) and never ends the value early;
/// - under a UTF-8 locale (C.UTF-8), so that `.` or `[^a]` is one character (a Unicode code point), not one byte.
///
/// Without back-references, glibc's matcher takes time linear in the value's length; a rule is decided in
/// microseconds, without a fork, and it is safe to use from several threads at once.
final class RegularExpression: @unchecked Sendable {
    let pattern: String
    private let compiled: UnsafeMutablePointer<regex_t>

    struct SyntaxError: Error {
        var reason: String
    }

    init(_ pattern: String) throws(SyntaxError) {
        if pattern.utf8.contains(0) {
            throw SyntaxError(reason: "a pattern cannot hold a NUL character")
        }
        // The bare pattern first: wrapped, an unbalanced one (`ml)|(.*`) could compile and anchor otherwise.
        let bare = try Self.compile(pattern)
        regfree(bare)
        bare.deallocate()
        try Self.checkGroups(pattern)
        // Compiled before any stored property is set: a throw then does not run deinit.
        self.compiled = try Self.compile("^(" + pattern + ")$")
        self.pattern = pattern
    }

    private static func compile(_ pattern: String) throws(SyntaxError) -> UnsafeMutablePointer<regex_t> {
        let compiled = UnsafeMutablePointer<regex_t>.allocate(capacity: 1)
        let code = CharacterLocale.using { regcomp(compiled, pattern, REG_EXTENDED | REG_NOSUB) }
        guard code == 0 else {
            var buffer = [CChar](repeating: 0, count: 256)
            regerror(code, compiled, &buffer, buffer.count)
            compiled.deallocate()
            throw SyntaxError(reason: String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return compiled
    }

    /// Refuses what the `^(…)$` wrapper would change, or what could make matching slow: a back-reference
    /// (`\1` … `\9` outside a bracket expression) costs time polynomial in the value, which a tenant chooses;
    /// an unmatched `)` (glibc reads it as a character) would close the wrapper's group instead.
    private static func checkGroups(_ pattern: String) throws(SyntaxError) {
        let characters = Array(pattern.unicodeScalars)
        var depth = 0
        var index = 0
        while index < characters.count {
            switch characters[index] {
            case "\\":
                if index + 1 < characters.count, ("1"..."9").contains(characters[index + 1]) {
                    throw SyntaxError(reason: "back-references (\\\(characters[index + 1])) are refused: matching one "
                        + "can take time polynomial in the length of the value, which a tenant chooses")
                }
                index += 2
                continue
            case "[":
                index = endOfBracket(characters, from: index)
            case "(":
                depth += 1
            case ")":
                guard depth > 0 else {
                    throw SyntaxError(reason: "unmatched ) (write \\) for the character)")
                }
                depth -= 1
            default:
                break
            }
            index += 1
        }
    }

    /// The index of the `]` that closes the bracket expression opening at `start` (POSIX: a `]` first, or
    /// after `^`, is a member; `[:alpha:]`, `[.x.]` and `[=x=]` nest; a backslash is an ordinary member).
    private static func endOfBracket(_ characters: [Unicode.Scalar], from start: Int) -> Int {
        var index = start + 1
        if index < characters.count && characters[index] == "^" { index += 1 }
        if index < characters.count && characters[index] == "]" { index += 1 }
        while index < characters.count && characters[index] != "]" {
            if characters[index] == "[", index + 1 < characters.count, [":", ".", "="].contains(characters[index + 1]) {
                let delimiter = characters[index + 1]
                var end = index + 2
                while end + 1 < characters.count && !(characters[end] == delimiter && characters[end + 1] == "]") {
                    end += 1
                }
                index = end + 2
                continue
            }
            index += 1
        }
        return index
    }

    deinit {
        regfree(compiled)
        compiled.deallocate()
    }

    /// Whether the whole of `value` matches, NULs included.
    func matchesWhole(_ value: String) -> Bool {
        // REG_STARTEND: the value is the bytes [rm_so, rm_eo) of its buffer, not a C string ended by its first NUL.
        var bounds = regmatch_t(rm_so: 0, rm_eo: regoff_t(value.utf8.count))
        return value.withCString { characters in
            CharacterLocale.using { regexec(compiled, characters, 1, &bounds, REG_STARTEND) } == 0
        }
    }
}

/// The C.UTF-8 locale (en_US.UTF-8 if missing; only its character classes matter), which `regcomp` and `regexec` use on this thread only (`uselocale`), leaving the agent's
/// locale as it is. nil on a host without it: patterns then match bytes (the module warns at load).
enum CharacterLocale {
    private struct Handle: @unchecked Sendable {
        let locale: locale_t?
    }

    private static let handle = Handle(
        locale: newlocale(LC_CTYPE_MASK, "C.UTF-8", nil) ?? newlocale(LC_CTYPE_MASK, "en_US.UTF-8", nil))

    /// Whether patterns match characters (true) or bytes.
    static var isAvailable: Bool { handle.locale != nil }

    /// Runs `body` under C.UTF-8 on this thread, then restores the thread's previous locale.
    static func using<Result>(_ body: () -> Result) -> Result {
        guard let locale = handle.locale else { return body() }
        let previous = uselocale(locale)
        defer { uselocale(previous) }
        return body()
    }
}
