//! What every fuzz target asserts: the documented outcomes (README "Decisions and answers"
//! and "Errors"), checked on each answer the service gives.

use std::sync::{Arc, LazyLock};

use conditional_recording::metrics;
use conditional_recording::rules::{Decision, EXAMPLE_DOCUMENT, FailPolicy, Reason, Rules, Task};
use conditional_recording::sources::StaticRules;
use conditional_recording::sources::tokens::{AnyTokens, AuthTokens};
use conditional_recording::taskrouter;
use conditional_recording::wiring::{App, Settings, Signatures};
use lambda_http::{Body, Response};
use serde_json::Value;

/// The token the signed sample events in `events/` were signed with.
pub const SAMPLE_TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// The outcomes a call may get.
pub const RECORD: &str = "record-from-start";
pub const DO_NOT_RECORD: &str = "do-not-record";

/// Every status the handler may answer with (503 only when tokens were never readable,
/// which no fuzz target configures).
pub const STATUSES: &[u16] = &[200, 400, 403, 404, 405, 413];

/// The documented reason kinds (README "The decision log"): the values of the `Reason`
/// dimension in the metric catalogue.
pub fn reasons() -> &'static [&'static str] {
    metrics::DIMENSIONS
        .iter()
        .find(|d| d.name == "Reason")
        .map(|d| d.values)
        .expect("the catalogue has the Reason dimension")
}

/// One runtime per process: the handler's futures never wait on I/O here.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    });
    RUNTIME.block_on(future)
}

/// The handler on the embedded example rules.
pub fn app(signatures: Signatures, policy: FailPolicy) -> App<StaticRules> {
    let rules = Rules::from_json(EXAMPLE_DOCUMENT).expect("the example document is valid");
    App {
        rules: StaticRules::new(rules, "the embedded example document"),
        settings: Settings {
            fail_policy: policy,
            signatures,
            ..Settings::default()
        },
    }
}

/// Signatures enforced with these tokens, the URL rebuilt from each request.
pub fn enforced(tokens: &[&str]) -> Signatures {
    let text = tokens.join("\n");
    let tokens = AuthTokens::parse(&text).expect("at least one token");
    Signatures::Enforce {
        tokens: Arc::new(AnyTokens::Fixed(Arc::new(tokens))),
        public_url: None,
    }
}

/// Asserts an HTTP answer is one of the documented ones and returns (status, body).
pub fn check_response(response: &Response<Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let text = match response.body() {
        Body::Text(text) => text.as_str(),
        Body::Binary(bytes) => std::str::from_utf8(bytes).expect("a UTF-8 body"),
        Body::Empty => "",
        _ => panic!("an unexpected body kind"),
    };
    assert_eq!(media, "application/json", "status {status}: {text}");
    (status, check_answer(status, text))
}

/// Asserts a status and JSON body text are a documented answer; returns the body.
pub fn check_answer(status: u16, text: &str) -> Value {
    assert!(
        STATUSES.contains(&status),
        "undocumented status {status}: {text}"
    );
    let body: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    let object = body.as_object().expect("every body is a JSON object");
    if status == 200 && object.contains_key("enforced") {
        check_events_body(&body);
    } else if status == 200 {
        check_decision_body(&body);
    } else {
        assert_eq!(
            object.len(),
            1,
            "an error body is {{\"error\": ...}}: {text}"
        );
        let message = object
            .get("error")
            .and_then(Value::as_str)
            .expect("an error message");
        assert!(!message.is_empty());
    }
    body
}

/// `POST /events` answers `200` with what it did to the delivery's events: four counts, none
/// of them unfinished (README "Enforcement").
pub fn check_events_body(body: &Value) {
    let object = body.as_object().expect("a JSON object");
    let keys = ["enforced", "ignored", "unreadable", "unfinished"];
    assert_eq!(object.len(), keys.len(), "{body}");
    for key in keys {
        assert!(
            object.get(key).is_some_and(Value::is_u64),
            "{key} is a count: {body}"
        );
    }
    assert_eq!(
        object["unfinished"], 0,
        "200 means every event's work is done: {body}"
    );
}

/// A 200 body is `{}` (not a call) or a `conference` instruction recording or not.
pub fn check_decision_body(body: &Value) {
    let object = body.as_object().expect("a JSON object");
    if object.is_empty() {
        return;
    }
    assert_eq!(
        object.get("instruction"),
        Some(&Value::from("conference")),
        "{body}"
    );
    let record = object
        .get("conference_record")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(record == RECORD || record == DO_NOT_RECORD, "{body}");
    if record == DO_NOT_RECORD {
        assert!(
            !object.contains_key("record"),
            "a call not recorded never carries `record`: {body}"
        );
    }
}

/// Asserts a decision is consistent with its reason and the fail policy, and that its answer
/// is a documented body carrying the rules' pass-through keys.
pub fn check_decision(rules: &Rules, task: &Task<'_>, policy: FailPolicy, decision: Decision) {
    let reason = decision.reason();
    assert!(reasons().contains(&reason.kind()), "{}", reason.kind());
    assert_eq!(
        decision == Decision::NotACall,
        !rules.is_call(task),
        "only calls get a conference instruction"
    );
    if let Decision::Conference { record, reason } = decision {
        let expected = match reason {
            Reason::Disabled | Reason::Included(_) | Reason::NoExclusionMatched => true,
            Reason::ExcludedByQueue(_) | Reason::ExcludedByAttribute(_) | Reason::NotIncluded => {
                false
            }
            Reason::QueueNameUnresolved => policy == FailPolicy::Record,
            Reason::NotACall | Reason::RulesUnavailable | Reason::AttributesUnparseable => {
                panic!("rules never decide {reason:?}")
            }
        };
        assert_eq!(record, expected, "{reason:?} under {policy:?}");
        if !rules.enabled() {
            assert_eq!(reason, Reason::Disabled, "disabled rules record every call");
        }
        if reason == Reason::QueueNameUnresolved {
            assert!(task.queue_name.is_none() && rules.names_queues());
        }
    }
    let answer = taskrouter::answer(&decision, Some(task.attributes), rules.instruction());
    let bridged = answer.no_instruction().is_none();
    let answer: serde_json::Value =
        serde_json::from_str(&answer.to_json()).expect("the answer is JSON");
    check_decision_body(&answer);
    assert_eq!(
        bridged,
        decision != Decision::NotACall && taskrouter::unbridgeable(Some(task.attributes)).is_none(),
        "an instruction only for a call TaskRouter can bridge"
    );
    if bridged {
        assert_eq!(answer["conference_record"], decision.outcome());
        for (key, value) in rules.instruction() {
            if key != "record" || decision.outcome() == RECORD {
                assert_eq!(&answer[key], value, "pass-through {key}");
            }
        }
    }
}

/// The same rules decide the same task the same way twice: no hidden state.
pub fn decide(rules: &Rules, task: &Task<'_>, policy: FailPolicy) -> Decision {
    let decision = rules.decide(task, policy);
    assert_eq!(decision, rules.decide(task, policy), "deterministic");
    check_decision(rules, task, policy, decision);
    decision
}
