//! A bounded load run on `POST /events`: the binary's `serve` on loopback, enforcing through
//! its real TaskRouter and Voice API adapters against the stand-in, fed signed deliveries of
//! both forms from several keep-alive connections at once.
//!
//! Three rounds. Each first gives every call a fresh recording in progress (a call that
//! recording started on again), then sends every delivery [`REPEATS`] times over, spread
//! over the connections: duplicates, concurrently, as Event Streams' redeliveries and the
//! several events of one task arrive. Every answer must be `200` with all its events
//! enforced, every recording must be gone after each round, and the server's resident memory
//! after the last round may not exceed what it was after the first by more than allocator
//! slack. Prints `events-load` lines with the figures `BENCHMARKS.md` keeps; no timing is
//! asserted.
//!
//!     EVENTS_LOAD_ROUNDS=30 cargo test --test it events_load -- --nocapture

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conditional_recording::signature::{sha256_hex, sign};
use serde_json::{Value, json};

use crate::standin::{Of, StandIn};
use crate::support::{CALLER_DATA, Connection, Server, TOKEN, request};

const ACCOUNT: &str = "AC00000000000000000000000000000a11";
const WORKSPACE: &str = "WS00000000000000000000000000000a11";
const QUEUE: &str = "WQ00000000000000000000000000000a11";
/// Calls delivered one per Workspace Event Callback (form).
const FORM_CALLS: usize = 40;
/// Calls delivered in Event Streams batches of [`BATCH`] events.
const STREAM_CALLS: usize = 40;
const BATCH: usize = 5;
/// How many times each delivery is sent in a round.
const REPEATS: usize = 8;
/// Rounds in `make test`; `EVENTS_LOAD_ROUNDS` asks for more (`BENCHMARKS.md` records 30).
const ROUNDS: usize = 3;
const CONNECTIONS: usize = 8;
/// What resident memory may grow between the first round's end and the last's without
/// counting as growth: allocator arenas settling.
const SLACK_KIB: u64 = 2048;

/// Every inbound call is excluded: each of its recordings must go.
const RULES: &str =
    r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "value": "inbound"}]}"#;

fn sid(prefix: &str, call: usize, tail: &str) -> String {
    format!("{prefix}{call:0>28x}{tail:0>4}")
}

/// Call `n`'s task, conference (named after the task, as Flex names it) and customer leg.
struct Call {
    task: String,
    conference: String,
    leg: String,
    attributes: String,
}

impl Call {
    fn new(n: usize) -> Call {
        let leg = sid("CA", n, "c");
        Call {
            task: sid("WT", n, "7"),
            conference: sid("CF", n, "f"),
            attributes: json!({"direction": "inbound", "call_sid": leg}).to_string(),
            leg,
        }
    }

    fn form(&self, n: usize) -> Vec<(String, String)> {
        [
            ("EventType", "reservation.accepted".to_owned()),
            ("ResourceType", "reservation".to_owned()),
            ("AccountSid", ACCOUNT.to_owned()),
            ("WorkspaceSid", WORKSPACE.to_owned()),
            ("TaskSid", self.task.clone()),
            ("ReservationSid", sid("WR", n, "e")),
            ("TaskQueueSid", QUEUE.to_owned()),
            ("TaskAttributes", self.attributes.clone()),
            ("TaskChannelUniqueName", "voice".to_owned()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }

    fn cloud_event(&self, n: usize) -> Value {
        json!({
            "specversion": "1.0",
            "type": "com.twilio.taskrouter.task.updated",
            "source": format!("/v1/Workspaces/{WORKSPACE}/Tasks/{}", self.task),
            "id": sid("EZ", n, "1"),
            "data": {"payload": {
                "account_sid": ACCOUNT,
                "workspace_sid": WORKSPACE,
                "task_sid": self.task,
                "task_queue_sid": QUEUE,
                "task_attributes": self.attributes,
                "task_channel_unique_name": "voice",
            }}
        })
    }
}

/// One signed request and how many events it carries.
struct Delivery {
    bytes: Vec<u8>,
    events: u64,
}

fn deliveries(calls: &[Call], server: &Server) -> Vec<Delivery> {
    let url = format!("http://{}/events", server.addr);
    let host = server.addr.to_string();
    let mut deliveries: Vec<Delivery> = calls[..FORM_CALLS]
        .iter()
        .enumerate()
        .map(|(n, call)| {
            let params = call.form(n);
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params)
                .finish();
            let signature = sign(TOKEN, &url, &params);
            let headers = [
                ("Host", host.as_str()),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Twilio-Signature", signature.as_str()),
            ];
            Delivery {
                bytes: request("POST", "/events", &headers, body.as_bytes()),
                events: 1,
            }
        })
        .collect();
    for (batch, chunk) in calls[FORM_CALLS..].chunks(BATCH).enumerate() {
        let first = FORM_CALLS + batch * BATCH;
        let events: Vec<Value> = (chunk.iter().enumerate())
            .map(|(i, call)| call.cloud_event(first + i))
            .collect();
        let body = Value::from(events).to_string();
        let path = format!("/events?bodySHA256={}", sha256_hex(body.as_bytes()));
        let signature = sign(TOKEN, &format!("http://{host}{path}"), &[]);
        let headers = [
            ("Host", host.as_str()),
            ("Content-Type", "application/json"),
            ("X-Twilio-Signature", signature.as_str()),
        ];
        deliveries.push(Delivery {
            bytes: request("POST", &path, &headers, body.as_bytes()),
            events: chunk.len() as u64,
        });
    }
    deliveries
}

/// What a round's answers were.
#[derive(Default)]
struct Tally {
    answers: usize,
    wrong: Vec<String>,
    latencies_us: Vec<u64>,
}

/// Sends every delivery `REPEATS` times, from `CONNECTIONS` keep-alive connections that take
/// the next request from one shared counter.
fn round(server: &Server, deliveries: &Arc<Vec<Delivery>>) -> (Tally, Duration) {
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let total = deliveries.len() * REPEATS;
    let started = Instant::now();
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (next, tally, deliveries) = (next.clone(), tally.clone(), deliveries.clone());
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut connection = Connection::open(addr);
                let mut mine = Tally::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let delivery = &deliveries[i % deliveries.len()];
                    let sent = Instant::now();
                    connection.send(&delivery.bytes);
                    let response = connection.response();
                    mine.latencies_us.push(sent.elapsed().as_micros() as u64);
                    mine.answers += 1;
                    let body: Value = serde_json::from_slice(&response.body).unwrap_or_default();
                    let expected = json!({
                        "enforced": delivery.events, "ignored": 0, "unreadable": 0, "unfinished": 0
                    });
                    if response.status != 200 || body != expected {
                        mine.wrong.push(format!("{} {body}", response.status));
                    }
                }
                let mut tally = tally.lock().unwrap();
                tally.answers += mine.answers;
                tally.wrong.extend(mine.wrong);
                tally.latencies_us.extend(mine.latencies_us);
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a connection's thread panicked");
    }
    let elapsed = started.elapsed();
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    (tally, elapsed)
}

