//! Reconciliation on the in-memory ports: outcomes, `--fix`, failures, and what a run costs.

use std::sync::atomic::Ordering;

use super::*;
use crate::ledger::{DecidedBy, FirstDecision};
use crate::ports::{ArchivedRecording, RecordingStatus};
use crate::service::memory::{Archive, MemoryLedger, Unavailable, Voice, VoiceRecording};

const ACCOUNT: &str = "AC00000000000000000000000000000000";
/// 2026-12-01T00:00:00Z.
const DAY: i64 = 1_796_083_200;

fn sid(kind: &str, n: usize) -> String {
    format!("{kind}{n:032x}")
}

fn window() -> Window {
    Window {
        from: DAY,
        to: DAY + 86_400,
    }
}

fn recording(
    n: usize,
    conference: Option<usize>,
    call: Option<usize>,
    status: RecordingStatus,
) -> ArchivedRecording {
    let word = match status {
        RecordingStatus::InProgress => "in-progress",
        RecordingStatus::Processing => "processing",
        RecordingStatus::Paused => "paused",
        RecordingStatus::Stopped => "stopped",
        RecordingStatus::Absent => "absent",
        _ => "completed",
    };
    ArchivedRecording {
        sid: sid("RE", n),
        status,
        status_word: word.to_owned(),
        source: "StartConferenceRecordingAPI".to_owned(),
        date_created: DAY + n as i64,
        conference_sid: conference.map(|c| sid("CF", c)),
        call_sid: call.map(|c| sid("CA", c)),
        media_url: None,
    }
}

fn first(task: usize, record: bool) -> FirstDecision {
    FirstDecision {
        task_sid: sid("WT", task),
        record,
        reason: if record {
            "no exclusion matched".into()
        } else {
            "excluded by queue (exclude_queues[0])".into()
        },
        rule: (!record).then(|| "exclude_queues[0]".to_owned()),
        rules_version: Some(3),
        decided_at: DAY,
        decided_by: DecidedBy::Assignment,
        call_sid: Some(sid("CA", task)),
        conference_sid: None,
    }
}

struct Setup {
    reconciler: Reconciler<Archive, MemoryLedger, Voice>,
}

impl Setup {
    /// Recordings listed and held by the Voice API alike; conferences named after tasks.
    fn new(
        recordings: Vec<ArchivedRecording>,
        conferences: &[(usize, String)],
        fix: bool,
    ) -> Setup {
        let voice = Voice::default();
        voice.0.lock().unwrap().recordings = recordings
            .iter()
            .map(|r| VoiceRecording {
                sid: r.sid.clone(),
                of: r
                    .conference_sid
                    .clone()
                    .or_else(|| r.call_sid.clone())
                    .unwrap_or_default(),
                status: r.status,
            })
            .collect();
        let archive = Archive {
            page_size: 100,
            ..Archive::default()
        };
        *archive.recordings.lock().unwrap() = recordings;
        *archive.conferences.lock().unwrap() = conferences
            .iter()
            .map(|(n, name)| (sid("CF", *n), name.clone()))
            .collect();
        Setup {
            reconciler: Reconciler {
                archive,
                ledger: MemoryLedger::default(),
                recordings: voice,
                account_sid: ACCOUNT.to_owned(),
                fix,
                media: crate::service::media::Media::none(),
            },
        }
    }

    /// `calls` recorded calls, each with one finished conference recording.
    async fn recorded_calls(calls: usize) -> Setup {
        let recordings: Vec<_> = (0..calls)
            .map(|n| recording(n, Some(n), None, RecordingStatus::Completed))
            .collect();
        let conferences: Vec<_> = (0..calls).map(|c| (c, sid("WT", c))).collect();
        let setup = Setup::new(recordings, &conferences, false);
        for task in 0..calls {
            setup.decide(task, true).await;
        }
        setup
    }

    async fn decide(&self, task: usize, record: bool) {
        self.reconciler
            .ledger
            .first_decision(&first(task, record))
            .await
            .unwrap();
    }

    async fn run(&self) -> Report {
        self.reconciler.run(window()).await
    }

    fn outcome(report: &Report, n: usize) -> Option<Outcome> {
        let sid = sid("RE", n);
        report
            .rows
            .iter()
            .find(|r| r.recording_sid == sid)
            .and_then(|r| r.outcome)
    }

    fn voice_has(&self, n: usize) -> Option<RecordingStatus> {
        self.reconciler.recordings.status(&sid("RE", n))
    }
}

