//! Every task shape Flex sends, one table, through both faces (`serve`, the real binary; and
//! Lambda mode's path, on an HTTP API event) in both answer modes. In `conference` mode a
//! call TaskRouter can bridge gets the instruction; a call it cannot (no `call_sid`: the Flex
//! dialer; a conference already: a transfer, an internal call) and every messaging task get
//! `{}`. In annotate mode every call's decision is stamped on the task, unless an earlier
//! reservation's stamp is there, which stays; messaging tasks are never touched.

use crate::standin;
use crate::support;
use crate::support::Http;
use crate::support::{TOKEN, invoke_lambda, lambda_event, with_form};

use std::sync::Arc;
use std::time::{Duration, Instant};

use conditional_recording::config::AnswerMode;
use conditional_recording::sources::StaticRules;
use conditional_recording::sources::taskrouter_api::{Annotator, Credentials, TaskRouterApi};
use conditional_recording::sources::tokens::{AnyTokens, AuthTokens};
use conditional_recording::wiring::{App, Mode, Settings};
use serde_json::{Value, json};
use standin::StandIn;
use support::{
    CHAT, Callback, ENQUEUED_OUTBOUND, INBOUND, INTERNAL, Logs, OUTBOUND, SMS_OUTBOUND, Server,
    TRANSFERRED, WHATSAPP_OUTBOUND,
};

/// The Flex template's example block: outbound calls are not recorded.
const RULES: &str = r#"{"enabled": true, "exclude_queues": ["WQ00000000000000000000000000000000"],
    "exclude_attributes": [{"key": "direction", "value": "outbound"}]}"#;

const RECORD: &str = "record-from-start";
const DO_NOT_RECORD: &str = "do-not-record";
const NO_ACTION: &str = "no-action";

/// How long a test waits for the annotation writes to land.
const SETTLE: Duration = Duration::from_secs(10);

/// What a task gets in `conference` mode.
#[derive(Debug, Clone, Copy)]
enum Conference {
    /// The instruction, with the decision.
    Instruction,
    /// `{}`, with this `answer_reason`.
    Nothing(&'static str),
}

/// What annotate mode leaves under `conditional_recording`.
#[derive(Debug, Clone, Copy)]
enum Stamp {
    /// This decision, written now.
    Written(bool),
    /// An earlier reservation's, untouched.
    Kept(bool),
    /// Nothing: not a call, and no request to TaskRouter.
    Untouched,
}

struct Case {
    name: &'static str,
    attributes: String,
    /// Extra form parameters (`TaskChannelUniqueName`).
    extra: &'static [(&'static str, &'static str)],
    decision: &'static str,
    conference: Conference,
    stamp: Stamp,
}

fn with_stamp(attributes: &str, record: bool) -> String {
    let mut value: Value = serde_json::from_str(attributes).unwrap();
    value["conditional_recording"] = json!({"record": record, "reason": "no exclusion matched"});
    value.to_string()
}

fn cases() -> Vec<Case> {
    use Conference::{Instruction, Nothing};
    let case = |name, attributes: &str, extra, decision, conference, stamp| Case {
        name,
        attributes: attributes.to_owned(),
        extra,
        decision,
        conference,
        stamp,
    };
    vec![
        case(
            "inbound call",
            INBOUND,
            &[],
            RECORD,
            Instruction,
            Stamp::Written(true),
        ),
        case(
            "enqueued outbound call",
            ENQUEUED_OUTBOUND,
            &[],
            DO_NOT_RECORD,
            Instruction,
            Stamp::Written(false),
        ),
        case(
            "Flex dialer call",
            OUTBOUND,
            &[],
            DO_NOT_RECORD,
            Nothing("no_call_sid"),
            Stamp::Written(false),
        ),
        case(
            "internal call",
            INTERNAL,
            &[],
            RECORD,
            Nothing("conference_exists"),
            Stamp::Written(true),
        ),
        case(
            "transfer",
            TRANSFERRED,
            &[],
            RECORD,
            Nothing("conference_exists"),
            Stamp::Written(true),
        ),
        case(
            "transfer after an excluded first reservation",
            &with_stamp(TRANSFERRED, false),
            &[],
            RECORD,
            Nothing("conference_exists"),
            Stamp::Kept(false),
        ),
        case(
            "dialer call after a recorded first reservation",
            &with_stamp(OUTBOUND, true),
            &[],
            DO_NOT_RECORD,
            Nothing("no_call_sid"),
            Stamp::Kept(true),
        ),
        case(
            "web chat",
            CHAT,
            &[],
            NO_ACTION,
            Nothing("not_a_call"),
            Stamp::Untouched,
        ),
        case(
            "outbound SMS",
            SMS_OUTBOUND,
            &[],
            NO_ACTION,
            Nothing("not_a_call"),
            Stamp::Untouched,
        ),
        case(
            "outbound WhatsApp",
            WHATSAPP_OUTBOUND,
            &[],
            NO_ACTION,
            Nothing("not_a_call"),
            Stamp::Untouched,
        ),
        case(
            "outbound SMS on the sms channel",
            SMS_OUTBOUND,
            &[("TaskChannelUniqueName", "sms")],
            NO_ACTION,
            Nothing("not_a_call"),
            Stamp::Untouched,
        ),
        case(
            "inbound call on the voice channel",
            INBOUND,
            &[("TaskChannelUniqueName", "voice")],
            RECORD,
            Instruction,
            Stamp::Written(true),
        ),
        case(
            "call-shaped attributes on a chat channel",
            INBOUND,
            &[("TaskChannelUniqueName", "chat")],
            NO_ACTION,
            Nothing("not_a_call"),
            Stamp::Untouched,
        ),
        case(
            "dialer call on the voice channel",
            OUTBOUND,
            &[("TaskChannelUniqueName", "voice")],
            DO_NOT_RECORD,
            Nothing("no_call_sid"),
            Stamp::Written(false),
        ),
    ]
}

impl Case {
    fn callback(&self) -> Callback {
        self.extra.iter().fold(
            Callback::new(&self.attributes),
            |callback, (name, value)| callback.add(name, value),
        )
    }

