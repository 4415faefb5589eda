//! The service core: verify, decide, act (the answer, the stamp in annotate mode), record.
//! It knows no HTTP and no AWS type: its I/O is behind ports named in the domain's words
//! (rules, tokens, the queue directory, task annotations), each with a real adapter in
//! `sources` and an in-memory one in [`memory`]. The faces (`handler` for Lambda and `serve`,
//! `cli` for `decide`) turn transport into an [`Inbound`] and the result back.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::config::AnswerMode;
pub use crate::enforcement::Enforcer;
use crate::events::EventError;
use crate::ledger::{self, DecidedBy, FirstDecision};
use crate::metrics::{self, DecisionRecord};
pub use crate::ports::{
    Annotated, AuthTokens, Ledger, LoadedRules, NoLedger, QueueDirectory, Recordings, RulesSource,
    TaskAnnotations, TokenSource,
};
use crate::rules::{self, Arrival, Decision, FailPolicy, Reason};
use crate::taskrouter::{self, Answer, AssignmentCallback, CallbackError, NoInstruction};
use crate::{refusal_log, signature};

mod events;
pub mod media;
mod memory_ledger;
mod memory_media;
pub use events::{Delivery, EventsInbound, Settled};

/// Everything before the answer (token and rules refreshes, the queue-name lookup) must be
/// done by then, from the callback's arrival, leaving TaskRouter's 5 s a second of margin.
pub const DECISION_BUDGET: std::time::Duration = std::time::Duration::from_secs(4);
/// In annotate mode the task must be written by then (from the callback's arrival), so the
/// answer still reaches TaskRouter well inside its 5 s.
pub const ANNOTATE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);
/// The ledger's first-decision write at assignment gets at most this (SPEC section 10): it
/// goes beside the annotation, and past it the answer goes out without it.
pub const LEDGER_BUDGET: std::time::Duration = std::time::Duration::from_secs(1);
/// One assignment callback as a face hands it over.
pub struct Inbound<'a> {
    /// The form's parameters, repeats kept, every one covered by the signature.
    pub params: Vec<(String, String)>,
    /// `X-Twilio-Signature`; `Some("")` for a header that is not text (present but wrong).
    pub signature: Option<&'a str>,
    /// The URL the caller called, as the face rebuilt it.
    pub url: Result<String, UnknownUrl>,
    /// The face's request ID (Lambda's), for the decision line.
    pub request_id: Option<&'a str>,
    /// When the request arrived: the budgets count from here.
    pub started: Instant,
}

/// Why a face has no URL to check a signature against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownUrl {
    /// The request has no host.
    NoHost,
    /// A REST API (v1) event with a query string, which API Gateway does not pass on as sent.
    RestApiQuery,
}

/// Why the service makes no decision for a callback.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("X-Twilio-Signature is missing")]
    SignatureMissing,
    #[error("X-Twilio-Signature is not valid for this URL and body")]
    SignatureInvalid,
    #[error("the callback is for another account")]
    OtherAccount,
    #[error("signatures cannot be checked: no auth token is available")]
    TokensUnavailable,
    #[error(transparent)]
    Callback(#[from] CallbackError),
    #[error("the events URL has no bodySHA256 parameter, so the body is not signed")]
    BodyUnsigned,
    #[error("the body's SHA-256 is not the URL's bodySHA256")]
    BodyMismatch,
    #[error(transparent)]
    Events(EventError),
}

impl Refusal {
    /// For the signature-rejection metric: why a callback was refused, if for its signature.
    pub fn signature_cause(&self) -> Option<&'static str> {
        match self {
            Refusal::SignatureMissing => Some("missing"),
            Refusal::SignatureInvalid => Some("invalid"),
            Refusal::OtherAccount => Some("other_account"),
            Refusal::BodyUnsigned => Some("body_unsigned"),
            Refusal::BodyMismatch => Some("body_mismatch"),
            _ => None,
        }
    }
}

