//! Queue names in the rules: the real binary in `serve` resolves the callback's TaskQueueSid
//! to its friendly_name through the TaskRouter REST API (a local stand-in here), caches it,
//! keeps the answer inside TaskRouter's 5 seconds, and answers every failure by the fail
//! policy with the reason `queue_name_unresolved`.

use crate::standin::{self, ServeWithApi};
use crate::support;
use crate::support::{API_KEY, API_SECRET, TOKEN};

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use standin::{Fault, StandIn, queue_path};
use support::{CALLER_DATA, CHAT, Callback, ENQUEUED_OUTBOUND, INBOUND, Logs};

const OTHER_TOKEN: &str = "fedcba9876543210fedcba9876543210";

const RECORD: &str = "record-from-start";
const DO_NOT_RECORD: &str = "do-not-record";

/// Rules that name a queue and nothing else.
const PAYMENTS_BY_NAME: &str = r#"{"enabled": true, "exclude_queues": ["Payments"]}"#;

/// TaskRouter ignores an answer that takes longer and calls the fallback URL.
const TASKROUTER_LIMIT: Duration = Duration::from_secs(5);

fn conference(record: &str) -> Value {
    json!({"instruction": "conference", "conference_record": record})
}

// ---------------------------------------------------------------------------------------
// Harness

/// The server on a rules file, pointed at its own stand-in API, with signatures enforced.
struct Setup(ServeWithApi);

impl std::ops::Deref for Setup {
    type Target = ServeWithApi;
    fn deref(&self) -> &ServeWithApi {
        &self.0
    }
}

impl Setup {
    fn start(rules: &str, env: &[(&str, &str)]) -> Setup {
        Setup(ServeWithApi::start(rules, env))
    }

    /// Posts the callback and returns its 200 JSON answer.
    fn answer(&self, callback: &Callback) -> Value {
        self.send(callback).expect_json(200)
    }

    /// Posts the callback; returns the answer and how long it took.
    fn timed_answer(&self, callback: &Callback) -> (Value, Duration) {
        let started = Instant::now();
        let answer = self.answer(callback);
        (answer, started.elapsed())
    }

    /// How many requests the API received.
    fn calls(&self) -> usize {
        self.standin.requests().len()
    }

    /// Serves the callback's queue under `name`, to the callback's account and the token.
    fn serve_queue(&self, callback: &Callback, name: &str) {
        self.standin.add_queue(
            callback.get("WorkspaceSid"),
            callback.get("TaskQueueSid"),
            name,
        );
        self.standin
            .add_credentials(callback.get("AccountSid"), TOKEN);
    }

    fn stop(self) -> (StandIn, Logs) {
        self.0.stop()
    }
}

/// A new callback (its own task and reservation) for the account, workspace and queue of
/// `like`.
fn same_queue(attributes: &str, like: &Callback) -> Callback {
    Callback::new(attributes)
        .set("AccountSid", like.get("AccountSid"))
        .set("WorkspaceSid", like.get("WorkspaceSid"))
        .set("TaskQueueSid", like.get("TaskQueueSid"))
}

/// Asserts the decision line for `callback`.
fn assert_decided(
    logs: &Logs,
    callback: &Callback,
    decision: &str,
    reason: &str,
    rule: Option<&str>,
    queue_name: Option<&str>,
) {
    let line = logs.decision_for(callback.task_sid());
    crate::support::assert_decision_line(&line, callback, decision, reason, rule);
    match queue_name {
        Some(name) => assert_eq!(line["queue_name"], name, "queue_name is logged: {line}"),
        None => assert!(
            line.get("queue_name").is_none_or(Value::is_null),
            "no queue_name when none was resolved: {line}"
        ),
    }
}

/// Nothing of the task (its attributes, the caller's data) reaches the API.
fn assert_no_task_data_sent(standin: &StandIn) {
    for sent in standin.requests() {
        let text = sent.text();
        assert!(
            !text.contains("TaskAttributes") && !text.contains("call_sid"),
            "TaskAttributes reached the API: {text}"
        );
        for item in CALLER_DATA {
            assert!(!text.contains(item), "caller data reached the API: {text}");
        }
    }
}

/// No secret, nor an Authorization value made from one, in any log line.
fn assert_no_secrets_logged(logs: &Logs, pairs: &[(&str, &str)]) {
    let text = logs.text();
    for (username, secret) in pairs {
        assert!(!text.contains(secret), "a secret reached a log:\n{text}");
        let basic = STANDARD.encode(format!("{username}:{secret}"));
        assert!(
            !text.contains(&basic),
            "an Authorization value reached a log:\n{text}"
        );
    }
}