fn percentile(sorted: &[u64], p: usize) -> f64 {
    let i = (sorted.len() * p / 100).min(sorted.len().saturating_sub(1));
    sorted.get(i).copied().unwrap_or_default() as f64 / 1000.0
}

#[test]
fn a_bounded_load_of_both_deliveries_enforces_every_call_without_error_or_growth() {
    let standin = StandIn::start();
    standin.add_credentials(ACCOUNT, TOKEN);
    let calls: Vec<Call> = (0..FORM_CALLS + STREAM_CALLS).map(Call::new).collect();
    for call in &calls {
        standin.add_task(WORKSPACE, &call.task, &call.attributes);
        standin.add_conference(ACCOUNT, &call.conference, &call.task, "in-progress");
        standin.add_participant(&call.conference, &call.leg);
    }
    let base = standin.base_url();
    let (server, _rules) = Server::start_on_rules(
        RULES,
        &[
            ("TWILIO_AUTH_TOKEN", TOKEN),
            ("TWILIO_API_BASE_URL", &base),
            ("TWILIO_VOICE_API_BASE_URL", &base),
        ],
    );
    let deliveries = Arc::new(deliveries(&calls, &server));

    let rounds = std::env::var("EVENTS_LOAD_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse::<usize>().ok())
        .map_or(ROUNDS, |rounds| rounds.clamp(2, 100));
    let mut rss_kib = Vec::new();
    let mut figures = Vec::new();
    for n in 0..rounds {
        for (i, call) in calls.iter().enumerate() {
            let conference = Of::Conference(call.conference.clone());
            let leg = Of::Call(call.leg.clone());
            standin.add_recording(
                ACCOUNT,
                conference,
                &sid("RE", i, &format!("{n}a")),
                "in-progress",
            );
            standin.add_recording(ACCOUNT, leg, &sid("RE", i, &format!("{n}b")), "completed");
        }
        let (tally, elapsed) = round(&server, &deliveries);
        assert_eq!(tally.answers, deliveries.len() * REPEATS, "round {n}");
        assert!(
            tally.wrong.is_empty(),
            "round {n}: {} wrong answers, the first: {:?}",
            tally.wrong.len(),
            &tally.wrong[..tally.wrong.len().min(5)]
        );
        for (i, _) in calls.iter().enumerate() {
            for tail in ["a", "b"] {
                let recording = sid("RE", i, &format!("{n}{tail}"));
                assert_eq!(
                    standin.recording_status(&recording),
                    None,
                    "round {n}: {recording}"
                );
            }
        }
        rss_kib.push(server.rss_kib());
        let mut latencies = tally.latencies_us;
        latencies.sort_unstable();
        figures.push((tally.answers, elapsed, latencies));
    }

    let peak = server.peak_rss_kib();
    let logs = server.stop();
    let text = logs.text();
    assert!(!text.contains(TOKEN), "the token reached a log");
    for data in CALLER_DATA {
        assert!(!text.contains(data), "{data} reached a log");
    }
    let enforcement = logs
        .json()
        .into_iter()
        .filter(|line| line["message"] == "enforcement")
        .count();
    let failed = text.matches(r#""action":"failed""#).count();
    assert_eq!(failed, 0, "an action failed under load");

    for (n, (answers, elapsed, latencies)) in figures.iter().enumerate() {
        println!(
            "events-load round={n} deliveries={answers} events={} seconds={:.2} \
             deliveries_per_s={:.0} p50_ms={:.2} p99_ms={:.2} max_ms={:.2} rss_kib={}",
            answers / deliveries.len() * (FORM_CALLS + STREAM_CALLS),
            elapsed.as_secs_f64(),
            *answers as f64 / elapsed.as_secs_f64(),
            percentile(latencies, 50),
            percentile(latencies, 99),
            latencies.last().copied().unwrap_or_default() as f64 / 1000.0,
            rss_kib[n],
        );
    }
    println!(
        "events-load connections={CONNECTIONS} enforcement_lines={enforcement} peak_rss_kib={peak} \
         rest_calls={}",
        standin.requests().len()
    );
    let (first, last) = (rss_kib[0], rss_kib[rounds - 1]);
    assert!(
        last <= first + SLACK_KIB,
        "resident memory grew from {first} KiB after round 0 to {last} KiB after round {}",
        rounds - 1
    );
}
