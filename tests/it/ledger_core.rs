//! The ledger in the service core, in-process on the in-memory adapters: the assignment
//! callback writes the call's first decision (both answer modes) and never lets the ledger
//! delay or change its answer; enforcement takes its first decision from the ledger, else the
//! stamp (copied), else `now` (written to both), and appends its actions.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conditional_recording::ledger::{
    ActedBy, CallAccount, DecidedBy, FirstDecision, RecordingAction, Tie, Verdict,
};
use conditional_recording::logging::{Captured, capture_on_this_thread, init};
use conditional_recording::ports::{Ledger, RecordingStatus};
use conditional_recording::service::memory::{
    MemoryLedger, Queues, Tasks, Tokens, Unavailable, Voice, VoiceRecording, VoiceState,
};
use conditional_recording::service::{
    App, Delivery, Enforcer, EventsInbound, Inbound, Mode, Settings,
};
use conditional_recording::sources::StaticRules;
use serde_json::{Value, json};

use crate::support::{Callback, app_on};

/// Calls from the IVR's billing menu are not recorded.
const RULES: &str =
    r#"{"enabled": true, "exclude_attributes": [{"key": "ivr.choice", "value": "billing"}]}"#;
const CONFERENCE: &str = "CF0123456789abcdef0123456789abcdef";
const RECORDING: &str = "RE0123456789abcdef0123456789abcdef";
const CALL: &str = "CA0123456789abcdef0123456789abcdef";

type Service<L> = App<StaticRules, Queues, Tasks, Tokens, Voice, L>;

/// A call waiting in `<Enqueue>`: the callback answers it with an instruction.
fn waiting(choice: &str) -> Value {
    json!({"call_sid": CALL, "direction": "inbound", "ivr": {"choice": choice}})
}

/// The same call once Flex has written its conference.
fn attributes(choice: &str) -> Value {
    let mut call = waiting(choice);
    call["conference"] = json!({"sid": CONFERENCE});
    call
}

fn voice() -> Voice {
    Voice(Mutex::new(VoiceState {
        recordings: vec![VoiceRecording {
            sid: RECORDING.into(),
            of: CONFERENCE.into(),
            status: RecordingStatus::InProgress,
        }],
        ..VoiceState::default()
    }))
}

fn service<L: Ledger>(ledger: L, mode: Mode<Tasks>, tasks: Tasks) -> Service<L> {
    app_on(
        RULES,
        Settings {
            mode,
            enforcement: Some(Enforcer {
                annotations: tasks,
                recordings: voice(),
                media: conditional_recording::service::media::Media::none(),
            }),
            ledger: Some(ledger),
            ..Settings::default()
        },
    )
}

fn tasks_with(callback: &Callback, attributes: &Value) -> Tasks {
    Tasks(Mutex::new(HashMap::from([(
        callback.task_sid().to_owned(),
        attributes.clone(),
    )])))
}

fn inbound(callback: &Callback) -> Inbound<'static> {
    Inbound {
        params: callback.params.clone(),
        signature: None,
        url: Ok("https://cr.example.com/assignment".to_owned()),
        request_id: None,
        started: Instant::now(),
    }
}

fn event(callback: &Callback, attributes: &Value, event_type: &str) -> EventsInbound<'static> {
    let mut params = vec![("EventType".to_owned(), event_type.to_owned())];
    for name in [
        "AccountSid",
        "WorkspaceSid",
        "TaskSid",
        "ReservationSid",
        "TaskQueueSid",
    ] {
        params.push((name.to_owned(), callback.get(name).to_owned()));
    }
    params.push(("TaskAttributes".into(), attributes.to_string()));
    params.push(("TaskChannelUniqueName".into(), "voice".into()));
    EventsInbound {
        delivery: Delivery::Form(params),
        signature: None,
        url: Ok("https://cr.example.com/events".to_owned()),
        request_id: None,
        started: Instant::now(),
    }
}

