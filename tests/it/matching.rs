//! The matching semantics, as a specification. Each row: a condition, TaskAttributes, and
//! whether the condition matches. The first table is the Flex template's
//! `conditional_recording` matcher kept to the letter; the second, this project's
//! extensions.

use conditional_recording::rules::{Decision, FailPolicy, Reason, RuleList, RuleRef, Rules, Task};
use serde_json::{Value, json};

/// Whether `condition`, as the only `exclude_attributes` entry, excludes a call with
/// `attributes` (a `call_sid` is added so the task is a call).
fn excludes(condition: &Value, attributes: &Value) -> bool {
    let rules = Rules::from_value(&json!({"enabled": true, "exclude_attributes": [condition]}))
        .unwrap_or_else(|e| panic!("{condition} should be valid: {e}"));
    let mut attributes = attributes.clone();
    attributes["call_sid"] = json!("CA00000000000000000000000000000000");
    let task = Task {
        attributes: &attributes,
        queue_sid: None,
        queue_name: None,
        channel: None,
    };
    match rules.decide(&task, FailPolicy::DoNotRecord) {
        Decision::Conference {
            reason: Reason::ExcludedByAttribute(_),
            ..
        } => true,
        Decision::Conference {
            reason: Reason::NoExclusionMatched,
            ..
        } => false,
        other => panic!("unexpected decision {other:?}"),
    }
}

