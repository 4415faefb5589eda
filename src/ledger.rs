//! The ledger's domain (SPEC section 10): each call's first decision and what became of its
//! recordings, as the ledger port ([`crate::ports::Ledger`]) keeps them. Pure: values and the
//! rules that relate them, no I/O.
//!
//! A call is its TaskSid. Its entry holds the first decision (written once, never
//! overwritten), its call and conference once known, and every action on its recordings. A
//! conference, a call or a recording is tied to the call by its SID, so that a recording
//! listed by the Voice API can be accounted for with one batched read.

use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;

/// What made a call's first decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    /// The assignment callback (either answer mode).
    Assignment,
    /// An enforcement event, from the rules in force (no decision had been made before).
    Event,
    /// The decision stamped on the task (annotate mode), copied by an enforcement event.
    Stamp,
}

impl DecidedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            DecidedBy::Assignment => "assignment",
            DecidedBy::Event => "event",
            DecidedBy::Stamp => "stamp",
        }
    }

    pub fn parse(word: &str) -> Option<DecidedBy> {
        [DecidedBy::Assignment, DecidedBy::Event, DecidedBy::Stamp]
            .into_iter()
            .find(|d| d.as_str() == word)
    }
}

/// A call's first decision, as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstDecision {
    /// `WT...`: the call's key.
    pub task_sid: String,
    pub record: bool,
    /// The reason, as decision lines say it (`excluded by queue (exclude_queues[0])`).
    pub reason: String,
    /// The deciding rule's path, when a rule decided.
    pub rule: Option<String>,
    /// The rules document's version, when it has one.
    pub rules_version: Option<i64>,
    /// When it was made, to the second (Unix time).
    pub decided_at: i64,
    pub decided_by: DecidedBy,
    /// The customer's call (`CA...`), when the task names it.
    pub call_sid: Option<String>,
    /// The call's conference (`CF...`), once known.
    pub conference_sid: Option<String>,
}

/// What was done to one recording, by enforcement or by `reconcile --fix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingAction {
    /// `RE...`.
    pub recording_sid: String,
    /// `stopped`, `paused`, `deleted`, `failed`, as the lines name it.
    pub action: String,
    /// When, to the second (Unix time).
    pub at: i64,
    pub by: ActedBy,
    /// Why it failed, when it did: the API's answer.
    pub cause: Option<String>,
}

/// Who acted on a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActedBy {
    Enforcement,
    Reconcile,
}

impl ActedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ActedBy::Enforcement => "enforcement",
            ActedBy::Reconcile => "reconcile",
        }
    }

    pub fn parse(word: &str) -> Option<ActedBy> {
        [ActedBy::Enforcement, ActedBy::Reconcile]
            .into_iter()
            .find(|a| a.as_str() == word)
    }
}

/// What the ledger knows of a conference or call SID: the call it belongs to, and that
/// call's first decision when the ledger has one (copied beside the tie, so a listed
/// recording is accounted for in one read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tie {
    /// Part of this Flex call.
    Task {
        task_sid: String,
        first: Option<Verdict>,
    },
    /// Looked at once and found to be no Flex call's (a conference not named after a task):
    /// never looked up again.
    NoTask,
}

/// The part of a first decision a recording's outcome needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub record: bool,
    pub rule: Option<String>,
}

impl From<&FirstDecision> for Verdict {
    fn from(first: &FirstDecision) -> Verdict {
        Verdict {
            record: first.record,
            rule: first.rule.clone(),
        }
    }
}

/// The ledger's whole account of one call, for `explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallAccount {
    pub task_sid: String,
    /// `None` when the call is known (a conference tied to it) but never decided.
    pub first: Option<FirstDecision>,
    pub call_sid: Option<String>,
    pub conference_sid: Option<String>,
    /// In the order they were written.
    pub actions: Vec<RecordingAction>,
}

/// The call's `call_sid` and `conference.sid` from its TaskAttributes, when they are SIDs:
/// what ties its recordings to it.
pub fn call_sids(attributes: Option<&serde_json::Value>) -> (Option<String>, Option<String>) {
    let sid = |value: Option<&serde_json::Value>, kind: &str| {
        value
            .and_then(serde_json::Value::as_str)
            .filter(|s| crate::sid::is_sid(s, kind))
            .map(str::to_owned)
    };
    let call = sid(attributes.and_then(|a| a.get("call_sid")), "CA");
    let conference = sid(
        attributes
            .and_then(|a| a.get("conference"))
            .and_then(|c| c.get("sid")),
        "CF",
    );
    (call, conference)
}

/// The Unix time at which an entry written at `now` expires (the TTL attribute).
pub fn expires_at(now: i64, retention_days: u32) -> i64 {
    now.saturating_add(i64::from(retention_days) * 86_400)
}

/// Now, to the second.
pub fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// A Unix time as RFC 3339 (`2026-12-01T09:30:00Z`).
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// `record-from-start` or `do-not-record`, as everything else names a decision.
pub fn outcome_word(record: bool) -> &'static str {
    crate::rules::record_outcome(record)
}

/// `record` or `do-not-record`: a first decision in reconciliation's report (SPEC section 10).
pub fn first_word(record: bool) -> &'static str {
    if record { "record" } else { "do-not-record" }
}

impl fmt::Display for DecidedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_read_back_as_written() {
        for by in [DecidedBy::Assignment, DecidedBy::Event, DecidedBy::Stamp] {
            assert_eq!(DecidedBy::parse(by.as_str()), Some(by));
        }
        for by in [ActedBy::Enforcement, ActedBy::Reconcile] {
            assert_eq!(ActedBy::parse(by.as_str()), Some(by));
        }
        assert_eq!(DecidedBy::parse("Assignment"), None);
    }

    #[test]
    fn entries_expire_after_the_retention() {
        assert_eq!(expires_at(1_000, 400), 1_000 + 400 * 86_400);
        assert_eq!(expires_at(i64::MAX - 5, 1), i64::MAX, "saturates");
        assert_eq!(rfc3339(1_764_580_200), "2025-12-01T09:10:00Z");
    }
}
