//! The example events in `events/` through the real Lambda runtime loop. `cargo lambda watch
//! --only-lambda-apis` emulates the Lambda Runtime API on 127.0.0.1; the built binary runs in
//! Lambda mode against it, with `events/env.json`'s variables and `events/rules.json`; and
//! `cargo lambda invoke --data-file` sends each event and prints the API Gateway response.

use crate::standin::{Of, StandIn};
use crate::support;
use crate::support::{TOKEN, free_port};

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use conditional_recording::refusal_log::{LINES_PER_WINDOW, WINDOW};

use base64::Engine;
use serde_json::{Value, json};
use support::{CALLER_DATA, Logs, TempDir};

/// The documented test auth token the events are signed with.
/// The longest any start, invocation or exit may take.
const WAIT: Duration = Duration::from_secs(30);

const RECORD: &str = r#"{"instruction":"conference","conference_record":"record-from-start"}"#;
const DO_NOT_RECORD: &str = r#"{"instruction":"conference","conference_record":"do-not-record"}"#;

/// What an example event gets back.
struct Expected {
    event: &'static str,
    status: u16,
    /// The answer's JSON body.
    body: &'static str,
    /// The reason its decision logs, when it gets a decision.
    reason: Option<&'static str>,
}

impl Expected {
    const fn decision(event: &'static str, body: &'static str, reason: &'static str) -> Expected {
        Expected {
            event,
            status: 200,
            body,
            reason: Some(reason),
        }
    }

    /// An event delivery to `POST /events`: no decision, an enforcement summary.
    const fn events(event: &'static str, status: u16, body: &'static str) -> Expected {
        Expected::error(event, status, body)
    }

    const fn error(event: &'static str, status: u16, body: &'static str) -> Expected {
        Expected {
            event,
            status,
            body,
            reason: None,
        }
    }
}

/// Every example event and its answer.
const EXPECTED: &[Expected] = &[
    Expected::decision("http-inbound-recorded.json", RECORD, "no_exclusion_matched"),
    // The Flex dialer accepts its own calls: `{}`, and the decision is logged.
    Expected::decision("http-dialer-call.json", "{}", "excluded_by_attribute"),
    Expected::decision("http-sms-outbound.json", "{}", "not_a_call"),
    Expected::decision(
        "http-excluded-queue.json",
        DO_NOT_RECORD,
        "excluded_by_queue",
    ),
    Expected::decision("http-chat-task.json", "{}", "not_a_call"),
    Expected::error(
        "http-bad-signature.json",
        403,
        r#"{"error":"X-Twilio-Signature is not valid for this URL and body"}"#,
    ),
    Expected::error(
        "http-malformed-body.json",
        400,
        r#"{"error":"TaskSid is missing"}"#,
    ),
    Expected::decision("rest-inbound-recorded.json", RECORD, "no_exclusion_matched"),
    // `POST /events`, against the stand-in's TaskRouter and Voice API (`seed_standin`).
    Expected::events("http-events-workspace.json", 200, ENFORCED_ONE),
    Expected::events("http-events-stream.json", 200, ENFORCED_TWO),
    Expected::events("http-events-single.json", 200, ENFORCED_ONE),
    Expected::events(
        "http-events-tampered.json",
        403,
        r#"{"error":"the body's SHA-256 is not the URL's bodySHA256"}"#,
    ),
];

const ENFORCED_ONE: &str = r#"{"enforced":1,"ignored":0,"unreadable":0,"unfinished":0}"#;
const ENFORCED_TWO: &str = r#"{"enforced":2,"ignored":0,"unreadable":0,"unfinished":0}"#;

/// Files in `events/` that are not API Gateway events (`sweep.json` is the schedule's).
const NOT_EVENTS: &[&str] = &["env.json", "rules.json", "sweep.json"];

