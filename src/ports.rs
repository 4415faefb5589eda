//! The service's ports: its I/O, named in the domain's words (rules, tokens, the queue
//! directory, task annotations, recordings), each a small trait with a real adapter in `sources` and an
//! in-memory one in `service::memory`. The values that cross them (a rules document in
//! force, the auth tokens) are defined here too, so the core needs nothing from `sources`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde_json::Value;

use crate::ledger::{CallAccount, FirstDecision, RecordingAction, Tie, Verdict};
use crate::media::S3Object;
use crate::rules::Rules;

/// A rules document in force, with where it came from.
#[derive(Debug)]
pub struct LoadedRules {
    pub rules: Rules,
    /// The source's version of the document (an SSM parameter version), when it has one.
    pub version: Option<i64>,
}

/// The rules in force. `None` means no good document has ever been loaded; the caller then
/// applies the fail policy.
pub trait RulesSource: Send + Sync + 'static {
    fn current(&self) -> impl Future<Output = Option<Arc<LoadedRules>>> + Send;

    /// Says where rules come from, for start-up messages.
    fn describe(&self) -> String;

    /// How long ago the rules in force were read; `None` when none are.
    fn age(&self) -> Option<std::time::Duration>;
}

/// The Twilio auth tokens that may sign a request, for signature validation.
pub trait TokenSource: Send + Sync + 'static {
    /// The tokens in force; `None` when none has ever been read.
    fn current(&self) -> impl Future<Output = Option<Arc<AuthTokens>>> + Send;

    /// Says where tokens come from, for start-up messages; never a token.
    fn describe(&self) -> String;
}

/// A token document with no token in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no token: the parameter must hold one auth token per line")]
pub struct NoToken;

/// The tokens in force (several during a rotation). Its `Debug` never shows a token.
pub struct AuthTokens(Vec<String>);

impl AuthTokens {
    /// Parses one token per line; blank lines and surrounding space are ignored.
    pub fn parse(text: &str) -> Result<AuthTokens, NoToken> {
        let tokens: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect();
        if tokens.is_empty() {
            return Err(NoToken);
        }
        Ok(AuthTokens(tokens))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Debug for AuthTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthTokens({} redacted)", self.0.len())
    }
}

/// The queue directory: a TaskQueue's friendly name, for rules that name queues.
pub trait QueueDirectory: Send + Sync + 'static {
    /// One line, safe to log.
    type Error: std::fmt::Display;
    fn friendly_name(
        &self,
        account_sid: Option<&str>,
        workspace_sid: Option<&str>,
        queue_sid: &str,
    ) -> impl Future<Output = Result<Arc<str>, Self::Error>> + Send;
}

/// Task annotations: the decision stamped on a task (annotate mode), never over an earlier
/// stamp.
pub trait TaskAnnotations: Send + Sync + 'static {
    /// One line, safe to log.
    type Error: std::fmt::Display;
    fn annotate(
        &self,
        account_sid: Option<&str>,
        workspace_sid: Option<&str>,
        task_sid: &str,
        annotation: &Value,
    ) -> impl Future<Output = Result<Annotated, Self::Error>> + Send;
}

/// What an annotation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Annotated {
    /// The decision is on the task, after this many rounds of read and write.
    Written { attempts: u32 },
    /// The task already had a stamp, with this decision, which stays.
    Kept { record: bool },
    /// TaskRouter has no such task (`404`): it was completed and deleted, so it can never be
    /// stamped, or assigned again.
    TaskGone,
}

/// The Voice API's recordings, for enforcement (SPEC section 8): where a call's recordings
/// are, and stopping, pausing and deleting them. Never starting or resuming one.
pub trait Recordings: Send + Sync + 'static {
    /// One line, safe to log, that names the API's answer (`Voice API answered 500 on stop`),
    /// and says whether the API refused the request or could not be had.
    type Error: VoiceFailure;

    /// The in-progress conference TaskRouter created for the task (its `FriendlyName` is the
    /// TaskSid), if there is one.
    fn conference_for_task(
        &self,
        account_sid: &str,
        task_sid: &str,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;

    /// The call SIDs of a conference's participants.
    fn participant_calls(
        &self,
        account_sid: &str,
        conference_sid: &str,
    ) -> impl Future<Output = Result<Vec<String>, Self::Error>> + Send;

    /// The recordings of a conference or of a call.
    fn list(
        &self,
        account_sid: &str,
        of: Recorded<'_>,
    ) -> impl Future<Output = Result<Vec<Recording>, Self::Error>> + Send;

    /// Stops a recording in progress or paused. A recording already gone (`404`) is done.
    fn stop(
        &self,
        account_sid: &str,
        of: Recorded<'_>,
        recording_sid: &str,
    ) -> impl Future<Output = Result<Done, Self::Error>> + Send;

    /// Pauses a recording in progress, skipping the pause (`PauseBehavior=skip`): what
    /// enforcement asks for when Twilio refuses a stop. A recording already gone (`404`) is
    /// done.
    fn pause(
        &self,
        account_sid: &str,
        of: Recorded<'_>,
        recording_sid: &str,
    ) -> impl Future<Output = Result<Done, Self::Error>> + Send;

    /// Deletes a stopped or finished recording. A recording already gone (`404`) is done.
    fn delete(
        &self,
        account_sid: &str,
        recording_sid: &str,
    ) -> impl Future<Output = Result<Done, Self::Error>> + Send;
}

