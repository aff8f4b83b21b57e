/// A pattern compiled for a Thompson NFA simulation (a Pike VM without captures): the value is read once, one
/// character at a time, carrying the set of program steps still alive — each step at most once per character.
/// Matching costs at most (steps × characters): linear in the value's length for every pattern, whatever its
/// nesting of repetitions (glibc's backtracking `regexec` took seconds on `(a|b)*a(a|b){18}` and a 32 KiB value).
struct PatternProgram: Sendable {
    enum Step: Sendable {
        case scalar(UInt32)
        /// Any character but NUL.
        case any
        case set(Int)
        case split(Int, Int)
        case jump(Int)
        case assertion(PatternNode.Assertion)
        case match
    }

    /// The most steps a pattern may compile to. A bounded repetition copies what it repeats (`x{5}` is five `x`),
    /// so a short pattern can be large: `[a-z]{1,100}` is 200 steps. Each step costs at most one test per character
    /// of the value; with this bound a condition reads a 64 KiB value in tens of milliseconds at worst.
    static let maximumSteps = 2000

    /// The steps as the simulation reads them: three numbers each (an ``Opcode``, then its operands).
    let code: [Int]
    let sets: [ScalarSet]
    /// Whether a word assertion needs the characters around each position.
    let usesWords: Bool

    struct TooBig: Error {
        var steps: Int
    }

    init(_ node: PatternNode) throws(TooBig) {
        let size = Self.size(of: node) + 1
        guard size <= Self.maximumSteps else { throw TooBig(steps: size) }
        var compiler = Compiler()
        compiler.emit(node)
        compiler.steps.append(.match)
        code = compiler.steps.flatMap(Self.encode)
        sets = compiler.sets
        usesWords = compiler.usesWords
    }

    /// The opcodes of ``code``; an assertion's operand is one of the last six.
    enum Opcode {
        static let scalar = 0, any = 1, set = 2, split = 3, jump = 4, assertion = 5, match = 6
        static let start = 0, end = 1, wordBoundary = 2, notWordBoundary = 3, wordStart = 4, wordEnd = 5
    }

    private static func encode(_ step: Step) -> [Int] {
        switch step {
        case .scalar(let value): return [Opcode.scalar, Int(value), 0]
        case .any: return [Opcode.any, 0, 0]
        case .set(let index): return [Opcode.set, index, 0]
        case .split(let first, let second): return [Opcode.split, first, second]
        case .jump(let target): return [Opcode.jump, target, 0]
        case .match: return [Opcode.match, 0, 0]
        case .assertion(let assertion):
            let operand: Int
            switch assertion {
            case .start: operand = Opcode.start
            case .end: operand = Opcode.end
            case .wordBoundary: operand = Opcode.wordBoundary
            case .notWordBoundary: operand = Opcode.notWordBoundary
            case .wordStart: operand = Opcode.wordStart
            case .wordEnd: operand = Opcode.wordEnd
            }
            return [Opcode.assertion, operand, 0]
        }
    }

    /// The steps `node` compiles to, saturated past the bound (a nested repetition could overflow).
    static func size(of node: PatternNode) -> Int {
        let limit = maximumSteps + 1
        func capped(_ value: Int) -> Int { min(value, limit) }
        switch node {
        case .empty: return 0
        case .scalar, .any, .set, .assertion: return 1
        case .concatenation(let nodes): return capped(nodes.reduce(0) { capped($0 + size(of: $1)) })
        case .alternation(let nodes): return capped(nodes.reduce(2 * (nodes.count - 1)) { capped($0 + size(of: $1)) })
        case .repetition(let body, let min, let max):
            let one = size(of: body)
            switch (min, max) {
            case (0, nil): return capped(one + 2)
            case (_, nil): return capped(min.multipliedReportingOverflow(by: one).overflow ? limit : min * one + 1)
            case (_, let max?):
                let (copies, overflow) = max.multipliedReportingOverflow(by: one + 1)
                return overflow ? limit : capped(copies)
            }
        }
    }

    private struct Compiler {
        var steps: [Step] = []
        var sets: [ScalarSet] = []
        var usesWords = false

