/// A parsed POSIX extended regular expression (SPEC §9), groups flattened: matching decides only whether the whole
/// value matches, so nothing needs the groups' positions.
indirect enum PatternNode {
    case empty
    case scalar(Unicode.Scalar)
    /// `.`: any character but NUL (POSIX).
    case any
    case set(ScalarSet)
    case assertion(Assertion)
    case concatenation([PatternNode])
    case alternation([PatternNode])
    /// `max` nil: unbounded.
    case repetition(PatternNode, min: Int, max: Int?)

    /// A zero-width condition on the position: `^` and `` \` `` (the value's start), `$` and `\'` (its end), and GNU's
    /// `\b`, `\B`, `\<`, `\>` (word boundaries; a word character is alphanumeric or `_`).
    enum Assertion {
        case start, end, wordBoundary, notWordBoundary, wordStart, wordEnd
    }
}

/// Reads a pattern as glibc's `regcomp(REG_EXTENDED)` — what `grep -E` takes — with glibc's error messages, so that a
/// pattern means here what it means to `grep -E` and is refused with the words glibc used. Refused beyond glibc:
/// back-references, a `)` that opens no group, ranges whose ends are not ASCII (glibc's C.UTF-8 refuses them too).
struct PatternParser {
    /// glibc's `RE_DUP_MAX`: the largest count of a bounded repetition.
    static let largestCount = 0x7FFF

    private let pattern: [Unicode.Scalar]
    private var index = 0
    private var depth = 0
    private var groupsOpened = 0
    private var groupsClosed: Set<Int> = []
    /// The first fault glibc accepts but these rules refuse: reported only if glibc would have accepted the rest.
    private var deferred: RegularExpression.SyntaxError?

    init(_ pattern: String) {
        self.pattern = Array(pattern.unicodeScalars)
    }

    static func fault(_ reason: String) -> RegularExpression.SyntaxError { RegularExpression.SyntaxError(reason: reason) }

    static let badRepeat = fault("Invalid preceding regular expression")
    static let unmatchedParenthesis = fault("Unmatched ( or \\(")
    static let unmatchedBracket = fault("Unmatched [, [^, [:, [., or [=")
    static let unmatchedBrace = fault("Unmatched \\{")
    static let badBrace = fault("Invalid content of \\{\\}")
    static let badRange = fault("Invalid range end")
    static let badCollation = fault("Invalid collation character")
    static let badClass = fault("Invalid character class name")
    static let tooBig = fault("Regular expression too big")

    mutating func parse() throws(RegularExpression.SyntaxError) -> PatternNode {
        let node = try alternation()
        if let deferred { throw deferred }
        return node
    }

    private var atEnd: Bool { index >= pattern.count }

    private mutating func alternation() throws(RegularExpression.SyntaxError) -> PatternNode {
        var branches = [try branch()]
        while !atEnd && pattern[index] == "|" {
            index += 1
            branches.append(try branch())
        }
        return branches.count == 1 ? branches[0] : .alternation(branches)
    }

    private mutating func branch() throws(RegularExpression.SyntaxError) -> PatternNode {
        var pieces: [PatternNode] = []
        while !atEnd && pattern[index] != "|" && !(pattern[index] == ")" && depth > 0) {
            pieces.append(try piece())
        }
        switch pieces.count {
        case 0: return .empty
        case 1: return pieces[0]
        default: return .concatenation(pieces)
        }
    }

    /// An atom and its repetitions. A repetition with nothing before it, or after an anchor, is glibc's
    /// "Invalid preceding regular expression".
    private mutating func piece() throws(RegularExpression.SyntaxError) -> PatternNode {
        if Self.isRepetition(pattern[index]) { throw Self.badRepeat }
        var (node, repeatable) = try atom()
        while !atEnd && Self.isRepetition(pattern[index]) {
            guard repeatable else { throw Self.badRepeat }
            let operation = pattern[index]
            index += 1
            switch operation {
            case "*": node = .repetition(node, min: 0, max: nil)
            case "+": node = .repetition(node, min: 1, max: nil)
            case "?": node = .repetition(node, min: 0, max: 1)
            default:
                let (min, max) = try interval()
                node = .repetition(node, min: min, max: max)
            }
        }
        return node
    }

