//! The admin faces of the binary: `check` and `decide`.

use crate::support;

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};
use support::{
    CHAT, ENQUEUED_OUTBOUND, INBOUND, INTERNAL, OUTBOUND, SMS_OUTBOUND, TRANSFERRED, TempDir,
    WHATSAPP_OUTBOUND, command, describe, fixture_path, path_str, text,
};

/// The Flex template's own example, plus a queue name.
const TEMPLATE_DOCUMENT: &str = r#"{
  "enabled": true,
  "exclude_queues": ["WQ0123456789abcdef0123456789abcdef"],
  "exclude_attributes": [
    { "key": "direction", "value": "outbound" },
    { "key": "conversations.topics", "value": "financial" }
  ]
}"#;

/// Names a queue, so a decision may need its friendly name.
const QUEUE_NAME_DOCUMENT: &str = r#"{
  "enabled": true,
  "exclude_queues": ["Payments"],
  "exclude_attributes": [{ "key": "direction", "value": "outbound" }]
}"#;

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    support::run_binary("cli", args, env)
}

// ---------------------------------------------------------------------------------------
// check

#[test]
fn check_accepts_a_valid_document() {
    let dir = TempDir::new();
    let path = dir.write("rules.json", TEMPLATE_DOCUMENT);
    let output = run(&["check", path_str(&path)], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    let expected_start = format!("{}: ok (", path.display());
    assert!(stdout.starts_with(&expected_start), "{}", describe(&output));
    assert!(stdout.trim_end().ends_with(')'), "{}", describe(&output));
    assert_eq!(stdout.lines().count(), 1, "{}", describe(&output));
}

#[test]
fn check_rejects_invalid_documents_with_the_json_path_of_the_fault() {
    let cases = [
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "regex": "(unclosed"}]}"#,
            "exclude_attributes[0].regex: unclosed group",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "value": 1}, {"key": "b", "value": 2}, {"key": "c", "regex": "(x"}]}"#,
            "exclude_attributes[2].regex: unclosed group",
        ),
        ("{}", "enabled: required"),
        (
            r#"{"enabled": true, "exclude_queues": ["Payments", 7]}"#,
            "exclude_queues[1]: must be a string",
        ),
        (
            r#"{"enabled": true, "exclude_attributes": [{"key": "a", "value": "x", "prefix": "y"}]}"#,
            "exclude_attributes[0].prefix: a condition takes one matcher",
        ),
        (
            r#"{"enabled": true, "exclude_queue": []}"#,
            "exclude_queue: unknown key",
        ),
        (
            r#"{"enabled": true, "instruction": {"conference_record": true}}"#,
            "instruction.conference_record: ",
        ),
        (
            r#"{"enabled": true, "include_attributes": [{"all": [{"key": "a", "regex": "["}]}]}"#,
            "include_attributes[0].all[0].regex: unclosed character class",
        ),
        (r#"{"enabled": true,"#, "not valid JSON"),
    ];
    let dir = TempDir::new();
    for (index, (document, expected)) in cases.iter().enumerate() {
        let path = dir.write(&format!("bad-{index}.json"), document);
        let output = run(&["check", path_str(&path)], &[]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{document}\n{}",
            describe(&output)
        );
        let stderr = text(&output.stderr);
        assert!(
            stderr.contains(expected),
            "{document}: expected {expected:?}\n{}",
            describe(&output)
        );
        assert!(
            stderr.contains(&path.display().to_string()),
            "the error names the file\n{}",
            describe(&output)
        );
        assert!(
            !text(&output.stdout).contains(": ok"),
            "{}",
            describe(&output)
        );
    }
}

#[test]
fn check_fails_on_a_missing_file() {
    let dir = TempDir::new();
    let path = dir.path.join("no-such-rules.json");
    let output = run(&["check", path_str(&path)], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("no-such-rules.json"),
        "{}",
        describe(&output)
    );
}

