//! `publish` through the real binary: against moto for what SSM does (create, overwrite,
//! tiers, types and keys, the samples' comparison), and against a small stand-in speaking
//! SSM's JSON protocol for what moto cannot do (access denied, an SSM that fails, a version
//! that moves between the read and the write).

use crate::moto::{self, Moto, aws_env};
use crate::support::{self, TempDir, describe, path_str, text};

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aws_sdk_ssm::types::{ParameterStringFilter, ParameterTier, ParameterType};
use serde_json::{Value, json};

const NAME: &str = "/conditional-recording/rules";

/// The example document the template's stack starts with.
const IN_FORCE: &str = r#"{
  "enabled": true,
  "exclude_queues": ["WQ00000000000000000000000000000000"],
  "exclude_attributes": [{"key": "direction", "value": "outbound"}]
}
"#;

/// A valid document whose bytes a reformatting would change: written as they are.
const DRAFT: &str = "{\"enabled\":true,\n\t\"exclude_attributes\": [ {\"key\": \"ivr.consent\", \"value\": false} ] }";

/// The numbers in `examples/samples`: never in what `publish` prints.
const SAMPLE_NUMBERS: [&str; 5] = [
    "4155550134",
    "4155550161",
    "4155550172",
    "4155550187",
    "8005550199",
];

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn run(args: &[&str], env: &[(&'static str, String)]) -> Output {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    support::run_binary("publish", args, &env)
}

/// The one line a refused publish writes on stderr, after checking it is the only one and
/// that stdout (where the preview goes) does not say anything was published.
fn the_error(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{}", describe(output));
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{}", describe(output));
    assert!(
        !text(&output.stdout).contains("published"),
        "{}",
        describe(output)
    );
    lines[0].to_owned()
}

/// A parameter as SSM holds it.
#[derive(Debug, PartialEq)]
struct Stored {
    version: i64,
    kind: ParameterType,
    tier: Option<ParameterTier>,
    key_id: Option<String>,
    value: String,
}

fn stored(moto: &Moto, name: &str) -> Option<Stored> {
    let client = moto::client(&moto.endpoint());
    moto::runtime().block_on(async {
        let parameter = match client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
        {
            Ok(output) => output.parameter.expect("a parameter"),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_parameter_not_found()) =>
            {
                return None;
            }
            Err(e) => panic!("GetParameter {name}: {e:?}"),
        };
        let filter = ParameterStringFilter::builder()
            .key("Name")
            .option("Equals")
            .values(name)
            .build()
            .expect("a filter");
        let described = client
            .describe_parameters()
            .parameter_filters(filter)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeParameters {name}: {e:?}"));
        let metadata = described.parameters()[0].clone();
        Some(Stored {
            version: parameter.version,
            kind: parameter.r#type.expect("a type"),
            tier: metadata.tier,
            key_id: metadata.key_id,
            value: parameter.value.expect("a value"),
        })
    })
}

/// Creates `name` as SSM would from the console or the CLI.
fn create(moto: &Moto, name: &str, value: &str, secure_key: Option<&str>, tier: ParameterTier) {
    let client = moto::client(&moto.endpoint());
    moto::runtime().block_on(async {
        let kind = match secure_key {
            Some(_) => ParameterType::SecureString,
            None => ParameterType::String,
        };
        client
            .put_parameter()
            .name(name)
            .value(value)
            .r#type(kind)
            .set_key_id(secure_key.map(str::to_owned))
            .tier(tier)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutParameter {name}: {e:?}"));
    });
}

// ---------------------------------------------------------------------------------------
// Against moto

#[test]
fn a_new_parameter_is_a_standard_string_holding_the_file_byte_for_byte() {
    let moto = Moto::start();
    let env = aws_env(&moto.endpoint());
    let dir = TempDir::new();
    let file = dir.write("rules.json", DRAFT);
    let file = path_str(&file);

    let dry = run(&["publish", file, "--parameter", NAME, "--dry-run"], &env);
    assert_eq!(dry.status.code(), Some(0), "{}", describe(&dry));
    let stdout = text(&dry.stdout);
    assert!(
        stdout.contains(&format!(
            "{NAME}: does not exist yet; it will be a String parameter"
        )),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("dry run: nothing written"),
        "{stdout}"
    );
    assert_eq!(stored(&moto, NAME), None, "a dry run wrote");

    let first = run(&["publish", file, "--parameter", NAME], &env);
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    assert!(
        text(&first.stdout)
            .trim_end()
            .ends_with(&format!("published {NAME} version 1")),
        "{}",
        describe(&first)
    );
    assert_eq!(
        stored(&moto, NAME),
        Some(Stored {
            version: 1,
            kind: ParameterType::String,
            tier: Some(ParameterTier::Standard),
            key_id: None,
            value: DRAFT.to_owned(),
        })
    );

    // The next publish overwrites, as the next version.
    let second = run(
        &["publish", file, "--parameter", NAME, "--format", "json"],
        &env,
    );
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    let report: Value = serde_json::from_slice(&second.stdout).expect("one JSON object");
    assert_eq!(
        report,
        json!({
            "parameter": NAME, "file": file, "bytes": DRAFT.len(), "tier": "Standard",
            "type": "String", "previous_version": 1, "version": 2, "dry_run": false,
            "samples": null, "changes": null,
        })
    );
    assert_eq!(stored(&moto, NAME).map(|s| s.version), Some(2));
}

#[test]
fn an_overwrite_keeps_the_securestring_its_kms_key_and_its_advanced_tier() {
    let moto = Moto::start();
    let env = aws_env(&moto.endpoint());
    let key = "alias/conditional-recording-rules";
    create(&moto, NAME, IN_FORCE, Some(key), ParameterTier::Advanced);
    let dir = TempDir::new();
    let file = dir.write("rules.json", DRAFT);

    let output = run(&["publish", path_str(&file), "--parameter", NAME], &env);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        text(&output.stdout).contains(&format!(
            "{NAME}: version 1 in force (SecureString, Advanced tier)"
        )),
        "{}",
        describe(&output)
    );
    assert_eq!(
        stored(&moto, NAME),
        Some(Stored {
            version: 2,
            kind: ParameterType::SecureString,
            tier: Some(ParameterTier::Advanced),
            key_id: Some(key.to_owned()),
            value: DRAFT.to_owned(),
        })
    );

    // Asking for a lower tier is refused, before anything is written.
    let lower = run(
        &[
            "publish",
            path_str(&file),
            "--parameter",
            NAME,
            "--tier",
            "Standard",
        ],
        &env,
    );
    let error = the_error(&lower);
    assert!(
        error.contains("the parameter is Advanced and SSM cannot lower it to Standard"),
        "{error}"
    );
    assert_eq!(stored(&moto, NAME).map(|s| s.version), Some(2));
}