        mutating func emit(_ node: PatternNode) {
            switch node {
            case .empty: break
            case .scalar(let scalar): steps.append(.scalar(scalar.value))
            case .any: steps.append(.any)
            case .set(let set):
                sets.append(set)
                steps.append(.set(sets.count - 1))
            case .assertion(let assertion):
                if assertion != .start && assertion != .end { usesWords = true }
                steps.append(.assertion(assertion))
            case .concatenation(let nodes): for node in nodes { emit(node) }
            case .alternation(let nodes):
                var jumps: [Int] = []
                for (offset, node) in nodes.enumerated() {
                    if offset == nodes.count - 1 {
                        emit(node)
                        break
                    }
                    let split = steps.count
                    steps.append(.split(split + 1, 0))
                    emit(node)
                    jumps.append(steps.count)
                    steps.append(.jump(0))
                    steps[split] = .split(split + 1, steps.count)
                }
                for jump in jumps { steps[jump] = .jump(steps.count) }
            case .repetition(let body, let min, let max):
                for _ in 0..<(max == nil ? Swift.max(min - 1, 0) : min) { emit(body) }
                switch max {
                case nil where min == 0: star(body)
                case nil:
                    let start = steps.count
                    emit(body)
                    steps.append(.split(start, steps.count + 1))
                case let max?:
                    for _ in min..<max { optional(body) }
                }
            }
        }

        mutating func star(_ body: PatternNode) {
            let split = steps.count
            steps.append(.split(split + 1, 0))
            emit(body)
            steps.append(.jump(split))
            steps[split] = .split(split + 1, steps.count)
        }

        mutating func optional(_ body: PatternNode) {
            let split = steps.count
            steps.append(.split(split + 1, 0))
            emit(body)
            steps[split] = .split(split + 1, steps.count)
        }
    }

    /// How many characters are read between two looks at the clock.
    static let charactersPerDeadlineCheck = 4096

    /// Whether the whole of `value` matches; nil if `deadline` passed first (checked every few thousand
    /// characters).
    func matchesWhole(_ value: String, until deadline: Deadline? = nil) -> Bool? {
        var value = value
        return code.withUnsafeBufferPointer { code in
            sets.withUnsafeBufferPointer { sets in
                value.withUTF8 { text in
                    var machine = Machine(
                        code: code.baseAddress!, steps: code.count / 3, sets: sets.baseAddress, usesWords: usesWords)
                    defer { machine.deallocate() }
                    return machine.run(text.baseAddress, count: text.count, deadline)
                }
            }
        }
    }
}

/// The simulation's state for one match: the steps alive before the next character (`current`), those after it
/// (`next`), a mark per step (added for this character already) and the stack of steps to follow. One allocation
/// per match. Plain pointers and loops: the tests, built without optimization, decide rules on 256 KiB values.
private struct Machine {
    let code: UnsafePointer<Int>
    let steps: Int
    let sets: UnsafePointer<ScalarSet>?
    let usesWords: Bool
    let marks: UnsafeMutablePointer<UInt32>
    var current: UnsafeMutablePointer<Int>
    var next: UnsafeMutablePointer<Int>
    let pending: UnsafeMutablePointer<Int>
    let memory: UnsafeMutablePointer<Int>
    var currentCount = 0
    var nextCount = 0
    var generation: UInt32 = 1
    // Around the position being added at: what the assertions test.
    var atStart = true
    var atEnd = false
    var wordBefore = false
    var wordAfter = false

    init(code: UnsafePointer<Int>, steps: Int, sets: UnsafePointer<ScalarSet>?, usesWords: Bool) {
        self.code = code
        self.steps = steps
        self.sets = sets
        self.usesWords = usesWords
        marks = .allocate(capacity: steps)
        marks.initialize(repeating: 0, count: steps)
        memory = .allocate(capacity: 4 * steps + 2)
        current = memory
        next = memory + steps
        pending = memory + 2 * steps
    }

    func deallocate() {
        marks.deallocate()
        memory.deallocate()
    }

