//! A process that starts after a bad rules document was published, against a real SSM
//! emulator (`moto_server`): it reads the parameter's history and decides from the newest
//! older version that is valid, never from a version above the rejected one; the fail policy
//! only when no version is valid; the next good version is picked up within one TTL.
//!
//! moto's GetParameterHistory pages as SSM documents it (`MaxResults` up to 50, `NextToken`)
//! and honours `WithDecryption`; it lists versions oldest first, an order SSM does not
//! promise, so these tests put the version to find on the last page.

use crate::moto::{Moto, SlowProxy, aws_env};
use crate::support::{Callback, Http, INBOUND, Logs, Server};

use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;

/// Inbound calls are not recorded.
const EXCLUDE_INBOUND: &str =
    r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "value": "inbound"}]}"#;
/// Inbound calls are recorded.
const EXCLUDE_OUTBOUND: &str =
    r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "value": "outbound"}]}"#;
const BAD_REGEX: &str =
    r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "regex": "(inbound"}]}"#;
const BAD_JSON: &str = r#"{"enabled": true, "exclude_attributes": ["#;

const FELL_BACK: &str = "rules version rejected; using an older version";
const REFRESH_FAILED: &str = "rules refresh failed; keeping the last good document";

fn serve(endpoint: &str, parameter: &str, extra: &[(&str, &str)]) -> Server {
    let aws = aws_env(endpoint);
    let mut env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.push(("RULES_PARAMETER", parameter));
    env.extend_from_slice(extra);
    Server::start_with(&env)
}

