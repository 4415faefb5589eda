//! The service's ports: its I/O, named in the domain's words, each a small trait with a real
//! adapter in `sources` and an in-memory one in `service::memory`. Rules and tokens are
//! served by `sources::RulesSource` and `sources::tokens::TokenSource`.

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;

/// The queue directory: a TaskQueue's friendly name, for rules that name queues.
pub trait QueueDirectory: Send + Sync {
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
pub trait TaskAnnotations: Send + Sync {
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