/// Runs `work` on this thread with its lines captured; answers its output and the lines.
async fn captured<T>(work: impl Future<Output = T>) -> (T, Vec<Value>) {
    init();
    let lines = Captured::default();
    capture_on_this_thread(Arc::clone(&lines));
    let output = work.await;
    let text = String::from_utf8(lines.lock().unwrap().clone()).unwrap();
    let parsed = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (output, parsed)
}

fn ledger_failures(lines: &[Value]) -> u64 {
    lines
        .iter()
        .filter_map(|l| l["LedgerFailures"].as_u64())
        .sum()
}

#[tokio::test(flavor = "current_thread")]
async fn the_callback_writes_the_first_decision_and_a_transfer_keeps_it() {
    let callback = Callback::new(&waiting("billing").to_string());
    let app = service(MemoryLedger::default(), Mode::Conference, Tasks::default());
    let answer = app.assignment(inbound(&callback)).await.unwrap();
    assert!(answer.contains("do-not-record"), "{answer}");
    let ledger = app.settings.ledger.as_ref().unwrap();
    let first = ledger.decision(callback.task_sid()).await.unwrap().unwrap();
    assert!(!first.record);
    assert_eq!(first.decided_by, DecidedBy::Assignment);
    assert_eq!(first.rule.as_deref(), Some("exclude_attributes[0]"));
    assert_eq!(
        first.reason,
        "excluded by attribute (exclude_attributes[0])"
    );
    assert_eq!(first.call_sid.as_deref(), Some(CALL));
    // Its call and conference are tied to it, with the decision beside the tie.
    let ties = ledger
        .ties(&[CALL.to_owned(), CONFERENCE.to_owned()])
        .await
        .unwrap();
    let tied = Tie::Task {
        task_sid: callback.task_sid().to_owned(),
        first: Some(Verdict {
            record: false,
            rule: Some("exclude_attributes[0]".into()),
        }),
    };
    assert_eq!(ties.get(CALL), Some(&tied));

    // A transfer's reservation (the conference exists), in a recorded state now: the
    // ledger keeps the first decision, and ties the conference to it.
    let transfer = callback
        .clone()
        .set("TaskAttributes", &attributes("sales").to_string())
        .set("ReservationSid", "WR0123456789abcdef0123456789abcdef");
    app.assignment(inbound(&transfer)).await.unwrap();
    let kept = ledger.decision(callback.task_sid()).await.unwrap().unwrap();
    assert_eq!(kept, first);
    let ties = ledger.ties(&[CONFERENCE.to_owned()]).await.unwrap();
    assert_eq!(ties.get(CONFERENCE), Some(&tied));
}

#[tokio::test(flavor = "current_thread")]
async fn annotate_mode_writes_both_and_an_earlier_stamp_is_the_ledgers_first() {
    let callback = Callback::new(&attributes("sales").to_string());
    let tasks = tasks_with(&callback, &attributes("sales"));
    let app = service(
        MemoryLedger::default(),
        Mode::Annotate(tasks),
        Tasks::default(),
    );
    assert_eq!(app.assignment(inbound(&callback)).await.unwrap(), "{}");
    let ledger = app.settings.ledger.as_ref().unwrap();
    let first = ledger.decision(callback.task_sid()).await.unwrap().unwrap();
    assert!(first.record);
    assert_eq!(first.decided_by, DecidedBy::Assignment);

    // A task already stamped do-not-record (by an earlier reservation, before the ledger).
    let mut stamped = attributes("sales");
    stamped["conditional_recording"] = json!({"record": false, "reason": "excluded"});
    let callback = Callback::new(&stamped.to_string());
    app.assignment(inbound(&callback)).await.unwrap();
    let first = ledger.decision(callback.task_sid()).await.unwrap().unwrap();
    assert!(!first.record, "the stamp is the first decision");
    assert_eq!(first.decided_by, DecidedBy::Stamp);
}

