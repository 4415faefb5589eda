//! The service's ports: its I/O, named in the domain's words (rules, tokens, the queue
//! directory, task annotations), each a small trait with a real adapter in `sources` and an
//! in-memory one in `service::memory`. The values that cross them (a rules document in
//! force, the auth tokens) are defined here too, so the core needs nothing from `sources`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use serde_json::Value;

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
