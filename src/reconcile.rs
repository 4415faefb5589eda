//! Reconciliation (SPEC section 10): every recording the account holds for a period,
//! accounted for against the ledger's first decisions, and with `--fix` the ones that should
//! not exist removed. A use case of the core beside the callback and the events: it knows the
//! ports (the recordings archive, the ledger, recordings to stop and delete), no HTTP and no
//! AWS type.
//!
//! Cost is what makes a sweep every 15 minutes affordable: the archive is listed page by page
//! (1,000 a page); the ledger is read in batches (one request per 100 SIDs); a conference is
//! asked of the Voice API once in its life, its task then kept in the ledger; at most
//! [`IN_FLIGHT`] Voice API requests run at once, and a `429` waits for its `Retry-After`.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::ledger::{self, ActedBy, RecordingAction, Tie, Verdict};
use crate::ports::{
    ArchivedRecording, Done, Ledger, PageRef, Recorded, RecordingArchive, RecordingStatus,
    Recordings,
};
use crate::sid::is_sid;

/// The longest window a run accounts for.
pub const MAX_WINDOW: Duration = Duration::from_secs(31 * 86_400);
/// Voice API requests in flight at most.
pub const IN_FLIGHT: usize = 10;
/// Times a request refused with `429` is asked again, at most.
pub const RETRIES: u32 = 4;
/// The longest `Retry-After` honoured; a longer one is a failure of the run.
pub const LONGEST_WAIT: Duration = Duration::from_secs(30);

/// The period a run accounts for: `from <= date_created < to`, Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub to: i64,
}

/// Why a window cannot be had, in one line naming the option.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("give --since DURATION or --from TIME")]
    Missing,
    #[error("--since and --from cannot be given together")]
    Both,
    #[error("--to goes with --from, not --since")]
    ToWithSince,
    #[error("--since {0:?}: give a number and a unit, m, h or d (90m, 24h, 7d)")]
    Duration(String),
    #[error(
        "{option} {text:?}: give an RFC 3339 time (2026-12-01T09:00:00Z) or a date (2026-12-01)"
    )]
    Time { option: &'static str, text: String },
    #[error("--from must come before --to")]
    Empty,
    #[error("the window is {hours} hours; at most 31 days (744 hours) are reconciled at once")]
    TooLong { hours: i64 },
}

impl Window {
    /// From the command's options, `now` being the Unix time of the run.
    pub fn from_options(
        since: Option<&str>,
        from: Option<&str>,
        to: Option<&str>,
        now: i64,
    ) -> Result<Window, WindowError> {
        let window = match (since, from, to) {
            (Some(_), Some(_), _) => return Err(WindowError::Both),
            (Some(_), None, Some(_)) => return Err(WindowError::ToWithSince),
            (Some(since), None, None) => {
                let length =
                    parse_duration(since).ok_or_else(|| WindowError::Duration(since.to_owned()))?;
                Window {
                    from: now.saturating_sub(length),
                    to: now,
                }
            }
            (None, Some(from), to) => Window {
                from: parse_time(from, "--from")?,
                to: to.map_or(Ok(now), |to| parse_time(to, "--to"))?,
            },
            (None, None, _) => return Err(WindowError::Missing),
        };
        if window.to <= window.from {
            return Err(WindowError::Empty);
        }
        let length = window.to - window.from;
        if length > MAX_WINDOW.as_secs() as i64 {
            return Err(WindowError::TooLong {
                hours: (length + 3_599) / 3_600,
            });
        }
        Ok(window)
    }

    pub fn contains(&self, at: i64) -> bool {
        self.from <= at && at < self.to
    }

    /// The UTC dates the archive is asked for: every day the window touches.
    fn dates(&self) -> (time::Date, time::Date) {
        let date = |t: i64| {
            OffsetDateTime::from_unix_timestamp(t)
                .map(OffsetDateTime::date)
                .unwrap_or(time::Date::MIN)
        };
        // `to` is excluded: its last second decides the last day.
        (date(self.from), date(self.to - 1))
    }
}

