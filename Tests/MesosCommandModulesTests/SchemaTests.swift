import Testing

@testable import MesosCommandModules

/// Output that is not valid JSON, or not the expected message, is an error naming the field at fault (SPEC §4).
@Suite struct SchemaTests {
    func check(_ json: String, _ message: String) throws -> [SchemaIssue] {
        MesosSchema.check(try JSONValue(parsing: json), as: message)
    }

    @Test func validLabels() throws {
        #expect(try check(#"{"labels":[{"key":"a","value":"b"},{"key":"c"}]}"#, "mesos.Labels").isEmpty)
    }

    @Test func aMissingRequiredFieldIsNamed() throws {
        let found = try check(#"{"labels":[{"bad_key":"a","value":"b"}]}"#, "mesos.Labels")
        #expect(found.contains { $0.severity == .error && $0.path == "labels[0].key" })
        #expect(found.contains { $0.severity == .warning && $0.path == "labels[0].bad_key" })
    }

    @Test func aWrongJSONTypeIsNamed() throws {
        let found = try check(#"{"rootfs":4,"user":"app"}"#, "mesos.slave.ContainerLaunchInfo")
        #expect(found.map(\.description) == ["field 'rootfs': expected a string, got a number"])
    }

    @Test func nestedMessagesAreChecked() throws {
        let found = try check(#"{"environment":{"variables":[{"name":"A","type":"VALUE","value":1}]}}"#,
                              "mesos.slave.ContainerLaunchInfo")
        #expect(found.map(\.path) == ["environment.variables[0].value"])
    }

    @Test func enumsByName() throws {
        #expect(try check(#"{"reason":"REASON_CONTAINER_LIMITATION_MEMORY"}"#, "mesos.slave.ContainerLimitation").isEmpty)
        #expect(try check(#"{"reason":"OOM"}"#, "mesos.slave.ContainerLimitation").map(\.severity) == [.warning])
        #expect(try check(#"{"reason":3}"#, "mesos.slave.ContainerLimitation").map(\.severity) == [.error])
        let attribute = MesosSchema.checkArray(try JSONValue(parsing: #"[{"name":"rack","type":"WORD"}]"#), of: "mesos.Attribute")
        #expect(attribute.map(\.path) == ["[0].type"])
        #expect(attribute.first?.severity == .error)
    }

    @Test func numbersAsStringsAndSingleValuesForRepeatedFieldsAreAcceptedAsStoutDoes() throws {
        #expect(try check(#"{"timestamp":"12.5","mem_rss_bytes":"1024"}"#, "mesos.ResourceStatistics").isEmpty)
        #expect(try check(#"{"labels":{"key":"only"}}"#, "mesos.Labels").isEmpty)
        #expect(try check(#"{"labels":null}"#, "mesos.Labels").isEmpty)
    }

    @Test func anArrayForASingularFieldIsAnError() throws {
        #expect(try check(#"{"user":["a"]}"#, "mesos.slave.ContainerLaunchInfo").first?.description
            == "field 'user': not expecting a JSON array for field 'user'")
    }

    @Test func notAnObject() throws {
        #expect(try check("[1]", "mesos.Labels").first?.severity == .error)
        #expect(MesosSchema.checkArray(.object([]), of: "mesos.Resource").first?.severity == .error)
    }

    @Test func bytesMustBeBase64() throws {
        #expect(try check(#"{"task_id":{"value":"t"},"state":"TASK_RUNNING","data":"aGk="}"#, "mesos.TaskStatus").isEmpty)
        #expect(try check(#"{"task_id":{"value":"t"},"state":"TASK_RUNNING","data":"not base64!"}"#, "mesos.TaskStatus").count == 1)
    }

    @Test func mapsOfMessages() throws {
        let config = #"{"command_info":{},"directory":"/d","limits":{"cpus":{"value":1.5},"mem":{"value":"x"}}}"#
        #expect(try check(config, "mesos.slave.ContainerConfig").map(\.path) == ["limits.mem.value"])
    }
}

@Suite struct JSONTests {
    @Test func roundTripKeepsOrderAndNumbers() throws {
        let text = #"{"b":1,"a":[true,false,null],"n":18446744073709551615,"s":"é\n\"\u0001"}"#
        let value = try JSONValue(parsing: text)
        #expect(value.jsonText == #"{"b":1,"a":[true,false,null],"n":18446744073709551615,"s":"é\n\"\u0001"}"#)
        #expect(try JSONValue(parsing: value.prettyText) == value)
    }

    @Test(arguments: [
        ("{", "unexpected end of input in an object"), ("{\"a\" 1}", "expected ':' after key \"a\""),
        ("[1,]", "unexpected character ']'"), ("01", "unexpected text after the JSON value"),
        ("\"\\x\"", "invalid escape '\\x'"), ("nul", "invalid literal, expected 'null'"),
        ("\"\u{01}\"", "control character in a string"), ("\"\\ud800\"", "unpaired surrogate in \\u escape"),
    ])
    func malformedJSONSaysWhereAndWhy(_ text: String, _ reason: String) {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: text) }
        do {
            _ = try JSONValue(parsing: text)
        } catch {
            #expect(error.reason == reason)
        }
    }

    @Test func invalidUTF8IsAnError() {
        let bytes: [UInt8] = [0x22, 0xFF, 0xFE, 0x22]
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: bytes) }
    }

    @Test func deepNestingIsBounded() {
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: deep) }
    }

    @Test func surrogatePairs() throws {
        #expect(try JSONValue(parsing: #""\ud83d\ude00""#) == .string("😀"))
    }
}