/// A valid document of exactly `bytes` bytes.
fn document_of(bytes: usize) -> String {
    let start = r#"{"enabled": true, "exclude_queues": ["WQ741c8116932ffaf119528b05acdb9c5c"]}"#;
    let mut text = start.to_owned();
    text.insert_str(start.len() - 1, &" ".repeat(bytes - start.len()));
    assert_eq!(text.len(), bytes);
    text
}

#[test]
fn a_document_over_its_tier_is_refused_with_the_tier_that_would_hold_it() {
    let moto = Moto::start();
    let env = aws_env(&moto.endpoint());
    create(&moto, NAME, IN_FORCE, None, ParameterTier::Standard);
    let dir = TempDir::new();
    let at_limit = dir.write("at-limit.json", &document_of(4096));
    let over = dir.write("over.json", &document_of(4097));
    let huge = dir.write("huge.json", &document_of(8193));

    let output = run(&["publish", path_str(&at_limit), "--parameter", NAME], &env);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(stored(&moto, NAME).map(|s| s.version), Some(2));

    // The parameter is Standard, and stays so unless asked.
    let error = the_error(&run(
        &["publish", path_str(&over), "--parameter", NAME],
        &env,
    ));
    assert_eq!(
        error,
        format!(
            "conditional-recording: {}: 4097 bytes is over the 4096 bytes a Standard parameter holds; publish it with --tier Advanced (up to 8192 bytes)",
            over.display()
        )
    );
    let error = the_error(&run(
        &[
            "publish",
            path_str(&huge),
            "--parameter",
            NAME,
            "--tier",
            "Advanced",
        ],
        &env,
    ));
    assert!(
        error.ends_with("8193 bytes is over the 8192 bytes a Advanced parameter holds; no parameter tier holds it (Advanced holds 8192 bytes): make the document smaller"),
        "{error}"
    );
    assert_eq!(stored(&moto, NAME).map(|s| s.version), Some(2));

    let raised = run(
        &[
            "publish",
            path_str(&over),
            "--parameter",
            NAME,
            "--tier",
            "Advanced",
        ],
        &env,
    );
    assert_eq!(raised.status.code(), Some(0), "{}", describe(&raised));
    let now = stored(&moto, NAME).expect("the parameter");
    assert_eq!(
        (now.version, now.tier, now.value.len()),
        (3, Some(ParameterTier::Advanced), 4097)
    );
}

