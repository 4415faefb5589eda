//! A reconciliation's report: one row per recording, its outcome, and the three renderings
//! (`--format text|json|csv`). SIDs and decisions only, never caller data.

use std::fmt;

use serde::Serialize;
use serde_json::{Value, json};

use super::Window;
use crate::ledger;

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
                row.first.map_or("-", ledger::first_word),
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
            "first": self.first.map(ledger::first_word),
            "rule": self.rule,
            "outcome": self.outcome.map(Outcome::as_str),
            "cause": self.cause,
            "media": self.media,
        })
    }
}

/// A CSV cell (RFC 4180): quoted when it holds a comma, a quote or a line break; null empty.
pub(super) fn csv_cell(value: &Value) -> String {
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

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