    /// The answer `conference` mode gives.
    fn conference_answer(&self) -> Value {
        match self.conference {
            Conference::Instruction => {
                json!({"instruction": "conference", "conference_record": self.decision})
            }
            Conference::Nothing(_) => json!({}),
        }
    }

    /// `answer` and `answer_reason` of the decision line in `mode`.
    fn answer_fields(&self, mode: AnswerMode) -> (&'static str, Value) {
        match (mode, self.conference) {
            (AnswerMode::Conference, Conference::Instruction) => ("conference", Value::Null),
            (AnswerMode::Conference, Conference::Nothing(why)) => ("none", json!(why)),
            (AnswerMode::Annotate, _) if self.decision == NO_ACTION => {
                ("none", json!("not_a_call"))
            }
            (AnswerMode::Annotate, _) => ("none", json!("annotate")),
        }
    }

    fn check_line(&self, logs: &Logs, callback: &Callback, mode: AnswerMode) {
        let line = logs.decision_for(callback.task_sid());
        let (answer, answer_reason) = self.answer_fields(mode);
        assert_eq!(line["decision"], self.decision, "{}: {line}", self.name);
        assert_eq!(line["answer"], answer, "{}: {line}", self.name);
        assert_eq!(
            line.get("answer_reason").cloned().unwrap_or(Value::Null),
            answer_reason,
            "{}: {line}",
            self.name
        );
        let annotation = match (mode, self.stamp) {
            (AnswerMode::Conference, _) | (_, Stamp::Untouched) => Value::Null,
            (_, Stamp::Written(_)) => json!("written"),
            (_, Stamp::Kept(_)) => json!("kept"),
        };
        assert_eq!(
            line.get("annotation").cloned().unwrap_or(Value::Null),
            annotation,
            "{}: {line}",
            self.name
        );
    }

    /// Checks what annotate mode left on the task in the stand-in.
    fn check_task(&self, standin: &StandIn, callback: &Callback) {
        let (workspace, task) = (callback.get("WorkspaceSid"), callback.get("TaskSid"));
        let now = standin.task_attributes(workspace, task).unwrap();
        let requests = standin.task_requests(workspace, task);
        let methods: Vec<&str> = requests.iter().map(|r| r.method.as_str()).collect();
        match self.stamp {
            Stamp::Written(record) => {
                assert_eq!(
                    now["conditional_recording"]["record"], record,
                    "{}",
                    self.name
                );
                assert_eq!(methods, ["GET", "POST"], "{}", self.name);
            }
            Stamp::Kept(record) => {
                assert_eq!(
                    now["conditional_recording"]["record"], record,
                    "{}",
                    self.name
                );
                assert_eq!(
                    now["conditional_recording"]["reason"], "no exclusion matched",
                    "{}: the earlier stamp, whole",
                    self.name
                );
                assert!(methods.is_empty(), "{}: {methods:?}", self.name);
            }
            Stamp::Untouched => {
                assert!(now.get("conditional_recording").is_none(), "{}", self.name);
                assert!(methods.is_empty(), "{}: {methods:?}", self.name);
            }
        }
    }

