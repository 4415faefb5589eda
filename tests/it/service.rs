//! The service core in-process, through its ports' in-memory adapters: no HTTP, no network.
//! A face hands it an `Inbound` (the form's parameters, the signature, the URL); it verifies,
//! decides, answers and stamps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use conditional_recording::rules::FailPolicy;
use conditional_recording::service::memory::{Queues, Tasks, Tokens, Voice};
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
) -> App<StaticRules, Queues, Tasks, Tokens, Voice> {
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
            ..Settings::default()
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

fn app_without_directory() -> App<StaticRules, Queues, Tasks, Tokens, Voice> {
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

// ---------------------------------------------------------------------------------------
// Event deliveries (enforcement)

mod deliveries {
    use super::*;
    use conditional_recording::ports::RecordingStatus;
    use conditional_recording::service::memory::{VoiceRecording, VoiceState};
    use conditional_recording::service::{Delivery, Enforcer, EventsInbound, Refusal, Settled};
    use conditional_recording::signature::sha256_hex;

    const EVENTS_URL: &str = "https://cr.example.com/events";
    const CONFERENCE: &str = "CF0123456789abcdef0123456789abcdef";

    /// A call in an excluded queue whose conference is recording.
    fn call() -> Callback {
        let attributes = json!({
            "call_sid": "CA0123456789abcdef0123456789abcdef",
            "direction": "inbound",
            "conference": {"sid": CONFERENCE},
        });
        Callback::new(&attributes.to_string())
    }

    fn voice() -> Voice {
        Voice(Mutex::new(VoiceState {
            recordings: vec![VoiceRecording {
                sid: "RE0123456789abcdef0123456789abcdef".into(),
                of: CONFERENCE.into(),
                status: RecordingStatus::InProgress,
            }],
            ..VoiceState::default()
        }))
    }

    /// Excludes every call: whatever queue the event names, the call is do-not-record.
    fn enforcing(
        callback: &Callback,
        enforcement: bool,
    ) -> App<StaticRules, Queues, Tasks, Tokens, Voice> {
        let rules = r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "value": "inbound"}]}"#;
        let tasks = Tasks(Mutex::new(HashMap::from([(
            callback.get("TaskSid").to_owned(),
            serde_json::from_str::<Value>(callback.get("TaskAttributes")).unwrap(),
        )])));
        app_on(
            rules,
            Settings {
                signatures: Signatures::Enforce {
                    tokens: Arc::new(Tokens(test_tokens())),
                    public_url: None,
                },
                enforcement: enforcement.then(|| Enforcer {
                    annotations: tasks,
                    recordings: voice(),
                    media: conditional_recording::service::media::Media::none(),
                }),
                ..Settings::default()
            },
        )
    }

    fn form(callback: &Callback, event_type: &str) -> Vec<(String, String)> {
        let mut params = vec![("EventType".to_owned(), event_type.to_owned())];
        for name in [
            "AccountSid",
            "WorkspaceSid",
            "TaskSid",
            "ReservationSid",
            "TaskAttributes",
            "TaskQueueSid",
        ] {
            params.push((name.to_owned(), callback.get(name).to_owned()));
        }
        params.push(("TaskChannelUniqueName".into(), "voice".into()));
        params
    }

    fn cloud_event(callback: &Callback) -> Value {
        json!({
            "specversion": "1.0",
            "type": "com.twilio.taskrouter.reservation.accepted",
            "data": {"payload": {
                "account_sid": callback.get("AccountSid"),
                "workspace_sid": callback.get("WorkspaceSid"),
                "task_sid": callback.get("TaskSid"),
                "reservation_sid": callback.get("ReservationSid"),
                "task_attributes": callback.get("TaskAttributes"),
                "task_queue_sid": callback.get("TaskQueueSid"),
                "task_channel_unique_name": "voice",
            }}
        })
    }

    fn leak(text: String) -> &'static str {
        Box::leak(text.into_boxed_str())
    }

    fn form_delivery(
        params: Vec<(String, String)>,
        signature: Option<String>,
    ) -> EventsInbound<'static> {
        EventsInbound {
            delivery: Delivery::Form(params),
            signature: signature.map(leak),
            url: Ok(EVENTS_URL.to_owned()),
            request_id: None,
            started: Instant::now(),
        }
    }

    /// A JSON delivery at `url` (with the body's hash unless `hash` says otherwise).
    fn json_delivery(body: &str, hash: Option<&str>, signed_with: &str) -> EventsInbound<'static> {
        let url = match hash {
            Some(hash) => format!("{EVENTS_URL}?bodySHA256={hash}"),
            None => EVENTS_URL.to_owned(),
        };
        EventsInbound {
            delivery: Delivery::Json(leak(body.to_owned()).as_bytes()),
            signature: Some(leak(signature::sign(signed_with, &url, &[]))),
            url: Ok(url),
            request_id: None,
            started: Instant::now(),
        }
    }

    fn recording(app: &App<StaticRules, Queues, Tasks, Tokens, Voice>) -> Option<RecordingStatus> {
        let enforcer = app.settings.enforcement.as_ref().unwrap();
        enforcer
            .recordings
            .status("RE0123456789abcdef0123456789abcdef")
    }

    #[tokio::test]
    async fn a_signed_workspace_event_is_enforced_and_anything_else_refused() {
        let callback = call();
        let app = enforcing(&callback, true);
        let params = form(&callback, "reservation.accepted");
        let unsigned = app.events(form_delivery(params.clone(), None)).await;
        assert!(
            matches!(unsigned, Err(Refusal::SignatureMissing)),
            "{unsigned:?}"
        );
        let forged = signature::sign("another-token", EVENTS_URL, &params);
        let refused = app
            .events(form_delivery(params.clone(), Some(forged)))
            .await;
        assert!(
            matches!(refused, Err(Refusal::SignatureInvalid)),
            "{refused:?}"
        );
        assert_eq!(
            recording(&app),
            Some(RecordingStatus::InProgress),
            "nothing touched"
        );

        let good = signature::sign(TOKEN, EVENTS_URL, &params);
        let settled = app.events(form_delivery(params, Some(good))).await.unwrap();
        assert_eq!(
            settled,
            Settled {
                enforced: 1,
                ..Settled::default()
            }
        );
        assert_eq!(recording(&app), None, "stopped and deleted");
    }

    #[tokio::test]
    async fn an_event_streams_batch_is_covered_by_its_body_hash_and_read_event_by_event() {
        let callback = call();
        let app = enforcing(&callback, true);
        let body = json!([cloud_event(&callback), {"type": 7}, {"type": "com.twilio.studio.x"}])
            .to_string();
        let hash = sha256_hex(body.as_bytes());

        let other = sha256_hex(b"[]");
        let mismatch = app.events(json_delivery(&body, Some(&other), TOKEN)).await;
        assert!(
            matches!(mismatch, Err(Refusal::BodyMismatch)),
            "{mismatch:?}"
        );
        let unhashed = app.events(json_delivery(&body, None, TOKEN)).await;
        assert!(
            matches!(unhashed, Err(Refusal::BodyUnsigned)),
            "{unhashed:?}"
        );
        let wrong = app
            .events(json_delivery(&body, Some(&hash), "another-token"))
            .await;
        assert!(matches!(wrong, Err(Refusal::SignatureInvalid)), "{wrong:?}");
        assert_eq!(
            recording(&app),
            Some(RecordingStatus::InProgress),
            "nothing touched"
        );

        let settled = app
            .events(json_delivery(&body, Some(&hash), TOKEN))
            .await
            .unwrap();
        assert_eq!(
            settled,
            Settled {
                enforced: 1,
                ignored: 1,
                unreadable: 1,
                unfinished: 0
            }
        );
        assert_eq!(recording(&app), None);

        let broken = app
            .events(json_delivery("{", Some(&sha256_hex(b"{")), TOKEN))
            .await;
        assert!(matches!(broken, Err(Refusal::Events(_))), "{broken:?}");
    }

    #[tokio::test]
    async fn with_enforcement_off_a_signed_delivery_is_acknowledged_and_nothing_happens() {
        let callback = call();
        let app = enforcing(&callback, false);
        let params = form(&callback, "reservation.accepted");
        let good = signature::sign(TOKEN, EVENTS_URL, &params);
        let settled = app
            .events(form_delivery(params.clone(), Some(good)))
            .await
            .unwrap();
        assert_eq!(
            settled,
            Settled {
                ignored: 1,
                ..Settled::default()
            }
        );
        // Signatures are checked all the same.
        let unsigned = app.events(form_delivery(params, None)).await;
        assert!(matches!(unsigned, Err(Refusal::SignatureMissing)));
    }

    #[tokio::test]
    async fn a_failed_stop_leaves_the_delivery_unfinished_for_redelivery() {
        let callback = call();
        let app = enforcing(&callback, true);
        let enforcer = app.settings.enforcement.as_ref().unwrap();
        let state = &enforcer.recordings.0;
        state
            .lock()
            .unwrap()
            .failing_stops
            .push("RE0123456789abcdef0123456789abcdef".into());
        let body = json!([cloud_event(&callback)]).to_string();
        let hash = sha256_hex(body.as_bytes());
        let settled = app
            .events(json_delivery(&body, Some(&hash), TOKEN))
            .await
            .unwrap();
        assert_eq!(settled.unfinished, 1, "{settled:?}");
        state.lock().unwrap().failing_stops.clear();
        let settled = app
            .events(json_delivery(&body, Some(&hash), TOKEN))
            .await
            .unwrap();
        assert_eq!(settled.unfinished, 0, "{settled:?}");
        assert_eq!(recording(&app), None);
    }
}
