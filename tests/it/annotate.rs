//! Annotate mode (`ANSWER_MODE=annotate`): the real binary in `serve` answers every
//! callback `200 {}` at once and writes its decision for a voice task into the task's
//! attributes, under `conditional_recording`, through the TaskRouter REST API (a local
//! stand-in here that keeps Twilio's ETag / `If-Match` / `412` contract). The write merges
//! into the task's current attributes, keeps what a concurrent writer changed, and every
//! way it can fail is logged with the TaskSid and counted, without delaying the answer.

use crate::standin::{self, ServeWithApi};
use crate::support;
use crate::support::Http;
use crate::support::{API_KEY, API_SECRET, TOKEN};

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use standin::{Fault, Recorded, StandIn, task_path};
use support::{CALLER_DATA, CHAT, Callback, ENQUEUED_OUTBOUND, INBOUND, Logs, OUTBOUND, Response};

/// Rules that exclude outbound calls and nothing else.
const EXCLUDE_OUTBOUND: &str =
    r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "value": "outbound"}]}"#;

/// The key the decision is written under.
const ANNOTATION: &str = "conditional_recording";

/// TaskRouter ignores an answer that takes longer and calls the fallback URL.
const TASKROUTER_LIMIT: Duration = Duration::from_secs(5);
/// A healthy API leaves the answer far inside the limit.
const AT_ONCE: Duration = Duration::from_secs(2);
/// The write's deadline, from the callback's arrival.
const WRITE_DEADLINE: Duration = Duration::from_secs(3);
/// How long a test waits for the service to reach the API.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(6);
/// After the API saw what it waits for: time for the service's log lines, and for a
/// request that should not come (a retry) to show up.
const GRACE: Duration = Duration::from_millis(700);

/// Values in the inbound fixture that identify the caller's call but are not phone
/// numbers; a log line holding them holds the attributes.
const ATTRIBUTE_VALUES: &[&str] = &["campaign-2026-q4", "ivr-billing", "address change"];

// ---------------------------------------------------------------------------------------
// Harness

/// The server in annotate mode on a rules file, pointed at its own stand-in API, with
/// signatures enforced.
struct Setup {
    api: ServeWithApi,
    /// The accounts whose callbacks were sent: their `account:token` must not be logged.
    accounts: Mutex<Vec<String>>,
}

impl std::ops::Deref for Setup {
    type Target = ServeWithApi;
    fn deref(&self) -> &ServeWithApi {
        &self.api
    }
}

impl Setup {
    /// `env` is added after (and so overrides) the mode, the base URL, the token and the
    /// rules file.
    fn start(rules: &str, env: &[(&str, &str)]) -> Setup {
        let mut all = vec![("ANSWER_MODE", "annotate")];
        all.extend_from_slice(env);
        Setup {
            api: ServeWithApi::start(rules, &all),
            accounts: Mutex::new(Vec::new()),
        }
    }

    /// Serves the callback's task with the callback's own attributes, to the callback's
    /// account and the token.
    fn serve_task(&self, callback: &Callback) {
        self.serve_task_with(callback, callback.get("TaskAttributes"));
    }

    /// Serves the callback's task with these attributes (the JSON text TaskRouter stores).
    fn serve_task_with(&self, callback: &Callback, attributes: &str) {
        let (workspace, task) = task_of(callback);
        self.standin.add_task(workspace, task, attributes);
        self.standin
            .add_credentials(callback.get("AccountSid"), TOKEN);
    }

    fn track(&self, callback: &Callback) {
        self.accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(callback.get("AccountSid").to_owned());
    }

    /// Posts the callback, signed for the server's URL.
    fn send(&self, callback: &Callback) -> Response {
        self.track(callback);
        self.api.send(callback)
    }

    /// Posts the callback; asserts the answer is `200 {}` and returns how long it took.
    fn answer(&self, callback: &Callback) -> Duration {
        let started = Instant::now();
        let answer = self.send(callback).expect_json(200);
        let elapsed = started.elapsed();
        assert_eq!(answer, json!({}), "annotate mode answers {{}}");
        assert!(
            elapsed < TASKROUTER_LIMIT,
            "answered after {elapsed:?}, past TaskRouter's limit"
        );
        elapsed
    }

