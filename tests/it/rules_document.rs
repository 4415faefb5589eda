//! A rules document with any fault is rejected whole, with the JSON path of the fault.

use conditional_recording::rules::{MAX_DOCUMENT_BYTES, Rules};
use serde_json::json;

/// Each row: a document and the exact error it gets.
#[test]
fn faults_are_reported_with_their_json_path() {
    let cases: &[(&str, &str)] = &[
        (
            "",
            "not valid JSON: EOF while parsing a value at line 1 column 0",
        ),
        (
            "{\"enabled\": true,",
            "not valid JSON: EOF while parsing a value at line 1 column 17",
        ),
        ("[]", "the document must be a JSON object"),
        (
            r#"{"enabled": false, "enabled": true}"#,
            "enabled: appears twice in one object (line 1 column 28)",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "value": 1, "value": 2}]}"#,
            "exclude_attributes[0].value: appears twice in one object (line 1 column 73)",
        ),
        (
            r#"{"enabled": true, "instruction": {"from": "+1", "status callback": "a", "status callback": "b"}}"#,
            "instruction[\"status callback\"]: appears twice in one object (line 1 column 89)",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "value": 1}, {"all": [{"key": "b", "exists": true, "key": "c"}]}]}"#,
            "exclude_attributes[1].all[0].key: appears twice in one object (line 1 column 110)",
        ),
        ("{}", "enabled: required (true or false)"),
        (
            r#"{"enabled": "true"}"#,
            "enabled: must be true or false (a JSON boolean)",
        ),
        (
            r#"{"enabled": true, "exclude_queue": []}"#,
            "exclude_queue: unknown key (expected enabled, exclude_queues, exclude_attributes, include_queues, include_attributes, instruction or voice_tasks)",
        ),
        (
            r#"{"enabled": true, "exclude_queues": "Payments"}"#,
            "exclude_queues: must be a list of queue SIDs or names",
        ),
        (
            r#"{"enabled": true, "exclude_queues": ["Payments", 7]}"#,
            "exclude_queues[1]: must be a string (a queue SID or name)",
        ),
        (
            r#"{"enabled": true, "exclude_queues": [""]}"#,
            "exclude_queues[0]: an empty queue name matches no queue",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": {}}"#,
            "exclude_attributes: must be a list of conditions",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": ["direction"]}"#,
            "exclude_attributes[0]: a condition must be a JSON object",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "vaule": "x"}]}"#,
            "exclude_attributes[0].vaule: unknown key (expected key, pointer, value, any_of, prefix, regex, exists or all)",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"value": "x"}]}"#,
            "exclude_attributes[0]: a condition needs \"key\" (a dot path) or \"pointer\"",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a"}]}"#,
            "exclude_attributes[0]: a condition needs a matcher: value, any_of, prefix, regex or exists",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "value": "x", "regex": "x"}]}"#,
            "exclude_attributes[0].regex: a condition takes one matcher; it already has \"value\"",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "pointer": "/a", "value": 1}]}"#,
            "exclude_attributes[0].pointer: a condition takes \"key\" or \"pointer\", not both",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "value": null}]}"#,
            "exclude_attributes[0].value: must be a string, number or boolean (null, objects and arrays never match)",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "value": ["x"]}]}"#,
            "exclude_attributes[0].value: must be a string, number or boolean (null, objects and arrays never match)",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "", "value": 1}]}"#,
            "exclude_attributes[0].key: empty path segment; use \"pointer\" for keys that are empty or contain dots",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a..b", "value": 1}]}"#,
            "exclude_attributes[0].key: empty path segment; use \"pointer\" for keys that are empty or contain dots",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": 5, "value": 1}]}"#,
            "exclude_attributes[0].key: must be a string (a dot path such as \"conversations.topics\")",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"pointer": "a", "value": 1}]}"#,
            "exclude_attributes[0].pointer: a JSON pointer starts with \"/\"",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"pointer": "/a~2", "value": 1}]}"#,
            "exclude_attributes[0].pointer: \"~\" must be followed by 0 or 1 (RFC 6901)",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "value": 1}, {"key": "b", "value": 2}, {"key": "c", "regex": "(unclosed"}]}"#,
            "exclude_attributes[2].regex: unclosed group",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "regex": ""}]}"#,
            "exclude_attributes[0].regex: an empty regex matches every string; use \"exists\"",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "regex": "\\1"}]}"#,
            "exclude_attributes[0].regex: backreferences are not supported",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "regex": "(?=x)"}]}"#,
            "exclude_attributes[0].regex: look-around, including look-ahead and look-behind, is not supported",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "regex": 5}]}"#,
            "exclude_attributes[0].regex: must be a string",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "prefix": ""}]}"#,
            "exclude_attributes[0].prefix: an empty prefix matches every string; use \"exists\"",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "exists": "yes"}]}"#,
            "exclude_attributes[0].exists: must be true or false",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "any_of": []}]}"#,
            "exclude_attributes[0].any_of: an empty list matches nothing",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "any_of": ["x", {"y": 1}]}]}"#,
            "exclude_attributes[0].any_of[1]: must be a string, number or boolean (null, objects and arrays never match)",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"all": []}]}"#,
            "exclude_attributes[0].all: an empty list would match every task",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"all": [{"key": "a", "value": 1}], "key": "b"}]}"#,
            "exclude_attributes[0].key: not allowed beside \"all\" (put it in a condition inside \"all\")",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"all": [{"key": "a", "value": 1}, {"key": "b", "regex": "["}]}]}"#,
            "exclude_attributes[0].all[1].regex: unclosed character class",
        ),
        (
            r#"{"enabled": true, "include_attributes": [{"key": "a", "exists": 1}]}"#,
            "include_attributes[0].exists: must be true or false",
        ),
        (
            r#"{"enabled": true, "include_queues": [null]}"#,
            "include_queues[0]: must be a string (a queue SID or name)",
        ),
        (
            r#"{"enabled": true, "voice_tasks": []}"#,
            "voice_tasks: an empty list would treat no task as a call",
        ),
        (
            r#"{"enabled": true, "instruction": []}"#,
            "instruction: must be an object of conference instruction keys",
        ),
        (
            r#"{"enabled": true, "instruction": {"conference_record": true}}"#,
            "instruction.conference_record: is set by the decision and may not be passed through",
        ),
        (
            r#"{"enabled": true, "instruction": {"instruction": "dequeue"}}"#,
            "instruction.instruction: is set by the decision and may not be passed through",
        ),
        (
            r#"{"enabled": true, "instruction": {"post_work_activity": "WA1"}}"#,
            "instruction.post_work_activity: unknown key (expected a conference instruction key TaskRouter documents)",
        ),
        (
            r#"{"enabled": true, "instruction": {"from": {"n": 1}}}"#,
            "instruction.from: must be a string, number or boolean",
        ),
        (
            r#"{"enabled": true, "instruction": {"timeout": null}}"#,
            "instruction.timeout: must be a string, number or boolean",
        ),
        (
            r#"{"enabled": true, "a b\nc": 1}"#,
            "[\"a b\\nc\"]: unknown key (expected enabled, exclude_queues, exclude_attributes, include_queues, include_attributes, instruction or voice_tasks)",
        ),
    ];
    let mut failures = Vec::new();
    for (document, expected) in cases {
        match Rules::from_json(document) {
            Ok(_) => failures.push(format!("{document}: accepted, expected `{expected}`")),
            Err(e) if e.to_string() != *expected => failures.push(format!(
                "{document}:\n   got      `{e}`\n   expected `{expected}`"
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_error_carries_the_path_apart_from_the_message() {
    let error = Rules::from_json(
        r#"{"enabled": true, "exclude_attributes": [{"key": "a", "regex": "(x"}]}"#,
    )
    .unwrap_err();
    assert_eq!(error.path, "exclude_attributes[0].regex");
    assert_eq!(error.message, "unclosed group");
}

#[test]
fn valid_documents_are_accepted() {
    let documents = [
        json!({"enabled": false}),
        json!({"enabled": true, "exclude_queues": [], "exclude_attributes": []}),
        json!({
            "enabled": true,
            "exclude_queues": ["Payments", "WQ0123456789abcdef0123456789abcdef"],
            "exclude_attributes": [
                {"key": "direction", "value": "outbound"},
                {"key": "conversations.topics", "value": "financial"},
                {"key": "from", "any_of": ["+14155550100", 1, true]},
                {"key": "from", "prefix": "+44"},
                {"key": "ivr.choice", "regex": "^pay(ment)?s?$"},
                {"key": "ivr.consent", "exists": false},
                {"pointer": "/crm.flags/pci", "value": true},
                {"all": [{"key": "direction", "value": "inbound"}, {"key": "ivr.language", "value": "de-DE"}]}
            ],
            "include_queues": ["Sales"],
            "include_attributes": [{"key": "ivr.consent", "value": true}],
            "instruction": {
                "from": "+18005550199",
                "post_work_activity_sid": "WA00000000000000000000000000000000",
                "recording_channels": "dual",
                "conference_status_callback_event": ["start", "end"],
                "timeout": 30,
                "end_conference_on_exit": true
            },
            "voice_tasks": [{"key": "call_sid", "exists": true}]
        }),
    ];
    for document in documents {
        if let Err(e) = Rules::from_value(&document) {
            panic!("{document} rejected: {e}");
        }
    }
}

#[test]
fn limits_hold() {
    let huge = format!(
        r#"{{"enabled": true, "exclude_queues": ["{}"]}}"#,
        "x".repeat(MAX_DOCUMENT_BYTES)
    );
    let error = Rules::from_json(&huge).unwrap_err();
    assert!(error.message.contains("the limit is"), "{error}");

    let mut nested = json!({"key": "a", "value": 1});
    for _ in 0..9 {
        nested = json!({"all": [nested]});
    }
    let error =
        Rules::from_value(&json!({"enabled": true, "exclude_attributes": [nested]})).unwrap_err();
    assert!(error.message.contains("nests deeper than 8"), "{error}");

    let deep_json = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let error = Rules::from_json(&deep_json).unwrap_err();
    assert!(error.message.contains("recursion limit"), "{error}");

    let error = Rules::from_json(
        r#"{"enabled": true, "exclude_attributes": [{"key": "a", "regex": "\\w{1000}\\w{1000}"}]}"#,
    )
    .unwrap_err();
    assert_eq!(error.path, "exclude_attributes[0].regex");
    assert!(error.message.starts_with("regex too large"), "{error}");
}

/// Each condition's document with `count` conditions made by `make`.
fn document_of(count: usize, make: impl Fn(usize) -> serde_json::Value) -> String {
    let conditions: Vec<_> = (0..count).map(make).collect();
    json!({"enabled": true, "exclude_attributes": conditions}).to_string()
}

#[test]
fn a_path_deeper_than_any_task_is_refused_not_followed() {
    let deep = |segments: usize| vec!["a"; segments].join(".");
    let at_most = json!({"enabled": true, "exclude_attributes": [{"key": deep(128), "value": 1}]});
    assert!(Rules::from_value(&at_most).is_ok());

    // 100,000 segments overflowed the stack while the index was built, before this limit.
    for segments in [129, 100_000] {
        let key = json!({"enabled": true, "exclude_attributes": [{"key": "b", "value": 1}, {"key": deep(segments), "value": 1}]});
        let error = Rules::from_value(&key).unwrap_err();
        assert_eq!(error.path, "exclude_attributes[1].key");
        assert_eq!(
            error.message,
            format!("a path of {segments} segments; TaskAttributes nest at most 128 deep")
        );
        let pointer = format!("/{}", vec!["a"; segments].join("/"));
        let document = json!({"enabled": true, "include_attributes": [{"all": [{"pointer": pointer, "exists": true}]}]});
        let error = Rules::from_value(&document).unwrap_err();
        assert_eq!(error.path, "include_attributes[0].all[0].pointer");
    }
}

#[test]
fn distinct_attribute_paths_are_bounded_over_the_whole_document() {
    // 10,000 conditions on paths of their own fit; one path more does not, wherever it is.
    let fits = document_of(10_000, |i| json!({"key": format!("k{i}"), "value": 1}));
    assert!(Rules::from_json(&fits).is_ok());
    let nested = document_of(5_000, |i| json!({"key": format!("p.k{i}"), "value": 1}));
    assert!(
        Rules::from_json(&nested).is_ok(),
        "5,001 paths: p and its children"
    );

    let mut over: serde_json::Value = serde_json::from_str(&document_of(
        10_000,
        |i| json!({"key": format!("k{i}"), "value": 1}),
    ))
    .unwrap();
    over["voice_tasks"] = json!([{"key": "call_sid", "exists": true}]);
    let error = Rules::from_value(&over).unwrap_err();
    assert_eq!(error.path, "voice_tasks[0].key");
    assert_eq!(
        error.message,
        "the document's conditions name more than 10000 distinct attribute paths (each prefix counted)"
    );
    // The same path named again, by key or by pointer, is not a new one.
    let mut again: serde_json::Value = serde_json::from_str(&fits).unwrap();
    again["include_attributes"] =
        json!([{"key": "k7", "value": 2}, {"pointer": "/k9", "exists": true}]);
    assert!(Rules::from_value(&again).is_ok());
}

#[test]
fn the_regexes_of_a_document_are_bounded_in_memory_together() {
    // Each `\w{20}` compiles to about 1.1 MiB: a 3.8 KB document of 125 of them took 155 MB
    // to load before this budget.
    let large = document_of(125, |_| json!({"key": "a", "regex": "\\w{20}"}));
    let error = Rules::from_json(&large).unwrap_err();
    assert!(error.path.starts_with("exclude_attributes["), "{error}");
    assert!(error.path.ends_with("].regex"), "{error}");
    assert!(
        error
            .message
            .starts_with("the document's regexes need more than 16 MiB with this one"),
        "{error}"
    );
    assert!(error.message.contains("(?-u:\\w)"), "{error}");
    // Where it stops: the first regex that does not fit, after a dozen that did.
    let index: usize = error.path["exclude_attributes[".len()..error.path.len() - "].regex".len()]
        .parse()
        .unwrap();
    assert!((8..=15).contains(&index), "{error}");

    // The ASCII form, and two hundred ordinary patterns, fit.
    let ascii = document_of(125, |_| json!({"key": "a", "regex": "(?-u:\\w){20}"}));
    assert!(Rules::from_json(&ascii).is_ok());
    let ordinary = document_of(
        100,
        |i| json!({"key": "to", "regex": format!("^\\+1(900|976){i}")}),
    );
    assert!(Rules::from_json(&ordinary).is_ok());
}