#[test]
fn every_example_event_gets_its_answer_through_the_runtime_loop() {
    let mut listed: Vec<&str> = EXPECTED.iter().map(|expected| expected.event).collect();
    listed.sort_unstable();
    assert_eq!(
        example_events(),
        listed,
        "every event in events/ needs an expected answer here, and every answer an event"
    );

    let standin = StandIn::start();
    seed_standin(&standin);
    let base = standin.base_url();
    let mut runtime = Runtime::start_with(&[
        ("TWILIO_API_BASE_URL", &base),
        ("TWILIO_VOICE_API_BASE_URL", &base),
    ]);
    let mut decided = Vec::new();
    for expected in EXPECTED {
        let name = expected.event;
        let event = events_dir().join(name);
        let calls = standin.requests().len();
        let answer = runtime.answer(&event);
        if expected.status == 403 {
            assert_eq!(standin.requests().len(), calls, "{name} made a REST call");
        }
        let body: Value = serde_json::from_str(expected.body).expect("an expected body is JSON");
        assert_eq!(
            (answer.status, &answer.body),
            (expected.status, &body),
            "{name}"
        );
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/json"),
            "{name}"
        );
        if let Some(reason) = expected.reason {
            decided.push((name, task_sid(&read_json(&event)), reason));
        }
    }
    let logs = runtime.stop();
    assert_clean(&logs);
    for (name, task_sid, reason) in decided {
        assert_eq!(
            logs.decision_for(&task_sid)["reason"],
            reason,
            "{name}\n{}",
            logs.text()
        );
    }
    assert_enforced(&standin, &logs);
}

// ---------------------------------------------------------------------------------------
// What the event deliveries find and leave on the stand-in

const ACCOUNT: &str = "AC00000000000000000000000000000000";
const WORKSPACE: &str = "WS00000000000000000000000000000000";
/// The excluded-queue call of `http-events-workspace.json`: its conference, named after its
/// task, and the customer's leg are recorded.
const EXCLUDED_TASK: &str = "WT88888888888888888888888888888888";
const EXCLUDED_CONFERENCE: &str = "CF88888888888888888888888888888888";
const EXCLUDED_RECORDINGS: [&str; 2] = [
    "RE88888888888888888888888888888888",
    "RE88888888888888888888888888888800",
];
/// The dialer's call of `http-events-stream.json`: its conference is recorded.
const DIALER_TASK: &str = "WT66666666666666666666666666666666";
const DIALER_CONFERENCE: &str = "CF66666666666666666666666666666666";
const DIALER_RECORDING: &str = "RE66666666666666666666666666666666";
/// The recorded inbound call of `http-events-stream.json`, completed.
const RECORDED_TASK: &str = "WT55555555555555555555555555555555";
const RECORDED_CONFERENCE: &str = "CF55555555555555555555555555555555";
const RECORDED_RECORDING: &str = "RE55555555555555555555555555555555";
/// The excluded-queue call of `http-events-single.json` (one CloudEvent, no batch): its
/// conference is recorded.
const SINGLE_TASK: &str = "WT22222222222222222222222222222222";
const SINGLE_CONFERENCE: &str = "CF22222222222222222222222222222222";
const SINGLE_RECORDING: &str = "RE22222222222222222222222222222222";

/// The tasks, conferences and recordings the example deliveries are about, as TaskRouter and
/// the Voice API would hold them; the tasks' attributes are the events' own.
fn seed_standin(standin: &StandIn) {
    standin.add_credentials(ACCOUNT, TOKEN);
    for (event, index) in [
        ("http-events-workspace.json", None),
        ("http-events-stream.json", Some(0)),
        ("http-events-stream.json", Some(1)),
        ("http-events-single.json", Some(0)),
    ] {
        let (task, attributes) = event_task(&read_json(&events_dir().join(event)), index);
        standin.add_task(WORKSPACE, &task, &attributes);
    }
    let customer = "CA88888888888888888888888888888888";
    for (conference, task, recording) in [
        (EXCLUDED_CONFERENCE, EXCLUDED_TASK, EXCLUDED_RECORDINGS[0]),
        (DIALER_CONFERENCE, DIALER_TASK, DIALER_RECORDING),
        (RECORDED_CONFERENCE, RECORDED_TASK, RECORDED_RECORDING),
        (SINGLE_CONFERENCE, SINGLE_TASK, SINGLE_RECORDING),
    ] {
        standin.add_conference(ACCOUNT, conference, task, "in-progress");
        let of = Of::Conference(conference.to_owned());
        standin.add_recording(ACCOUNT, of, recording, "in-progress");
    }
    let leg = EXCLUDED_RECORDINGS[1];
    standin.add_recording(ACCOUNT, Of::Call(customer.to_owned()), leg, "completed");
}

