//! The ledger and reconciliation with real parts (SPEC section 10): DynamoDB is `moto_server`
//! (the table made from `template.yaml` by `scripts/create-ledger-table.py`), Twilio is the
//! stand-in (`Recordings.json` with date filters and paging, `Conferences/{CF}.json`,
//! recordings that move `in-progress` -> `processing` -> `completed`), and the product is the
//! binary: `serve` answers callbacks and events, `reconcile` and `explain` run as a compliance
//! officer would run them.

use std::collections::HashMap;
use std::process::Output;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use conditional_recording::ledger::{
    ActedBy, DecidedBy, FirstDecision, RecordingAction, Tie, Verdict,
};
use conditional_recording::ports::Ledger;
use conditional_recording::reconcile::{ALREADY_GONE, COLUMNS, IN_FLIGHT};
use conditional_recording::sources::ledger_table::LedgerTable;

use crate::counting::CountingProxy;
use crate::media_store;
use crate::moto::{self, Moto, Silent, aws_env};
use crate::standin::{Fault, Of, StandIn};
use crate::support::{
    CALLER_DATA, Callback, Connection, INBOUND, Logs, RULES_PARAMETER, Response, Server, TOKEN,
    describe, free_port, run_binary, text,
};
use aws_sdk_ssm::types::ParameterType;

const ACCOUNT: &str = "AC00000000000000000000000000000ec1";
const TABLE: &str = "cr-ledger";
/// Calls routed here are not recorded; any other queue records them.
const PAYMENTS: &str = "WQ00000000000000000000000000000ec2";
const SALES: &str = "WQ00000000000000000000000000000ec3";
const RULES: &str =
    r#"{"enabled": true, "exclude_queues": ["WQ00000000000000000000000000000ec2"]}"#;

/// A period of calls: the ledger's table in moto, Twilio's APIs in the stand-in, and the
/// variables the binary needs to reach both.
struct Period {
    moto: Moto,
    /// In front of moto's DynamoDB: what the binary's ledger requests cost.
    dynamodb: CountingProxy,
    standin: StandIn,
    /// The rules' version in SSM: what decisions name.
    rules_version: i64,
}

/// One Flex call routed through the period: its task, its conference (named after the task),
/// the customer's leg, and the conference's recording.
struct Call {
    callback: Callback,
    conference: String,
    customer: String,
    recording: String,
}

impl Call {
    fn task(&self) -> &str {
        self.callback.task_sid()
    }

    /// The TaskAttributes: at assignment, the waiting call; once Flex has joined it to its
    /// conference, with the conference.
    fn attributes(&self, with_conference: bool) -> Value {
        let mut attributes: Value = serde_json::from_str(INBOUND).expect("the fixture");
        attributes["call_sid"] = json!(self.customer);
        if with_conference {
            attributes["conference"] = json!({
                "sid": self.conference,
                "participants": {"customer": self.customer},
            });
        }
        attributes
    }
}

impl Period {
    fn start() -> Period {
        let moto = Moto::start();
        moto.create_ledger_table(TABLE);
        let standin = StandIn::start();
        standin.add_credentials(ACCOUNT, TOKEN);
        let rules_version = moto.put(RULES_PARAMETER, RULES, ParameterType::String);
        Period {
            dynamodb: CountingProxy::start(&moto.endpoint()),
            moto,
            standin,
            rules_version,
        }
    }