/// The API request for `callback`'s queue: a GET with Basic credentials.
fn assert_queue_fetch(sent: &standin::Recorded, callback: &Callback, username: &str) {
    assert_eq!(sent.method, "GET", "{}", sent.text());
    assert_eq!(
        sent.path(),
        queue_path(callback.get("WorkspaceSid"), callback.get("TaskQueueSid")),
        "{}",
        sent.text()
    );
    assert_eq!(sent.username.as_deref(), Some(username), "{}", sent.text());
}

/// With `prepare` making the lookup fail, the call follows each fail policy, inside
/// TaskRouter's limit, after one attempt, with the reason `queue_name_unresolved`.
fn assert_unresolved_follows_the_fail_policy(what: &str, prepare: impl Fn(&StandIn, &Callback)) {
    for (env, expected) in [
        (&[][..], DO_NOT_RECORD),
        (&[("ON_RULES_UNAVAILABLE", "record")][..], RECORD),
    ] {
        let setup = Setup::start(PAYMENTS_BY_NAME, env);
        let callback = Callback::new(INBOUND);
        prepare(&setup.standin, &callback);
        let (answer, elapsed) = setup.timed_answer(&callback);
        assert_eq!(answer, conference(expected), "{what}, {env:?}");
        assert!(
            elapsed < TASKROUTER_LIMIT,
            "{what}: answered after {elapsed:?}"
        );
        let (standin, logs) = setup.stop();
        let sent = standin.requests();
        assert!(!sent.is_empty(), "{what}: the name was never looked up");
        assert_queue_fetch(&sent[0], &callback, callback.get("AccountSid"));
        assert_decided(
            &logs,
            &callback,
            expected,
            "queue_name_unresolved",
            None,
            None,
        );
        assert_no_secrets_logged(&logs, &[(callback.get("AccountSid"), TOKEN)]);
    }
}

// ---------------------------------------------------------------------------------------
// Names decide

#[test]
fn a_queue_named_in_the_rules_is_matched_by_its_friendly_name() {
    let setup = Setup::start(PAYMENTS_BY_NAME, &[]);
    let callback = Callback::new(INBOUND);
    setup.serve_queue(&callback, "Payments");
    assert_eq!(setup.answer(&callback), conference(DO_NOT_RECORD));

    let (standin, logs) = setup.stop();
    let sent = standin.requests();
    assert_eq!(sent.len(), 1, "one lookup");
    assert_queue_fetch(&sent[0], &callback, callback.get("AccountSid"));
    assert_decided(
        &logs,
        &callback,
        DO_NOT_RECORD,
        "excluded_by_queue",
        Some("exclude_queues[0]"),
        Some("Payments"),
    );
    assert_no_task_data_sent(&standin);
    assert_no_secrets_logged(&logs, &[(callback.get("AccountSid"), TOKEN)]);
}

#[test]
fn a_queue_whose_name_matches_no_rule_is_recorded() {
    let setup = Setup::start(PAYMENTS_BY_NAME, &[]);
    let callback = Callback::new(INBOUND);
    // Names match exactly and case-sensitively.
    setup.serve_queue(&callback, "payments");
    assert_eq!(setup.answer(&callback), conference(RECORD));

    let (standin, logs) = setup.stop();
    assert_eq!(standin.requests().len(), 1, "one lookup");
    assert_decided(
        &logs,
        &callback,
        RECORD,
        "no_exclusion_matched",
        None,
        Some("payments"),
    );
    assert_no_task_data_sent(&standin);
}

// ---------------------------------------------------------------------------------------
// No call when none is needed

#[test]
fn a_sid_entry_that_decides_makes_no_call() {
    let callback = Callback::new(INBOUND);
    let rules = json!({
        "enabled": true,
        "exclude_queues": [callback.get("TaskQueueSid"), "Payments"],
    })
    .to_string();
    let setup = Setup::start(&rules, &[]);
    setup.serve_queue(&callback, "Payments");
    assert_eq!(setup.answer(&callback), conference(DO_NOT_RECORD));

    let (standin, logs) = setup.stop();
    assert_eq!(standin.requests().len(), 0, "the SID decided");
    assert_decided(
        &logs,
        &callback,
        DO_NOT_RECORD,
        "excluded_by_queue",
        Some("exclude_queues[0]"),
        None,
    );
}

