//! CloudWatch metrics as Embedded Metric Format lines: one JSON object per line on stderr,
//! which CloudWatch Logs turns into metrics without any API call from the function.

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The CloudWatch namespace every metric is published under, as a literal for `concat!`.
macro_rules! namespace {
    () => {
        "ConditionalRecording"
    };
}

pub const NAMESPACE: &str = namespace!();

/// The directives of a decision line, rendered once: a line is written for every call.
const DECISIONS_DIRECTIVE: &str = concat!(
    r#"{"Namespace":""#,
    namespace!(),
    r#"","Dimensions":[["Outcome"],["Reason"]],"Metrics":[{"Name":"Decisions","Unit":"Count"}]}"#
);
const RULES_AGE_DIRECTIVE: &str = concat!(
    r#"{"Namespace":""#,
    namespace!(),
    r#"","Dimensions":[[]],"Metrics":[{"Name":"RulesAgeSeconds","Unit":"Seconds"}]}"#
);

/// A decision: counted by outcome and by reason kind, with the age of the rules it used.
pub fn decision(outcome: &str, reason: &str, rules_age: Option<Duration>) {
    write_line(&decision_line(outcome, reason, rules_age, now_ms()));
}

fn decision_line(outcome: &str, reason: &str, rules_age: Option<Duration>, now_ms: u64) -> Vec<u8> {
    let mut line = Vec::with_capacity(400);
    // Writing into a Vec cannot fail.
    let _ = (|| -> std::io::Result<()> {
        line.write_all(br#"{"Outcome":"#)?;
        serde_json::to_writer(&mut line, outcome)?;
        line.write_all(br#","Reason":"#)?;
        serde_json::to_writer(&mut line, reason)?;
        line.write_all(br#","Decisions":1"#)?;
        if let Some(age) = rules_age {
            line.write_all(br#","RulesAgeSeconds":"#)?;
            serde_json::to_writer(&mut line, &age.as_secs_f64().round())?;
        }
        write!(
            line,
            r#","_aws":{{"Timestamp":{now_ms},"CloudWatchMetrics":[{DECISIONS_DIRECTIVE}"#
        )?;
        if rules_age.is_some() {
            write!(line, ",{RULES_AGE_DIRECTIVE}")?;
        }
        line.write_all(b"]}}\n")
    })();
    line
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
    line["_aws"] = json!({"Timestamp": now_ms(), "CloudWatchMetrics": directives});
    write_line(format!("{line}\n").as_bytes());
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// One write of one line, so it is never interleaved with a log line.
fn write_line(line: &[u8]) {
    let _ = std::io::stderr().lock().write_all(line);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line as a JSON object built the plain way, to compare the rendered one with.
    fn expected(outcome: &str, reason: &str, age: Option<f64>) -> Value {
        let mut directives = vec![json!({
            "Namespace": NAMESPACE,
            "Dimensions": [["Outcome"], ["Reason"]],
            "Metrics": [{"Name": "Decisions", "Unit": "Count"}],
        })];
        let mut line = json!({"Outcome": outcome, "Reason": reason, "Decisions": 1});
        if let Some(age) = age {
            directives.push(json!({
                "Namespace": NAMESPACE,
                "Dimensions": [[]],
                "Metrics": [{"Name": "RulesAgeSeconds", "Unit": "Seconds"}],
            }));
            line["RulesAgeSeconds"] = json!(age);
        }
        line["_aws"] = json!({"Timestamp": 1_767_225_600_000u64, "CloudWatchMetrics": directives});
        line
    }

    #[test]
    fn a_decision_line_is_one_line_of_embedded_metric_format() {
        for (age, seconds) in [
            (Some(Duration::from_millis(12_400)), Some(12.0)),
            (Some(Duration::ZERO), Some(0.0)),
            (None, None),
        ] {
            let line = decision_line("do-not-record", "excluded_by_queue", age, 1_767_225_600_000);
            let text = String::from_utf8(line).expect("UTF-8");
            assert_eq!(text.matches('\n').count(), 1, "{text}");
            assert!(text.ends_with('\n'));
            let parsed: Value = serde_json::from_str(&text).expect("one JSON object");
            assert_eq!(
                parsed,
                expected("do-not-record", "excluded_by_queue", seconds)
            );
        }
        // Words that would need escaping are escaped (none of ours does).
        let text = String::from_utf8(decision_line("a\"b", "c\nd", None, 0)).expect("UTF-8");
        let parsed: Value = serde_json::from_str(&text).expect("one JSON object");
        assert_eq!(
            (&parsed["Outcome"], &parsed["Reason"]),
            (&json!("a\"b"), &json!("c\nd"))
        );
    }
}