/// `90m`, `24h`, `7d`: seconds.
fn parse_duration(text: &str) -> Option<i64> {
    let (number, unit) = text.split_at(text.len().checked_sub(1)?);
    let unit = match unit {
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let number: i64 = number.parse().ok()?;
    number.checked_mul(unit).filter(|&s| s > 0)
}

/// RFC 3339, or a date (its 00:00 UTC).
fn parse_time(text: &str, option: &'static str) -> Result<i64, WindowError> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    if let Ok(at) = OffsetDateTime::parse(text, rfc3339) {
        return Ok(at.unix_timestamp());
    }
    let date_only = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, date_only)
        .map(|date| date.midnight().assume_utc().unix_timestamp())
        .map_err(|_| WindowError::Time {
            option,
            text: text.to_owned(),
        })
}

/// What became of one recording (SPEC section 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The call's first decision is record.
    Kept,
    /// First decision do-not-record, and this run deleted it.
    Deleted,
    /// First decision do-not-record, and it still exists.
    Violation,
    /// First decision do-not-record, and Twilio cannot delete it yet.
    Pending,
    /// Tied to a Flex task the ledger has no decision for.
    Unknown,
    /// Not tied to any Flex task.
    Unmanaged,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Kept,
        Outcome::Deleted,
        Outcome::Violation,
        Outcome::Pending,
        Outcome::Unknown,
        Outcome::Unmanaged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Kept => "kept",
            Outcome::Deleted => "deleted",
            Outcome::Violation => "violation",
            Outcome::Pending => "pending",
            Outcome::Unknown => "unknown",
            Outcome::Unmanaged => "unmanaged",
        }
    }
}

/// One recording's line of the report. SIDs and decisions only, never caller data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub recording_sid: String,
    pub date_created: i64,
    pub source: String,
    pub status: String,
    pub conference_sid: Option<String>,
    pub call_sid: Option<String>,
    pub task_sid: Option<String>,
    /// The call's first decision: record or not.
    pub first: Option<bool>,
    pub rule: Option<String>,
    /// `None` when it could not be checked (the report is then incomplete).
    pub outcome: Option<Outcome>,
    pub cause: Option<String>,
    /// What became of the recording's media in the customer's bucket (section 11); `None`
    /// when Twilio holds the audio.
    pub media: Option<&'static str>,
}

/// A run's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub window: Window,
    pub rows: Vec<Row>,
    /// What was not checked, each in one line; empty when the run is complete.
    pub unchecked: Vec<String>,
}

/// The exit statuses of `reconcile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdicts {
    /// Fully checked, no violation.
    Clean = 0,
    /// A violation remains.
    Violations = 1,
    /// Part of the window could not be checked.
    Incomplete = 3,
}

impl Report {
    pub fn complete(&self) -> bool {
        self.unchecked.is_empty()
    }

    /// Each outcome's count, every outcome named.
    pub fn counts(&self) -> Vec<(Outcome, usize)> {
        Outcome::ALL
            .iter()
            .map(|&o| (o, self.rows.iter().filter(|r| r.outcome == Some(o)).count()))
            .collect()
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.rows
            .iter()
            .filter(|r| r.outcome == Some(outcome))
            .count()
    }

    /// Incomplete before violations: an incomplete run is never clean, whatever it found.
    pub fn verdict(&self) -> Verdicts {
        if !self.complete() {
            Verdicts::Incomplete
        } else if self.count(Outcome::Violation) > 0 {
            Verdicts::Violations
        } else {
            Verdicts::Clean
        }
    }

    pub fn to_json(&self) -> Value {
        let outcomes: serde_json::Map<String, Value> = self
            .counts()
            .into_iter()
            .map(|(o, n)| (o.as_str().to_owned(), json!(n)))
            .collect();
        json!({
            "from": ledger::rfc3339(self.window.from),
            "to": ledger::rfc3339(self.window.to),
            "recordings": self.rows.len(),
            "outcomes": outcomes,
            "complete": self.complete(),
            "unchecked": self.unchecked,
            "rows": self.rows.iter().map(Row::to_json).collect::<Vec<_>>(),
        })
    }

