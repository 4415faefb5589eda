//! `POST /events` over HTTP: `serve`'s server in-process on the in-memory task annotations
//! and Voice API, fed both deliveries (the Workspace Event Callback's signed form, and an
//! Event Streams JSON batch signed through its `bodySHA256`), genuine and hostile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use conditional_recording::ports::RecordingStatus;
use conditional_recording::service::memory::{
    Queues, Tasks, Tokens, Voice, VoiceRecording, VoiceState,
};
use conditional_recording::service::{App, Enforcer, Settings, Signatures};
use conditional_recording::signature::{sha256_hex, sign};
use conditional_recording::sources::StaticRules;
use serde_json::{Value, json};

use crate::support::{
    Callback, Http, InProcess, Response, TOKEN, app_on, host, request, test_tokens,
};

const CONFERENCE: &str = "CFfedcba9876543210fedcba9876543210";
const RECORDING: &str = "REfedcba9876543210fedcba9876543210";
/// Every inbound call is excluded, so its recordings must go.
const RULES: &str =
    r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "value": "inbound"}]}"#;

type MemoryApp = App<StaticRules, Queues, Tasks, Tokens, Voice>;

/// An inbound call with its conference, recording.
fn call() -> Callback {
    let attributes = json!({
        "call_sid": "CAfedcba9876543210fedcba9876543210",
        "direction": "inbound",
        "conference": {"sid": CONFERENCE},
    });
    Callback::new(&attributes.to_string())
}

/// The service with enforcement on (unless `off`), for `callback`'s task, its conference
/// recording in progress; callbacks for accounts other than `account` refused, when set.
fn app(callback: &Callback, off: bool, account: Option<&str>) -> MemoryApp {
    let tasks = Tasks(Mutex::new(HashMap::from([(
        callback.get("TaskSid").to_owned(),
        serde_json::from_str::<Value>(callback.get("TaskAttributes")).unwrap(),
    )])));
    let recordings = Voice(Mutex::new(VoiceState {
        recordings: vec![VoiceRecording {
            sid: RECORDING.into(),
            of: CONFERENCE.into(),
            status: RecordingStatus::InProgress,
        }],
        ..VoiceState::default()
    }));
    app_on(
        RULES,
        Settings {
            signatures: Signatures::Enforce {
                tokens: Arc::new(Tokens(test_tokens())),
                public_url: None,
            },
            account_sid: account.map(str::to_owned),
            enforcement: (!off).then_some(Enforcer {
                annotations: tasks,
                recordings,
            }),
            ..Settings::default()
        },
    )
}

/// A server on its own app, and a way to read the app's recording afterwards.
struct Setup {
    server: InProcess,
    app: Arc<MemoryApp>,
}

impl Setup {
    fn start(callback: &Callback, off: bool, account: Option<&str>) -> Setup {
        let app = Arc::new(app(callback, off, account));
        let server = InProcess::start_shared(Arc::clone(&app));
        Setup { server, app }
    }

    fn recording(&self) -> Option<RecordingStatus> {
        let enforcer = self.app.settings.enforcement.as_ref()?;
        enforcer.recordings.status(RECORDING)
    }

    fn events_url(&self, query: &str) -> String {
        format!("http://{}/events{query}", self.server.addr)
    }

    /// A Workspace Event Callback, signed with `token` for the events URL.
    fn post_form(&self, params: &[(String, String)], token: Option<&str>) -> Response {
        let url = self.events_url("");
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let signature = token.map(|token| sign(token, &url, params));
        let mut headers = vec![
            ("Host", host(&url)),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ];
        if let Some(signature) = &signature {
            headers.push(("X-Twilio-Signature", signature));
        }
        self.server
            .send(&request("POST", "/events", &headers, body.as_bytes()))
    }

    /// An Event Streams delivery of `body`, its URL naming `hash`, signed with `token`.
    fn post_json(&self, body: &[u8], hash: &str, token: &str) -> Response {
        let query = format!("?bodySHA256={hash}");
        let url = self.events_url(&query);
        let signature = sign(token, &url, &[]);
        let path = format!("/events{query}");
        self.server.send(&request(
            "POST",
            &path,
            &[
                ("Host", host(&url)),
                ("Content-Type", "application/json"),
                ("X-Twilio-Signature", &signature),
            ],
            body,
        ))
    }
}

fn form(callback: &Callback) -> Vec<(String, String)> {
    let mut params = vec![
        ("EventType".to_owned(), "reservation.accepted".to_owned()),
        ("ResourceType".to_owned(), "reservation".to_owned()),
    ];
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
    params
}