#[test]
fn what_check_refuses_is_not_published() {
    let moto = Moto::start();
    let env = aws_env(&moto.endpoint());
    create(&moto, NAME, IN_FORCE, None, ParameterTier::Standard);
    let dir = TempDir::new();
    let bad = dir.write(
        "bad.json",
        r#"{"enabled": true, "exclude_attributes": [{"key": "a", "regex": "(unclosed"}]}"#,
    );
    let error = the_error(&run(
        &["publish", path_str(&bad), "--parameter", NAME],
        &env,
    ));
    assert_eq!(
        error,
        format!(
            "conditional-recording: {}: exclude_attributes[0].regex: unclosed group",
            bad.display()
        )
    );
    let missing = dir.path.join("missing.json");
    let error = the_error(&run(
        &["publish", path_str(&missing), "--parameter", NAME],
        &env,
    ));
    assert!(
        error.starts_with(&format!(
            "conditional-recording: {}: cannot read:",
            missing.display()
        )),
        "{error}"
    );
    assert_eq!(stored(&moto, NAME).map(|s| s.version), Some(1));
}

#[test]
fn samples_decided_differently_are_listed_and_counted() {
    let moto = Moto::start();
    let env = aws_env(&moto.endpoint());
    create(&moto, NAME, IN_FORCE, None, ParameterTier::Standard);
    let rules = repo_path("examples/rules.json");
    let samples = repo_path("examples/samples");
    let args = [
        "publish",
        path_str(&rules),
        "--parameter",
        NAME,
        "--dry-run",
        "--samples",
        path_str(&samples),
    ];

    let output = run(&args, &env);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    let lines: Vec<&str> = stdout.lines().skip(3).collect();
    assert_eq!(
        lines,
        [
            "declined-consent-call.json: record-from-start (no exclusion matched) -> do-not-record (excluded by attribute (exclude_attributes[1]))",
            "payments-queue-call.json: record-from-start (no exclusion matched) -> do-not-record (excluded by queue (exclude_queues[0]))",
            "2 of 5 samples decided differently",
            "dry run: nothing written",
        ],
        "{}",
        describe(&output)
    );

    let json_args: Vec<&str> = args.iter().copied().chain(["--format", "json"]).collect();
    let output = run(&json_args, &env);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let report: Value = serde_json::from_slice(&output.stdout).expect("one JSON object");
    assert_eq!(report["dry_run"], json!(true));
    assert_eq!(report["version"], Value::Null);
    assert_eq!(report["previous_version"], json!(1));
    assert_eq!(report["samples"], json!(5));
    assert_eq!(
        report["changes"][1],
        json!({
            "sample": "payments-queue-call.json",
            "old": {"decision": "record-from-start", "reason": "no_exclusion_matched", "rule": null},
            "new": {"decision": "do-not-record", "reason": "excluded_by_queue", "rule": "exclude_queues[0]"},
        })
    );
    assert_eq!(report["changes"].as_array().map(Vec::len), Some(2));

    // A parameter that does not exist yet: calls were left to the fail policy.
    let output = run(
        &[
            "publish",
            path_str(&rules),
            "--parameter",
            "/conditional-recording/new",
            "--dry-run",
            "--samples",
            path_str(&samples),
        ],
        &env,
    );
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("inbound-call.json: do-not-record (rules unavailable) -> record-from-start (no exclusion matched)\n1 of 5 samples decided differently"),
        "{}",
        describe(&output)
    );
    for number in SAMPLE_NUMBERS {
        assert!(!stdout.contains(number) && !text(&output.stderr).contains(number));
    }
    assert_eq!(stored(&moto, NAME).map(|s| s.version), Some(1));
    assert_eq!(stored(&moto, "/conditional-recording/new"), None);
}

