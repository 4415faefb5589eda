//! Enforcement (SPEC section 8): after an event about a call, the call's recordings are made
//! to match its first decision. Part of the core: it knows the ports (task annotations for
//! the first decision, recordings for the Voice API), no HTTP and no AWS type.
//!
//! For one event: `now` is the decision from the rules in force; `first` is the decision
//! stamped on the task (from the event's TaskAttributes, else the task's, else `now`, stamped
//! so that later events agree). `first` do-not-record: every recording of the call is
//! stopped and deleted. `first` record and `now` do-not-record (a move into an excluded
//! queue): recordings in progress are stopped, and what was recorded stays. Otherwise
//! nothing is touched. Nothing is ever started or resumed. A task TaskRouter no longer has
//! can never be stamped or assigned again: its event's own decision is its first and last.
//!
//! Twilio refuses some stops (conference recordings have been seen to answer `Status=stopped`
//! with a `400`): a recording in progress is then paused, skipping the pause, which counts as
//! its stop. A paused recording cannot be deleted until Twilio has finished it (when its
//! call ends), so a call whose recordings must go leaves it to a later delivery.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::events::TaskEvent;
use crate::ledger::{self, ActedBy, DecidedBy, FirstDecision, RecordingAction};
use crate::ports::{
    Annotated, Done, Failure, Ledger, LoadedRules, Recorded, Recording, RecordingStatus,
    Recordings, TaskAnnotations, VoiceFailure,
};
use crate::rules::{self, Arrival, Decision, FailPolicy, Reason};
use crate::service::media::{Cleared, Media};
use crate::taskrouter::{self, stamped_record};

/// A delivery's work must be done by then, from its arrival: Lambda freezes after the
/// answer, and Event Streams waits 5 s for it.
pub const ENFORCEMENT_BUDGET: Duration = Duration::from_secs(4);

/// The cause of a recording Twilio will not delete yet: the delivery is unfinished, so a
/// later one (Event Streams' redelivery, or the task's next event) deletes it.
pub const STILL_PROCESSING: &str = "recording still processing; deleted by a later delivery";

/// Why a finished recording whose audio is in the customer's bucket is kept: Twilio has not
/// written the object yet, and the recording is its pointer.
pub const MEDIA_NOT_YET: &str = "its media is not in the bucket yet; the recording is kept as \
     the pointer and deleted with it by a later delivery or the sweep";

/// What becomes of a paused recording of a call whose recordings must go: the delivery is
/// unfinished, so a later one (Event Streams' redelivery, the task's next event) deletes it.
pub const DELETED_LATER: &str = "deleted by a later delivery once Twilio has finished it";

/// What the lines of a call whose task is gone say: its first decision is the event's own.
pub const TASK_GONE: &str =
    "TaskRouter answered 404: the task is gone, so the first decision is this event's, unstamped";

/// What enforcement did to one recording (or found to do), as its line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Stopped,
    /// Paused, skipping the pause, where Twilio refused the stop; or found paused already
    /// when it did. Counts as the stop.
    Paused,
    Deleted,
    /// The recording's audio in the customer's bucket: every version of its object removed,
    /// before the recording itself.
    MediaDeleted,
    /// The call has no recording to act on.
    NoneFound,
    Failed,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Stopped => "stopped",
            ActionKind::Paused => "paused",
            ActionKind::Deleted => "deleted",
            ActionKind::MediaDeleted => "media_deleted",
            ActionKind::NoneFound => "none_found",
            ActionKind::Failed => "failed",
        }
    }
}

/// One action, for its `enforcement` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    pub conference_sid: Option<String>,
    pub recording_sid: Option<String>,
    /// Why it failed, or why a recording was paused rather than stopped: the API's answer,
    /// never a token or caller data.
    pub cause: Option<String>,
    /// For `media_deleted`: the object and how many versions went.
    pub media: Option<MediaDeleted>,
}

/// Recording media removed from the customer's bucket: never the URL, never its query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDeleted {
    pub bucket: String,
    pub key: String,
    pub versions: usize,
}

/// What enforcement made of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enforced {
    /// Not a call: nothing to do.
    NotACall,
    /// A call whose recordings are as its decisions want them, or were left alone.
    Call {
        first: bool,
        now: Decision,
        actions: Vec<Action>,
        /// `false` when something failed that a later delivery may finish (the delivery is
        /// answered `503` so Event Streams sends it again).
        complete: bool,
        /// The task is gone from TaskRouter: `first` is `now`, and was not stamped.
        task_gone: bool,
    },
    /// The first decision could not be had (the task could not be read or stamped): nothing
    /// was touched, and a later delivery tries again.
    NoFirstDecision { now: Decision, cause: String },
}

/// Enforcement's ports: task annotations (the first decision's stamp) and recordings, and
/// the recordings' media in the customer's bucket.
pub struct Enforcer<A, R> {
    pub annotations: A,
    pub recordings: R,
    pub media: Media,
}