/// What a failed Voice API request means for what enforcement does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Twilio answered a `4xx` other than `404` and `429`: it will not do this, however often
    /// it is asked (conference recordings have been seen to refuse `Status=stopped`).
    Refused,
    /// Anything else (a `5xx`, a `429`, no answer, a request that could not be sent): a
    /// later delivery may do better.
    Unavailable,
}

/// A Voice API error: one line, safe to log, and which [`Failure`] it is.
pub trait VoiceFailure: fmt::Display {
    fn failure(&self) -> Failure;
}

/// The ledger (SPEC section 10): each call's first decision, the SIDs tied to the call, and
/// every action on its recordings. Entries are keyed by SID; a first decision is written once
/// and never overwritten.
pub trait Ledger: Send + Sync + 'static {
    /// One line, safe to log.
    type Error: fmt::Display + Send;

    /// Writes `first` as the call's first decision unless it has one already, and ties its
    /// call and conference (when known) to it. Answers the first decision that stands:
    /// `first`, or the earlier one.
    fn first_decision(
        &self,
        first: &FirstDecision,
    ) -> impl Future<Output = Result<FirstDecision, Self::Error>> + Send;

    /// The call's first decision, when the ledger has one.
    fn decision(
        &self,
        task_sid: &str,
    ) -> impl Future<Output = Result<Option<FirstDecision>, Self::Error>> + Send;

    /// Appends actions on the call's recordings, tying each recording (and the conference,
    /// when known) to the call.
    fn record_actions(
        &self,
        task_sid: &str,
        conference_sid: Option<&str>,
        actions: &[RecordingAction],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// What the ledger knows of these conference and call SIDs, in at most one read request
    /// per [`LEDGER_BATCH`] SIDs. A SID it knows nothing of is absent from the answer.
    fn ties(
        &self,
        sids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Tie>, Self::Error>> + Send;

    /// The first decisions of these calls, batched as [`Ledger::ties`]; an undecided call is
    /// absent from the answer.
    fn verdicts(
        &self,
        task_sids: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Verdict>, Self::Error>> + Send;

    /// Ties a conference to its call (with the call's decision, when it has one), or to
    /// none (not a Flex call's), once the Voice API has said which, so that it is never
    /// asked again. A conference tied to a call stays tied to it.
    fn tie_conference(
        &self,
        conference_sid: &str,
        tie: &Tie,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// The whole account of the call a SID (`WT`, `CA`, `CF` or `RE`) belongs to.
    fn account(
        &self,
        sid: &str,
    ) -> impl Future<Output = Result<Option<CallAccount>, Self::Error>> + Send;
}

/// SIDs read per ledger request, at most (DynamoDB's `BatchGetItem` takes 100 keys).
pub const LEDGER_BATCH: usize = 100;

/// No ledger (`LEDGER_TABLE` unset): a type with no value, so a service built without one
/// can never call it.
#[derive(Debug)]
pub enum NoLedger {}

impl Ledger for NoLedger {
    type Error = std::convert::Infallible;

    async fn first_decision(&self, _: &FirstDecision) -> Result<FirstDecision, Self::Error> {
        match *self {}
    }
    async fn decision(&self, _: &str) -> Result<Option<FirstDecision>, Self::Error> {
        match *self {}
    }
    async fn record_actions(
        &self,
        _: &str,
        _: Option<&str>,
        _: &[RecordingAction],
    ) -> Result<(), Self::Error> {
        match *self {}
    }
    async fn ties(&self, _: &[String]) -> Result<HashMap<String, Tie>, Self::Error> {
        match *self {}
    }
    async fn verdicts(&self, _: &[String]) -> Result<HashMap<String, Verdict>, Self::Error> {
        match *self {}
    }
    async fn tie_conference(&self, _: &str, _: &Tie) -> Result<(), Self::Error> {
        match *self {}
    }
    async fn account(&self, _: &str) -> Result<Option<CallAccount>, Self::Error> {
        match *self {}
    }
}

/// Every recording of an account, as the Voice API lists them for a period
/// (`Recordings.json` with date filters), and the conferences they belong to: for
/// reconciliation (SPEC section 10).
pub trait RecordingArchive: Send + Sync + 'static {
    /// One line, safe to log, that names the API's answer.
    type Error: fmt::Display + Send;

    /// One page of the account's recordings created on the days from `from` to `to` (both
    /// inclusive, UTC dates), or the page a previous one named.
    fn page(
        &self,
        account_sid: &str,
        page: PageRef<'_>,
    ) -> impl Future<Output = Result<ArchivePage, Self::Error>> + Send;

    /// A conference's `FriendlyName` (the TaskSid, for a Flex call's); `None` when the Voice
    /// API has no such conference.
    fn conference_name(
        &self,
        account_sid: &str,
        conference_sid: &str,
    ) -> impl Future<Output = Result<Option<String>, Self::Error>> + Send;

    /// How long to wait before asking again after `error`, when it is worth asking again
    /// (`429`, with its `Retry-After`).
    fn retry_after(error: &Self::Error) -> Option<std::time::Duration>;
}

/// Which page of the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageRef<'a> {
    /// The first page of the recordings created on or after `from` and before `to` (UTC
    /// days: `DateCreated>` and `DateCreated<`).
    First { from: time::Date, to: time::Date },
    /// The page a previous page named (its `next_page_uri`).
    Next(&'a str),
}

/// A page of the archive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchivePage {
    pub recordings: Vec<ArchivedRecording>,
    /// The next page, when there is one.
    pub next: Option<String>,
    /// Entries that lacked a field the service needs (and so cannot be accounted for), with
    /// the field.
    pub unreadable: Vec<&'static str>,
}

/// A recording as the archive lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedRecording {
    pub sid: String,
    pub status: RecordingStatus,
    /// The API's word for the status.
    pub status_word: String,
    /// `source` (`StartConferenceRecordingAPI`, `RecordVerb`, ...).
    pub source: String,
    /// Unix time.
    pub date_created: i64,
    pub conference_sid: Option<String>,
    pub call_sid: Option<String>,
    pub media_url: Option<String>,
}

