/// A POSIX extended regular expression (what `grep -E` takes, read as glibc reads it: ``PatternParser``), matched
/// against a whole value (SPEC §9):
///
/// - whole-value: as if anchored `^(pattern)$`. Back-references are refused, and `(`/`)` must pair up, so that
///   the pattern's own groups are the author's, numbered as written;
/// - the value is matched by its length, not as a C string: a NUL inside it is a character like any other (one
///   that `.` does not match, as in POSIX) and never ends the value early;
/// - values are UTF-8 text: `.` or `[^a]` is one character (a Unicode code point), not one byte; classes
///   (`[[:alpha:]]`) are the C.UTF-8 locale's.
///
/// Matching is our own Thompson NFA simulation (``PatternProgram``), not glibc's `regexec`, whose cost is not linear
/// in the value (seconds on a 32 KiB label for `(a|b)*a(a|b){18}`): here it is at most (the pattern's steps ×
/// the value's characters), and a pattern has at most ``PatternProgram/maximumSteps`` steps. Safe to use from
/// several threads at once.
final class RegularExpression: Sendable {
    let pattern: String
    private let program: PatternProgram

    struct SyntaxError: Error {
        var reason: String
        /// Valid, but past the bound on its size.
        var tooBig = false
    }

    init(_ pattern: String) throws(SyntaxError) {
        if pattern.utf8.contains(0) {
            throw SyntaxError(reason: "a pattern cannot hold a NUL character")
        }
        var parser = PatternParser(pattern)
        let node = try parser.parse()
        do {
            program = try PatternProgram(node)
        } catch {
            throw SyntaxError(
                reason: "it compiles to more than the \(PatternProgram.maximumSteps) steps a pattern may have "
                    + "(a bounded repetition counts what it repeats once per repetition: x{100} is 100 x; "
                    + "matching costs each character of the value up to one test per step)",
                tooBig: true)
        }
        self.pattern = pattern
    }

    /// Whether the whole of `value` matches, NULs included; nil if `deadline` passed before it was decided.
    func matchesWhole(_ value: String, until deadline: Deadline? = nil) -> Bool? {
        program.matchesWhole(value, until: deadline)
    }

    /// Whether the whole of `value` matches, however long it takes (at most steps × characters).
    func matchesWhole(_ value: String) -> Bool { program.matchesWhole(value, until: nil)! }
}
