//! CloudWatch metrics as Embedded Metric Format lines: one JSON object per line on stderr,
//! which CloudWatch Logs turns into metrics without any API call from the function.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::logging::write_line;

/// The CloudWatch namespace when `METRICS_NAMESPACE` is not set.
pub const DEFAULT_NAMESPACE: &str = "ConditionalRecording";

static NAMESPACE: OnceLock<String> = OnceLock::new();

/// Sets the namespace every metric is published under (`METRICS_NAMESPACE`), once, at start
/// and before any metric is written; later calls change nothing.
pub fn use_namespace(namespace: &str) {
    let _ = NAMESPACE.set(namespace.to_owned());
}

/// The namespace every metric is published under.
pub fn namespace() -> &'static str {
    NAMESPACE.get().map_or(DEFAULT_NAMESPACE, String::as_str)
}

/// A metric the service emits: its name, its unit and the dimension sets of its directive.
/// Every directive is rendered from one of these, and the template's alarms and dashboard are
/// checked against them (`CATALOGUE`, `DIMENSIONS`).
#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    pub dimension_sets: &'static [&'static [&'static str]],
}

/// A dimension and every value the service gives it.
#[derive(Debug)]
pub struct Dimension {
    pub name: &'static str,
    pub values: &'static [&'static str],
}

pub const DECISIONS: Metric = Metric {
    name: "Decisions",
    unit: "Count",
    dimension_sets: &[&["Outcome"], &["Reason"]],
};
pub const RULES_AGE: Metric = Metric {
    name: "RulesAgeSeconds",
    unit: "Seconds",
    dimension_sets: &[&[]],
};
pub const RULES_VERSION_BEHIND: Metric = Metric {
    name: "RulesVersionBehind",
    unit: "Count",
    dimension_sets: &[&[]],
};
pub const ENFORCEMENTS: Metric = Metric {
    name: "Enforcements",
    unit: "Count",
    dimension_sets: &[&["Action"]],
};
pub const REFRESH_FAILURES: Metric = Metric {
    name: "RefreshFailures",
    unit: "Count",
    dimension_sets: &[&["Document"]],
};
pub const SIGNATURE_REJECTIONS: Metric = Metric {
    name: "SignatureRejections",
    unit: "Count",
    dimension_sets: &[&[], &["Cause"]],
};
pub const ANNOTATION_FAILURES: Metric = Metric {
    name: "AnnotationFailures",
    unit: "Count",
    dimension_sets: &[&[]],
};
pub const LEDGER_FAILURES: Metric = Metric {
    name: "LedgerFailures",
    unit: "Count",
    dimension_sets: &[&[]],
};
pub const RECONCILED_RECORDINGS: Metric = Metric {
    name: "ReconciledRecordings",
    unit: "Count",
    dimension_sets: &[&["Outcome"]],
};
pub const INCOMPLETE_SWEEPS: Metric = Metric {
    name: "IncompleteSweeps",
    unit: "Count",
    dimension_sets: &[&[]],
};

/// Every metric the service emits.
pub const CATALOGUE: &[&Metric] = &[
    &DECISIONS,
    &RULES_AGE,
    &RULES_VERSION_BEHIND,
    &ENFORCEMENTS,
    &REFRESH_FAILURES,
    &SIGNATURE_REJECTIONS,
    &ANNOTATION_FAILURES,
    &LEDGER_FAILURES,
    &RECONCILED_RECORDINGS,
    &INCOMPLETE_SWEEPS,
];

/// Every dimension of the catalogue, with its values (the unit tests hold them to the code
/// that writes them).
pub const DIMENSIONS: &[Dimension] = &[
    Dimension {
        name: "Outcome",
        values: &[
            "record-from-start",
            "do-not-record",
            "no-action",
            "kept",
            "deleted",
            "violation",
            "pending",
            "unknown",
            "unmanaged",
        ],
    },
    Dimension {
        name: "Reason",
        values: &[
            "no_exclusion_matched",
            "excluded_by_queue",
            "excluded_by_attribute",
            "included",
            "not_included",
            "disabled",
            "not_a_call",
            "rules_unavailable",
            "queue_name_unresolved",
            "task_attributes_unparseable",
        ],
    },
    Dimension {
        name: "Action",
        values: &[
            "stopped",
            "paused",
            "media_deleted",
            "deleted",
            "none_found",
            "failed",
        ],
    },
    Dimension {
        name: "Document",
        values: &["rules", "auth tokens"],
    },
    Dimension {
        name: "Cause",
        values: &SIGNATURE_CAUSES,
    },
];