fn check(table: &[(&str, Value, Value, bool)]) {
    let failures: Vec<String> = table
        .iter()
        .filter(|(_, condition, attributes, expected)| excludes(condition, attributes) != *expected)
        .map(|(name, condition, attributes, expected)| {
            format!("{name}: {condition} on {attributes} should match: {expected}")
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_templates_matcher() {
    check(&[
        // Strict equality, same JSON type.
        (
            "equal strings",
            json!({"key": "direction", "value": "outbound"}),
            json!({"direction": "outbound"}),
            true,
        ),
        (
            "case-sensitive",
            json!({"key": "direction", "value": "outbound"}),
            json!({"direction": "Outbound"}),
            false,
        ),
        (
            "key is case-sensitive",
            json!({"key": "Direction", "value": "outbound"}),
            json!({"direction": "outbound"}),
            false,
        ),
        (
            "\"\" matches \"\"",
            json!({"key": "to_city", "value": ""}),
            json!({"to_city": ""}),
            true,
        ),
        (
            "\"\" is not missing",
            json!({"key": "to_city", "value": ""}),
            json!({}),
            false,
        ),
        (
            "\"1\" is not 1",
            json!({"key": "n", "value": "1"}),
            json!({"n": 1}),
            false,
        ),
        (
            "1 is not \"1\"",
            json!({"key": "n", "value": 1}),
            json!({"n": "1"}),
            false,
        ),
        (
            "\"true\" matches only the string",
            json!({"key": "consent", "value": "true"}),
            json!({"consent": true}),
            false,
        ),
        (
            "\"true\" matches the string",
            json!({"key": "consent", "value": "true"}),
            json!({"consent": "true"}),
            true,
        ),
        (
            "true is not \"true\"",
            json!({"key": "consent", "value": true}),
            json!({"consent": "true"}),
            false,
        ),
        (
            "false matches false",
            json!({"key": "consent", "value": false}),
            json!({"consent": false}),
            true,
        ),
        (
            "false is not 0",
            json!({"key": "consent", "value": false}),
            json!({"consent": 0}),
            false,
        ),
        (
            "\"\" is not false",
            json!({"key": "consent", "value": ""}),
            json!({"consent": false}),
            false,
        ),
        // Numbers by value, as JavaScript's ===.
        (
            "3 equals 3.0",
            json!({"key": "n", "value": 3}),
            json!({"n": 3.0}),
            true,
        ),
        (
            "3.0 equals 3",
            json!({"key": "n", "value": 3.0}),
            json!({"n": 3}),
            true,
        ),
        (
            "-0 equals 0",
            json!({"key": "n", "value": 0}),
            json!({"n": -0.0}),
            true,
        ),
        (
            "3 is not 3.5",
            json!({"key": "n", "value": 3}),
            json!({"n": 3.5}),
            false,
        ),
        (
            "beyond 2^53 as JavaScript sees it",
            json!({"key": "n", "value": 9007199254740993_u64}),
            json!({"n": 9007199254740992_u64}),
            true,
        ),
        // Dot paths.
        (
            "dot path",
            json!({"key": "ivr.choice", "value": "billing"}),
            json!({"ivr": {"choice": "billing"}}),
            true,
        ),
        (
            "deep dot path",
            json!({"key": "a.b.c.d", "value": 1}),
            json!({"a": {"b": {"c": {"d": 1}}}}),
            true,
        ),
        (
            "path through a string",
            json!({"key": "direction.length", "value": 8}),
            json!({"direction": "outbound"}),
            false,
        ),
        (
            "path through null",
            json!({"key": "a.b", "value": "x"}),
            json!({"a": null}),
            false,
        ),
        (
            "a dotted member name is not a path",
            json!({"key": "a.b", "value": "x"}),
            json!({"a.b": "x"}),
            false,
        ),
        (
            "numeric segment indexes an array",
            json!({"key": "ivr.menu_path.1", "value": "billing"}),
            json!({"ivr": {"menu_path": ["main", "billing"]}}),
            true,
        ),
        (
            "numeric segment names an object member",
            json!({"key": "m.0", "value": "zero"}),
            json!({"m": {"0": "zero"}}),
            true,
        ),
        (
            "index past the end",
            json!({"key": "p.2", "value": "x"}),
            json!({"p": ["x", "x"]}),
            false,
        ),
        (
            "\"01\" is not an index",
            json!({"key": "p.01", "value": "b"}),
            json!({"p": ["a", "b"]}),
            false,
        ),
        (
            "\"-1\" is not an index",
            json!({"key": "p.-1", "value": "b"}),
            json!({"p": ["a", "b"]}),
            false,
        ),
        (
            "index then member",
            json!({"key": "items.0.sku", "value": "card"}),
            json!({"items": [{"sku": "card"}]}),
            true,
        ),
        // Arrays: containment of a strictly equal element.
        (
            "array contains",
            json!({"key": "conversations.topics", "value": "financial"}),
            json!({"conversations": {"topics": ["billing", "financial"]}}),
            true,
        ),
        (
            "array lacks",
            json!({"key": "conversations.topics", "value": "financial"}),
            json!({"conversations": {"topics": ["billing"]}}),
            false,
        ),
        (
            "array element type is strict",
            json!({"key": "tags", "value": 1}),
            json!({"tags": ["1"]}),
            false,
        ),
        (
            "an empty array never matches",
            json!({"key": "tags", "value": ""}),
            json!({"tags": []}),
            false,
        ),
        (
            "objects inside arrays never match",
            json!({"key": "tags", "value": "vip"}),
            json!({"tags": [{"name": "vip"}, {"vip": true}]}),
            false,
        ),
        (
            "arrays inside arrays never match",
            json!({"key": "tags", "value": "vip"}),
            json!({"tags": [["vip"]]}),
            false,
        ),
        (
            "null inside an array never matches",
            json!({"key": "tags", "value": false}),
            json!({"tags": [null]}),
            false,
        ),
        // Missing and null never match; nor do objects.
        (
            "missing",
            json!({"key": "direction", "value": "outbound"}),
            json!({}),
            false,
        ),
        (
            "null",
            json!({"key": "direction", "value": "outbound"}),
            json!({"direction": null}),
            false,
        ),
        (
            "an object never equals a scalar",
            json!({"key": "ivr", "value": "billing"}),
            json!({"ivr": {"choice": "billing"}}),
            false,
        ),
        // No normalisation of any kind.
        (
            "no unicode normalisation",
            json!({"key": "city", "value": "Mont\u{e9}al"}),
            json!({"city": "Monte\u{301}al"}),
            false,
        ),
        (
            "no trimming",
            json!({"key": "direction", "value": "outbound"}),
            json!({"direction": "outbound "}),
            false,
        ),
    ]);
}

#[test]
fn the_extensions() {
    let phones: Vec<String> = (0..10_000).map(|i| format!("+1415555{i:04}")).collect();
    check(&[
        // any_of: one of a set, hash-based.
        (
            "any_of string",
            json!({"key": "from", "any_of": ["+14155550100", "+14155550101"]}),
            json!({"from": "+14155550101"}),
            true,
        ),
        (
            "any_of miss",
            json!({"key": "from", "any_of": ["+14155550100"]}),
            json!({"from": "+14155550102"}),
            false,
        ),
        (
            "any_of keeps types strict",
            json!({"key": "n", "any_of": ["1", true]}),
            json!({"n": 1}),
            false,
        ),
        (
            "any_of numbers by value",
            json!({"key": "n", "any_of": [2, 3]}),
            json!({"n": 3.0}),
            true,
        ),
        (
            "any_of booleans",
            json!({"key": "b", "any_of": [false]}),
            json!({"b": false}),
            true,
        ),
        (
            "any_of on an array value",
            json!({"key": "skills", "any_of": ["payments", "fraud"]}),
            json!({"skills": ["billing", "fraud"]}),
            true,
        ),
        (
            "any_of of 10,000",
            json!({"key": "from", "any_of": phones}),
            json!({"from": "+14155559999"}),
            true,
        ),
        (
            "any_of of 10,000, miss",
            json!({"key": "from", "any_of": phones}),
            json!({"from": "+14155550000x"}),
            false,
        ),
        // prefix: strings and string elements only.
        (
            "prefix",
            json!({"key": "from", "prefix": "+44"}),
            json!({"from": "+442071234567"}),
            true,
        ),
        (
            "prefix miss",
            json!({"key": "from", "prefix": "+44"}),
            json!({"from": "+14155550100"}),
            false,
        ),
        (
            "prefix is case-sensitive",
            json!({"key": "queue", "prefix": "Pay"}),
            json!({"queue": "payments"}),
            false,
        ),
        (
            "prefix ignores numbers",
            json!({"key": "n", "prefix": "1"}),
            json!({"n": 12}),
            false,
        ),
        (
            "prefix on an array",
            json!({"key": "tags", "prefix": "pci-"}),
            json!({"tags": ["vip", "pci-card"]}),
            true,
        ),
        // regex: matches anywhere unless anchored.
        (
            "regex anywhere",
            json!({"key": "from", "regex": "555"}),
            json!({"from": "+14155550100"}),
            true,
        ),
        (
            "regex anchored",
            json!({"key": "from", "regex": "^555"}),
            json!({"from": "+14155550100"}),
            false,
        ),
        (
            "regex ignores booleans",
            json!({"key": "b", "regex": "true"}),
            json!({"b": true}),
            false,
        ),
        (
            "regex on an array",
            json!({"key": "topics", "regex": "^(card|payment)s?$"}),
            json!({"topics": ["billing", "payments"]}),
            true,
        ),
        (
            "regex case-insensitive when asked",
            json!({"key": "d", "regex": "(?i)^outbound$"}),
            json!({"d": "OUTBOUND"}),
            true,
        ),
        // exists.
        (
            "exists: present",
            json!({"key": "ivr.consent", "exists": true}),
            json!({"ivr": {"consent": false}}),
            true,
        ),
        (
            "exists: empty string is present",
            json!({"key": "a", "exists": true}),
            json!({"a": ""}),
            true,
        ),
        (
            "exists: null is absent",
            json!({"key": "a", "exists": true}),
            json!({"a": null}),
            false,
        ),
        (
            "exists false: missing",
            json!({"key": "ivr.consent", "exists": false}),
            json!({"ivr": {}}),
            true,
        ),
        (
            "exists false: null",
            json!({"key": "ivr.consent", "exists": false}),
            json!({"ivr": {"consent": null}}),
            true,
        ),
        (
            "exists false: present",
            json!({"key": "ivr.consent", "exists": false}),
            json!({"ivr": {"consent": true}}),
            false,
        ),
        // pointer: RFC 6901, for keys with dots.
        (
            "pointer to a dotted key",
            json!({"pointer": "/crm.flags/pci", "value": true}),
            json!({"crm.flags": {"pci": true}}),
            true,
        ),
        (
            "pointer escapes",
            json!({"pointer": "/a~1b/c~0d", "value": 1}),
            json!({"a/b": {"c~d": 1}}),
            true,
        ),
        (
            "pointer into an array",
            json!({"pointer": "/menu/1", "value": "pay"}),
            json!({"menu": ["main", "pay"]}),
            true,
        ),
        (
            "pointer missing",
            json!({"pointer": "/nope", "exists": false}),
            json!({}),
            true,
        ),
        // all: every inner condition.
        (
            "all match",
            json!({"all": [{"key": "direction", "value": "inbound"}, {"key": "ivr.choice", "value": "payments"}]}),
            json!({"direction": "inbound", "ivr": {"choice": "payments"}}),
            true,
        ),
        (
            "all: one misses",
            json!({"all": [{"key": "direction", "value": "inbound"}, {"key": "ivr.choice", "value": "payments"}]}),
            json!({"direction": "inbound", "ivr": {"choice": "billing"}}),
            false,
        ),
        (
            "all nested",
            json!({"all": [{"all": [{"key": "a", "exists": true}]}, {"key": "b", "value": 1}]}),
            json!({"a": 0, "b": 1}),
            true,
        ),
    ]);
}

fn doc(value: Value) -> Rules {
    Rules::from_value(&value).unwrap_or_else(|e| panic!("{value} should be valid: {e}"))
}

const PAYMENTS: &str = "WQ0123456789abcdef0123456789abcdef";
const SALES: &str = "WQ11111111111111111111111111111111";

fn call() -> Value {
    json!({"call_sid": "CA00000000000000000000000000000000", "direction": "inbound", "ivr": {"consent": true}})
}

fn decide(
    rules: &Rules,
    attributes: &Value,
    queue_sid: Option<&str>,
    queue_name: Option<&str>,
) -> Decision {
    let task = Task {
        attributes,
        queue_sid,
        queue_name,
        channel: None,
    };
    rules.decide(&task, FailPolicy::DoNotRecord)
}

fn recorded(reason: Reason) -> Decision {
    Decision::Conference {
        record: true,
        reason,
    }
}

fn not_recorded(reason: Reason) -> Decision {
    Decision::Conference {
        record: false,
        reason,
    }
}

fn rule(list: RuleList, index: usize) -> RuleRef {
    RuleRef { list, index }
}

#[test]
fn queues_match_by_sid_or_name_exactly() {
    let rules = doc(json!({"enabled": true, "exclude_queues": ["Payments", PAYMENTS]}));
    let c = call();
    assert_eq!(
        decide(&rules, &c, Some(PAYMENTS), None),
        not_recorded(Reason::ExcludedByQueue(rule(RuleList::ExcludeQueues, 1))),
        "a SID entry decides without the queue's name"
    );
    assert_eq!(
        decide(&rules, &c, Some(SALES), Some("Payments")),
        not_recorded(Reason::ExcludedByQueue(rule(RuleList::ExcludeQueues, 0)))
    );
    assert_eq!(
        decide(&rules, &c, Some(SALES), Some("payments")),
        recorded(Reason::NoExclusionMatched),
        "names are case-sensitive"
    );
    assert_eq!(
        decide(&rules, &c, Some(SALES), None),
        not_recorded(Reason::QueueNameUnresolved),
        "a needed but unknown name leaves the call to the fail policy"
    );
    let task = Task {
        attributes: &c,
        queue_sid: Some(SALES),
        queue_name: None,
        channel: None,
    };
    assert_eq!(
        rules.decide(&task, FailPolicy::Record),
        recorded(Reason::QueueNameUnresolved)
    );
}

#[test]
fn an_attribute_exclusion_decides_before_a_queue_name_is_needed() {
    let rules = doc(json!({"enabled": true, "exclude_queues": ["Payments"],
        "exclude_attributes": [{"key": "direction", "value": "outbound"}]}));
    let outbound = json!({"direction": "outbound", "outbound_to": "+14155550123"});
    assert_eq!(
        decide(&rules, &outbound, Some(SALES), None),
        not_recorded(Reason::ExcludedByAttribute(rule(
            RuleList::ExcludeAttributes,
            0
        )))
    );
    assert!(rules.names_queues());
    assert!(!doc(json!({"enabled": true, "exclude_queues": [PAYMENTS]})).names_queues());
}

#[test]
fn the_first_matching_entry_is_the_reason() {
    let rules = doc(json!({"enabled": true, "exclude_attributes": [
        {"key": "direction", "value": "outbound"},
        {"key": "ivr.consent", "value": true},
        {"key": "direction", "value": "inbound"},
    ]}));
    assert_eq!(
        decide(&rules, &call(), None, None),
        not_recorded(Reason::ExcludedByAttribute(rule(
            RuleList::ExcludeAttributes,
            1
        )))
    );
}

#[test]
fn include_rules_record_only_what_they_name_and_exclusion_wins() {
    let rules = doc(json!({
        "enabled": true,
        "include_queues": [SALES, "Retention"],
        "include_attributes": [{"key": "ivr.consent", "value": true}],
        "exclude_attributes": [{"key": "direction", "value": "outbound"}],
    }));
    let consenting = call();
    let declined =
        json!({"call_sid": "CA00000000000000000000000000000000", "ivr": {"consent": false}});
    let outbound_consenting =
        json!({"direction": "outbound", "outbound_to": "+14155550123", "ivr": {"consent": true}});
    assert_eq!(
        decide(&rules, &declined, Some(SALES), None),
        recorded(Reason::Included(rule(RuleList::IncludeQueues, 0)))
    );
    assert_eq!(
        decide(&rules, &consenting, Some(PAYMENTS), None),
        recorded(Reason::Included(rule(RuleList::IncludeAttributes, 0)))
    );
    assert_eq!(
        decide(&rules, &declined, Some(PAYMENTS), Some("Retention")),
        recorded(Reason::Included(rule(RuleList::IncludeQueues, 1)))
    );
    assert_eq!(
        decide(&rules, &declined, Some(PAYMENTS), Some("Billing")),
        not_recorded(Reason::NotIncluded)
    );
    assert_eq!(
        decide(&rules, &declined, Some(PAYMENTS), None),
        not_recorded(Reason::QueueNameUnresolved),
        "an include name might have matched"
    );
    assert_eq!(
        decide(&rules, &outbound_consenting, Some(SALES), None),
        not_recorded(Reason::ExcludedByAttribute(rule(
            RuleList::ExcludeAttributes,
            0
        ))),
        "exclusion wins over inclusion"
    );
    let only_attributes = doc(
        json!({"enabled": true, "include_attributes": [{"key": "ivr.consent", "value": true}]}),
    );
    assert_eq!(
        decide(&only_attributes, &declined, Some(SALES), None),
        not_recorded(Reason::NotIncluded)
    );
}

#[test]
fn disabled_records_every_call_and_applies_no_rule() {
    let rules = doc(
        json!({"enabled": false, "exclude_queues": [PAYMENTS, "Payments"],
        "exclude_attributes": [{"key": "direction", "value": "inbound"}]}),
    );
    assert_eq!(
        decide(&rules, &call(), Some(PAYMENTS), None),
        recorded(Reason::Disabled)
    );
    assert!(
        !rules.names_queues(),
        "a disabled document needs no queue name"
    );
}

/// Flex's task shapes (copies of the shared fixtures), as TaskAttributes text.
const FIXTURES: &[(&str, &str)] = &[
    (
        "inbound call",
        include_str!("../data/fixtures/inbound-voice-task-attributes.json"),
    ),
    (
        "dialer call",
        include_str!("../data/fixtures/outbound-voice-task-attributes.json"),
    ),
    (
        "internal call",
        include_str!("../data/fixtures/internal-call-task-attributes.json"),
    ),
    (
        "transferred call",
        include_str!("../data/fixtures/transferred-call-task-attributes.json"),
    ),
    (
        "web chat",
        include_str!("../data/fixtures/chat-task-attributes.json"),
    ),
    (
        "outbound SMS",
        include_str!("../data/fixtures/sms-outbound-task-attributes.json"),
    ),
    (
        "outbound WhatsApp",
        include_str!("../data/fixtures/whatsapp-outbound-task-attributes.json"),
    ),
];

fn fixture(name: &str) -> Value {
    let (_, text) = FIXTURES.iter().find(|(n, _)| *n == name).unwrap();
    serde_json::from_str(text).unwrap()
}

/// Which tasks are calls (SPEC section 3): the channel when the task carries one, else the
/// document's `voice_tasks`, else the default test.
#[test]
fn which_tasks_are_calls() {
    let rules = doc(json!({"enabled": true}));
    let is_call = |attributes: &Value, channel: Option<&str>| {
        let task = Task {
            attributes,
            queue_sid: None,
            queue_name: None,
            channel,
        };
        rules.decide(&task, FailPolicy::DoNotRecord) != Decision::NotACall
    };
    let by_default = [
        ("inbound call", true),
        ("dialer call", true),
        ("internal call", true),
        ("transferred call", true),
        ("web chat", false),
        ("outbound SMS", false),
        ("outbound WhatsApp", false),
    ];
    for (name, call) in by_default {
        assert_eq!(is_call(&fixture(name), None), call, "{name}");
    }
    let shapes = [
        ("call_sid alone", json!({"call_sid": "CA1"}), true),
        (
            "outbound_to alone",
            json!({"outbound_to": "+14155550123"}),
            true,
        ),
        (
            "conference.sid alone",
            json!({"conference": {"sid": "CF1"}}),
            true,
        ),
        (
            "direction outbound alone",
            json!({"direction": "outbound"}),
            false,
        ),
        ("empty call_sid", json!({"call_sid": ""}), false),
        ("null call_sid", json!({"call_sid": null}), false),
        ("call_sid not a string", json!({"call_sid": 1}), false),
        (
            "empty conference.sid",
            json!({"conference": {"sid": ""}}),
            false,
        ),
        (
            "conference without sid",
            json!({"conference": {"friendlyName": "WT1"}}),
            false,
        ),
        (
            "a conversation",
            json!({"call_sid": "CA1", "conversationSid": "CH1"}),
            false,
        ),
        (
            "a null conversationSid",
            json!({"call_sid": "CA1", "conversationSid": null}),
            true,
        ),
        (
            "channelType sms",
            json!({"outbound_to": "+1", "channelType": "sms"}),
            false,
        ),
        (
            "channelType whatsapp",
            json!({"call_sid": "CA1", "channelType": "whatsapp"}),
            false,
        ),
        (
            "channelType voice",
            json!({"call_sid": "CA1", "channelType": "voice"}),
            true,
        ),
        (
            "channelType not a string",
            json!({"call_sid": "CA1", "channelType": 3}),
            false,
        ),
        ("nothing", json!({}), false),
    ];
    for (name, attributes, call) in &shapes {
        assert_eq!(is_call(attributes, None), *call, "{name}");
    }
    // The channel decides alone when the task carries one; an empty one says nothing.
    assert!(is_call(&json!({}), Some("voice")));
    assert!(is_call(&fixture("outbound SMS"), Some("voice")));
    assert!(!is_call(&fixture("inbound call"), Some("sms")));
    assert!(!is_call(&fixture("inbound call"), Some("Voice")));
    assert!(is_call(&fixture("inbound call"), Some("")));
    assert!(!is_call(&fixture("web chat"), Some("")));

    // A document's voice_tasks replaces the default test, but not the channel.
    let custom =
        doc(json!({"enabled": true, "voice_tasks": [{"key": "channel", "value": "voice"}]}));
    assert_eq!(decide(&custom, &call(), None, None), Decision::NotACall);
    assert_eq!(
        decide(&custom, &json!({"channel": "voice"}), None, None),
        recorded(Reason::NoExclusionMatched)
    );
    let task = Task {
        attributes: &json!({"channel": "voice"}),
        queue_sid: None,
        queue_name: None,
        channel: Some("chat"),
    };
    assert_eq!(
        custom.decide(&task, FailPolicy::DoNotRecord),
        Decision::NotACall
    );
}

/// The decision for an arriving task, when its TaskAttributes cannot be read or no good
/// rules are loaded: the fail policy for a call, `{}` for anything else.
#[test]
fn without_readable_attributes_or_rules_only_the_channel_and_the_default_test_decide() {
    use conditional_recording::rules::{Arrival, decide_arrival};
    let rules = doc(json!({"enabled": true}));
    let arrival = |attributes, channel| Arrival {
        attributes,
        queue_sid: None,
        queue_name: None,
        channel,
    };
    let sms = fixture("outbound SMS");
    let inbound = fixture("inbound call");
    let policy = FailPolicy::DoNotRecord;
    let cases = [
        (
            Some(&rules),
            arrival(None, None),
            not_recorded(Reason::AttributesUnparseable),
        ),
        (
            Some(&rules),
            arrival(None, Some("voice")),
            not_recorded(Reason::AttributesUnparseable),
        ),
        (Some(&rules), arrival(None, Some("sms")), Decision::NotACall),
        (
            None,
            arrival(Some(&inbound), None),
            not_recorded(Reason::RulesUnavailable),
        ),
        (None, arrival(Some(&sms), None), Decision::NotACall),
        (
            None,
            arrival(Some(&sms), Some("voice")),
            not_recorded(Reason::RulesUnavailable),
        ),
        (
            None,
            arrival(Some(&inbound), Some("chat")),
            Decision::NotACall,
        ),
        (
            Some(&rules),
            arrival(Some(&inbound), None),
            recorded(Reason::NoExclusionMatched),
        ),
    ];
    for (index, (rules, arrival, expected)) in cases.into_iter().enumerate() {
        assert_eq!(
            decide_arrival(rules, arrival, policy),
            expected,
            "case {index}"
        );
    }
}

/// Numbers are read as `JSON.parse` reads them, correctly rounded to the nearest double, in
/// rules and in TaskAttributes alike, then compared by value. Each row: the rule's `value`
/// and the task's number as written, and whether JavaScript finds them equal (checked with
/// node when the table was written; [`numbers_parse_as_javascript_parses_them`] checks the
/// parse itself against node on every run).
#[test]
fn numbers_compare_as_javascript_compares_them() {
    use conditional_recording::taskrouter::parse_attributes;
    let table = [
        // 2^53 + 1 written as a double rounds to 2^53 (ties to even).
        ("9007199254740992", "9007199254740993.0", true),
        ("9007199254740993", "9007199254740992", true),
        ("9007199254740993", "9007199254740994", false),
        // Two neighbouring doubles near 1e23.
        ("1.0000000000000001e23", "1e23", false),
        ("1e23", "100000000000000000000000", true),
        (
            "123456789012345678901234567890",
            "1.2345678901234568e29",
            true,
        ),
        ("7.2057594037927933e16", "72057594037927936", true),
        ("0.1", "0.10000000000000000555", true),
        ("0.3", "0.30000000000000004", false),
        // Exactly half an ulp above 1 rounds to even (1); one digit below it as well.
        (
            "1",
            "1.00000000000000011102230246251565404236316680908203125",
            true,
        ),
        (
            "1",
            "1.00000000000000011102230246251565404236316680908203124",
            true,
        ),
        (
            "1.0000000000000002",
            "1.00000000000000011102230246251565404236316680908203126",
            true,
        ),
        // The extremes: the largest double, the smallest normal and the smallest subnormal.
        ("1.7976931348623157e308", "1.7976931348623158e308", true),
        ("2.2250738585072011e-308", "2.2250738585072012e-308", false),
        ("2.2250738585072014e-308", "22.250738585072014e-309", true),
        ("5e-324", "4.9406564584124654e-324", true),
        ("5e-324", "2.4703282292062328e-324", true),
        ("0", "2.4703282292062327e-324", true),
        ("-0", "0", true),
        ("0", "-0.0", true),
        ("3", "3.0", true),
        ("3", "3.0000000000000001", true),
        ("3", "3.000000000000001", false),
    ];
    let failures: Vec<String> = table
        .iter()
        .filter_map(|&(rule, task, equal)| {
            let rules = Rules::from_json(&format!(
                r#"{{"enabled": true, "exclude_attributes": [{{"key": "n", "value": {rule}}}]}}"#
            ))
            .unwrap_or_else(|e| panic!("rule {rule}: {e}"));
            let attributes = parse_attributes(&format!(r#"{{"call_sid": "CA1", "n": {task}}}"#))
                .unwrap_or_else(|| panic!("task {task} is readable"));
            let excluded = matches!(
                decide(&rules, &attributes, None, None),
                Decision::Conference { record: false, .. }
            );
            (excluded != equal).then(|| format!("{rule} against {task}: equal should be {equal}"))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Past the largest double (Infinity in JavaScript): a rule is refused with its path, and
    // TaskAttributes are unreadable, so the call follows the fail policy.
    for huge in ["1e400", "1.7976931348623159e308", "-1e309"] {
        let error = Rules::from_json(&format!(
            r#"{{"enabled": true, "exclude_attributes": [{{"key": "n", "value": {huge}}}]}}"#
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains("not valid JSON"), "{huge}: {error}");
        assert_eq!(
            parse_attributes(&format!(r#"{{"call_sid": "CA1", "n": {huge}}}"#)),
            None
        );
    }
}

#[test]
fn the_templates_own_config_block_works_unchanged() {
    let rules = Rules::from_json(
        r#"{
            "enabled": true,
            "exclude_queues": ["Payments", "WQ0123456789abcdef0123456789abcdef"],
            "exclude_attributes": [
                { "key": "direction", "value": "outbound" },
                { "key": "conversations.topics", "value": "financial" }
            ]
        }"#,
    )
    .unwrap();
    let financial =
        json!({"call_sid": "CA1", "conversations": {"topics": ["billing", "financial"]}});
    assert_eq!(
        decide(&rules, &financial, Some(SALES), None),
        not_recorded(Reason::ExcludedByAttribute(rule(
            RuleList::ExcludeAttributes,
            1
        )))
    );
}

#[test]
fn reasons_read_as_their_rule_paths() {
    let reason = Reason::ExcludedByAttribute(rule(RuleList::ExcludeAttributes, 2));
    assert_eq!(
        reason.to_string(),
        "excluded by attribute (exclude_attributes[2])"
    );
    assert_eq!(reason.kind(), "excluded_by_attribute");
    assert_eq!(
        Reason::QueueNameUnresolved.to_string(),
        "queue name unresolved"
    );
}

/// The number parse against JavaScript's own (`node`, which `make test` needs for Twilio's
/// npm SDK): the extremes above and a few thousand numbers of every length and exponent,
/// each read by `JSON.parse` and by the service, must be the same double, or out of range
/// (Infinity in JavaScript) for both.
#[test]
fn numbers_parse_as_javascript_parses_them() {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let mut texts: Vec<String> = [
        "9007199254740993.0",
        "1.0000000000000001e23",
        "1e23",
        "100000000000000000000000",
        "1.00000000000000011102230246251565404236316680908203125",
        "1.7976931348623157e308",
        "1.7976931348623158e308",
        "1.7976931348623159e308",
        "2.2250738585072011e-308",
        "2.4703282292062327e-324",
        "2.4703282292062328e-324",
        "1e400",
        "-1e400",
        "1e-400",
        "18446744073709551615",
        "18446744073709551616",
        "-9223372036854775809",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // A fixed pseudo-random walk (xorshift), so a failure can be replayed.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    for _ in 0..4000 {
        let digits: String = (0..1 + next(25))
            .map(|_| char::from(b'0' + next(10) as u8))
            .collect();
        let digits = digits.trim_start_matches('0');
        let digits = if digits.is_empty() { "1" } else { digits };
        let point = next(digits.len() as u64 + 1) as usize;
        let mut text = String::new();
        if next(4) == 0 {
            text.push('-');
        }
        match point {
            0 => text.push_str(digits),
            p => {
                text.push_str(&digits[..p]);
                if p < digits.len() {
                    text.push('.');
                    text.push_str(&digits[p..]);
                }
            }
        }
        if next(3) > 0 {
            text.push_str(&format!("e{}", next(660) as i64 - 340));
        }
        texts.push(text);
    }

    let script = "const lines = require('fs').readFileSync(0, 'utf8').split('\\n').filter(Boolean);\
        const out = lines.map(t => { const n = JSON.parse(t); return Number.isFinite(n) ? n.toString() : 'out of range'; });\
        process.stdout.write(out.join('\\n'));";
    let mut node = Command::new("node")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("node (installed for Twilio's npm SDK; see `make test`)");
    node.stdin
        .take()
        .unwrap()
        .write_all(texts.join("\n").as_bytes())
        .unwrap();
    let output = node.wait_with_output().unwrap();
    assert!(output.status.success(), "node failed");
    let answers = String::from_utf8(output.stdout).unwrap();
    let answers: Vec<&str> = answers.lines().collect();
    assert_eq!(answers.len(), texts.len());

    let mut failures = Vec::new();
    for (text, javascript) in texts.iter().zip(answers) {
        let ours = serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.as_f64());
        // JavaScript prints the shortest text that reads back as the same double; reading
        // it is exact for any parser that rounds correctly, so compare as doubles.
        let theirs = javascript.parse::<f64>().ok();
        if ours != theirs {
            failures.push(format!("{text}: JSON.parse {javascript}, ours {ours:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        texts.len(),
        failures.join("\n")
    );
}