    func holds(_ assertion: Int) -> Bool {
        if assertion == PatternProgram.Opcode.start { return atStart }
        if assertion == PatternProgram.Opcode.end { return atEnd }
        if assertion == PatternProgram.Opcode.wordBoundary { return wordBefore != wordAfter }
        if assertion == PatternProgram.Opcode.notWordBoundary { return wordBefore == wordAfter }
        if assertion == PatternProgram.Opcode.wordStart { return !wordBefore && wordAfter }
        return wordBefore && !wordAfter
    }

    /// Adds `start` to `next`, with every step reachable from it without reading a character.
    mutating func add(_ start: Int) {
        var top = 1
        pending[0] = start
        while top > 0 {
            top -= 1
            let step = pending[top]
            if marks[step] == generation { continue }
            marks[step] = generation
            let at = 3 * step
            let opcode = code[at]
            if opcode == PatternProgram.Opcode.jump {
                pending[top] = code[at + 1]
                top += 1
            } else if opcode == PatternProgram.Opcode.split {
                pending[top] = code[at + 2]
                pending[top + 1] = code[at + 1]
                top += 2
            } else if opcode == PatternProgram.Opcode.assertion {
                if holds(code[at + 1]) {
                    pending[top] = step + 1
                    top += 1
                }
            } else {
                next[nextCount] = step
                nextCount += 1
            }
        }
    }

    mutating func advance() {
        swap(&current, &next)
        currentCount = nextCount
        nextCount = 0
        generation &+= 1
        if generation == 0 {
            marks.update(repeating: 0, count: steps)
            generation = 1
        }
    }

    mutating func run(_ text: UnsafePointer<UInt8>?, count: Int, _ deadline: Deadline?) -> Bool? {
        var offset = 0
        var upcoming = count == 0 ? -1 : decode(text!, &offset)
        atEnd = upcoming < 0
        wordAfter = usesWords && upcoming >= 0 && CharacterClass.isWord(UInt32(upcoming))
        add(0)
        advance()
        atStart = false
        var read = 0
        while upcoming >= 0 {
            if currentCount == 0 { return false }
            let character = upcoming
            read += 1
            if read == PatternProgram.charactersPerDeadlineCheck {
                read = 0
                if deadline?.hasPassed == true { return nil }
            }
            upcoming = offset < count ? decode(text!, &offset) : -1
            atEnd = upcoming < 0
            if usesWords {
                wordBefore = CharacterClass.isWord(UInt32(character))
                wordAfter = upcoming >= 0 && CharacterClass.isWord(UInt32(upcoming))
            }
            var slot = 0
            while slot < currentCount {
                let step = current[slot]
                slot += 1
                let at = 3 * step
                let opcode = code[at]
                let advances = opcode == PatternProgram.Opcode.scalar ? code[at + 1] == character
                    : opcode == PatternProgram.Opcode.any ? character != 0
                    : opcode == PatternProgram.Opcode.set && sets![code[at + 1]].contains(UInt32(character))
                if advances { add(step + 1) }
            }
            advance()
        }
        let match = steps - 1
        var slot = 0
        while slot < currentCount {
            if current[slot] == match { return true }
            slot += 1
        }
        return false
    }

    /// The code point at `offset` of valid UTF-8 (a Swift string's), moving past it.
    func decode(_ text: UnsafePointer<UInt8>, _ offset: inout Int) -> Int {
        let lead = Int(text[offset])
        if lead < 0x80 {
            offset += 1
            return lead
        }
        if lead < 0xE0 {
            defer { offset += 2 }
            return (lead & 0x1F) << 6 | Int(text[offset + 1] & 0x3F)
        }
        if lead < 0xF0 {
            defer { offset += 3 }
            return (lead & 0x0F) << 12 | Int(text[offset + 1] & 0x3F) << 6 | Int(text[offset + 2] & 0x3F)
        }
        defer { offset += 4 }
        return (lead & 0x07) << 18 | Int(text[offset + 1] & 0x3F) << 12 | Int(text[offset + 2] & 0x3F) << 6
            | Int(text[offset + 3] & 0x3F)
    }
}
