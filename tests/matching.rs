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
    let outbound = json!({"direction": "outbound"});
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
    let outbound_consenting = json!({"direction": "outbound", "ivr": {"consent": true}});
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

#[test]
fn only_calls_get_a_conference() {
    let rules = doc(json!({"enabled": true}));
    let chat = json!({"channelType": "web", "direction": "inbound", "from": "Visitor 4821"});
    let dialer = json!({"direction": "outbound", "outbound_to": "+14155550123"});
    assert_eq!(decide(&rules, &chat, None, None), Decision::NotACall);
    assert_eq!(
        decide(&rules, &dialer, None, None),
        recorded(Reason::NoExclusionMatched)
    );
    assert_eq!(
        decide(&rules, &call(), None, None),
        recorded(Reason::NoExclusionMatched)
    );
    let null_call_sid = json!({"call_sid": null});
    assert_eq!(
        decide(&rules, &null_call_sid, None, None),
        Decision::NotACall
    );

    let custom =
        doc(json!({"enabled": true, "voice_tasks": [{"key": "channel", "value": "voice"}]}));
    assert_eq!(decide(&custom, &call(), None, None), Decision::NotACall);
    assert_eq!(
        decide(&custom, &json!({"channel": "voice"}), None, None),
        recorded(Reason::NoExclusionMatched)
    );
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
