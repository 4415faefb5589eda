//! The service core in-process, through its ports' in-memory adapters: no HTTP, no network.
//! A face hands it an `Inbound` (the form's parameters, the signature, the URL); it verifies,
//! decides, answers and stamps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use conditional_recording::rules::FailPolicy;
use conditional_recording::service::memory::{Queues, Tasks, Tokens};
use conditional_recording::service::{
    App, Inbound, Mode, Refusal, Settings, Signatures, UnknownUrl,
};
use conditional_recording::signature;
use conditional_recording::sources::StaticRules;
use serde_json::{Value, json};

use crate::support::{Callback, ENQUEUED_OUTBOUND, INBOUND, TOKEN, app_on, test_tokens};

const URL: &str = "https://cr.example.com/assignment";
const PAYMENTS: &str = r#"{"enabled": true, "exclude_queues": ["Payments"]}"#;

fn service(
    rules: &str,
    queues: Option<Queues>,
    mode: Mode<Tasks>,
) -> App<StaticRules, Queues, Tasks, Tokens> {
    app_on(
        rules,
        Settings {
            fail_policy: FailPolicy::DoNotRecord,
            account_sid: None,
            signatures: Signatures::Enforce {
                tokens: Arc::new(Tokens(test_tokens())),
                public_url: None,
            },
            queue_names: queues,
            mode,
        },
    )
}

fn params(callback: &Callback) -> Vec<(String, String)> {
    form_urlencoded::parse(callback.encode().as_bytes())
        .into_owned()
        .collect()
}

/// The callback as a face hands it over, signed for [`URL`].
fn inbound(callback: &Callback, signature: &str) -> Inbound<'static> {
    Inbound {
        params: params(callback),
        signature: Some(Box::leak(signature.to_owned().into_boxed_str())),
        url: Ok(URL.to_owned()),
        request_id: None,
        started: Instant::now(),
    }
}

fn signed(callback: &Callback) -> Inbound<'static> {
    inbound(callback, &signature::sign(TOKEN, URL, &params(callback)))
}

fn answer(text: String) -> Value {
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_queue_named_in_the_rules_is_looked_up_in_the_directory() {
    let callback = Callback::new(INBOUND);
    let queues = Queues(HashMap::from([(
        callback.get("TaskQueueSid").to_owned(),
        Arc::from("Payments"),
    )]));
    let app = service(PAYMENTS, Some(queues), Mode::Conference);
    let body = app.assignment(signed(&callback)).await.expect("a decision");
    assert_eq!(
        answer(body),
        json!({"instruction": "conference", "conference_record": "do-not-record"})
    );
    // Another queue, not in the directory: the name cannot be had, the fail policy decides.
    let elsewhere = Callback::new(INBOUND);
    let body = app
        .assignment(signed(&elsewhere))
        .await
        .expect("a decision");
    assert_eq!(answer(body)["conference_record"], "do-not-record");
    // No directory at all: the same.
    let without = app_without_directory();
    let body = without
        .assignment(signed(&callback))
        .await
        .expect("a decision");
    assert_eq!(answer(body)["conference_record"], "do-not-record");
}

fn app_without_directory() -> App<StaticRules, Queues, Tasks, Tokens> {
    service(PAYMENTS, None, Mode::Conference)
}

#[tokio::test]
async fn annotate_mode_stamps_the_first_decision_and_keeps_it() {
    let callback = Callback::new(ENQUEUED_OUTBOUND);
    let rules =
        r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "value": "outbound"}]}"#;
    let tasks = Tasks(Mutex::new(HashMap::from([(
        callback.get("TaskSid").to_owned(),
        serde_json::from_str::<Value>(ENQUEUED_OUTBOUND).unwrap(),
    )])));
    let app = service(rules, None, Mode::Annotate(tasks));
    let body = app.assignment(signed(&callback)).await.expect("a decision");
    assert_eq!(answer(body), json!({}));
    let Mode::Annotate(tasks) = &app.settings.mode else {
        unreachable!()
    };
    let stamped = tasks.attributes(callback.get("TaskSid")).unwrap();
    assert_eq!(stamped["conditional_recording"]["record"], false);

    // A later reservation under rules that would record: the first decision stays.
    let stamp = stamped["conditional_recording"].clone();
    let later = service(
        r#"{"enabled": false}"#,
        None,
        Mode::Annotate(Tasks(Mutex::new(HashMap::from([(
            callback.get("TaskSid").to_owned(),
            stamped,
        )])))),
    );
    later
        .assignment(signed(&callback))
        .await
        .expect("a decision");
    let Mode::Annotate(tasks) = &later.settings.mode else {
        unreachable!()
    };
    assert_eq!(
        tasks.attributes(callback.get("TaskSid")).unwrap()["conditional_recording"],
        stamp
    );
}

#[tokio::test]
async fn nothing_is_decided_for_a_callback_that_is_not_signed_for_its_url() {
    let app = service(PAYMENTS, None, Mode::Conference);
    let callback = Callback::new(INBOUND);
    let refusal = |result: Result<String, Refusal>| result.expect_err("refused").to_string();

    let mut missing = signed(&callback);
    missing.signature = None;
    assert_eq!(
        refusal(app.assignment(missing).await),
        "X-Twilio-Signature is missing"
    );

    let forged = inbound(&callback, "dGVzdA==");
    assert_eq!(
        refusal(app.assignment(forged).await),
        "X-Twilio-Signature is not valid for this URL and body"
    );

    let mut elsewhere = signed(&callback);
    elsewhere.url = Ok("https://other.example.com/assignment".into());
    assert!(app.assignment(elsewhere).await.is_err());

    for unknown in [UnknownUrl::NoHost, UnknownUrl::RestApiQuery] {
        let mut no_url = signed(&callback);
        no_url.url = Err(unknown);
        assert!(app.assignment(no_url).await.is_err(), "{unknown:?}");
    }

    // With PUBLIC_URL, only that URL counts, whatever the face rebuilt.
    let mut pinned = service(PAYMENTS, None, Mode::Conference);
    if let Signatures::Enforce { public_url, .. } = &mut pinned.settings.signatures {
        public_url.replace(URL.to_owned());
    }
    let mut rebuilt_otherwise = signed(&callback);
    rebuilt_otherwise.url = Err(UnknownUrl::NoHost);
    assert!(pinned.assignment(rebuilt_otherwise).await.is_ok());
}
