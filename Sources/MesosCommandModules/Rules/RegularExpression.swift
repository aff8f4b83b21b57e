import Glibc

/// A POSIX extended regular expression (what `grep -E` takes), matched against a whole value: the pattern is
/// anchored as `^(pattern)$`. glibc's matcher is fast (a rule is decided in microseconds, without a fork) and
/// safe to use from several threads at once.
final class RegularExpression: @unchecked Sendable {
    let pattern: String
    private let compiled: UnsafeMutablePointer<regex_t>

    struct SyntaxError: Error {
        var reason: String
    }

    init(_ pattern: String) throws(SyntaxError) {
        // The bare pattern first: wrapped, an unbalanced one (`ml)|(.*`) could compile and anchor otherwise.
        let bare = try Self.compile(pattern)
        regfree(bare)
        bare.deallocate()
        // Compiled before any stored property is set: a throw then does not run deinit.
        self.compiled = try Self.compile("^(" + pattern + ")$")
        self.pattern = pattern
    }

    private static func compile(_ pattern: String) throws(SyntaxError) -> UnsafeMutablePointer<regex_t> {
        let compiled = UnsafeMutablePointer<regex_t>.allocate(capacity: 1)
        let code = regcomp(compiled, pattern, REG_EXTENDED | REG_NOSUB)
        guard code == 0 else {
            var buffer = [CChar](repeating: 0, count: 256)
            regerror(code, compiled, &buffer, buffer.count)
            compiled.deallocate()
            throw SyntaxError(reason: String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return compiled
    }

    deinit {
        regfree(compiled)
        compiled.deallocate()
    }

    /// Whether the whole of `value` matches.
    func matchesWhole(_ value: String) -> Bool {
        regexec(compiled, value, 0, nil, 0) == 0
    }
}