#[test]
fn a_sample_that_cannot_be_read_is_named_and_nothing_is_written() {
    let moto = Moto::start();
    let env = aws_env(&moto.endpoint());
    create(&moto, NAME, IN_FORCE, None, ParameterTier::Standard);
    let rules = repo_path("examples/rules.json");
    let dir = TempDir::new();
    dir.write("good.json", r#"{"call_sid": "CA1"}"#);
    let bad = dir.write("bad.json", r#"{"from": "+14155550134", "#);
    let error = the_error(&run(
        &[
            "publish",
            path_str(&rules),
            "--parameter",
            NAME,
            "--samples",
            path_str(&dir.path),
        ],
        &env,
    ));
    assert_eq!(
        error,
        format!(
            "conditional-recording: {}: not JSON (ends early at line 1 column 25)",
            bad.display()
        )
    );
    let empty = TempDir::new();
    let error = the_error(&run(
        &[
            "publish",
            path_str(&rules),
            "--parameter",
            NAME,
            "--samples",
            path_str(&empty.path),
        ],
        &env,
    ));
    assert!(error.ends_with("no sample files (*.json) in it"), "{error}");
    assert_eq!(stored(&moto, NAME).map(|s| s.version), Some(1));
}

#[test]
fn check_warns_when_a_document_will_not_fit_a_standard_parameter() {
    let dir = TempDir::new();
    let fits = dir.write("fits.json", &document_of(4096));
    let over = dir.write("over.json", &document_of(4097));
    let output = run(&["check", path_str(&fits)], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        !text(&output.stderr).contains("Standard"),
        "{}",
        describe(&output)
    );

    let output = run(&["check", path_str(&over)], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains(&format!(
            "{}: warning: 4097 bytes will not fit a Standard SSM parameter (4096 bytes); publish it with --tier Advanced (up to 8192 bytes)",
            over.display()
        )),
        "{}",
        describe(&output)
    );
}

// ---------------------------------------------------------------------------------------
// Against a stand-in, for what moto cannot do

/// One answer of the stand-in: a status and a JSON body, or a connection closed unanswered.
enum Answer {
    Json(u16, Value),
    HangUp,
}

type Script = dyn Fn(&str, usize, &Value) -> Answer + Send + Sync;

/// SSM's JSON protocol on 127.0.0.1: each request is answered by the script, given its
/// operation, how many of that operation came before, and its body. Records the requests;
/// stops accepting when dropped.
struct StandIn {
    port: u16,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    stopped: Arc<AtomicBool>,
}

impl StandIn {
    fn start(script: impl Fn(&str, usize, &Value) -> Answer + Send + Sync + 'static) -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stopped = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        let (seen, stop) = (Arc::clone(&requests), Arc::clone(&stopped));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (seen, script) = (Arc::clone(&seen), Arc::clone(&script));
                std::thread::spawn(move || serve_connection(stream, &seen, &*script));
            }
        });
        StandIn {
            port,
            requests,
            stopped,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn operations(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(operation, _)| operation.clone())
            .collect()
    }

    fn request(&self, operation: &str) -> Option<Value> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(o, _)| o == operation)
            .map(|(_, body)| body.clone())
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Answers the requests of one connection in turn until the client closes it.
fn serve_connection(stream: TcpStream, seen: &Mutex<Vec<(String, Value)>>, script: &Script) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut operation = String::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("x-amz-target") {
                    operation = value.trim_start_matches("AmazonSSM.").to_owned();
                } else if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let before = {
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            let before = seen.iter().filter(|(o, _)| *o == operation).count();
            seen.push((operation.clone(), body.clone()));
            before
        };
        match script(&operation, before, &body) {
            Answer::Json(status, answer) => {
                let answer = answer.to_string();
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\n\r\n",
                    answer.len()
                );
                if writer.write_all(head.as_bytes()).is_err()
                    || writer.write_all(answer.as_bytes()).is_err()
                {
                    return;
                }
            }
            Answer::HangUp => {
                let _ = writer.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }
}

