/// How a parameter's text becomes a value: booleans, numbers and `module_name`. SPEC §1: every number is bounded,
/// and a value past its bound is a load-time error naming the key and the bound — never an allocation the agent
/// cannot make, an overflow trap or a crash. The agent's load and `validate` both read parameters here.
extension ParameterReader {
    /// The bounds of the numbers, listed in the README's parameter table.
    enum Bound {
        /// Every `…_timeout`, `grace_period` and the watch frequency: a week, far beyond any script's need, and
        /// far below what a deadline in nanoseconds (a UInt64 from the monotonic clock) can hold.
        static let seconds = 604_800.0
        static let secondsInWords = "604800 seconds (a week)"
        /// `max_in_flight`: each command in flight is a process and a few file descriptors of the agent.
        static let maxInFlight = 1024
        /// `output_max_bytes`: an output (or worker answer) is read into the agent's memory, whole, before
        /// Mesos gets it; 1 GiB is already more than an agent should hold for one event.
        static let outputMaxBytes = 1 << 30
        /// `<event>_workers`: each is a process the agent keeps for as long as the module lives, serving one
        /// event at a time: 64 serve as many events at once as `max_in_flight`'s default lets exec mode run for a
        /// whole module; a command that needs more at once is better run in exec mode.
        static let workers = 64
        /// `<event>_worker_max_events`: a worker recycled after a billion events is never recycled in practice.
        static let workerMaxEvents = 1_000_000_000
        /// `module_name`'s length: it is one component of file names (`<state_dir>/<module_name>`, the private
        /// temporary directories `mesos-command-modules.<module_name>.workers.<pid>.XXXXXX`), which Linux
        /// bounds at 255 bytes.
        static let moduleNameLength = 128
    }

    mutating func boolean(_ key: String) -> Bool? {
        guard let text = values[key] else { return nil }
        switch text.lowercased() {
        case "true": return true
        case "false", "": return false
        default:
            error(key, "'\(text)' is not a boolean (true or false)")
            return nil
        }
    }

    /// A number of seconds, greater than zero (or zero with `allowZero`) and at most `bound`; nil when unset or
    /// wrong (an error naming the key, and the bound when it is past it).
    mutating func seconds(_ key: String, allowZero: Bool = false, atMost bound: Double = Bound.seconds,
                          _ boundInWords: String = Bound.secondsInWords) -> Double?
    {
        guard let text = values[key] else { return nil }
        guard let value = Double(text.trimmingWhitespace), value.isFinite || value == .infinity else {
            error(key, "'\(text)' is not a number of seconds")
            return nil
        }
        if value < 0 || (value == 0 && !allowZero) {
            error(key, "'\(text)' must be \(allowZero ? "zero or more" : "greater than zero") seconds")
            return nil
        }
        if value > bound {
            error(key, "'\(text)' is more than \(boundInWords), the most it may be")
            return nil
        }
        return value
    }

    /// A whole number from 1 to `bound`; nil when unset or wrong (an error naming the key and the bound).
    /// `meaning` says what the bound is, in the operator's words: "the most commands a module may run at once".
    mutating func count(_ key: String, atMost bound: Int, _ meaning: String) -> Int? {
        guard let text = values[key] else { return nil }
        let trimmed = text.trimmingWhitespace
        let digits = trimmed.hasPrefix("+") ? trimmed.dropFirst() : trimmed
        let isWhole = !digits.isEmpty && digits.allSatisfy { $0.isASCII && $0.isNumber }
        guard isWhole, let value = Int(digits), value > 0 else {
            if isWhole, digits.contains(where: { $0 != "0" }) {
                // Digits only, too many for an Int: past the bound too.
                error(key, "'\(text)' is more than \(bound), \(meaning)")
            } else {
                error(key, "'\(text)' is not a whole number from 1 to \(bound)")
            }
            return nil
        }
        guard value <= bound else {
            error(key, "'\(text)' is more than \(bound), \(meaning)")
            return nil
        }
        return value
    }

    /// SPEC §1: `module_name` names the state directory `<state_dir>/<module_name>`, so it is one path component:
    /// ASCII letters, digits, `.`, `_` and `-`, not `.` or `..`, at most ``Bound/moduleNameLength`` characters.
    /// Why `name` is not one, or nil.
    static func moduleNameProblem(_ name: String) -> String? {
        let quoted = "'\(String(name.unicodeScalars.map { $0.isPrintableASCII ? Character($0) : "?" }))'"
        if name == "." || name == ".." {
            return "\(quoted) is not a name but a directory ('\(name)' in a path): it would put the state directory "
                + "\(name == "." ? "in" : "above") state_dir; give a name of letters, digits, '.', '_' or '-'"
        }
        if let bad = name.unicodeScalars.first(where: { !$0.isModuleNameCharacter }) {
            let what = bad.isPrintableASCII
                ? "'\(Character(bad))'" : "U+\(String(bad.value, radix: 16, uppercase: true))"
            return "\(quoted) holds \(what): module_name names a directory, so it is one path component made of "
                + "letters (A–Z, a–z), digits, '.', '_' and '-'"
        }
        if name.utf8.count > Bound.moduleNameLength {
            return "\(quoted) is \(name.utf8.count) characters long, more than \(Bound.moduleNameLength), the most a "
                + "module_name may have"
        }
        return nil
    }
}

extension Unicode.Scalar {
    var isPrintableASCII: Bool { value >= 0x20 && value < 0x7f }

    var isModuleNameCharacter: Bool {
        switch value {
        case 0x30...0x39, 0x41...0x5a, 0x61...0x7a: return true  // 0-9 A-Z a-z
        case 0x2e, 0x5f, 0x2d: return true  // . _ -
        default: return false
        }
    }
}