/// Settings the service needs besides the rules: the other ports (queue directory `Q`, task
/// annotations `A`, auth tokens `T`) and the policies.
pub struct Settings<Q, A, T, R, L = NoLedger> {
    pub fail_policy: FailPolicy,
    /// Callbacks for any other account are refused.
    pub account_sid: Option<String>,
    pub signatures: Signatures<T>,
    /// Resolves queue names for rules that name queues; without it such calls follow the
    /// fail policy.
    pub queue_names: Option<Q>,
    pub mode: Mode<A>,
    /// Enforcement on `/events` (SPEC section 8), with its own ports; `None` when
    /// `ENFORCEMENT=off` (deliveries are verified, answered 2xx, and nothing else).
    pub enforcement: Option<Enforcer<A, R>>,
    /// `PUBLIC_EVENTS_URL`: the only URL an event delivery's signature may cover.
    pub public_events_url: Option<String>,
    /// The ledger of first decisions and actions (`LEDGER_TABLE`); `None` without one.
    pub ledger: Option<L>,
}

/// No queue directory, conference mode, signatures off, the default fail policy.
impl<Q, A, T, R, L> Default for Settings<Q, A, T, R, L> {
    fn default() -> Self {
        Settings {
            fail_policy: FailPolicy::default(),
            account_sid: None,
            signatures: Signatures::Off,
            queue_names: None,
            mode: Mode::Conference,
            enforcement: None,
            public_events_url: None,
            ledger: None,
        }
    }
}

/// The answer mode, with what it needs: annotate mode cannot be had without a way to write.
pub enum Mode<A> {
    /// Answer with the `conference` instruction.
    Conference,
    /// Answer `{}` and write the decision on the task through the annotator.
    Annotate(A),
}

impl<A> Mode<A> {
    pub fn answer_mode(&self) -> AnswerMode {
        match self {
            Mode::Conference => AnswerMode::Conference,
            Mode::Annotate(_) => AnswerMode::Annotate,
        }
    }
}

/// Whether `X-Twilio-Signature` is checked, and against which tokens.
pub enum Signatures<T> {
    /// Any request is answered (local use, or `TWILIO_SIGNATURE_VALIDATION=off`): the
    /// default.
    Off,
    Enforce {
        tokens: Arc<T>,
        /// The only URL a signature may cover; else the face's URL ([`Inbound::url`]).
        public_url: Option<String>,
    },
}

/// The service: everything a callback needs, built once at start and shared by every
/// request, behind its ports: rules `S`, and in [`Settings`] the queue directory `Q`, task
/// annotations `A` and auth tokens `T`.
pub struct App<S, Q, A, T, R, L = NoLedger> {
    pub rules: S,
    pub settings: Settings<Q, A, T, R, L>,
}

