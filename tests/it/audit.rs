//! The audit trail: one decision line per callback with everything a compliance officer
//! asks about, CloudWatch EMF metrics, and the admin's dry-run and lint tools.

use crate::moto;
use crate::support;
use crate::support::Http;
use crate::support::TOKEN;

use std::process::Output;

use aws_sdk_ssm::types::ParameterType;
use moto::{Moto, aws_env};
use serde_json::Value;
use support::{CHAT, Callback, INBOUND, OUTBOUND, Server, TempDir, command};

/// The EMF lines (objects with `_aws.CloudWatchMetrics`) among the logs.
fn metric_lines(logs: &support::Logs) -> Vec<Value> {
    logs.json()
        .into_iter()
        .filter(|l| l["_aws"]["CloudWatchMetrics"].is_array())
        .collect()
}

#[test]
fn every_decision_line_says_who_what_why_and_how_fast() {
    let dir = TempDir::new();
    let rules = dir.write(
        "rules.json",
        r#"{"enabled": true, "exclude_queues": ["WQ00000000000000000000000000000000"],
            "exclude_attributes": [{"key": "ivr.consent", "value": false}, {"key": "direction", "value": "outbound"}]}"#,
    );
    let server = Server::start_with(&[("RULES_FILE", rules.to_str().unwrap())]);
    let inbound = Callback::new(INBOUND);
    let outbound = Callback::new(OUTBOUND);
    let chat = Callback::new(CHAT);
    for callback in [&inbound, &outbound, &chat] {
        server.post_form(&callback.encode()).expect_json(200);
    }
    let logs = server.stop();

    let line = logs.decision_for(outbound.task_sid());
    for field in [
        "task_sid",
        "reservation_sid",
        "workspace_sid",
        "task_queue_sid",
    ] {
        assert_eq!(
            line[field],
            outbound.get(&field_name(field)),
            "{field} in {line}"
        );
    }
    assert_eq!(line["decision"], "do-not-record");
    assert_eq!(line["reason"], "excluded_by_attribute");
    assert_eq!(line["rule"], "exclude_attributes[1]");
    assert!(
        line["elapsed_us"].as_u64().is_some(),
        "time taken in microseconds: {line}"
    );
    assert_eq!(line["level"], "INFO");
    assert!(line["timestamp"].is_string());

    let recorded = logs.decision_for(inbound.task_sid());
    assert_eq!(
        (&recorded["decision"], &recorded["reason"]),
        (&"record-from-start".into(), &"no_exclusion_matched".into())
    );
    assert!(recorded.get("rule").is_none_or(Value::is_null));
    assert_eq!(logs.decision_for(chat.task_sid())["decision"], "no-action");

    // One line per decision: the decision record carries its EMF block, counted by outcome
    // and by reason, with the rules' age.
    let metrics = metric_lines(&logs);
    let decisions: Vec<&Value> = metrics.iter().filter(|m| m["Decisions"] == 1).collect();
    assert_eq!(decisions.len(), 3, "{}", logs.text());
    assert!(
        decisions.iter().all(|m| m["message"] == "decision"),
        "the decision lines are the EMF lines"
    );
    assert_eq!(logs.decisions().len(), 3, "and there are no others");
    let emf = decisions
        .iter()
        .find(|m| m["Reason"] == "excluded_by_attribute")
        .expect("an EMF line for the exclusion");
    assert_eq!(emf["task_sid"], outbound.task_sid());
    assert_eq!(emf["Outcome"], "do-not-record");
    let directive = &emf["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "ConditionalRecording");
    assert_eq!(
        directive["Dimensions"],
        serde_json::json!([["Outcome"], ["Reason"]])
    );
    assert_eq!(directive["Metrics"][0]["Name"], "Decisions");
    assert!(emf["RulesAgeSeconds"].as_f64().is_some(), "{emf}");
    assert!(emf["_aws"]["Timestamp"].as_u64().is_some());
}