/// Why a request was refused for its signature or account: the `Cause` of
/// `SignatureRejections`.
pub const SIGNATURE_CAUSES: [&str; 5] = [
    "missing",
    "invalid",
    "other_account",
    "body_unsigned",
    "body_mismatch",
];

/// A metric's EMF directive under the namespace in use.
fn directive(metric: &Metric) -> Value {
    json!({
        "Namespace": namespace(),
        "Dimensions": metric.dimension_sets,
        "Metrics": [{"Name": metric.name, "Unit": metric.unit}],
    })
}

/// The decision line's two directives, rendered once: a line is written for every call.
fn decision_directives() -> &'static (String, String) {
    static RENDERED: OnceLock<(String, String)> = OnceLock::new();
    RENDERED.get_or_init(|| {
        (
            directive(&DECISIONS).to_string(),
            directive(&RULES_AGE).to_string(),
        )
    })
}

/// The record of one decision: what was decided for which reservation, why, and what was
/// answered. Never caller data: SIDs (checked for shape), rule paths and fixed words.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DecisionRecord<'a> {
    pub task_sid: &'a str,
    pub reservation_sid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_queue_sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace_sid: Option<&'a str>,
    pub decision: &'a str,
    pub reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_version: Option<i64>,
    pub answer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first: Option<&'a str>,
    pub elapsed_us: u64,
    /// The Lambda request ID, as Lambda names it (`requestId`).
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
    /// For the `RulesAgeSeconds` metric; not a field of its own.
    #[serde(skip)]
    pub rules_age: Option<Duration>,
}

/// Writes the decision as one JSON line: the log record (`message` `decision`) and, in the
/// same object, its metrics in Embedded Metric Format (`Decisions` by `Outcome` and by
/// `Reason`, and `RulesAgeSeconds`), so CloudWatch extracts them from the line itself. It is
/// written straight to stderr, not through the log filter: no `RUST_LOG` can drop a decision.
pub fn decision(record: &DecisionRecord<'_>) {
    let now = SystemTime::now();
    write_line(&decision_line(record, now));
}