fn parameter(version: i64) -> Answer {
    Answer::Json(
        200,
        json!({"Parameter": {"Name": NAME, "Type": "String", "Value": IN_FORCE, "Version": version, "DataType": "text"}}),
    )
}

fn described(version: i64) -> Answer {
    Answer::Json(
        200,
        json!({"Parameters": [{"Name": NAME, "Type": "String", "Version": version, "Tier": "Standard", "DataType": "text"}]}),
    )
}

fn error(code: &str, message: &str) -> Answer {
    Answer::Json(400, json!({"__type": code, "message": message}))
}

const DENIED: &str =
    "User: arn:aws:iam::123456789012:user/editor is not authorized to perform this operation";

/// Runs `publish` of examples/rules.json against the stand-in.
fn publish_against(stand_in: &StandIn) -> Output {
    let rules = repo_path("examples/rules.json");
    run(
        &["publish", path_str(&rules), "--parameter", NAME],
        &aws_env(&stand_in.endpoint()),
    )
}

#[test]
fn access_denied_is_said_in_one_line_and_nothing_is_written() {
    let reads_denied = StandIn::start(|_, _, _| error("AccessDeniedException", DENIED));
    let error_line = the_error(&publish_against(&reads_denied));
    assert_eq!(
        error_line,
        format!(
            "conditional-recording: cannot read {NAME}: SSM answered AccessDeniedException: {DENIED}"
        )
    );
    assert_eq!(reads_denied.operations(), ["GetParameter"]);

    let writes_denied = StandIn::start(|operation, _, _| match operation {
        "GetParameter" => parameter(3),
        "DescribeParameters" => described(3),
        _ => error("AccessDeniedException", DENIED),
    });
    let error_line = the_error(&publish_against(&writes_denied));
    assert_eq!(
        error_line,
        format!(
            "conditional-recording: cannot write {NAME}: SSM answered AccessDeniedException: {DENIED}; nothing was written"
        )
    );
    assert_eq!(
        writes_denied.operations(),
        [
            "GetParameter",
            "DescribeParameters",
            "GetParameter",
            "PutParameter"
        ]
    );
}

