//! The full in-process answer to one assignment callback, beside a baseline that only decodes
//! the form and parses TaskAttributes (work no implementation can skip).
//!
//! - `answer/baseline_form_and_json`: `parse_form` + `parse_attributes`.
//! - `answer/pipeline`: what the handler does for a callback, called piece by piece: form
//!   decode, signature check, callback fields, TaskAttributes parse, decision, the answer
//!   serialised to its body. No logging, no HTTP types.
//! - `answer/handler`: `App::handle` on the API Gateway request Lambda hands over (the base64
//!   body already decoded), with the production JSON log subscriber: routing, the pipeline,
//!   the decision log line and the metrics line (both written to stderr), the response.
//!
//! Parts, to show where the time goes: the signature check, the HTTP face's checks and URL,
//! dropping the request, the decision line, the handler with no log subscriber installed, and
//! the same on requests built ahead in a batch (out of cache).
//!
//! `answer/handler` writes a line to stderr per iteration, so it runs only when stderr is
//! not a terminal: `cargo bench --bench answer 2>/dev/null`. Numbers in BENCHMARKS.md.

use std::future::Future;
use std::hint::black_box;
use std::io::IsTerminal;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use conditional_recording::lambda;
use conditional_recording::metrics::DecisionRecord;
use conditional_recording::ports::Ledger;
use conditional_recording::rules::{FailPolicy, Rules, Task};
use conditional_recording::service;
use conditional_recording::service::memory::MemoryLedger;
use conditional_recording::signature;
use conditional_recording::sources::StaticRules;
use conditional_recording::sources::taskrouter_api::{Annotator, QueueNames};
use conditional_recording::sources::tokens::{AnyTokens, AuthTokens};
use conditional_recording::sources::voice_api::VoiceApi;
use conditional_recording::taskrouter::{self, AssignmentCallback};
use conditional_recording::wiring::{App, Signatures};

/// The real adapters' types, as the binary builds the service.
type Q = QueueNames;
type A = Annotator;
type V = VoiceApi;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lambda_http::request::LambdaRequest;
use serde_json::Value;

#[path = "support/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// The documented test token the example events are signed with (not a secret).
const TOKEN: &str = "0123456789abcdef0123456789abcdef";
/// The documented URL of the HTTP API example events.
const URL: &str = "https://abc123.execute-api.us-east-1.amazonaws.com/assignment";
const EVENT: &str = include_str!("../events/http-inbound-recorded.json");
const ATTRIBUTES: &str = include_str!("data/task-attributes.json");
const RULES: &str = include_str!("../events/rules.json");
const RECORDED: &str = r#"{"instruction":"conference","conference_record":"record-from-start"}"#;

/// The example event's callback with the 2 KB TaskAttributes (less `conference`), signed for
/// its URL.
struct Callback {
    params: Vec<(String, String)>,
    body: Vec<u8>,
    signature: String,
    event: String,
}

impl Callback {
    fn new() -> Callback {
        let mut attributes: Value = serde_json::from_str(ATTRIBUTES).expect("JSON attributes");
        // A first reservation: Flex writes `conference` only once the conference exists, and
        // a task that has one (a transfer) is answered `{}`.
        attributes
            .as_object_mut()
            .expect("an object")
            .shift_remove("conference");
        let attributes = attributes.to_string();
        let mut event: Value = serde_json::from_str(EVENT).expect("a JSON event");
        let original = STANDARD
            .decode(event["body"].as_str().expect("a body"))
            .expect("a base64 body");
        let params: Vec<(String, String)> = form_urlencoded::parse(&original)
            .into_owned()
            .map(|(k, v)| match k.as_str() {
                "TaskAttributes" => (k, attributes.clone()),
                _ => (k, v),
            })
            .collect();
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish()
            .into_bytes();
        let signature = signature::sign(TOKEN, URL, &params);
        event["body"] = Value::String(STANDARD.encode(&body));
        event["headers"]["content-length"] = Value::String(body.len().to_string());
        event["headers"]["x-twilio-signature"] = Value::String(signature.clone());
        Callback {
            params,
            body,
            signature,
            event: event.to_string(),
        }
    }