    private static func isRepetition(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "*" || scalar == "+" || scalar == "?" || scalar == "{"
    }

    private mutating func atom() throws(RegularExpression.SyntaxError) -> (PatternNode, repeatable: Bool) {
        let scalar = pattern[index]
        index += 1
        switch scalar {
        case "(":
            depth += 1
            groupsOpened += 1
            let number = groupsOpened
            let inner = try alternation()
            guard !atEnd && pattern[index] == ")" else { throw Self.unmatchedParenthesis }
            index += 1
            depth -= 1
            groupsClosed.insert(number)
            return (inner, true)
        case ")":
            // glibc reads it as a character; it would close the group of a `^(…)$` an author has in mind.
            defer_(Self.fault("unmatched ) (write \\) for the character)"))
            return (.scalar(scalar), true)
        case ".": return (.any, true)
        case "^": return (.assertion(.start), false)
        case "$": return (.assertion(.end), false)
        case "[": return (.set(try bracket()), true)
        case "\\": return try escape()
        default: return (.scalar(scalar), true)
        }
    }

    private mutating func defer_(_ fault: RegularExpression.SyntaxError) {
        if deferred == nil { deferred = fault }
    }

    private mutating func escape() throws(RegularExpression.SyntaxError) -> (PatternNode, repeatable: Bool) {
        guard !atEnd else { throw Self.fault("Trailing backslash") }
        let escaped = pattern[index]
        index += 1
        switch escaped {
        case "1"..."9":
            let number = Int(escaped.value - 0x30)
            guard groupsClosed.contains(number) else { throw Self.fault("Invalid back reference") }
            defer_(Self.fault("back-references (\\\(escaped)) are refused: matching one can take time polynomial in "
                + "the length of the value, which a tenant chooses"))
            return (.empty, true)
        case "w", "W": return (.set(ScalarSet.word(negated: escaped == "W")), true)
        case "s", "S": return (.set(ScalarSet.space(negated: escaped == "S")), true)
        case "b": return (.assertion(.wordBoundary), false)
        case "B": return (.assertion(.notWordBoundary), false)
        case "<": return (.assertion(.wordStart), false)
        case ">": return (.assertion(.wordEnd), false)
        case "`": return (.assertion(.start), false)
        case "'": return (.assertion(.end), false)
        default: return (.scalar(escaped), true)
        }
    }

    /// `{m}`, `{m,}`, `{m,n}`, `{,n}` (GNU: `{0,n}`), read as glibc's `parse_dup_op` and `fetch_number` do.
    private mutating func interval() throws(RegularExpression.SyntaxError) -> (Int, Int?) {
        // A number: -1 none, -2 not a number (or the pattern ended first).
        var stop: Unicode.Scalar? = nil
        func number(_ parser: inout PatternParser) -> Int {
            var value = -1
            while true {
                guard !parser.atEnd else {
                    stop = nil
                    return -2
                }
                var scalar = parser.pattern[parser.index]
                var character = true
                parser.index += 1
                if scalar == "\\" && !parser.atEnd {
                    scalar = parser.pattern[parser.index]
                    parser.index += 1
                    character = !("1"..."9").contains(scalar) && !"wWsSbB<>`'".unicodeScalars.contains(scalar)
                } else if scalar == "}" {
                    stop = scalar
                    return value
                }
                if scalar == "," {
                    stop = scalar
                    return value
                }
                let digit = character && ("0"..."9").contains(scalar)
                value = !digit || value == -2 ? -2
                    : value == -1 ? Int(scalar.value - 0x30) : min(Self.largestCount + 1, value * 10 + Int(scalar.value - 0x30))
            }
        }
        var start = number(&self)
        if start == -1 {
            guard stop == "," else { throw Self.badBrace }  // `{}`
            start = 0
        }
        var end: Int = start
        if start != -2 {
            if stop == "," {
                end = number(&self)
            } else if stop != "}" {
                end = -2
            }
        }
        if start == -2 || end == -2 {
            throw stop == nil && atEnd ? Self.unmatchedBrace : Self.badBrace
        }
        if (end != -1 && start > end) || stop != "}" { throw Self.badBrace }
        if (end == -1 ? start : end) > Self.largestCount { throw Self.tooBig }
        return (start, end == -1 ? nil : end)
    }