    /// The binary's variables: the ledger in moto, Twilio in the stand-in.
    fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = aws_env(&self.moto.endpoint());
        env.retain(|(name, _)| *name != "AWS_ENDPOINT_URL_DYNAMODB");
        env.extend([
            ("AWS_ENDPOINT_URL_DYNAMODB", self.dynamodb.endpoint()),
            ("LEDGER_TABLE", TABLE.to_owned()),
            ("TWILIO_ACCOUNT_SID", ACCOUNT.to_owned()),
            ("TWILIO_AUTH_TOKEN", TOKEN.to_owned()),
            ("TWILIO_API_BASE_URL", self.standin.base_url()),
            ("TWILIO_VOICE_API_BASE_URL", self.standin.base_url()),
            ("RULES_PARAMETER", RULES_PARAMETER.to_owned()),
        ]);
        env
    }

    /// Runs the binary with the period's variables, `changed` overriding them.
    fn run(&self, kind: &str, args: &[&str], changed: &[(&'static str, String)]) -> Output {
        let mut env = self.env();
        env.extend(changed.iter().cloned());
        let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
        run_binary(kind, args, &env)
    }

    /// `reconcile ARGS --format json`: its exit status and its report.
    fn reconcile(&self, args: &[&str]) -> (Option<i32>, Value) {
        self.reconcile_with(args, &[])
    }

    fn reconcile_with(
        &self,
        args: &[&str],
        changed: &[(&'static str, String)],
    ) -> (Option<i32>, Value) {
        let mut all = vec!["reconcile"];
        all.extend_from_slice(args);
        all.extend(["--format", "json"]);
        let output = self.run("reconcile", &all, changed);
        let report = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("a JSON report ({e}): {}", describe(&output)));
        no_secrets(&text(&output.stderr));
        (output.status.code(), report)
    }

    /// `explain SID --format json`.
    fn explain(&self, sid: &str) -> (Option<i32>, Value) {
        let output = self.run("explain", &["explain", sid, "--format", "json"], &[]);
        let account = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        (output.status.code(), account)
    }

    fn serve(&self) -> Server {
        self.serve_with(&[])
    }

    fn serve_with(&self, changed: &[(&'static str, String)]) -> Server {
        let mut env = self.env();
        env.extend(changed.iter().cloned());
        let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
        Server::start_with(&env)
    }

    /// A call routed to `queue`, its conference in progress and recorded.
    fn call(&self, queue: &str) -> Call {
        let callback = Callback::new(INBOUND)
            .set("AccountSid", ACCOUNT)
            .set("TaskQueueSid", queue);
        let id = &callback.task_sid()[2..];
        let call = Call {
            conference: format!("CF{id}"),
            customer: format!("CA{id}"),
            recording: format!("RE{id}"),
            callback,
        };
        let callback = call
            .callback
            .clone()
            .set("TaskAttributes", &call.attributes(false).to_string());
        let call = Call { callback, ..call };
        self.standin.add_task(
            call.callback.get("WorkspaceSid"),
            call.task(),
            &call.attributes(true).to_string(),
        );
        self.standin
            .add_conference(ACCOUNT, &call.conference, call.task(), "in-progress");
        self.standin
            .add_participant(&call.conference, &call.customer);
        self.standin.add_recording_at(
            ACCOUNT,
            Of::Conference(call.conference.clone()),
            &call.recording,
            "in-progress",
            a_moment_ago(),
            None,
        );
        call
    }

    /// The ledger as the service reads it, built in this process.
    fn ledger(&self) -> LedgerTable {
        LedgerTable::new(&moto::sdk_config(&self.dynamodb.endpoint()), TABLE, 400)
    }

    /// The raw item the ledger keeps under `sid`.
    fn item(
        &self,
        sid: &str,
    ) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let client = self.moto.dynamodb();
        moto::runtime().block_on(async {
            client
                .get_item()
                .table_name(TABLE)
                .key(
                    "sid",
                    aws_sdk_dynamodb::types::AttributeValue::S(sid.to_owned()),
                )
                .consistent_read(true)
                .send()
                .await
                .expect("GetItem")
                .item
        })
    }
}

/// When the period's recordings were made: before the second a run starts in, which its
/// window (`from <= date_created < to`, `to` being now) leaves to the next run.
fn a_moment_ago() -> SystemTime {
    SystemTime::now() - Duration::from_secs(30)
}

/// The assignment callback, signed as TaskRouter signs it: the answer.
fn assign(server: &Server, call: &Call) -> Value {
    let mut connection = Connection::open(server.addr);
    connection.send(&call.callback.signed(TOKEN, &server.url));
    connection.response().expect_json(200)
}

/// A Workspace Event Callback about the call (`task.completed`, say), signed: its answer.
fn workspace_event(server: &Server, call: &Call, kind: &str) -> Response {
    let mut params = vec![
        ("EventType".to_owned(), kind.to_owned()),
        ("ResourceType".to_owned(), "task".to_owned()),
        (
            "TaskAttributes".to_owned(),
            call.attributes(true).to_string(),
        ),
        (
            "TaskQueueSid".to_owned(),
            call.callback.get("TaskQueueSid").to_owned(),
        ),
        ("TaskChannelUniqueName".to_owned(), "voice".to_owned()),
    ];
    for name in ["AccountSid", "WorkspaceSid", "TaskSid", "ReservationSid"] {
        params.push((name.to_owned(), call.callback.get(name).to_owned()));
    }
    let mut connection = Connection::open(server.addr);
    connection.send(&crate::support::workspace_event_request(
        server.addr,
        &params,
    ));
    connection.response()
}

fn no_secrets(text: &str) {
    assert!(!text.contains(TOKEN), "the token reached a log:\n{text}");
    for data in CALLER_DATA {
        assert!(!text.contains(data), "{data} reached a log:\n{text}");
    }
}

fn checked_logs(logs: &Logs) -> &Logs {
    no_secrets(&logs.text());
    logs
}

/// The report's row for a recording.
fn row<'a>(report: &'a Value, recording: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["recording_sid"] == recording))
        .unwrap_or_else(|| panic!("no row for {recording}: {report}"))
}

/// A row's outcome and what became of its media.
fn outcome_and_media(row: &Value) -> (Option<&str>, Option<&str>) {
    (row["outcome"].as_str(), row["media"].as_str())
}

/// The path of the account's recordings list.
fn recordings_list() -> String {
    format!("/2010-04-01/Accounts/{ACCOUNT}/Recordings.json")
}

// ---------------------------------------------------------------------------------------
// The DynamoDB adapter against moto