/// An event's task and its attributes: the form's, or the `index`th CloudEvent's (of a
/// batch, or the one CloudEvent of a delivery without batching).
fn event_task(event: &Value, index: Option<usize>) -> (String, String) {
    let body = event["body"].as_str().expect("a body");
    let field = |value: &Value| value.as_str().expect("text").to_owned();
    match index {
        None => {
            let body = base64::engine::general_purpose::STANDARD
                .decode(body)
                .expect("a base64 form");
            let form: std::collections::HashMap<String, String> =
                form_urlencoded::parse(&body).into_owned().collect();
            (form["TaskSid"].clone(), form["TaskAttributes"].clone())
        }
        Some(index) => {
            let delivered: Value = serde_json::from_str(body).expect("JSON");
            let event = if delivered.is_array() {
                &delivered[index]
            } else {
                &delivered
            };
            let payload = &event["data"]["payload"];
            (
                field(&payload["task_sid"]),
                field(&payload["task_attributes"]),
            )
        }
    }
}

/// The excluded calls lost every recording and the recorded one kept its own; each task
/// carries its first decision; one `enforcement` line per action.
fn assert_enforced(standin: &StandIn, logs: &Logs) {
    let excluded = [DIALER_RECORDING, SINGLE_RECORDING];
    for recording in EXCLUDED_RECORDINGS.into_iter().chain(excluded) {
        assert_eq!(standin.recording_status(recording), None, "{recording}");
    }
    assert_eq!(
        standin.recording_status(RECORDED_RECORDING).as_deref(),
        Some("in-progress"),
        "the recorded call's recording was touched"
    );
    for (task, record) in [
        (EXCLUDED_TASK, false),
        (DIALER_TASK, false),
        (RECORDED_TASK, true),
        (SINGLE_TASK, false),
    ] {
        let attributes = standin.task_attributes(WORKSPACE, task).expect("the task");
        assert_eq!(
            attributes["conditional_recording"]["record"], record,
            "{task}: {attributes}"
        );
    }
    let enforcement: Vec<Value> = logs.with_message("enforcement");
    let actions = |task: &str| -> Vec<String> {
        enforcement
            .iter()
            .filter(|line| line["task_sid"] == task)
            .filter_map(|line| line["action"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(actions(EXCLUDED_TASK), ["stopped", "deleted", "deleted"]);
    assert_eq!(actions(DIALER_TASK), ["stopped", "deleted"]);
    assert_eq!(actions(SINGLE_TASK), ["stopped", "deleted"]);
    assert_eq!(actions(RECORDED_TASK), [] as [&str; 0], "{enforcement:?}");
}

#[test]
fn lambda_mode_survives_foreign_events_and_broken_base64() {
    let dir = TempDir::new();
    let (sqs, s3) = foreign_events();
    let sqs = dir.write("sqs.json", &sqs.to_string());
    let s3 = dir.write("s3.json", &s3.to_string());
    let inbound = events_dir().join("http-inbound-recorded.json");
    let mut broken = read_json(&inbound);
    broken["body"] = json!("QWNjb3VudFNpZD1BQzAw!not*base64");
    let broken = dir.write("broken-base64.json", &broken.to_string());

    let mut runtime = Runtime::start();
    for foreign in [&sqs, &s3] {
        // The function reports the failure to the Runtime API, which answers the invoker
        // with the error; the runtime loop goes on to the next event.
        let invocation = runtime.invoke(foreign);
        assert!(
            !invocation.succeeded,
            "a foreign event got an answer: {}",
            invocation.stdout
        );
        assert!(
            invocation.stderr.contains("NotAnApiGatewayEvent"),
            "the invoker did not get the function's error:\n{}",
            invocation.stderr
        );
        runtime.assert_running();
    }

    let answer = runtime.answer(&broken);
    assert_eq!(
        (answer.status, answer.body),
        (
            400,
            json!({"error": "the event's body is not valid base64"})
        )
    );
    runtime.assert_running();

    let answer = runtime.answer(&inbound);
    assert_eq!(
        (answer.status, answer.body),
        (200, serde_json::from_str::<Value>(RECORD).unwrap())
    );
    assert_clean(&runtime.stop());
}

#[test]
fn example_rules_are_the_template_default_and_the_embedded_example() {
    let rules = read_json(&events_dir().join("rules.json"));
    let embedded: Value = serde_json::from_str(conditional_recording::rules::EXAMPLE_DOCUMENT)
        .expect("the embedded example is JSON");
    assert_eq!(rules, embedded, "events/rules.json");
    let template = std::fs::read_to_string(repo().join("template.yaml")).expect("template.yaml");
    let default = template
        .lines()
        .find_map(|line| line.trim().strip_prefix("Value: '"))
        .and_then(|value| value.strip_suffix('\''))
        .expect("the rules parameter's Value in template.yaml");
    let default: Value = serde_json::from_str(default).expect("the template's default is JSON");
    assert_eq!(rules, default, "template.yaml's default rules document");
}

#[test]
fn lambda_lines_carry_the_invocations_request_id_after_a_started_line() {
    let mut runtime = Runtime::start();
    let inbound = events_dir().join("http-inbound-recorded.json");
    assert_eq!(runtime.answer(&inbound).status, 200);
    let forged = events_dir().join("http-bad-signature.json");
    assert_eq!(runtime.answer(&forged).status, 403);
    let logs = runtime.stop();
    assert_clean(&logs);
    let rules = events_dir().join("rules.json");
    crate::log_lines::assert_started(
        &logs,
        &[
            ("answer_mode", "conference"),
            ("enforcement", "on"),
            ("rules_source", &format!("file {}", rules.display())),
            ("signatures", "enforce"),
            ("metrics_namespace", "ConditionalRecording"),
        ],
    );

    let lines = logs.json();
    let started = lines
        .iter()
        .position(|line| line["message"] == "started")
        .expect("a started line");
    assert!(
        lines[started].get("requestId").is_none(),
        "started is no invocation's"
    );
    // Everything after it was written while an invocation was handled.
    let handled = &lines[started + 1..];
    for line in handled {
        assert!(
            line["requestId"].as_str().is_some_and(|id| !id.is_empty()),
            "no requestId: {line}"
        );
        assert!(line.get("request_id").is_none(), "{line}");
    }
    let request_id = |message: &str| {
        let line = handled
            .iter()
            .find(|line| line["message"] == message)
            .unwrap_or_else(|| panic!("no {message} line\n{}", logs.text()));
        line["requestId"].as_str().unwrap_or_default().to_owned()
    };
    let decided = request_id("decision");
    let refused = request_id("callback rejected");
    assert_ne!(decided, refused, "two invocations, two request IDs");
    // The refusal's metric line is the refused invocation's.
    let counted = handled
        .iter()
        .find(|line| line["SignatureRejections"] == 1)
        .expect("a SignatureRejections line");
    assert_eq!(counted["requestId"], refused.as_str());
}

#[test]
fn lambdas_log_level_drops_log_lines_but_never_decisions_or_metrics() {
    let mut runtime = Runtime::start_with(&[("AWS_LAMBDA_LOG_LEVEL", "ERROR")]);
    let inbound = events_dir().join("http-inbound-recorded.json");
    assert_eq!(runtime.answer(&inbound).status, 200);
    let forged = events_dir().join("http-bad-signature.json");
    assert_eq!(runtime.answer(&forged).status, 403);
    let logs = runtime.stop();
    assert_clean(&logs);
    let lines = logs.json();
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|line| line["message"].as_str())
        .collect();
    assert_eq!(
        messages,
        ["decision"],
        "only the decision has a message at ERROR"
    );
    let decision = logs.decision_for(&task_sid(&read_json(&inbound)));
    assert!(decision["requestId"].is_string(), "{decision}");
    assert!(
        lines.iter().any(|line| line["SignatureRejections"] == 1),
        "the refusal is still counted\n{}",
        logs.text()
    );
}

#[test]
fn a_refusal_flood_costs_a_few_lines_and_the_next_invocation_writes_what_it_left() {
    let mut runtime = Runtime::start();
    let forged = std::fs::read(events_dir().join("http-bad-signature.json")).expect("the event");
    let refusals = 1_500;
    let began = Instant::now();
    for _ in 0..refusals {
        let answer = runtime.invoke_api(&forged);
        assert_eq!(answer["statusCode"], 403, "{answer}");
    }
    let elapsed = began.elapsed();
    // A window later, a signed callback: the container's next invocation writes the counts
    // the flood's last window held back.
    std::thread::sleep(WINDOW + Duration::from_millis(100));
    let inbound = events_dir().join("http-inbound-recorded.json");
    assert_eq!(runtime.answer(&inbound).status, 200);
    let logs = runtime.stop();
    assert_clean(&logs);

    let lines = logs.json();
    let metric_lines: Vec<&Value> = lines
        .iter()
        .filter(|line| line.get("SignatureRejections").is_some())
        .collect();
    let counted: u64 = metric_lines
        .iter()
        .filter_map(|line| line["SignatureRejections"].as_u64())
        .sum();
    assert_eq!(counted, refusals, "every refusal counted\n{}", logs.text());
    assert!(metric_lines.iter().all(|line| line["Cause"] == "invalid"));
    let refusal_lines = lines
        .iter()
        .filter(|line| {
            line["message"]
                .as_str()
                .is_some_and(|m| m == "callback rejected" || m.starts_with("signature does not"))
        })
        .count();
    // Each admission writes a refusal's two lines and its metric line, or the metric line
    // alone; the flood meets its whole seconds plus two windows, the signed callback one more.
    let windows = elapsed.as_secs() / WINDOW.as_secs() + 3;
    let bound = 3 * u64::from(LINES_PER_WINDOW) * windows;
    let written = refusal_lines + metric_lines.len();
    eprintln!("{refusals} refusals in {elapsed:?}: {written} lines");
    assert!(
        written as u64 <= bound,
        "{written} lines for {refusals} refusals in {elapsed:?}; at most {bound}"
    );
    // Every metric line is an invocation's.
    for line in &metric_lines {
        assert!(line["requestId"].as_str().is_some_and(|id| !id.is_empty()));
    }
}

/// Events from other services: an SQS batch and an S3 notification.
fn foreign_events() -> (Value, Value) {
    let sqs = json!({"Records": [{
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "body": "{\"TaskSid\":\"WT55555555555555555555555555555555\"}",
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1764000000000",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1764000000001"
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:my-queue",
        "awsRegion": "us-east-1"
    }]});
    let s3 = json!({"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2025-11-24T16:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.17"},
        "responseElements": {
            "x-amz-request-id": "EXAMPLE123456789",
            "x-amz-id-2": "EXAMPLE123/5678abcdefghijklambdaisawesome/mnopqrstuvwxyzABCDEFGH"
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "testConfigRule",
            "bucket": {
                "name": "example-bucket",
                "ownerIdentity": {"principalId": "EXAMPLE"},
                "arn": "arn:aws:s3:::example-bucket"
            },
            "object": {
                "key": "rules.json",
                "size": 1024,
                "eTag": "0123456789abcdef0123456789abcdef",
                "sequencer": "0A1B2C3D4E5F678901"
            }
        }
    }]});
    (sqs, s3)
}