impl<S, Q, A, T, R, L> App<S, Q, A, T, R, L>
where
    S: RulesSource,
    Q: QueueDirectory,
    A: TaskAnnotations,
    T: TokenSource,
    R: Recordings,
    L: Ledger,
{
    /// Verifies, decides, acts (the answer; the stamp in annotate mode) and records one
    /// assignment callback. `Err` is a refusal: no decision is made.
    pub async fn assignment(&self, inbound: Inbound<'_>) -> Result<String, Refusal> {
        let (started, request_id) = (inbound.started, inbound.request_id);
        // Tokens (for the signature) and rules may each need a refresh: side by side, so two
        // slow fetches cost the time of one.
        let (callback, loaded) = tokio::join!(self.accept(inbound), self.rules.current());
        let callback = callback?;
        let attributes = taskrouter::parse_attributes(&callback.task_attributes);
        let (decision, queue_name) = self
            .decide(&callback, attributes.as_ref(), loaded.as_deref(), started)
            .await;
        let rules_version = loaded.as_ref().and_then(|l| l.version);

        let reason = decision.reason();
        let pass_through = match &loaded {
            Some(loaded) => Cow::Borrowed(loaded.rules.instruction()),
            None => Cow::Owned(serde_json::Map::new()),
        };
        let answer = answer_in(
            self.settings.mode.answer_mode(),
            &decision,
            attributes.as_ref(),
            &pass_through,
        );
        // In annotate mode the decision holds only once it is in the task's attributes (the
        // Flex template records a task without one), so the line says whether it got there,
        // or which earlier decision it found there and kept.
        let annotated = async {
            match (&self.settings.mode, decision) {
                (Mode::Annotate(annotator), Decision::Conference { record, reason }) => {
                    let stamp = Stamp {
                        record,
                        reason,
                        rules_version,
                    };
                    match self
                        .annotate(annotator, &callback, attributes.as_ref(), stamp, started)
                        .await
                    {
                        Some(Annotated::Written { .. }) => (Some("written"), None),
                        Some(Annotated::Kept { record }) => {
                            (Some("kept"), Some(rules::record_outcome(record)))
                        }
                        Some(Annotated::TaskGone) | None => (Some("failed"), None),
                    }
                }
                _ => (None, None),
            }
        };
        // The ledger's write goes beside the annotation's: the slower of the two, never
        // their sum, is what the answer waits for.
        let ledgered = self.ledger_first(
            &callback,
            attributes.as_ref(),
            decision,
            rules_version,
            started,
        );
        let ((annotation, first), ()) = tokio::join!(annotated, ledgered);
        let rule = reason.rule().map(|r| r.to_string());
        metrics::decision(&DecisionRecord {
            task_sid: &callback.task_sid,
            reservation_sid: &callback.reservation_sid,
            task_queue_sid: callback.task_queue_sid.as_deref(),
            queue_name: queue_name.as_deref(),
            workspace_sid: callback.workspace_sid.as_deref(),
            decision: decision.outcome(),
            reason: reason.kind(),
            rule,
            rules_version,
            answer: answer.kind(),
            answer_reason: answer.no_instruction().map(NoInstruction::as_str),
            annotation,
            first,
            elapsed_us: started.elapsed().as_micros() as u64,
            request_id,
            rules_age: self.rules.age(),
        });
        Ok(answer.to_json())
    }

    /// The signature, the account, and the callback's own fields.
    async fn accept(&self, inbound: Inbound<'_>) -> Result<AssignmentCallback, Refusal> {
        // The signature first: nothing about the body is answered to an unsigned caller.
        self.check_signature(&inbound).await?;
        if let Some(account) = &self.settings.account_sid
            && taskrouter::single(&inbound.params, "AccountSid")? != Some(account.as_str())
        {
            return Err(Refusal::OtherAccount);
        }
        Ok(AssignmentCallback::from_params(inbound.params)?)
    }

    /// The decision for an accepted callback, and the queue name when it had to be fetched.
    /// When good rules cannot decide a call, the fail policy does.
    async fn decide(
        &self,
        callback: &AssignmentCallback,
        attributes: Option<&Value>,
        loaded: Option<&LoadedRules>,
        started: Instant,
    ) -> (Decision, Option<Arc<str>>) {
        let policy = self.settings.fail_policy;
        let rules = loaded.map(|l| &l.rules);
        let mut arrival = Arrival {
            attributes,
            queue_sid: callback.task_queue_sid.as_deref(),
            queue_name: None,
            channel: callback.task_channel.as_deref(),
        };
        let decision = rules::decide_arrival(rules, arrival, policy);
        // Only a decision that needs the queue's name asks TaskRouter for it.
        if decision.reason() != Reason::QueueNameUnresolved {
            return (decision, None);
        }
        let task = TaskRef {
            task_sid: &callback.task_sid,
            account_sid: callback.account_sid.as_deref(),
            workspace_sid: callback.workspace_sid.as_deref(),
            queue_sid: callback.task_queue_sid.as_deref(),
        };
        match self.queue_name(task, started).await {
            Some(name) => {
                arrival.queue_name = Some(&name);
                let decision = rules::decide_arrival(rules, arrival, policy);
                (decision, Some(name))
            }
            None => (decision, None),
        }
    }
    /// Writes the decision into the task's attributes, within [`ANNOTATE_DEADLINE`] of the
    /// request's start so TaskRouter still gets its answer in time, unless the task already
    /// has a stamp (an earlier reservation's, in the callback's attributes or found on the
    /// task), which is the call's first decision and stays. `None` when the write failed:
    /// that is logged and counted; the answer is `{}` either way.
    async fn annotate(
        &self,
        annotator: &A,
        callback: &AssignmentCallback,
        attributes: Option<&Value>,
        stamp: Stamp,
        started: Instant,
    ) -> Option<Annotated> {
        if let Some(record) = attributes.and_then(taskrouter::stamped_record) {
            return Some(Annotated::Kept { record });
        }
        let decided_at = time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        let annotation = json!({
            "record": stamp.record,
            "reason": stamp.reason.to_string(),
            "rules_version": stamp.rules_version,
            "decided_at": decided_at,
        });
        let left = ANNOTATE_DEADLINE.saturating_sub(started.elapsed());
        let written = Box::pin(annotator.annotate(
            callback.account_sid.as_deref(),
            callback.workspace_sid.as_deref(),
            &callback.task_sid,
            &annotation,
        ));
        let cause = match tokio::time::timeout(left, written).await {
            // At assignment the task exists; gone, it is one more failure to log.
            Ok(Ok(Annotated::TaskGone)) => "TaskRouter answered 404: the task is gone".to_owned(),
            Ok(Ok(annotated)) => {
                if let Annotated::Written { attempts } = annotated {
                    tracing::info!(task_sid = %callback.task_sid, attempts, "task annotated");
                }
                return Some(annotated);
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!(
                "not written within {} ms of the callback",
                ANNOTATE_DEADLINE.as_millis()
            ),
        };
        tracing::warn!(
            task_sid = %callback.task_sid,
            reservation_sid = %callback.reservation_sid,
            record = stamp.record,
            cause = %cause,
            "task annotation failed"
        );
        metrics::annotation_failed();
        None
    }

    /// The task queue's friendly name from TaskRouter, or `None` (logged) when it cannot be
    /// had.
    /// Writes the call's first decision to the ledger, within [`LEDGER_BUDGET`] and never
    /// past the decision's budget: a slow, throttled or absent ledger is logged and counted,
    /// and the answer goes out as it would without one. A decision already there (a
    /// transfer's reservation, or an event's) stays.
    async fn ledger_first(
        &self,
        callback: &AssignmentCallback,
        attributes: Option<&Value>,
        decision: Decision,
        rules_version: Option<i64>,
        started: Instant,
    ) {
        let (Some(ledger), Decision::Conference { record, reason }) =
            (&self.settings.ledger, decision)
        else {
            return;
        };
        // A stamp on the task is an earlier decision (annotate mode, an earlier reservation).
        let stamped = attributes.and_then(taskrouter::stamped_record);
        let (call_sid, conference_sid) = ledger::call_sids(attributes);
        let first = FirstDecision {
            task_sid: callback.task_sid.clone(),
            record: stamped.unwrap_or(record),
            reason: match stamped {
                Some(_) => "stamped on the task before the ledger had it".to_owned(),
                None => reason.to_string(),
            },
            rule: match stamped {
                Some(_) => None,
                None => reason.rule().map(|r| r.to_string()),
            },
            rules_version: if stamped.is_some() {
                None
            } else {
                rules_version
            },
            decided_at: ledger::unix_now(),
            decided_by: if stamped.is_some() {
                DecidedBy::Stamp
            } else {
                DecidedBy::Assignment
            },
            call_sid,
            conference_sid,
        };
        let left = LEDGER_BUDGET.min(DECISION_BUDGET.saturating_sub(started.elapsed()));
        let deadline = tokio::time::Instant::now() + left;
        // Boxed, as every port's future on this path: an adapter's I/O future is kilobytes
        // (7 KB for DynamoDB's), and unboxed it would be part of every callback's future,
        // which is moved whole at each layer of the face (BENCHMARKS.md, bench (c)).
        let mut write = Box::pin(ledger.first_decision(&first));
        // A write that is done at its first poll (an in-memory ledger) needs no timer: the
        // timer is most of what such a write costs (BENCHMARKS.md, bench (c)).
        let first_poll =
            std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await;
        let written = match first_poll {
            std::task::Poll::Ready(written) => Ok(written),
            std::task::Poll::Pending => tokio::time::timeout_at(deadline, write).await,
        };
        let cause = match written {
            Ok(Ok(_)) => return,
            Ok(Err(error)) => error.to_string(),
            Err(_) => format!("not written within {} ms", left.as_millis()),
        };
        tracing::warn!(
            task_sid = %callback.task_sid,
            reservation_sid = %callback.reservation_sid,
            record = first.record,
            cause = %cause,
            "ledger write failed"
        );
        metrics::ledger_failed();
    }

    async fn queue_name(&self, task: TaskRef<'_>, started: Instant) -> Option<Arc<str>> {
        let names = self.settings.queue_names.as_ref()?;
        let queue_sid = task.queue_sid?;
        let left = DECISION_BUDGET.saturating_sub(started.elapsed());
        let lookup = Box::pin(names.friendly_name(task.account_sid, task.workspace_sid, queue_sid));
        let found = match tokio::time::timeout(left, lookup).await {
            Ok(found) => found.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "no time left: the decision has {} ms in all",
                DECISION_BUDGET.as_millis()
            )),
        };
        match found {
            Ok(name) => Some(name),
            Err(cause) => {
                tracing::warn!(
                    task_sid = %task.task_sid,
                    task_queue_sid = queue_sid,
                    cause = %cause,
                    "queue name unresolved"
                );
                None
            }
        }
    }

    async fn check_signature(&self, inbound: &Inbound<'_>) -> Result<(), Refusal> {
        let Signatures::Enforce { tokens, public_url } = &self.settings.signatures else {
            return Ok(());
        };
        let signature = inbound.signature.ok_or(Refusal::SignatureMissing)?;
        let tokens = tokens.current().await.ok_or(Refusal::TokensUnavailable)?;
        let url = match (public_url, &inbound.url) {
            (Some(url), _) => url.as_str(),
            (None, Ok(url)) => url.as_str(),
            (None, Err(UnknownUrl::RestApiQuery)) => {
                if refusal_log::admitted() {
                    tracing::warn!(
                        "the callback came through a REST API (v1) with a query string, which \
                     API Gateway does not pass on as sent, so its signature cannot be \
                     checked: set PUBLIC_URL to the callback URL"
                    );
                }
                return Err(Refusal::SignatureInvalid);
            }
            (None, Err(_)) => return Err(Refusal::SignatureInvalid),
        };
        if signature::is_valid(tokens.as_slice(), url, &inbound.params, signature) {
            Ok(())
        } else {
            // The URL without its query (which may carry a secret) tells an operator which
            // URL the signature was checked against.
            if refusal_log::admitted() {
                let checked = without_secrets(url);
                tracing::warn!(
                    url = %checked,
                    "signature does not match; is PUBLIC_URL or the callback URL in TaskRouter different?"
                );
            }
            Err(Refusal::SignatureInvalid)
        }
    }
}

