import CMesosCommandSpawn
import Glibc

/// The characters a bracket expression (or `\w`, `\s`) stands for. ASCII is decided by one bit each, everything
/// else through its members and classes.
struct ScalarSet: Sendable {
    /// ASCII members (before negation).
    private var low: UInt64 = 0
    private var high: UInt64 = 0
    /// Non-ASCII members, sorted.
    private var members: [UInt32] = []
    private var classes: [CharacterClass] = []
    var negated = false

    mutating func insert(_ scalar: Unicode.Scalar) {
        let value = scalar.value
        switch value {
        case 0..<64: low |= 1 << value
        case 64..<128: high |= 1 << (value - 64)
        default:
            if !members.contains(value) {
                members.append(value)
                members.sort()
            }
        }
    }

    mutating func add(_ characterClass: CharacterClass) {
        for value in 0..<128 where characterClass.contains(Unicode.Scalar(UInt8(value))) {
            insert(Unicode.Scalar(UInt8(value)))
        }
        classes.append(characterClass)
    }

    /// `\w` (`[_[:alnum:]]`) or `\W`.
    static func word(negated: Bool) -> ScalarSet {
        var set = ScalarSet()
        set.negated = negated
        set.insert("_")
        set.add(CharacterClass(name: "alnum")!)
        return set
    }

    /// `\s` (`[[:space:]]`) or `\S`.
    static func space(negated: Bool) -> ScalarSet {
        var set = ScalarSet()
        set.negated = negated
        set.add(CharacterClass(name: "space")!)
        return set
    }

    @inline(__always) @_optimize(speed)
    func contains(_ value: UInt32) -> Bool {
        if value < 64 { return ((low >> value) & 1 != 0) != negated }
        if value < 128 { return ((high >> (value - 64)) & 1 != 0) != negated }
        return containsOther(value) != negated
    }

    private func containsOther(_ value: UInt32) -> Bool {
        if !members.isEmpty && members.contains(value) { return true }
        guard !classes.isEmpty, let scalar = Unicode.Scalar(value) else { return false }
        return classes.contains { $0.contains(scalar) }
    }
}

/// A POSIX character class (`[:alpha:]` …) as the C.UTF-8 locale defines it (glibc's `iswctype`), so that a class
/// means what it means to `grep -E`; on a host without that locale, the twelve POSIX classes from Unicode's
/// properties.
struct CharacterClass: @unchecked Sendable {
    let name: String
    /// glibc's class in the C.UTF-8 locale (a plain value), if the locale exists.
    private let type: UInt

    init?(name: String) {
        self.name = name
        if let locale = CharacterLocale.locale {
            type = mcm_wctype(name, locale)
            if type == 0 { return nil }
        } else {
            guard Self.posixNames.contains(name) else { return nil }
            type = 0
        }
    }

    static let posixNames: Set<String> = [
        "alpha", "upper", "lower", "digit", "xdigit", "space", "print", "punct", "graph", "cntrl", "blank", "alnum",
    ]

    func contains(_ scalar: Unicode.Scalar) -> Bool {
        if let locale = CharacterLocale.locale { return mcm_iswctype(scalar.value, type, locale) != 0 }
        let properties = scalar.properties
        switch name {
        case "alpha": return properties.isAlphabetic
        case "upper": return properties.isUppercase
        case "lower": return properties.isLowercase
        case "digit": return ("0"..."9").contains(scalar)
        case "xdigit": return ("0"..."9").contains(scalar) || ("a"..."f").contains(scalar) || ("A"..."F").contains(scalar)
        case "space": return properties.isWhitespace
        case "blank": return scalar == " " || scalar == "\t" || properties.generalCategory == .spaceSeparator
        case "cntrl": return properties.generalCategory == .control
        case "alnum": return properties.isAlphabetic || properties.numericType == .decimal
        case "punct":
            switch properties.generalCategory {
            case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation, .initialPunctuation,
                .finalPunctuation, .otherPunctuation, .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
                return true
            default: return false
            }
        case "graph": return !properties.isWhitespace && properties.generalCategory != .control && scalar.value != 0x7F
            && scalar.value > 0x20
        case "print": return properties.generalCategory != .control && scalar.value != 0x7F
        default: return false
        }
    }

    /// A word character, for `\b`, `\<`, `\>`: alphanumeric or `_` (glibc's `IS_WIDE_WORD_CHAR`).
    static let alnum = CharacterClass(name: "alnum")!

    static func isWord(_ value: UInt32) -> Bool {
        if value < 128 {
            let byte = UInt8(value)
            return byte == 0x5F || (byte >= 0x30 && byte <= 0x39) || ((byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7A)
        }
        guard let scalar = Unicode.Scalar(value) else { return false }
        return alnum.contains(scalar)
    }
}

/// The C.UTF-8 locale (en_US.UTF-8 if missing; only its character classes matter), passed explicitly to the
/// `*_l` functions: the agent's and the thread's locale are left as they are. nil on a host without it.
enum CharacterLocale {
    private struct Handle: @unchecked Sendable {
        let locale: locale_t?
    }

    private static let handle = Handle(
        locale: newlocale(LC_CTYPE_MASK, "C.UTF-8", nil) ?? newlocale(LC_CTYPE_MASK, "en_US.UTF-8", nil))

    static var locale: locale_t? { handle.locale }
}
