//! The decision alone: `Rules::decide` on a parsed 2 KB TaskAttributes, for the template's
//! example document and for a large one. Every task here is a call that no rule matches, so
//! every rule is looked at (the common case, and the slowest).
//!
//! Each bench first checks that a decision allocates nothing (once each regex has its
//! matching cache, made by the first).
//!
//! `cargo bench --bench decision`; numbers and targets in BENCHMARKS.md.

use std::hint::black_box;
use std::time::Duration;

use conditional_recording::rules::{Decision, FailPolicy, Reason, Rules, Task};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

#[path = "support/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// A realistic Flex inbound voice task (2,042 bytes as TaskRouter sends it).
const ATTRIBUTES: &str = include_str!("data/task-attributes.json");
/// The task's queue: in neither document.
const QUEUE_SID: &str = "WQ11111111111111111111111111111111";
const QUEUE_NAME: &str = "Sales";

/// The example block of the Flex template's `conditional_recording` feature (SPEC section 3).
fn template_example() -> Value {
    json!({
        "enabled": true,
        "exclude_queues": ["Payments", "WQ0123456789abcdef0123456789abcdef"],
        "exclude_attributes": [
            {"key": "direction", "value": "outbound"},
            {"key": "conversations.topics", "value": "financial"}
        ]
    })
}

/// 10,000 queue entries (8,000 SIDs, 2,000 names) and 1,000 attribute conditions the way a
/// large contact center writes them: many values on a few keys (accounts, campaigns,
/// topics), an `any_of` of 10,000 phone numbers, country prefixes, a few regexes, `exists`,
/// `all` and `pointer` conditions. None matches the task.
fn large_document() -> Value {
    let mut queues: Vec<Value> = (0..8_000u64)
        .map(|i| json!(format!("WQ{:032x}", i * 7_919 + 0x5eed)))
        .collect();
    queues.extend((0..2_000).map(|i| json!(format!("Queue {i}"))));

    let mut conditions = Vec::new();
    let mut values = |key: &str, count: usize, value: &dyn Fn(usize) -> Value| {
        for i in 0..count {
            conditions.push(json!({"key": key, "value": value(i)}));
        }
    };
    values("customers.customer_value_1", 400, &|i| {
        json!(format!("{:09}", 500_000 + i))
    });
    values("conversations.conversation_attribute_1", 200, &|i| {
        json!(format!("campaign-2025-{i}"))
    });
    values("conversations.topics", 100, &|i| {
        json!(format!("topic-{i}"))
    });
    values("skills_needed", 50, &|i| json!(format!("skill-{i}")));
    values("ivr.choice", 50, &|i| json!(format!("choice-{i}")));
    values("to", 50, &|i| json!(format!("+1900555{i:04}")));
    values("from_state", 20, &|i| json!(format!("S{i}")));
    values("conversations.queue_time", 10, &|i| json!(1_000 + i));
    values("crm.open_cases", 10, &|i| json!(100 + i));
    values("ivr.menu_path.1", 10, &|i| json!(format!("menu-{i}")));
    values("customers.customer_value_2", 10, &|i| {
        json!(format!("tier-{i}"))
    });
    values("crm.segment", 25, &|i| json!(format!("segment-{i}")));
    values("campaign.id", 14, &|i| json!(format!("c-{i}")));

    let phones: Vec<String> = (0..10_000).map(|i| format!("+1212555{i:04}")).collect();
    conditions.push(json!({"key": "from", "any_of": phones}));
    conditions.extend((0..30).map(|i| json!({"key": "from", "prefix": format!("+{}", 200 + i)})));
    conditions.extend([
        json!({"key": "to", "regex": "^\\+1(900|976)"}),
        json!({"key": "from", "regex": "^\\+1(900|976)"}),
        json!({"key": "customers.email", "regex": "@blocked\\.example$"}),
        json!({"key": "conversations.content", "regex": "(?i)card number|cvv"}),
        json!({"key": "conversations.topics", "regex": "^(pci|payments?)$"}),
        json!({"key": "crm.pci", "exists": true}),
        json!({"pointer": "/crm.flags/pci", "exists": true}),
        json!({"key": "call_sid", "exists": false}),
        json!({"key": "ivr.consent", "exists": false}),
        json!({"key": "conference.sid", "exists": false}),
        json!({"all": [{"key": "direction", "value": "outbound"}, {"key": "ivr.choice", "value": "payments"}]}),
        json!({"all": [{"key": "ivr.consent", "value": false}, {"key": "from_country", "value": "US"}]}),
        json!({"all": [{"key": "customers.customer_value_2", "value": "gold"}, {"key": "ivr.choice", "value": "pci"}]}),
        json!({"all": [{"key": "crm.open_cases", "value": 0}, {"key": "crm.segment", "exists": true}]}),
        json!({"all": [{"key": "language", "value": "fr-FR"}, {"key": "to_country", "value": "US"}]}),
        json!({"pointer": "/conversations/topics", "value": "chargeback"}),
        json!({"pointer": "/ivr/menu_path/0", "value": "payments"}),
        json!({"pointer": "/crm.flags/vip", "value": true}),
        json!({"pointer": "/customers/market_segment", "value": "enterprise"}),
        json!({"pointer": "/conference/participants/customer", "value": "CA00000000000000000000000000000000"}),
    ]);
    assert_eq!(conditions.len(), 1_000);
    json!({"enabled": true, "exclude_queues": queues, "exclude_attributes": conditions})
}