    /// A header line, then one line per recording.
    pub fn to_csv(&self) -> String {
        let mut out = COLUMNS.join(",");
        out.push('\n');
        for row in &self.rows {
            let json = row.to_json();
            let cells: Vec<String> = COLUMNS
                .iter()
                .map(|c| csv_cell(json.get(*c).unwrap_or(&Value::Null)))
                .collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        }
        out
    }

    /// The counts, then one line per recording that is not `kept`.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} to {}: {} recordings\n",
            ledger::rfc3339(self.window.from),
            ledger::rfc3339(self.window.to),
            self.rows.len()
        );
        for (outcome, count) in self.counts() {
            out.push_str(&format!("  {:<10} {count}\n", outcome.as_str()));
        }
        if !self.complete() {
            out.push_str("INCOMPLETE: not everything was checked\n");
            for what in &self.unchecked {
                out.push_str(&format!("  not checked: {what}\n"));
            }
        }
        for row in self
            .rows
            .iter()
            .filter(|r| r.outcome != Some(Outcome::Kept))
        {
            let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "{} {} {} status={} task={} conference={} call={} first={} rule={}{}\n",
                row.outcome.map_or("unchecked", Outcome::as_str),
                row.recording_sid,
                ledger::rfc3339(row.date_created),
                row.status,
                or_dash(&row.task_sid),
                or_dash(&row.conference_sid),
                or_dash(&row.call_sid),
                row.first.map_or("-", ledger::outcome_word),
                or_dash(&row.rule),
                row.cause
                    .as_ref()
                    .map(|c| format!(" cause={c:?}"))
                    .unwrap_or_default(),
            ));
        }
        out
    }
}

/// The columns of a row, in the CSV's order.
pub const COLUMNS: [&str; 12] = [
    "recording_sid",
    "date_created",
    "source",
    "status",
    "conference_sid",
    "call_sid",
    "task_sid",
    "first",
    "rule",
    "outcome",
    "cause",
    "media",
];

impl Row {
    pub fn to_json(&self) -> Value {
        json!({
            "recording_sid": self.recording_sid,
            "date_created": ledger::rfc3339(self.date_created),
            "source": self.source,
            "status": self.status,
            "conference_sid": self.conference_sid,
            "call_sid": self.call_sid,
            "task_sid": self.task_sid,
            "first": self.first.map(ledger::outcome_word),
            "rule": self.rule,
            "outcome": self.outcome.map(Outcome::as_str),
            "cause": self.cause,
            "media": self.media,
        })
    }
}

