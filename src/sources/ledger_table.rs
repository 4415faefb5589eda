//! The ledger in DynamoDB (`LEDGER_TABLE`, SPEC section 10): one table keyed by `sid` alone.
//!
//! - A call's entry, keyed by its TaskSid (`WT...`): `record`, `reason`, `rule`,
//!   `rules_version`, `decided_at`, `decided_by` (the first decision, written once with a
//!   condition and never overwritten), `call_sid`, `conference_sid`, and `actions` (a list,
//!   appended to).
//! - A tie, keyed by a conference's, call's or recording's SID: `task_sid` (or `no_task` for
//!   a conference that is no Flex call's), and for conferences and calls a copy of the call's
//!   `record` and `rule`: a first decision never changes, so the copy never goes stale, and a
//!   listed recording is accounted for with one batched read of its tie.
//!
//! Every item carries `expires_at` (Unix seconds), the table's TTL attribute. Keys are SIDs of
//! distinct prefixes, so the kinds never collide, and nothing else (no caller data) is kept.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure,
};

use crate::ledger::{
    self, ActedBy, CallAccount, DecidedBy, FirstDecision, RecordingAction, Tie, Verdict,
};
use crate::ports::{LEDGER_BATCH, Ledger};

/// The key [`LedgerTable::warm`] reads: not a SID (two letters and 32 hex digits), so no item
/// has it.
pub const WARM_UP_KEY: &str = "warm-up";

/// Connections [`LedgerTable::warm`] opens: a first reservation's write is two requests at
/// once (the decision, and the tie of the call its task names; the conference is not there
/// yet).
pub const WARM_CONNECTIONS: usize = 2;

/// Times a batch read asks again for the keys DynamoDB left unprocessed (throttling).
const UNPROCESSED_RETRIES: u32 = 5;

/// A ledger request that failed, in one line: the operation and DynamoDB's error code, never
/// an item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("DynamoDB {operation}: {cause}")]
pub struct LedgerError {
    pub operation: &'static str,
    pub cause: String,
}

impl LedgerError {
    fn from_sdk<E: ProvideErrorMetadata, R>(
        operation: &'static str,
        error: &SdkError<E, R>,
    ) -> LedgerError {
        let cause = match error {
            SdkError::ServiceError(service) => service
                .err()
                .code()
                .unwrap_or("an error without a code")
                .to_owned(),
            SdkError::TimeoutError(_) => "no answer in time".to_owned(),
            SdkError::DispatchFailure(_) => "could not be sent".to_owned(),
            SdkError::ResponseError(_) => "the answer could not be read".to_owned(),
            _ => "the request could not be made".to_owned(),
        };
        LedgerError { operation, cause }
    }

    fn unreadable(operation: &'static str, what: &'static str) -> LedgerError {
        LedgerError {
            operation,
            cause: format!("an item has no readable {what}"),
        }
    }
}

/// The ledger table, through a client on the shared AWS SDK configuration.
#[derive(Debug, Clone)]
pub struct LedgerTable {
    client: Client,
    table: String,
    retention_days: u32,
}

impl LedgerTable {
    pub fn new(
        config: &aws_config::SdkConfig,
        table: impl Into<String>,
        retention_days: u32,
    ) -> LedgerTable {
        LedgerTable {
            client: Client::new(config),
            table: table.into(),
            retention_days,
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn expires_at(&self) -> AttributeValue {
        number(ledger::expires_at(ledger::unix_now(), self.retention_days))
    }

    /// Ties a conference or call to the call, unless it is tied to another already (the
    /// first call wins), with a copy of the call's decision when there is one.
    async fn tie_to(
        &self,
        sid: &str,
        task_sid: &str,
        first: Option<&Verdict>,
    ) -> Result<(), LedgerError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("sid", text(sid))
            .condition_expression("attribute_not_exists(task_sid) OR task_sid = :task")
            .expression_attribute_values(":task", text(task_sid))
            .expression_attribute_values(":expires", self.expires_at());
        let mut set = vec!["task_sid = :task", "expires_at = :expires"];
        if let Some(first) = first {
            set.push("#record = :record");
            update = update
                .expression_attribute_names("#record", "record")
                .expression_attribute_values(":record", AttributeValue::Bool(first.record));
            if let Some(rule) = &first.rule {
                set.push("#rule = :rule");
                update = update
                    .expression_attribute_names("#rule", "rule")
                    .expression_attribute_values(":rule", text(rule));
            }
        }
        match update
            .update_expression(format!("SET {}", set.join(", ")))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if is_condition_failed(&error) => Ok(()),
            Err(error) => Err(LedgerError::from_sdk("UpdateItem", &error)),
        }
    }