    fn request(&self) -> lambda_http::Request {
        let event: LambdaRequest = serde_json::from_str(&self.event).expect("an API Gateway event");
        lambda::into_request(event)
    }
}

/// The app as Lambda mode builds it, with the example rules and a fixed token.
fn app() -> App<StaticRules> {
    app_with(None)
}

/// The same app with `ledger` (`LEDGER_TABLE`), which the assignment writes the call's first
/// decision to.
fn app_with<L: Ledger>(ledger: Option<L>) -> service::App<StaticRules, Q, A, AnyTokens, V, L> {
    let rules = Rules::from_json(RULES).expect("the example rules");
    let tokens = AuthTokens::parse(TOKEN).expect("a token");
    service::App {
        rules: StaticRules::new(rules, "events/rules.json"),
        settings: service::Settings {
            signatures: Signatures::Enforce {
                tokens: Arc::new(AnyTokens::Fixed(Arc::new(tokens))),
                public_url: None,
            },
            ledger,
            ..service::Settings::default()
        },
    }
}

/// Runs a future that never waits (every source here is in memory) to its end.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the answer waited on I/O"),
    }
}

/// The handler's work for one callback, piece by piece, as the answer's body.
fn pipeline(rules: &Rules, tokens: &[&str], body: &[u8], signature: &str) -> Option<String> {
    let params = taskrouter::parse_form(body).ok()?;
    if !signature::is_valid(tokens, URL, &params, signature) {
        return None;
    }
    let callback = AssignmentCallback::from_params(params).ok()?;
    let attributes = taskrouter::parse_attributes(&callback.task_attributes)?;
    let task = Task {
        attributes: &attributes,
        queue_sid: callback.task_queue_sid.as_deref(),
        queue_name: None,
        channel: callback.task_channel.as_deref(),
    };
    let decision = rules.decide(&task, FailPolicy::DoNotRecord);
    Some(taskrouter::answer(&decision, Some(&attributes), rules.instruction()).to_json())
}