// ---------------------------------------------------------------------------------------
// The runtime loop: the Runtime API emulator and the function

/// `cargo lambda watch --only-lambda-apis` on 127.0.0.1 and the binary in Lambda mode polling
/// it. Both are killed and reaped on drop.
struct Runtime {
    port: u16,
    emulator: Process,
    function: Process,
}

impl Runtime {
    fn start() -> Runtime {
        Runtime::start_with(&[])
    }

    /// The function with `extra` variables on top of `events/env.json`'s.
    fn start_with(extra: &[(&str, &str)]) -> Runtime {
        let (emulator, port) = start_emulator();
        let api = format!("http://127.0.0.1:{port}/.rt");
        let rules = events_dir().join("rules.json");
        let rules = rules.to_str().expect("a UTF-8 path");
        let mut env = vec![
            // What `cargo lambda watch --only-lambda-apis` says to set.
            ("AWS_LAMBDA_RUNTIME_API".to_owned(), api),
            ("AWS_LAMBDA_FUNCTION_NAME".to_owned(), "_".to_owned()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".to_owned(),
                "128".to_owned(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION".to_owned(), "1".to_owned()),
            ("RULES_FILE".to_owned(), rules.to_owned()),
        ];
        env.extend(sam_env());
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut command = support::command(&env);
        command.stdout(Stdio::null());
        let function = Process::spawn("the function", command);
        Runtime {
            port,
            emulator,
            function,
        }
    }

    /// Sends one event with `cargo lambda invoke`.
    fn invoke(&mut self, event: &Path) -> Invocation {
        self.assert_running();
        let mut command = Command::new(cargo_lambda());
        command
            .current_dir(repo())
            .args(["lambda", "invoke", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &self.port.to_string()])
            .arg("--data-file")
            .arg(event)
            .args(["--output-format", "json", "--color", "never"])
            .stdout(Stdio::piped());
        let invoke = Process::spawn("cargo lambda invoke", command);
        match invoke.finish() {
            Ok(finished) => Invocation {
                succeeded: finished.status.success(),
                stdout: finished.stdout,
                stderr: finished.stderr,
            },
            Err(output) => self.fail(&format!(
                "no answer to {} within {WAIT:?}\n{output}",
                event.display()
            )),
        }
    }

    /// Sends one event straight to the emulator's Invoke API, as `cargo lambda invoke` does
    /// without a process per event, and returns the function's answer.
    fn invoke_api(&mut self, event: &[u8]) -> Value {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut connection = support::Connection::open(addr);
        connection.send(&support::request(
            "POST",
            "/2015-03-31/functions/_/invocations",
            &[("Content-Type", "application/json")],
            event,
        ));
        let response = connection.response();
        if response.status != 200 {
            let body = String::from_utf8_lossy(&response.body).into_owned();
            self.fail(&format!(
                "the Invoke API answered {}: {body}",
                response.status
            ));
        }
        response.json()
    }

    /// Sends one event that must be answered, and returns the API Gateway response.
    fn answer(&mut self, event: &Path) -> Answer {
        let invocation = self.invoke(event);
        if !invocation.succeeded {
            self.fail(&format!(
                "{} was not answered:\n{}",
                event.display(),
                invocation.stderr
            ));
        }
        let response: Value = serde_json::from_str(&invocation.stdout)
            .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {}", invocation.stdout));
        let status = response["statusCode"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok());
        let body = response["body"]
            .as_str()
            .and_then(|body| serde_json::from_str(body).ok());
        let (Some(status), Some(body)) = (status, body) else {
            panic!("not an API Gateway response with a JSON body: {response}");
        };
        // An HTTP API answer carries `headers`, a REST API answer `multiValueHeaders`.
        let content_type = response["headers"]["content-type"]
            .as_str()
            .or_else(|| response["multiValueHeaders"]["content-type"][0].as_str())
            .map(str::to_owned);
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// Fails the test if the function has exited.
    fn assert_running(&mut self) {
        if let Some(status) = self.function.exited() {
            self.fail(&format!("the function exited ({status})"));
        }
    }

    /// Stops both processes and returns the function's stderr.
    fn stop(self) -> Logs {
        let Runtime {
            emulator,
            mut function,
            ..
        } = self;
        let still_running = function.exited().is_none();
        let (_, stderr) = function.kill();
        drop(emulator);
        let logs = Logs {
            lines: stderr.lines().map(str::to_owned).collect(),
        };
        assert!(
            still_running,
            "the function exited before the test stopped it\n{}",
            logs.text()
        );
        logs
    }

    /// Kills both processes and panics with what they wrote.
    fn fail(&mut self, why: &str) -> ! {
        let (_, function) = self.function.kill();
        let (out, err) = self.emulator.kill();
        panic!("{why}\n--- the function ---\n{function}\n--- cargo lambda watch ---\n{out}{err}");
    }
}

/// Starts the emulator on a free port, trying again if another process takes the port first.
fn start_emulator() -> (Process, u16) {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let mut command = Command::new(cargo_lambda());
        // It reads the package's metadata (no build), so it runs in the package.
        command
            .current_dir(repo())
            .args(["lambda", "watch", "--only-lambda-apis"])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .stdout(Stdio::piped());
        let mut emulator = Process::spawn("cargo lambda watch", command);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = emulator.exited() {
                let (out, err) = emulator.kill();
                last = format!("cargo lambda watch exited ({status}):\n{out}{err}");
                break;
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return (emulator, port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if emulator.exited().is_none() {
            let (out, err) = emulator.kill();
            panic!("cargo lambda watch did not listen on {addr} within {WAIT:?}\n{out}{err}");
        }
    }
    panic!("cargo lambda watch did not start\n{last}");
}

/// cargo-lambda from the test virtualenv, where `make test` installs it.
fn cargo_lambda() -> PathBuf {
    let path = repo().join(".venv/bin/cargo-lambda");
    assert!(
        path.is_file(),
        "{} is missing: run `make test`, which installs cargo-lambda from tests/requirements.txt",
        path.display()
    );
    path
}

struct Invocation {
    succeeded: bool,
    stdout: String,
    stderr: String,
}

struct Answer {
    status: u16,
    content_type: Option<String>,
    body: Value,
}

// ---------------------------------------------------------------------------------------
// Child processes

/// A child process whose output is read on threads; killed and reaped on drop.
struct Process {
    name: &'static str,
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

struct Finished {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Process {
    /// Spawns `command` with stdin closed and stderr (and stdout, unless set) captured.
    fn spawn(name: &'static str, mut command: Command) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().map(read_to_end::<ChildStdout>);
        let stderr = child.stderr.take().map(read_to_end::<ChildStderr>);
        Process {
            name,
            child,
            stdout,
            stderr,
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits up to [`WAIT`] for the process to exit. When it does not, kills it and returns
    /// what it wrote as the error.
    fn finish(mut self) -> Result<Finished, String> {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                let (stdout, stderr) = self.kill();
                return Ok(Finished {
                    status,
                    stdout,
                    stderr,
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (stdout, stderr) = self.kill();
        Err(format!("--- {} (killed) ---\n{stdout}{stderr}", self.name))
    }

    /// Kills the process (if it still runs), reaps it and returns its stdout and stderr.
    fn kill(&mut self) -> (String, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let join = |handle: Option<JoinHandle<String>>| {
            handle.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        (join(self.stdout.take()), join(self.stderr.take()))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_to_end<R: Read + Send + 'static>(mut pipe: R) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

// ---------------------------------------------------------------------------------------
// The examples

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn events_dir() -> PathBuf {
    repo().join("events")
}

/// The names of the event files in `events/`, sorted.
fn example_events() -> Vec<String> {
    let entries = std::fs::read_dir(events_dir())
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", events_dir().display()));
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json") && !NOT_EVENTS.contains(&name.as_str()))
        .collect();
    names.sort_unstable();
    names
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The variables `events/env.json` gives the template's function for `sam local invoke`.
fn sam_env() -> Vec<(String, String)> {
    let env = read_json(&events_dir().join("env.json"));
    let variables = env["DecisionFunction"]
        .as_object()
        .expect("env.json has DecisionFunction's variables");
    variables
        .iter()
        .map(|(name, value)| {
            let value = value
                .as_str()
                .unwrap_or_else(|| panic!("{name} is not a string"));
            (name.clone(), value.to_owned())
        })
        .collect()
}

/// The TaskSid of an event's form body.
fn task_sid(event: &Value) -> String {
    let body = event["body"].as_str().expect("an event with a body");
    let body = if event["isBase64Encoded"] == true {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("a base64 body")
    } else {
        body.as_bytes().to_vec()
    };
    form_urlencoded::parse(&body)
        .find(|(name, _)| name == "TaskSid")
        .map(|(_, value)| value.into_owned())
        .expect("a TaskSid")
}

/// No panic, no token and no caller data in the function's stderr.
fn assert_clean(logs: &Logs) {
    let text = logs.text();
    assert!(!text.contains("panicked"), "the function panicked:\n{text}");
    assert!(!text.contains(TOKEN), "the auth token was logged:\n{text}");
    for data in CALLER_DATA {
        assert!(!text.contains(data), "{data:?} was logged:\n{text}");
    }
    // Every line is JSON: nothing else (such as a panic message) reached stderr.
    logs.json();
}

/// `events/sweep.json`, what the schedule sends, through the runtime loop: the function runs
/// `reconcile --fix` over the last 48 hours against the ledger (moto's DynamoDB) and the
/// Voice API (the stand-in), deletes the do-not-record call's recording, answers the counts,
/// and writes the `reconcile` line with its metrics.
#[test]
fn the_schedules_sweep_event_reconciles_through_the_runtime_loop() {
    use conditional_recording::ledger::{DecidedBy, FirstDecision, unix_now};
    use conditional_recording::ports::Ledger;
    use conditional_recording::sources::ledger_table::LedgerTable;

    let account = "AC0000000000000000000000000000a5e1";
    let sid = |prefix: &str, n: u32| format!("{prefix}{n:032x}");
    let moto = crate::moto::Moto::start();
    moto.create_ledger_table("cr-ledger");
    let ledger = LedgerTable::new(&crate::moto::sdk_config(&moto.endpoint()), "cr-ledger", 400);
    let standin = StandIn::start();
    standin.add_credentials(account, TOKEN);
    let made = std::time::SystemTime::now() - Duration::from_secs(3_600);
    // Call 1 was not to be recorded, call 2 was; call 3 predates the ledger.
    crate::moto::runtime().block_on(async {
        for (n, record) in [(1, false), (2, true)] {
            let first = FirstDecision {
                task_sid: sid("WT", n),
                record,
                reason: "decided at assignment".into(),
                rule: None,
                rules_version: None,
                decided_at: unix_now() - 3_600,
                decided_by: DecidedBy::Assignment,
                call_sid: Some(sid("CA", n)),
                conference_sid: None,
            };
            ledger.first_decision(&first).await.expect("written");
        }
    });
    for n in 1..=3 {
        standin.add_conference(account, &sid("CF", n), &sid("WT", n), "completed");
        standin.add_recording_at(
            account,
            Of::Conference(sid("CF", n)),
            &sid("RE", n),
            "completed",
            made,
            None,
        );
    }

    let base = standin.base_url();
    let mut env: Vec<(String, String)> = crate::moto::aws_env(&moto.endpoint())
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    env.extend([
        ("LEDGER_TABLE".to_owned(), "cr-ledger".to_owned()),
        ("TWILIO_ACCOUNT_SID".to_owned(), account.to_owned()),
        ("TWILIO_API_BASE_URL".to_owned(), base.clone()),
        ("TWILIO_VOICE_API_BASE_URL".to_owned(), base),
    ]);
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let mut runtime = Runtime::start_with(&env);
    let invocation = runtime.invoke(&events_dir().join("sweep.json"));
    assert!(invocation.succeeded, "{}", invocation.stderr);
    let summary: Value = serde_json::from_str(&invocation.stdout).expect("the counts");
    assert_eq!(summary["complete"], true, "{summary}");
    assert_eq!(summary["recordings"], 3, "{summary}");
    assert_eq!(
        summary["outcomes"],
        json!({"kept": 1, "deleted": 1, "violation": 0, "pending": 0, "unknown": 1, "unmanaged": 0}),
    );
    assert!(summary.get("rows").is_none(), "counts, not rows: {summary}");
    assert_eq!(standin.recording_status(&sid("RE", 1)), None, "deleted");
    for n in [2, 3] {
        assert!(standin.recording_status(&sid("RE", n)).is_some(), "kept");
    }
    let logs = runtime.stop();
    assert_clean(&logs);
    let line = logs
        .json()
        .into_iter()
        .find(|l| l["message"] == "reconcile")
        .unwrap_or_else(|| panic!("a reconcile line:\n{}", logs.text()));
    assert_eq!(line["fix"], true, "{line}");
    assert_eq!(line["IncompleteSweeps"], 0, "{line}");
    let deleted = logs
        .json()
        .into_iter()
        .find(|l| l["Outcome"] == "deleted")
        .unwrap_or_else(|| panic!("a ReconciledRecordings line:\n{}", logs.text()));
    assert_eq!(deleted["ReconciledRecordings"], 1, "{deleted}");
}
