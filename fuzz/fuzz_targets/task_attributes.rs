//! TaskAttributes (a JSON string inside the form): unparseable text is the fail policy's,
//! parseable attributes get a decision from every kind of rule. The example document (the
//! Flex template's own shape) is checked against the template's semantics written out
//! here independently.

#![no_main]

use std::sync::LazyLock;

use conditional_recording::rules::{
    Decision, EXAMPLE_DOCUMENT, FailPolicy, Reason, Rules, Task, is_call_by_default,
};
use conditional_recording::taskrouter::parse_attributes;
use conditional_recording_fuzz::decide;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Every matcher, both include lists, queue names, `voice_tasks` and pass-through keys.
const EVERY_KIND: &str = r#"{
  "enabled": true,
  "exclude_queues": ["Payments", "WQ0123456789abcdef0123456789abcdef"],
  "exclude_attributes": [
    {"key": "direction", "value": "outbound"},
    {"key": "conversations.topics", "value": "financial"},
    {"key": "ivr.consent", "value": false},
    {"key": "conversations.queue_time", "value": 3.0},
    {"key": "skills_needed.1", "any_of": ["pci", 7, true, "spanish"]},
    {"pointer": "/crm.flags/pci", "exists": true},
    {"key": "from", "prefix": "+44"},
    {"key": "caller", "regex": "^\\+1(900|976)"},
    {"all": [{"key": "customers.tier", "value": "gold"}, {"key": "ivr.choice", "regex": "pay|card"}]}
  ],
  "include_queues": ["Sales", "WQ11111111111111111111111111111111"],
  "include_attributes": [
    {"key": "record_me", "exists": true},
    {"all": [{"key": "conversations.language", "prefix": "en"}, {"key": "vip", "value": 1}]}
  ],
  "voice_tasks": [
    {"key": "call_sid", "exists": true},
    {"key": "channelType", "any_of": ["voice", "phone"]},
    {"key": "direction", "value": "outbound"}
  ],
  "instruction": {"from": "+10000000000", "record": true, "post_work_activity_sid": "WA00000000000000000000000000000000", "beep": false}
}"#;

const DISABLED: &str =
    r#"{"enabled": false, "exclude_attributes": [{"key": "direction", "value": "outbound"}]}"#;

static RULES: LazyLock<[Rules; 3]> = LazyLock::new(|| {
    [EXAMPLE_DOCUMENT, EVERY_KIND, DISABLED]
        .map(|document| Rules::from_json(document).expect("a valid document"))
});

const QUEUES: [(Option<&str>, Option<&str>); 6] = [
    (None, None),
    (Some("WQ00000000000000000000000000000000"), None),
    (Some("WQ0123456789abcdef0123456789abcdef"), Some("Other")),
    (Some("WQ11111111111111111111111111111111"), None),
    (Some("WQ22222222222222222222222222222222"), Some("Payments")),
    (Some("WQ33333333333333333333333333333333"), Some("Sales")),
];

/// The template's equality: the value, or an element of an array value, equals `expected`.
fn holds(value: Option<&Value>, expected: &str) -> bool {
    match value {
        Some(Value::String(s)) => s == expected,
        Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(expected)),
        _ => false,
    }
}

/// The example document's decision, from the template's semantics.
fn example_expectation(attributes: &Value, queue_sid: Option<&str>) -> Decision {
    let outbound = holds(attributes.get("direction"), "outbound");
    // SPEC section 3's default test, written out again here as the oracle.
    let text = |v: Option<&Value>| matches!(v, Some(Value::String(s)) if !s.is_empty());
    let marked = text(attributes.get("call_sid"))
        || text(attributes.get("outbound_to"))
        || text(attributes.pointer("/conference/sid"));
    let conversation = attributes
        .get("conversationSid")
        .is_some_and(|v| !v.is_null())
        || attributes
            .get("channelType")
            .is_some_and(|v| !v.is_null() && v != "voice");
    if !marked || conversation {
        return Decision::NotACall;
    }
    let record = !(outbound || queue_sid == Some("WQ00000000000000000000000000000000"));
    Decision::Conference {
        record,
        reason: Reason::NoExclusionMatched,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let policy = if selector & 1 == 0 {
        FailPolicy::DoNotRecord
    } else {
        FailPolicy::Record
    };
    let (queue_sid, queue_name) = QUEUES[usize::from(selector >> 1) % QUEUES.len()];

    let Some(attributes) = parse_attributes(text) else {
        let parsed: Result<Value, _> = serde_json::from_str(text);
        assert!(
            parsed.map_or(true, |v| !v.is_object()),
            "a JSON object is always parseable"
        );
        return;
    };
    assert!(attributes.is_object());
    let [example, every_kind, disabled] = &*RULES;

    let task = Task {
        attributes: &attributes,
        queue_sid,
        queue_name,
        channel: None,
    };
    let decision = decide(example, &task, policy);
    assert_eq!(
        decision == Decision::NotACall,
        !is_call_by_default(&attributes),
        "the example uses the default voice test"
    );
    let expected = example_expectation(&attributes, queue_sid);
    assert_eq!(decision.outcome(), expected.outcome(), "template semantics");

    decide(every_kind, &task, policy);
    let disabled_decision = decide(disabled, &task, policy);
    if disabled_decision != Decision::NotACall {
        assert_eq!(disabled_decision.outcome(), "record-from-start");
    }
});