    /// Opens the connections the first callback's write will use, so that callback does not
    /// wait for TCP and TLS handshakes: [`WARM_CONNECTIONS`] `GetItem`s at once (an action the
    /// function has) of a key no item has, since no SID is [`WARM_UP_KEY`]. Answers whether
    /// the table was reached, which also tells at start that the table is there and that the
    /// role may read it.
    pub async fn warm(&self) -> Result<(), LedgerError> {
        let read = || {
            self.client
                .get_item()
                .table_name(&self.table)
                .key("sid", text(WARM_UP_KEY))
                .projection_expression("sid")
                .send()
        };
        let answers = futures_util::future::join_all((0..WARM_CONNECTIONS).map(|_| read())).await;
        match answers.into_iter().find_map(Result::err) {
            Some(error) => Err(LedgerError::from_sdk("GetItem", &error)),
            None => Ok(()),
        }
    }

    async fn get(&self, sid: &str) -> Result<Option<HashMap<String, AttributeValue>>, LedgerError> {
        let answer = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("sid", text(sid))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| LedgerError::from_sdk("GetItem", &e))?;
        Ok(answer.item)
    }

    /// The items of these keys, in batches of [`LEDGER_BATCH`], with only `attributes`.
    async fn batch_get(
        &self,
        sids: &[String],
        attributes: &str,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, LedgerError> {
        let mut items = Vec::with_capacity(sids.len());
        for chunk in sids.chunks(LEDGER_BATCH) {
            let keys: Vec<_> = chunk
                .iter()
                .map(|sid| HashMap::from([("sid".to_owned(), text(sid))]))
                .collect();
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .projection_expression(attributes);
            // Reserved words are named through placeholders, and DynamoDB refuses a
            // placeholder the projection does not use.
            for (placeholder, name) in [("#record", "record"), ("#rule", "rule")] {
                if attributes.contains(placeholder) {
                    request = request.expression_attribute_names(placeholder, name);
                }
            }
            let mut request = request
                .build()
                .map_err(|_| LedgerError::unreadable("BatchGetItem", "key"))?;
            for attempt in 0..=UNPROCESSED_RETRIES {
                let answer = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request.clone())
                    .send()
                    .await
                    .map_err(|e| LedgerError::from_sdk("BatchGetItem", &e))?;
                if let Some(mut found) = answer.responses
                    && let Some(found) = found.remove(&self.table)
                {
                    items.extend(found);
                }
                match answer
                    .unprocessed_keys
                    .and_then(|mut left| left.remove(&self.table))
                    .filter(|left| !left.keys().is_empty())
                {
                    None => break,
                    Some(_) if attempt == UNPROCESSED_RETRIES => {
                        return Err(LedgerError {
                            operation: "BatchGetItem",
                            cause: "keys left unprocessed (throttled)".into(),
                        });
                    }
                    Some(left) => {
                        request = left;
                        let backoff = 50u64 << attempt;
                        tokio::time::sleep(std::time::Duration::from_millis(backoff)).await;
                    }
                }
            }
        }
        Ok(items)
    }
}

impl Ledger for LedgerTable {
    type Error = LedgerError;

