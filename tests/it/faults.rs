//! Faults injected while callbacks flow. The real binary in `serve` with signatures enforced,
//! rules and auth tokens in a real SSM emulator (`moto_server`), queue names from the
//! TaskRouter stand-in; a client thread keeps posting signed callbacks while each test kills
//! SSM, slows it past its timeouts, publishes a broken document, rotates the token, takes
//! TaskRouter's REST API down or floods the service with bad signatures. Every callback must
//! be answered inside TaskRouter's 5 s with the last good rules' decision or the fail
//! policy's, never a 5xx, never a mix of two documents.

use crate::moto;
use crate::standin;
use crate::support;
use crate::support::{RULES_PARAMETER, TOKEN, TOKEN_PARAMETER};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_sdk_ssm::types::ParameterType;
use conditional_recording::handler::DECISION_BUDGET;
use conditional_recording::signature::sign;
use moto::{Moto, SlowProxy, aws_env};
use serde_json::{Value, json};
use standin::{Fault, StandIn};
use support::{Callback, Connection, ENQUEUED_OUTBOUND, INBOUND, Logs, Server, request};

/// TaskRouter ignores a later answer and calls the Workflow's fallback URL.
const TASKROUTER_LIMIT: Duration = Duration::from_secs(5);

const OLD_TOKEN: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const NEW_TOKEN: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const WRONG_TOKEN: &str = "ffffffffffffffffffffffffffffffff";

const RECORD: &str = "record-from-start";
const DO_NOT_RECORD: &str = "do-not-record";

/// Inbound calls are not recorded.
const EXCLUDE_INBOUND: &str =
    r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "value": "inbound"}]}"#;
/// Inbound calls are recorded, and every instruction carries two pass-through keys.
const EXCLUDE_OUTBOUND: &str = r#"{"enabled": true,
    "exclude_attributes": [{"key": "direction", "value": "outbound"}],
    "instruction": {"post_work_activity_sid": "WA00000000000000000000000000000000", "timeout": 25}}"#;
/// Rejected: an unclosed group.
const INVALID: &str =
    r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "regex": "(inbound"}]}"#;

const REFRESH_FAILED: &str = "rules refresh failed; keeping the last good document";
const TOKENS_REFRESH_FAILED: &str = "auth tokens refresh failed; keeping the last good document";

// ---------------------------------------------------------------------------------------
// The flow of callbacks

/// One callback the client sent, and what came back.
#[derive(Clone)]
struct Exchange {
    /// The phase of the test when it was sent, and when its answer came.
    phase: &'static str,
    answered_in: &'static str,
    /// Which of the flow's tokens signed it.
    token: &'static str,
    attributes: &'static str,
    task_sid: String,
    status: u16,
    body: Value,
    took: Duration,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let call = if self.attributes == ENQUEUED_OUTBOUND {
            "outbound"
        } else {
            "inbound"
        };
        write!(
            f,
            "{call} {} sent in {:?}, answered in {:?} after {:?}: {} {}",
            self.task_sid, self.phase, self.answered_in, self.took, self.status, self.body
        )
    }
}

impl Exchange {
    fn record(&self) -> &str {
        self.body["conference_record"].as_str().unwrap_or_default()
    }
}

/// A client thread posting signed callbacks back to back, one at a time, until finished.
struct Flow {
    shared: Arc<FlowState>,
    client: Option<JoinHandle<()>>,
}

struct FlowState {
    stop: AtomicBool,
    phase: Mutex<&'static str>,
    exchanges: Mutex<Vec<Exchange>>,
}

impl FlowState {
    fn exchanges(&self) -> MutexGuard<'_, Vec<Exchange>> {
        self.exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What each callback of a flow looks like.
struct Traffic {
    /// Signs in turn with each of these.
    tokens: &'static [&'static str],
    /// Sends in turn each of these TaskAttributes.
    attributes: &'static [&'static str],
    /// Every callback for this account, workspace and queue (else each has its own).
    queue: Option<Callback>,
}