#[test]
fn check_and_help_ignore_the_services_configuration_and_decide_reports_it() {
    let dir = TempDir::new();
    let path = dir.write("rules.json", TEMPLATE_DOCUMENT);
    // Variables meant for the service, with values it refuses.
    let bad = [
        ("ANSWER_MODE", "Annotate"),
        ("RULES_CACHE_TTL_SECONDS", "0"),
    ];
    let output = run(&["check", path_str(&path)], &bad);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let output = run(&["--help"], &bad);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        text(&output.stdout).contains("check"),
        "{}",
        describe(&output)
    );

    let attributes = fixture_path(INBOUND);
    let at = format!("@{}", attributes.display());
    let output = run(
        &["decide", "--rules", path_str(&path), "--attributes", &at],
        &bad,
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("ANSWER_MODE") || stderr.contains("RULES_CACHE_TTL_SECONDS"),
        "{}",
        describe(&output)
    );
}

// ---------------------------------------------------------------------------------------
// decide

/// Runs `decide` and returns its one JSON line; asserts stdout holds nothing else and the
/// report is not on stderr.
fn decide(rules: &Path, attributes: &str, extra: &[&str], env: &[(&str, &str)]) -> Value {
    let mut args = vec![
        "decide",
        "--rules",
        path_str(rules),
        "--attributes",
        attributes,
    ];
    args.extend_from_slice(extra);
    let output = run(&args, env);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    assert!(stdout.ends_with('\n'), "{}", describe(&output));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout is one line\n{}", describe(&output));
    let report: Value = serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", describe(&output)));
    assert_eq!(
        crate::support::sorted_keys(&report),
        [
            "answer",
            "answer_reason",
            "decision",
            "explanation",
            "reason",
            "rule"
        ],
        "{report}"
    );
    assert!(report["explanation"].is_string(), "{report}");
    for line in text(&output.stderr).lines() {
        let logged = serde_json::from_str::<Value>(line).ok();
        assert!(
            logged.as_ref().is_none_or(|v| v.get("answer").is_none()),
            "the report leaked onto stderr: {line}"
        );
        assert_ne!(line.trim(), lines[0].trim(), "the report is on stderr too");
    }
    report
}

fn conference(record: &str) -> Value {
    json!({"instruction": "conference", "conference_record": record})
}

#[test]
fn decide_records_an_inbound_call() {
    let dir = TempDir::new();
    let rules = dir.write("rules.json", TEMPLATE_DOCUMENT);
    let report = decide(&rules, INBOUND, &[], &[]);
    assert_eq!(report["decision"], "record-from-start");
    assert_eq!(report["reason"], "no_exclusion_matched");
    assert_eq!(report["rule"], Value::Null);
    assert_eq!(report["answer"], conference("record-from-start"));
}

#[test]
fn decide_excludes_an_outbound_call_by_attribute() {
    let dir = TempDir::new();
    let rules = dir.write("rules.json", TEMPLATE_DOCUMENT);
    let report = decide(&rules, ENQUEUED_OUTBOUND, &[], &[]);
    assert_eq!(report["decision"], "do-not-record");
    assert_eq!(report["reason"], "excluded_by_attribute");
    assert_eq!(report["rule"], "exclude_attributes[0]");
    assert_eq!(report["answer"], conference("do-not-record"));
    assert_eq!(report["answer_reason"], Value::Null);
    // The Flex dialer's call: the same decision, answered `{}` as the service answers it.
    let report = decide(&rules, OUTBOUND, &[], &[]);
    assert_eq!(report["decision"], "do-not-record");
    assert_eq!(report["rule"], "exclude_attributes[0]");
    assert_eq!(report["answer"], json!({}));
    assert_eq!(report["answer_reason"], "no_call_sid");
}