    /// Waits until `until` holds for the API (or [`SETTLE_TIMEOUT`]), lets the service
    /// finish, stops it, and checks that no log line holds a secret or caller data.
    fn finish(self, until: impl Fn(&StandIn) -> bool) -> (StandIn, Logs) {
        let waiting = Instant::now();
        while !until(&self.standin) && waiting.elapsed() < SETTLE_TIMEOUT {
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(GRACE);
        let accounts = std::mem::take(
            &mut *self
                .accounts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let (standin, logs) = self.api.stop();
        assert_nothing_secret_logged(&logs, &accounts);
        (standin, logs)
    }
}

/// (WorkspaceSid, TaskSid) of the callback.
fn task_of(callback: &Callback) -> (&str, &str) {
    (callback.get("WorkspaceSid"), callback.get("TaskSid"))
}

/// The requests for the callback's task.
fn task_requests(standin: &StandIn, callback: &Callback) -> Vec<Recorded> {
    let (workspace, task) = task_of(callback);
    standin.task_requests(workspace, task)
}

/// How many requests with this method the callback's task got.
fn count(standin: &StandIn, callback: &Callback, method: &str) -> usize {
    task_requests(standin, callback)
        .iter()
        .filter(|r| r.method == method)
        .count()
}

/// The callback's task as it is now, parsed.
fn attributes_now(standin: &StandIn, callback: &Callback) -> Value {
    let (workspace, task) = task_of(callback);
    standin
        .task_attributes(workspace, task)
        .unwrap_or_else(|| panic!("the task {task} is gone"))
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The attributes without the annotation.
fn without_annotation(attributes: &Value) -> Value {
    let mut rest = attributes.clone();
    if let Some(object) = rest.as_object_mut() {
        object.remove(ANNOTATION);
    }
    rest
}

/// Seconds since the Unix epoch.
fn epoch_seconds(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Seconds since the Unix epoch of an RFC 3339 time in UTC (`2026-11-23T20:25:39Z`,
/// fractional seconds allowed, `Z` or `+00:00`); `None` when the text is not one.
fn rfc3339_utc_seconds(text: &str) -> Option<i64> {
    fn number(digits: &str, width: usize) -> Option<i64> {
        (digits.len() == width && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    }
    let (date, time) = text.split_once(['T', 't'])?;
    let time = time
        .strip_suffix(['Z', 'z'])
        .or_else(|| time.strip_suffix("+00:00"))?;
    let (clock, fraction) = match time.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (time, None),
    };
    if fraction.is_some_and(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let date: Vec<&str> = date.split('-').collect();
    let clock: Vec<&str> = clock.split(':').collect();
    let ([y, mo, d], [h, mi, s]) = (date.as_slice(), clock.as_slice()) else {
        return None;
    };
    let (year, month, day) = (number(y, 4)?, number(mo, 2)?, number(d, 2)?);
    let (hour, minute, second) = (number(h, 2)?, number(mi, 2)?, number(s, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if !(1..=month_days).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// The annotation holds exactly the decision, the rules version (none for a file) and a
/// UTC time inside the test.
fn assert_annotation(attributes: &Value, record: bool, reason: &str, since: SystemTime) {
    let annotation = &attributes[ANNOTATION];
    assert!(
        annotation.is_object(),
        "no {ANNOTATION} object in {attributes}"
    );
    assert_eq!(
        crate::support::sorted_keys(annotation),
        ["decided_at", "reason", "record", "rules_version"],
        "{annotation}"
    );
    assert_eq!(annotation["record"], json!(record), "{annotation}");
    assert_eq!(annotation["reason"], json!(reason), "{annotation}");
    assert_eq!(
        annotation["rules_version"],
        Value::Null,
        "a rules file has no version: {annotation}"
    );
    let decided_at = annotation["decided_at"]
        .as_str()
        .unwrap_or_else(|| panic!("decided_at is not a string: {annotation}"));
    let seconds = rfc3339_utc_seconds(decided_at)
        .unwrap_or_else(|| panic!("decided_at is not an RFC 3339 UTC time: {decided_at:?}"));
    let (from, to) = (
        epoch_seconds(since) - 1,
        epoch_seconds(SystemTime::now()) + 1,
    );
    assert!(
        (from..=to).contains(&seconds),
        "decided_at {decided_at} is not the time of the call"
    );
}

/// The callback's task got `attempts` fetch-then-write rounds and nothing else: each a
/// `GET` then a form `POST` of `Attributes` with `If-Match` set to the ETag that `GET`
/// answered, both with these Basic credentials. Returns the rounds.
fn assert_rounds(
    standin: &StandIn,
    callback: &Callback,
    attempts: usize,
    credentials: (&str, &str),
) -> Vec<(Recorded, Recorded)> {
    let sent = task_requests(standin, callback);
    let methods: Vec<&str> = sent.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(
        methods,
        ["GET", "POST"].repeat(attempts),
        "{attempts} fetch-then-write rounds"
    );
    assert_eq!(standin.requests().len(), sent.len(), "no other API request");
    let (workspace, task) = task_of(callback);
    let path = task_path(workspace, task);
    for sent in &sent {
        assert_eq!(sent.path(), path, "{}", sent.text());
        assert_eq!(
            sent.username.as_deref(),
            Some(credentials.0),
            "{}",
            sent.text()
        );
        assert_eq!(
            sent.password.as_deref(),
            Some(credentials.1),
            "{}",
            sent.text()
        );
    }
    let rounds: Vec<(Recorded, Recorded)> = sent
        .chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect();
    for (fetch, write) in &rounds {
        assert_eq!(fetch.answered, Some(200), "{}", fetch.text());
        let etag = fetch
            .answered_etag
            .as_deref()
            .unwrap_or_else(|| panic!("the stand-in sent no ETag for {}", fetch.text()));
        assert_eq!(
            write.header("if-match"),
            Some(etag),
            "the write names the revision it read: {}",
            write.text()
        );
        let media = write.header("content-type").unwrap_or_default();
        assert!(
            media.starts_with("application/x-www-form-urlencoded"),
            "{}",
            write.text()
        );
        let written = write
            .form_value("Attributes")
            .unwrap_or_else(|| panic!("no Attributes in {}", write.text()));
        // JSON as JavaScript reads it (half a surrogate pair, kept from the task, included).
        let raw: Box<serde_json::value::RawValue> =
            serde_json::from_str(&written).unwrap_or_else(|e| panic!("not JSON ({e}): {written}"));
        assert!(raw.get().starts_with('{'), "{written}");
    }
    rounds
}

/// The lines with this message for the callback's task.
fn lines(logs: &Logs, message: &str, callback: &Callback) -> Vec<Value> {
    logs.json()
        .into_iter()
        .filter(|line| line["message"] == message && line["task_sid"] == callback.task_sid())
        .collect()
}

/// One "task annotated" line for the callback, after this many attempts, and no failure.
fn assert_annotated_logged(logs: &Logs, callback: &Callback, attempts: u64) {
    let annotated = lines(logs, "task annotated", callback);
    assert_eq!(annotated.len(), 1, "one success line\n{}", logs.text());
    assert_eq!(
        annotated[0]["attempts"],
        json!(attempts),
        "{}",
        annotated[0]
    );
    assert!(
        lines(logs, "task annotation failed", callback).is_empty(),
        "{}",
        logs.text()
    );
    assert!(failure_metrics(logs).is_empty(), "{}", logs.text());
    assert_decision_says(logs, callback, "written");
}

/// The callback's one decision line says where the annotation went.
fn assert_decision_says(logs: &Logs, callback: &Callback, annotation: &str) {
    let decisions = lines(logs, "decision", callback);
    assert_eq!(decisions.len(), 1, "one decision line\n{}", logs.text());
    assert_eq!(decisions[0]["annotation"], annotation, "{}", decisions[0]);
}

/// One "task annotation failed" line for the callback, with a cause, and one EMF count;
/// returns the cause.
fn assert_failure_logged(logs: &Logs, callback: &Callback) -> String {
    let failed = lines(logs, "task annotation failed", callback);
    assert_eq!(failed.len(), 1, "one failure line\n{}", logs.text());
    let cause = failed[0]["cause"]
        .as_str()
        .unwrap_or_else(|| panic!("no cause in {}", failed[0]))
        .to_owned();
    assert!(!cause.trim().is_empty(), "{}", failed[0]);
    assert_eq!(
        failed[0]["reservation_sid"],
        callback.get("ReservationSid"),
        "{}",
        failed[0]
    );
    assert!(failed[0]["record"].is_boolean(), "{}", failed[0]);
    assert_decision_says(logs, callback, "failed");
    assert!(
        lines(logs, "task annotated", callback).is_empty(),
        "{}",
        logs.text()
    );
    let metrics = failure_metrics(logs);
    assert_eq!(
        metrics.len(),
        1,
        "one AnnotationFailures count\n{}",
        logs.text()
    );
    let directives = metrics[0]["_aws"]["CloudWatchMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        directives.iter().any(|d| {
            d["Metrics"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["Name"] == "AnnotationFailures"))
        }),
        "AnnotationFailures is declared as a metric: {}",
        metrics[0]
    );
    cause
}

/// The EMF lines (objects with `_aws.CloudWatchMetrics`) that count a failed annotation.
fn failure_metrics(logs: &Logs) -> Vec<Value> {
    logs.json()
        .into_iter()
        .filter(|l| {
            l["_aws"]["CloudWatchMetrics"].is_array() && l.get("AnnotationFailures").is_some()
        })
        .inspect(|l| assert_eq!(l["AnnotationFailures"], json!(1), "{l}"))
        .collect()
}

/// The decision line is written as in conference mode.
fn assert_decided(logs: &Logs, callback: &Callback, reason: &str, rule: Option<&str>) {
    let line = logs.decision_for(callback.task_sid());
    assert_eq!(line["reason"], reason, "{line}");
    match rule {
        Some(rule) => assert_eq!(line["rule"], rule, "{line}"),
        None => assert!(line.get("rule").is_none_or(Value::is_null), "{line}"),
    }
}

/// No secret, no Authorization value made from one, no caller data and no attribute
/// values in any log line.
fn assert_nothing_secret_logged(logs: &Logs, accounts: &[String]) {
    let text = logs.text();
    let mut basics = vec![STANDARD.encode(format!("{API_KEY}:{API_SECRET}"))];
    basics.extend(
        accounts
            .iter()
            .map(|account| STANDARD.encode(format!("{account}:{TOKEN}"))),
    );
    for secret in [TOKEN, API_SECRET] {
        assert!(!text.contains(secret), "a secret reached a log:\n{text}");
    }
    for basic in &basics {
        assert!(
            !text.contains(basic.as_str()),
            "an Authorization value reached a log:\n{text}"
        );
    }
    for item in CALLER_DATA.iter().chain(ATTRIBUTE_VALUES) {
        assert!(
            !text.contains(item),
            "caller data reached a log ({item}):\n{text}"
        );
    }
}

/// The rounds are done: this many writes, the last one answered.
fn writes_done(callback: &Callback, writes: usize) -> impl Fn(&StandIn) -> bool + '_ {
    move |standin| {
        let sent = task_requests(standin, callback);
        sent.iter().filter(|r| r.method == "POST").count() >= writes
            && sent.last().is_some_and(|r| r.answered.is_some())
    }
}

// ---------------------------------------------------------------------------------------
// The annotation

#[test]
fn an_inbound_call_is_annotated_to_be_recorded() {
    let since = SystemTime::now();
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let callback = Callback::new(INBOUND);
    setup.serve_task(&callback);
    let elapsed = setup.answer(&callback);
    assert!(elapsed < AT_ONCE, "answered after {elapsed:?}");

    let (standin, logs) = setup.finish(writes_done(&callback, 1));
    let rounds = assert_rounds(&standin, &callback, 1, (callback.get("AccountSid"), TOKEN));
    assert_eq!(rounds[0].1.answered, Some(200), "{}", rounds[0].1.text());
    let now = attributes_now(&standin, &callback);
    assert_annotation(&now, true, "no exclusion matched", since);
    assert_eq!(
        without_annotation(&now),
        parse(INBOUND),
        "nothing else changed"
    );
    assert_annotated_logged(&logs, &callback, 1);
    assert_decided(&logs, &callback, "no_exclusion_matched", None);
}

#[test]
fn an_outbound_call_is_annotated_not_to_be_recorded_with_the_rule_that_excluded_it() {
    let since = SystemTime::now();
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let callback = Callback::new(OUTBOUND);
    setup.serve_task(&callback);
    let elapsed = setup.answer(&callback);
    assert!(elapsed < AT_ONCE, "answered after {elapsed:?}");

    let (standin, logs) = setup.finish(writes_done(&callback, 1));
    assert_rounds(&standin, &callback, 1, (callback.get("AccountSid"), TOKEN));
    let now = attributes_now(&standin, &callback);
    assert_annotation(
        &now,
        false,
        "excluded by attribute (exclude_attributes[0])",
        since,
    );
    assert_eq!(
        without_annotation(&now),
        parse(OUTBOUND),
        "nothing else changed"
    );
    assert_annotated_logged(&logs, &callback, 1);
    assert_decided(
        &logs,
        &callback,
        "excluded_by_attribute",
        Some("exclude_attributes[0]"),
    );
}

#[test]
fn every_other_attribute_of_the_task_is_preserved_exactly() {
    let since = SystemTime::now();
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let callback = Callback::new(INBOUND);
    // The task as TaskRouter holds it now: the call's attributes, plus what others added
    // after the callback left, in values a lossy round trip would change.
    let mut stored = parse(INBOUND);
    for (key, value) in [
        (
            "added_after_the_callback",
            json!({"by": "studio", "step": 3}),
        ),
        ("unicode", json!("Zoë — 東京 ✓ \u{2028} \u{1F4DE}")),
        (
            "markup",
            json!("<b>\"quoted\" & 'single'</b> \\ back\tslash\n"),
        ),
        ("beyond_f64", json!(9_007_199_254_740_993_u64)),
        ("largest", json!(u64::MAX)),
        ("negative", json!(-42)),
        ("fraction", json!(0.1)),
        ("nothing", Value::Null),
        ("empty_object", json!({})),
        ("empty_list", json!([])),
        ("dotted.key", json!("kept")),
        (
            "deep",
            json!({"a": {"b": {"c": [1, {"d": [true, false, null]}]}}}),
        ),
    ] {
        stored[key] = value;
    }
    let stored_text = serde_json::to_string_pretty(&stored).expect("serializable");
    setup.serve_task_with(&callback, &stored_text);
    setup.answer(&callback);

    let (standin, logs) = setup.finish(writes_done(&callback, 1));
    let rounds = assert_rounds(&standin, &callback, 1, (callback.get("AccountSid"), TOKEN));
    let written = parse(&rounds[0].1.form_value("Attributes").unwrap_or_default());
    let now = attributes_now(&standin, &callback);
    assert_eq!(written, now);
    assert_annotation(&now, true, "no exclusion matched", since);
    assert_eq!(
        without_annotation(&now),
        stored,
        "the task's attributes, not the callback's, with every value as it was"
    );
    assert_annotated_logged(&logs, &callback, 1);
}

#[test]
fn other_writers_numbers_and_strings_are_written_back_as_their_text() {
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let callback = Callback::new(INBOUND);
    // As JavaScript or Python would store them: doubles in their shortest form (which a parse
    // to f64 and back can change), an integer past 2^64, the smallest normal double, half of
    // a surrogate pair, an escaped slash, and another writer's duplicate member.
    let others = [
        r#""double":0.42451918914251396"#,
        r#""another":223.23896460701454"#,
        r#""account":123456789012345678901234567890"#,
        r#""tiny":2.2250738585072011e-308"#,
        r#""exponent":1E+2"#,
        r#""note":"\ud83d cut""#,
        r#""path":"a\/b""#,
        r#""twice":1,"twice":2"#,
    ];
    let inbound = INBOUND.trim_end();
    let stored = format!(
        "{}, {}}}",
        inbound.strip_suffix('}').expect("an object"),
        others.join(", ")
    );
    setup.serve_task_with(&callback, &stored);
    setup.answer(&callback);

    let (standin, logs) = setup.finish(writes_done(&callback, 1));
    let rounds = assert_rounds(&standin, &callback, 1, (callback.get("AccountSid"), TOKEN));
    let written = rounds[0].1.form_value("Attributes").unwrap_or_default();
    for member in others {
        assert!(written.contains(member), "{member} in {written}");
    }
    assert!(
        written.contains(&format!(r#""{ANNOTATION}":{{"#)),
        "{written}"
    );
    assert_annotated_logged(&logs, &callback, 1);
}

/// A transfer, or a reservation after a rejected one, is a new reservation on a task that
/// already has the call's first decision: that stamp stays, whatever the rules say now.
#[test]
fn an_earlier_reservations_stamp_is_never_overwritten() {
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let earlier = json!({
        "record": true,
        "reason": "no exclusion matched",
        "rules_version": 7,
        "decided_at": "2026-01-01T00:00:00Z",
    });
    // The callback's attributes hold the stamp: no request at all.
    let mut attributes = parse(ENQUEUED_OUTBOUND);
    attributes[ANNOTATION] = earlier.clone();
    let in_callback = Callback::new(&attributes.to_string());
    setup.serve_task(&in_callback);
    setup.answer(&in_callback);
    // The task got its stamp after the callback's attributes were taken: read, not written.
    let on_task = Callback::new(ENQUEUED_OUTBOUND);
    setup.serve_task_with(&on_task, &attributes.to_string());
    setup.answer(&on_task);

    let (standin, logs) = setup.finish(|standin| !task_requests(standin, &on_task).is_empty());
    assert!(task_requests(&standin, &in_callback).is_empty());
    let methods: Vec<String> = task_requests(&standin, &on_task)
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, ["GET"], "read, never written");
    for callback in [&in_callback, &on_task] {
        assert_eq!(attributes_now(&standin, callback)[ANNOTATION], earlier);
        let line = logs.decision_for(callback.task_sid());
        assert_eq!(
            line["decision"], "do-not-record",
            "the decision now: {line}"
        );
        assert_eq!(line["annotation"], "kept", "{line}");
        assert_eq!(line["first"], "record-from-start", "{line}");
        assert_eq!(line["answer"], "none", "{line}");
        assert_eq!(line["answer_reason"], "annotate", "{line}");
    }
}

#[test]
fn what_is_no_stamp_is_replaced_whole() {
    let since = SystemTime::now();
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let mut attributes = parse(INBOUND);
    // No boolean `record`: something else's, not a decision of ours.
    attributes[ANNOTATION] = json!({
        "record": "maybe",
        "reason": "set by hand",
        "note": "stale",
    });
    let callback = Callback::new(&attributes.to_string());
    setup.serve_task(&callback);
    setup.answer(&callback);

    let (standin, logs) = setup.finish(writes_done(&callback, 1));
    assert_rounds(&standin, &callback, 1, (callback.get("AccountSid"), TOKEN));
    let now = attributes_now(&standin, &callback);
    assert_annotation(&now, true, "no exclusion matched", since);
    assert_eq!(without_annotation(&now), parse(INBOUND));
    assert_annotated_logged(&logs, &callback, 1);
}

#[test]
fn the_reason_names_the_rule_or_the_state_that_decided() {
    let queue_of = |callback: &Callback| callback.get("TaskQueueSid").to_owned();
    let other_queue = "WQ00000000000000000000000000000000";
    type Case = (
        &'static str,
        &'static str,
        fn(&str) -> Value,
        bool,
        &'static str,
    );
    let cases: [Case; 5] = [
        (
            "disabled rules record everything",
            OUTBOUND,
            |_| json!({"enabled": false, "exclude_attributes": [{"key": "direction", "value": "outbound"}]}),
            true,
            "rules disabled",
        ),
        (
            "a queue SID entry, not the first",
            INBOUND,
            |queue| json!({"enabled": true, "exclude_queues": ["WQ00000000000000000000000000000000", queue]}),
            false,
            "excluded by queue (exclude_queues[1])",
        ),
        (
            "an include rule that matches",
            INBOUND,
            |queue| json!({"enabled": true, "include_queues": [queue]}),
            true,
            "included (include_queues[0])",
        ),
        (
            "include rules that do not match",
            INBOUND,
            |_| json!({"enabled": true, "include_queues": ["WQ00000000000000000000000000000000"]}),
            false,
            "not included",
        ),
        (
            "a queue name the API cannot resolve (the queue is unknown to it)",
            INBOUND,
            |_| json!({"enabled": true, "exclude_queues": ["Payments"]}),
            false,
            "queue name unresolved",
        ),
    ];
    for (what, attributes, rules, record, reason) in cases {
        let since = SystemTime::now();
        let callback = Callback::new(attributes);
        assert_ne!(queue_of(&callback), other_queue);
        let setup = Setup::start(&rules(&queue_of(&callback)).to_string(), &[]);
        setup.serve_task(&callback);
        setup.answer(&callback);

        let (standin, logs) = setup.finish(writes_done(&callback, 1));
        let now = attributes_now(&standin, &callback);
        assert_annotation(&now, record, reason, since);
        assert_eq!(without_annotation(&now), parse(attributes), "{what}");
        let writes = count(&standin, &callback, "POST");
        assert_eq!(writes, 1, "{what}: one write");
        assert_annotated_logged(&logs, &callback, 1);
    }
}

#[test]
fn a_chat_task_makes_no_call() {
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let chat = Callback::new(CHAT);
    setup.serve_task(&chat);
    let elapsed = setup.answer(&chat);
    assert!(elapsed < AT_ONCE, "answered after {elapsed:?}");

    let (standin, logs) = setup.finish(|_| false);
    assert!(
        standin.requests().is_empty(),
        "a chat task is not annotated: {:?}",
        standin.requests()
    );
    assert_eq!(attributes_now(&standin, &chat), parse(CHAT));
    assert!(lines(&logs, "task annotated", &chat).is_empty());
    assert!(lines(&logs, "task annotation failed", &chat).is_empty());
    let decisions = lines(&logs, "decision", &chat);
    assert!(decisions[0].get("annotation").is_none(), "{}", decisions[0]);
    assert!(failure_metrics(&logs).is_empty());
    assert_decided(&logs, &chat, "not_a_call", None);
}

#[test]
fn an_unsigned_callback_is_refused_and_writes_nothing() {
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let callback = Callback::new(INBOUND);
    setup.serve_task(&callback);
    let forged = callback.signed_for(TOKEN, &setup.server.url, "/assignment", "http://elsewhere/");
    setup.server.send(&forged).expect_error(403);

    let (standin, _) = setup.finish(|_| false);
    assert!(
        standin.requests().is_empty(),
        "nothing written for a forged callback"
    );
    assert_eq!(attributes_now(&standin, &callback), parse(INBOUND));
}

// ---------------------------------------------------------------------------------------
// Concurrent writers

#[test]
fn a_change_made_between_fetch_and_write_is_kept() {
    let since = SystemTime::now();
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let callback = Callback::new(INBOUND);
    setup.serve_task(&callback);
    // Another writer (a Flex plugin, a Studio flow) updates the task right after the
    // service read it: adds a key, changes one, removes one.
    let edit = |attributes: &mut Value| {
        attributes["wrapup"] = json!({"disposition": "sale", "by": "plugin"});
        attributes["priority_reason"] = json!("escalated");
        if let Some(object) = attributes.as_object_mut() {
            object.remove("transferTargetType");
        }
    };
    let (workspace, task) = task_of(&callback);
    setup.standin.on_next_get(workspace, task, edit);
    setup.answer(&callback);

    let (standin, logs) = setup.finish(writes_done(&callback, 2));
    let rounds = assert_rounds(&standin, &callback, 2, (callback.get("AccountSid"), TOKEN));
    let (first_fetch, first_write) = &rounds[0];
    let (second_fetch, second_write) = &rounds[1];
    assert_eq!(
        first_write.answered,
        Some(412),
        "the stale write is refused"
    );
    assert_eq!(second_write.answered, Some(200), "{}", second_write.text());
    assert_ne!(
        first_fetch.answered_etag, second_fetch.answered_etag,
        "the second write names the new revision"
    );
    let mut expected = parse(INBOUND);
    edit(&mut expected);
    let now = attributes_now(&standin, &callback);
    assert_annotation(&now, true, "no exclusion matched", since);
    assert_eq!(
        without_annotation(&now),
        expected,
        "the other writer's changes survive, its removal included"
    );
    assert_annotated_logged(&logs, &callback, 2);
}

#[test]
fn a_task_that_keeps_changing_is_given_up_after_three_attempts() {
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let callback = Callback::new(INBOUND);
    setup.serve_task(&callback);
    setup.standin.reject_task_writes_as_stale(true);
    setup.answer(&callback);

    let (standin, logs) = setup.finish(writes_done(&callback, 3));
    let rounds = assert_rounds(&standin, &callback, 3, (callback.get("AccountSid"), TOKEN));
    for (_, write) in &rounds {
        assert_eq!(write.answered, Some(412));
    }
    assert_eq!(
        attributes_now(&standin, &callback),
        parse(INBOUND),
        "nothing was written"
    );
    let cause = assert_failure_logged(&logs, &callback).to_ascii_lowercase();
    assert!(
        cause.contains("412") || cause.contains("precondition"),
        "the cause says the task kept changing: {cause:?}"
    );
    assert_decided(&logs, &callback, "no_exclusion_matched", None);
}

#[test]
fn several_callbacks_at_once_are_each_annotated() {
    let since = SystemTime::now();
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let callbacks: Vec<Callback> = (0..8)
        .map(|i| Callback::new(if i % 2 == 0 { INBOUND } else { OUTBOUND }))
        .collect();
    for callback in &callbacks {
        setup.serve_task(callback);
        setup.track(callback);
    }
    for (answer, elapsed) in setup.send_all_at_once(&callbacks) {
        assert_eq!(answer, json!({}));
        assert!(elapsed < TASKROUTER_LIMIT, "answered after {elapsed:?}");
    }

    let (standin, logs) =
        setup.finish(|standin| callbacks.iter().all(|c| writes_done(c, 1)(standin)));
    for (i, callback) in callbacks.iter().enumerate() {
        let (fixture, record, reason) = if i % 2 == 0 {
            (INBOUND, true, "no exclusion matched")
        } else {
            (
                OUTBOUND,
                false,
                "excluded by attribute (exclude_attributes[0])",
            )
        };
        let now = attributes_now(&standin, callback);
        assert_annotation(&now, record, reason, since);
        assert_eq!(without_annotation(&now), parse(fixture));
        assert_eq!(count(&standin, callback, "POST"), 1);
        assert_annotated_logged(&logs, callback, 1);
    }
}

// ---------------------------------------------------------------------------------------
// Failures are logged and counted; the answer never waits past the limit

#[test]
fn a_task_already_gone_is_logged_and_not_retried() {
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let callback = Callback::new(INBOUND);
    // Completed and deleted before the callback was handled: the API does not know it.
    setup
        .standin
        .add_credentials(callback.get("AccountSid"), TOKEN);
    setup.answer(&callback);

    let (standin, logs) = setup.finish(|s| !task_requests(s, &callback).is_empty());
    let sent = task_requests(&standin, &callback);
    assert_eq!(sent.len(), 1, "one fetch, no retry: {sent:?}");
    assert_eq!(sent[0].method, "GET");
    assert_eq!(sent[0].answered, Some(404));
    assert_failure_logged(&logs, &callback);
    assert_decided(&logs, &callback, "no_exclusion_matched", None);
}

#[test]
fn a_task_deleted_before_the_write_is_logged_and_not_retried() {
    let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
    let callback = Callback::new(INBOUND);
    setup.serve_task(&callback);
    let (workspace, task) = task_of(&callback);
    setup.standin.remove_after_next_get(workspace, task);
    setup.answer(&callback);

    let (standin, logs) = setup.finish(writes_done(&callback, 1));
    let rounds = assert_rounds(&standin, &callback, 1, (callback.get("AccountSid"), TOKEN));
    assert_eq!(rounds[0].1.answered, Some(404), "{}", rounds[0].1.text());
    assert_failure_logged(&logs, &callback);
}

#[test]
fn a_5xx_is_logged_and_counted() {
    for status in [500, 503] {
        // On every request: the fetch fails.
        let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
        let callback = Callback::new(INBOUND);
        setup.serve_task(&callback);
        setup.standin.set_fault(Some(Fault::Status(status)));
        setup.answer(&callback);

        let (standin, logs) = setup.finish(|s| !task_requests(s, &callback).is_empty());
        let sent = task_requests(&standin, &callback);
        assert_eq!(sent.first().map(|r| r.method.as_str()), Some("GET"));
        assert!(
            sent.iter().all(|r| r.answered == Some(status)),
            "{status}: {sent:?}"
        );
        assert_eq!(attributes_now(&standin, &callback), parse(INBOUND));
        assert_failure_logged(&logs, &callback);

        // On writes only: the fetch succeeds, every write fails.
        let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
        let callback = Callback::new(INBOUND);
        setup.serve_task(&callback);
        setup
            .standin
            .fail_next_method("POST", 100, Fault::Status(status));
        setup.answer(&callback);

        let (standin, logs) = setup.finish(writes_done(&callback, 1));
        let sent = task_requests(&standin, &callback);
        assert!(
            sent.iter().any(|r| r.method == "POST"),
            "{status}: the write was tried: {sent:?}"
        );
        assert_eq!(attributes_now(&standin, &callback), parse(INBOUND));
        assert_failure_logged(&logs, &callback);
    }
}

#[test]
fn a_hanging_api_does_not_delay_the_answer_and_is_logged() {
    type Prepare = fn(&StandIn);
    let cases: [(&str, Prepare); 2] = [
        ("every request hangs", |standin| {
            standin.set_fault(Some(Fault::Hang));
        }),
        ("the write hangs after the fetch", |standin| {
            standin.fail_next_method("POST", 100, Fault::Hang);
        }),
    ];
    for (what, prepare) in cases {
        let setup = Setup::start(EXCLUDE_OUTBOUND, &[]);
        let callback = Callback::new(INBOUND);
        setup.serve_task(&callback);
        prepare(&setup.standin);
        let started = Instant::now();
        let elapsed = setup.answer(&callback);
        assert!(
            elapsed < TASKROUTER_LIMIT,
            "{what}: answered after {elapsed:?}"
        );

        // The failure is known at the write's deadline.
        let (standin, logs) = setup.finish(|_| started.elapsed() > WRITE_DEADLINE);
        assert!(
            !task_requests(&standin, &callback).is_empty(),
            "{what}: the task was fetched (and hung)"
        );
        assert_eq!(
            attributes_now(&standin, &callback),
            parse(INBOUND),
            "{what}"
        );
        assert_failure_logged(&logs, &callback);
    }
}

// ---------------------------------------------------------------------------------------
// Credentials

#[test]
fn api_key_credentials_are_used_when_configured() {
    let since = SystemTime::now();
    let setup = Setup::start(
        EXCLUDE_OUTBOUND,
        &[
            ("TWILIO_API_KEY", API_KEY),
            ("TWILIO_API_SECRET", API_SECRET),
        ],
    );
    let callback = Callback::new(OUTBOUND);
    let (workspace, task) = task_of(&callback);
    setup.standin.add_task(workspace, task, OUTBOUND);
    // The account and token are refused: only the key works.
    setup.standin.set_credentials(API_KEY, API_SECRET);
    setup.answer(&callback);

    let (standin, logs) = setup.finish(writes_done(&callback, 1));
    assert_rounds(&standin, &callback, 1, (API_KEY, API_SECRET));
    assert_annotation(
        &attributes_now(&standin, &callback),
        false,
        "excluded by attribute (exclude_attributes[0])",
        since,
    );
    assert_annotated_logged(&logs, &callback, 1);
}

// ---------------------------------------------------------------------------------------
// The harness's own clock

#[test]
fn rfc3339_times_are_read_as_utc_seconds() {
    assert_eq!(rfc3339_utc_seconds("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        rfc3339_utc_seconds("2026-11-23T20:25:39Z"),
        Some(1_795_465_539)
    );
    assert_eq!(
        rfc3339_utc_seconds("2026-11-23T20:25:39.250+00:00"),
        Some(1_795_465_539)
    );
    assert_eq!(
        rfc3339_utc_seconds("2024-02-29T12:00:00Z"),
        Some(1_709_208_000)
    );
    for bad in [
        "2026-11-23 20:25:39Z",
        "2026-11-23T20:25:39",
        "2026-11-23T20:25:39+01:00",
        "2025-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-11-23T20:25Z",
        "2026-11-23T20:25:39.Z",
        "1795465539",
    ] {
        assert_eq!(rfc3339_utc_seconds(bad), None, "{bad}");
    }
    let now = SystemTime::now();
    assert_eq!(
        rfc3339_utc_seconds(&standin::iso8601(now)),
        Some(epoch_seconds(now))
    );
}