/// A ledger that answers only after `delay`, then as the in-memory one.
struct Slow {
    delay: Duration,
    inner: MemoryLedger,
}

impl Ledger for Slow {
    type Error = Unavailable;
    async fn first_decision(&self, first: &FirstDecision) -> Result<FirstDecision, Unavailable> {
        tokio::time::sleep(self.delay).await;
        self.inner.first_decision(first).await
    }
    async fn decision(&self, task_sid: &str) -> Result<Option<FirstDecision>, Unavailable> {
        tokio::time::sleep(self.delay).await;
        self.inner.decision(task_sid).await
    }
    async fn record_actions(
        &self,
        task_sid: &str,
        conference_sid: Option<&str>,
        actions: &[RecordingAction],
    ) -> Result<(), Unavailable> {
        tokio::time::sleep(self.delay).await;
        self.inner
            .record_actions(task_sid, conference_sid, actions)
            .await
    }
    async fn ties(&self, sids: &[String]) -> Result<HashMap<String, Tie>, Unavailable> {
        self.inner.ties(sids).await
    }
    async fn verdicts(&self, sids: &[String]) -> Result<HashMap<String, Verdict>, Unavailable> {
        self.inner.verdicts(sids).await
    }
    async fn tie_conference(&self, sid: &str, tie: &Tie) -> Result<(), Unavailable> {
        self.inner.tie_conference(sid, tie).await
    }
    async fn account(&self, sid: &str) -> Result<Option<CallAccount>, Unavailable> {
        self.inner.account(sid).await
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_slow_ledger_gets_a_second_and_the_answer_goes_out_unchanged() {
    let callback = Callback::new(&waiting("billing").to_string());
    let slow = Slow {
        delay: Duration::from_secs(30),
        inner: MemoryLedger::default(),
    };
    let app = service(slow, Mode::Conference, Tasks::default());
    let started = tokio::time::Instant::now();
    let (answer, lines) = captured(app.assignment(inbound(&callback))).await;
    assert_eq!(
        serde_json::from_str::<Value>(&answer.unwrap()).unwrap(),
        json!({"instruction": "conference", "conference_record": "do-not-record"})
    );
    // The paused clock moved only as far as the ledger's budget.
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "ledger write failed")
        .collect();
    assert_eq!(failed.len(), 1, "{lines:?}");
    assert_eq!(failed[0]["cause"], "not written within 1000 ms");
    assert_eq!(ledger_failures(&lines), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn a_ledger_that_is_down_changes_no_answer() {
    let callback = Callback::new(&waiting("billing").to_string());
    let ledger = MemoryLedger::default();
    ledger.down.store(true, Ordering::Relaxed);
    let without = service(MemoryLedger::default(), Mode::Conference, Tasks::default());
    let expected = without.assignment(inbound(&callback)).await.unwrap();
    let app = service(ledger, Mode::Conference, Tasks::default());
    let (answer, lines) = captured(app.assignment(inbound(&callback))).await;
    assert_eq!(answer.unwrap(), expected);
    let failed = lines
        .iter()
        .find(|l| l["message"] == "ledger write failed")
        .unwrap();
    assert_eq!(failed["cause"], "the ledger is down");
    assert_eq!(ledger_failures(&lines), 1);
    let text = lines.iter().map(Value::to_string).collect::<String>();
    assert!(
        !text.contains("+14155550100") && !text.contains("billing"),
        "{text}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn enforcement_follows_the_ledgers_first_decision_and_appends_its_actions() {
    // Decided do-not-record at assignment; the task was never stamped (conference mode), and
    // the call is now where it would be recorded.
    let callback = Callback::new(&attributes("billing").to_string());
    let now = attributes("sales");
    let app = service(
        MemoryLedger::default(),
        Mode::Conference,
        tasks_with(&callback, &now),
    );
    app.assignment(inbound(&callback)).await.unwrap();
    let settled = app
        .events(event(&callback, &now, "reservation.accepted"))
        .await
        .unwrap();
    assert_eq!(settled.unfinished, 0, "{settled:?}");
    let enforcer = app.settings.enforcement.as_ref().unwrap();
    assert_eq!(
        enforcer.recordings.status(RECORDING),
        None,
        "stopped and deleted"
    );
    let account = app
        .settings
        .ledger
        .as_ref()
        .unwrap()
        .account(RECORDING)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.task_sid, callback.task_sid());
    let actions: Vec<_> = account
        .actions
        .iter()
        .map(|a| (a.recording_sid.as_str(), a.action.as_str(), a.by))
        .collect();
    assert_eq!(
        actions,
        [
            (RECORDING, "stopped", ActedBy::Enforcement),
            (RECORDING, "deleted", ActedBy::Enforcement)
        ]
    );
    // The task itself is left as it was: the ledger had the decision.
    let task = enforcer
        .annotations
        .attributes(callback.task_sid())
        .unwrap();
    assert!(task.get("conditional_recording").is_none(), "{task}");
}

#[tokio::test(flavor = "current_thread")]
async fn without_a_ledger_entry_the_stamp_is_copied_and_else_now_is_written_to_both() {
    // Stamped record on the task (annotate mode before the ledger): copied, and kept.
    let mut stamped = attributes("billing");
    stamped["conditional_recording"] =
        json!({"record": true, "reason": "no exclusion matched", "rules_version": 2});
    let callback = Callback::new(&stamped.to_string());
    let app = service(
        MemoryLedger::default(),
        Mode::Conference,
        tasks_with(&callback, &stamped),
    );
    app.events(event(&callback, &stamped, "task.updated"))
        .await
        .unwrap();
    let ledger = app.settings.ledger.as_ref().unwrap();
    let first = ledger.decision(callback.task_sid()).await.unwrap().unwrap();
    assert!(first.record);
    assert_eq!(first.decided_by, DecidedBy::Stamp);
    assert_eq!(
        (first.reason.as_str(), first.rules_version),
        ("no exclusion matched", Some(2))
    );

    // Neither: the event decides, and both the task and the ledger get it.
    let bare = attributes("billing");
    let callback = Callback::new(&bare.to_string());
    let app = service(
        MemoryLedger::default(),
        Mode::Conference,
        tasks_with(&callback, &bare),
    );
    app.events(event(&callback, &bare, "task.updated"))
        .await
        .unwrap();
    let ledger = app.settings.ledger.as_ref().unwrap();
    let first = ledger.decision(callback.task_sid()).await.unwrap().unwrap();
    assert!(!first.record);
    assert_eq!(first.decided_by, DecidedBy::Event);
    let enforcer = app.settings.enforcement.as_ref().unwrap();
    let task = enforcer
        .annotations
        .attributes(callback.task_sid())
        .unwrap();
    assert_eq!(task["conditional_recording"]["record"], false);
}

#[tokio::test(flavor = "current_thread")]
async fn enforcement_holds_when_the_ledger_is_down() {
    let bare = attributes("billing");
    let callback = Callback::new(&bare.to_string());
    let ledger = MemoryLedger::default();
    ledger.down.store(true, Ordering::Relaxed);
    let app = service(ledger, Mode::Conference, tasks_with(&callback, &bare));
    let (settled, lines) = captured(app.events(event(&callback, &bare, "task.updated"))).await;
    assert_eq!(settled.unwrap().unfinished, 0);
    let enforcer = app.settings.enforcement.as_ref().unwrap();
    assert_eq!(
        enforcer.recordings.status(RECORDING),
        None,
        "removed all the same"
    );
    // The read, the write and the actions' record each failed, each counted.
    assert_eq!(ledger_failures(&lines), 3, "{lines:?}");
}