fn decision_line(record: &DecisionRecord<'_>, now: SystemTime) -> Vec<u8> {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let mut line = Vec::with_capacity(700);
    // Writing into a Vec cannot fail.
    let _ = (|| -> std::io::Result<()> {
        line.write_all(br#"{"timestamp":""#)?;
        write_timestamp(&mut line, since_epoch)?;
        line.write_all(br#"","level":"INFO","message":"decision","#)?;
        // The record's own fields, without its closing brace.
        let fields = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.extend_from_slice(&fields[1..fields.len() - 1]);
        line.write_all(br#","Outcome":"#)?;
        serde_json::to_writer(&mut line, record.decision)?;
        line.write_all(br#","Reason":"#)?;
        serde_json::to_writer(&mut line, record.reason)?;
        line.write_all(br#","Decisions":1"#)?;
        if let Some(age) = record.rules_age {
            line.write_all(br#","RulesAgeSeconds":"#)?;
            serde_json::to_writer(&mut line, &age.as_secs_f64().round())?;
        }
        let (decisions, rules_age) = decision_directives();
        write!(
            line,
            r#","_aws":{{"Timestamp":{},"CloudWatchMetrics":[{decisions}"#,
            since_epoch.as_millis()
        )?;
        if record.rules_age.is_some() {
            write!(line, ",{rules_age}")?;
        }
        line.write_all(b"]}}\n")
    })();
    line
}

/// RFC 3339 in UTC with microseconds, as the other log lines write it
/// (`2026-11-23T20:25:39.366385Z`).
fn write_timestamp(line: &mut Vec<u8>, since_epoch: Duration) -> std::io::Result<()> {
    let at = time::OffsetDateTime::UNIX_EPOCH + since_epoch;
    write!(
        line,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    )
}

/// The record of one enforcement action (SPEC section 8). SIDs, fixed words and the API's
/// answer; never caller data.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EnforcementRecord<'a> {
    pub task_sid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reservation_sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conference_sid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording_sid: Option<&'a str>,
    pub event_type: &'a str,
    /// `stopped`, `paused`, `media_deleted`, `deleted`, `none_found` or `failed`.
    pub action: &'a str,
    pub first: &'a str,
    pub now: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'a str>,
    /// For `media_deleted`: the bucket, the key and how many versions and delete markers
    /// went (never the URL or its query).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<usize>,
    pub elapsed_ms: u64,
    /// The Lambda request ID, as Lambda names it (`requestId`).
    #[serde(rename = "requestId", skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
}

/// Writes one enforcement action as one JSON line: the log record (`message`
/// `enforcement`) and its metric `Enforcements` by `Action`, in Embedded Metric Format.
pub fn enforcement(record: &EnforcementRecord<'_>) {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut timestamp = Vec::with_capacity(32);
    let _ = write_timestamp(&mut timestamp, since_epoch);
    let mut line = json!({
        "timestamp": String::from_utf8_lossy(&timestamp),
        "level": if record.action == "failed" { "WARN" } else { "INFO" },
        "message": "enforcement",
    });
    if let (Some(line), Ok(Value::Object(fields))) =
        (line.as_object_mut(), serde_json::to_value(record))
    {
        line.extend(fields);
    }
    line["Action"] = json!(record.action);
    line["Enforcements"] = json!(1);
    emit(line, vec![directive(&ENFORCEMENTS)]);
}

/// A failed or rejected fetch of a cached document ("rules", "auth tokens").
pub fn refresh_failed(document: &str) {
    emit(
        json!({"Document": document, "RefreshFailures": 1}),
        vec![directive(&REFRESH_FAILURES)],
    );
}

/// How many versions the rules in force are behind the parameter's current version: 0 when
/// current, more while a rejected version is published (the last good one, or an older one
/// read from the history, is in force).
pub fn rules_version_behind(behind: i64) {
    emit(
        json!({"RulesVersionBehind": behind}),
        vec![directive(&RULES_VERSION_BEHIND)],
    );
}

/// Signature rejections counted and not yet written, by `Cause` (the index in
/// [`SIGNATURE_CAUSES`]).
static REJECTIONS: Rejections = Rejections::new();

/// Counts one request refused for its signature or account. Nothing is written here: a
/// flood of refusals would be a line each. The counts go out with
/// [`write_signature_rejections`], when the refusal ration allows a line
/// ([`crate::refusal_log`]).
pub fn signature_rejected(cause: &str) {
    if !REJECTIONS.count(cause) {
        // Not a cause of the catalogue (none is): written at once rather than lost.
        write_rejections(cause, 1);
    }
}

/// Whether any signature rejection is counted and not yet written.
pub fn signature_rejections_pending() -> bool {
    REJECTIONS.pending()
}

/// Writes every signature rejection counted since the last call: one `SignatureRejections`
/// line per cause that has any, its value the count. An EMF line has one value per
/// dimension, so two causes are two lines; each counts under both of the metric's dimension
/// sets (none, and `Cause`).
pub fn write_signature_rejections() {
    REJECTIONS.take(write_rejections);
}

fn write_rejections(cause: &str, count: u64) {
    emit(
        json!({"Cause": cause, "SignatureRejections": count}),
        vec![directive(&SIGNATURE_REJECTIONS)],
    );
}

/// Counts per cause, lock-free: a count is taken (swapped to zero) by the one line that
/// writes it, so every refusal is written once.
struct Rejections {
    counts: [AtomicU64; SIGNATURE_CAUSES.len()],
}

impl Rejections {
    const fn new() -> Rejections {
        Rejections {
            counts: [const { AtomicU64::new(0) }; SIGNATURE_CAUSES.len()],
        }
    }

    /// Counts one of `cause`; `false` when it is not in [`SIGNATURE_CAUSES`].
    fn count(&self, cause: &str) -> bool {
        let Some(index) = SIGNATURE_CAUSES.iter().position(|c| *c == cause) else {
            return false;
        };
        self.counts[index].fetch_add(1, Ordering::Relaxed);
        true
    }

    fn pending(&self) -> bool {
        self.counts.iter().any(|c| c.load(Ordering::Relaxed) > 0)
    }

    /// Hands each cause's count since the last call, when not zero, to `write`.
    fn take(&self, mut write: impl FnMut(&str, u64)) {
        for (cause, count) in SIGNATURE_CAUSES.iter().zip(&self.counts) {
            if count.load(Ordering::Relaxed) == 0 {
                continue;
            }
            let taken = count.swap(0, Ordering::Relaxed);
            if taken > 0 {
                write(cause, taken);
            }
        }
    }
}

/// A decision that could not be written on its task (annotate mode).
pub fn annotation_failed() {
    emit(
        json!({"AnnotationFailures": 1}),
        vec![directive(&ANNOTATION_FAILURES)],
    );
}

/// A ledger read or write that failed: the service went on without it.
pub fn ledger_failed() {
    emit(
        json!({"LedgerFailures": 1}),
        vec![directive(&LEDGER_FAILURES)],
    );
}

/// One reconciliation run (the sweep, or `reconcile`): one `reconcile` line with its window,
/// its counts and whether it was complete, carrying `IncompleteSweeps` (0 or 1); then one
/// `ReconciledRecordings` line per outcome, zeros included, so that an alarm on violations
/// sees every run.
pub fn reconciled(report: &crate::reconcile::Report, fix: bool, elapsed_ms: u64) {
    let counts: serde_json::Map<String, Value> = report
        .counts()
        .into_iter()
        .map(|(o, n)| (o.as_str().to_owned(), json!(n)))
        .collect();
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut timestamp = Vec::with_capacity(32);
    let _ = write_timestamp(&mut timestamp, since_epoch);
    let complete = report.complete();
    emit(
        json!({
            "timestamp": String::from_utf8_lossy(&timestamp),
            "level": if complete && report.count(crate::reconcile::Outcome::Violation) == 0 { "INFO" } else { "WARN" },
            "message": "reconcile",
            "from": crate::ledger::rfc3339(report.window.from),
            "to": crate::ledger::rfc3339(report.window.to),
            "fix": fix,
            "recordings": report.rows.len(),
            "outcomes": counts,
            "complete": complete,
            "unchecked": report.unchecked,
            "elapsed_ms": elapsed_ms,
            "IncompleteSweeps": u8::from(!complete),
        }),
        vec![directive(&INCOMPLETE_SWEEPS)],
    );
    for (outcome, count) in report.counts() {
        emit(
            json!({"Outcome": outcome.as_str(), "ReconciledRecordings": count}),
            vec![directive(&RECONCILED_RECORDINGS)],
        );
    }
}

/// Writes a metric line; within a Lambda invocation it carries the invocation's `requestId`.
fn emit(mut line: Value, directives: Vec<Value>) {
    if let Some(request_id) = crate::logging::request_id() {
        line["requestId"] = json!(request_id);
    }
    line["_aws"] = json!({"Timestamp": now_ms(), "CloudWatchMetrics": directives});
    write_line(format!("{line}\n").as_bytes());
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(rules_age: Option<Duration>) -> DecisionRecord<'static> {
        DecisionRecord {
            task_sid: "WT11111111111111111111111111111111",
            reservation_sid: "WR11111111111111111111111111111111",
            task_queue_sid: Some("WQ11111111111111111111111111111111"),
            queue_name: None,
            workspace_sid: Some("WS11111111111111111111111111111111"),
            decision: "do-not-record",
            reason: "excluded_by_queue",
            rule: Some("exclude_queues[0]".into()),
            rules_version: Some(7),
            answer: "conference",
            answer_reason: None,
            annotation: None,
            first: None,
            elapsed_us: 412,
            request_id: Some("r-1"),
            rules_age,
        }
    }

    /// The line as a JSON object built the plain way, to compare the rendered one with.
    fn expected(age: Option<f64>) -> Value {
        let mut directives = vec![json!({
            "Namespace": namespace(),
            "Dimensions": [["Outcome"], ["Reason"]],
            "Metrics": [{"Name": "Decisions", "Unit": "Count"}],
        })];
        let mut line = json!({
            "timestamp": "2026-01-01T00:00:00.250000Z",
            "level": "INFO",
            "message": "decision",
            "task_sid": "WT11111111111111111111111111111111",
            "reservation_sid": "WR11111111111111111111111111111111",
            "task_queue_sid": "WQ11111111111111111111111111111111",
            "workspace_sid": "WS11111111111111111111111111111111",
            "decision": "do-not-record",
            "reason": "excluded_by_queue",
            "rule": "exclude_queues[0]",
            "rules_version": 7,
            "answer": "conference",
            "elapsed_us": 412,
            "requestId": "r-1",
            "Outcome": "do-not-record",
            "Reason": "excluded_by_queue",
            "Decisions": 1,
        });
        if let Some(age) = age {
            directives.push(json!({
                "Namespace": namespace(),
                "Dimensions": [[]],
                "Metrics": [{"Name": "RulesAgeSeconds", "Unit": "Seconds"}],
            }));
            line["RulesAgeSeconds"] = json!(age);
        }
        line["_aws"] = json!({"Timestamp": 1_767_225_600_250u64, "CloudWatchMetrics": directives});
        line
    }

    /// Checks a line against the Embedded Metric Format specification: a root `_aws` with an
    /// integer `Timestamp` in ms and `CloudWatchMetrics` directives, each with a `Namespace`,
    /// `Dimensions` naming root members that hold strings (at most 30 per set), and `Metrics`
    /// naming root members that hold numbers.
    fn assert_emf(line: &Value) {
        let aws = &line["_aws"];
        assert!(aws["Timestamp"].is_u64(), "{line}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
        assert!(!directives.is_empty());
        for directive in directives {
            assert!(
                directive["Namespace"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty())
            );
            for set in directive["Dimensions"].as_array().expect("dimension sets") {
                let set = set.as_array().expect("a dimension set");
                assert!(set.len() <= 30);
                for name in set {
                    let name = name.as_str().expect("a dimension name");
                    assert!(line[name].is_string(), "dimension {name} in {line}");
                }
            }
            for metric in directive["Metrics"].as_array().expect("metrics") {
                let name = metric["Name"].as_str().expect("a metric name");
                assert!(line[name].is_number(), "metric {name} in {line}");
            }
        }
    }

    #[test]
    fn an_enforcement_line_is_its_record_and_its_metric() {
        let buffer = crate::logging::Captured::default();
        crate::logging::capture_on_this_thread(std::sync::Arc::clone(&buffer));
        enforcement(&EnforcementRecord {
            task_sid: "WT11111111111111111111111111111111",
            reservation_sid: Some("WR11111111111111111111111111111111"),
            conference_sid: Some("CF11111111111111111111111111111111"),
            recording_sid: Some("RE11111111111111111111111111111111"),
            event_type: "reservation.accepted",
            action: "failed",
            first: "do-not-record",
            now: "do-not-record",
            rule: Some("exclude_queues[0]".into()),
            cause: Some("Voice API answered 500 on stop"),
            bucket: None,
            key: None,
            versions: None,
            elapsed_ms: 12,
            request_id: None,
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: Value = serde_json::from_str(&text).unwrap();
        assert_emf(&line);
        assert_eq!(line["message"], "enforcement");
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["Action"], "failed");
        assert_eq!(line["Enforcements"], 1);
        assert_eq!(line["cause"], "Voice API answered 500 on stop");
        assert_eq!(line["recording_sid"], "RE11111111111111111111111111111111");
        assert!(line.get("requestId").is_none());
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Action"]])
        );
    }

    #[test]
    fn a_media_deleted_line_names_the_object_and_its_versions() {
        let buffer = crate::logging::Captured::default();
        crate::logging::capture_on_this_thread(std::sync::Arc::clone(&buffer));
        enforcement(&EnforcementRecord {
            task_sid: "WT11111111111111111111111111111111",
            reservation_sid: None,
            conference_sid: Some("CF11111111111111111111111111111111"),
            recording_sid: Some("RE11111111111111111111111111111111"),
            event_type: "task.completed",
            action: "media_deleted",
            first: "do-not-record",
            now: "do-not-record",
            rule: None,
            cause: None,
            bucket: Some("acme-recordings"),
            key: Some("AC1/RE11111111111111111111111111111111.wav"),
            versions: Some(3),
            elapsed_ms: 40,
            request_id: None,
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        let line: Value = serde_json::from_str(&text).unwrap();
        assert_emf(&line);
        assert_eq!(line["Action"], "media_deleted");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["bucket"], "acme-recordings");
        assert_eq!(line["key"], "AC1/RE11111111111111111111111111111111.wav");
        assert_eq!(line["versions"], 3);
    }

    #[test]
    fn rejections_are_counted_per_cause_and_each_written_once() {
        let rejections = Rejections::new();
        assert!(!rejections.pending());
        for _ in 0..1_500 {
            assert!(rejections.count("invalid"));
        }
        assert!(rejections.count("missing"));
        assert!(!rejections.count("no such cause"));
        assert!(rejections.pending());
        let mut written = Vec::new();
        rejections.take(|cause, count| written.push((cause.to_owned(), count)));
        assert_eq!(
            written,
            [("missing".to_owned(), 1), ("invalid".to_owned(), 1_500)]
        );
        assert!(!rejections.pending());
        rejections.take(|cause, _| panic!("{cause} written twice"));

        // Counted from several threads while taken: every one is written, once.
        let (threads, each) = (4, 2_000u64);
        let written = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for n in 0..threads {
                let rejections = &rejections;
                scope.spawn(move || {
                    for _ in 0..each {
                        rejections.count(SIGNATURE_CAUSES[n % SIGNATURE_CAUSES.len()]);
                    }
                });
            }
            scope.spawn(|| {
                for _ in 0..100 {
                    rejections.take(|_, count| {
                        written.fetch_add(count, Ordering::Relaxed);
                    });
                }
            });
        });
        rejections.take(|_, count| {
            written.fetch_add(count, Ordering::Relaxed);
        });
        assert_eq!(written.into_inner(), threads as u64 * each);
    }

    #[test]
    fn a_rejection_line_carries_its_count_under_both_dimension_sets() {
        let buffer = crate::logging::Captured::default();
        crate::logging::capture_on_this_thread(std::sync::Arc::clone(&buffer));
        write_rejections("body_mismatch", 37);
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: Value = serde_json::from_str(&text).unwrap();
        assert_emf(&line);
        assert_eq!(line["SignatureRejections"], 37);
        assert_eq!(line["Cause"], "body_mismatch");
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[], ["Cause"]])
        );
    }

    #[test]
    fn versions_behind_is_one_metric_line() {
        let buffer = crate::logging::Captured::default();
        crate::logging::capture_on_this_thread(std::sync::Arc::clone(&buffer));
        rules_version_behind(2);
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        let line: Value = serde_json::from_str(&text).unwrap();
        assert_emf(&line);
        assert_eq!(line["RulesVersionBehind"], 2);
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            json!([{"Name": "RulesVersionBehind", "Unit": "Count"}])
        );
    }

    #[test]
    fn a_decision_is_one_line_its_record_and_its_metrics() {
        let now = UNIX_EPOCH + Duration::from_millis(1_767_225_600_250);
        for (age, seconds) in [
            (Some(Duration::from_millis(12_400)), Some(12.0)),
            (Some(Duration::ZERO), Some(0.0)),
            (None, None),
        ] {
            let text = String::from_utf8(decision_line(&record(age), now)).expect("UTF-8");
            assert_eq!(text.matches('\n').count(), 1, "{text}");
            assert!(text.ends_with('\n'));
            let parsed: Value = serde_json::from_str(&text).expect("one JSON object");
            assert_eq!(parsed, expected(seconds));
            assert_emf(&parsed);
        }
        // Words that would need escaping are escaped (none of ours does).
        let mut odd = record(None);
        odd.decision = "a\"b";
        odd.reason = "c\nd";
        let text = String::from_utf8(decision_line(&odd, now)).expect("UTF-8");
        let parsed: Value = serde_json::from_str(&text).expect("one JSON object");
        assert_eq!(
            (&parsed["Outcome"], &parsed["reason"]),
            (&json!("a\"b"), &json!("c\nd"))
        );
    }
}
