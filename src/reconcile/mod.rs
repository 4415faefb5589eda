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

mod report;
mod window;

pub use report::{COLUMNS, Outcome, Report, Row, Verdicts};
pub use window::{MAX_WINDOW, Window, WindowError};

use std::collections::HashMap;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};

use crate::ledger::{self, ActedBy, RecordingAction, Tie, Verdict};
use crate::ports::{
    ArchivedRecording, Done, Failure, Ledger, PageRef, Recorded, RecordingArchive, RecordingStatus,
    Recordings, VoiceFailure,
};
use crate::service::media::{Cleared, Media};
use crate::sid::is_sid;

/// Voice API requests in flight at most.
pub const IN_FLIGHT: usize = 10;
/// Ledger writes (ties of newly named conferences) in flight at most.
pub const LEDGER_WRITES: usize = 10;
/// Times a request refused with `429` is asked again, at most.
pub const RETRIES: u32 = 4;
/// The longest `Retry-After` honoured; a longer one is a failure of the run.
pub const LONGEST_WAIT: Duration = Duration::from_secs(30);

/// The ports a run needs and what it may do.
pub struct Reconciler<V, L, R> {
    pub archive: V,
    pub ledger: L,
    pub recordings: R,
    pub account_sid: String,
    /// `--fix`: violations are deleted, in-progress recordings of do-not-record calls stopped.
    pub fix: bool,
    /// Recording media in the customer's bucket, removed before a recording is deleted.
    pub media: Media,
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
                // Audio outside Twilio stays where it is unless this run removes it.
                media: Media::held_outside_twilio(recording.media_url.as_deref()).then_some("kept"),
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
        let ties: Vec<(String, Tie)> = to_write
            .into_iter()
            .filter_map(|sid| {
                let tie = match found.get(&sid)? {
                    Found::Task { task_sid, first } => Tie::Task {
                        task_sid: task_sid.clone(),
                        first: first.clone(),
                    },
                    Found::NoTask => Tie::NoTask,
                    Found::Unchecked(_) => return None,
                };
                Some((sid, tie))
            })
            .collect();
        let written = stream::iter(ties)
            .map(|(sid, tie)| async move {
                let written = self.ledger.tie_conference(&sid, &tie).await;
                (sid, written.err().map(|cause| cause.to_string()))
            })
            .buffer_unordered(LEDGER_WRITES)
            .collect::<Vec<_>>()
            .await;
        for (sid, failed) in written {
            if let Some(cause) = failed {
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
            if let Some(media) = fixed.media {
                row.media = media;
            }
            if let (Some(task_sid), true) = (&row.task_sid, fixed.media_deleted) {
                by_task
                    .entry((task_sid.clone(), row.conference_sid.clone()))
                    .or_default()
                    .push(RecordingAction {
                        recording_sid: row.recording_sid.clone(),
                        action: "media_deleted".to_owned(),
                        at: now,
                        by: ActedBy::Reconcile,
                        cause: None,
                    });
            }
            // Nothing done by this run (another run deleted it first): nothing to write, so
            // the ledger holds one deletion per recording however many runs overlap.
            let Some(action) = fixed.action else { continue };
            if let Some(task_sid) = &row.task_sid {
                by_task
                    .entry((task_sid.clone(), row.conference_sid.clone()))
                    .or_default()
                    .push(RecordingAction {
                        recording_sid: row.recording_sid.clone(),
                        action: action.to_owned(),
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
                // As enforcement does: a stop Twilio refuses for a recording in progress is
                // asked as a pause (PauseBehavior=skip); a paused one stays paused.
                let refused = |e: &R::Error| e.failure() == Failure::Refused;
                let stop = match stop {
                    Err(error)
                        if refused(&error) && recording.status == RecordingStatus::InProgress =>
                    {
                        let paused = self.recordings.pause(account, of, &recording.sid).await;
                        match paused {
                            Ok(_) => Ok("paused"),
                            Err(pause) => Err(format!("{error}; then {pause}")),
                        }
                    }
                    Err(error) if refused(&error) => Ok("paused"),
                    Err(error) => Err(error.to_string()),
                    Ok(_) => Ok("stopped"),
                };
                Some(match stop {
                    Ok(action) => Fixed::new(
                        Outcome::Pending,
                        Some(action),
                        Some(format!(
                            "{action} by this run; deleted once Twilio has finished it"
                        )),
                    ),
                    Err(cause) => Fixed::new(
                        Outcome::Pending,
                        Some("failed"),
                        Some(format!("not stopped: {cause}")),
                    ),
                })
            }
            RecordingStatus::Completed | RecordingStatus::Absent | RecordingStatus::Stopped => {
                // The audio in the customer's bucket goes first: the recording is its pointer,
                // kept until no copy remains. A recording Twilio marks `absent` has no audio
                // to wait for.
                let age = match recording.status {
                    RecordingStatus::Absent => Some(i64::MAX),
                    _ => Some(ledger::unix_now().saturating_sub(recording.date_created)),
                };
                let cleared = self.media.clear(recording.media_url.as_deref(), age).await;
                let media = cleared.word();
                let kept = |outcome: Outcome, cause: String| Fixed {
                    media: Some(media),
                    ..Fixed::new(outcome, Some("failed"), Some(cause))
                };
                match &cleared {
                    Cleared::Absent { gone: false, .. } => {
                        return Some(Fixed {
                            media: Some(media),
                            ..Fixed::new(Outcome::Pending, None, Some(MEDIA_NOT_YET.into()))
                        });
                    }
                    Cleared::Failed { cause, .. } => {
                        return Some(kept(Outcome::Violation, cause.clone()));
                    }
                    Cleared::Twilio | Cleared::Removed { .. } | Cleared::Absent { .. } => {}
                }
                let media_deleted = matches!(cleared, Cleared::Removed { .. });
                let deleted = self.recordings.delete(account, &recording.sid).await;
                let fixed = match deleted {
                    Ok(Done::Now) => Fixed::new(Outcome::Deleted, Some("deleted"), None),
                    // Listed, then gone before this run's delete: another run (or enforcement)
                    // deleted it. It no longer exists; this run did nothing to it.
                    Ok(Done::AlreadyGone) => {
                        Fixed::new(Outcome::Deleted, None, Some(ALREADY_GONE.to_owned()))
                    }
                    // Just stopped: Twilio finishes it before it can go.
                    Err(cause) if recording.status == RecordingStatus::Stopped => {
                        Fixed::new(Outcome::Pending, Some("failed"), Some(cause.to_string()))
                    }
                    Err(cause) => {
                        Fixed::new(Outcome::Violation, Some("failed"), Some(cause.to_string()))
                    }
                };
                Some(Fixed {
                    media: Some(media),
                    media_deleted,
                    ..fixed
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
    /// The action written to the ledger; `None` when this run did nothing to it.
    action: Option<&'static str>,
    cause: Option<String>,
    /// The `media` column, when this run looked at the media.
    media: Option<Option<&'static str>>,
    /// The media's versions were removed by this run (a `media_deleted` action).
    media_deleted: bool,
}

impl Fixed {
    fn new(outcome: Outcome, action: Option<&'static str>, cause: Option<String>) -> Fixed {
        Fixed {
            outcome,
            action,
            cause,
            media: None,
            media_deleted: false,
        }
    }
}

/// Why a finished recording of a do-not-record call is `pending`: its audio is not in the
/// customer's bucket yet, and the recording is its pointer.
pub const MEDIA_NOT_YET: &str = "its media is not in the bucket yet: kept as the pointer, and \
     deleted with it by a later run (or counted gone 24 hours after it was made)";

/// The cause of a `deleted` row whose recording someone else deleted first.
pub const ALREADY_GONE: &str =
    "already gone when this run deleted it: another run or enforcement deleted it first";

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

#[cfg(test)]
mod tests;
