extension ParameterReader {
    /// `<event>_breaker_failures` (0, the default: no breaker; at most ``BreakerSettings/maxFailures``) and
    /// `<event>_breaker_seconds` (the cool-down, more than 0 and at most ``BreakerSettings/maxSeconds``).
    mutating func breaker(_ event: Event) -> BreakerSettings? {
        let failuresKey = event.key + "_breaker_failures"
        let secondsKey = event.key + "_breaker_seconds"
        var failures = 0
        var failuresInvalid = false
        if let text = values[failuresKey] {
            switch Int(text.trimmingWhitespace) {
            case .some(let value) where value >= 0 && value <= BreakerSettings.maxFailures:
                failures = value
            case .some(let value) where value > BreakerSettings.maxFailures:
                failuresInvalid = true
                error(failuresKey, "'\(text)' is more than \(BreakerSettings.maxFailures), the most consecutive "
                    + "failures a breaker may wait for before it opens")
            default:
                failuresInvalid = true
                error(failuresKey, "'\(text)' is not a whole number from 0 (no breaker) to \(BreakerSettings.maxFailures)")
            }
        }
        let seconds = seconds(secondsKey, atMost: BreakerSettings.maxSeconds, "86400 seconds (a day)")
        if values[secondsKey] != nil && failures == 0 && !failuresInvalid {
            warnings.append(ConfigurationIssue(
                key: secondsKey, message: "\(failuresKey) is not set (or 0): there is no breaker, this is ignored"))
        }
        guard failures > 0 else { return nil }
        return BreakerSettings(failures: failures, seconds: seconds ?? BreakerSettings.defaultSeconds)
    }
}