    async fn first_decision(&self, first: &FirstDecision) -> Result<FirstDecision, LedgerError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("sid", text(&first.task_sid))
            .condition_expression("attribute_not_exists(#record)")
            .expression_attribute_names("#record", "record")
            .expression_attribute_values(":record", AttributeValue::Bool(first.record))
            .expression_attribute_values(":reason", text(&first.reason))
            .expression_attribute_values(":at", number(first.decided_at))
            .expression_attribute_values(":by", text(first.decided_by.as_str()))
            .expression_attribute_values(":expires", self.expires_at())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let mut set = vec![
            "#record = :record",
            "reason = :reason",
            "decided_at = :at",
            "decided_by = :by",
            "expires_at = :expires",
        ];
        if let Some(rule) = &first.rule {
            set.push("#rule = :rule");
            update = update
                .expression_attribute_names("#rule", "rule")
                .expression_attribute_values(":rule", text(rule));
        }
        if let Some(version) = first.rules_version {
            set.push("rules_version = :version");
            update = update.expression_attribute_values(":version", number(version));
        }
        if let Some(call) = &first.call_sid {
            set.push("call_sid = if_not_exists(call_sid, :call)");
            update = update.expression_attribute_values(":call", text(call));
        }
        if let Some(conference) = &first.conference_sid {
            set.push("conference_sid = if_not_exists(conference_sid, :conference)");
            update = update.expression_attribute_values(":conference", text(conference));
        }
        // The call's and conference's ties are written beside the decision, with this
        // decision's copy: the answer waits for one round trip, not two. When an earlier
        // decision stands instead, they are written again below with its copy, after these.
        let ours = Verdict::from(first);
        let sids: Vec<&String> = [&first.call_sid, &first.conference_sid]
            .into_iter()
            .flatten()
            .collect();
        let ties = futures_util::future::join_all(
            sids.iter()
                .map(|sid| self.tie_to(sid, &first.task_sid, Some(&ours))),
        );
        let written = update
            .update_expression(format!("SET {}", set.join(", ")))
            .send();
        let (written, tied) = futures_util::future::join(written, ties).await;
        let standing = match written {
            Ok(_) => {
                tied.into_iter().collect::<Result<Vec<()>, _>>()?;
                return Ok(first.clone());
            }
            Err(error) if is_condition_failed(&error) => {
                let earlier = match condition_item(&error) {
                    Some(item) => Some(item),
                    None => self.get(&first.task_sid).await?,
                };
                earlier
                    .as_ref()
                    .and_then(|item| read_first(&first.task_sid, item))
                    .ok_or_else(|| LedgerError::unreadable("UpdateItem", "first decision"))?
            }
            Err(error) => return Err(LedgerError::from_sdk("UpdateItem", &error)),
        };
        let verdict = Verdict::from(&standing);
        for sid in sids {
            self.tie_to(sid, &first.task_sid, Some(&verdict)).await?;
        }
        Ok(standing)
    }

    async fn decision(&self, task_sid: &str) -> Result<Option<FirstDecision>, LedgerError> {
        let item = self.get(task_sid).await?;
        Ok(item.as_ref().and_then(|item| read_first(task_sid, item)))
    }

    async fn record_actions(
        &self,
        task_sid: &str,
        conference_sid: Option<&str>,
        actions: &[RecordingAction],
    ) -> Result<(), LedgerError> {
        if actions.is_empty() {
            return Ok(());
        }
        let listed: Vec<AttributeValue> = actions.iter().map(action_value).collect();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("sid", text(task_sid))
            .expression_attribute_values(":new", AttributeValue::L(listed))
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":expires", self.expires_at());
        let mut set = vec![
            "actions = list_append(if_not_exists(actions, :none), :new)",
            "expires_at = if_not_exists(expires_at, :expires)",
        ];
        if let Some(conference) = conference_sid {
            set.push("conference_sid = if_not_exists(conference_sid, :conference)");
            update = update.expression_attribute_values(":conference", text(conference));
        }
        update
            .update_expression(format!("SET {}", set.join(", ")))
            .send()
            .await
            .map_err(|e| LedgerError::from_sdk("UpdateItem", &e))?;
        let mut recordings: Vec<&str> = actions.iter().map(|a| a.recording_sid.as_str()).collect();
        recordings.sort_unstable();
        recordings.dedup();
        for sid in recordings.into_iter().chain(conference_sid) {
            self.tie_to(sid, task_sid, None).await?;
        }
        Ok(())
    }

    async fn ties(&self, sids: &[String]) -> Result<HashMap<String, Tie>, LedgerError> {
        let items = self
            .batch_get(sids, "sid, task_sid, no_task, #record, #rule")
            .await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let sid = string(item, "sid")?;
                let tie = if item.get("no_task").is_some() {
                    Tie::NoTask
                } else {
                    Tie::Task {
                        task_sid: string(item, "task_sid")?,
                        first: read_verdict(item),
                    }
                };
                Some((sid, tie))
            })
            .collect())
    }

    async fn verdicts(
        &self,
        task_sids: &[String],
    ) -> Result<HashMap<String, Verdict>, LedgerError> {
        let items = self.batch_get(task_sids, "sid, #record, #rule").await?;
        Ok(items
            .iter()
            .filter_map(|item| Some((string(item, "sid")?, read_verdict(item)?)))
            .collect())
    }

    async fn tie_conference(&self, conference_sid: &str, tie: &Tie) -> Result<(), LedgerError> {
        match tie {
            Tie::Task { task_sid, first } => {
                self.tie_to(conference_sid, task_sid, first.as_ref()).await
            }
            Tie::NoTask => {
                let written = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("sid", text(conference_sid))
                    .condition_expression("attribute_not_exists(task_sid)")
                    .update_expression("SET no_task = :yes, expires_at = :expires")
                    .expression_attribute_values(":yes", AttributeValue::Bool(true))
                    .expression_attribute_values(":expires", self.expires_at())
                    .send()
                    .await;
                match written {
                    Ok(_) => Ok(()),
                    Err(error) if is_condition_failed(&error) => Ok(()),
                    Err(error) => Err(LedgerError::from_sdk("UpdateItem", &error)),
                }
            }
        }
    }

    async fn account(&self, sid: &str) -> Result<Option<CallAccount>, LedgerError> {
        let task_sid = if sid.starts_with("WT") {
            sid.to_owned()
        } else {
            let Some(tie) = self.get(sid).await? else {
                return Ok(None);
            };
            match string(&tie, "task_sid") {
                Some(task_sid) => task_sid,
                None => return Ok(None),
            }
        };
        let Some(item) = self.get(&task_sid).await? else {
            // Tied, but never decided nor acted on.
            return Ok((task_sid != sid).then(|| CallAccount {
                task_sid,
                first: None,
                call_sid: None,
                conference_sid: None,
                actions: Vec::new(),
            }));
        };
        let actions = match item.get("actions") {
            Some(AttributeValue::L(list)) => list.iter().filter_map(read_action).collect(),
            _ => Vec::new(),
        };
        Ok(Some(CallAccount {
            first: read_first(&task_sid, &item),
            call_sid: string(&item, "call_sid"),
            conference_sid: string(&item, "conference_sid"),
            task_sid,
            actions,
        }))
    }
}