/// 10,000 queue entries and 1,000 conditions on the paths the template's example looks at
/// (`direction`, `conversations.topics`) and `from`: the rules grow five hundredfold, the
/// parts of the task they look at do not.
fn same_paths_document() -> Value {
    let mut document = large_document();
    let mut conditions = vec![json!({"key": "direction", "value": "outbound"})];
    conditions.extend(
        (0..998).map(|i| json!({"key": "conversations.topics", "value": format!("topic-{i}")})),
    );
    let phones: Vec<String> = (0..10_000).map(|i| format!("+1212555{i:04}")).collect();
    conditions.push(json!({"key": "from", "any_of": phones}));
    document["exclude_attributes"] = Value::Array(conditions);
    document
}

/// (b)'s tests with the rules taken out: the template's two queue entries and one condition
/// for each path and kind of test in (b) (its first `value` per path, an `any_of` of one
/// number, one prefix, every regex, `exists`, `all` and `pointer`). It looks at the same parts
/// of the task as (b) with 2% of its conditions, so (b) beside it shows what the number of
/// rules costs, apart from how much of the task they look at.
fn large_document_one_per_test() -> Value {
    let large = large_document();
    let mut seen = std::collections::HashSet::new();
    let conditions: Vec<Value> = large["exclude_attributes"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter_map(|condition| {
            let mut condition = condition.clone();
            if let Some(numbers) = condition.get_mut("any_of") {
                *numbers = json!([numbers[0].clone()]);
            }
            let object = condition.as_object().expect("a condition object");
            let path = object.get("key").or(object.get("pointer")).cloned();
            let kind: Vec<&str> = object.keys().map(String::as_str).collect();
            let keep = object.contains_key("all")
                || object.contains_key("regex")
                || seen.insert((path, kind.join(",")));
            keep.then_some(condition)
        })
        .collect();
    assert_eq!(conditions.len(), 35, "one per path and kind of test in (b)");
    let mut document = template_example();
    document["exclude_attributes"] = Value::Array(conditions);
    document
}

/// 1,000 `value` conditions each on a path of its own (half nested), none in the task: the
/// worst shape for an index by path. Reported for information; no target applies.
fn distinct_paths_document() -> Value {
    let conditions: Vec<Value> = (0..1_000)
        .map(|i| {
            let key = if i % 2 == 0 {
                format!("field_{i}")
            } else {
                format!("crm.field_{i}")
            };
            json!({"key": key, "value": format!("v{i}")})
        })
        .collect();
    json!({"enabled": true, "exclude_attributes": conditions})
}

fn bench(c: &mut Criterion, name: &str, document: &Value, queue_name: Option<&str>) {
    let rules = Rules::from_value(document).expect("a valid document");
    let attributes: Value = serde_json::from_str(ATTRIBUTES).expect("JSON attributes");
    let task = Task {
        attributes: &attributes,
        queue_sid: Some(QUEUE_SID),
        queue_name,
        channel: None,
    };
    // The first decision creates each regex's matching cache; later ones allocate nothing.
    rules.decide(&task, FailPolicy::DoNotRecord);
    let (allocations, decision) =
        counting::allocations(|| rules.decide(&task, FailPolicy::DoNotRecord));
    assert_eq!(allocations, 0, "{name}: a decision allocates nothing");
    assert_eq!(
        decision,
        Decision::Conference {
            record: true,
            reason: Reason::NoExclusionMatched
        },
        "{name}: no rule may match the task, so that every rule is looked at"
    );
    c.bench_function(name, |b| {
        b.iter(|| black_box(&rules).decide(black_box(&task), FailPolicy::DoNotRecord))
    });
}

fn decision(c: &mut Criterion) {
    bench(
        c,
        "decision/a_template_example",
        &template_example(),
        Some(QUEUE_NAME),
    );
    bench(
        c,
        "decision/b_10k_queues_1k_conditions",
        &large_document(),
        Some(QUEUE_NAME),
    );
    bench(
        c,
        "decision/b_10k_queues_1k_conditions_on_the_paths_of_a",
        &same_paths_document(),
        Some(QUEUE_NAME),
    );
    bench(
        c,
        "decision/b_one_condition_per_test_no_queues",
        &large_document_one_per_test(),
        Some(QUEUE_NAME),
    );
    bench(
        c,
        "decision/1k_conditions_on_distinct_paths",
        &distinct_paths_document(),
        None,
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = decision
}
criterion_main!(benches);
