//! Rules from SSM Parameter Store, against a real SSM emulator (`moto_server`) on 127.0.0.1:
//! picked up at start, refreshed after the TTL, and never replaced by a bad fetch.

use crate::moto;
use crate::support;
use crate::support::Http;
use crate::support::{RULES_PARAMETER, TOKEN, TOKEN_PARAMETER};

use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use moto::{Moto, Silent, SlowProxy, aws_env};
use serde_json::Value;
use support::{Callback, ENQUEUED_OUTBOUND, INBOUND, Server};

/// The documented test token (not a secret).
/// TaskRouter ignores an answer that takes longer.
const TASKROUTER_DEADLINE: Duration = Duration::from_secs(5);

const EXCLUDE_INBOUND: &str =
    r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "value": "inbound"}]}"#;
const EXCLUDE_OUTBOUND: &str =
    r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "value": "outbound"}]}"#;
const INVALID: &str =
    r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "regex": "(inbound"}]}"#;

fn serve(endpoint: &str, extra: &[(&str, &str)]) -> Server {
    serve_rules(endpoint, RULES_PARAMETER, extra)
}

fn serve_rules(endpoint: &str, rules_parameter: &str, extra: &[(&str, &str)]) -> Server {
    let aws = aws_env(endpoint);
    let mut env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("RULES_PARAMETER", rules_parameter));
    env.extend_from_slice(extra);
    Server::start_with(&env)
}