/// The form field a log field reports.
fn field_name(log_field: &str) -> String {
    log_field
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn signature_rejections_and_refresh_failures_are_counted() {
    let mut moto = Moto::start();
    moto.put(
        "/cr/rules",
        r#"{"enabled": true}"#,
        ParameterType::SecureString,
    );
    let aws = aws_env(&moto.endpoint());
    let mut env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([
        ("RULES_PARAMETER", "/cr/rules"),
        ("RULES_CACHE_TTL_SECONDS", "1"),
        ("TWILIO_AUTH_TOKEN", TOKEN),
    ]);
    let server = Server::start_with(&env);
    let callback = Callback::new(INBOUND);
    server
        .send(&callback.signed(TOKEN, &server.url))
        .expect_json(200);
    server.post_form(&callback.encode()).expect_error(403);
    let elsewhere = callback.signed_for(
        TOKEN,
        &server.url,
        "/assignment",
        "http://elsewhere.example/assignment",
    );
    server.send(&elsewhere).expect_error(403);
    moto.stop();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    server
        .send(&callback.signed(TOKEN, &server.url))
        .expect_json(200);
    let logs = server.stop();

    let metrics = metric_lines(&logs);
    let causes: Vec<&Value> = metrics
        .iter()
        .filter(|m| m["SignatureRejections"] == 1)
        .map(|m| &m["Cause"])
        .collect();
    assert_eq!(causes, [&Value::from("missing"), &Value::from("invalid")]);
    assert!(
        metrics
            .iter()
            .any(|m| m["RefreshFailures"] == 1 && m["Document"] == "rules"),
        "{}",
        logs.text()
    );
    let ages: Vec<f64> = metrics
        .iter()
        .filter_map(|m| m["RulesAgeSeconds"].as_f64())
        .collect();
    assert_eq!(ages.len(), 2);
    assert!(
        ages[1] >= 1.0,
        "the rules in use grow older while SSM is down: {ages:?}"
    );
}

fn run(args: &[&str]) -> Output {
    let output = command(&[]).args(args).output().expect("run the binary");
    support::keep_log("audit", &output.stderr);
    output
}

fn stdout_json(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn decide_replays_a_real_callback_body_and_an_api_gateway_event() {
    let dir = TempDir::new();
    let rules = dir.write(
        "draft.json",
        r#"{"enabled": true, "exclude_queues": ["Payments"], "exclude_attributes": [{"key": "direction", "value": "outbound"}]}"#,
    );
    let rules = rules.to_str().unwrap();
    let callback = Callback::new(OUTBOUND);
    let body = dir.write("callback.txt", &callback.encode());
    let report = stdout_json(&run(&[
        "decide",
        "--rules",
        rules,
        "--callback",
        body.to_str().unwrap(),
    ]));
    assert_eq!(report["decision"], "do-not-record");
    assert_eq!(report["rule"], "exclude_attributes[0]");
    assert_eq!(report["task_sid"], callback.task_sid());

    let inbound = Callback::new(INBOUND);
    let body = dir.write("inbound.txt", &inbound.encode());
    let report = stdout_json(&run(&[
        "decide",
        "--rules",
        rules,
        "--callback",
        body.to_str().unwrap(),
    ]));
    assert_eq!(
        report["reason"], "queue_name_unresolved",
        "a name rule needs the name"
    );
    let args = [
        "decide",
        "--rules",
        rules,
        "--callback",
        body.to_str().unwrap(),
        "--queue-name",
        "Payments",
    ];
    let report = stdout_json(&run(&args));
    assert_eq!(
        (&report["reason"], &report["rule"]),
        (&"excluded_by_queue".into(), &"exclude_queues[0]".into())
    );

    let event = format!(
        "{}/tests/data/events/rest-api-prod-stage.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let report = stdout_json(&run(&[
        "decide",
        "--rules",
        rules,
        "--event",
        &event,
        "--queue-name",
        "Sales",
    ]));
    assert_eq!(report["decision"], "record-from-start");
    assert_eq!(report["task_sid"], "WT11111111111111111111111111111111");

    let not_a_callback = dir.write("junk.txt", "hello=world");
    let output = run(&[
        "decide",
        "--rules",
        rules,
        "--callback",
        not_a_callback.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("TaskSid is missing"));
    let output = run(&["decide", "--rules", rules, "--event", rules]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not an API Gateway"));
}

#[test]
fn check_counts_rules_by_kind_and_warns_about_real_mistakes() {
    let dir = TempDir::new();
    let rules = dir.write(
        "rules.json",
        r#"{"enabled": true,
            "exclude_queues": ["WQ0123456789ABCDEF0123456789ABCDEF", "WQ11111111111111111111111111111111", "WQ11111111111111111111111111111111"],
            "exclude_attributes": [{"key": "direction", "value": "outbound"}, {"key": "from", "regex": "^\\+44"}, {"all": [{"key": "a", "exists": true}]}],
            "include_attributes": [{"key": "direction", "value": "outbound"}]}"#,
    );
    let output = run(&["check", rules.to_str().unwrap()]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("exclude_attributes: 3 (value 1, regex 1, all 1)")
            && stdout.contains("exclude_queues: 1 SID(s), 1 name(s)"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "exclude_queues[0]: \"WQ0123456789ABCDEF0123456789ABCDEF\" looks like a TaskQueue SID but is not one",
        "exclude_queues[2]: duplicate of exclude_queues[1]",
        "include_attributes[0]: useless: exclude_attributes[0] excludes the same calls, and exclusion wins",
    ] {
        assert!(
            stderr.contains(expected),
            "missing warning {expected:?} in:\n{stderr}"
        );
    }
}