/// Six recordings, one of each outcome (before `--fix`).
async fn one_of_each(fix: bool) -> Setup {
    let recordings = vec![
        // A conference of a recorded call.
        recording(1, Some(1), None, RecordingStatus::Completed),
        // A conference of a do-not-record call, finished: should not exist.
        recording(2, Some(2), None, RecordingStatus::Completed),
        // The customer's leg of the same do-not-record call, still recording.
        recording(3, None, Some(2), RecordingStatus::InProgress),
        // A conference of a call from before the ledger.
        recording(4, Some(4), None, RecordingStatus::Completed),
        // An IVR <Record>: a call no Flex task knows.
        recording(5, None, Some(99), RecordingStatus::Completed),
        // A conference not named after a task.
        recording(6, Some(6), None, RecordingStatus::Completed),
    ];
    let conferences = [
        (1, sid("WT", 1)),
        (2, sid("WT", 2)),
        (4, sid("WT", 4)),
        (6, "support-huddle".to_owned()),
    ];
    let setup = Setup::new(recordings, &conferences, fix);
    setup.decide(1, true).await;
    setup.decide(2, false).await;
    setup
}

#[tokio::test]
async fn every_recording_gets_one_outcome_and_nothing_is_touched_without_fix() {
    let setup = one_of_each(false).await;
    let report = setup.run().await;
    assert!(report.complete(), "{:?}", report.unchecked);
    let expected = [
        (1, Outcome::Kept),
        (2, Outcome::Violation),
        (3, Outcome::Pending),
        (4, Outcome::Unknown),
        (5, Outcome::Unmanaged),
        (6, Outcome::Unmanaged),
    ];
    for (n, outcome) in expected {
        assert_eq!(Setup::outcome(&report, n), Some(outcome), "RE {n}");
    }
    assert_eq!(report.verdict(), Verdicts::Violations);
    let row = report
        .rows
        .iter()
        .find(|r| r.recording_sid == sid("RE", 2))
        .unwrap();
    assert_eq!(row.task_sid, Some(sid("WT", 2)));
    assert_eq!(
        (row.first, row.rule.as_deref()),
        (Some(false), Some("exclude_queues[0]"))
    );
    let requests = setup
        .reconciler
        .recordings
        .0
        .lock()
        .unwrap()
        .requests
        .clone();
    assert!(requests.is_empty(), "{requests:?}");
}