/// Posts an inbound call; returns its `conference_record` and how long the answer took.
fn inbound_decision(server: &Server) -> (String, Duration) {
    let started = Instant::now();
    let answer = server
        .post_form(&Callback::new(INBOUND).encode())
        .expect_json(200);
    let took = started.elapsed();
    (
        answer["conference_record"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        took,
    )
}

#[test]
fn rules_come_from_a_secure_string_and_are_used_at_once() {
    let moto = Moto::start();
    assert_eq!(
        moto.put(
            RULES_PARAMETER,
            EXCLUDE_INBOUND,
            ParameterType::SecureString
        ),
        1
    );
    let server = serve(&moto.endpoint(), &[]);
    assert_eq!(
        server.stdout_line().as_deref(),
        Some("rules: SSM parameter /conditional-recording/rules")
    );
    assert_eq!(inbound_decision(&server).0, "do-not-record");
    let outbound = server
        .post_form(&Callback::new(ENQUEUED_OUTBOUND).encode())
        .expect_json(200);
    assert_eq!(outbound["conference_record"], "record-from-start");

    let logs = server.stop();
    let loaded = logs.with_message("rules loaded");
    assert_eq!(loaded.len(), 1, "{}", logs.text());
    assert_eq!(
        (&loaded[0]["parameter"], &loaded[0]["version"]),
        (&Value::from(RULES_PARAMETER), &Value::from(1))
    );
    for decision in logs.decisions() {
        assert_eq!(decision["rules_version"], 1, "{decision}");
    }
}

#[test]
fn a_plain_string_parameter_works_too() {
    let moto = Moto::start();
    moto.put(RULES_PARAMETER, EXCLUDE_OUTBOUND, ParameterType::String);
    let server = serve(&moto.endpoint(), &[]);
    assert_eq!(inbound_decision(&server).0, "record-from-start");
}

#[test]
fn a_published_change_applies_after_the_ttl_and_not_before() {
    let moto = Moto::start();
    moto.put(
        RULES_PARAMETER,
        EXCLUDE_OUTBOUND,
        ParameterType::SecureString,
    );
    let ttl = Duration::from_secs(5);
    let started = Instant::now();
    let server = serve(&moto.endpoint(), &[("RULES_CACHE_TTL_SECONDS", "5")]);
    assert_eq!(
        moto.put(
            RULES_PARAMETER,
            EXCLUDE_INBOUND,
            ParameterType::SecureString
        ),
        2
    );

    let mut before_ttl = 0;
    while started.elapsed() < ttl - Duration::from_millis(1500) {
        assert_eq!(
            inbound_decision(&server).0,
            "record-from-start",
            "changed before the TTL"
        );
        before_ttl += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        before_ttl > 0,
        "the server took too long to start to observe the TTL"
    );

    let deadline = Instant::now() + ttl + Duration::from_secs(15);
    while inbound_decision(&server).0 != "do-not-record" {
        assert!(Instant::now() < deadline, "the change was never applied");
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs = server.stop();
    let versions: Vec<Value> = logs
        .with_message("rules loaded")
        .iter()
        .map(|l| l["version"].clone())
        .collect();
    assert_eq!(
        versions,
        [Value::from(1), Value::from(2)],
        "each version logged once"
    );
}

#[test]
fn an_invalid_document_is_rejected_and_the_last_good_kept() {
    let moto = Moto::start();
    moto.put(
        RULES_PARAMETER,
        EXCLUDE_INBOUND,
        ParameterType::SecureString,
    );
    let server = serve(&moto.endpoint(), &[("RULES_CACHE_TTL_SECONDS", "1")]);
    moto.put(RULES_PARAMETER, INVALID, ParameterType::SecureString);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(
            inbound_decision(&server).0,
            "do-not-record",
            "the last good rules stay in force"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = server.stop();
    let failures = logs.with_message("rules refresh failed; keeping the last good document");
    assert!(!failures.is_empty(), "{}", logs.text());
    let cause = failures[0]["cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains("exclude_attributes[0].regex: unclosed group"),
        "the cause names the fault's path: {cause}"
    );
    assert_eq!(failures[0]["parameter"], RULES_PARAMETER);
    assert_eq!(failures[0]["in_use_version"], 1);
    assert!(
        failures.len() <= 3,
        "retries back off instead of following every request: {}",
        failures.len()
    );
    for decision in logs.decisions() {
        assert_eq!(decision["rules_version"], 1);
    }
}

#[test]
fn ssm_stopped_keeps_the_last_good_rules_and_calls_answered() {
    let mut moto = Moto::start();
    moto.put(
        RULES_PARAMETER,
        EXCLUDE_INBOUND,
        ParameterType::SecureString,
    );
    let server = serve(&moto.endpoint(), &[("RULES_CACHE_TTL_SECONDS", "1")]);
    assert_eq!(inbound_decision(&server).0, "do-not-record");
    moto.stop();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let (record, took) = inbound_decision(&server);
        assert_eq!(record, "do-not-record");
        assert!(took < TASKROUTER_DEADLINE, "answered in {took:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs = server.stop();
    let failures = logs.with_message("rules refresh failed; keeping the last good document");
    assert!(
        !failures.is_empty(),
        "the outage is logged: {}",
        logs.text()
    );
    assert_eq!(failures[0]["in_use_version"], 1);
}

#[test]
fn an_ssm_that_never_answers_leaves_calls_to_the_fail_policy_in_time() {
    let silent = Silent::start();
    for (policy, expected) in [
        ("do-not-record", "do-not-record"),
        ("record", "record-from-start"),
    ] {
        let server = serve(&silent.endpoint(), &[("ON_RULES_UNAVAILABLE", policy)]);
        for _ in 0..3 {
            let (record, took) = inbound_decision(&server);
            assert_eq!(record, expected);
            assert!(took < TASKROUTER_DEADLINE, "answered in {took:?}");
        }
        let logs = server.stop();
        for decision in logs.decisions() {
            assert_eq!(decision["reason"], "rules_unavailable", "{decision}");
        }
        let failures = logs.with_message("rules refresh failed; keeping the last good document");
        assert!(!failures.is_empty(), "{}", logs.text());
        assert_eq!(failures[0]["no_good_document"], true);
    }
}

#[test]
fn a_missing_parameter_is_picked_up_once_published() {
    let moto = Moto::start();
    let server = serve(&moto.endpoint(), &[]);
    assert_eq!(
        inbound_decision(&server).0,
        "do-not-record",
        "no rules yet: the fail policy"
    );
    moto.put(
        RULES_PARAMETER,
        EXCLUDE_OUTBOUND,
        ParameterType::SecureString,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while inbound_decision(&server).0 != "record-from-start" {
        assert!(
            Instant::now() < deadline,
            "the published rules were never picked up"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let logs = server.stop();
    let failures = logs.with_message("rules refresh failed; keeping the last good document");
    // On a loaded machine an early attempt may time out instead; one names the cause.
    assert!(
        failures.iter().any(|f| f["cause"]
            .as_str()
            .unwrap_or_default()
            .contains("ParameterNotFound")),
        "{}",
        logs.text()
    );
}

#[test]
fn rules_and_token_are_read_in_one_call_at_start() {
    let moto = Moto::start();
    moto.put(
        RULES_PARAMETER,
        EXCLUDE_INBOUND,
        ParameterType::SecureString,
    );
    moto.put(TOKEN_PARAMETER, TOKEN, ParameterType::SecureString);
    let proxy = SlowProxy::start(moto.port);
    let server = serve(
        &proxy.endpoint(),
        &[("TWILIO_AUTH_TOKEN_PARAMETER", TOKEN_PARAMETER)],
    );
    assert_eq!(proxy.operations(), ["GetParameters"], "at start");

    let answer = server
        .send(&Callback::new(INBOUND).signed(TOKEN, &server.url))
        .expect_json(200);
    assert_eq!(answer["conference_record"], "do-not-record");
    assert_eq!(
        proxy.operations(),
        ["GetParameters"],
        "nothing more within the TTL"
    );
    let logs = server.stop();
    for message in ["rules loaded", "auth tokens loaded"] {
        let loaded = logs.with_message(message);
        assert_eq!(loaded.len(), 1, "{message}: {}", logs.text());
        assert_eq!(loaded[0]["version"], 1);
    }
    assert!(!logs.text().contains(TOKEN), "the token reached a log");
}

#[test]
fn a_missing_token_parameter_is_named_and_the_rules_still_load() {
    let moto = Moto::start();
    moto.put(
        RULES_PARAMETER,
        EXCLUDE_INBOUND,
        ParameterType::SecureString,
    );
    let proxy = SlowProxy::start(moto.port);
    let server = serve(
        &proxy.endpoint(),
        &[("TWILIO_AUTH_TOKEN_PARAMETER", TOKEN_PARAMETER)],
    );
    assert_eq!(
        proxy.operations(),
        ["GetParameters"],
        "the one answer says which name is missing"
    );
    let refused = server.send(&Callback::new(INBOUND).signed(TOKEN, &server.url));
    assert_eq!(
        refused.expect_error(503),
        "signatures cannot be checked: no auth token is available"
    );
    let logs = server.stop();
    assert_eq!(logs.with_message("rules loaded").len(), 1);
    let failures = logs.with_message("auth tokens refresh failed; keeping the last good document");
    assert!(!failures.is_empty(), "{}", logs.text());
    assert_eq!(failures[0]["parameter"], TOKEN_PARAMETER);
    assert!(
        failures[0]["cause"]
            .as_str()
            .unwrap_or_default()
            .contains("ParameterNotFound"),
        "{}",
        failures[0]
    );
}

#[test]
fn a_pinned_version_is_read_as_pinned() {
    let moto = Moto::start();
    moto.put(
        RULES_PARAMETER,
        EXCLUDE_INBOUND,
        ParameterType::SecureString,
    );
    assert_eq!(
        moto.put(
            RULES_PARAMETER,
            EXCLUDE_OUTBOUND,
            ParameterType::SecureString
        ),
        2
    );
    moto.put(TOKEN_PARAMETER, TOKEN, ParameterType::SecureString);
    let proxy = SlowProxy::start(moto.port);
    let pinned = format!("{RULES_PARAMETER}:1");
    let server = serve_rules(
        &proxy.endpoint(),
        &pinned,
        &[("TWILIO_AUTH_TOKEN_PARAMETER", TOKEN_PARAMETER)],
    );
    assert_eq!(proxy.operations(), ["GetParameters"]);
    let answer = server
        .send(&Callback::new(INBOUND).signed(TOKEN, &server.url))
        .expect_json(200);
    assert_eq!(answer["conference_record"], "do-not-record", "version 1");
    let logs = server.stop();
    let loaded = logs.with_message("rules loaded");
    assert_eq!(loaded[0]["version"], 1, "{}", logs.text());
}

#[test]
fn an_ssm_that_never_answers_at_start_fails_both_reads_once() {
    let silent = Silent::start();
    let server = serve(
        &silent.endpoint(),
        &[("TWILIO_AUTH_TOKEN_PARAMETER", TOKEN_PARAMETER)],
    );
    server
        .send(&Callback::new(INBOUND).signed(TOKEN, &server.url))
        .expect_error(503);
    let logs = server.stop();
    for what in ["rules", "auth tokens"] {
        let message = format!("{what} refresh failed; keeping the last good document");
        let failures = logs.with_message(&message);
        assert!(!failures.is_empty(), "{what}: {}", logs.text());
        assert_eq!(failures[0]["no_good_document"], true);
    }
}