impl<A: TaskAnnotations, R: Recordings> Enforcer<A, R> {
    /// Enforces one event, within `deadline`. `queue_name` is the event's, or the looked-up
    /// one, when it has none. With a ledger, the first decision is the ledger's, else the
    /// task's stamp (copied to the ledger), else `now` (written to both); every action is
    /// appended to the call's entry.
    #[allow(clippy::too_many_arguments)]
    pub async fn enforce<L: Ledger>(
        &self,
        event: &TaskEvent,
        rules: Option<&LoadedRules>,
        queue_name: Option<&str>,
        policy: FailPolicy,
        deadline: Instant,
        ledger: Option<&L>,
    ) -> Enforced {
        let attributes = taskrouter::parse_attributes(&event.task_attributes);
        let arrival = Arrival {
            attributes: attributes.as_ref(),
            queue_sid: event.task_queue_sid.as_deref(),
            queue_name,
            channel: event.task_channel.as_deref(),
        };
        let now = rules::decide_arrival(rules.map(|l| &l.rules), arrival, policy);
        let Decision::Conference { record, reason } = now else {
            return Enforced::NotACall;
        };
        let version = rules.and_then(|l| l.version);
        let ledgered = match ledger {
            Some(ledger) => read_first(ledger, &event.task_sid, deadline).await,
            None => None,
        };
        let (first, task_gone) = match ledgered {
            Some(first) => (first, false),
            None => {
                let (first, task_gone, by) = match attributes.as_ref().and_then(stamped_record) {
                    Some(first) => (first, false, DecidedBy::Stamp),
                    None => {
                        let stamp = json!({
                            "record": record,
                            "reason": reason.to_string(),
                            "rules_version": version,
                        });
                        let stamped = self.annotations.annotate(
                            event.account_sid.as_deref(),
                            event.workspace_sid.as_deref(),
                            &event.task_sid,
                            &stamp,
                        );
                        match within(deadline, stamped).await {
                            Ok(Annotated::Written { .. }) => (record, false, DecidedBy::Event),
                            Ok(Annotated::Kept { record }) => (record, false, DecidedBy::Stamp),
                            // Deleted, so never stamped or assigned again: no later event can
                            // disagree, and waiting for a stamp would leave its recordings
                            // forever.
                            Ok(Annotated::TaskGone) => (record, true, DecidedBy::Event),
                            Err(error) => {
                                return Enforced::NoFirstDecision {
                                    now,
                                    cause: error.to_string(),
                                };
                            }
                        }
                    }
                };
                let first = match ledger {
                    Some(ledger) => {
                        let decision = first_decision(
                            event,
                            attributes.as_ref(),
                            (first, by),
                            (reason, version),
                        );
                        write_first(ledger, &decision, deadline)
                            .await
                            .unwrap_or(first)
                    }
                    None => first,
                };
                (first, task_gone)
            }
        };
        let mut work = Work::default();
        match (first, record) {
            (false, _) => {
                self.remove_all(event, attributes.as_ref(), deadline, &mut work)
                    .await
            }
            (true, false) => {
                self.stop_in_progress(event, attributes.as_ref(), deadline, &mut work)
                    .await
            }
            (true, true) => {}
        }
        if let Some(ledger) = ledger {
            record_actions(ledger, event, attributes.as_ref(), &work.actions, deadline).await;
        }
        Enforced::Call {
            first,
            now,
            complete: !work.incomplete,
            actions: work.actions,
            task_gone,
        }
    }

    /// Stops and deletes every recording of the call: the conference's and those on its
    /// calls (the customer's leg and every participant's).
    async fn remove_all(
        &self,
        event: &TaskEvent,
        attributes: Option<&Value>,
        deadline: Instant,
        work: &mut Work,
    ) {
        let Some(found) = self.find(event, attributes, deadline, work).await else {
            return;
        };
        if found.recordings.is_empty() {
            work.none_found(found.conference);
            return;
        }
        for (of, recording) in &found.recordings {
            let conference = found.conference.clone();
            let live = matches!(
                recording.status,
                RecordingStatus::InProgress | RecordingStatus::Paused
            );
            if live {
                let halt = Halt {
                    account: &found.account,
                    of,
                    recording,
                    conference: &conference,
                    deleted_later: true,
                };
                match self.halt(halt, deadline, work).await {
                    Halted::Stopped => {}
                    // Not deletable until Twilio has finished it, when its call ends: the
                    // delivery is unfinished, so that a later one deletes it.
                    Halted::Paused => {
                        work.incomplete = true;
                        continue;
                    }
                    // Not stopped, so not deletable: a later delivery tries again.
                    Halted::Failed => continue,
                }
            }
            match recording.status {
                // Twilio deletes a recording only once it is finished. Left silently, one
                // still processing at the task's last event would stay for good: the
                // delivery is unfinished instead, so it comes again.
                RecordingStatus::Processing => {
                    work.failed(conference, Some(&recording.sid), STILL_PROCESSING.into())
                }
                // A status the Voice API does not document: not ours to touch.
                RecordingStatus::Other => {}
                _ => {
                    // The audio in the customer's bucket goes first: the recording is its
                    // pointer, kept until no copy remains.
                    let age = recording.date_created.map(|at| ledger::unix_now() - at);
                    let clear = self.media.clear(recording.media_url.as_deref(), age);
                    let cleared = match within(deadline, async { Ok::<_, ()>(clear.await) }).await {
                        Ok(cleared) => cleared,
                        Err(_) => {
                            let cause = "the delivery's time ran out clearing the media".into();
                            work.failed(conference, Some(&recording.sid), cause);
                            continue;
                        }
                    };
                    match &cleared {
                        Cleared::Removed { object, versions } => work.media_deleted(
                            conference.clone(),
                            &recording.sid,
                            MediaDeleted {
                                bucket: object.bucket.clone(),
                                key: object.key.clone(),
                                versions: *versions,
                            },
                        ),
                        Cleared::Absent { gone: false, .. } => {
                            work.failed(conference, Some(&recording.sid), MEDIA_NOT_YET.into());
                            continue;
                        }
                        Cleared::Failed { cause, .. } => {
                            work.failed(conference, Some(&recording.sid), cause.clone());
                            continue;
                        }
                        Cleared::Twilio | Cleared::Absent { gone: true, .. } => {}
                    }
                    let delete = self.recordings.delete(&found.account, &recording.sid);
                    match within(deadline, delete).await {
                        Ok(Done::Now | Done::AlreadyGone) => {
                            work.done(ActionKind::Deleted, conference, &recording.sid)
                        }
                        // Refused (one just stopped may be processing still): unfinished,
                        // the cause the API's answer, and a later delivery deletes it.
                        Err(error) => {
                            work.failed(conference, Some(&recording.sid), error.to_string())
                        }
                    }
                }
            }
        }
    }