fn answer(c: &mut Criterion) {
    let callback = Callback::new();
    let rules = Rules::from_json(RULES).expect("the example rules");
    let tokens = [TOKEN];

    let baseline = |body: &[u8]| {
        let params = taskrouter::parse_form(body).ok()?;
        let (_, attributes) = params.iter().find(|(k, _)| k == "TaskAttributes")?;
        taskrouter::parse_attributes(attributes)
    };
    let (allocations, attributes) = counting::allocations(|| baseline(&callback.body));
    assert!(attributes.is_some());
    println!("answer/baseline_form_and_json: {allocations} allocations");
    c.bench_function("answer/baseline_form_and_json", |b| {
        b.iter(|| baseline(black_box(&callback.body)))
    });

    pipeline(&rules, &tokens, &callback.body, &callback.signature);
    let (allocations, body) =
        counting::allocations(|| pipeline(&rules, &tokens, &callback.body, &callback.signature));
    assert_eq!(body.as_deref(), Some(RECORDED));
    println!("answer/pipeline: {allocations} allocations");
    c.bench_function("answer/pipeline", |b| {
        b.iter(|| {
            pipeline(
                &rules,
                &tokens,
                black_box(&callback.body),
                &callback.signature,
            )
        })
    });

    c.bench_function("answer/part_signature_check", |b| {
        b.iter(|| {
            signature::is_valid(
                &tokens,
                URL,
                black_box(&callback.params),
                &callback.signature,
            )
        })
    });

    // The HTTP face's own work on the request Lambda hands over: its checks and the form
    // (`form_parameters`, which includes the form decode of the baseline), the URL a
    // signature covers; and what dropping that request costs.
    c.bench_function("answer/part_face_checks_and_url", |b| {
        let request = callback.request();
        b.iter(|| {
            let params = conditional_recording::handler::form_parameters(black_box(&request));
            let url = conditional_recording::handler::called_url(&request);
            (params.is_ok(), url)
        })
    });
    c.bench_function("answer/part_request_drop", |b| {
        b.iter_batched(|| callback.request(), drop, BatchSize::PerIteration)
    });

    if std::io::stderr().is_terminal() {
        eprintln!(
            "answer/handler skipped: it writes a line to stderr per iteration; \
             run `cargo bench --bench answer 2>/dev/null`"
        );
        return;
    }
    let record = DecisionRecord {
        task_sid: "WT55555555555555555555555555555555",
        reservation_sid: "WR55555555555555555555555555555555",
        task_queue_sid: Some("WQ11111111111111111111111111111111"),
        queue_name: None,
        workspace_sid: Some("WS00000000000000000000000000000000"),
        decision: "record-from-start",
        reason: "no_exclusion_matched",
        rule: None,
        rules_version: Some(7),
        answer: "conference",
        answer_reason: None,
        annotation: None,
        first: None,
        elapsed_us: 25,
        request_id: Some("7k29nGER_XtbKBY="),
        rules_age: Some(Duration::from_secs(12)),
    };
    c.bench_function("answer/part_metrics_line", |b| {
        b.iter(|| conditional_recording::metrics::decision(black_box(&record)))
    });
    let app = app();
    ready(app.handle(callback.request())); // once, so one-time set-up is not counted
    let request = callback.request();
    let (allocations, response) = counting::allocations(|| ready(app.handle(request)));
    assert_eq!(response.status(), 200);
    assert_eq!(response.body().as_ref(), RECORDED.as_bytes());
    println!("answer/part_handler_without_log_lines: {allocations} allocations");
    // Each request is built just before it is handled, as Lambda mode decodes an event and
    // hands it straight over. `part_handler_cold_requests` builds a batch of them ahead
    // (`BatchSize::SmallInput`), so each is handled out of cache, which no request is in the
    // service: the difference is what that alone costs (BENCHMARKS.md).
    let handler = |c: &mut Criterion, name: &str, batch: BatchSize| {
        c.bench_function(name, |b| {
            b.iter_batched(
                || callback.request(),
                |request| ready(app.handle(request)),
                batch,
            )
        });
    };
    // First with no log subscriber (the decision record is written either way; other lines,
    // none on this path, would cost nothing), then as in production.
    handler(
        c,
        "answer/part_handler_cold_requests",
        BatchSize::SmallInput,
    );
    handler(
        c,
        "answer/part_handler_without_log_lines",
        BatchSize::PerIteration,
    );
    conditional_recording::logging::init();
    ready(app.handle(callback.request()));
    let request = callback.request();
    let (allocations, _) = counting::allocations(|| ready(app.handle(request)));
    println!("answer/handler: {allocations} allocations");
    handler(c, "answer/handler", BatchSize::PerIteration);

    // With the in-memory ledger (`LEDGER_TABLE`): the call's first decision is written before
    // the answer goes out, within the ledger's budget, which needs the runtime's timer.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _timer = runtime.enter();
    let app = app_with(Some(MemoryLedger::default()));
    ready(app.handle(callback.request()));
    let request = callback.request();
    let (allocations, response) = counting::allocations(|| ready(app.handle(request)));
    assert_eq!(response.body().as_ref(), RECORDED.as_bytes());
    let written = app
        .settings
        .ledger
        .as_ref()
        .map(|l| l.writes.load(std::sync::atomic::Ordering::Relaxed));
    assert_eq!(
        written,
        Some(2),
        "the first decision, then the same call's again"
    );
    println!("answer/handler_with_memory_ledger: {allocations} allocations");
    c.bench_function("answer/handler_with_memory_ledger", |b| {
        b.iter_batched(
            || callback.request(),
            |request| ready(app.handle(request)),
            BatchSize::PerIteration,
        )
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = answer
}
criterion_main!(benches);