/// What a recording belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded<'a> {
    /// A conference (`CF...`).
    Conference(&'a str),
    /// A call (`CA...`): the customer's leg, or a participant's.
    Call(&'a str),
}

/// A recording, as the Voice API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// `RE...`.
    pub sid: String,
    pub status: RecordingStatus,
    /// Where its audio is (`media_url`): Twilio's host, or the customer's bucket.
    pub media_url: Option<String>,
    /// When it was made (`date_created`), Unix seconds, when the list said.
    pub date_created: Option<i64>,
}

/// A recording's `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordingStatus {
    InProgress,
    Paused,
    Stopped,
    Processing,
    Completed,
    Absent,
    /// A status the Voice API does not document (yet): left alone.
    Other,
}

impl RecordingStatus {
    /// The Voice API's word for it.
    pub fn parse(word: &str) -> RecordingStatus {
        match word {
            "in-progress" => RecordingStatus::InProgress,
            "paused" => RecordingStatus::Paused,
            "stopped" => RecordingStatus::Stopped,
            "processing" => RecordingStatus::Processing,
            "completed" => RecordingStatus::Completed,
            "absent" => RecordingStatus::Absent,
            _ => RecordingStatus::Other,
        }
    }
}

/// A stop or delete that is done: by this request, or before it (`404`: already gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    Now,
    AlreadyGone,
}

/// Recording media in the customer's own bucket (SPEC section 11): every copy of one object,
/// removed so that no version of the audio remains.
pub trait MediaStore: Send + Sync + 'static {
    /// Removes every version and delete marker of exactly this key, never one of another key
    /// that shares its prefix. An object that is not there is no error: `versions` is then 0.
    fn remove(&self, object: &S3Object)
    -> impl Future<Output = Result<Removed, MediaError>> + Send;
}

/// What a removal did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Versions and delete markers removed: 0 when the key had none, 1 for an object in an
    /// unversioned bucket.
    pub versions: usize,
}

/// Why media was not removed, in one line that is safe to log: the operation and S3's code
/// and message, never a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// S3 will not do it, however often it is asked: Object Lock, a bucket policy, a
    /// permission the service lacks, a bucket that does not exist. `reason` is S3's.
    #[error("S3 refused {operation}: {reason}")]
    Refused {
        operation: &'static str,
        reason: String,
    },
    /// No answer, or one that says to ask again later (a `5xx`, throttling): a later
    /// attempt may do better.
    #[error("S3 {operation}: {cause}")]
    Unavailable {
        operation: &'static str,
        cause: String,
    },
}

/// No media in S3 (`RECORDINGS_BUCKETS` unset): a type with no value, so a service built
/// without one can never call it.
#[derive(Debug)]
pub enum NoMedia {}

impl MediaStore for NoMedia {
    async fn remove(&self, _: &S3Object) -> Result<Removed, MediaError> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_per_line_and_never_shown() {
        let tokens = AuthTokens::parse(" old0123 \n\nnew4567\r\n").unwrap();
        assert_eq!(tokens.as_slice(), ["old0123", "new4567"]);
        assert_eq!(format!("{tokens:?}"), "AuthTokens(2 redacted)");
        assert!(AuthTokens::parse(" \n\t\n").is_err());
    }
}