    /// Stops the call's recordings in progress (or paused, so they cannot be resumed); keeps
    /// what was recorded. One Twilio will not stop is paused, and then complete: there is
    /// nothing to delete.
    async fn stop_in_progress(
        &self,
        event: &TaskEvent,
        attributes: Option<&Value>,
        deadline: Instant,
        work: &mut Work,
    ) {
        let Some(found) = self.find(event, attributes, deadline, work).await else {
            return;
        };
        let live: Vec<_> = found
            .recordings
            .iter()
            .filter(|(_, r)| {
                matches!(
                    r.status,
                    RecordingStatus::InProgress | RecordingStatus::Paused
                )
            })
            .collect();
        if live.is_empty() {
            work.none_found(found.conference);
            return;
        }
        for (of, recording) in live {
            let halt = Halt {
                account: &found.account,
                of,
                recording,
                conference: &found.conference,
                deleted_later: false,
            };
            self.halt(halt, deadline, work).await;
        }
    }

    /// Stops a recording in progress or paused. When Twilio refuses the stop (a `4xx` other
    /// than `404` and `429`), one in progress is paused instead, skipping the pause; one
    /// paused already stays so, since pausing it again changes nothing. Never resumed.
    async fn halt(&self, halt: Halt<'_>, deadline: Instant, work: &mut Work) -> Halted {
        let Halt {
            account,
            of,
            recording,
            conference,
            deleted_later,
        } = halt;
        let sid = recording.sid.as_str();
        let stop = self.recordings.stop(account, of.recorded(), sid);
        let refusal = match within(deadline, stop).await {
            Ok(_) => {
                work.done(ActionKind::Stopped, conference.clone(), sid);
                return Halted::Stopped;
            }
            Err(StepError::Port(error)) if error.failure() == Failure::Refused => error.to_string(),
            Err(error) => {
                work.failed(conference.clone(), Some(sid), error.to_string());
                return Halted::Failed;
            }
        };
        let paused = |how: &str| {
            let mut cause = format!("{refusal}; {how}");
            if deleted_later {
                cause = format!("{cause}, and {DELETED_LATER}");
            }
            cause
        };
        if recording.status == RecordingStatus::Paused {
            work.paused(conference.clone(), sid, paused("already paused"));
            return Halted::Paused;
        }
        let pause = self.recordings.pause(account, of.recorded(), sid);
        match within(deadline, pause).await {
            Ok(Done::Now) => {
                work.paused(conference.clone(), sid, paused("paused instead"));
                Halted::Paused
            }
            // Gone between the two requests: nothing is left to pause, and its delete is
            // done at once.
            Ok(Done::AlreadyGone) => {
                work.paused(conference.clone(), sid, format!("{refusal}; already gone"));
                Halted::Stopped
            }
            Err(error) => {
                work.failed(conference.clone(), Some(sid), format!("{refusal}; {error}"));
                Halted::Failed
            }
        }
    }

    /// Every recording of the call, with what it belongs to. `None` (the failure noted) when
    /// they cannot all be listed: acting on part of them would say "done" too early.
    async fn find(
        &self,
        event: &TaskEvent,
        attributes: Option<&Value>,
        deadline: Instant,
        work: &mut Work,
    ) -> Option<Found> {
        let Some(account) = event.account_sid.clone() else {
            work.failed(None, None, "the event has no AccountSid".into());
            return None;
        };
        let text = |path: &[&str]| {
            let mut value = attributes?;
            for key in path {
                value = value.get(key)?;
            }
            value.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
        };
        let conference = match text(&["conference", "sid"]) {
            Some(sid) => Some(sid),
            None => {
                let lookup = self
                    .recordings
                    .conference_for_task(&account, &event.task_sid);
                match within(deadline, lookup).await {
                    Ok(found) => found,
                    Err(error) => {
                        work.failed(None, None, error.to_string());
                        return None;
                    }
                }
            }
        };
        let mut calls: Vec<String> = text(&["call_sid"]).into_iter().collect();
        let mut recordings = Vec::new();
        if let Some(conference) = &conference {
            let participants = self.recordings.participant_calls(&account, conference);
            match within(deadline, participants).await {
                Ok(found) => calls.extend(found),
                Err(error) => {
                    work.failed(Some(conference.clone()), None, error.to_string());
                    return None;
                }
            }
            let listed = self
                .recordings
                .list(&account, Recorded::Conference(conference));
            match within(deadline, listed).await {
                Ok(found) => recordings.extend(
                    found
                        .into_iter()
                        .map(|r| (Owner::Conference(conference.clone()), r)),
                ),
                Err(error) => {
                    work.failed(Some(conference.clone()), None, error.to_string());
                    return None;
                }
            }
        }
        // The task's attributes and the participants list may write one call in different
        // cases (the Voice API's hex digits may be uppercase): its recordings are listed once.
        calls.sort_unstable_by_key(|call| call.to_ascii_lowercase());
        calls.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        for call in calls {
            let listed = self.recordings.list(&account, Recorded::Call(&call));
            match within(deadline, listed).await {
                Ok(found) => {
                    recordings.extend(found.into_iter().map(|r| (Owner::Call(call.clone()), r)))
                }
                Err(error) => {
                    work.failed(conference.clone(), None, error.to_string());
                    return None;
                }
            }
        }
        Some(Found {
            account,
            conference,
            recordings,
        })
    }
}

/// What a recording belongs to, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Conference(String),
    Call(String),
}

impl Owner {
    fn recorded(&self) -> Recorded<'_> {
        match self {
            Owner::Conference(sid) => Recorded::Conference(sid),
            Owner::Call(sid) => Recorded::Call(sid),
        }
    }
}

/// A recording to stop, where it is, and whether a later delivery must delete it.
struct Halt<'a> {
    account: &'a str,
    of: &'a Owner,
    recording: &'a Recording,
    conference: &'a Option<String>,
    deleted_later: bool,
}

/// What a stop left a recording in.
enum Halted {
    /// Stopped (or gone): deletable once Twilio has finished it.
    Stopped,
    /// Paused, because Twilio refused the stop: it stays until its call ends.
    Paused,
    /// Neither: the failure is noted, and a later delivery tries again.
    Failed,
}

