//! Enforcement when Twilio answers as it has been seen to in the field (SPEC section 8,
//! "Twilio as it really behaves"), end to end: the binary's real adapters behind `/events`,
//! Event Streams deliveries, and the stand-in answering so: conference recordings that refuse
//! `Status=stopped` and accept `Status=paused`, pauses refused too, recordings `processing`
//! once their call ends, a list entry with a `null` field, and SIDs with uppercase hex digits.

use serde_json::{Value, json};

use conditional_recording::enforcement::{DELETED_LATER, STILL_PROCESSING};
use conditional_recording::signature::{sha256_hex, sign};

use crate::standin::{Of, ServeWithApi, StandIn};
use crate::support::{Callback, Http, INBOUND, Logs, Response, TOKEN, host, request};

/// Calls routed to this queue are not recorded; any other queue records them.
const PAYMENTS: &str = "WQ0000000000000000000000000000f1e1";
/// The customer's leg (`call_sid`) and the agent's, the conference's other participant.
const CUSTOMER: &str = "CA0000000000000000000000000000f1c1";
const AGENT: &str = "CA0000000000000000000000000000f1a1";
/// Recordings: the conference's, the customer's leg's, the agent's leg's.
const ON_CONFERENCE: &str = "RE0000000000000000000000000000f1f1";
const ON_CUSTOMER: &str = "RE0000000000000000000000000000f1c1";
const ON_AGENT: &str = "RE0000000000000000000000000000f1a1";

/// What the stop refused by a conference recording says, as the lines' causes start.
const STOP_REFUSED: &str = "Voice API answered 400 on stop";

/// One inbound call in its conference with an agent, on the stand-in, delivered by an Event
/// Streams sink (the delivery Twilio sends again after a `503`).
struct Call {
    setup: ServeWithApi,
    callback: Callback,
    conference: String,
}

impl Call {
    /// The call's task, stamped with its first decision, and its conference in progress
    /// with the agent in it.
    fn start(record_first: bool) -> Call {
        Call::with_conference(record_first, str::to_owned)
    }