#[test]
fn decide_answers_every_flex_task_shape_as_the_service_does() {
    let dir = TempDir::new();
    let rules = dir.write("rules.json", TEMPLATE_DOCUMENT);
    let cases = [
        (INTERNAL, &[][..], "record-from-start", "conference_exists"),
        (TRANSFERRED, &[], "record-from-start", "conference_exists"),
        (SMS_OUTBOUND, &[], "no-action", "not_a_call"),
        (WHATSAPP_OUTBOUND, &[], "no-action", "not_a_call"),
        (CHAT, &[], "no-action", "not_a_call"),
        // The channel decides alone when given.
        (INBOUND, &["--channel", "chat"], "no-action", "not_a_call"),
        (
            SMS_OUTBOUND,
            &["--channel", "voice"],
            "do-not-record",
            "no_call_sid",
        ),
    ];
    for (attributes, args, decision, answer_reason) in cases {
        let report = decide(&rules, attributes, args, &[]);
        assert_eq!(report["decision"], decision, "{report}");
        assert_eq!(report["answer"], json!({}), "{report}");
        assert_eq!(report["answer_reason"], answer_reason, "{report}");
    }
    let report = decide(&rules, INBOUND, &["--channel", "voice"], &[]);
    assert_eq!(report["answer"], conference("record-from-start"));

    // Annotate mode: an earlier reservation's stamp is kept, not replaced.
    let stamped = r#"{"call_sid": "CA1", "direction": "outbound", "conditional_recording": {"record": true}}"#;
    let output = run(
        &[
            "decide",
            "--rules",
            path_str(&rules),
            "--attributes",
            stamped,
        ],
        &[("ANSWER_MODE", "annotate")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(report["decision"], "do-not-record");
    assert_eq!(report["answer_reason"], "annotate");
    assert_eq!(report["annotation"], json!({"kept": {"record": true}}));
}

#[test]
fn decide_excludes_by_array_attribute_and_queue_sid() {
    let dir = TempDir::new();
    let rules = dir.write("rules.json", TEMPLATE_DOCUMENT);
    let financial = INBOUND.replace(r#""address change""#, r#""financial""#);
    assert_ne!(financial, INBOUND);
    let report = decide(&rules, &financial, &[], &[]);
    assert_eq!(report["reason"], "excluded_by_attribute");
    assert_eq!(report["rule"], "exclude_attributes[1]");

    let report = decide(
        &rules,
        INBOUND,
        &["--queue-sid", "WQ0123456789abcdef0123456789abcdef"],
        &[],
    );
    assert_eq!(report["decision"], "do-not-record");
    assert_eq!(report["reason"], "excluded_by_queue");
    assert_eq!(report["rule"], "exclude_queues[0]");
}

#[test]
fn decide_takes_no_action_on_a_chat() {
    let dir = TempDir::new();
    let rules = dir.write("rules.json", TEMPLATE_DOCUMENT);
    let report = decide(&rules, CHAT, &[], &[]);
    assert_eq!(report["decision"], "no-action");
    assert_eq!(report["reason"], "not_a_call");
    assert_eq!(report["rule"], Value::Null);
    assert_eq!(report["answer"], json!({}));
}

#[test]
fn decide_reads_attributes_from_a_file() {
    let dir = TempDir::new();
    let rules = dir.write("rules.json", TEMPLATE_DOCUMENT);
    for (fixture, inline) in [
        ("inbound-voice-task-attributes.json", INBOUND),
        ("outbound-voice-task-attributes.json", OUTBOUND),
        ("chat-task-attributes.json", CHAT),
    ] {
        let at_file = format!("@{}", fixture_path(fixture).display());
        assert_eq!(
            decide(&rules, &at_file, &[], &[]),
            decide(&rules, inline, &[], &[]),
            "{fixture}"
        );
    }
}

#[test]
fn decide_without_the_queue_name_follows_the_fail_policy() {
    let dir = TempDir::new();
    let rules = dir.write("rules.json", QUEUE_NAME_DOCUMENT);

    let report = decide(&rules, INBOUND, &[], &[]);
    assert_eq!(report["decision"], "do-not-record");
    assert_eq!(report["reason"], "queue_name_unresolved");
    assert_eq!(report["answer"], conference("do-not-record"));

    let report = decide(&rules, INBOUND, &[], &[("ON_RULES_UNAVAILABLE", "record")]);
    assert_eq!(report["decision"], "record-from-start");
    assert_eq!(report["reason"], "queue_name_unresolved");

    // An attribute that already excludes the call needs no name.
    let report = decide(
        &rules,
        ENQUEUED_OUTBOUND,
        &[],
        &[("ON_RULES_UNAVAILABLE", "record")],
    );
    assert_eq!(report["decision"], "do-not-record");
    assert_eq!(report["reason"], "excluded_by_attribute");
}

#[test]
fn decide_with_the_queue_name_applies_the_queue_rule() {
    let dir = TempDir::new();
    let rules = dir.write("rules.json", QUEUE_NAME_DOCUMENT);

    let report = decide(&rules, INBOUND, &["--queue-name", "Payments"], &[]);
    assert_eq!(report["decision"], "do-not-record");
    assert_eq!(report["reason"], "excluded_by_queue");
    assert_eq!(report["rule"], "exclude_queues[0]");

    // Names match exactly and case-sensitively.
    let report = decide(&rules, INBOUND, &["--queue-name", "payments"], &[]);
    assert_eq!(report["decision"], "record-from-start");
    assert_eq!(report["reason"], "no_exclusion_matched");
}

#[test]
fn decide_refuses_an_invalid_rules_document() {
    let dir = TempDir::new();
    let rules = dir.write(
        "rules.json",
        r#"{"enabled": true, "exclude_attributes": [{"key": "a", "regex": "(unclosed"}]}"#,
    );
    let output = run(
        &[
            "decide",
            "--rules",
            path_str(&rules),
            "--attributes",
            INBOUND,
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(output.stdout.is_empty(), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("exclude_attributes[0].regex: unclosed group"),
        "{}",
        describe(&output)
    );
}

#[test]
fn decide_refuses_what_the_service_refuses_and_reads_no_more_than_a_callback() {
    let dir = TempDir::new();
    let rules = dir.write("rules.json", TEMPLATE_DOCUMENT);
    let rules = path_str(&rules);
    let fails = |args: &[&str], expected: &str| {
        let output = run(args, &[]);
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert!(
            text(&output.stderr).contains(expected),
            "{}",
            describe(&output)
        );
        assert!(output.stdout.is_empty(), "{}", describe(&output));
    };
    // A callback body over 256 KiB: the service answers 413, so no decision here either.
    let big = dir.write(
        "big.body",
        &format!("TaskSid=WT1&Padding={}", "x".repeat(300 * 1024)),
    );
    fails(
        &["decide", "--rules", rules, "--callback", path_str(&big)],
        "413",
    );
    // An endless file is not read to the end.
    fails(
        &["decide", "--rules", rules, "--attributes", "@/dev/zero"],
        "over 262144 bytes",
    );
    // An event the service would refuse before deciding.
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("events/http-inbound-recorded.json"),
        )
        .expect("the example event"),
    )
    .expect("JSON");
    let mut get = event.clone();
    get["requestContext"]["http"]["method"] = json!("GET");
    let get = dir.write("get.json", &get.to_string());
    fails(
        &["decide", "--rules", rules, "--event", path_str(&get)],
        "405",
    );
    let mut elsewhere = event.clone();
    elsewhere["rawPath"] = json!("/status");
    elsewhere["requestContext"]["http"]["path"] = json!("/status");
    let elsewhere = dir.write("elsewhere.json", &elsewhere.to_string());
    fails(
        &["decide", "--rules", rules, "--event", path_str(&elsewhere)],
        "404",
    );
    let fine = dir.write("fine.json", &event.to_string());
    let output = run(
        &["decide", "--rules", rules, "--event", path_str(&fine)],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
}

#[test]
fn decide_answers_as_the_mode_does_and_says_why_attributes_cannot_be_read() {
    let dir = TempDir::new();
    let rules = dir.write("rules.json", TEMPLATE_DOCUMENT);
    let output = run(
        &[
            "decide",
            "--rules",
            path_str(&rules),
            "--attributes",
            OUTBOUND,
        ],
        &[("ANSWER_MODE", "annotate")],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(report["answer"], json!({}));
    assert_eq!(report["annotation"]["record"], json!(false));
    assert_eq!(report["decision"], "do-not-record");

    let output = run(
        &[
            "decide",
            "--rules",
            path_str(&rules),
            "--attributes",
            r#"{"call_sid":"CA1""#,
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    assert_eq!(report["reason"], "task_attributes_unparseable");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("cannot be read (EOF while parsing an object"),
        "{stderr}"
    );
    assert!(!stderr.contains("CA1"), "no value is echoed: {stderr}");
}

/// Runs the binary with `stdin` as its standard input.
fn run_with_input(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = command(&[])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", support::BIN));
    let mut input = child.stdin.take().expect("stdin");
    // The binary may stop reading early (a document over the limit): a broken pipe is fine.
    let _ = input.write_all(stdin);
    drop(input);
    let output = child.wait_with_output().expect("the binary ends");
    support::keep_log("cli", &output.stderr);
    output
}

#[test]
fn check_and_decide_read_standard_input_for_a_dash() {
    let output = run_with_input(&["check", "-"], TEMPLATE_DOCUMENT.as_bytes());
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        text(&output.stdout).starts_with("standard input: ok ("),
        "{}",
        describe(&output)
    );

    let output = run_with_input(
        &["check", "-"],
        br#"{"enabled": true, "exclude_queus": []}"#,
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = text(&output.stderr);
    assert!(
        stderr.starts_with("standard input: ") && stderr.contains("exclude_queus"),
        "the fault names the input and the key: {}",
        describe(&output)
    );

    // Bounded as a file is: 4 MiB and one byte is refused without reading further.
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let output = run_with_input(&["check", "-"], &huge);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("standard input"),
        "{}",
        describe(&output)
    );

    let dir = TempDir::new();
    let rules = dir.write("rules.json", TEMPLATE_DOCUMENT);
    let output = run_with_input(
        &["decide", "--rules", path_str(&rules), "--attributes", "@-"],
        OUTBOUND.as_bytes(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let piped: Value = serde_json::from_slice(&output.stdout).expect("a decision");
    assert_eq!(piped, decide(&rules, OUTBOUND, &[], &[]));
}

#[test]
fn version_names_the_package_version_and_the_commit() {
    let output = run(&["--version"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let line = text(&output.stdout);
    let expected = format!(
        "conditional-recording {} (commit ",
        env!("CARGO_PKG_VERSION")
    );
    assert!(line.starts_with(&expected), "{line:?}");
    let commit = line
        .trim_end()
        .strip_prefix(&expected)
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{line:?}"));
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_owned());
    match head {
        // Built from this checkout: the commit it was at when built (HEAD may have moved
        // since, so a prefix of the history, not HEAD itself).
        Some(_) => {
            let known = std::process::Command::new("git")
                .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("git runs");
            assert!(known.success(), "{commit} is a commit of this repository");
        }
        None => assert_eq!(commit, "unknown"),
    }
}

#[test]
fn serve_listens_on_a_host_name() {
    use std::io::{BufRead, BufReader};
    let mut child = command(&[])
        .args(["serve", "--addr", "localhost:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("serve starts");
    let mut banner = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut banner)
        .expect("a banner line");
    let _ = child.kill();
    let _ = child.wait();
    // localhost's IPv4 address, so both curl http://localhost and http://127.0.0.1 reach it.
    assert!(
        banner.starts_with("conditional-recording serving POST http://127.0.0.1:"),
        "{banner:?}"
    );

    let output = run(&["serve", "--addr", "no-such-host.invalid:3000"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("cannot listen on no-such-host.invalid:3000"),
        "{}",
        describe(&output)
    );
}