    /// Gives the stand-in the callback's task, with the case's attributes, and its account.
    fn serve_task(&self, standin: &StandIn, callback: &Callback) {
        let (workspace, task) = (callback.get("WorkspaceSid"), callback.get("TaskSid"));
        standin.add_task(workspace, task, &self.attributes);
        standin.add_credentials(callback.get("AccountSid"), TOKEN);
    }

    fn writes(&self) -> usize {
        usize::from(matches!(self.stamp, Stamp::Written(_)))
    }
}

/// Waits until the stand-in has seen `writes` task writes in all (or [`SETTLE`] passed).
fn settle(standin: &StandIn, writes: usize) {
    let started = Instant::now();
    while started.elapsed() < SETTLE {
        let done = standin
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.answered.is_some())
            .count();
        if done >= writes {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------
// serve

#[test]
fn serve_in_conference_mode() {
    let (server, _dir) = Server::start_on_rules(RULES, &[]);
    let cases = cases();
    let mut sent = Vec::new();
    for case in &cases {
        let callback = case.callback();
        let answer = server.post_form(&callback.encode()).expect_json(200);
        assert_eq!(answer, case.conference_answer(), "{}", case.name);
        sent.push(callback);
    }
    let logs = server.stop();
    for (case, callback) in cases.iter().zip(&sent) {
        case.check_line(&logs, callback, AnswerMode::Conference);
    }
}

#[test]
fn serve_in_annotate_mode() {
    let standin = StandIn::start();
    let base_url = standin.base_url();
    let (server, _dir) = Server::start_on_rules(
        RULES,
        &[
            ("ANSWER_MODE", "annotate"),
            ("TWILIO_API_BASE_URL", &base_url),
            ("TWILIO_AUTH_TOKEN", TOKEN),
        ],
    );
    let cases = cases();
    let mut sent = Vec::new();
    for case in &cases {
        let callback = case.callback();
        case.serve_task(&standin, &callback);
        let answer = server
            .send(&callback.signed(TOKEN, &server.url))
            .expect_json(200);
        assert_eq!(answer, json!({}), "{}", case.name);
        sent.push(callback);
    }
    settle(&standin, cases.iter().map(Case::writes).sum());
    let logs = server.stop();
    for (case, callback) in cases.iter().zip(&sent) {
        case.check_line(&logs, callback, AnswerMode::Annotate);
        case.check_task(&standin, callback);
    }
}

// ---------------------------------------------------------------------------------------
// Lambda mode

/// Lambda mode's answer to the callback in an HTTP API (2.0) event: (status, body).
async fn invoke(app: &App<StaticRules>, callback: &Callback) -> (u16, Value) {
    let params: Vec<(String, String)> = form_urlencoded::parse(callback.encode().as_bytes())
        .into_owned()
        .collect();
    let event = with_form(lambda_event("http-api-default-stage.json"), |form| {
        *form = params
    });
    let (status, _, body) = invoke_lambda(app, event).await;
    (status, body)
}

fn app(settings: Settings) -> App<StaticRules> {
    crate::support::app_on(RULES, settings)
}

#[tokio::test]
async fn lambda_in_conference_mode() {
    let app = app(Settings::default());
    for case in cases() {
        let (status, answer) = invoke(&app, &case.callback()).await;
        assert_eq!(status, 200, "{}", case.name);
        assert_eq!(answer, case.conference_answer(), "{}", case.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_in_annotate_mode() {
    let standin = tokio::task::spawn_blocking(StandIn::start).await.unwrap();
    let tokens = Arc::new(AnyTokens::Fixed(Arc::new(
        AuthTokens::parse(TOKEN).unwrap(),
    )));
    let api = TaskRouterApi::new(&standin.base_url(), Credentials::AuthToken(tokens)).unwrap();
    let app = app(Settings {
        mode: Mode::Annotate(Annotator::new(Arc::new(api))),
        ..Settings::default()
    });
    let cases = cases();
    let mut sent = Vec::new();
    for case in &cases {
        let callback = case.callback();
        case.serve_task(&standin, &callback);
        // The write is done before the answer: Lambda may freeze the process after it.
        let (status, answer) = invoke(&app, &callback).await;
        assert_eq!((status, answer), (200, json!({})), "{}", case.name);
        sent.push(callback);
    }
    for (case, callback) in cases.iter().zip(&sent) {
        case.check_task(&standin, callback);
    }
}