#[test]
fn an_ssm_that_is_down_or_failing_is_said_in_one_line() {
    let port = support::free_port();
    let env = aws_env(&format!("http://127.0.0.1:{port}"));
    let rules = repo_path("examples/rules.json");
    let error_line = the_error(&run(
        &["publish", path_str(&rules), "--parameter", NAME],
        &env,
    ));
    assert!(
        error_line.starts_with(&format!(
            "conditional-recording: cannot read {NAME}: dispatch failure"
        )),
        "{error_line}"
    );
    assert!(error_line.contains("onnection refused"), "{error_line}");

    let failing = StandIn::start(|_, _, _| {
        Answer::Json(
            500,
            json!({"__type": "InternalServerError", "message": "try again"}),
        )
    });
    let error_line = the_error(&publish_against(&failing));
    assert_eq!(
        error_line,
        format!(
            "conditional-recording: cannot read {NAME}: SSM answered InternalServerError: try again"
        )
    );
    assert!(
        !failing.operations().contains(&"PutParameter".to_owned()),
        "{:?}",
        failing.operations()
    );
}

#[test]
fn a_version_that_moves_before_the_write_stops_the_publish() {
    // Version 3 is read; another publish makes it 4 before the write.
    let moved = StandIn::start(|operation, before, _| match (operation, before) {
        ("GetParameter", 0) => parameter(3),
        ("GetParameter", _) => parameter(4),
        ("DescribeParameters", _) => described(3),
        _ => error("InternalServerError", "PutParameter was not expected"),
    });
    let error_line = the_error(&publish_against(&moved));
    assert_eq!(
        error_line,
        format!(
            "conditional-recording: concurrent publish: {NAME} moved from version 3 to version 4 while this publish was under way; nothing was written: publish again to review the change on top of the new version"
        )
    );
    assert_eq!(
        moved.operations(),
        ["GetParameter", "DescribeParameters", "GetParameter"]
    );
}

#[test]
fn a_write_overtaken_by_another_is_reported_and_not_retried() {
    // The re-read still says 3, but another version lands just before ours: SSM answers 5.
    let overtaken = StandIn::start(|operation, _, _| match operation {
        "GetParameter" => parameter(3),
        "DescribeParameters" => described(3),
        _ => Answer::Json(200, json!({"Version": 5, "Tier": "Standard"})),
    });
    let error_line = the_error(&publish_against(&overtaken));
    assert!(
        error_line.starts_with(&format!(
            "conditional-recording: concurrent publish: this document was written as version 5 of {NAME}, but version 4 was expected"
        )),
        "{error_line}"
    );
    let put = overtaken.request("PutParameter").expect("a PutParameter");
    assert_eq!(put["Overwrite"], json!(true));
    assert_eq!(put["Type"], json!("String"));
    assert_eq!(put["Tier"], json!("Standard"));
    let written = std::fs::read_to_string(repo_path("examples/rules.json")).expect("the file");
    assert_eq!(put["Value"], json!(written));

    // A parameter someone else creates first: Overwrite=false makes SSM refuse ours.
    let created = StandIn::start(|operation, _, _| match operation {
        "GetParameter" => error("ParameterNotFound", ""),
        _ => error("ParameterAlreadyExists", "The parameter already exists."),
    });
    let error_line = the_error(&publish_against(&created));
    assert!(
        error_line.starts_with(&format!(
            "conditional-recording: concurrent publish: {NAME} was written by someone else while this publish was under way"
        )),
        "{error_line}"
    );
    let put = created.request("PutParameter").expect("a PutParameter");
    assert_eq!(put["Overwrite"], json!(false));

    // A PutParameter without an answer is not sent again: it may have written.
    let unanswered = StandIn::start(|operation, _, _| match operation {
        "GetParameter" => parameter(3),
        "DescribeParameters" => described(3),
        _ => Answer::HangUp,
    });
    let error_line = the_error(&publish_against(&unanswered));
    assert!(
        error_line.contains("got no answer")
            && error_line.ends_with("version 3 is still in force: read it before publishing again"),
        "{error_line}"
    );
    let puts = unanswered
        .operations()
        .iter()
        .filter(|o| *o == "PutParameter")
        .count();
    assert_eq!(puts, 1, "{:?}", unanswered.operations());
}
