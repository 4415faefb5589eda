//! What the binary's log says about itself: the `started` line of `serve`, and the lines of a
//! flood of forged callbacks, metric lines included, rationed per process while the metric's
//! counts add up to every refusal. The binary runs as its own process: the ration is the
//! process's.

use std::time::{Duration, Instant};

use conditional_recording::refusal_log::{LINES_PER_WINDOW, WINDOW};
use serde_json::Value;

use crate::support::{self, Callback, Connection, Http, INBOUND, Logs, Server, TOKEN, TempDir};

/// Not the server's token: every callback signed with it is forged.
const WRONG_TOKEN: &str = "ffffffffffffffffffffffffffffffff";

#[test]
fn a_forged_callback_flood_logs_a_few_refusals_and_counts_every_one() {
    let server = Server::start_with(&[("TWILIO_AUTH_TOKEN", TOKEN)]);
    let (threads, each) = (4, 375);
    let forged: Vec<Vec<u8>> = (0..threads * each)
        .map(|_| Callback::new(INBOUND).signed(WRONG_TOKEN, &server.url))
        .collect();
    let addr = server.addr;
    let began = Instant::now();
    std::thread::scope(|scope| {
        for batch in forged.chunks(each) {
            scope.spawn(move || {
                for request in batch {
                    let mut connection = Connection::open(addr);
                    connection.send(request);
                    connection.response().expect_error(403);
                }
            });
        }
    });
    let elapsed = began.elapsed();
    // A window later the ration has room again: one more refusal is logged, with what the
    // flood's last window left out.
    std::thread::sleep(WINDOW + Duration::from_millis(100));
    server
        .send(&Callback::new(INBOUND).signed(WRONG_TOKEN, &server.url))
        .expect_error(403);
    let refusals = (threads * each + 1) as u64;
    let logs = server.stop();

    let metric_lines: Vec<Value> = logs
        .json()
        .into_iter()
        .filter(|line| line.get("SignatureRejections").is_some())
        .collect();
    let counted: u64 = metric_lines
        .iter()
        .filter_map(|line| line["SignatureRejections"].as_u64())
        .sum();
    assert_eq!(counted, refusals, "the metric counts every refusal");
    assert!(metric_lines.iter().all(|line| line["Cause"] == "invalid"));

    let rejected = logs.with_message("callback rejected");
    let mismatched = logs
        .json()
        .into_iter()
        .filter(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("signature does not match"))
        })
        .count();
    assert_eq!(
        mismatched,
        rejected.len(),
        "a refusal is logged whole or not at all"
    );
    let suppressed: u64 = rejected
        .iter()
        .filter_map(|line| line["suppressed"].as_u64())
        .sum();
    assert_eq!(
        rejected.len() as u64 + suppressed,
        refusals,
        "every refusal is a line or in a `suppressed` count\n{}",
        logs.text()
    );
    // The flood's span of time meets at most its whole seconds plus two windows; the last
    // refusal has a window of its own.
    let windows = elapsed.as_secs() / WINDOW.as_secs() + 2;
    let admissions = u64::from(LINES_PER_WINDOW) * windows + 1;
    assert!(
        rejected.len() as u64 <= admissions,
        "{} refusal lines for {refusals} refusals in {elapsed:?}; at most {admissions}",
        rejected.len()
    );
    if admissions < refusals {
        assert!(suppressed > 0);
    }
    // Every line the flood cost, metric lines included: each admission writes a refusal's two
    // lines and a metric line (one cause), or the metric line alone.
    let written = rejected.len() + mismatched + metric_lines.len();
    let bound = 3 * admissions;
    eprintln!("{refusals} refusals in {elapsed:?}: {written} lines");
    assert!(
        written as u64 <= bound,
        "{written} lines for {refusals} refusals in {elapsed:?}; at most {bound}"
    );
}

#[test]
fn serve_logs_what_it_started_with() {
    let server = Server::start_with(&[
        ("TWILIO_AUTH_TOKEN", TOKEN),
        ("ANSWER_MODE", "annotate"),
        ("METRICS_NAMESPACE", "ConditionalRecordingTest"),
    ]);
    let logs = server.stop();
    assert_started(
        &logs,
        &[
            ("answer_mode", "annotate"),
            ("enforcement", "on"),
            ("rules_source", "the embedded example document"),
            ("signatures", "enforce"),
            ("metrics_namespace", "ConditionalRecordingTest"),
        ],
    );

    let dir = TempDir::new();
    let rules = dir.write("rules.json", conditional_recording::rules::EXAMPLE_DOCUMENT);
    let rules = rules.to_str().expect("a UTF-8 path");
    let server = Server::start_with(&[
        ("RULES_FILE", rules),
        ("TWILIO_SIGNATURE_VALIDATION", "off"),
        ("ENFORCEMENT", "off"),
    ]);
    let logs = server.stop();
    assert_started(
        &logs,
        &[
            ("answer_mode", "conference"),
            ("enforcement", "off"),
            ("rules_source", &format!("file {rules}")),
            ("signatures", "off"),
            ("metrics_namespace", "ConditionalRecording"),
        ],
    );
}

/// One `started` line at info, with the crate's version, the commit `--version` names, and
/// these fields, and no others.
pub fn assert_started(logs: &Logs, fields: &[(&str, &str)]) {
    let started = logs.with_message("started");
    assert_eq!(started.len(), 1, "{}", logs.text());
    let line = &started[0];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["version"], env!("CARGO_PKG_VERSION"));
    let commit = line["commit"].as_str().unwrap_or_default();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{line}"
    );
    for (name, value) in fields {
        assert_eq!(line[*name], *value, "{name} in {line}");
    }
    let mut expected: Vec<&str> = fields.iter().map(|(name, _)| *name).collect();
    expected.extend([
        "commit",
        "level",
        "message",
        "target",
        "timestamp",
        "version",
    ]);
    expected.sort_unstable();
    assert_eq!(support::sorted_keys(line), expected, "{line}");
}