/// The SIDs that say where a task is, for the queue directory.
#[derive(Clone, Copy)]
struct TaskRef<'a> {
    task_sid: &'a str,
    account_sid: Option<&'a str>,
    workspace_sid: Option<&'a str>,
    queue_sid: Option<&'a str>,
}

/// A decision as it is stamped on a task.
struct Stamp {
    record: bool,
    reason: Reason,
    rules_version: Option<i64>,
}

/// The answer to TaskRouter in an answer mode: in annotate mode always `{}` (the agent
/// accepts in the Flex UI), else [`taskrouter::answer`].
pub fn answer_in<'a>(
    mode: AnswerMode,
    decision: &Decision,
    attributes: Option<&Value>,
    pass_through: &'a serde_json::Map<String, Value>,
) -> Answer<'a> {
    match (mode, decision) {
        (AnswerMode::Conference, _) => taskrouter::answer(decision, attributes, pass_through),
        (AnswerMode::Annotate, Decision::NotACall) => Answer::Nothing(NoInstruction::NotACall),
        (AnswerMode::Annotate, Decision::Conference { .. }) => {
            Answer::Nothing(NoInstruction::AnnotateMode)
        }
    }
}

/// The URL as it may be logged: no query (it may carry a secret) and no `user:password@`.
fn without_secrets(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

/// In-memory adapters of the ports, for tests and dry runs.
pub mod memory {
    pub use super::memory_ledger::{Archive, MemoryLedger, Unavailable};
    pub use super::memory_media::MemoryMedia;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, PoisonError};

    use serde_json::Value;

    use super::{Annotated, AuthTokens, QueueDirectory, TaskAnnotations, TokenSource};
    use crate::ports::{
        Done, Failure, Recorded, Recording, RecordingStatus, Recordings, VoiceFailure,
    };
    use crate::taskrouter::{STAMP_KEY, stamped_record};

    /// The Voice API's conferences and recordings, in memory, changed as Twilio would: a
    /// stop stops, a pause pauses, a delete deletes, a recording gone is a `404` (done), and
    /// a delete of a recording still in progress, paused or processing is refused.
    #[derive(Debug, Default)]
    pub struct Voice(pub Mutex<VoiceState>);

    #[derive(Debug, Default)]
    pub struct VoiceState {
        /// (ConferenceSid, FriendlyName, in progress).
        pub conferences: Vec<(String, String, bool)>,
        /// ConferenceSid to its participants' CallSids.
        pub participants: HashMap<String, Vec<String>>,
        pub recordings: Vec<VoiceRecording>,
        /// Recordings whose stop fails, as a Voice API `500` would.
        pub failing_stops: Vec<String>,
        /// Recordings whose stop Twilio refuses (`400`), as conference recordings' have been
        /// seen to be.
        pub refusing_stops: Vec<String>,
        /// Recordings whose pause Twilio refuses (`400`).
        pub refusing_pauses: Vec<String>,
        /// A stopped recording is `processing` (until a test finishes it), as Twilio's is
        /// for a while after the stop.
        pub stops_leave_processing: bool,
        /// Every request, as `operation sid`.
        pub requests: Vec<String>,
    }

    impl VoiceState {
        /// A recording's new status: done, or already gone (`404`).
        fn set_status(&mut self, recording_sid: &str, status: RecordingStatus) -> Done {
            match self.recordings.iter_mut().find(|r| r.sid == recording_sid) {
                Some(recording) => {
                    recording.status = status;
                    Done::Now
                }
                None => Done::AlreadyGone,
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct VoiceRecording {
        pub sid: String,
        /// A ConferenceSid or a CallSid.
        pub of: String,
        pub status: RecordingStatus,
    }

    /// Why the in-memory Voice API refused.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum VoiceError {
        #[error("Voice API answered 500 on stop")]
        StopFailed,
        #[error("Voice API answered 400 on stop")]
        StopRefused,
        #[error("Voice API answered 400 on pause")]
        PauseRefused,
        #[error("Voice API answered 400 on delete: the recording is in progress")]
        InProgress,
        #[error("Voice API answered 400 on delete: the recording is paused")]
        Paused,
        #[error("Voice API answered 400 on delete: the recording is processing")]
        Processing,
    }

    impl VoiceFailure for VoiceError {
        fn failure(&self) -> Failure {
            match self {
                VoiceError::StopFailed => Failure::Unavailable,
                VoiceError::StopRefused
                | VoiceError::PauseRefused
                | VoiceError::InProgress
                | VoiceError::Paused
                | VoiceError::Processing => Failure::Refused,
            }
        }
    }

    impl Voice {
        fn state(&self) -> std::sync::MutexGuard<'_, VoiceState> {
            self.0.lock().unwrap_or_else(PoisonError::into_inner)
        }

        /// A recording's status now; `None` once deleted.
        pub fn status(&self, recording_sid: &str) -> Option<RecordingStatus> {
            let state = self.state();
            let found = state.recordings.iter().find(|r| r.sid == recording_sid);
            found.map(|r| r.status)
        }
    }

    impl Recordings for Voice {
        type Error = VoiceError;

        async fn conference_for_task(
            &self,
            _account_sid: &str,
            task_sid: &str,
        ) -> Result<Option<String>, VoiceError> {
            let mut state = self.state();
            state.requests.push(format!("conference {task_sid}"));
            let found = state
                .conferences
                .iter()
                .find(|(_, name, live)| name == task_sid && *live);
            Ok(found.map(|(sid, _, _)| sid.clone()))
        }

        async fn participant_calls(
            &self,
            _account_sid: &str,
            conference_sid: &str,
        ) -> Result<Vec<String>, VoiceError> {
            let mut state = self.state();
            state
                .requests
                .push(format!("participants {conference_sid}"));
            Ok(state
                .participants
                .get(conference_sid)
                .cloned()
                .unwrap_or_default())
        }

        async fn list(
            &self,
            _account_sid: &str,
            of: Recorded<'_>,
        ) -> Result<Vec<Recording>, VoiceError> {
            let (Recorded::Conference(sid) | Recorded::Call(sid)) = of;
            let mut state = self.state();
            state.requests.push(format!("list {sid}"));
            let listed = state.recordings.iter().filter(|r| r.of == sid);
            Ok(listed
                .map(|r| Recording {
                    sid: r.sid.clone(),
                    status: r.status,
                    media_url: None,
                    date_created: None,
                })
                .collect())
        }

        async fn stop(
            &self,
            _account_sid: &str,
            _of: Recorded<'_>,
            recording_sid: &str,
        ) -> Result<Done, VoiceError> {
            let mut state = self.state();
            state.requests.push(format!("stop {recording_sid}"));
            if state.failing_stops.iter().any(|sid| sid == recording_sid) {
                return Err(VoiceError::StopFailed);
            }
            if state.refusing_stops.iter().any(|sid| sid == recording_sid) {
                return Err(VoiceError::StopRefused);
            }
            let stopped = if state.stops_leave_processing {
                RecordingStatus::Processing
            } else {
                RecordingStatus::Stopped
            };
            Ok(state.set_status(recording_sid, stopped))
        }

        async fn pause(
            &self,
            _account_sid: &str,
            _of: Recorded<'_>,
            recording_sid: &str,
        ) -> Result<Done, VoiceError> {
            let mut state = self.state();
            state.requests.push(format!("pause {recording_sid}"));
            if state.refusing_pauses.iter().any(|sid| sid == recording_sid) {
                return Err(VoiceError::PauseRefused);
            }
            Ok(state.set_status(recording_sid, RecordingStatus::Paused))
        }

        async fn delete(
            &self,
            _account_sid: &str,
            recording_sid: &str,
        ) -> Result<Done, VoiceError> {
            let mut state = self.state();
            state.requests.push(format!("delete {recording_sid}"));
            let Some(at) = state.recordings.iter().position(|r| r.sid == recording_sid) else {
                return Ok(Done::AlreadyGone);
            };
            match state.recordings[at].status {
                RecordingStatus::InProgress => return Err(VoiceError::InProgress),
                RecordingStatus::Paused => return Err(VoiceError::Paused),
                RecordingStatus::Processing => return Err(VoiceError::Processing),
                _ => {}
            }
            state.recordings.remove(at);
            Ok(Done::Now)
        }
    }

    /// Tokens fixed in memory.
    #[derive(Debug)]
    pub struct Tokens(pub Arc<AuthTokens>);

    impl TokenSource for Tokens {
        async fn current(&self) -> Option<Arc<AuthTokens>> {
            Some(Arc::clone(&self.0))
        }

        fn describe(&self) -> String {
            "tokens in memory".into()
        }
    }

    /// Why an in-memory port has nothing to give.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    pub enum MemoryError {
        #[error("no such queue")]
        NoSuchQueue,
    }

    /// Queue names by SID.
    #[derive(Debug, Default)]
    pub struct Queues(pub HashMap<String, Arc<str>>);

    impl QueueDirectory for Queues {
        type Error = MemoryError;
        async fn friendly_name(
            &self,
            _account_sid: Option<&str>,
            _workspace_sid: Option<&str>,
            queue_sid: &str,
        ) -> Result<Arc<str>, MemoryError> {
            self.0
                .get(queue_sid)
                .cloned()
                .ok_or(MemoryError::NoSuchQueue)
        }
    }

    /// Tasks' attributes by TaskSid, stamped as TaskRouter's would be: an earlier stamp stays.
    #[derive(Debug, Default)]
    pub struct Tasks(pub Mutex<HashMap<String, Value>>);

    impl Tasks {
        /// A task's attributes now.
        pub fn attributes(&self, task_sid: &str) -> Option<Value> {
            let tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            tasks.get(task_sid).cloned()
        }
    }

    impl TaskAnnotations for Tasks {
        type Error = MemoryError;
        async fn annotate(
            &self,
            _account_sid: Option<&str>,
            _workspace_sid: Option<&str>,
            task_sid: &str,
            annotation: &Value,
        ) -> Result<Annotated, MemoryError> {
            let mut tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(attributes) = tasks.get_mut(task_sid) else {
                return Ok(Annotated::TaskGone);
            };
            if let Some(record) = stamped_record(attributes) {
                return Ok(Annotated::Kept { record });
            }
            attributes[STAMP_KEY] = annotation.clone();
            Ok(Annotated::Written { attempts: 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Refusal, without_secrets};

    #[test]
    fn every_signature_cause_is_one_the_metric_counts() {
        let refusals = [
            Refusal::SignatureMissing,
            Refusal::SignatureInvalid,
            Refusal::OtherAccount,
            Refusal::BodyUnsigned,
            Refusal::BodyMismatch,
        ];
        let causes: Vec<&str> = refusals
            .iter()
            .filter_map(Refusal::signature_cause)
            .collect();
        assert_eq!(causes, crate::metrics::SIGNATURE_CAUSES);
        assert_eq!(Refusal::TokensUnavailable.signature_cause(), None);
    }

    #[test]
    fn a_logged_url_has_no_query_and_no_password() {
        let cases = [
            (
                "https://twilio:S3cret@cr.example.com/assignment?key=k",
                "https://cr.example.com/assignment",
            ),
            (
                "https://a:b@c@h.example:8443/p#f",
                "https://h.example:8443/p",
            ),
            (
                "http://127.0.0.1:3000/assignment",
                "http://127.0.0.1:3000/assignment",
            ),
            ("https://h.example?x=1", "https://h.example"),
            ("no scheme@host/p?q", "host/p"),
        ];
        for (url, logged) in cases {
            assert_eq!(without_secrets(url), logged, "{url}");
        }
    }
}