#[test]
fn rules_that_name_no_queue_make_no_call() {
    let rules = r#"{
        "enabled": true,
        "exclude_queues": ["WQ00000000000000000000000000000000"],
        "exclude_attributes": [{"key": "direction", "value": "outbound"}]
    }"#;
    let setup = Setup::start(rules, &[]);
    let callback = Callback::new(INBOUND);
    setup.serve_queue(&callback, "Payments");
    assert_eq!(setup.answer(&callback), conference(RECORD));

    let (standin, logs) = setup.stop();
    assert_eq!(standin.requests().len(), 0, "no name to resolve");
    assert_decided(&logs, &callback, RECORD, "no_exclusion_matched", None, None);
}

#[test]
fn disabled_rules_make_no_call() {
    let setup = Setup::start(r#"{"enabled": false, "exclude_queues": ["Payments"]}"#, &[]);
    let callback = Callback::new(INBOUND);
    setup.serve_queue(&callback, "Payments");
    assert_eq!(setup.answer(&callback), conference(RECORD));

    let (standin, logs) = setup.stop();
    assert_eq!(standin.requests().len(), 0, "disabled rules need no name");
    assert_decided(&logs, &callback, RECORD, "disabled", None, None);
}

#[test]
fn an_attribute_exclusion_decides_before_any_call() {
    let rules = r#"{
        "enabled": true,
        "exclude_queues": ["Payments"],
        "exclude_attributes": [{"key": "direction", "value": "outbound"}]
    }"#;
    let setup = Setup::start(rules, &[]);
    let outbound = Callback::new(ENQUEUED_OUTBOUND);
    setup.serve_queue(&outbound, "Payments");
    assert_eq!(setup.answer(&outbound), conference(DO_NOT_RECORD));
    // A chat task is no call at all: `{}`, and no name needed either.
    let chat = Callback::new(CHAT);
    setup.serve_queue(&chat, "Payments");
    assert_eq!(setup.answer(&chat), json!({}));

    let (standin, logs) = setup.stop();
    assert_eq!(standin.requests().len(), 0, "the attributes decided");
    assert_decided(
        &logs,
        &outbound,
        DO_NOT_RECORD,
        "excluded_by_attribute",
        Some("exclude_attributes[0]"),
        None,
    );
    assert_decided(&logs, &chat, "no-action", "not_a_call", None, None);
}

// ---------------------------------------------------------------------------------------
// The cache

#[test]
fn names_are_cached_per_workspace_and_queue() {
    let setup = Setup::start(PAYMENTS_BY_NAME, &[]);
    let first = Callback::new(INBOUND);
    setup.serve_queue(&first, "Payments");
    let mut callbacks = vec![first.clone()];
    callbacks.extend((1..20).map(|_| same_queue(INBOUND, &first)));
    for callback in &callbacks {
        assert_eq!(setup.answer(callback), conference(DO_NOT_RECORD));
    }
    assert_eq!(setup.calls(), 1, "20 callbacks on one queue, one lookup");

    let second = Callback::new(INBOUND);
    setup.serve_queue(&second, "Support");
    assert_eq!(setup.answer(&second), conference(RECORD));
    assert_eq!(
        setup.answer(&same_queue(INBOUND, &second)),
        conference(RECORD)
    );
    assert_eq!(setup.calls(), 2, "another queue, its own lookup");

    // The same queue SID in another workspace is another queue.
    let elsewhere = Callback::new(INBOUND).set("TaskQueueSid", first.get("TaskQueueSid"));
    setup.serve_queue(&elsewhere, "Support");
    assert_eq!(setup.answer(&elsewhere), conference(RECORD));
    assert_eq!(setup.calls(), 3, "another workspace, its own lookup");

    let (standin, logs) = setup.stop();
    for callback in &callbacks {
        assert_decided(
            &logs,
            callback,
            DO_NOT_RECORD,
            "excluded_by_queue",
            Some("exclude_queues[0]"),
            Some("Payments"),
        );
    }
    assert_decided(
        &logs,
        &elsewhere,
        RECORD,
        "no_exclusion_matched",
        None,
        Some("Support"),
    );
    assert_eq!(
        standin
            .queue_requests(first.get("WorkspaceSid"), first.get("TaskQueueSid"))
            .len(),
        1
    );
    assert_no_task_data_sent(&standin);
}