#[test]
fn the_ledger_table_keeps_the_first_decision_once_ties_in_batches_and_sets_its_ttl() {
    let period = Period::start();
    let ledger = period.ledger();
    let now = conditional_recording::ledger::unix_now();
    let task = "WT00000000000000000000000000000ec4";
    let first = FirstDecision {
        task_sid: task.to_owned(),
        record: false,
        reason: "excluded by queue (exclude_queues[0])".to_owned(),
        rule: Some("exclude_queues[0]".to_owned()),
        rules_version: Some(7),
        decided_at: now,
        decided_by: DecidedBy::Assignment,
        call_sid: Some("CA00000000000000000000000000000ec4".to_owned()),
        conference_sid: None,
    };
    let later = FirstDecision {
        record: true,
        reason: "no rule matched".to_owned(),
        rule: None,
        decided_at: now + 60,
        decided_by: DecidedBy::Event,
        conference_sid: Some("CF00000000000000000000000000000ec4".to_owned()),
        ..first.clone()
    };
    // 250 calls: three batches of ties.
    let calls: Vec<String> = (0..250)
        .map(|n| format!("CA{:032x}", 0xec50_0000_u64 + n))
        .collect();
    let runtime = moto::runtime();
    let (stands, again, read, ties, verdicts, account) = runtime.block_on(async {
        let stands = ledger.first_decision(&first).await.expect("written");
        // A second writer (an event, racing) finds the first decision standing.
        let again = ledger.first_decision(&later).await.expect("read back");
        let read = ledger.decision(task).await.expect("read");
        ledger
            .record_actions(
                task,
                Some("CF00000000000000000000000000000ec4"),
                &[RecordingAction {
                    recording_sid: "RE00000000000000000000000000000ec4".to_owned(),
                    action: "deleted".to_owned(),
                    at: now + 5,
                    by: ActedBy::Enforcement,
                    cause: None,
                }],
            )
            .await
            .expect("appended");
        for (n, call) in calls.iter().enumerate() {
            let task = format!("WT{:032x}", 0xec50_0000_u64 + n as u64);
            let decision = FirstDecision {
                task_sid: task,
                record: n % 2 == 0,
                call_sid: Some(call.clone()),
                conference_sid: None,
                ..first.clone()
            };
            ledger.first_decision(&decision).await.expect("written");
        }
        ledger
            .tie_conference("CF00000000000000000000000000000ec5", &Tie::NoTask)
            .await
            .expect("tied");
        let mut keys = calls.clone();
        keys.push("CF00000000000000000000000000000ec4".to_owned());
        keys.push("CF00000000000000000000000000000ec5".to_owned());
        keys.push("CA00000000000000000000000000000000".to_owned());
        period.dynamodb.reset();
        let ties = ledger.ties(&keys).await.expect("ties");
        // 253 keys: 3 requests of at most 100.
        assert_eq!(period.dynamodb.count("BatchGetItem"), 3);
        assert_eq!(period.dynamodb.counts().len(), 1);
        let verdicts = ledger
            .verdicts(&[
                task.to_owned(),
                "WT00000000000000000000000000000000".to_owned(),
            ])
            .await
            .expect("verdicts");
        let account = ledger
            .account("RE00000000000000000000000000000ec4")
            .await
            .expect("the account");
        (stands, again, read, ties, verdicts, account)
    });
    assert_eq!(stands, first);
    assert_eq!(again, first, "the first decision is never overwritten");
    assert_eq!(read, Some(first.clone()));
    assert_eq!(ties.len(), 252, "every known SID, none unknown");
    for (n, call) in calls.iter().enumerate() {
        match &ties[call] {
            Tie::Task { task_sid, first } => {
                assert_eq!(*task_sid, format!("WT{:032x}", 0xec50_0000_u64 + n as u64));
                assert_eq!(first.as_ref().map(|f| f.record), Some(n % 2 == 0));
            }
            other => panic!("{call}: {other:?}"),
        }
    }
    assert!(matches!(
        &ties["CF00000000000000000000000000000ec4"],
        Tie::Task { task_sid, first: Some(Verdict { record: false, .. }) } if task_sid == task
    ));
    assert_eq!(ties["CF00000000000000000000000000000ec5"], Tie::NoTask);
    assert_eq!(verdicts.len(), 1);
    assert!(!verdicts[task].record);
    let account = account.expect("the recording's call");
    assert_eq!(account.task_sid, task);
    // The conference, learnt after the decision, is on the call's entry beside it.
    let conference = Some("CF00000000000000000000000000000ec4".to_owned());
    assert_eq!(
        account.first,
        Some(FirstDecision {
            conference_sid: conference,
            ..first
        })
    );
    assert_eq!(account.actions.len(), 1);
    assert_eq!(account.actions[0].action, "deleted");

    // Every item carries the TTL attribute: 400 days from when it was written.
    for sid in [
        task,
        "CF00000000000000000000000000000ec4",
        calls[0].as_str(),
    ] {
        let item = period.item(sid).unwrap_or_else(|| panic!("{sid} is kept"));
        let expires: i64 = item["expires_at"]
            .as_n()
            .expect("a number")
            .parse()
            .expect("whole seconds");
        let days = (expires - now) as f64 / 86_400.0;
        assert!((399.9..=400.1).contains(&days), "{sid}: {days} days");
        // SIDs and decisions only.
        let keys: Vec<&String> = item.keys().collect();
        for key in &keys {
            assert!(
                !key.contains("attributes") && !key.contains("from") && !key.contains("to"),
                "{sid} keeps {key}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// End to end

/// The case the sweep exists for: a Workspace Event Callback is not redelivered, and the
/// recording was still processing at `task.completed`, so enforcement could not delete it.
/// The next sweep does, and the ledger says who decided what and who deleted it.
#[test]
fn a_recording_still_processing_at_task_completed_is_deleted_by_the_next_sweep() {
    let period = Period::start();
    let server = period.serve();
    let payments = period.call(PAYMENTS);
    let sales = period.call(SALES);

    let answer = assign(&server, &payments);
    assert_eq!(answer["instruction"], "conference", "{answer}");
    assert_eq!(answer["conference_record"], "do-not-record", "{answer}");
    let answer = assign(&server, &sales);
    assert_eq!(answer["conference_record"], "record-from-start", "{answer}");

    // The call ends before enforcement hears of it: Twilio is still processing.
    period.standin.end_conference(&payments.conference);
    period.standin.end_conference(&sales.conference);
    // The service says the work is unfinished (503), but TaskRouter never redelivers a
    // Workspace Event Callback.
    let answer = workspace_event(&server, &payments, "task.completed").expect_json(503);
    assert_eq!(answer["unfinished"], 1, "{answer}");
    assert_eq!(
        period
            .standin
            .recording_status(&payments.recording)
            .as_deref(),
        Some("processing"),
        "enforcement could not delete it"
    );
    let logs = server.stop();
    checked_logs(&logs);

    // A sweep while Twilio still processes: pending, nothing deleted, the run clean.
    let (code, report) = period.reconcile(&["--since", "1h", "--fix"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(row(&report, &payments.recording)["outcome"], "pending");
    assert_eq!(row(&report, &sales.recording)["outcome"], "kept");

    // Twilio finishes; the next sweep deletes it and keeps the recorded call's.
    period
        .standin
        .set_recording_status(&payments.recording, "completed");
    period
        .standin
        .set_recording_status(&sales.recording, "completed");
    let (code, report) = period.reconcile(&["--since", "1h", "--fix"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["complete"], true);
    let deleted = row(&report, &payments.recording);
    assert_eq!(deleted["outcome"], "deleted", "{deleted}");
    assert_eq!(deleted["task_sid"], payments.task());
    assert_eq!(deleted["first"], "do-not-record");
    assert_eq!(deleted["rule"], "exclude_queues[0]");
    assert_eq!(deleted["conference_sid"], payments.conference.as_str());
    assert_eq!(row(&report, &sales.recording)["outcome"], "kept");
    assert_eq!(period.standin.recording_status(&payments.recording), None);
    assert_eq!(
        period.standin.recording_status(&sales.recording).as_deref(),
        Some("completed")
    );

    // `explain` from any of the call's SIDs: the assignment's decision, then the deletion.
    for sid in [
        payments.task(),
        payments.customer.as_str(),
        payments.conference.as_str(),
        payments.recording.as_str(),
    ] {
        let (code, account) = period.explain(sid);
        assert_eq!(code, Some(0), "{sid}: {account}");
        assert_eq!(account["task_sid"], payments.task(), "{account}");
        assert_eq!(account["first"]["decision"], "do-not-record", "{account}");
        assert_eq!(account["first"]["decided_by"], "assignment", "{account}");
        assert_eq!(
            account["first"]["rules_version"], period.rules_version,
            "{account}"
        );
        let actions = account["actions"].as_array().expect("actions");
        let last = actions.last().expect("an action");
        assert_eq!(last["recording_sid"], payments.recording.as_str());
        assert_eq!(last["action"], "deleted");
        assert_eq!(last["by"], "reconcile");
    }

    // A third run over the same window: nothing left to do, and the cost of nothing new is
    // the list and one batched ledger read; no conference is asked for again.
    let before = period.standin.requests().len();
    period.dynamodb.reset();
    let (code, report) = period.reconcile(&["--since", "1h", "--fix"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(
        period.dynamodb.counts(),
        HashMap::from([("BatchGetItem".to_owned(), 1)]),
        "one batched read for both recordings, nothing written"
    );
    let asked: Vec<String> = period.standin.requests()[before..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect();
    assert_eq!(asked, [format!("GET {}", recordings_list())], "{asked:?}");
    // Each conference fetched at most once (`GET Conferences/{CF}.json`, not its lists):
    // only the recorded call's, which no event tied; enforcement tied the other's.
    let prefix = format!("/2010-04-01/Accounts/{ACCOUNT}/Conferences/");
    let fetched: Vec<String> = period
        .standin
        .requests_at("GET", &prefix)
        .iter()
        .filter_map(|r| {
            let rest = r.path().strip_prefix(&prefix)?.strip_suffix(".json")?;
            (!rest.contains('/')).then(|| rest.to_owned())
        })
        .collect();
    assert_eq!(fetched, std::slice::from_ref(&sales.conference));
}

#[test]
fn unknown_unmanaged_and_kept_recordings_are_reported_and_never_touched() {
    let period = Period::start();
    let server = period.serve();
    let kept = period.call(SALES);
    assign(&server, &kept);
    drop(server.stop());
    period
        .standin
        .set_recording_status(&kept.recording, "completed");

    // A call from before the ledger: its conference is a Flex task's, the ledger never
    // heard of it.
    let before = "WT00000000000000000000000000000ec6";
    let old_conference = "CF00000000000000000000000000000ec6";
    period
        .standin
        .add_conference(ACCOUNT, old_conference, before, "completed");
    let old = "RE00000000000000000000000000000ec6";
    period.standin.add_recording_at(
        ACCOUNT,
        Of::Conference(old_conference.into()),
        old,
        "completed",
        a_moment_ago(),
        None,
    );
    // An IVR's `<Record>` on a call no Flex task knows, and a conference that is no task's.
    let ivr = "RE00000000000000000000000000000ec7";
    period.standin.add_recording_at(
        ACCOUNT,
        Of::Call("CA00000000000000000000000000000ec7".into()),
        ivr,
        "completed",
        a_moment_ago(),
        Some("RecordVerb"),
    );
    let meeting = "CF00000000000000000000000000000ec8";
    period
        .standin
        .add_conference(ACCOUNT, meeting, "weekly-standup", "completed");
    let standup = "RE00000000000000000000000000000ec8";
    period.standin.add_recording_at(
        ACCOUNT,
        Of::Conference(meeting.into()),
        standup,
        "completed",
        a_moment_ago(),
        None,
    );
    // Outside the window: not listed (another day), or listed and trimmed (this day).
    let last_week = "RE00000000000000000000000000000ec9";
    period.standin.add_recording_at(
        ACCOUNT,
        Of::Call("CA00000000000000000000000000000ec9".into()),
        last_week,
        "completed",
        SystemTime::now() - Duration::from_secs(7 * 86_400),
        Some("DialVerb"),
    );

    let (code, report) = period.reconcile(&["--since", "1h", "--fix"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["recordings"], 4, "{report}");
    assert_eq!(row(&report, &kept.recording)["outcome"], "kept");
    let unknown = row(&report, old);
    assert_eq!(unknown["outcome"], "unknown", "{unknown}");
    assert_eq!(unknown["task_sid"], before);
    assert_eq!(unknown["first"], Value::Null);
    let ivr_row = row(&report, ivr);
    assert_eq!(ivr_row["outcome"], "unmanaged", "{ivr_row}");
    assert_eq!(ivr_row["source"], "RecordVerb");
    assert_eq!(row(&report, standup)["outcome"], "unmanaged");
    assert_eq!(
        report["outcomes"],
        json!({"kept": 1, "deleted": 0, "violation": 0, "pending": 0, "unknown": 1, "unmanaged": 2}),
    );
    for sid in [&kept.recording, old, ivr, standup, last_week] {
        assert!(
            period.standin.recording_status(sid).is_some(),
            "{sid} untouched"
        );
    }
    let deletes = period.standin.requests_at("DELETE", "/2010-04-01/");
    assert!(deletes.is_empty(), "{deletes:?}");
    // The list was asked with the window's days.
    let listed = period.standin.requests_at("GET", &recordings_list());
    let query = listed[0]
        .target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("");
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["DateCreated>", "DateCreated<", "PageSize"]);
    assert_eq!(pairs[2].1, "1000");

    // Without --fix, the same: nothing touched, and the text report names what is not kept.
    let output = period.run("reconcile", &["reconcile", "--since", "1h"], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let said = text(&output.stdout);
    for sid in [old, ivr, standup] {
        assert!(said.contains(sid), "{said}");
    }
    assert!(!said.contains(&kept.recording), "{said}");
}

#[test]
fn a_violation_without_fix_exits_1_and_reports_in_csv_with_every_column() {
    let period = Period::start();
    let server = period.serve();
    let payments = period.call(PAYMENTS);
    assign(&server, &payments);
    drop(server.stop());
    period.standin.end_conference(&payments.conference);
    period
        .standin
        .set_recording_status(&payments.recording, "completed");

    let output = period.run(
        "reconcile",
        &["reconcile", "--since", "2h", "--format", "csv"],
        &[],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let csv = text(&output.stdout);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(COLUMNS.join(",").as_str()), "{csv}");
    let line = lines.next().expect("a row");
    let fields: Vec<&str> = line.split(',').collect();
    assert_eq!(fields.len(), COLUMNS.len(), "{line}");
    let field = |name: &str| fields[COLUMNS.iter().position(|c| *c == name).expect(name)];
    assert_eq!(field("recording_sid"), payments.recording);
    assert_eq!(field("outcome"), "violation");
    assert_eq!(field("first"), "do-not-record");
    assert_eq!(field("task_sid"), payments.task());
    assert!(lines.next().is_none(), "{csv}");
    assert!(
        period
            .standin
            .recording_status(&payments.recording)
            .is_some(),
        "nothing deleted without --fix"
    );

    // The `reconcile` line: counts, never a SID of caller data.
    let said = text(&output.stderr);
    let line: Value = said
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "reconcile")
        .unwrap_or_else(|| panic!("a reconcile line: {said}"));
    assert_eq!(line["outcomes"]["violation"], 1, "{line}");
    assert_eq!(line["complete"], true, "{line}");
}

#[test]
fn twilio_429_is_waited_out_and_429_or_500_mid_list_leaves_the_run_incomplete() {
    let period = Period::start();
    // Eight recordings of calls the ledger never saw, on pages of 2.
    for n in 0..8u32 {
        period.standin.add_recording_at(
            ACCOUNT,
            Of::Call(format!("CA{:032x}", 0xeca0 + n)),
            &format!("RE{:032x}", 0xeca0 + n),
            "completed",
            SystemTime::now() - Duration::from_secs(60),
            Some("OutboundAPI"),
        );
    }
    period.standin.cap_page_size(2);
    let list = recordings_list();

    // One 429 on page 2, asked to wait 1 s: waited out, the run complete.
    period
        .standin
        .fail_nth_at("GET", &list, 2, Fault::RateLimited(Some("1".into())));
    let (code, report) = period.reconcile(&["--since", "1h"]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["complete"], true);
    assert_eq!(report["recordings"], 8);
    let pages = period.standin.requests_at("GET", &list);
    assert_eq!(pages.len(), 5, "4 pages, one asked twice");
    assert_eq!(pages[1].answered, Some(429));
    let waited = pages[2].received.duration_since(pages[1].received);
    assert!(waited >= Duration::from_secs(1), "waited {waited:?}");

    // 429 on page 3 every time it is asked: the run ends incomplete, never clean.
    let before = period.standin.requests_at("GET", &list).len();
    // The 3rd request from now and each time it is asked again, one more than retried.
    for _ in 0..=conditional_recording::reconcile::RETRIES {
        period
            .standin
            .fail_nth_at("GET", &list, 3, Fault::RateLimited(Some("0".into())));
    }
    let (code, report) = period.reconcile(&["--since", "1h"]);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["complete"], false);
    assert_eq!(report["recordings"], 4, "two pages were read");
    let unchecked = report["unchecked"].to_string();
    assert!(unchecked.contains("page 3"), "{unchecked}");
    assert!(period.standin.requests_at("GET", &list).len() > before);

    // 500 on page 2: incomplete.
    period
        .standin
        .fail_nth_at("GET", &list, 2, Fault::Status(500));
    let (code, report) = period.reconcile(&["--since", "1h"]);
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["complete"], false);
    assert!(report["unchecked"].to_string().contains("500"), "{report}");
}

#[test]
fn dynamodb_down_leaves_the_answer_unchanged_and_the_sweep_incomplete() {
    let period = Period::start();
    let call = period.call(PAYMENTS);

    // The answer with no ledger, and with a ledger that never answers.
    let without = {
        let mut env = period.env();
        env.retain(|(name, _)| *name != "LEDGER_TABLE");
        let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let server = Server::start_with(&env);
        let answer = assign(&server, &call);
        drop(server.stop());
        answer
    };
    let silent = Silent::start();
    let server = period.serve_with(&[(
        "AWS_ENDPOINT_URL_DYNAMODB",
        format!("http://127.0.0.1:{}", silent.port),
    )]);
    let with = assign(&server, &call);
    let logs = server.stop();
    assert_eq!(with, without, "the ledger never changes the answer");
    let failures: Vec<Value> = checked_logs(&logs)
        .json()
        .into_iter()
        .filter(|l| l["LedgerFailures"] == 1)
        .collect();
    assert_eq!(failures.len(), 1, "{}", logs.text());
    assert!(
        logs.text().contains("ledger write failed"),
        "{}",
        logs.text()
    );

    // Reconcile with DynamoDB down (nothing listening): exit 3, nothing reported clean.
    period
        .standin
        .set_recording_status(&call.recording, "completed");
    let closed = format!("http://127.0.0.1:{}", free_port());
    let (code, report) = period.reconcile_with(
        &["--since", "1h", "--fix"],
        &[("AWS_ENDPOINT_URL_DYNAMODB", closed)],
    );
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["complete"], false);
    assert_eq!(row(&report, &call.recording)["outcome"], Value::Null);
    assert!(
        row(&report, &call.recording)["cause"]
            .as_str()
            .is_some_and(|c| c.contains("ledger")),
        "{report}"
    );
    assert!(period.standin.recording_status(&call.recording).is_some());
}

/// The ledger's connections are opened while the service starts, so the first callback's
/// write waits for no handshake: the start reads a key no item has, two at once, and the
/// first decision and its tie go over those two connections. A table that is not there is
/// said at start, and the service still starts and answers.
#[test]
fn the_ledgers_connections_are_opened_at_start_and_the_first_callback_reuses_them() {
    let period = Period::start();
    let server = period.serve();
    let at_start = (period.dynamodb.connections(), period.dynamodb.counts());
    assert_eq!(at_start.0, 2, "{at_start:?}");
    assert_eq!(
        at_start.1,
        HashMap::from([("GetItem".to_owned(), 2)]),
        "{at_start:?}"
    );

    let call = period.call(PAYMENTS);
    assign(&server, &call);
    let logs = server.stop();
    assert!(
        period.dynamodb.count("UpdateItem") >= 1,
        "{:?}",
        period.dynamodb.counts()
    );
    assert_eq!(
        period.dynamodb.connections(),
        2,
        "the first callback opened no connection: {:?}",
        period.dynamodb.counts()
    );
    let item = period
        .item(call.callback.get("TaskSid"))
        .expect("the call's entry");
    assert_eq!(
        item.get("record"),
        Some(&aws_sdk_dynamodb::types::AttributeValue::Bool(false))
    );
    assert!(!checked_logs(&logs).text().contains("ledger not reached"));

    // No such table: said once at start, naming the table and DynamoDB's code; then each
    // callback's failed write is counted as always, and the answer is the same.
    let server = period.serve_with(&[("LEDGER_TABLE", "cr-no-such-table".to_owned())]);
    let answer = assign(&server, &period.call(SALES));
    let logs = server.stop();
    assert_eq!(answer["conference_record"], "record-from-start");
    let warned: Vec<Value> = checked_logs(&logs)
        .with_message("ledger not reached at start; each callback will try its own write");
    assert_eq!(warned.len(), 1, "{}", logs.text());
    assert_eq!(warned[0]["table"], "cr-no-such-table");
    assert!(
        warned[0]["cause"]
            .as_str()
            .is_some_and(|c| c.contains("ResourceNotFoundException")),
        "{}",
        logs.text()
    );
}

/// Two sweeps over the same period at once (a scheduled one and an operator's): each
/// recording is deleted once, the ledger holds one deletion for it, and neither run fails.
#[test]
fn two_sweeps_at_once_delete_each_recording_once_and_neither_fails() {
    let period = Period::start();
    let server = period.serve();
    let calls: Vec<Call> = (0..6).map(|_| period.call(PAYMENTS)).collect();
    for call in &calls {
        assign(&server, call);
    }
    drop(server.stop());
    for call in &calls {
        period.standin.end_conference(&call.conference);
        period
            .standin
            .set_recording_status(&call.recording, "completed");
    }
    // Slow answers, so that the two runs overlap.
    period
        .standin
        .set_fault(Some(Fault::Delay(Duration::from_millis(200))));

    let (first, second) = std::thread::scope(|scope| {
        let a = scope.spawn(|| period.reconcile(&["--since", "1h", "--fix"]));
        let b = scope.spawn(|| period.reconcile(&["--since", "1h", "--fix"]));
        (a.join().expect("a run"), b.join().expect("a run"))
    });
    for (code, report) in [&first, &second] {
        assert_eq!(*code, Some(0), "{report}");
        assert_eq!(report["outcomes"]["deleted"], 6, "{report}");
        assert_eq!(report["outcomes"]["violation"], 0, "{report}");
    }
    let deleted_by = |report: &Value| -> usize {
        report["rows"]
            .as_array()
            .map(|rows| rows.iter().filter(|r| r["cause"].is_null()).count())
            .unwrap_or_default()
    };
    assert_eq!(deleted_by(&first.1) + deleted_by(&second.1), 6);
    for report in [&first.1, &second.1] {
        for r in report["rows"].as_array().expect("rows") {
            assert!(r["cause"].is_null() || r["cause"] == ALREADY_GONE, "{r}");
        }
    }
    let done = period.standin.requests_at("DELETE", "/2010-04-01/");
    assert_eq!(
        done.iter().filter(|r| r.answered == Some(204)).count(),
        6,
        "each deleted once"
    );
    for call in &calls {
        assert_eq!(period.standin.recording_status(&call.recording), None);
        let (_, account) = period.explain(call.task());
        let deletions = account["actions"]
            .as_array()
            .map(|a| a.iter().filter(|a| a["action"] == "deleted").count());
        assert_eq!(deletions, Some(1), "{account}");
    }
    assert!(period.standin.most_in_flight() <= 2 * IN_FLIGHT);
}

#[test]
fn usage_faults_exit_2_naming_what_to_set() {
    let period = Period::start();
    // (arguments, variables changed (empty: removed), what the error names)
    type Case<'a> = (&'a [&'a str], &'a [(&'static str, &'a str)], &'a str);
    let cases: [Case; 5] = [
        (&["reconcile", "--since", "32d"], &[], "at most 31 days"),
        (
            &["reconcile", "--from", "2026-10-01", "--to", "2026-11-02"],
            &[],
            "at most 31 days",
        ),
        (
            &["reconcile", "--since", "1h"],
            &[("LEDGER_TABLE", "")],
            "LEDGER_TABLE",
        ),
        (
            &["reconcile", "--since", "1h"],
            &[("TWILIO_ACCOUNT_SID", "")],
            "TWILIO_ACCOUNT_SID",
        ),
        (&["explain", "WT123"], &[], "WT"),
    ];
    for (args, changed, says) in cases {
        let mut env = period.env();
        for (name, value) in changed {
            env.retain(|(n, _)| n != name);
            if !value.is_empty() {
                env.push((name, (*value).to_owned()));
            }
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let output = run_binary("reconcile", args, &env);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            describe(&output)
        );
        let said = text(&output.stderr);
        assert!(said.contains(says), "{args:?}: {said}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    // Nothing was asked of Twilio.
    assert!(period.standin.requests().is_empty());
}

#[test]
fn explain_answers_text_and_json_and_exit_1_for_a_call_it_never_saw() {
    let period = Period::start();
    let server = period.serve();
    let call = period.call(SALES);
    assign(&server, &call);
    drop(server.stop());

    let output = period.run("explain", &["explain", call.task()], &[]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let said = text(&output.stdout);
    assert!(said.contains(call.task()), "{said}");
    assert!(said.contains("record"), "{said}");
    assert!(said.contains("assignment callback"), "{said}");
    assert!(said.contains(&call.customer), "{said}");
    no_secrets(&said);

    let (code, account) = period.explain(&call.customer);
    assert_eq!(code, Some(0), "{account}");
    assert_eq!(account["first"]["decision"], "record-from-start");
    assert_eq!(account["call_sid"], call.customer.as_str());

    let unknown = period.run(
        "explain",
        &["explain", "WT00000000000000000000000000000eee"],
        &[],
    );
    assert_eq!(unknown.status.code(), Some(1), "{}", describe(&unknown));
    assert!(unknown.stdout.is_empty());
    assert!(
        text(&unknown.stderr).contains("no call"),
        "{}",
        describe(&unknown)
    );
}

// ---------------------------------------------------------------------------------------
// Media in the customer's bucket (SPEC section 11), in moto's S3

const MEDIA_BUCKET: &str = "cr-media";

/// Where Twilio's external storage would put a recording's audio, and its `media_url`
/// (virtual-hosted, the key percent-encoded, a presigned query that must never be logged).
fn media_at(recording: &str, name: &str) -> (String, String) {
    let key = format!("{ACCOUNT}/{recording} {name}.wav");
    let encoded = key
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('+', "%2B");
    let url = format!(
        "https://{MEDIA_BUCKET}.s3.us-east-1.amazonaws.com/{encoded}?X-Amz-Signature=0ddba11"
    );
    (key, url)
}

fn buckets() -> [(&'static str, String); 1] {
    [("RECORDINGS_BUCKETS", MEDIA_BUCKET.to_owned())]
}

/// A do-not-record call, routed, ended and finished by Twilio, its audio at `media_url`.
fn finished_payments_call(period: &Period, server: &Server) -> Call {
    let call = period.call(PAYMENTS);
    assign(server, &call);
    period.standin.end_conference(&call.conference);
    period
        .standin
        .set_recording_status(&call.recording, "completed");
    call
}

#[test]
fn the_sweep_deletes_every_version_of_the_media_first_then_the_recording() {
    let period = Period::start();
    let s3 = period.moto.s3();
    let server = period.serve();
    let excluded = finished_payments_call(&period, &server);
    let elsewhere = finished_payments_call(&period, &server);
    let early = finished_payments_call(&period, &server);
    let recorded = period.call(SALES);
    assign(&server, &recorded);
    drop(server.stop());
    period
        .standin
        .set_recording_status(&recorded.recording, "completed");

    let (key, url) = media_at(&excluded.recording, "call + 1");
    let neighbour = format!("{key}.bak");
    let (other_key, _) = media_at(&elsewhere.recording, "x");
    let (early_key, early_url) = media_at(&early.recording, "late");
    let (kept_key, kept_url) = media_at(&recorded.recording, "kept");
    moto::runtime().block_on(async {
        media_store::create_versioned_bucket(&s3, MEDIA_BUCKET).await;
        media_store::create_bucket(&s3, "cr-elsewhere").await;
        // Three versions and a delete marker.
        for _ in 0..3 {
            media_store::put(&s3, MEDIA_BUCKET, &key).await;
        }
        s3.delete_object()
            .bucket(MEDIA_BUCKET)
            .key(&key)
            .send()
            .await
            .expect("a delete marker");
        assert_eq!(media_store::versions(&s3, MEDIA_BUCKET, &key).await, 4);
        media_store::put(&s3, MEDIA_BUCKET, &neighbour).await;
        media_store::put(&s3, "cr-elsewhere", &other_key).await;
        media_store::put(&s3, MEDIA_BUCKET, &kept_key).await;
    });
    let standin = &period.standin;
    standin.set_media_url(&excluded.recording, &url);
    standin.set_media_url(
        &elsewhere.recording,
        &format!(
            "https://s3.amazonaws.com/cr-elsewhere/{}",
            other_key.replace(' ', "%20")
        ),
    );
    standin.set_media_url(&early.recording, &early_url);
    standin.set_media_url(&recorded.recording, &kept_url);

    let (code, report) = period.reconcile_with(&["--since", "1h", "--fix"], &buckets());
    assert_eq!(
        code,
        Some(1),
        "the media elsewhere is a violation: {report}"
    );
    let gone = row(&report, &excluded.recording);
    assert_eq!(
        outcome_and_media(gone),
        (Some("deleted"), Some("deleted")),
        "{gone}"
    );
    let refused = row(&report, &elsewhere.recording);
    assert_eq!(
        outcome_and_media(refused),
        (Some("violation"), Some("failed")),
        "{refused}"
    );
    assert!(
        refused["cause"]
            .as_str()
            .is_some_and(|c| c.starts_with("bucket not allowed")),
        "{refused}"
    );
    let waiting = row(&report, &early.recording);
    assert_eq!(
        outcome_and_media(waiting),
        (Some("pending"), Some("absent")),
        "{waiting}"
    );
    let kept = row(&report, &recorded.recording);
    assert_eq!(
        outcome_and_media(kept),
        (Some("kept"), Some("kept")),
        "{kept}"
    );

    moto::runtime().block_on(async {
        assert_eq!(
            media_store::versions(&s3, MEDIA_BUCKET, &key).await,
            0,
            "no copy left"
        );
        assert_eq!(
            media_store::versions(&s3, MEDIA_BUCKET, &neighbour).await,
            1
        );
        assert_eq!(
            media_store::versions(&s3, "cr-elsewhere", &other_key).await,
            1
        );
        assert_eq!(media_store::versions(&s3, MEDIA_BUCKET, &kept_key).await, 1);
    });
    assert_eq!(standin.recording_status(&excluded.recording), None);
    assert!(
        standin.recording_status(&elsewhere.recording).is_some(),
        "the pointer stays"
    );
    assert!(
        standin.recording_status(&early.recording).is_some(),
        "the pointer stays"
    );

    // The media appears once Twilio has written it: the next sweep takes both.
    moto::runtime().block_on(media_store::put(&s3, MEDIA_BUCKET, &early_key));
    let (_, report) = period.reconcile_with(&["--since", "1h", "--fix"], &buckets());
    let late = row(&report, &early.recording);
    assert_eq!(
        outcome_and_media(late),
        (Some("deleted"), Some("deleted")),
        "{late}"
    );
    assert_eq!(standin.recording_status(&early.recording), None);
    moto::runtime().block_on(async {
        assert_eq!(
            media_store::versions(&s3, MEDIA_BUCKET, &early_key).await,
            0
        );
    });

    // The ledger says what went, media first.
    let (_, account) = period.explain(excluded.task());
    let actions: Vec<&str> = account["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    assert!(
        actions.ends_with(&["media_deleted", "deleted"]),
        "{actions:?}"
    );
}

#[test]
fn media_under_object_lock_is_refused_and_the_recording_kept_as_its_pointer() {
    let period = Period::start();
    let s3 = period.moto.s3();
    let server = period.serve();
    let call = finished_payments_call(&period, &server);
    drop(server.stop());
    let (key, url) = media_at(&call.recording, "locked");
    moto::runtime().block_on(async {
        s3.create_bucket()
            .bucket(MEDIA_BUCKET)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .expect("CreateBucket with Object Lock");
        let a_day_on = SystemTime::now() + Duration::from_secs(86_400);
        s3.put_object()
            .bucket(MEDIA_BUCKET)
            .key(&key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"RIFF audio",
            ))
            .object_lock_mode(aws_sdk_s3::types::ObjectLockMode::Compliance)
            .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from(a_day_on))
            .send()
            .await
            .expect("PutObject under a retention");
    });
    period.standin.set_media_url(&call.recording, &url);
    let (code, report) = period.reconcile_with(&["--since", "1h", "--fix"], &buckets());
    assert_eq!(code, Some(1), "{report}");
    let locked = row(&report, &call.recording);
    assert_eq!(locked["outcome"], "violation", "{locked}");
    assert_eq!(locked["media"], "failed", "{locked}");
    assert!(
        locked["cause"]
            .as_str()
            .is_some_and(|c| c.contains("AccessDenied")),
        "S3's reason: {locked}"
    );
    assert!(period.standin.recording_status(&call.recording).is_some());
    moto::runtime().block_on(async {
        assert_eq!(media_store::versions(&s3, MEDIA_BUCKET, &key).await, 1);
    });
}

/// Enforcement, as a call's last event arrives: a finished recording's media goes first,
/// with one `media_deleted` line naming the bucket, the key and the versions, never the URL.
#[test]
fn enforcement_deletes_the_media_first_and_says_so_in_one_line() {
    let period = Period::start();
    let s3 = period.moto.s3();
    let server = period.serve_with(&buckets());
    let call = finished_payments_call(&period, &server);
    let (key, url) = media_at(&call.recording, "call + 1");
    moto::runtime().block_on(async {
        media_store::create_versioned_bucket(&s3, MEDIA_BUCKET).await;
        media_store::put(&s3, MEDIA_BUCKET, &key).await;
        media_store::put(&s3, MEDIA_BUCKET, &key).await;
    });
    period.standin.set_media_url(&call.recording, &url);
    let answer = workspace_event(&server, &call, "task.completed").expect_json(200);
    assert_eq!(answer["unfinished"], 0, "{answer}");
    let logs = server.stop();
    checked_logs(&logs);
    assert!(
        !logs.text().contains("0ddba11"),
        "the URL's query reached a log"
    );
    let lines: Vec<Value> = logs.with_message("enforcement");
    let kinds: Vec<&str> = lines.iter().filter_map(|l| l["action"].as_str()).collect();
    assert_eq!(kinds, ["media_deleted", "deleted"], "{lines:?}");
    assert_eq!(lines[0]["bucket"], MEDIA_BUCKET);
    assert_eq!(lines[0]["key"], key.as_str());
    assert_eq!(lines[0]["versions"], 2);
    assert_eq!(lines[0]["Action"], "media_deleted");
    assert_eq!(period.standin.recording_status(&call.recording), None);
    moto::runtime().block_on(async {
        assert_eq!(media_store::versions(&s3, MEDIA_BUCKET, &key).await, 0);
    });
}