    /// As [`Call::start`], the conference's SID as `spelt` writes the one made from the
    /// task's.
    fn with_conference(record_first: bool, spelt: impl Fn(&str) -> String) -> Call {
        let callback = Callback::new(INBOUND);
        let conference = spelt(&format!("CF{}", &callback.task_sid()[2..]));
        let rules = format!(r#"{{"enabled": true, "exclude_queues": ["{PAYMENTS}"]}}"#);
        let call = Call {
            setup: ServeWithApi::start(&rules, &[]),
            callback,
            conference,
        };
        let conference = call.conference.as_str();
        let standin = call.standin();
        standin.add_credentials(call.account(), TOKEN);
        let attributes = call.attributes(record_first).to_string();
        standin.add_task(call.workspace(), call.task(), &attributes);
        standin.add_conference(call.account(), conference, call.task(), "in-progress");
        standin.add_participant(conference, AGENT);
        call
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

    /// The call's TaskAttributes as Flex writes them, stamped with the first decision.
    fn attributes(&self, record_first: bool) -> Value {
        let mut attributes: Value = serde_json::from_str(INBOUND).expect("the fixture");
        attributes["call_sid"] = json!(CUSTOMER);
        attributes["conference"] = json!({
            "sid": self.conference,
            "participants": {"customer": CUSTOMER, "worker": AGENT},
        });
        attributes["conditional_recording"] =
            json!({"record": record_first, "reason": "decided at assignment"});
        attributes
    }

    fn record(&self, of: Of, sid: &str, status: &str) {
        self.standin()
            .add_recording(self.account(), of, sid, status);
    }

    fn record_conference(&self, sid: &str, status: &str) {
        self.record(Of::Conference(self.conference.clone()), sid, status);
    }

    /// One event about the task in `queue`, as an Event Streams batch, signed over the URL
    /// that names its `bodySHA256`.
    fn deliver(&self, kind: &str, queue: &str, attributes: &Value) -> Response {
        let event = json!({
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
        });
        let body = json!([event]).to_string();
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

    /// Stops the server; the stand-in, the `enforcement` lines in order, and every line.
    fn finish(self) -> (StandIn, Vec<Value>, Logs) {
        let (standin, logs) = self.setup.stop();
        let text = logs.text();
        assert!(!text.contains(TOKEN), "the token reached a log:\n{text}");
        for data in crate::support::CALLER_DATA {
            assert!(!text.contains(data), "{data} reached a log");
        }
        let lines = logs.with_message("enforcement");
        (standin, lines, logs)
    }
}

/// Each change asked of the Voice API, with its answer: `stop RE... 400`, `pause RE... 200`,
/// `resume RE... 200`, `delete RE... 204`.
fn writes(standin: &StandIn) -> Vec<String> {
    standin
        .voice_requests()
        .iter()
        .filter_map(|r| {
            let recording = r.path().rsplit('/').next()?.strip_suffix(".json")?;
            let what = match (r.method.as_str(), r.form_value("Status").as_deref()) {
                ("POST", Some("stopped")) => "stop",
                ("POST", Some("paused")) => "pause",
                ("POST", Some("in-progress")) => "resume",
                ("POST", _) => "post",
                ("DELETE", _) => "delete",
                _ => return None,
            };
            Some(format!("{what} {recording} {}", r.answered.unwrap_or(0)))
        })
        .collect()
}

/// No request ever asked for a recording to run again.
fn assert_never_resumed(standin: &StandIn) {
    let resumed = standin
        .voice_requests()
        .into_iter()
        .filter(|r| r.form_value("Status").as_deref() == Some("in-progress"))
        .count();
    assert_eq!(resumed, 0, "{:?}", writes(standin));
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

fn line(action: &str, recording: &str, cause: &str) -> (String, String, String) {
    (action.to_owned(), recording.to_owned(), cause.to_owned())
}

/// A conference recording that refuses `Status=stopped` is paused, skipping the pause: the
/// line says `paused` with the refusal, its metric counts `Action=paused`, and the delivery
/// is unfinished (`503`) while the recording is there. A redelivery during the call leaves it
/// paused; once the call has ended and Twilio has finished it, it is deleted.
#[test]
fn a_conference_recording_refusing_stop_is_paused_and_deleted_once_finished() {
    let call = Call::start(false);
    call.record_conference(ON_CONFERENCE, "in-progress");
    call.record(Of::Call(CUSTOMER.into()), ON_CUSTOMER, "completed");
    call.standin().refuse_conference_stops();
    let stamped = call.attributes(false);

    let answer = call.deliver("reservation.accepted", call.sales(), &stamped);
    assert_eq!(answer.expect_json(503)["unfinished"], 1);
    let standin = call.standin();
    assert_eq!(
        standin.recording_status(ON_CONFERENCE).as_deref(),
        Some("paused")
    );
    assert_eq!(standin.recording_status(ON_CUSTOMER), None, "the others go");
    assert_eq!(
        writes(standin),
        [
            format!("stop {ON_CONFERENCE} 400"),
            format!("pause {ON_CONFERENCE} 200"),
            format!("delete {ON_CUSTOMER} 204"),
        ]
    );
    let pause = standin
        .voice_requests()
        .into_iter()
        .find(|r| r.form_value("Status").as_deref() == Some("paused"))
        .expect("a pause");
    assert_eq!(pause.form_value("PauseBehavior").as_deref(), Some("skip"));
    assert!(
        pause
            .path()
            .contains(&format!("/Conferences/{}/", call.conference)),
        "{}",
        pause.path()
    );

    // Event Streams delivers it again while the call goes on: still refused, and left
    // paused, not paused again.
    let again = call.deliver("reservation.accepted", call.sales(), &stamped);
    assert_eq!(again.expect_json(503)["unfinished"], 1);
    assert_eq!(
        writes(call.standin())[3..],
        [format!("stop {ON_CONFERENCE} 400")]
    );

    // The call ends: Twilio processes the recording, and will not delete it yet.
    call.standin().end_conference(&call.conference);
    let ended = call.deliver("task.wrapup", call.sales(), &stamped);
    assert_eq!(ended.expect_json(503)["unfinished"], 1);

    call.standin()
        .set_recording_status(ON_CONFERENCE, "completed");
    call.deliver("task.completed", call.sales(), &stamped)
        .expect_json(200);
    let (standin, lines, _) = call.finish();
    assert_eq!(standin.recording_status(ON_CONFERENCE), None);
    assert_never_resumed(&standin);
    assert_eq!(
        actions(&lines),
        [
            line(
                "paused",
                ON_CONFERENCE,
                &format!("{STOP_REFUSED}; paused instead, and {DELETED_LATER}")
            ),
            line("deleted", ON_CUSTOMER, ""),
            line(
                "paused",
                ON_CONFERENCE,
                &format!("{STOP_REFUSED}; already paused, and {DELETED_LATER}")
            ),
            line("failed", ON_CONFERENCE, STILL_PROCESSING),
            line("deleted", ON_CONFERENCE, ""),
        ]
    );
    let paused = &lines[0];
    assert_eq!(paused["level"], "INFO", "{paused}");
    assert_eq!(paused["first"], "do-not-record", "{paused}");
    assert_eq!(paused["Action"], "paused", "{paused}");
    assert_eq!(paused["Enforcements"], 1, "{paused}");
    let directive = &paused["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Metrics"][0]["Name"], "Enforcements", "{paused}");
    assert_eq!(directive["Dimensions"], json!([["Action"]]), "{paused}");
}

/// Twilio refuses the pause too: nothing holds the recording, so it is `failed`, the cause
/// names both answers, and the delivery is answered `503`.
#[test]
fn a_pause_refused_too_is_a_failure_and_the_delivery_503() {
    let call = Call::start(false);
    call.record_conference(ON_CONFERENCE, "in-progress");
    call.standin().refuse_conference_stops();
    call.standin().refuse_pauses();

    let answer = call.deliver(
        "reservation.accepted",
        call.sales(),
        &call.attributes(false),
    );
    assert_eq!(answer.expect_json(503)["unfinished"], 1);
    let (standin, lines, _) = call.finish();
    assert_eq!(
        standin.recording_status(ON_CONFERENCE).as_deref(),
        Some("in-progress")
    );
    assert_eq!(
        writes(&standin),
        [
            format!("stop {ON_CONFERENCE} 400"),
            format!("pause {ON_CONFERENCE} 400"),
        ],
        "no delete"
    );
    assert_eq!(
        actions(&lines),
        [line(
            "failed",
            ON_CONFERENCE,
            &format!("{STOP_REFUSED}; Voice API answered 400 on pause")
        )]
    );
    assert_eq!(lines[0]["level"], "WARN", "{}", lines[0]);
    assert_eq!(lines[0]["Action"], "failed", "{}", lines[0]);
}

/// First decision record, then a transfer into Payments: the conference recording, which
/// refuses its stop, is paused and the delivery is done (`200`); the customer's finished leg
/// stays. Later events leave it paused; nothing is ever deleted or resumed.
#[test]
fn a_transfer_into_an_excluded_queue_pauses_what_will_not_stop_and_never_deletes() {
    let call = Call::start(true);
    call.record_conference(ON_CONFERENCE, "in-progress");
    call.record(Of::Call(CUSTOMER.into()), ON_CUSTOMER, "completed");
    call.standin().refuse_conference_stops();
    let stamped = call.attributes(true);

    let answer = call.deliver("task.transfer-initiated", PAYMENTS, &stamped);
    assert_eq!(answer.expect_json(200)["unfinished"], 0);
    assert_eq!(
        call.standin().recording_status(ON_CONFERENCE).as_deref(),
        Some("paused")
    );
    call.deliver("reservation.accepted", PAYMENTS, &stamped)
        .expect_json(200);
    call.standin().end_conference(&call.conference);
    call.deliver("task.completed", PAYMENTS, &stamped)
        .expect_json(200);

    let (standin, lines, _) = call.finish();
    assert_eq!(
        writes(&standin),
        [
            format!("stop {ON_CONFERENCE} 400"),
            format!("pause {ON_CONFERENCE} 200"),
            format!("stop {ON_CONFERENCE} 400"),
        ],
        "paused once, never deleted"
    );
    assert_never_resumed(&standin);
    assert_eq!(
        standin.recording_status(ON_CUSTOMER).as_deref(),
        Some("completed"),
        "what was recorded before stays"
    );
    assert_eq!(
        actions(&lines),
        [
            line(
                "paused",
                ON_CONFERENCE,
                &format!("{STOP_REFUSED}; paused instead")
            ),
            line(
                "paused",
                ON_CONFERENCE,
                &format!("{STOP_REFUSED}; already paused")
            ),
            line("none_found", "", ""),
        ]
    );
}

/// A participant whose `call_sid` is `null`, in a list read page by page: only that entry
/// is skipped, with one line naming the list and the field, and every other recording of the
/// call is removed.
#[test]
fn a_participant_with_a_null_call_sid_spoils_only_itself() {
    let call = Call::start(false);
    let supervisor = "CA0000000000000000000000000000f1b1";
    let on_supervisor = "RE0000000000000000000000000000f1b1";
    let coach = "CA0000000000000000000000000000f1d1";
    let on_coach = "RE0000000000000000000000000000f1d1";
    let standin = call.standin();
    standin.add_participant(&call.conference, supervisor);
    standin.add_participant(&call.conference, coach);
    standin.null_field("participants", supervisor, "call_sid");
    // One entry a page: the null one is in the middle of the list's pages.
    standin.cap_page_size(1);
    call.record_conference(ON_CONFERENCE, "completed");
    call.record(Of::Call(CUSTOMER.into()), ON_CUSTOMER, "completed");
    call.record(Of::Call(AGENT.into()), ON_AGENT, "completed");
    call.record(Of::Call(coach.into()), on_coach, "completed");
    call.record(Of::Call(supervisor.into()), on_supervisor, "completed");

    let answer = call.deliver(
        "reservation.accepted",
        call.sales(),
        &call.attributes(false),
    );
    assert_eq!(answer.expect_json(200)["unfinished"], 0);
    let (standin, lines, logs) = call.finish();
    for sid in [ON_CONFERENCE, ON_CUSTOMER, ON_AGENT, on_coach] {
        assert_eq!(standin.recording_status(sid), None, "{sid} deleted");
    }
    // Its call cannot be known from the list: its recording is the sweep's to find.
    assert_eq!(
        standin.recording_status(on_supervisor).as_deref(),
        Some("completed")
    );
    let participant_pages = standin
        .voice_requests()
        .iter()
        .filter(|r| r.path().ends_with("/Participants.json"))
        .count();
    assert_eq!(participant_pages, 3, "read page after page");
    let deleted = actions(&lines)
        .into_iter()
        .filter(|(action, _, _)| action == "deleted")
        .count();
    assert_eq!(deleted, 4, "{lines:?}");

    let skipped: Vec<Value> = logs
        .json()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .unwrap_or_default()
                .contains("skipped")
        })
        .collect();
    assert_eq!(skipped.len(), 1, "{}", logs.text());
    let skipped = &skipped[0];
    assert_eq!(skipped["level"], "WARN", "{skipped}");
    assert_eq!(skipped["list"], "participants", "{skipped}");
    assert_eq!(skipped["field"], "call_sid", "{skipped}");
    assert_eq!(skipped["entries"], 1, "{skipped}");
    let text = skipped.to_string();
    assert!(
        !text.contains(&supervisor[2..]),
        "no part of the entry: {text}"
    );
}

/// The Voice API's answers write SIDs with uppercase hex digits: the conference found by the
/// task's name, its participants and their recordings are used, and sent back as written.
#[test]
fn sids_with_uppercase_hex_digits_in_answers_are_used_as_written() {
    let call = Call::with_conference(false, |sid| format!("CF{}", sid[2..].to_ascii_uppercase()));
    let conference = call.conference.clone();
    let agent = "CA0000000000000000000000000000F1A2";
    let on_agent = "RE0000000000000000000000000000F1A2";
    let on_conference = "RE0000000000000000000000000000F1F2";
    call.standin().add_participant(&call.conference, agent);
    call.record_conference(on_conference, "in-progress");
    call.record(Of::Call(agent.into()), on_agent, "completed");
    // No conference in the attributes yet: it is found by its FriendlyName, the TaskSid.
    let mut attributes = call.attributes(false);
    attributes
        .as_object_mut()
        .expect("an object")
        .remove("conference");

    let answer = call.deliver("reservation.accepted", call.sales(), &attributes);
    assert_eq!(answer.expect_json(200)["unfinished"], 0);
    let (standin, lines, _) = call.finish();
    assert_eq!(standin.recording_status(on_conference), None);
    assert_eq!(standin.recording_status(on_agent), None);
    assert_eq!(
        writes(&standin),
        [
            format!("stop {on_conference} 200"),
            format!("delete {on_conference} 204"),
            format!("delete {on_agent} 204"),
        ]
    );
    assert!(
        standin.voice_requests().iter().any(|r| r
            .path()
            .contains(&format!("/Calls/{agent}/Recordings.json"))),
        "the agent's call, listed as written"
    );
    assert_eq!(lines[0]["conference_sid"], conference.as_str());
    assert_eq!(lines[0]["recording_sid"], on_conference);
}