/// A call's recordings, found.
struct Found {
    account: String,
    conference: Option<String>,
    recordings: Vec<(Owner, Recording)>,
}

/// The actions so far, and whether something is left for a later delivery.
#[derive(Default)]
struct Work {
    actions: Vec<Action>,
    incomplete: bool,
}

impl Work {
    fn done(&mut self, kind: ActionKind, conference: Option<String>, recording: &str) {
        self.actions.push(Action {
            kind,
            conference_sid: conference,
            recording_sid: Some(recording.to_owned()),
            cause: None,
            media: None,
        });
    }

    fn media_deleted(&mut self, conference: Option<String>, recording: &str, media: MediaDeleted) {
        self.actions.push(Action {
            kind: ActionKind::MediaDeleted,
            conference_sid: conference,
            recording_sid: Some(recording.to_owned()),
            cause: None,
            media: Some(media),
        });
    }

    /// Paused, with why it was not stopped.
    fn paused(&mut self, conference: Option<String>, recording: &str, cause: String) {
        self.actions.push(Action {
            kind: ActionKind::Paused,
            conference_sid: conference,
            recording_sid: Some(recording.to_owned()),
            cause: Some(cause),
            media: None,
        });
    }

    fn none_found(&mut self, conference: Option<String>) {
        self.actions.push(Action {
            kind: ActionKind::NoneFound,
            conference_sid: conference,
            recording_sid: None,
            cause: None,
            media: None,
        });
    }

    fn failed(&mut self, conference: Option<String>, recording: Option<&str>, cause: String) {
        self.incomplete = true;
        self.actions.push(Action {
            kind: ActionKind::Failed,
            conference_sid: conference,
            recording_sid: recording.map(str::to_owned),
            cause: Some(cause),
            media: None,
        });
    }
}

/// The call's first decision as the ledger has it; `None` when it has none or cannot be read
/// (logged and counted: the task's stamp then decides, as without a ledger).
async fn read_first<L: Ledger>(ledger: &L, task_sid: &str, deadline: Instant) -> Option<bool> {
    match within(deadline, ledger.decision(task_sid)).await {
        Ok(found) => found.map(|first| first.record),
        Err(cause) => {
            ledger_failed(task_sid, &cause.to_string());
            None
        }
    }
}

/// Writes the call's first decision to the ledger: the one that stands (an earlier one, when
/// another writer came first), or `None` when the ledger cannot be written.
async fn write_first<L: Ledger>(
    ledger: &L,
    first: &FirstDecision,
    deadline: Instant,
) -> Option<bool> {
    match within(deadline, ledger.first_decision(first)).await {
        Ok(standing) => Some(standing.record),
        Err(cause) => {
            ledger_failed(&first.task_sid, &cause.to_string());
            None
        }
    }
}

/// The first decision an event found (the stamp) or made, for the ledger.
fn first_decision(
    event: &TaskEvent,
    attributes: Option<&Value>,
    (record, by): (bool, DecidedBy),
    (reason, rules_version): (Reason, Option<i64>),
) -> FirstDecision {
    let (call_sid, conference_sid) = ledger::call_sids(attributes);
    let stamp = attributes.and_then(|a| a.get(taskrouter::STAMP_KEY));
    let (reason, rule, rules_version) = match by {
        DecidedBy::Stamp => (
            stamp
                .and_then(|s| s.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("stamped on the task")
                .to_owned(),
            None,
            stamp
                .and_then(|s| s.get("rules_version"))
                .and_then(Value::as_i64),
        ),
        _ => (
            reason.to_string(),
            reason.rule().map(|r| r.to_string()),
            rules_version,
        ),
    };
    FirstDecision {
        task_sid: event.task_sid.clone(),
        record,
        reason,
        rule,
        rules_version,
        decided_at: ledger::unix_now(),
        decided_by: by,
        call_sid,
        conference_sid,
    }
}

/// Appends the event's actions to the call's entry (what was found to do nothing is not an
/// action). A failure is logged and counted; the recordings are as enforced either way.
async fn record_actions<L: Ledger>(
    ledger: &L,
    event: &TaskEvent,
    attributes: Option<&Value>,
    actions: &[Action],
    deadline: Instant,
) {
    let at = ledger::unix_now();
    let done: Vec<RecordingAction> = actions
        .iter()
        .filter_map(|action| {
            Some(RecordingAction {
                recording_sid: action.recording_sid.clone()?,
                action: action.kind.as_str().to_owned(),
                at,
                by: ActedBy::Enforcement,
                cause: action.cause.clone(),
            })
        })
        .collect();
    let conference = actions
        .iter()
        .find_map(|a| a.conference_sid.clone())
        .or_else(|| ledger::call_sids(attributes).1);
    if done.is_empty() && conference.is_none() {
        return;
    }
    let written = ledger.record_actions(&event.task_sid, conference.as_deref(), &done);
    // The actions are done: their record gets a second past a spent budget, no more.
    let deadline = deadline.max(Instant::now() + Duration::from_secs(1));
    if let Err(cause) = within(deadline, written).await {
        ledger_failed(&event.task_sid, &cause.to_string());
    }
}

fn ledger_failed(task_sid: &str, cause: &str) {
    tracing::warn!(task_sid = %task_sid, cause = %cause, "ledger failed; enforcement goes on");
    crate::metrics::ledger_failed();
}

/// Why one step of a delivery's work has no answer to use: the port's error, or the
/// delivery's time ran out. Its `Display` is the one safe line a `cause` holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError<E> {
    #[error("{0}")]
    Port(E),
    #[error("the delivery's {} ms ran out", ENFORCEMENT_BUDGET.as_millis())]
    OutOfTime,
}

