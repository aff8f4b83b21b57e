import Testing
@testable import MesosCommandModules

@Suite struct PatternSpeedProbe {
    @Test func probe() throws {
        let slow = try RegularExpression("(.*a){30}x")
        let value = String(repeating: "a", count: 256 * 1024)
        var start = ContinuousClock.now
        _ = slow.matchesWhole(value)
        print("PROBE slowRule condition 256KiB:", ContinuousClock.now - start)
        let issue = try RegularExpression("(a|b)*a(a|b){18}")
        var random = PatternTests.Generator(state: 1)
        let v64 = String((0..<65536).map { _ in Bool.random(using: &random) ? "a" : "b" })
        start = ContinuousClock.now
        _ = issue.matchesWhole(v64)
        print("PROBE issue pattern 64KiB:", ContinuousClock.now - start)
    }
}