#[test]
fn a_cached_name_is_looked_up_again_after_the_rules_ttl() {
    let setup = Setup::start(PAYMENTS_BY_NAME, &[("RULES_CACHE_TTL_SECONDS", "1")]);
    let callback = Callback::new(INBOUND);
    setup.serve_queue(&callback, "Support");
    assert_eq!(setup.answer(&callback), conference(RECORD));
    assert_eq!(setup.calls(), 1);

    // Renamed in the console; seen once the cached name expires.
    setup.standin.add_queue(
        callback.get("WorkspaceSid"),
        callback.get("TaskQueueSid"),
        "Payments",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let later = same_queue(INBOUND, &callback);
    assert_eq!(setup.answer(&later), conference(DO_NOT_RECORD));
    assert_eq!(setup.calls(), 2, "looked up again after the TTL");

    let (_, logs) = setup.stop();
    assert_decided(
        &logs,
        &later,
        DO_NOT_RECORD,
        "excluded_by_queue",
        Some("exclude_queues[0]"),
        Some("Payments"),
    );
}

// ---------------------------------------------------------------------------------------
// Credentials

#[test]
fn basic_auth_uses_the_callbacks_account_and_the_auth_token() {
    let setup = Setup::start(PAYMENTS_BY_NAME, &[]);
    let callback = Callback::new(INBOUND);
    setup.standin.add_queue(
        callback.get("WorkspaceSid"),
        callback.get("TaskQueueSid"),
        "Payments",
    );
    // Only this account with this token is accepted.
    setup
        .standin
        .set_credentials(callback.get("AccountSid"), TOKEN);
    assert_eq!(setup.answer(&callback), conference(DO_NOT_RECORD));

    // Another account's callback is looked up as that account, which the API refuses here.
    let other = Callback::new(INBOUND);
    setup.standin.add_queue(
        other.get("WorkspaceSid"),
        other.get("TaskQueueSid"),
        "Payments",
    );
    assert_eq!(setup.answer(&other), conference(DO_NOT_RECORD));

    let (standin, logs) = setup.stop();
    let sent = standin.requests();
    assert_eq!(sent.len(), 2, "one lookup per queue");
    assert_queue_fetch(&sent[0], &callback, callback.get("AccountSid"));
    assert_eq!(sent[0].password.as_deref(), Some(TOKEN));
    assert_queue_fetch(&sent[1], &other, other.get("AccountSid"));
    assert_decided(
        &logs,
        &callback,
        DO_NOT_RECORD,
        "excluded_by_queue",
        Some("exclude_queues[0]"),
        Some("Payments"),
    );
    assert_decided(
        &logs,
        &other,
        DO_NOT_RECORD,
        "queue_name_unresolved",
        None,
        None,
    );
    assert_no_secrets_logged(
        &logs,
        &[
            (callback.get("AccountSid"), TOKEN),
            (other.get("AccountSid"), TOKEN),
        ],
    );
}

#[test]
fn api_key_credentials_are_used_when_configured() {
    let setup = Setup::start(
        PAYMENTS_BY_NAME,
        &[
            ("TWILIO_API_KEY", API_KEY),
            ("TWILIO_API_SECRET", API_SECRET),
        ],
    );
    let callback = Callback::new(INBOUND);
    setup.standin.add_queue(
        callback.get("WorkspaceSid"),
        callback.get("TaskQueueSid"),
        "Payments",
    );
    // The account and token are refused: only the key works.
    setup.standin.set_credentials(API_KEY, API_SECRET);
    assert_eq!(setup.answer(&callback), conference(DO_NOT_RECORD));

    let (standin, logs) = setup.stop();
    let sent = standin.requests();
    assert_eq!(sent.len(), 1, "one lookup");
    assert_queue_fetch(&sent[0], &callback, API_KEY);
    assert_eq!(sent[0].password.as_deref(), Some(API_SECRET));
    assert_decided(
        &logs,
        &callback,
        DO_NOT_RECORD,
        "excluded_by_queue",
        Some("exclude_queues[0]"),
        Some("Payments"),
    );
    assert_no_secrets_logged(
        &logs,
        &[(API_KEY, API_SECRET), (callback.get("AccountSid"), TOKEN)],
    );
    assert_no_task_data_sent(&standin);
}

// ---------------------------------------------------------------------------------------
// Failures follow the fail policy

#[test]
fn a_401_follows_the_fail_policy() {
    assert_unresolved_follows_the_fail_policy("401", |standin, callback| {
        standin.add_queue(
            callback.get("WorkspaceSid"),
            callback.get("TaskQueueSid"),
            "Payments",
        );
        // The API knows another token for this account.
        standin.set_credentials(callback.get("AccountSid"), OTHER_TOKEN);
    });
}

#[test]
fn a_404_follows_the_fail_policy() {
    assert_unresolved_follows_the_fail_policy("404", |standin, callback| {
        // The queue does not exist in the workspace.
        standin.set_credentials(callback.get("AccountSid"), TOKEN);
    });
}

#[test]
fn a_500_or_503_follows_the_fail_policy() {
    for status in [500, 503] {
        assert_unresolved_follows_the_fail_policy(&status.to_string(), |standin, callback| {
            standin.add_queue(
                callback.get("WorkspaceSid"),
                callback.get("TaskQueueSid"),
                "Payments",
            );
            standin.set_credentials(callback.get("AccountSid"), TOKEN);
            standin.set_fault(Some(Fault::Status(status)));
        });
    }
}

#[test]
fn a_hanging_api_follows_the_fail_policy_inside_taskrouters_limit() {
    assert_unresolved_follows_the_fail_policy("hang", |standin, callback| {
        standin.add_queue(
            callback.get("WorkspaceSid"),
            callback.get("TaskQueueSid"),
            "Payments",
        );
        standin.set_credentials(callback.get("AccountSid"), TOKEN);
        standin.set_fault(Some(Fault::Hang));
    });
}

#[test]
fn concurrent_callbacks_on_a_hanging_api_are_all_answered_in_time() {
    let setup = Setup::start(PAYMENTS_BY_NAME, &[]);
    let first = Callback::new(INBOUND);
    setup.serve_queue(&first, "Payments");
    setup.standin.set_fault(Some(Fault::Hang));
    let callbacks: Vec<Callback> = (0..4)
        .map(|_| same_queue(INBOUND, &first))
        .chain((0..4).map(|_| Callback::new(INBOUND)))
        .collect();
    let timings = setup.send_all_at_once(&callbacks);
    for (answer, elapsed) in &timings {
        assert_eq!(answer, &conference(DO_NOT_RECORD));
        assert!(*elapsed < TASKROUTER_LIMIT, "answered after {elapsed:?}");
    }

    let (standin, logs) = setup.stop();
    assert!(
        !standin.requests().is_empty(),
        "the names were looked up (and hung)"
    );
    for callback in &callbacks {
        assert_decided(
            &logs,
            callback,
            DO_NOT_RECORD,
            "queue_name_unresolved",
            None,
            None,
        );
    }
}

#[test]
fn a_429_backs_off_for_its_retry_after() {
    let setup = Setup::start(PAYMENTS_BY_NAME, &[]);
    let callback = Callback::new(INBOUND);
    setup.serve_queue(&callback, "Payments");
    setup
        .standin
        .fail_next(1, Fault::RateLimited(Some("2".to_owned())));
    let (answer, elapsed) = setup.timed_answer(&callback);
    let limited_at = Instant::now();
    assert_eq!(answer, conference(DO_NOT_RECORD));
    assert!(elapsed < TASKROUTER_LIMIT, "answered after {elapsed:?}");
    assert_eq!(setup.calls(), 1);

    // Within the back-off: no call, the fail policy again.
    let during = same_queue(INBOUND, &callback);
    assert_eq!(setup.answer(&during), conference(DO_NOT_RECORD));
    assert!(
        limited_at.elapsed() < Duration::from_secs(2),
        "too slow to test the back-off"
    );
    assert_eq!(setup.calls(), 1, "no lookup during the back-off");

    // After it: looked up again, and resolved.
    std::thread::sleep(Duration::from_millis(3000).saturating_sub(limited_at.elapsed()));
    let after = same_queue(INBOUND, &callback);
    assert_eq!(setup.answer(&after), conference(DO_NOT_RECORD));
    assert_eq!(setup.calls(), 2, "looked up again after the back-off");

    let (_, logs) = setup.stop();
    for limited in [&callback, &during] {
        assert_decided(
            &logs,
            limited,
            DO_NOT_RECORD,
            "queue_name_unresolved",
            None,
            None,
        );
    }
    assert_decided(
        &logs,
        &after,
        DO_NOT_RECORD,
        "excluded_by_queue",
        Some("exclude_queues[0]"),
        Some("Payments"),
    );
}

#[test]
fn a_429_without_retry_after_backs_off_too() {
    let setup = Setup::start(PAYMENTS_BY_NAME, &[("ON_RULES_UNAVAILABLE", "record")]);
    let callback = Callback::new(INBOUND);
    setup.serve_queue(&callback, "Payments");
    setup.standin.fail_next(1, Fault::RateLimited(None));
    assert_eq!(setup.answer(&callback), conference(RECORD));
    let during = same_queue(INBOUND, &callback);
    assert_eq!(setup.answer(&during), conference(RECORD));
    assert_eq!(setup.calls(), 1, "no lookup during the default back-off");

    let (_, logs) = setup.stop();
    for limited in [&callback, &during] {
        assert_decided(&logs, limited, RECORD, "queue_name_unresolved", None, None);
    }
}