impl Flow {
    fn start(server: &Server, traffic: Traffic) -> Flow {
        let shared = Arc::new(FlowState {
            stop: AtomicBool::new(false),
            phase: Mutex::new("start"),
            exchanges: Mutex::new(Vec::new()),
        });
        let (addr, url) = (server.addr, server.url.clone());
        let state = Arc::clone(&shared);
        let client = std::thread::spawn(move || {
            let mut turn = 0usize;
            while !state.stop.load(Ordering::SeqCst) {
                let token = traffic.tokens[turn % traffic.tokens.len()];
                let attributes = traffic.attributes[turn % traffic.attributes.len()];
                turn += 1;
                let mut callback = Callback::new(attributes);
                if let Some(like) = &traffic.queue {
                    for name in ["AccountSid", "WorkspaceSid", "TaskQueueSid"] {
                        callback = callback.set(name, like.get(name));
                    }
                }
                let phase = || *state.phase.lock().unwrap_or_else(PoisonError::into_inner);
                let sent_in = phase();
                let mut exchange = exchange(addr, &url, &callback, token, attributes, sent_in);
                exchange.answered_in = phase();
                state.exchanges().push(exchange);
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        Flow {
            shared,
            client: Some(client),
        }
    }

    /// Labels the callbacks sent from now on.
    fn phase(&self, name: &'static str) {
        *self
            .shared
            .phase
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = name;
    }

    /// Lets the flow run for a while.
    fn run_for(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    /// Waits until a callback sent from now on satisfies `done`.
    fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&Exchange) -> bool) {
        let from = self.shared.exchanges().len();
        let deadline = Instant::now() + within;
        loop {
            if self.shared.exchanges()[from..].iter().any(&done) {
                return;
            }
            assert!(
                self.client.as_ref().is_some_and(|c| !c.is_finished()),
                "the client stopped while waiting for {what}"
            );
            assert!(Instant::now() < deadline, "{what}: not within {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the client and returns every exchange in the order sent.
    fn finish(mut self) -> Vec<Exchange> {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(client) = self.client.take()
            && let Err(panic) = client.join()
        {
            std::panic::resume_unwind(panic);
        }
        self.shared.exchanges().clone()
    }
}

/// Posts one signed callback on a fresh connection and times the answer.
fn exchange(
    addr: SocketAddr,
    url: &str,
    callback: &Callback,
    token: &'static str,
    attributes: &'static str,
    phase: &'static str,
) -> Exchange {
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let signature = sign(token, url, &callback.params);
    let bytes = request(
        "POST",
        "/assignment",
        &[
            ("Host", host),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", &signature),
        ],
        callback.encode().as_bytes(),
    );
    let started = Instant::now();
    let mut connection = Connection::open(addr);
    connection.send(&bytes);
    let response = connection.response();
    let took = started.elapsed();
    let body = response.expect_json(response.status);
    Exchange {
        phase,
        answered_in: phase,
        token,
        attributes,
        task_sid: callback.task_sid().to_owned(),
        status: response.status,
        body,
        took,
    }
}

// ---------------------------------------------------------------------------------------
// Checks every test makes

/// Every callback was answered in time, with 200 or (for a bad signature) 403, never 5xx.
fn assert_answered_in_time(exchanges: &[Exchange]) {
    assert!(
        exchanges.len() >= 20,
        "too few callbacks: {}",
        exchanges.len()
    );
    for e in exchanges {
        assert!(
            e.took < TASKROUTER_LIMIT,
            "answered in {:?} ({} phase): {e:?}",
            e.took,
            e.phase
        );
        assert!(e.status == 200 || e.status == 403, "{e:?}");
    }
    let mut slowest: Vec<(Duration, &str)> = exchanges.iter().map(|e| (e.took, e.phase)).collect();
    slowest.sort();
    slowest.reverse();
    slowest.truncate(5);
    eprintln!(
        "{} callbacks; the slowest answers: {slowest:?}",
        exchanges.len()
    );
}

/// The decision line of each callback that got one, by task.
fn decisions_by_task(logs: &Logs) -> HashMap<String, Value> {
    logs.decisions()
        .into_iter()
        .map(|line| {
            (
                line["task_sid"].as_str().unwrap_or_default().to_owned(),
                line,
            )
        })
        .collect()
}

/// The Embedded Metric Format lines carrying this metric.
fn metric_lines(logs: &Logs, metric: &str) -> Vec<Value> {
    logs.json()
        .into_iter()
        .filter(|line| line.get(metric).is_some() && line.get("_aws").is_some())
        .collect()
}

/// The sum of a count metric's values over its lines.
fn counted(lines: &[Value]) -> usize {
    lines
        .iter()
        .filter_map(|line| line["SignatureRejections"].as_u64())
        .map(|count| count as usize)
        .sum()
}

/// Stops the server as systemd would (SIGTERM), so it writes the refusal counts its ration
/// held back, and returns its stderr.
fn stop_writing_every_count(mut server: Server) -> Logs {
    let exited = server.terminate(Duration::from_secs(30));
    assert!(
        exited.is_some_and(|status| status.success()),
        "serve did not stop on SIGTERM: {exited:?}"
    );
    server.stop()
}

/// `serve` with signatures enforced, rules and tokens in the SSM parameters at `endpoint`.
fn serve_from_ssm(endpoint: &str, extra: &[(&str, &str)]) -> Server {
    let aws = aws_env(endpoint);
    let mut env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([
        ("RULES_PARAMETER", RULES_PARAMETER),
        ("TWILIO_AUTH_TOKEN_PARAMETER", TOKEN_PARAMETER),
        ("RULES_CACHE_TTL_SECONDS", "1"),
    ]);
    env.extend_from_slice(extra);
    Server::start_with(&env)
}

/// Inbound callbacks signed with the one token in the parameter.
fn inbound_traffic() -> Traffic {
    Traffic {
        tokens: &[TOKEN],
        attributes: &[INBOUND],
        queue: None,
    }
}

// ---------------------------------------------------------------------------------------
// SSM

#[test]
fn ssm_killed_while_callbacks_flow_keeps_the_last_good_rules_and_tokens() {
    let mut moto = Moto::start();
    moto.put(RULES_PARAMETER, EXCLUDE_INBOUND, ParameterType::String);
    moto.put(TOKEN_PARAMETER, TOKEN, ParameterType::SecureString);
    let server = serve_from_ssm(&moto.endpoint(), &[]);
    let flow = Flow::start(&server, inbound_traffic());
    flow.phase("healthy");
    flow.run_for(Duration::from_millis(1500));
    flow.phase("ssm down");
    moto.stop();
    flow.run_for(Duration::from_secs(4));
    let exchanges = flow.finish();
    let logs = server.stop();

    assert_answered_in_time(&exchanges);
    let decided = decisions_by_task(&logs);
    for e in &exchanges {
        assert_eq!(e.status, 200, "tokens still in force: {e:?}");
        assert_eq!(e.record(), DO_NOT_RECORD, "the last good rules: {e:?}");
        let line = &decided[&e.task_sid];
        assert_eq!(line["rules_version"], 1, "{line}");
        assert_eq!(line["reason"], "excluded_by_attribute", "{line}");
    }
    assert!(exchanges.iter().filter(|e| e.phase == "ssm down").count() >= 20);

    let failures = logs.with_message(REFRESH_FAILED);
    assert!(
        !failures.is_empty(),
        "the outage is logged: {}",
        logs.text()
    );
    assert!(
        failures.len() <= 4,
        "retries back off (1 s, 2 s, 4 s), not one per callback: {}",
        failures.len()
    );
    for failure in &failures {
        assert_eq!(failure["parameter"], RULES_PARAMETER, "{failure}");
        assert_eq!(failure["in_use_version"], 1, "{failure}");
        assert_eq!(failure["no_good_document"], false, "{failure}");
    }
    assert!(!logs.with_message(TOKENS_REFRESH_FAILED).is_empty());
    let documents: Vec<Value> = metric_lines(&logs, "RefreshFailures")
        .iter()
        .map(|l| l["Document"].clone())
        .collect();
    assert!(documents.contains(&json!("rules")), "{documents:?}");
    assert!(documents.contains(&json!("auth tokens")), "{documents:?}");
    let ages: Vec<f64> = metric_lines(&logs, "RulesAgeSeconds")
        .iter()
        .filter_map(|l| l["RulesAgeSeconds"].as_f64())
        .collect();
    assert!(
        ages.last().is_some_and(|age| *age >= 3.0),
        "RulesAgeSeconds grows while SSM is down: {ages:?}"
    );
}

#[test]
fn ssm_slower_than_its_timeouts_keeps_answers_inside_five_seconds() {
    let moto = Moto::start();
    moto.put(RULES_PARAMETER, EXCLUDE_INBOUND, ParameterType::String);
    moto.put(TOKEN_PARAMETER, TOKEN, ParameterType::SecureString);
    let proxy = SlowProxy::start(moto.port);
    let server = serve_from_ssm(&proxy.endpoint(), &[]);
    let flow = Flow::start(&server, inbound_traffic());
    flow.phase("healthy");
    flow.run_for(Duration::from_millis(1500));

    // Past the 1 s attempt, 2 s operation and 2.5 s hard timeouts.
    flow.phase("ssm slow");
    proxy.set_delay(Duration::from_secs(4));
    flow.run_for(Duration::from_secs(7));
    // A new document is published while SSM is slow, and shows once it is fast again.
    assert_eq!(
        moto.put(RULES_PARAMETER, EXCLUDE_OUTBOUND, ParameterType::String),
        2
    );
    proxy.set_delay(Duration::ZERO);
    flow.phase("ssm fast again");
    flow.wait_for("the new document", Duration::from_secs(20), |e| {
        e.record() == RECORD
    });
    flow.run_for(Duration::from_secs(1));
    let exchanges = flow.finish();
    let logs = server.stop();

    assert_answered_in_time(&exchanges);
    let decided = decisions_by_task(&logs);
    let mut newest = 1;
    for e in &exchanges {
        assert_eq!(e.status, 200, "{e:?}");
        let version = decided[&e.task_sid]["rules_version"].as_i64().unwrap_or(0);
        assert!(version >= newest, "version {version} after {newest}: {e:?}");
        newest = version;
        let expected = if version == 1 { DO_NOT_RECORD } else { RECORD };
        assert_eq!(e.record(), expected, "{e:?}");
        if e.phase == "ssm slow" && e.answered_in == "ssm slow" {
            assert_eq!(version, 1, "nothing new while SSM is slow: {e:?}");
        }
    }
    let slow: Vec<&Exchange> = exchanges.iter().filter(|e| e.phase == "ssm slow").collect();
    assert!(
        slow.len() >= 10,
        "callbacks kept flowing while SSM was slow"
    );
    // The token and rules refreshes run side by side: one slow fetch's time, not two.
    for e in &slow {
        assert!(e.took < DECISION_BUDGET, "{e:?}");
    }
    let failures = logs.with_message(REFRESH_FAILED);
    assert!(!failures.is_empty(), "{}", logs.text());
    assert!(failures.len() <= 5, "retries back off: {}", failures.len());
}

#[test]
fn an_invalid_document_is_never_applied_and_the_next_valid_one_is_applied_whole() {
    let moto = Moto::start();
    moto.put(RULES_PARAMETER, EXCLUDE_INBOUND, ParameterType::String);
    moto.put(TOKEN_PARAMETER, TOKEN, ParameterType::SecureString);
    let server = serve_from_ssm(&moto.endpoint(), &[]);
    let flow = Flow::start(&server, inbound_traffic());
    flow.phase("v1");
    flow.run_for(Duration::from_millis(1500));
    flow.phase("v2 invalid");
    assert_eq!(moto.put(RULES_PARAMETER, INVALID, ParameterType::String), 2);
    flow.run_for(Duration::from_secs(3));
    flow.phase("v3");
    assert_eq!(
        moto.put(RULES_PARAMETER, EXCLUDE_OUTBOUND, ParameterType::String),
        3
    );
    flow.wait_for("version 3", Duration::from_secs(15), |e| {
        e.record() == RECORD
    });
    flow.run_for(Duration::from_millis(1500));
    let exchanges = flow.finish();
    let logs = server.stop();

    assert_answered_in_time(&exchanges);
    // Each answer is one whole document's: version 1 has no pass-through keys, version 3
    // has both; a version, once used, is never followed by an older one.
    let v1 = json!({"instruction": "conference", "conference_record": DO_NOT_RECORD});
    let v3 = json!({"instruction": "conference", "conference_record": RECORD,
        "post_work_activity_sid": "WA00000000000000000000000000000000", "timeout": 25});
    let decided = decisions_by_task(&logs);
    let mut newest = 1;
    for e in &exchanges {
        let line = &decided[&e.task_sid];
        let version = line["rules_version"].as_i64().unwrap_or(0);
        assert!(version == 1 || version == 3, "{line}");
        assert!(
            version >= newest,
            "version {version} after {newest}: {line}"
        );
        newest = version;
        assert_eq!(&e.body, if version == 1 { &v1 } else { &v3 }, "{line}");
    }
    assert_eq!(newest, 3);
    assert!(
        exchanges
            .iter()
            .filter(|e| e.phase == "v2 invalid")
            .all(|e| e.body == v1),
        "the last good document stays in force while the invalid one is published"
    );

    let failures = logs.with_message(REFRESH_FAILED);
    assert!(!failures.is_empty(), "{}", logs.text());
    let cause = failures[0]["cause"].as_str().unwrap_or_default();
    assert!(
        cause.contains("exclude_attributes[0].regex"),
        "the cause names the fault's path: {cause}"
    );
    let loaded: Vec<Value> = logs
        .with_message("rules loaded")
        .iter()
        .map(|l| l["version"].clone())
        .collect();
    assert_eq!(loaded, [json!(1), json!(3)], "version 2 was never loaded");
}

// ---------------------------------------------------------------------------------------
// Signatures

#[test]
fn a_token_rotation_while_callbacks_flow_overlaps_then_retires_the_old_token() {
    let moto = Moto::start();
    moto.put(RULES_PARAMETER, EXCLUDE_INBOUND, ParameterType::String);
    moto.put(TOKEN_PARAMETER, OLD_TOKEN, ParameterType::SecureString);
    let server = serve_from_ssm(&moto.endpoint(), &[]);
    let flow = Flow::start(
        &server,
        Traffic {
            tokens: &[OLD_TOKEN, NEW_TOKEN, WRONG_TOKEN],
            attributes: &[INBOUND],
            queue: None,
        },
    );
    flow.phase("old only");
    flow.run_for(Duration::from_millis(1500));

    flow.phase("old and new");
    moto.put(
        TOKEN_PARAMETER,
        &format!("{OLD_TOKEN}\n{NEW_TOKEN}\n"),
        ParameterType::SecureString,
    );
    flow.wait_for("the new token accepted", Duration::from_secs(15), |e| {
        e.token == NEW_TOKEN && e.status == 200
    });
    flow.run_for(Duration::from_secs(2));

    flow.phase("new only");
    moto.put(TOKEN_PARAMETER, NEW_TOKEN, ParameterType::SecureString);
    flow.wait_for("the old token refused", Duration::from_secs(15), |e| {
        e.token == OLD_TOKEN && e.status == 403
    });
    flow.run_for(Duration::from_millis(1500));
    let exchanges = flow.finish();
    let logs = stop_writing_every_count(server);

    assert_answered_in_time(&exchanges);
    let statuses = |token: &str| -> Vec<u16> {
        exchanges
            .iter()
            .filter(|e| e.token == token)
            .map(|e| e.status)
            .collect()
    };
    // Accepted, then refused for good: the old token.
    let old = statuses(OLD_TOKEN);
    let retired = old.iter().position(|s| *s == 403).unwrap_or(old.len());
    assert!(retired > 0, "the old token was accepted at first: {old:?}");
    assert!(old[retired..].iter().all(|s| *s == 403), "{old:?}");
    assert!(old[..retired].iter().all(|s| *s == 200), "{old:?}");
    // Refused, then accepted for good: the new token.
    let new = statuses(NEW_TOKEN);
    let promoted = new.iter().position(|s| *s == 200).unwrap_or(new.len());
    assert!(promoted > 0 && promoted < new.len(), "{new:?}");
    assert!(new[promoted..].iter().all(|s| *s == 200), "{new:?}");
    // Both accepted during the overlap.
    let first_new = exchanges
        .iter()
        .position(|e| e.token == NEW_TOKEN && e.status == 200)
        .unwrap_or(exchanges.len());
    assert!(
        exchanges[first_new..]
            .iter()
            .any(|e| e.token == OLD_TOKEN && e.status == 200),
        "the old token was still accepted once the new one was"
    );
    assert!(statuses(WRONG_TOKEN).iter().all(|s| *s == 403));
    for e in exchanges.iter().filter(|e| e.status == 403) {
        assert_eq!(
            e.body["error"],
            "X-Twilio-Signature is not valid for this URL and body"
        );
    }

    let loaded = logs.with_message("auth tokens loaded");
    assert_eq!(loaded.len(), 3, "each version once: {}", logs.text());
    let rejections = metric_lines(&logs, "SignatureRejections");
    assert!(rejections.iter().all(|l| l["Cause"] == "invalid"));
    assert_eq!(
        counted(&rejections),
        exchanges.iter().filter(|e| e.status == 403).count()
    );
    let text = logs.text();
    for token in [OLD_TOKEN, NEW_TOKEN, WRONG_TOKEN] {
        assert!(!text.contains(token), "a token reached a log");
    }
}

#[test]
fn a_flood_of_bad_signatures_leaves_signed_callbacks_answered() {
    let server = Server::start_with(&[("TWILIO_AUTH_TOKEN", TOKEN)]);
    let flow = Flow::start(&server, inbound_traffic());
    flow.phase("flood");
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<JoinHandle<(usize, usize)>> = (0..4)
        .map(|n| {
            let (addr, url, stop) = (server.addr, server.url.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let (mut wrong, mut missing) = (0, 0);
                while !stop.load(Ordering::SeqCst) {
                    let callback = Callback::new(INBOUND);
                    if n % 2 == 0 {
                        let e = exchange(addr, &url, &callback, WRONG_TOKEN, INBOUND, "flood");
                        assert_eq!(e.status, 403, "{e:?}");
                        wrong += 1;
                    } else {
                        let mut connection = Connection::open(addr);
                        connection.send(&support::post_form("/assignment", &callback.encode()));
                        assert_eq!(
                            connection.response().expect_error(403),
                            "X-Twilio-Signature is missing"
                        );
                        missing += 1;
                    }
                }
                (wrong, missing)
            })
        })
        .collect();
    flow.run_for(Duration::from_secs(3));
    stop.store(true, Ordering::SeqCst);
    let (mut wrong, mut missing) = (0, 0);
    for flooder in flooders {
        let (w, m) = flooder
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        wrong += w;
        missing += m;
    }
    let exchanges = flow.finish();
    let logs = stop_writing_every_count(server);

    assert_answered_in_time(&exchanges);
    assert!(
        exchanges
            .iter()
            .all(|e| e.status == 200 && e.record() == RECORD)
    );
    assert!(
        wrong + missing > 10 * exchanges.len(),
        "a flood: {wrong} + {missing}"
    );
    eprintln!("{wrong} wrong and {missing} missing signatures refused");
    let causes = metric_lines(&logs, "SignatureRejections");
    let count = |cause: &str| {
        let lines: Vec<Value> = causes
            .iter()
            .filter(|l| l["Cause"] == cause)
            .cloned()
            .collect();
        counted(&lines)
    };
    assert_eq!((count("invalid"), count("missing")), (wrong, missing));
    // The flood's counts ride on the few lines its ration allows, not a line per refusal.
    assert!(
        causes.len() < wrong + missing,
        "{} metric lines for {} refusals",
        causes.len(),
        wrong + missing
    );
    assert_eq!(
        logs.decisions().len(),
        exchanges.len(),
        "only signed callbacks decided"
    );
}

// ---------------------------------------------------------------------------------------
// TaskRouter's REST API

/// A stand-in that knows the callback's queue by `name` and takes the test token for its
/// account.
fn standin_naming(callback: &Callback, name: &str) -> StandIn {
    let standin = StandIn::start();
    standin.add_queue(
        callback.get("WorkspaceSid"),
        callback.get("TaskQueueSid"),
        name,
    );
    standin.add_credentials(callback.get("AccountSid"), TOKEN);
    standin
}

#[test]
fn taskrouter_rest_api_down_slow_and_throttling_leaves_calls_to_the_fail_policy() {
    let moto = Moto::start();
    moto.put(
        RULES_PARAMETER,
        r#"{"enabled": true, "exclude_queues": ["Payments"],
            "exclude_attributes": [{"key": "direction", "value": "outbound"}]}"#,
        ParameterType::String,
    );
    let queue = Callback::new(INBOUND);
    let standin = standin_naming(&queue, "Sales");
    let base_url = standin.base_url();
    let aws = aws_env(&moto.endpoint());
    let mut env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([
        ("RULES_PARAMETER", RULES_PARAMETER),
        ("TWILIO_AUTH_TOKEN", TOKEN),
        ("TWILIO_API_BASE_URL", base_url.as_str()),
        ("RULES_CACHE_TTL_SECONDS", "1"),
    ]);
    let server = Server::start_with(&env);
    let flow = Flow::start(
        &server,
        Traffic {
            tokens: &[TOKEN],
            attributes: &[INBOUND, ENQUEUED_OUTBOUND],
            queue: Some(queue),
        },
    );
    let resolved = |e: &Exchange| e.attributes == INBOUND && e.record() == RECORD;
    flow.phase("healthy");
    flow.wait_for("a resolved name", Duration::from_secs(5), resolved);
    flow.run_for(Duration::from_millis(1200));
    flow.phase("down");
    standin.set_fault(Some(Fault::Status(503)));
    flow.run_for(Duration::from_millis(2500));
    flow.phase("hanging");
    standin.set_fault(Some(Fault::Hang));
    flow.run_for(Duration::from_secs(4));
    flow.phase("throttling");
    standin.set_fault(Some(Fault::RateLimited(Some("2".into()))));
    flow.run_for(Duration::from_millis(2500));
    flow.phase("healed");
    standin.set_fault(None);
    flow.wait_for("names resolved again", Duration::from_secs(10), resolved);
    flow.run_for(Duration::from_millis(500));
    let exchanges = flow.finish();
    let logs = server.stop();

    assert_answered_in_time(&exchanges);
    let decided = decisions_by_task(&logs);
    let mut reasons: HashMap<&str, Vec<String>> = HashMap::new();
    for e in &exchanges {
        assert_eq!(e.status, 200, "{e:?}");
        let line = &decided[&e.task_sid];
        let reason = line["reason"].as_str().unwrap_or_default();
        if e.attributes == ENQUEUED_OUTBOUND {
            // Decided by an attribute: the queue's name is never needed.
            assert_eq!(
                (e.record(), reason),
                (DO_NOT_RECORD, "excluded_by_attribute")
            );
            continue;
        }
        match reason {
            "no_exclusion_matched" => {
                assert_eq!(e.record(), RECORD, "{line}");
                assert_eq!(line["queue_name"], "Sales", "{line}");
            }
            "queue_name_unresolved" => assert_eq!(e.record(), DO_NOT_RECORD, "{line}"),
            _ => panic!("a decision neither by the rules nor the fail policy: {line}"),
        }
        reasons.entry(e.phase).or_default().push(reason.to_owned());
    }
    for phase in ["down", "hanging", "throttling"] {
        assert!(
            reasons
                .get(phase)
                .is_some_and(|r| r.iter().any(|r| r == "queue_name_unresolved")),
            "the fail policy during {phase}: {reasons:?}"
        );
    }

    let causes: Vec<String> = logs
        .with_message("queue name unresolved")
        .iter()
        .map(|l| l["cause"].as_str().unwrap_or_default().to_owned())
        .collect();
    for expected in [
        "TaskRouter answered 503",
        "no answer within 1500 ms",
        "TaskRouter answered 429",
        "backing off after a 429 from TaskRouter",
    ] {
        assert!(
            causes.iter().any(|c| c == expected),
            "{expected:?} in {causes:?}"
        );
    }
    let unresolved = metric_lines(&logs, "Decisions")
        .iter()
        .filter(|l| l["Reason"] == "queue_name_unresolved")
        .count();
    assert!(unresolved > 0);
}

/// The worst case: one callback may need the token refresh, the rules refresh and the
/// queue-name lookup, all slow at once; the refreshes run side by side and the lookup gets
/// what is left of the decision's 4 s budget.
#[test]
fn ssm_slow_and_taskrouter_hanging_at_once_still_answer_inside_five_seconds() {
    let moto = Moto::start();
    moto.put(
        RULES_PARAMETER,
        r#"{"enabled": true, "exclude_queues": ["Payments"]}"#,
        ParameterType::String,
    );
    moto.put(TOKEN_PARAMETER, TOKEN, ParameterType::SecureString);
    let proxy = SlowProxy::start(moto.port);
    let queue = Callback::new(INBOUND);
    let standin = standin_naming(&queue, "Sales");
    let base_url = standin.base_url();
    let server = serve_from_ssm(
        &proxy.endpoint(),
        &[("TWILIO_API_BASE_URL", base_url.as_str())],
    );
    let flow = Flow::start(
        &server,
        Traffic {
            tokens: &[TOKEN],
            attributes: &[INBOUND],
            queue: Some(queue),
        },
    );
    flow.phase("healthy");
    flow.run_for(Duration::from_millis(1500));
    flow.phase("everything slow");
    proxy.set_delay(Duration::from_secs(4));
    standin.set_fault(Some(Fault::Hang));
    flow.run_for(Duration::from_secs(8));
    let exchanges = flow.finish();
    let logs = server.stop();

    assert_answered_in_time(&exchanges);
    let budget = DECISION_BUDGET + Duration::from_millis(500);
    let decided = decisions_by_task(&logs);
    for e in &exchanges {
        assert!(e.took < budget, "within the decision budget: {e:?}");
        assert_eq!(e.status, 200, "the last good tokens: {e:?}");
        let line = &decided[&e.task_sid];
        assert_eq!(line["rules_version"], 1, "{line}");
        match line["reason"].as_str().unwrap_or_default() {
            "no_exclusion_matched" => assert_eq!(e.record(), RECORD, "{line}"),
            "queue_name_unresolved" => assert_eq!(e.record(), DO_NOT_RECORD, "{line}"),
            _ => panic!("a decision neither by the rules nor the fail policy: {line}"),
        }
    }
    let slow = exchanges.iter().filter(|e| e.phase == "everything slow");
    assert!(
        slow.clone().any(|e| e.took > Duration::from_secs(2)),
        "some callback paid for the refreshes and the lookup"
    );
    assert!(slow.count() >= 5, "callbacks kept flowing");
}
