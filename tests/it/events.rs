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
                media: conditional_recording::service::media::Media::none(),
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
        self.post_json_as("application/json", body, hash, token)
    }

    /// The same, sent as `content_type`.
    fn post_json_as(&self, content_type: &str, body: &[u8], hash: &str, token: &str) -> Response {
        let query = format!("?bodySHA256={hash}");
        let url = self.events_url(&query);
        let signature = sign(token, &url, &[]);
        let path = format!("/events{query}");
        self.server.send(&request(
            "POST",
            &path,
            &[
                ("Host", host(&url)),
                ("Content-Type", content_type),
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

/// The media types an Event Streams sink may send, with parameters as Twilio might add them.
const EVENT_STREAMS_TYPES: [&str; 5] = [
    "application/json",
    "application/json; charset=utf-8",
    "application/cloudevents+json",
    "Application/CloudEvents+JSON; charset=UTF-8",
    "application/cloudevents-batch+json; charset=utf-8",
];

#[test]
fn a_sink_without_batching_posts_one_cloud_event_and_it_is_enforced_under_each_media_type() {
    let callback = call();
    for content_type in EVENT_STREAMS_TYPES {
        let setup = Setup::start(&callback, false, None);
        let one = cloud_event(&callback).to_string();
        let hash = sha256_hex(one.as_bytes());
        // Signed over another body's hash, or with another token: refused, nothing touched.
        setup
            .post_json_as(content_type, one.as_bytes(), &sha256_hex(b"{}"), TOKEN)
            .expect_error(403);
        setup
            .post_json_as(content_type, one.as_bytes(), &hash, "another-token")
            .expect_error(403);
        assert_eq!(
            setup.recording(),
            Some(RecordingStatus::InProgress),
            "{content_type}"
        );

        let answer = setup
            .post_json_as(content_type, one.as_bytes(), &hash, TOKEN)
            .expect_json(200);
        assert_eq!(
            answer,
            json!({"enforced": 1, "ignored": 0, "unreadable": 0, "unfinished": 0}),
            "{content_type}"
        );
        assert_eq!(
            setup.recording(),
            None,
            "{content_type}: stopped and deleted"
        );

        // A batch is read the same under each type.
        let batch = json!([cloud_event(&callback)]).to_string();
        let answer = setup
            .post_json_as(
                content_type,
                batch.as_bytes(),
                &sha256_hex(batch.as_bytes()),
                TOKEN,
            )
            .expect_json(200);
        assert_eq!(answer["enforced"], 1, "{content_type}: {answer}");
    }
}

#[test]
fn malformed_partial_oversized_and_unknown_deliveries_get_a_clear_4xx() {
    let callback = call();
    let setup = Setup::start(&callback, false, None);
    for body in [&b"{"[..], b"\"an event\"", b"42", b"null", b"\xff\xfe", b""] {
        let error = setup
            .post_json(body, &sha256_hex(body), TOKEN)
            .expect_error(400);
        assert!(error.contains("JSON") || error.contains("array"), "{error}");
    }
    // One object that is no CloudEvent is one unreadable event, as in a batch.
    let object = br#"{"type": 1}"#;
    let answer = setup
        .post_json(object, &sha256_hex(object), TOKEN)
        .expect_json(200);
    assert_eq!(answer["unreadable"], 1, "{answer}");
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
    let refused = text.expect_error(400);
    for media in ["application/json", "application/cloudevents+json"] {
        assert!(refused.contains(media), "{refused}");
    }
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
    let actions: Vec<Value> = logs.with_message("enforcement");
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

// ---------------------------------------------------------------------------------------
// End to end: the binary's real TaskRouter and Voice API adapters against the stand-in, each
// case in both deliveries.

mod through_the_api {
    use serde_json::{Value, json};

    use conditional_recording::enforcement::{STILL_PROCESSING, TASK_GONE};
    use conditional_recording::signature::{sha256_hex, sign};

    use crate::standin::{Fault, Of, Recorded, ServeWithApi, StandIn};
    use crate::support::{Callback, Http, INBOUND, Response, TOKEN, host, request};

    /// Calls routed to this queue are not recorded; any other queue records them.
    const PAYMENTS: &str = "WQ0000000000000000000000000000e2e1";
    /// The customer's leg (`call_sid`) and the agent's, the conference's other participant.
    const CUSTOMER: &str = "CA0000000000000000000000000000e2c1";
    const AGENT: &str = "CA0000000000000000000000000000e2a1";
    /// Recordings: the conference's, the customer's leg's, the agent's leg's.
    const ON_CONFERENCE: &str = "RE0000000000000000000000000000e2f1";
    const ON_CUSTOMER: &str = "RE0000000000000000000000000000e2c1";
    const ON_AGENT: &str = "RE0000000000000000000000000000e2a1";

    /// The two ways TaskRouter delivers events.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Form {
        /// The Workspace Event Callback: one event, a signed form; never redelivered.
        Workspace,
        /// An Event Streams webhook: a signed JSON batch, redelivered after a `503`.
        Streams,
    }

    const BOTH: [Form; 2] = [Form::Workspace, Form::Streams];

    /// One inbound call in its conference with an agent, routed through the stand-in.
    struct Routed {
        setup: ServeWithApi,
        callback: Callback,
        conference: String,
        form: Form,
    }

    impl Routed {
        /// The call's task on the stand-in, its TaskAttributes stamped with `stamp` (the
        /// first decision) unless `None`.
        fn start(form: Form, stamp: Option<bool>) -> Routed {
            let callback = Callback::new(INBOUND);
            let conference = format!("CF{}", &callback.task_sid()[2..]);
            let rules = format!(r#"{{"enabled": true, "exclude_queues": ["{PAYMENTS}"]}}"#);
            let setup = ServeWithApi::start(&rules, &[]);
            let routed = Routed {
                setup,
                callback,
                conference,
                form,
            };
            let standin = &routed.setup.standin;
            standin.add_credentials(routed.account(), TOKEN);
            let attributes = routed.attributes(stamp).to_string();
            standin.add_task(routed.workspace(), routed.task(), &attributes);
            standin.add_conference(
                routed.account(),
                &routed.conference,
                routed.task(),
                "in-progress",
            );
            // The customer's leg is the task's `call_sid`; the agent's, a participant's.
            standin.add_participant(&routed.conference, AGENT);
            routed
        }

        /// Where the conference's recordings are stopped.
        fn conference_recordings(&self) -> String {
            format!(
                "/2010-04-01/Accounts/{}/Conferences/{}/Recordings/",
                self.account(),
                self.conference
            )
        }

        fn standin(&self) -> &StandIn {
            &self.setup.standin
        }

        fn account(&self) -> &str {
            self.callback.get("AccountSid")
        }

        fn workspace(&self) -> &str {
            self.callback.get("WorkspaceSid")
        }

        fn task(&self) -> &str {
            self.callback.task_sid()
        }

        /// The queue that records its calls: where the task was first routed.
        fn sales(&self) -> &str {
            self.callback.get("TaskQueueSid")
        }

        /// The call's TaskAttributes as Flex writes them, with the stamp when given.
        fn attributes(&self, stamp: Option<bool>) -> Value {
            let mut attributes: Value = serde_json::from_str(INBOUND).expect("the fixture");
            attributes["call_sid"] = json!(CUSTOMER);
            attributes["conference"] = json!({
                "sid": self.conference,
                "participants": {"customer": CUSTOMER, "worker": AGENT},
            });
            if let Some(record) = stamp {
                attributes["conditional_recording"] =
                    json!({"record": record, "reason": "decided at assignment"});
            }
            attributes
        }

        fn record(&self, of: Of, sid: &str, status: &str) {
            self.standin()
                .add_recording(self.account(), of, sid, status);
        }

        fn record_conference(&self, sid: &str, status: &str) {
            self.record(Of::Conference(self.conference.clone()), sid, status);
        }

        /// One event of this type about the task, in `queue`, as the form's parameters.
        fn workspace_event(
            &self,
            kind: &str,
            queue: &str,
            attributes: &Value,
        ) -> Vec<(String, String)> {
            let mut params = vec![
                ("EventType".to_owned(), kind.to_owned()),
                (
                    "ResourceType".to_owned(),
                    kind.split('.').next().unwrap_or_default().to_owned(),
                ),
                ("TaskAttributes".to_owned(), attributes.to_string()),
                ("TaskQueueSid".to_owned(), queue.to_owned()),
                ("TaskChannelUniqueName".to_owned(), "voice".to_owned()),
            ];
            for name in ["AccountSid", "WorkspaceSid", "TaskSid", "ReservationSid"] {
                params.push((name.to_owned(), self.callback.get(name).to_owned()));
            }
            params
        }

        /// The same event as Event Streams' CloudEvent.
        fn cloud_event(&self, kind: &str, queue: &str, attributes: &Value) -> Value {
            json!({
                "specversion": "1.0",
                "type": format!("com.twilio.taskrouter.{kind}"),
                "source": format!("/v1/Workspaces/{}", self.workspace()),
                "id": format!("EZ{}", &self.task()[2..]),
                "data": {"payload": {
                    "account_sid": self.account(),
                    "workspace_sid": self.workspace(),
                    "task_sid": self.task(),
                    "reservation_sid": self.callback.reservation_sid(),
                    "task_attributes": attributes.to_string(),
                    "task_queue_sid": queue,
                    "task_channel_unique_name": "voice",
                }}
            })
        }

        /// A Workspace Event Callback, signed for the events URL.
        fn post_workspace_event(&self, params: &[(String, String)]) -> Response {
            let addr = self.setup.server.addr;
            self.setup
                .server
                .send(&crate::support::workspace_event_request(addr, params))
        }

        /// An Event Streams batch, signed over the URL that names its `bodySHA256`.
        fn post_event_streams(&self, events: &[Value]) -> Response {
            let body = Value::Array(events.to_vec()).to_string();
            let query = format!("?bodySHA256={}", sha256_hex(body.as_bytes()));
            let url = format!("http://{}/events{query}", self.setup.server.addr);
            let signature = sign(TOKEN, &url, &[]);
            self.setup.server.send(&request(
                "POST",
                &format!("/events{query}"),
                &[
                    ("Host", host(&url)),
                    ("Content-Type", "application/json"),
                    ("X-Twilio-Signature", &signature),
                ],
                body.as_bytes(),
            ))
        }

        /// One event, in this case's form.
        fn deliver(&self, kind: &str, queue: &str, attributes: &Value) -> Response {
            match self.form {
                Form::Workspace => {
                    self.post_workspace_event(&self.workspace_event(kind, queue, attributes))
                }
                Form::Streams => {
                    self.post_event_streams(&[self.cloud_event(kind, queue, attributes)])
                }
            }
        }

        /// What the Voice API was asked to change: `stop RE...` and `delete RE...`.
        fn writes(&self) -> Vec<String> {
            writes(self.standin())
        }

        /// Stops the server; the stand-in and the `enforcement` lines, in order.
        fn finish(self) -> (StandIn, Vec<Value>) {
            let (standin, logs) = self.setup.stop();
            let text = logs.text();
            assert!(!text.contains(TOKEN), "the token reached a log:\n{text}");
            for data in crate::support::CALLER_DATA {
                assert!(!text.contains(data), "{data} reached a log");
            }
            let lines = logs.with_message("enforcement");
            (standin, lines)
        }
    }

    /// Each Voice API stop and delete sent, as `stop RE...` or `delete RE...`.
    fn writes(standin: &StandIn) -> Vec<String> {
        standin
            .voice_requests()
            .iter()
            .filter_map(|r| {
                let recording = r.path().rsplit('/').next()?.strip_suffix(".json")?;
                match r.method.as_str() {
                    "POST" if r.form_value("Status").as_deref() == Some("stopped") => {
                        Some(format!("stop {recording}"))
                    }
                    "DELETE" => Some(format!("delete {recording}")),
                    _ => None,
                }
            })
            .collect()
    }

    /// `(action, recording_sid, cause)` of each line.
    fn actions(lines: &[Value]) -> Vec<(String, String, String)> {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        lines
            .iter()
            .map(|l| {
                (
                    text(&l["action"]),
                    text(&l["recording_sid"]),
                    text(&l["cause"]),
                )
            })
            .collect()
    }

    fn done(action: &str, recording: &str) -> (String, String, String) {
        (action.to_owned(), recording.to_owned(), String::new())
    }

    fn failed(recording: &str, cause: &str) -> (String, String, String) {
        ("failed".to_owned(), recording.to_owned(), cause.to_owned())
    }

    /// The task's requests to TaskRouter, as `GET`/`POST`.
    fn task_methods(standin: &StandIn, routed_task: (&str, &str)) -> Vec<String> {
        standin
            .task_requests(routed_task.0, routed_task.1)
            .iter()
            .map(|r: &Recorded| r.method.clone())
            .collect()
    }

    /// The first decision is record; a transfer moves the call into Payments: what is being
    /// recorded stops there, and what was recorded stays.
    #[test]
    fn a_recorded_call_moved_into_an_excluded_queue_is_stopped_and_not_deleted() {
        for form in BOTH {
            let routed = Routed::start(form, Some(true));
            routed.record_conference(ON_CONFERENCE, "in-progress");
            routed.record(Of::Call(CUSTOMER.into()), ON_CUSTOMER, "completed");
            let stamped = routed.attributes(Some(true));

            let answer = routed.deliver("reservation.accepted", routed.sales(), &stamped);
            assert_eq!(answer.expect_json(200)["enforced"], 1, "{form:?}");
            assert!(
                routed.standin().voice_requests().is_empty(),
                "{form:?}: untouched"
            );
            routed
                .deliver("reservation.accepted", PAYMENTS, &stamped)
                .expect_json(200);
            assert_eq!(
                routed.writes(),
                [format!("stop {ON_CONFERENCE}")],
                "{form:?}"
            );

            let task = (routed.workspace().to_owned(), routed.task().to_owned());
            let (standin, lines) = routed.finish();
            assert_eq!(
                standin.recording_status(ON_CONFERENCE).as_deref(),
                Some("stopped")
            );
            assert_eq!(
                standin.recording_status(ON_CUSTOMER).as_deref(),
                Some("completed")
            );
            assert!(
                task_methods(&standin, (&task.0, &task.1)).is_empty(),
                "stamped already"
            );
            assert_eq!(
                actions(&lines),
                [done("stopped", ON_CONFERENCE)],
                "{form:?}"
            );
            assert_eq!(lines[0]["first"], "record-from-start", "{}", lines[0]);
            assert_eq!(lines[0]["now"], "do-not-record", "{}", lines[0]);
            assert_eq!(
                lines[0]["event_type"], "reservation.accepted",
                "{}",
                lines[0]
            );
        }
    }

    /// First routed to Payments (unstamped: the first event stamps do-not-record), then
    /// transferred to Sales, where the Flex UI records the agent's new leg: the first
    /// decision holds, the stamp is never overwritten, and the new recording goes too.
    #[test]
    fn a_do_not_record_call_transferred_into_a_recording_queue_keeps_losing_its_recordings() {
        for form in BOTH {
            let routed = Routed::start(form, None);
            routed.record_conference(ON_CONFERENCE, "in-progress");
            let unstamped = routed.attributes(None);
            routed
                .deliver("reservation.accepted", PAYMENTS, &unstamped)
                .expect_json(200);
            let stamp = |routed: &Routed| {
                let task = routed
                    .standin()
                    .task_attributes(routed.workspace(), routed.task());
                task.expect("the task")["conditional_recording"].clone()
            };
            let first = stamp(&routed);
            assert_eq!(first["record"], false, "{form:?}: {first}");

            routed.record(Of::Call(AGENT.into()), ON_AGENT, "in-progress");
            // The transfer's events may carry attributes from before the stamp.
            routed
                .deliver("task.transfer-initiated", routed.sales(), &unstamped)
                .expect_json(200);
            routed
                .deliver(
                    "reservation.accepted",
                    routed.sales(),
                    &routed.attributes(Some(false)),
                )
                .expect_json(200);
            assert_eq!(
                stamp(&routed),
                first,
                "{form:?}: the first decision stays as written"
            );
            assert_eq!(
                routed.writes(),
                [
                    format!("stop {ON_CONFERENCE}"),
                    format!("delete {ON_CONFERENCE}"),
                    format!("stop {ON_AGENT}"),
                    format!("delete {ON_AGENT}"),
                ],
                "{form:?}"
            );

            let task = (routed.workspace().to_owned(), routed.task().to_owned());
            let (standin, lines) = routed.finish();
            assert_eq!(standin.recording_status(ON_CONFERENCE), None);
            assert_eq!(standin.recording_status(ON_AGENT), None);
            // Stamped once; the transfer's event read the stamp and wrote nothing.
            assert_eq!(
                task_methods(&standin, (&task.0, &task.1)),
                ["GET", "POST", "GET"]
            );
            assert_eq!(
                actions(&lines),
                [
                    done("stopped", ON_CONFERENCE),
                    done("deleted", ON_CONFERENCE),
                    done("stopped", ON_AGENT),
                    done("deleted", ON_AGENT),
                    done("none_found", ""),
                ],
                "{form:?}"
            );
            for line in &lines {
                assert_eq!(line["first"], "do-not-record", "{line}");
            }
            assert_eq!(lines[2]["now"], "record-from-start", "{}", lines[2]);
            assert_eq!(
                lines[2]["event_type"], "task.transfer-initiated",
                "{}",
                lines[2]
            );
        }
    }

    /// No conference recording: the customer's leg (the task's `call_sid`, no longer a
    /// participant) and the agent's (a participant's call) are recorded, and both go.
    #[test]
    fn recordings_on_the_customers_leg_and_on_a_participants_call_are_found_and_removed() {
        for form in BOTH {
            let routed = Routed::start(form, Some(false));
            routed.record(Of::Call(CUSTOMER.into()), ON_CUSTOMER, "in-progress");
            routed.record(Of::Call(AGENT.into()), ON_AGENT, "completed");
            let answer = routed.deliver(
                "reservation.accepted",
                routed.sales(),
                &routed.attributes(Some(false)),
            );
            assert_eq!(answer.expect_json(200)["unfinished"], 0, "{form:?}");

            let account = routed.account().to_owned();
            let (standin, lines) = routed.finish();
            let listed: Vec<String> = standin
                .voice_requests()
                .iter()
                .filter(|r| r.method == "GET" && r.path().ends_with("/Recordings.json"))
                .map(|r| r.path().to_owned())
                .collect();
            for call in [AGENT, CUSTOMER] {
                let path = format!("/2010-04-01/Accounts/{account}/Calls/{call}/Recordings.json");
                assert!(listed.contains(&path), "{form:?}: {path} in {listed:?}");
            }
            assert_eq!(standin.recording_status(ON_CUSTOMER), None, "{form:?}");
            assert_eq!(standin.recording_status(ON_AGENT), None, "{form:?}");
            assert_eq!(
                writes(&standin),
                [
                    format!("delete {ON_AGENT}"),
                    format!("stop {ON_CUSTOMER}"),
                    format!("delete {ON_CUSTOMER}"),
                ]
            );
            assert_eq!(
                actions(&lines),
                [
                    done("deleted", ON_AGENT),
                    done("stopped", ON_CUSTOMER),
                    done("deleted", ON_CUSTOMER),
                ],
                "{form:?}"
            );
        }
    }

    /// The first event finds nothing (the Flex UI has not started recording yet); a later
    /// event finds what started in between.
    #[test]
    fn a_recording_that_starts_after_the_first_event_is_removed_by_a_later_one() {
        for form in BOTH {
            let routed = Routed::start(form, Some(false));
            let stamped = routed.attributes(Some(false));
            routed
                .deliver("reservation.accepted", routed.sales(), &stamped)
                .expect_json(200);
            assert!(routed.writes().is_empty(), "{form:?}");
            routed.record_conference(ON_CONFERENCE, "in-progress");
            routed
                .deliver("reservation.wrapup", routed.sales(), &stamped)
                .expect_json(200);

            let (standin, lines) = routed.finish();
            assert_eq!(standin.recording_status(ON_CONFERENCE), None, "{form:?}");
            assert_eq!(
                actions(&lines),
                [
                    done("none_found", ""),
                    done("stopped", ON_CONFERENCE),
                    done("deleted", ON_CONFERENCE),
                ],
                "{form:?}"
            );
            assert_eq!(lines[1]["event_type"], "reservation.wrapup", "{}", lines[1]);
        }
    }

    /// A stop the Voice API refuses with `fault`: `503`, the recording left running and not
    /// deleted; the redelivery (the same batch, or the form's next event) finishes the job.
    fn a_refused_stop_is_finished_by_a_redelivery(fault: Fault, cause: &str) {
        for form in BOTH {
            let routed = Routed::start(form, Some(false));
            routed.record_conference(ON_CONFERENCE, "in-progress");
            let stamped = routed.attributes(Some(false));
            routed.standin().fail_next_at(
                "POST",
                &routed.conference_recordings(),
                1,
                fault.clone(),
            );
            let answer = routed.deliver("reservation.accepted", routed.sales(), &stamped);
            assert_eq!(answer.expect_json(503)["unfinished"], 1, "{form:?}");
            let running = routed.standin().recording_status(ON_CONFERENCE);
            assert_eq!(running.as_deref(), Some("in-progress"), "{form:?}");
            assert_eq!(
                routed.writes(),
                [format!("stop {ON_CONFERENCE}")],
                "no delete"
            );

            let again = match form {
                Form::Streams => "reservation.accepted",
                Form::Workspace => "task.wrapup",
            };
            routed
                .deliver(again, routed.sales(), &stamped)
                .expect_json(200);
            let (standin, lines) = routed.finish();
            assert_eq!(standin.recording_status(ON_CONFERENCE), None, "{form:?}");
            assert_eq!(
                actions(&lines),
                [
                    failed(ON_CONFERENCE, cause),
                    done("stopped", ON_CONFERENCE),
                    done("deleted", ON_CONFERENCE),
                ],
                "{form:?}"
            );
            assert_eq!(lines[0]["level"], "WARN", "{}", lines[0]);
            assert_eq!(lines[0]["Action"], "failed", "{}", lines[0]);
        }
    }

    #[test]
    fn a_429_with_retry_after_answers_503_and_a_redelivery_finishes_the_job() {
        a_refused_stop_is_finished_by_a_redelivery(
            Fault::RateLimited(Some("1".into())),
            "Voice API answered 429 on stop (retry after 1 s)",
        );
    }

    #[test]
    fn a_500_on_stop_leaves_the_recording_running_and_a_redelivery_finishes_the_job() {
        a_refused_stop_is_finished_by_a_redelivery(
            Fault::Status(500),
            "Voice API answered 500 on stop",
        );
    }

    /// A stop Twilio carries out but answers too late: the recording is stopped, yet nothing
    /// claims so, and nothing is deleted on the strength of it. The redelivery finds it
    /// stopped and deletes it without stopping it again.
    #[test]
    fn a_stop_answered_too_late_is_not_claimed_as_done() {
        for form in BOTH {
            let routed = Routed::start(form, Some(false));
            routed.record_conference(ON_CONFERENCE, "in-progress");
            let stamped = routed.attributes(Some(false));
            let slow = Fault::Delay(std::time::Duration::from_secs(3));
            routed
                .standin()
                .fail_next_at("POST", &routed.conference_recordings(), 1, slow);
            routed
                .deliver("reservation.accepted", routed.sales(), &stamped)
                .expect_json(503);
            let stopped = routed.standin().recording_status(ON_CONFERENCE);
            assert_eq!(stopped.as_deref(), Some("stopped"), "{form:?}");
            assert_eq!(
                routed.writes(),
                [format!("stop {ON_CONFERENCE}")],
                "{form:?}"
            );

            routed
                .deliver("reservation.wrapup", routed.sales(), &stamped)
                .expect_json(200);
            let (standin, lines) = routed.finish();
            assert_eq!(standin.recording_status(ON_CONFERENCE), None, "{form:?}");
            assert_eq!(
                writes(&standin),
                [
                    format!("stop {ON_CONFERENCE}"),
                    format!("delete {ON_CONFERENCE}")
                ],
                "{form:?}"
            );
            assert_eq!(
                actions(&lines),
                [
                    failed(
                        ON_CONFERENCE,
                        "no answer from the Voice API within 1500 ms on stop"
                    ),
                    done("deleted", ON_CONFERENCE),
                ],
                "{form:?}"
            );
        }
    }

    /// Every Voice API read answers slowly, each within its own limit but together past the
    /// delivery's 4 s: `503`, and not one recording claimed, stopped or deleted.
    #[test]
    fn a_voice_api_too_slow_for_the_budget_answers_503_with_nothing_half_done() {
        for form in BOTH {
            let routed = Routed::start(form, Some(false));
            routed.record_conference(ON_CONFERENCE, "in-progress");
            routed.record(Of::Call(CUSTOMER.into()), ON_CUSTOMER, "completed");
            let slow = Fault::Delay(std::time::Duration::from_millis(1200));
            routed
                .standin()
                .fail_next_at("GET", "/2010-04-01/", 4, slow);
            let stamped = routed.attributes(Some(false));
            let answer = routed.deliver("reservation.accepted", routed.sales(), &stamped);
            assert_eq!(answer.expect_json(503)["unfinished"], 1, "{form:?}");
            assert!(
                routed.writes().is_empty(),
                "{form:?}: nothing stopped or deleted"
            );
            let running = routed.standin().recording_status(ON_CONFERENCE);
            assert_eq!(running.as_deref(), Some("in-progress"), "{form:?}");

            let (standin, lines) = routed.finish();
            assert_eq!(
                standin.recording_status(ON_CUSTOMER).as_deref(),
                Some("completed")
            );
            assert_eq!(lines.len(), 1, "{form:?}: {lines:?}");
            assert_eq!(lines[0]["action"], "failed", "{}", lines[0]);
            assert!(lines[0]["recording_sid"].is_null(), "{}", lines[0]);
            // Which limit is reached first depends on the machine's load; either is a
            // slow answer, and either leaves the delivery unfinished.
            let cause = lines[0]["cause"].as_str().unwrap_or_default();
            assert!(
                cause == "the delivery's 4000 ms ran out"
                    || cause == "no answer from the Voice API within 1500 ms on list",
                "{cause}"
            );
        }
    }

    /// Event Streams delivers a batch twice, its events out of order; the form's events come
    /// late and twice. The end state is the same, with one stamp, one stop and one delete
    /// per recording, and nothing written after that.
    #[test]
    fn duplicates_and_events_out_of_order_are_harmless() {
        for form in BOTH {
            let routed = Routed::start(form, None);
            routed.record_conference(ON_CONFERENCE, "in-progress");
            routed.record(Of::Call(CUSTOMER.into()), ON_CUSTOMER, "completed");
            let unstamped = routed.attributes(None);
            let kinds = [
                "task.completed",
                "reservation.accepted",
                "reservation.wrapup",
            ];
            match form {
                Form::Streams => {
                    let batch: Vec<Value> = kinds
                        .iter()
                        .map(|kind| routed.cloud_event(kind, PAYMENTS, &unstamped))
                        .collect();
                    for _ in 0..2 {
                        let answer = routed.post_event_streams(&batch).expect_json(200);
                        assert_eq!(answer["enforced"], 3, "{answer}");
                    }
                }
                Form::Workspace => {
                    for kind in kinds.iter().chain(&kinds) {
                        routed.deliver(kind, PAYMENTS, &unstamped).expect_json(200);
                    }
                }
            }
            let task = (routed.workspace().to_owned(), routed.task().to_owned());
            let (standin, lines) = routed.finish();
            assert_eq!(standin.recording_status(ON_CONFERENCE), None, "{form:?}");
            assert_eq!(standin.recording_status(ON_CUSTOMER), None, "{form:?}");
            assert_eq!(
                writes(&standin),
                [
                    format!("stop {ON_CONFERENCE}"),
                    format!("delete {ON_CONFERENCE}"),
                    format!("delete {ON_CUSTOMER}"),
                ],
                "{form:?}"
            );
            let methods = task_methods(&standin, (&task.0, &task.1));
            assert_eq!(
                methods.iter().filter(|m| *m == "POST").count(),
                1,
                "{methods:?}"
            );
            let stamp = standin.task_attributes(&task.0, &task.1).expect("the task");
            assert_eq!(stamp["conditional_recording"]["record"], false);
            assert_eq!(
                actions(&lines),
                [
                    done("stopped", ON_CONFERENCE),
                    done("deleted", ON_CONFERENCE),
                    done("deleted", ON_CUSTOMER),
                    done("none_found", ""),
                    done("none_found", ""),
                    done("none_found", ""),
                    done("none_found", ""),
                    done("none_found", ""),
                ],
                "{form:?}"
            );
        }
    }

    /// A recording gone before its stop or its delete (another delivery got there first):
    /// `404` is done, not a failure.
    #[test]
    fn a_404_on_stop_or_delete_counts_as_done() {
        for form in BOTH {
            let routed = Routed::start(form, Some(false));
            routed.record_conference(ON_CONFERENCE, "in-progress");
            let standin = routed.standin();
            standin.fail_next_at(
                "POST",
                &routed.conference_recordings(),
                1,
                Fault::Status(404),
            );
            standin.fail_next_at("DELETE", "/2010-04-01/", 1, Fault::Status(404));
            let stamped = routed.attributes(Some(false));
            let answer = routed.deliver("reservation.accepted", routed.sales(), &stamped);
            assert_eq!(answer.expect_json(200)["unfinished"], 0, "{form:?}");

            let (standin, lines) = routed.finish();
            let writes: Vec<(String, Option<u16>)> = standin
                .voice_requests()
                .into_iter()
                .filter(|r| r.method != "GET")
                .map(|r| (r.method, r.answered))
                .collect();
            assert_eq!(
                writes,
                [
                    ("POST".to_owned(), Some(404)),
                    ("DELETE".to_owned(), Some(404))
                ],
                "{form:?}: each once, not retried"
            );
            assert_eq!(
                actions(&lines),
                [
                    done("stopped", ON_CONFERENCE),
                    done("deleted", ON_CONFERENCE)
                ],
                "{form:?}"
            );
        }
    }

    /// Twilio will not delete a recording while it processes it: one found processing at
    /// the task's last event, or just stopped, is said and left unfinished (`503`), not
    /// skipped; once finished, the next delivery deletes it.
    #[test]
    fn a_recording_still_processing_is_unfinished_until_a_later_delivery_deletes_it() {
        for form in BOTH {
            let routed = Routed::start(form, Some(false));
            routed.record_conference(ON_CONFERENCE, "in-progress");
            routed.record(Of::Call(CUSTOMER.into()), ON_CUSTOMER, "processing");
            routed.standin().leave_stopped_recordings("processing");
            let stamped = routed.attributes(Some(false));
            let (first, last) = match form {
                Form::Streams => ("task.completed", "task.completed"),
                Form::Workspace => ("task.wrapup", "task.completed"),
            };
            let answer = routed.deliver(first, routed.sales(), &stamped);
            assert_eq!(answer.expect_json(503)["unfinished"], 1, "{form:?}");
            let processing = routed.standin().recording_status(ON_CONFERENCE);
            assert_eq!(processing.as_deref(), Some("processing"), "{form:?}");
            assert_eq!(
                routed.writes(),
                [
                    format!("stop {ON_CONFERENCE}"),
                    format!("delete {ON_CONFERENCE}")
                ],
                "{form:?}: no delete of one listed as processing"
            );

            for sid in [ON_CONFERENCE, ON_CUSTOMER] {
                routed.standin().set_recording_status(sid, "completed");
            }
            routed
                .deliver(last, routed.sales(), &stamped)
                .expect_json(200);
            let (standin, lines) = routed.finish();
            assert_eq!(standin.recording_status(ON_CONFERENCE), None, "{form:?}");
            assert_eq!(standin.recording_status(ON_CUSTOMER), None, "{form:?}");
            assert_eq!(
                actions(&lines),
                [
                    done("stopped", ON_CONFERENCE),
                    failed(ON_CONFERENCE, "Voice API answered 400 on delete"),
                    failed(ON_CUSTOMER, STILL_PROCESSING),
                    done("deleted", ON_CONFERENCE),
                    done("deleted", ON_CUSTOMER),
                ],
                "{form:?}"
            );
            assert_eq!(lines[2]["event_type"], first, "{}", lines[2]);
        }
    }

    /// The task was completed and deleted before its (unstamped) event was handled: its
    /// stamp can never be read or written, so the event's own decision is enforced, and
    /// every line says it was not stamped.
    #[test]
    fn a_task_gone_from_taskrouter_is_enforced_on_its_events_decision() {
        for form in BOTH {
            let routed = Routed::start(form, None);
            routed.record_conference(ON_CONFERENCE, "in-progress");
            routed
                .standin()
                .remove_task(routed.workspace(), routed.task());
            let answer = routed.deliver("task.completed", PAYMENTS, &routed.attributes(None));
            assert_eq!(answer.expect_json(200)["unfinished"], 0, "{form:?}");

            let task = (routed.workspace().to_owned(), routed.task().to_owned());
            let (standin, lines) = routed.finish();
            assert_eq!(standin.recording_status(ON_CONFERENCE), None, "{form:?}");
            let read = standin.task_requests(&task.0, &task.1);
            assert_eq!(read.len(), 1, "{form:?}: one read, no write");
            assert_eq!(read[0].answered, Some(404));
            assert_eq!(
                actions(&lines),
                [
                    (
                        "stopped".to_owned(),
                        ON_CONFERENCE.to_owned(),
                        TASK_GONE.to_owned()
                    ),
                    (
                        "deleted".to_owned(),
                        ON_CONFERENCE.to_owned(),
                        TASK_GONE.to_owned()
                    ),
                ],
                "{form:?}"
            );
            for line in &lines {
                assert_eq!(line["first"], "do-not-record", "{line}");
                assert_eq!(line["now"], "do-not-record", "{line}");
            }
        }
    }
}
