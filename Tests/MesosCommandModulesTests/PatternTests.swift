import Glibc
import Testing

@testable import MesosCommandModules

/// SPEC §9: a `when` pattern is POSIX extended (as `grep -E`), matched whole, in time linear in the value. The
/// module's own matcher is compared with glibc's `regcomp`/`regexec` (what `grep -E` runs, and what the module
/// used before) on thousands of generated patterns and values.
@Suite struct PatternTests {
    /// glibc's verdict on `pattern` for `value` under C.UTF-8, as the module used to ask it: the bare pattern
    /// compiled first (its error, if any), then `^(pattern)$` run on the value's bytes (REG_STARTEND).
    final class GlibcPattern {
        private var bare = regex_t()
        private var wrapped = regex_t()
        let error: String?
        private static var locale: locale_t? { CharacterLocale.locale }

        init(_ pattern: String) {
            let previous = uselocale(Self.locale)
            defer { uselocale(previous) }
            let code = regcomp(&bare, pattern, REG_EXTENDED | REG_NOSUB)
            guard code == 0 else {
                var buffer = [CChar](repeating: 0, count: 256)
                regerror(code, &bare, &buffer, buffer.count)
                error = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                return
            }
            regfree(&bare)
            error = regcomp(&wrapped, "^(" + pattern + ")$", REG_EXTENDED | REG_NOSUB) == 0 ? nil : "wrapped"
        }

        deinit { if error == nil { regfree(&wrapped) } }

        func matches(_ value: String) -> Bool {
            let previous = uselocale(Self.locale)
            defer { uselocale(previous) }
            var bounds = regmatch_t(rm_so: 0, rm_eo: regoff_t(value.utf8.count))
            return value.withCString { regexec(&wrapped, $0, 1, &bounds, REG_STARTEND) } == 0
        }
    }

    /// A fixed-seed generator (SplitMix64): the same patterns at every run.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static let atoms = ["a", "b", "c", "é", ".", "[ab]", "[^a]", "[a-c]", "[[:alpha:]]", "[[:digit:]]", "[[:space:]_]",
                        "[]a-]", "[^[:alnum:]]", #"\w"#, #"\W"#, #"\s"#, #"\."#, "x", "1", " ", "日"]
    static let anchors = ["^", "$", #"\b"#, #"\B"#, #"\<"#, #"\>"#]
    static let repetitions = ["*", "+", "?", "{0,2}", "{1}", "{2,}", "{,1}", "{1,3}", "**"]

    static func pattern(_ random: inout Generator, depth: Int = 0) -> String {
        var branches: [String] = []
        for _ in 0..<(Int.random(in: 0..<6, using: &random) == 0 ? 2 : 1) {
            var branch = ""
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let pick = Int.random(in: 0..<10, using: &random)
                if pick == 0 && depth < 3 {
                    branch += "(" + pattern(&random, depth: depth + 1) + ")"
                } else if pick == 1 {
                    branch += anchors.randomElement(using: &random)!
                    continue
                } else {
                    branch += atoms.randomElement(using: &random)!
                }
                if Int.random(in: 0..<3, using: &random) == 0 { branch += repetitions.randomElement(using: &random)! }
            }
            branches.append(branch)
        }
        return branches.joined(separator: "|")
    }

    /// No newline: glibc's `regexec` takes `^` after a newline it has read (and `$` before one) for a line's start
    /// (end), even without REG_NEWLINE; here they are the value's start and end only (see below).
    static let characters: [Unicode.Scalar] = ["a", "b", "c", "é", " ", "_", "1", "-", "x", ".", "\u{0}", "日", "\t"]

    static func value(_ random: inout Generator) -> String {
        var value = ""
        for _ in 0..<Int.random(in: 0...8, using: &random) {
            value.unicodeScalars.append(characters.randomElement(using: &random)!)
        }
        return value
    }