    /// A bracket expression, read as glibc's `parse_bracket_exp`: `]` first is a member, `-` first or last is a
    /// member, `[:class:]`, `[.c.]` and `[=c=]` (one ASCII character each), a backslash is an ordinary member.
    private mutating func bracket() throws(RegularExpression.SyntaxError) -> ScalarSet {
        var set = ScalarSet()
        // glibc's word for a `[` or `[^` that ends the pattern.
        guard !atEnd else { throw Self.fault("Invalid regular expression") }
        if pattern[index] == "^" {
            set.negated = true
            index += 1
            guard !atEnd else { throw Self.fault("Invalid regular expression") }
        }
        var first = true
        while true {
            // The first `]` is a member; the loop ends at any later one.
            let start = try bracketElement(acceptHyphen: first)
            first = false
            guard !atEnd else { throw Self.unmatchedBracket }
            var range = false
            if start.rangeable && pattern[index] == "-" {
                guard index + 1 < pattern.count else { throw Self.unmatchedBracket }
                if pattern[index + 1] != "]" {
                    index += 1
                    range = true
                }
            }
            if range {
                let end = try bracketElement(acceptHyphen: true)
                guard let low = start.character, let high = end.character, end.rangeable else { throw Self.badRange }
                guard low.isASCII && high.isASCII else { throw Self.badCollation }
                guard low.value <= high.value else { throw Self.badRange }
                for value in low.value...high.value { set.insert(Unicode.Scalar(value)!) }
            } else if let character = start.character {
                set.insert(character)
            } else if let name = start.className {
                guard let characterClass = CharacterClass(name: name) else { throw Self.badClass }
                set.add(characterClass)
            }
            guard !atEnd else { throw Self.unmatchedBracket }
            if pattern[index] == "]" {
                index += 1
                return set
            }
        }
    }

    private struct BracketElement {
        var character: Unicode.Scalar?
        var className: String?
        /// Not a class or an equivalence class: can start or end a range.
        var rangeable: Bool
    }

    private mutating func bracketElement(acceptHyphen: Bool) throws(RegularExpression.SyntaxError) -> BracketElement {
        guard !atEnd else { throw Self.unmatchedBracket }
        let scalar = pattern[index]
        index += 1
        if scalar == "[", !atEnd, let delimiter = [":", ".", "="].first(where: { $0 == pattern[index] }) {
            index += 1
            var name = ""
            while true {
                // glibc reads at most 31 bytes of a name.
                guard index + 1 < pattern.count, name.utf8.count < 32 else { throw Self.unmatchedBracket }
                if pattern[index] == delimiter && pattern[index + 1] == "]" { break }
                name.unicodeScalars.append(pattern[index])
                index += 1
            }
            index += 2
            if delimiter == ":" { return BracketElement(className: name, rangeable: false) }
            // Without a collation table (C.UTF-8), a collating symbol or an equivalence class is one ASCII character.
            guard name.utf8.count == 1, let character = name.unicodeScalars.first else { throw Self.badCollation }
            return BracketElement(character: character, rangeable: delimiter == ".")
        }
        if scalar == "-" && !acceptHyphen && (atEnd || pattern[index] != "]") { throw Self.badRange }
        return BracketElement(character: scalar, rangeable: true)
    }
}