/// A port's answer, unless the deadline passes first.
async fn within<T, E>(
    deadline: Instant,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, StepError<E>> {
    // Nothing is asked once the time is up, not even what would answer at once.
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(StepError::OutOfTime);
    }
    match tokio::time::timeout(left, call).await {
        Ok(result) => result.map_err(StepError::Port),
        Err(_) => Err(StepError::OutOfTime),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;
    use crate::events::EventKind;
    use crate::rules::Rules;
    use crate::service::memory::{Tasks, Voice, VoiceRecording, VoiceState};
    use crate::taskrouter::STAMP_KEY;

    const TASK: &str = "WT0123456789abcdef0123456789abcdef";
    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
    const PAYMENTS: &str = "WQaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SALES: &str = "WQbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const CONFERENCE: &str = "CF0123456789abcdef0123456789abcdef";
    const CUSTOMER: &str = "CA0000000000000000000000000000000c";
    const AGENT: &str = "CA0000000000000000000000000000000a";

    fn rules() -> LoadedRules {
        let text = format!(
            r#"{{"enabled": true, "exclude_queues": ["{PAYMENTS}"],
                "exclude_attributes": [{{"key": "direction", "value": "outbound"}}]}}"#
        );
        LoadedRules {
            rules: Rules::from_json(&text).unwrap(),
            version: Some(3),
        }
    }

    fn event(queue: &str, attributes: Value) -> TaskEvent {
        TaskEvent {
            kind: EventKind::ReservationAccepted,
            task_sid: TASK.into(),
            task_attributes: attributes.to_string(),
            account_sid: Some(ACCOUNT.into()),
            workspace_sid: Some("WS0123456789abcdef0123456789abcdef".into()),
            reservation_sid: Some("WR0123456789abcdef0123456789abcdef".into()),
            task_queue_sid: Some(queue.into()),
            task_queue_name: None,
            task_channel: Some("voice".into()),
        }
    }

    fn inbound() -> Value {
        json!({"call_sid": CUSTOMER, "direction": "inbound",
               "conference": {"sid": CONFERENCE, "participants": {"customer": CUSTOMER}}})
    }

    fn stamped(mut attributes: Value, record: bool) -> Value {
        attributes[STAMP_KEY] = json!({"record": record, "reason": "earlier"});
        attributes
    }

    fn recording(sid: &str, of: &str, status: RecordingStatus) -> VoiceRecording {
        VoiceRecording {
            sid: sid.into(),
            of: of.into(),
            status,
        }
    }

    /// A call in its conference with the agent: the conference recording in progress, the
    /// customer's leg recorded and finished, the agent's leg recording in progress.
    fn voice() -> Voice {
        Voice(Mutex::new(VoiceState {
            conferences: vec![(CONFERENCE.into(), TASK.into(), true)],
            participants: HashMap::from([(CONFERENCE.into(), vec![CUSTOMER.into(), AGENT.into()])]),
            recordings: vec![
                recording("RE01", CONFERENCE, RecordingStatus::InProgress),
                recording("RE02", CUSTOMER, RecordingStatus::Completed),
                recording("RE03", AGENT, RecordingStatus::InProgress),
            ],
            ..VoiceState::default()
        }))
    }

    fn enforcer(attributes: &Value, voice: Voice) -> Enforcer<Tasks, Voice> {
        let tasks = Tasks(Mutex::new(HashMap::from([(
            TASK.to_owned(),
            attributes.clone(),
        )])));
        Enforcer {
            annotations: tasks,
            recordings: voice,
            media: Media::none(),
        }
    }

    async fn run(enforcer: &Enforcer<Tasks, Voice>, event: &TaskEvent) -> Enforced {
        let deadline = Instant::now() + ENFORCEMENT_BUDGET;
        enforcer
            .enforce(
                event,
                Some(&rules()),
                None,
                FailPolicy::DoNotRecord,
                deadline,
                None::<&crate::ports::NoLedger>,
            )
            .await
    }

    fn kinds(enforced: &Enforced) -> Vec<(ActionKind, Option<String>)> {
        let Enforced::Call { actions, .. } = enforced else {
            panic!("not a call: {enforced:?}");
        };
        actions
            .iter()
            .map(|a| (a.kind, a.recording_sid.clone()))
            .collect()
    }

    fn action(kind: ActionKind, recording: &str) -> (ActionKind, Option<String>) {
        (kind, Some(recording.to_owned()))
    }

    #[tokio::test]
    async fn a_call_first_decided_do_not_record_loses_every_recording() {
        let attributes = stamped(inbound(), false);
        let enforcer = enforcer(&attributes, voice());
        let enforced = run(&enforcer, &event(SALES, attributes)).await;
        // The conference's first, then each call's (the agent's, the customer's).
        assert_eq!(
            kinds(&enforced),
            [
                action(ActionKind::Stopped, "RE01"),
                action(ActionKind::Deleted, "RE01"),
                action(ActionKind::Stopped, "RE03"),
                action(ActionKind::Deleted, "RE03"),
                action(ActionKind::Deleted, "RE02"),
            ]
        );
        for sid in ["RE01", "RE02", "RE03"] {
            assert_eq!(enforcer.recordings.status(sid), None, "{sid} deleted");
        }
        let Enforced::Call {
            first, complete, ..
        } = enforced
        else {
            unreachable!()
        };
        assert!(!first && complete);

        // Again, as a duplicate delivery: nothing left, nothing fails.
        let again = run(&enforcer, &event(SALES, stamped(inbound(), false))).await;
        assert_eq!(kinds(&again), [(ActionKind::NoneFound, None)]);
    }

    #[tokio::test]
    async fn without_a_stamp_the_first_event_decides_and_stamps_it() {
        // In an excluded queue, with no stamp anywhere: `now` is do-not-record, stamped on the
        // task so that later events agree, and enforced.
        let enforcer = enforcer(&inbound(), voice());
        let enforced = run(&enforcer, &event(PAYMENTS, inbound())).await;
        assert_eq!(kinds(&enforced).len(), 5, "{enforced:?}");
        let stamp = &enforcer.annotations.attributes(TASK).unwrap()[STAMP_KEY];
        assert_eq!(stamp["record"], false, "{stamp}");
        assert_eq!(stamp["rules_version"], 3, "{stamp}");

        // Later, the task moves to a recorded queue: the first decision still holds.
        let moved = enforcer.annotations.attributes(TASK).unwrap();
        enforcer.recordings.0.lock().unwrap().recordings =
            vec![recording("RE04", CONFERENCE, RecordingStatus::InProgress)];
        let enforced = run(&enforcer, &event(SALES, moved)).await;
        assert_eq!(
            kinds(&enforced),
            [
                action(ActionKind::Stopped, "RE04"),
                action(ActionKind::Deleted, "RE04")
            ]
        );
    }

    #[tokio::test]
    async fn a_transfer_into_an_excluded_queue_stops_and_keeps_what_was_recorded() {
        let attributes = stamped(inbound(), true);
        let enforcer = enforcer(&attributes, voice());
        let enforced = run(&enforcer, &event(PAYMENTS, attributes)).await;
        assert_eq!(
            kinds(&enforced),
            [
                action(ActionKind::Stopped, "RE01"),
                action(ActionKind::Stopped, "RE03")
            ]
        );
        let status = |sid| enforcer.recordings.status(sid);
        assert_eq!(status("RE01"), Some(RecordingStatus::Stopped));
        assert_eq!(status("RE02"), Some(RecordingStatus::Completed), "kept");
        assert_eq!(status("RE03"), Some(RecordingStatus::Stopped));
        let requests = &enforcer.recordings.0.lock().unwrap().requests;
        assert!(
            !requests.iter().any(|r| r.starts_with("delete")),
            "{requests:?}"
        );
    }

    #[tokio::test]
    async fn a_recorded_call_is_never_touched() {
        let attributes = stamped(inbound(), true);
        let enforcer = enforcer(&attributes, voice());
        let enforced = run(&enforcer, &event(SALES, attributes)).await;
        assert_eq!(kinds(&enforced), []);
        assert!(enforcer.recordings.0.lock().unwrap().requests.is_empty());
    }

    #[tokio::test]
    async fn a_dialer_call_is_found_by_its_conference_name() {
        // The Flex dialer's call: no call_sid and, before Flex writes it, no conference.sid.
        let dialer = json!({"direction": "outbound", "outbound_to": "+14155550100"});
        let enforcer = enforcer(&dialer, voice());
        let enforced = run(&enforcer, &event(SALES, dialer)).await;
        let Enforced::Call {
            first, ref actions, ..
        } = enforced
        else {
            panic!("{enforced:?}")
        };
        assert!(!first);
        assert!(
            actions
                .iter()
                .all(|a| a.conference_sid.as_deref() == Some(CONFERENCE))
        );
        assert_eq!(kinds(&enforced).len(), 5, "{enforced:?}");
        let requests = enforcer.recordings.0.lock().unwrap().requests.clone();
        assert_eq!(requests[0], format!("conference {TASK}"));
    }

    #[tokio::test]
    async fn a_failed_stop_leaves_the_recording_and_asks_for_another_delivery() {
        let attributes = stamped(inbound(), false);
        let voice = voice();
        voice.0.lock().unwrap().failing_stops.push("RE03".into());
        let enforcer = enforcer(&attributes, voice);
        let enforced = run(&enforcer, &event(SALES, attributes.clone())).await;
        let Enforced::Call {
            complete,
            ref actions,
            ..
        } = enforced
        else {
            panic!()
        };
        assert!(!complete);
        let failed: Vec<_> = actions
            .iter()
            .filter(|a| a.kind == ActionKind::Failed)
            .collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].recording_sid.as_deref(), Some("RE03"));
        assert_eq!(
            failed[0].cause.as_deref(),
            Some("Voice API answered 500 on stop")
        );
        // A 500 is no refusal: nothing is paused, and a later delivery stops it.
        assert!(!requests(&enforcer).iter().any(|r| r.starts_with("pause")));
        assert_eq!(
            enforcer.recordings.status("RE03"),
            Some(RecordingStatus::InProgress)
        );
        assert_eq!(
            enforcer.recordings.status("RE01"),
            None,
            "the others are done"
        );

        // Redelivered once the Voice API is well again: the rest is done.
        enforcer.recordings.0.lock().unwrap().failing_stops.clear();
        let again = run(&enforcer, &event(SALES, attributes)).await;
        assert_eq!(
            kinds(&again),
            [
                action(ActionKind::Stopped, "RE03"),
                action(ActionKind::Deleted, "RE03")
            ]
        );
    }

    fn causes(enforced: &Enforced) -> Vec<Option<String>> {
        let Enforced::Call { actions, .. } = enforced else {
            panic!("not a call: {enforced:?}");
        };
        actions.iter().map(|a| a.cause.clone()).collect()
    }

    fn complete(enforced: &Enforced) -> bool {
        matches!(enforced, Enforced::Call { complete: true, .. })
    }

    fn requests(enforcer: &Enforcer<Tasks, Voice>) -> Vec<String> {
        enforcer.recordings.0.lock().unwrap().requests.clone()
    }

    /// The stops, pauses and deletes asked for.
    fn writes(enforcer: &Enforcer<Tasks, Voice>) -> Vec<String> {
        let reads = ["conference", "participants", "list"];
        let mut sent = requests(enforcer);
        sent.retain(|r| !reads.iter().any(|read| r.starts_with(read)));
        sent
    }

    #[tokio::test]
    async fn a_refused_stop_pauses_and_a_later_delivery_deletes_it_once_finished() {
        let attributes = stamped(inbound(), false);
        let voice = voice();
        voice.0.lock().unwrap().refusing_stops.push("RE01".into());
        let enforcer = enforcer(&attributes, voice);
        let enforced = run(&enforcer, &event(SALES, attributes.clone())).await;
        assert_eq!(
            kinds(&enforced),
            [
                action(ActionKind::Paused, "RE01"),
                action(ActionKind::Stopped, "RE03"),
                action(ActionKind::Deleted, "RE03"),
                action(ActionKind::Deleted, "RE02"),
            ]
        );
        let paused = format!("Voice API answered 400 on stop; paused instead, and {DELETED_LATER}");
        assert_eq!(causes(&enforced)[0].as_deref(), Some(paused.as_str()));
        // Still there, so the delivery is unfinished: a later one deletes it.
        assert!(!complete(&enforced), "{enforced:?}");
        assert_eq!(
            enforcer.recordings.status("RE01"),
            Some(RecordingStatus::Paused)
        );
        let sent = requests(&enforcer);
        assert!(sent.contains(&"pause RE01".to_owned()), "{sent:?}");
        assert!(!sent.contains(&"delete RE01".to_owned()), "{sent:?}");

        // Redelivered while the call goes on: the stop is refused again, and the recording,
        // paused already, is left so rather than paused again.
        enforcer.recordings.0.lock().unwrap().requests.clear();
        let again = run(&enforcer, &event(SALES, attributes.clone())).await;
        assert_eq!(kinds(&again), [action(ActionKind::Paused, "RE01")]);
        let already =
            format!("Voice API answered 400 on stop; already paused, and {DELETED_LATER}");
        assert_eq!(causes(&again)[0].as_deref(), Some(already.as_str()));
        assert!(!complete(&again), "{again:?}");
        assert_eq!(writes(&enforcer), ["stop RE01"]);

        // The call has ended and Twilio has finished the recording: deleted.
        enforcer.recordings.0.lock().unwrap().recordings[0].status = RecordingStatus::Completed;
        let last = run(&enforcer, &event(SALES, attributes)).await;
        assert_eq!(kinds(&last), [action(ActionKind::Deleted, "RE01")]);
        assert!(complete(&last), "{last:?}");
        assert_eq!(enforcer.recordings.status("RE01"), None);
    }

    #[tokio::test]
    async fn a_refused_pause_is_a_failure_and_the_recording_is_left_as_it_was() {
        let attributes = stamped(inbound(), false);
        let voice = voice();
        {
            let mut state = voice.0.lock().unwrap();
            state.refusing_stops.push("RE01".into());
            state.refusing_pauses.push("RE01".into());
        }
        let enforcer = enforcer(&attributes, voice);
        let enforced = run(&enforcer, &event(SALES, attributes)).await;
        assert_eq!(kinds(&enforced)[0], action(ActionKind::Failed, "RE01"));
        assert_eq!(
            causes(&enforced)[0].as_deref(),
            Some("Voice API answered 400 on stop; Voice API answered 400 on pause")
        );
        assert!(!complete(&enforced), "{enforced:?}");
        assert_eq!(
            enforcer.recordings.status("RE01"),
            Some(RecordingStatus::InProgress)
        );
        assert!(!requests(&enforcer).contains(&"delete RE01".to_owned()));
    }

    #[tokio::test]
    async fn a_transfer_pauses_what_twilio_will_not_stop_and_is_then_complete() {
        let attributes = stamped(inbound(), true);
        let voice = voice();
        voice.0.lock().unwrap().refusing_stops = vec!["RE01".into(), "RE03".into()];
        // The agent's leg was paused already (by the agent, say): it stays paused.
        voice.0.lock().unwrap().recordings[2].status = RecordingStatus::Paused;
        let enforcer = enforcer(&attributes, voice);
        let enforced = run(&enforcer, &event(PAYMENTS, attributes)).await;
        assert_eq!(
            kinds(&enforced),
            [
                action(ActionKind::Paused, "RE01"),
                action(ActionKind::Paused, "RE03")
            ]
        );
        assert_eq!(
            causes(&enforced),
            [
                Some("Voice API answered 400 on stop; paused instead".to_owned()),
                Some("Voice API answered 400 on stop; already paused".to_owned()),
            ]
        );
        assert!(complete(&enforced), "nothing to delete: {enforced:?}");
        assert_eq!(
            writes(&enforcer),
            ["stop RE01", "pause RE01", "stop RE03"],
            "RE03 is not paused again, and nothing is deleted"
        );
        for sid in ["RE01", "RE03"] {
            assert_eq!(
                enforcer.recordings.status(sid),
                Some(RecordingStatus::Paused)
            );
        }
    }

    #[tokio::test]
    async fn a_recording_still_processing_is_unfinished_work_for_a_later_delivery() {
        let attributes = stamped(inbound(), false);
        let voice = voice();
        voice.0.lock().unwrap().recordings =
            vec![recording("RE05", CUSTOMER, RecordingStatus::Processing)];
        let enforcer = enforcer(&attributes, voice);
        let mut last = event(SALES, attributes);
        last.kind = EventKind::TaskCompleted;
        let enforced = run(&enforcer, &last).await;
        let Enforced::Call {
            complete,
            ref actions,
            ..
        } = enforced
        else {
            panic!("{enforced:?}")
        };
        // Not skipped in silence: said, and the delivery answered so that it comes again.
        assert!(!complete, "{enforced:?}");
        assert_eq!(kinds(&enforced), [action(ActionKind::Failed, "RE05")]);
        assert_eq!(actions[0].cause.as_deref(), Some(STILL_PROCESSING));
        assert_eq!(
            enforcer.recordings.status("RE05"),
            Some(RecordingStatus::Processing)
        );
        let requests = enforcer.recordings.0.lock().unwrap().requests.clone();
        assert!(
            !requests.iter().any(|r| r.starts_with("delete")),
            "{requests:?}"
        );

        // Redelivered once Twilio has finished it: deleted.
        enforcer.recordings.0.lock().unwrap().recordings[0].status = RecordingStatus::Completed;
        let again = run(&enforcer, &last).await;
        assert_eq!(kinds(&again), [action(ActionKind::Deleted, "RE05")]);
        assert!(matches!(again, Enforced::Call { complete: true, .. }));
        assert_eq!(enforcer.recordings.status("RE05"), None);
    }

    #[tokio::test]
    async fn a_recording_just_stopped_that_twilio_will_not_delete_yet_is_unfinished() {
        let attributes = stamped(inbound(), false);
        let voice = voice();
        {
            let mut state = voice.0.lock().unwrap();
            state.recordings = vec![recording("RE06", CONFERENCE, RecordingStatus::InProgress)];
            state.stops_leave_processing = true;
        }
        let enforcer = enforcer(&attributes, voice);
        let enforced = run(&enforcer, &event(SALES, attributes.clone())).await;
        assert_eq!(
            kinds(&enforced),
            [
                action(ActionKind::Stopped, "RE06"),
                action(ActionKind::Failed, "RE06")
            ]
        );
        let Enforced::Call {
            complete,
            ref actions,
            ..
        } = enforced
        else {
            panic!("{enforced:?}")
        };
        assert!(!complete, "{enforced:?}");
        assert_eq!(
            actions[1].cause.as_deref(),
            Some("Voice API answered 400 on delete: the recording is processing")
        );

        // The next delivery finds it still processing, then finished.
        let again = run(&enforcer, &event(SALES, attributes.clone())).await;
        assert_eq!(kinds(&again), [action(ActionKind::Failed, "RE06")]);
        enforcer.recordings.0.lock().unwrap().recordings[0].status = RecordingStatus::Completed;
        let last = run(&enforcer, &event(SALES, attributes)).await;
        assert_eq!(kinds(&last), [action(ActionKind::Deleted, "RE06")]);
        assert!(matches!(last, Enforced::Call { complete: true, .. }));
    }

    #[tokio::test]
    async fn a_call_written_in_either_case_has_its_recordings_listed_once() {
        let attributes = stamped(inbound(), false);
        let voice = voice();
        voice.0.lock().unwrap().participants = HashMap::from([(
            CONFERENCE.into(),
            vec![CUSTOMER.to_ascii_uppercase(), AGENT.into()],
        )]);
        let enforcer = enforcer(&attributes, voice);
        run(&enforcer, &event(SALES, attributes)).await;
        let customer_lists = requests(&enforcer)
            .iter()
            .filter(|r| r.eq_ignore_ascii_case(&format!("list {CUSTOMER}")))
            .count();
        assert_eq!(customer_lists, 1, "{:?}", requests(&enforcer));
    }

    #[tokio::test]
    async fn chats_are_not_enforced() {
        let chat =
            json!({"channelType": "web", "conversationSid": "CH0123456789abcdef0123456789abcdef"});
        let enforcer = enforcer(&chat, voice());
        let mut event_of_chat = event(PAYMENTS, chat);
        event_of_chat.task_channel = Some("chat".into());
        assert_eq!(run(&enforcer, &event_of_chat).await, Enforced::NotACall);
        assert!(enforcer.recordings.0.lock().unwrap().requests.is_empty());
    }

    #[tokio::test]
    async fn a_task_gone_from_taskrouter_is_enforced_on_the_events_own_decision() {
        // Completed and deleted before its unstamped event arrived: no stamp can ever be
        // read or written, so the event's decision is the first (and last) one.
        let enforcer = Enforcer {
            annotations: Tasks::default(),
            recordings: voice(),
            media: Media::none(),
        };
        let enforced = run(&enforcer, &event(PAYMENTS, inbound())).await;
        let Enforced::Call {
            first,
            complete,
            task_gone,
            ..
        } = enforced
        else {
            panic!("{enforced:?}")
        };
        assert!(task_gone && !first && complete, "{enforced:?}");
        assert_eq!(kinds(&enforced).len(), 5, "{enforced:?}");
        for sid in ["RE01", "RE02", "RE03"] {
            assert_eq!(enforcer.recordings.status(sid), None, "{sid} deleted");
        }
        assert!(
            enforcer.annotations.attributes(TASK).is_none(),
            "not recreated"
        );

        // Gone, and its event a recorded queue's: nothing to do, and nothing touched.
        let enforcer = Enforcer {
            annotations: Tasks::default(),
            recordings: voice(),
            media: Media::none(),
        };
        let enforced = run(&enforcer, &event(SALES, inbound())).await;
        assert!(
            matches!(enforced, Enforced::Call { first: true, task_gone: true, ref actions, .. } if actions.is_empty()),
            "{enforced:?}"
        );
        assert!(enforcer.recordings.0.lock().unwrap().requests.is_empty());
    }

    /// Annotations that cannot be had: TaskRouter down.
    struct Unreachable;

    impl TaskAnnotations for Unreachable {
        type Error = &'static str;
        async fn annotate(
            &self,
            _account_sid: Option<&str>,
            _workspace_sid: Option<&str>,
            _task_sid: &str,
            _annotation: &Value,
        ) -> Result<Annotated, &'static str> {
            Err("TaskRouter answered 503")
        }
    }

    #[tokio::test]
    async fn an_unreadable_task_is_left_alone_for_a_later_delivery() {
        let enforcer = Enforcer {
            annotations: Unreachable,
            recordings: voice(),
            media: Media::none(),
        };
        let deadline = Instant::now() + ENFORCEMENT_BUDGET;
        let enforced = enforcer
            .enforce(
                &event(PAYMENTS, inbound()),
                Some(&rules()),
                None,
                FailPolicy::DoNotRecord,
                deadline,
                None::<&crate::ports::NoLedger>,
            )
            .await;
        assert!(
            matches!(&enforced, Enforced::NoFirstDecision { cause, .. } if cause == "TaskRouter answered 503"),
            "{enforced:?}"
        );
        assert!(enforcer.recordings.0.lock().unwrap().requests.is_empty());
    }

    #[tokio::test]
    async fn a_spent_budget_is_a_failure_not_a_success() {
        let attributes = stamped(inbound(), false);
        let enforcer = enforcer(&attributes, voice());
        let spent = Instant::now();
        let enforced = enforcer
            .enforce(
                &event(SALES, attributes),
                Some(&rules()),
                None,
                FailPolicy::DoNotRecord,
                spent,
                None::<&crate::ports::NoLedger>,
            )
            .await;
        let Enforced::Call {
            complete,
            ref actions,
            ..
        } = enforced
        else {
            panic!()
        };
        assert!(!complete);
        assert_eq!(
            actions[0].cause.as_deref(),
            Some("the delivery's 4000 ms ran out")
        );
    }
}