#[tokio::test]
async fn fix_deletes_violations_stops_what_records_and_writes_the_ledger() {
    let setup = one_of_each(true).await;
    let report = setup.run().await;
    assert_eq!(Setup::outcome(&report, 2), Some(Outcome::Deleted));
    assert_eq!(Setup::outcome(&report, 3), Some(Outcome::Pending));
    assert_eq!(setup.voice_has(2), None, "deleted");
    assert_eq!(setup.voice_has(3), Some(RecordingStatus::Stopped));
    // Only a do-not-record call's recordings are touched.
    for n in [1, 4, 5, 6] {
        assert_eq!(
            setup.voice_has(n),
            Some(RecordingStatus::Completed),
            "RE {n}"
        );
    }
    assert_eq!(report.verdict(), Verdicts::Clean);
    let account = setup
        .reconciler
        .ledger
        .account(&sid("RE", 2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.task_sid, sid("WT", 2));
    let actions: Vec<_> = account
        .actions
        .iter()
        .map(|a| (a.recording_sid.clone(), a.action.as_str(), a.by))
        .collect();
    assert!(
        actions.contains(&(sid("RE", 2), "deleted", ActedBy::Reconcile)),
        "{actions:?}"
    );
    assert!(
        actions.contains(&(sid("RE", 3), "stopped", ActedBy::Reconcile)),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_delete_twilio_refuses_is_a_violation_with_its_cause() {
    let setup = one_of_each(true).await;
    // Twilio still holds RE 2 as processing though the list said completed.
    setup.reconciler.recordings.0.lock().unwrap().recordings[1].status =
        RecordingStatus::Processing;
    let report = setup.run().await;
    let row = report
        .rows
        .iter()
        .find(|r| r.recording_sid == sid("RE", 2))
        .unwrap();
    assert_eq!(row.outcome, Some(Outcome::Violation));
    assert_eq!(
        row.cause.as_deref(),
        Some("Voice API answered 400 on delete: the recording is processing")
    );
    assert_eq!(report.verdict(), Verdicts::Violations);
}

#[tokio::test]
async fn a_second_run_over_nothing_new_costs_the_list_and_one_ledger_read_per_hundred() {
    // 1,000 recordings on 400 conferences, every call decided.
    let recordings: Vec<_> = (0..1_000)
        .map(|n| recording(n, Some(n % 400), None, RecordingStatus::Completed))
        .collect();
    let conferences: Vec<_> = (0..400).map(|c| (c, sid("WT", c))).collect();
    let setup = Setup::new(recordings, &conferences, false);
    for task in 0..400 {
        setup.decide(task, true).await;
    }
    let first = setup.run().await;
    assert_eq!(first.count(Outcome::Kept), 1_000, "{:?}", first.unchecked);
    assert_eq!(
        setup
            .reconciler
            .archive
            .conferences_read
            .load(Ordering::Relaxed),
        400
    );

    let reads_before = setup.reconciler.ledger.reads.load(Ordering::Relaxed);
    let writes_before = setup.reconciler.ledger.writes.load(Ordering::Relaxed);
    let pages_before = setup.reconciler.archive.pages_read.load(Ordering::Relaxed);
    let second = setup.run().await;
    assert_eq!(second.count(Outcome::Kept), 1_000);
    // Each conference was asked once in its life.
    assert_eq!(
        setup
            .reconciler
            .archive
            .conferences_read
            .load(Ordering::Relaxed),
        400
    );
    let reads = setup.reconciler.ledger.reads.load(Ordering::Relaxed) - reads_before;
    assert!(
        reads <= 1_000 / 100,
        "{reads} ledger reads for 1,000 recordings"
    );
    assert_eq!(
        setup.reconciler.ledger.writes.load(Ordering::Relaxed),
        writes_before,
        "no write"
    );
    assert_eq!(
        setup.reconciler.archive.pages_read.load(Ordering::Relaxed) - pages_before,
        10
    );
}

#[tokio::test]
async fn a_list_that_fails_part_way_is_never_clean() {
    let setup = Setup::recorded_calls(250).await;
    *setup.reconciler.archive.failing_page.lock().unwrap() = Some((2, Unavailable::ListFailed));
    let report = setup.run().await;
    assert!(!report.complete());
    assert_eq!(report.verdict(), Verdicts::Incomplete);
    assert_eq!(
        report.rows.len(),
        100,
        "the first page is still accounted for"
    );
    assert_eq!(
        report.unchecked,
        ["the recordings list from page 2 on: Voice API answered 500 on list"]
    );
    assert_eq!(report.to_json()["complete"], false);
}

#[tokio::test]
async fn a_429_is_waited_out_and_the_run_completes() {
    let setup = Setup::recorded_calls(150).await;
    *setup.reconciler.archive.failing_page.lock().unwrap() = Some((2, Unavailable::RateLimited));
    let report = setup.run().await;
    assert!(report.complete(), "{:?}", report.unchecked);
    assert_eq!(report.count(Outcome::Kept), 150);
    assert_eq!(
        setup.reconciler.archive.pages_read.load(Ordering::Relaxed),
        3
    );
}

#[tokio::test]
async fn a_ledger_that_cannot_be_read_leaves_every_recording_unchecked() {
    let setup = one_of_each(true).await;
    setup.reconciler.ledger.down.store(true, Ordering::Relaxed);
    let report = setup.run().await;
    assert_eq!(report.verdict(), Verdicts::Incomplete);
    assert!(
        report.rows.iter().all(|r| r.outcome.is_none()),
        "{:?}",
        report.rows
    );
    assert!(report.counts().iter().all(|(_, n)| *n == 0));
    let requests = setup
        .reconciler
        .recordings
        .0
        .lock()
        .unwrap()
        .requests
        .clone();
    assert!(requests.is_empty(), "nothing fixed blind: {requests:?}");
}

#[tokio::test]
async fn only_the_window_is_reported() {
    let mut early = recording(1, Some(1), None, RecordingStatus::Completed);
    early.date_created = DAY - 1;
    let mut late = recording(2, Some(1), None, RecordingStatus::Completed);
    late.date_created = DAY + 86_400;
    let inside = recording(3, Some(1), None, RecordingStatus::Completed);
    let setup = Setup::new(vec![early, late, inside], &[(1, sid("WT", 1))], false);
    setup.decide(1, true).await;
    let report = setup.run().await;
    let sids: Vec<_> = report
        .rows
        .iter()
        .map(|r| r.recording_sid.clone())
        .collect();
    assert_eq!(sids, [sid("RE", 3)]);
}

#[test]
fn windows_from_the_options() {
    let now = DAY + 12 * 3_600;
    let ok = |since: Option<&str>, from: Option<&str>, to: Option<&str>| {
        Window::from_options(since, from, to, now)
    };
    assert_eq!(
        ok(Some("90m"), None, None),
        Ok(Window {
            from: now - 5_400,
            to: now
        })
    );
    assert_eq!(
        ok(Some("7d"), None, None),
        Ok(Window {
            from: now - 7 * 86_400,
            to: now
        })
    );
    assert_eq!(
        ok(None, Some("2026-12-01"), None),
        Ok(Window { from: DAY, to: now })
    );
    assert_eq!(
        ok(
            None,
            Some("2026-11-30T23:00:00Z"),
            Some("2026-12-01T01:00:00+01:00")
        ),
        Ok(Window {
            from: DAY - 3_600,
            to: DAY
        })
    );
    assert_eq!(
        ok(Some("31d"), None, None).map(|w| w.to - w.from),
        Ok(31 * 86_400)
    );
    let refused = [
        (ok(None, None, None), WindowError::Missing),
        (ok(Some("1h"), Some("2026-12-01"), None), WindowError::Both),
        (
            ok(Some("1h"), None, Some("2026-12-01")),
            WindowError::ToWithSince,
        ),
        (
            ok(Some("32d"), None, None),
            WindowError::TooLong { hours: 768 },
        ),
        (
            ok(None, Some("2026-10-01"), Some("2026-12-01")),
            WindowError::TooLong { hours: 1_464 },
        ),
        (
            ok(None, Some("2026-12-01"), Some("2026-12-01")),
            WindowError::Empty,
        ),
    ];
    for (got, want) in refused {
        assert_eq!(got, Err(want));
    }
    for bad in [
        "",
        "h",
        "10",
        "1w",
        "-5m",
        "0h",
        "1.5h",
        " 1h",
        "99999999999999999999d",
    ] {
        assert!(
            matches!(ok(Some(bad), None, None), Err(WindowError::Duration(_))),
            "{bad:?}"
        );
    }
    for bad in ["yesterday", "2026-13-01", "2026-12-01 09:00", "1796083200"] {
        assert!(
            matches!(ok(None, Some(bad), None), Err(WindowError::Time { .. })),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn the_report_in_each_format() {
    let setup = one_of_each(false).await;
    let report = setup.run().await;
    let json = report.to_json();
    let outcomes = json["outcomes"].as_object().unwrap();
    let keys: Vec<_> = outcomes.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "kept",
            "deleted",
            "violation",
            "pending",
            "unknown",
            "unmanaged"
        ]
    );
    assert_eq!(json["outcomes"]["deleted"], 0, "zeros included");
    assert_eq!(json["recordings"], 6);
    assert_eq!(json["from"], "2026-12-01T00:00:00Z");
    assert_eq!(json["rows"][1]["first"], "do-not-record");
    assert_eq!(json["rows"][1]["date_created"], "2026-12-01T00:00:02Z");

    let csv = report.to_csv();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(COLUMNS.join(",").as_str()));
    let violation = lines.nth(1).unwrap();
    assert_eq!(violation.split(',').count(), COLUMNS.len(), "{violation}");
    assert!(violation.contains(",violation,"), "{violation}");

    let text = report.to_text();
    assert!(text.contains("violation  1"), "{text}");
    assert!(
        !text.contains(&sid("RE", 1)),
        "kept recordings are not listed: {text}"
    );
    assert!(text.contains(&sid("RE", 2)), "{text}");
}

#[test]
fn a_csv_cell_is_quoted_when_it_must_be() {
    use serde_json::json;
    assert_eq!(report::csv_cell(&json!("plain")), "plain");
    assert_eq!(report::csv_cell(&json!("a, b")), "\"a, b\"");
    assert_eq!(report::csv_cell(&json!("say \"x\"")), "\"say \"\"x\"\"\"");
    assert_eq!(report::csv_cell(&json!(null)), "");
    assert_eq!(report::csv_cell(&json!(3)), "3");
}

#[test]
fn the_archive_is_asked_from_the_first_day_to_the_day_after_the_last() {
    let date = |text: &str| {
        time::Date::parse(
            text,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .expect("a date")
    };
    // 2026-11-30T23:00Z to 2026-12-01T00:00Z: one hour of one day.
    let hour = Window {
        from: DAY - 3_600,
        to: DAY,
    };
    assert_eq!(hour.dates(), (date("2026-11-30"), date("2026-12-01")));
    // Into the next day by a second: that day is asked for too.
    let over = Window {
        from: DAY - 3_600,
        to: DAY + 1,
    };
    assert_eq!(over.dates(), (date("2026-11-30"), date("2026-12-02")));
}