fn text(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn number(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn string(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name)?.as_s().ok().cloned()
}

fn integer(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)?.as_n().ok()?.parse().ok()
}

fn read_verdict(item: &HashMap<String, AttributeValue>) -> Option<Verdict> {
    Some(Verdict {
        record: *item.get("record")?.as_bool().ok()?,
        rule: string(item, "rule"),
    })
}

fn read_first(task_sid: &str, item: &HashMap<String, AttributeValue>) -> Option<FirstDecision> {
    Some(FirstDecision {
        task_sid: task_sid.to_owned(),
        record: *item.get("record")?.as_bool().ok()?,
        reason: string(item, "reason")?,
        rule: string(item, "rule"),
        rules_version: integer(item, "rules_version"),
        decided_at: integer(item, "decided_at")?,
        decided_by: DecidedBy::parse(&string(item, "decided_by")?)?,
        call_sid: string(item, "call_sid"),
        conference_sid: string(item, "conference_sid"),
    })
}

fn action_value(action: &RecordingAction) -> AttributeValue {
    let mut fields = HashMap::from([
        ("recording_sid".to_owned(), text(&action.recording_sid)),
        ("action".to_owned(), text(&action.action)),
        ("at".to_owned(), number(action.at)),
        ("by".to_owned(), text(action.by.as_str())),
    ]);
    if let Some(cause) = &action.cause {
        fields.insert("cause".to_owned(), text(cause));
    }
    AttributeValue::M(fields)
}

fn read_action(value: &AttributeValue) -> Option<RecordingAction> {
    let fields = value.as_m().ok()?;
    Some(RecordingAction {
        recording_sid: string(fields, "recording_sid")?,
        action: string(fields, "action")?,
        at: integer(fields, "at")?,
        by: ActedBy::parse(&string(fields, "by")?)?,
        cause: string(fields, "cause"),
    })
}

fn is_condition_failed<R>(error: &SdkError<UpdateItemError, R>) -> bool {
    matches!(
        error.as_service_error(),
        Some(UpdateItemError::ConditionalCheckFailedException(_))
    )
}

/// The item a failed condition found, when DynamoDB returned it.
fn condition_item<R>(
    error: &SdkError<UpdateItemError, R>,
) -> Option<HashMap<String, AttributeValue>> {
    match error.as_service_error() {
        Some(UpdateItemError::ConditionalCheckFailedException(failed)) => failed.item.clone(),
        _ => None,
    }
}