/// A CSV cell (RFC 4180): quoted when it holds a comma, a quote or a line break; null empty.
fn csv_cell(value: &Value) -> String {
    let text = match value {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The ports a run needs and what it may do.
pub struct Reconciler<V, L, R> {
    pub archive: V,
    pub ledger: L,
    pub recordings: R,
    pub account_sid: String,
    /// `--fix`: violations are deleted, in-progress recordings of do-not-record calls stopped.
    pub fix: bool,
}

/// How a recording is tied to a call, as far as this run found out.
#[derive(Debug, Clone)]
enum Found {
    Task {
        task_sid: String,
        first: Option<Verdict>,
    },
    NoTask,
    /// Could not be found out: the cause.
    Unchecked(String),
}

impl<V: RecordingArchive, L: Ledger, R: Recordings> Reconciler<V, L, R> {
    /// Accounts for every recording created in `window`.
    pub async fn run(&self, window: Window) -> Report {
        let mut unchecked = Vec::new();
        let listed = self.list(window, &mut unchecked).await;
        let mut found = self.tie(&listed, &mut unchecked).await;
        let mut rows = Vec::with_capacity(listed.len());
        let mut fixes = Vec::new();
        for recording in listed {
            // Neither a conference nor a call: nothing ties it to a Flex task.
            let tie = match tie_key(&recording) {
                Some(key) => found
                    .get(&key)
                    .cloned()
                    .unwrap_or(Found::Unchecked("not looked up".into())),
                None => Found::NoTask,
            };
            let mut row = Row {
                recording_sid: recording.sid.clone(),
                date_created: recording.date_created,
                source: recording.source.clone(),
                status: recording.status_word.clone(),
                conference_sid: recording.conference_sid.clone(),
                call_sid: recording.call_sid.clone(),
                task_sid: None,
                first: None,
                rule: None,
                outcome: None,
                cause: None,
                media: None,
            };
            match tie {
                Found::Unchecked(cause) => row.cause = Some(cause),
                Found::NoTask => row.outcome = Some(Outcome::Unmanaged),
                Found::Task {
                    task_sid,
                    first: None,
                } => {
                    row.task_sid = Some(task_sid);
                    row.outcome = Some(Outcome::Unknown);
                }
                Found::Task {
                    task_sid,
                    first: Some(first),
                } => {
                    row.task_sid = Some(task_sid);
                    row.first = Some(first.record);
                    row.rule = first.rule.clone();
                    row.outcome = Some(if first.record {
                        Outcome::Kept
                    } else {
                        unwanted(recording.status)
                    });
                    if !first.record && self.fix {
                        fixes.push((rows.len(), recording));
                    }
                }
            }
            rows.push(row);
        }
        found.clear();
        self.fix_all(&mut rows, fixes).await;
        Report {
            window,
            rows,
            unchecked,
        }
    }

    /// Every recording of the window, page after page; a page that cannot be had ends the
    /// list, and says so.
    async fn list(&self, window: Window, unchecked: &mut Vec<String>) -> Vec<ArchivedRecording> {
        let (from, to) = window.dates();
        let mut listed = Vec::new();
        let mut next: Option<String> = None;
        let mut pages = 0usize;
        loop {
            let page = match &next {
                None => PageRef::First { from, to },
                Some(uri) => PageRef::Next(uri),
            };
            let answer = self
                .patiently(|| self.archive.page(&self.account_sid, page))
                .await;
            pages += 1;
            let page = match answer {
                Ok(page) => page,
                Err(cause) => {
                    unchecked.push(format!("the recordings list from page {pages} on: {cause}"));
                    return listed;
                }
            };
            for field in &page.unreadable {
                unchecked.push(format!(
                    "a recording in the list on page {pages} has no {field}"
                ));
            }
            listed.extend(
                page.recordings
                    .into_iter()
                    .filter(|r| window.contains(r.date_created)),
            );
            match page.next {
                Some(uri) => next = Some(uri),
                None => return listed,
            }
        }
    }

    /// Ties each recording's conference or call to its task and first decision: the ledger
    /// first (batched), then the Voice API for conferences the ledger has never seen (once
    /// each, the answer kept in the ledger), then the ledger again for tasks whose decision
    /// was not beside the tie.
    async fn tie(
        &self,
        listed: &[ArchivedRecording],
        unchecked: &mut Vec<String>,
    ) -> HashMap<String, Found> {
        let mut keys: Vec<String> = listed.iter().filter_map(tie_key).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut found: HashMap<String, Found> = HashMap::with_capacity(keys.len());
        let ties = match self.ledger.ties(&keys).await {
            Ok(ties) => ties,
            Err(cause) => {
                let cause = format!("the ledger could not be read: {cause}");
                unchecked.push(format!("{} recordings: {cause}", listed.len()));
                crate::metrics::ledger_failed();
                return keys
                    .into_iter()
                    .map(|k| (k, Found::Unchecked(cause.clone())))
                    .collect();
            }
        };
        let mut unseen_conferences = Vec::new();
        for key in keys {
            let tie = match ties.get(&key) {
                Some(Tie::Task { task_sid, first }) => Found::Task {
                    task_sid: task_sid.clone(),
                    first: first.clone(),
                },
                Some(Tie::NoTask) => Found::NoTask,
                None if key.starts_with("CF") => {
                    unseen_conferences.push(key);
                    continue;
                }
                // A call the ledger never heard of belongs to no Flex task it knows.
                None => Found::NoTask,
            };
            found.insert(key, tie);
        }
        let named = stream::iter(unseen_conferences)
            .map(|conference| async move {
                let name = self
                    .patiently(|| self.archive.conference_name(&self.account_sid, &conference))
                    .await;
                (conference, name)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        // Ties to write once the decisions are known: conferences just named, and ties that
        // lacked the decision the ledger now has.
        let mut to_write: Vec<String> = Vec::new();
        let mut failures = 0;
        for (conference, name) in named {
            let tie = match name {
                Ok(Some(name)) if is_sid(&name, "WT") => Found::Task {
                    task_sid: name,
                    first: None,
                },
                // Not named after a task, or unknown to the Voice API: no Flex call's.
                Ok(_) => Found::NoTask,
                Err(cause) => {
                    failures += 1;
                    let cause = format!("the conference could not be read: {cause}");
                    found.insert(conference, Found::Unchecked(cause));
                    continue;
                }
            };
            to_write.push(conference.clone());
            found.insert(conference, tie);
        }
        if failures > 0 {
            unchecked.push(format!("{failures} conferences could not be read"));
        }
        let decided = self.decide_undecided(&mut found, unchecked).await;
        to_write.extend(decided);
        to_write.sort_unstable();
        to_write.dedup();
        for sid in to_write {
            let tie = match found.get(&sid) {
                Some(Found::Task { task_sid, first }) => Tie::Task {
                    task_sid: task_sid.clone(),
                    first: first.clone(),
                },
                Some(Found::NoTask) => Tie::NoTask,
                _ => continue,
            };
            if let Err(cause) = self.ledger.tie_conference(&sid, &tie).await {
                // The run goes on; the next one asks again.
                tracing::warn!(sid = %sid, cause = %cause, "ledger write failed");
                crate::metrics::ledger_failed();
            }
        }
        found
    }

    /// Reads the first decisions of tasks whose tie did not carry one; answers the ties
    /// that now have one (worth writing, so the next run needs one read).
    async fn decide_undecided(
        &self,
        found: &mut HashMap<String, Found>,
        unchecked: &mut Vec<String>,
    ) -> Vec<String> {
        let mut tasks: Vec<String> = found
            .values()
            .filter_map(|f| match f {
                Found::Task {
                    task_sid,
                    first: None,
                } => Some(task_sid.clone()),
                _ => None,
            })
            .collect();
        if tasks.is_empty() {
            return Vec::new();
        }
        tasks.sort_unstable();
        tasks.dedup();
        let mut decided = Vec::new();
        match self.ledger.verdicts(&tasks).await {
            Ok(verdicts) => {
                for (sid, tie) in found.iter_mut() {
                    if let Found::Task { task_sid, first } = tie
                        && first.is_none()
                        && let Some(verdict) = verdicts.get(task_sid.as_str())
                    {
                        *first = Some(verdict.clone());
                        decided.push(sid.clone());
                    }
                }
            }
            Err(cause) => {
                let cause = format!("the ledger could not be read: {cause}");
                unchecked.push(format!("the decisions of {} calls: {cause}", tasks.len()));
                crate::metrics::ledger_failed();
                for tie in found.values_mut() {
                    if matches!(tie, Found::Task { first: None, .. }) {
                        *tie = Found::Unchecked(cause.clone());
                    }
                }
            }
        }
        decided
    }

    /// `--fix`: stops what is still recording, deletes what is finished, and writes each
    /// action to the ledger.
    async fn fix_all(&self, rows: &mut [Row], fixes: Vec<(usize, ArchivedRecording)>) {
        let done = stream::iter(fixes)
            .map(|(index, recording)| async move { (index, self.fix_one(&recording).await) })
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await;
        let mut by_task: HashMap<(String, Option<String>), Vec<RecordingAction>> = HashMap::new();
        let now = ledger::unix_now();
        for (index, fixed) in done {
            let Some(fixed) = fixed else { continue };
            let row = &mut rows[index];
            row.outcome = Some(fixed.outcome);
            row.cause = fixed.cause.clone();
            if let Some(task_sid) = &row.task_sid {
                by_task
                    .entry((task_sid.clone(), row.conference_sid.clone()))
                    .or_default()
                    .push(RecordingAction {
                        recording_sid: row.recording_sid.clone(),
                        action: fixed.action.to_owned(),
                        at: now,
                        by: ActedBy::Reconcile,
                        cause: fixed.cause,
                    });
            }
        }
        for ((task_sid, conference), actions) in by_task {
            if let Err(cause) = self
                .ledger
                .record_actions(&task_sid, conference.as_deref(), &actions)
                .await
            {
                tracing::warn!(task_sid = %task_sid, cause = %cause, "ledger write failed");
                crate::metrics::ledger_failed();
            }
        }
    }

    /// Fixes one recording of a do-not-record call: `None` when there is nothing to do.
    async fn fix_one(&self, recording: &ArchivedRecording) -> Option<Fixed> {
        let account = &self.account_sid;
        match recording.status {
            RecordingStatus::InProgress | RecordingStatus::Paused => {
                let of = owner(recording)?;
                let stop = self.recordings.stop(account, of, &recording.sid).await;
                Some(match stop {
                    Ok(_) => Fixed {
                        outcome: Outcome::Pending,
                        action: "stopped",
                        cause: Some(
                            "stopped by this run; deleted once Twilio has finished it".into(),
                        ),
                    },
                    Err(cause) => Fixed {
                        outcome: Outcome::Pending,
                        action: "failed",
                        cause: Some(format!("not stopped: {cause}")),
                    },
                })
            }
            RecordingStatus::Completed | RecordingStatus::Absent | RecordingStatus::Stopped => {
                let deleted = self.recordings.delete(account, &recording.sid).await;
                Some(match deleted {
                    Ok(Done::Now | Done::AlreadyGone) => Fixed {
                        outcome: Outcome::Deleted,
                        action: "deleted",
                        cause: None,
                    },
                    // Just stopped: Twilio finishes it before it can go.
                    Err(cause) if recording.status == RecordingStatus::Stopped => Fixed {
                        outcome: Outcome::Pending,
                        action: "failed",
                        cause: Some(cause.to_string()),
                    },
                    Err(cause) => Fixed {
                        outcome: Outcome::Violation,
                        action: "failed",
                        cause: Some(cause.to_string()),
                    },
                })
            }
            RecordingStatus::Processing | RecordingStatus::Other => None,
        }
    }

    /// A Voice API call, asked again after a `429` once its `Retry-After` has passed.
    async fn patiently<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, V::Error>>,
    {
        let mut tries = 0;
        loop {
            match call().await {
                Ok(answer) => return Ok(answer),
                Err(error) => {
                    tries += 1;
                    match V::retry_after(&error) {
                        Some(wait) if tries <= RETRIES && wait <= LONGEST_WAIT => {
                            tokio::time::sleep(wait).await
                        }
                        _ => return Err(error.to_string()),
                    }
                }
            }
        }
    }
}

/// What `--fix` did to a recording.
struct Fixed {
    outcome: Outcome,
    action: &'static str,
    cause: Option<String>,
}

/// The outcome of a do-not-record call's recording, before any fix.
fn unwanted(status: RecordingStatus) -> Outcome {
    match status {
        RecordingStatus::InProgress | RecordingStatus::Paused | RecordingStatus::Processing => {
            Outcome::Pending
        }
        _ => Outcome::Violation,
    }
}

/// The SID a recording is tied to its call by: its conference's, else its call's.
fn tie_key(recording: &ArchivedRecording) -> Option<String> {
    recording
        .conference_sid
        .clone()
        .or_else(|| recording.call_sid.clone())
}

/// What a recording is stopped through.
fn owner(recording: &ArchivedRecording) -> Option<Recorded<'_>> {
    match (&recording.conference_sid, &recording.call_sid) {
        (Some(conference), _) => Some(Recorded::Conference(conference)),
        (None, Some(call)) => Some(Recorded::Call(call)),
        (None, None) => None,
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