/// The `conference_record` an inbound call gets.
fn inbound(server: &Server) -> String {
    let answer = server
        .post_form(&Callback::new(INBOUND).encode())
        .expect_json(200);
    answer["conference_record"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The `RulesVersionBehind` values the process wrote, in order.
fn versions_behind(logs: &Logs) -> Vec<i64> {
    logs.json()
        .iter()
        .filter_map(|line| line["RulesVersionBehind"].as_i64())
        .collect()
}

#[test]
fn a_process_started_after_a_bad_publish_decides_from_the_last_good_version() {
    let moto = Moto::start();
    let cases = [
        ("/cr/string-regex", ParameterType::String, BAD_REGEX),
        ("/cr/string-json", ParameterType::String, BAD_JSON),
        ("/cr/secure-regex", ParameterType::SecureString, BAD_REGEX),
        ("/cr/secure-json", ParameterType::SecureString, BAD_JSON),
    ];
    for (parameter, kind, bad) in cases {
        assert_eq!(moto.put(parameter, EXCLUDE_INBOUND, kind.clone()), 1);
        assert_eq!(moto.put(parameter, bad, kind.clone()), 2);
        let server = serve(&moto.endpoint(), parameter, &[]);
        assert_eq!(inbound(&server), "do-not-record", "{parameter}: version 1");
        let logs = server.stop();

        let fell_back = logs.with_message(FELL_BACK);
        assert_eq!(fell_back.len(), 1, "{parameter}: {}", logs.text());
        let line = &fell_back[0];
        assert_eq!(line["level"], "WARN");
        assert_eq!(line["parameter"], parameter);
        assert_eq!(
            (&line["rejected_version"], &line["version"]),
            (&2.into(), &1.into())
        );
        let cause = line["cause"].as_str().unwrap_or_default();
        let expected = if bad == BAD_REGEX {
            "exclude_attributes[0].regex: unclosed group"
        } else {
            "not valid JSON: EOF while parsing a list"
        };
        assert!(cause.contains(expected), "{parameter}: {cause}");
        assert!(
            !logs.text().contains("(inbound"),
            "a document reached a log"
        );
        assert!(
            logs.with_message(REFRESH_FAILED).is_empty(),
            "{}",
            logs.text()
        );
        for decision in logs.decisions() {
            assert_eq!(decision["rules_version"], 1, "{decision}");
            assert_eq!(decision["reason"], "excluded_by_attribute", "{decision}");
        }
        assert_eq!(versions_behind(&logs), [1], "{parameter}");
    }
}

#[test]
fn with_no_valid_version_calls_get_the_fail_policy() {
    let moto = Moto::start();
    let parameter = "/cr/never-valid";
    moto.put(parameter, BAD_REGEX, ParameterType::SecureString);
    moto.put(parameter, BAD_JSON, ParameterType::SecureString);
    let server = serve(
        &moto.endpoint(),
        parameter,
        &[("ON_RULES_UNAVAILABLE", "record")],
    );
    assert_eq!(inbound(&server), "record-from-start");
    let logs = server.stop();
    for decision in logs.decisions() {
        assert_eq!(decision["reason"], "rules_unavailable", "{decision}");
        assert!(decision.get("rules_version").is_none(), "{decision}");
    }
    assert!(logs.with_message(FELL_BACK).is_empty());
    let failed = logs.with_message(REFRESH_FAILED);
    assert!(!failed.is_empty(), "{}", logs.text());
    assert_eq!(failed[0]["no_good_document"], true);
    assert_eq!(failed[0]["history"], "no older version is valid (2 read)");
    assert!(
        failed[0]["cause"]
            .as_str()
            .unwrap_or_default()
            .contains("not valid JSON"),
        "the current version's fault: {}",
        failed[0]
    );
    assert!(versions_behind(&logs).is_empty(), "nothing in force");
}

#[test]
fn a_later_good_version_is_picked_up_within_one_ttl() {
    let moto = Moto::start();
    let parameter = "/cr/fixed-later";
    moto.put(parameter, EXCLUDE_INBOUND, ParameterType::SecureString);
    moto.put(parameter, BAD_REGEX, ParameterType::SecureString);
    let proxy = SlowProxy::start(moto.port);
    let server = serve(
        &proxy.endpoint(),
        parameter,
        &[("RULES_CACHE_TTL_SECONDS", "2")],
    );
    assert_eq!(inbound(&server), "do-not-record", "version 1");
    assert_eq!(
        moto.put(parameter, EXCLUDE_OUTBOUND, ParameterType::SecureString),
        3
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while inbound(&server) != "record-from-start" {
        assert!(Instant::now() < deadline, "version 3 was never picked up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs = server.stop();
    let loaded = logs.with_message("rules loaded");
    assert_eq!(loaded.len(), 1, "{}", logs.text());
    assert_eq!(
        (&loaded[0]["version"], &loaded[0]["previous_version"]),
        (&3.into(), &1.into())
    );
    let versions: Vec<i64> = logs
        .decisions()
        .iter()
        .filter_map(|d| d["rules_version"].as_i64())
        .collect();
    assert!(versions.ends_with(&[3]), "{versions:?}");
    assert!(versions.iter().all(|v| [1, 3].contains(v)), "{versions:?}");
    // The history is read at start only: refreshes have version 1 in memory.
    let operations = proxy.operations();
    let last_history = operations.iter().rposition(|o| o == "GetParameterHistory");
    let first_refresh = operations
        .iter()
        .enumerate()
        .filter(|(_, o)| *o == "GetParameter")
        .nth(1)
        .map(|(at, _)| at);
    assert!(
        last_history.is_some() && first_refresh.is_some() && last_history < first_refresh,
        "{operations:?}"
    );
    assert_eq!(versions_behind(&logs).last(), Some(&0));
}

#[test]
fn more_than_a_page_of_history_is_read_whole() {
    let moto = Moto::start();
    let parameter = "/cr/long-history";
    // 1-54 valid and older, 55 the one to find (on moto's second page), 56-70 invalid.
    for version in 1..=70 {
        let document = match version {
            1..=54 => EXCLUDE_OUTBOUND,
            55 => EXCLUDE_INBOUND,
            _ if version % 2 == 0 => BAD_JSON,
            _ => BAD_REGEX,
        };
        assert_eq!(
            moto.put(parameter, document, ParameterType::SecureString),
            version
        );
    }
    let proxy = SlowProxy::start(moto.port);
    let started = Instant::now();
    let server = serve(&proxy.endpoint(), parameter, &[]);
    let start_took = started.elapsed();
    assert_eq!(inbound(&server), "do-not-record", "version 55");
    let logs = server.stop();
    let fell_back = logs.with_message(FELL_BACK);
    assert_eq!(fell_back.len(), 1, "{}", logs.text());
    assert_eq!(
        (&fell_back[0]["rejected_version"], &fell_back[0]["version"]),
        (&70.into(), &55.into())
    );
    assert!(
        proxy.count("GetParameterHistory") >= 2,
        "two pages of 50: {:?}",
        proxy.operations()
    );
    assert_eq!(versions_behind(&logs), [15]);
    // A figure, not a check: how long a start that reads two pages took here.
    eprintln!("start with 70 versions, two history pages: {start_took:?}");
}

#[test]
fn a_version_above_the_rejected_one_is_never_used() {
    let moto = Moto::start();
    let parameter = "/cr/published-meanwhile";
    moto.put(parameter, EXCLUDE_OUTBOUND, ParameterType::SecureString);
    moto.put(parameter, BAD_JSON, ParameterType::SecureString);
    // The history read is held until version 3 (valid) is published: it is in the history,
    // above the rejected version 2.
    let proxy = SlowProxy::start(moto.port);
    proxy.hold_next("GetParameterHistory");
    let published = std::thread::scope(|scope| {
        let server = scope.spawn(|| serve(&proxy.endpoint(), parameter, &[]));
        proxy.wait_for_held();
        let version = moto.put(parameter, EXCLUDE_INBOUND, ParameterType::SecureString);
        proxy.release();
        (server.join().expect("the server started"), version)
    });
    let (server, version) = published;
    assert_eq!(version, 3);
    assert_eq!(inbound(&server), "record-from-start", "version 1, not 3");
    let logs = server.stop();
    let fell_back = logs.with_message(FELL_BACK);
    assert_eq!(fell_back.len(), 1, "{}", logs.text());
    assert_eq!(
        (&fell_back[0]["rejected_version"], &fell_back[0]["version"]),
        (&2.into(), &1.into())
    );
    for decision in logs.decisions() {
        assert_eq!(decision["rules_version"], 1, "{decision}");
    }
}

#[test]
fn a_warm_process_keeps_its_document_and_never_reads_history() {
    let moto = Moto::start();
    let parameter = "/cr/warm";
    moto.put(parameter, EXCLUDE_INBOUND, ParameterType::String);
    let proxy = SlowProxy::start(moto.port);
    let server = serve(
        &proxy.endpoint(),
        parameter,
        &[("RULES_CACHE_TTL_SECONDS", "1")],
    );
    assert_eq!(inbound(&server), "do-not-record");
    moto.put(parameter, BAD_REGEX, ParameterType::String);
    // Calls until a refresh sent after the publish has read version 2.
    let before = proxy.count("GetParameter");
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.count("GetParameter") <= before {
        assert!(
            Instant::now() < deadline,
            "no refresh: {:?}",
            proxy.operations()
        );
        assert_eq!(inbound(&server), "do-not-record", "version 1 stays");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(inbound(&server), "do-not-record", "version 1 stays");
    let logs = server.stop();
    assert_eq!(
        proxy.count("GetParameterHistory"),
        0,
        "{:?}",
        proxy.operations()
    );
    assert!(logs.with_message(FELL_BACK).is_empty());
    let failed = logs.with_message(REFRESH_FAILED);
    assert!(!failed.is_empty(), "{}", logs.text());
    assert_eq!(failed[0]["in_use_version"], 1);
    assert!(failed[0].get("history").is_none(), "{}", failed[0]);
    assert!(
        versions_behind(&logs).contains(&1),
        "{:?}",
        versions_behind(&logs)
    );
}