    /// Patterns generated from atoms, classes, anchors, repetitions, groups and alternation, each matched against
    /// values that the pattern itself tends to produce: the module agrees with glibc on every one.
    @Test func theMatcherAgreesWithGlibcOnGeneratedPatterns() throws {
        var random = Generator(state: 19)
        var disagreements: [String] = []
        var compared = 0
        var matched = 0
        for _ in 0..<3000 {
            let text = Self.pattern(&random)
            let glibc = GlibcPattern(text)
            guard glibc.error == nil else {
                disagreements.append("glibc refuses /\(text)/: \(glibc.error!)")
                continue
            }
            let ours: RegularExpression
            do {
                ours = try RegularExpression(text)
            } catch {
                disagreements.append("/\(text)/ refused: \(error.reason)")
                continue
            }
            for _ in 0..<40 {
                let value = Self.value(&random)
                let expected = glibc.matches(value)
                compared += 1
                if expected { matched += 1 }
                if ours.matchesWhole(value) != expected {
                    disagreements.append("/\(text)/ on \(value.debugDescription): glibc \(expected)")
                }
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.count): \(disagreements.prefix(20))")
        #expect(compared == 120_000 && matched > 2000, "\(matched) of \(compared) values matched")
    }

    /// Short strings of the syntax's characters, most of them not patterns: the module refuses what glibc refuses,
    /// with glibc's words, accepts what it accepts (but back-references and a `)` that opens no group), and then
    /// decides alike.
    @Test func theSyntaxAgreesWithGlibcOnGeneratedStrings() throws {
        let alphabet: [Unicode.Scalar] = ["a", "b", "(", ")", "[", "]", "{", "}", "|", "*", "+", "?", ".", "^", "$",
                                          "\\", "-", ",", ":", "1", "2", "=", "w"]
        var random = Generator(state: 9)
        var disagreements: [String] = []
        var accepted = 0
        for _ in 0..<60000 {
            var text = ""
            for _ in 0..<Int.random(in: 1...7, using: &random) {
                text.unicodeScalars.append(alphabet.randomElement(using: &random)!)
            }
            let glibc = GlibcPattern(text)
            let ours = Result { () throws(RegularExpression.SyntaxError) in try RegularExpression(text) }
            switch (glibc.error, ours) {
            case (let error?, .failure(let refusal)):
                if error != refusal.reason && error != "wrapped" {
                    disagreements.append("/\(text)/: glibc '\(error)', ours '\(refusal.reason)'")
                }
            case (let error?, .success):
                disagreements.append("/\(text)/: glibc refuses it (\(error)), ours accepts it")
            case (nil, .failure(let refusal)):
                if !refusal.reason.hasPrefix("back-references") && !refusal.reason.hasPrefix("unmatched )") {
                    disagreements.append("/\(text)/: glibc accepts it, ours refuses it: \(refusal.reason)")
                }
            case (nil, .success(let ours)):
                accepted += 1
                for _ in 0..<10 {
                    var value = ""
                    for _ in 0..<Int.random(in: 0...5, using: &random) {
                        value.unicodeScalars.append(alphabet.randomElement(using: &random)!)
                    }
                    if ours.matchesWhole(value) != glibc.matches(value) {
                        disagreements.append("/\(text)/ on \(value.debugDescription): glibc \(glibc.matches(value))")
                    }
                }
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.count): \(disagreements.prefix(20))")
        #expect(accepted > 2000, "\(accepted) accepted")
    }
}

extension PatternTests {
    /// `^` and `$` are the value's start and end, never a line's: a value is one string, not lines (glibc's
    /// `regexec` agrees at the pattern's ends but, inside a pattern, takes `^` after a newline it has read for a
    /// line's start: `\s^_` matched "\n_" there).
    @Test(arguments: [
        (#"\s^_"#, "\n_", false), ("x$\\s", "x\n", false), ("a\\s*", "a\n", true), ("ml", "x\nml", false),
        (".*", "a\nb", true), ("(^a|b)+", "ab", true), ("(^a|b)+", "ba", false), ("a$|b", "a", true),
    ])
    func anAnchorIsTheValuesStartOrEnd(_ pattern: String, _ value: String, _ matches: Bool) throws {
        #expect(try RegularExpression(pattern).matchesWhole(value) == matches)
    }
}
