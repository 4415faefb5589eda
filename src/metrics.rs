//! CloudWatch metrics as Embedded Metric Format lines: one JSON object per line on stderr,
//! which CloudWatch Logs turns into metrics without any API call from the function.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The CloudWatch namespace every metric is published under.
pub const NAMESPACE: &str = "ConditionalRecording";

/// A decision: counted by outcome and by reason kind, with the age of the rules it used.
pub fn decision(outcome: &str, reason: &str, rules_age: Option<Duration>) {
    let mut directives = vec![json!({
        "Namespace": NAMESPACE,
        "Dimensions": [["Outcome"], ["Reason"]],
        "Metrics": [{"Name": "Decisions", "Unit": "Count"}],
    })];
    let mut line = json!({"Outcome": outcome, "Reason": reason, "Decisions": 1});
    if let Some(age) = rules_age {
        directives.push(json!({
            "Namespace": NAMESPACE,
            "Dimensions": [[]],
            "Metrics": [{"Name": "RulesAgeSeconds", "Unit": "Seconds"}],
        }));
        line["RulesAgeSeconds"] = json!(age.as_secs_f64().round());
    }
    emit(line, directives);
}

/// A failed or rejected fetch of a cached document ("rules", "auth tokens").
pub fn refresh_failed(document: &str) {
    emit(
        json!({"Document": document, "RefreshFailures": 1}),
        vec![json!({
            "Namespace": NAMESPACE,
            "Dimensions": [["Document"]],
            "Metrics": [{"Name": "RefreshFailures", "Unit": "Count"}],
        })],
    );
}

/// A callback refused for its signature or account.
pub fn signature_rejected(cause: &str) {
    emit(
        json!({"Cause": cause, "SignatureRejections": 1}),
        vec![json!({
            "Namespace": NAMESPACE,
            "Dimensions": [[], ["Cause"]],
            "Metrics": [{"Name": "SignatureRejections", "Unit": "Count"}],
        })],
    );
}

/// A decision that could not be written on its task (annotate mode).
pub fn annotation_failed() {
    emit(
        json!({"AnnotationFailures": 1}),
        vec![json!({
            "Namespace": NAMESPACE,
            "Dimensions": [[]],
            "Metrics": [{"Name": "AnnotationFailures", "Unit": "Count"}],
        })],
    );
}

fn emit(mut line: Value, directives: Vec<Value>) {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    line["_aws"] = json!({"Timestamp": timestamp, "CloudWatchMetrics": directives});
    // One write of one line, so it is never interleaved with a log line.
    let text = format!("{line}\n");
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