fn cloud_event(callback: &Callback) -> Value {
    json!({
        "specversion": "1.0",
        "type": "com.twilio.taskrouter.reservation.accepted",
        "source": "/v1/Workspaces",
        "id": "EZ0123456789abcdef0123456789abcdef",
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

#[test]
fn a_signed_workspace_event_enforces_and_forged_ones_are_refused_before_any_rest_call() {
    let callback = call();
    let setup = Setup::start(&callback, false, Some(callback.get("AccountSid")));
    let params = form(&callback);

    setup.post_form(&params, None).expect_error(403);
    setup
        .post_form(&params, Some("another-token"))
        .expect_error(403);
    let mut tampered = params.clone();
    tampered.push(("TaskQueueName".into(), "Sales".into()));
    let url = setup.events_url("");
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&tampered)
        .finish();
    let signature = sign(TOKEN, &url, &params);
    setup
        .server
        .send(&request(
            "POST",
            "/events",
            &[
                ("Host", host(&url)),
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("X-Twilio-Signature", &signature),
            ],
            body.as_bytes(),
        ))
        .expect_error(403);
    let mut elsewhere = params.clone();
    for (name, value) in &mut elsewhere {
        if name == "AccountSid" {
            *value = "AC0123456789abcdef0123456789abcdef".into();
        }
    }
    setup.post_form(&elsewhere, Some(TOKEN)).expect_error(403);
    assert_eq!(setup.recording(), Some(RecordingStatus::InProgress));
    let enforcer = setup.app.settings.enforcement.as_ref().unwrap();
    assert!(
        enforcer.recordings.0.lock().unwrap().requests.is_empty(),
        "no REST call for a refused delivery"
    );

    let answer = setup.post_form(&params, Some(TOKEN)).expect_json(200);
    assert_eq!(answer["enforced"], 1, "{answer}");
    assert_eq!(setup.recording(), None, "stopped and deleted");
    // A duplicate changes nothing and is answered alike.
    assert_eq!(
        setup.post_form(&params, Some(TOKEN)).expect_json(200)["enforced"],
        1
    );
}

#[test]
fn an_event_streams_batch_is_checked_against_its_body_and_read_event_by_event() {
    let callback = call();
    let setup = Setup::start(&callback, false, None);
    let body = json!([cloud_event(&callback), {"type": 7}, {"type": "com.twilio.taskrouter.worker.created"}])
        .to_string();
    let hash = sha256_hex(body.as_bytes());

    setup
        .post_json(body.as_bytes(), &sha256_hex(b"[]"), TOKEN)
        .expect_error(403);
    setup
        .post_json(body.as_bytes(), &hash, "another-token")
        .expect_error(403);
    // Unsigned, and signed over a URL that names no body hash.
    let unsigned = |path: &str, signature: Option<&str>| {
        let url = setup.events_url(path.trim_start_matches("/events"));
        let mut headers = vec![("Host", host(&url)), ("Content-Type", "application/json")];
        headers.extend(signature.map(|signature| ("X-Twilio-Signature", signature)));
        setup
            .server
            .send(&request("POST", path, &headers, body.as_bytes()))
    };
    unsigned(&format!("/events?bodySHA256={hash}"), None).expect_error(403);
    let no_hash = sign(TOKEN, &setup.events_url(""), &[]);
    let refused = unsigned("/events", Some(&no_hash)).expect_error(403);
    assert!(refused.contains("bodySHA256"), "{refused}");
    // One event of another account refuses the whole batch.
    let mut elsewhere = cloud_event(&callback);
    elsewhere["data"]["payload"]["account_sid"] = json!("AC0123456789abcdef0123456789abcdee");
    let mixed = json!([cloud_event(&callback), elsewhere]).to_string();
    let account = Setup::start(&callback, false, Some(callback.get("AccountSid")));
    account
        .post_json(mixed.as_bytes(), &sha256_hex(mixed.as_bytes()), TOKEN)
        .expect_error(403);
    assert_eq!(account.recording(), Some(RecordingStatus::InProgress));
    assert_eq!(setup.recording(), Some(RecordingStatus::InProgress));
    for refused in [&setup, &account] {
        let enforcer = refused.app.settings.enforcement.as_ref().unwrap();
        assert!(
            enforcer.recordings.0.lock().unwrap().requests.is_empty(),
            "no REST call for a refused delivery"
        );
    }

    let answer = setup
        .post_json(body.as_bytes(), &hash, TOKEN)
        .expect_json(200);
    assert_eq!(
        answer,
        json!({"enforced": 1, "ignored": 1, "unreadable": 1, "unfinished": 0})
    );
    assert_eq!(setup.recording(), None);
}

#[test]
fn malformed_partial_oversized_and_unknown_deliveries_get_a_clear_4xx() {
    let callback = call();
    let setup = Setup::start(&callback, false, None);
    for body in [&b"{"[..], b"{\"type\": 1}", b"\xff\xfe", b""] {
        let error = setup
            .post_json(body, &sha256_hex(body), TOKEN)
            .expect_error(400);
        assert!(error.contains("JSON") || error.contains("array"), "{error}");
    }
    let big = vec![b' '; 300 * 1024];
    let mut connection = setup.server.connect();
    let writer = connection.send_in_background(request(
        "POST",
        "/events",
        &[("Content-Type", "application/json")],
        &big,
    ));
    connection.response().expect_error(413);
    writer.join().expect("the writer thread");
    let text = setup.server.send(&request(
        "POST",
        "/events",
        &[("Content-Type", "text/plain")],
        b"hello",
    ));
    assert!(text.expect_error(400).contains("application/json"));
    setup
        .server
        .send(&request("GET", "/events", &[], b""))
        .expect_error(405);
    // A form without EventType.
    let mut params = form(&callback);
    params.retain(|(name, _)| name != "EventType");
    assert!(
        setup
            .post_form(&params, Some(TOKEN))
            .expect_error(400)
            .contains("EventType")
    );
    assert_eq!(setup.recording(), Some(RecordingStatus::InProgress));
}

#[test]
fn with_enforcement_off_a_signed_delivery_gets_2xx_and_nothing_happens() {
    let callback = call();
    let setup = Setup::start(&callback, true, None);
    let answer = setup
        .post_form(&form(&callback), Some(TOKEN))
        .expect_json(200);
    assert_eq!(answer["enforced"], 0, "{answer}");
    setup.post_form(&form(&callback), None).expect_error(403);
}

#[test]
fn a_failed_stop_answers_503_and_a_redelivery_finishes_the_job() {
    let callback = call();
    let setup = Setup::start(&callback, false, None);
    let enforcer = setup.app.settings.enforcement.as_ref().unwrap();
    let state = &enforcer.recordings.0;
    state.lock().unwrap().failing_stops.push(RECORDING.into());
    let body = json!([cloud_event(&callback)]).to_string();
    let hash = sha256_hex(body.as_bytes());
    let answer = setup
        .post_json(body.as_bytes(), &hash, TOKEN)
        .expect_json(503);
    assert_eq!(answer["unfinished"], 1, "{answer}");
    assert_eq!(setup.recording(), Some(RecordingStatus::InProgress));
    state.lock().unwrap().failing_stops.clear();
    setup
        .post_json(body.as_bytes(), &hash, TOKEN)
        .expect_json(200);
    assert_eq!(setup.recording(), None);
}

/// End to end through `wiring`, as the binary builds it: the real TaskRouter and Voice API
/// adapters against the stand-in. The Flex dialer's call: no `call_sid`, no `conference.sid`
/// yet, so its conference is found by name; the customer's leg is recorded too.
#[test]
fn a_dialer_call_loses_its_recordings_through_the_real_adapters() {
    use crate::standin::{Of, ServeWithApi};

    let callback = Callback::new(crate::support::OUTBOUND);
    let (account, workspace, task) = (
        callback.get("AccountSid").to_owned(),
        callback.get("WorkspaceSid").to_owned(),
        callback.get("TaskSid").to_owned(),
    );
    let customer = "CA000000000000000000000000000000cc";
    let rules =
        r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "value": "outbound"}]}"#;
    let setup = ServeWithApi::start(rules, &[]);
    let standin = &setup.standin;
    standin.add_credentials(&account, TOKEN);
    standin.add_task(&workspace, &task, callback.get("TaskAttributes"));
    standin.add_conference(&account, CONFERENCE, &task, "in-progress");
    standin.add_participant(CONFERENCE, customer);
    standin.add_recording(
        &account,
        Of::Conference(CONFERENCE.into()),
        RECORDING,
        "in-progress",
    );
    let leg = "RE000000000000000000000000000000cc";
    standin.add_recording(&account, Of::Call(customer.into()), leg, "completed");

    let body = json!([cloud_event(&callback)]).to_string();
    let query = format!("?bodySHA256={}", sha256_hex(body.as_bytes()));
    let url = format!("http://{}/events{query}", setup.server.addr);
    let signature = sign(TOKEN, &url, &[]);
    let answer = setup
        .server
        .send(&request(
            "POST",
            &format!("/events{query}"),
            &[
                ("Host", host(&url)),
                ("Content-Type", "application/json"),
                ("X-Twilio-Signature", &signature),
            ],
            body.as_bytes(),
        ))
        .expect_json(200);
    assert_eq!(answer["enforced"], 1, "{answer}");
    assert_eq!(
        standin.recording_status(RECORDING),
        None,
        "the conference's, deleted"
    );
    assert_eq!(
        standin.recording_status(leg),
        None,
        "the customer's leg, deleted"
    );
    let stamped = standin
        .task_attributes(&workspace, &task)
        .expect("the task");
    assert_eq!(
        stamped["conditional_recording"]["record"], false,
        "{stamped}"
    );

    let (_, logs) = setup.stop();
    let actions: Vec<Value> = logs
        .json()
        .into_iter()
        .filter(|line| line["message"] == "enforcement")
        .collect();
    let kinds: Vec<&str> = actions
        .iter()
        .filter_map(|l| l["action"].as_str())
        .collect();
    assert_eq!(kinds, ["stopped", "deleted", "deleted"], "{actions:?}");
    for line in &actions {
        assert_eq!(line["first"], "do-not-record", "{line}");
        assert_eq!(line["Enforcements"], 1, "{line}");
    }
    let text = logs.text();
    assert!(!text.contains(TOKEN), "the token reached a log:\n{text}");
    for data in crate::support::CALLER_DATA {
        assert!(!text.contains(data), "{data} reached a log");
    }
}
