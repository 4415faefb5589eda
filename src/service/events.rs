//! The core's side of `/events` (SPEC section 8): verify a delivery (the Workspace Event
//! Callback's form signature, or an Event Streams body through its `bodySHA256`), read its
//! events, enforce each within the delivery's budget, and record every action.

use std::time::Instant;

use super::{
    App, Ledger, QueueDirectory, Recordings, Refusal, RulesSource, Signatures, TaskAnnotations,
    TaskRef, TokenSource, UnknownUrl,
};
use crate::enforcement::{ENFORCEMENT_BUDGET, Enforced, TASK_GONE};
use crate::events::{self, Delivered, EventError, TaskEvent};
use crate::metrics::{self, EnforcementRecord};
use crate::rules::record_outcome;
use crate::signature::{self, BodySignature};

/// One event delivery as a face hands it over.
pub struct EventsInbound<'a> {
    pub delivery: Delivery<'a>,
    /// `X-Twilio-Signature`; `Some("")` for a header that is not text.
    pub signature: Option<&'a str>,
    /// The URL the caller called, as the face rebuilt it (its query included).
    pub url: Result<String, UnknownUrl>,
    pub request_id: Option<&'a str>,
    pub started: Instant,
}

/// The two deliveries.
pub enum Delivery<'a> {
    /// A Workspace Event Callback: one event as form parameters, signed like a callback.
    Form(Vec<(String, String)>),
    /// An Event Streams webhook: one CloudEvent or a JSON array of them; the URL alone is
    /// signed.
    Json(&'a [u8]),
}

/// What became of a verified delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Events about calls that were enforced (whatever there was to do).
    pub enforced: usize,
    /// Events of other types, or about tasks that are not calls.
    pub ignored: usize,
    /// Events that could not be read; the others were still enforced.
    pub unreadable: usize,
    /// Events whose work is not done (a failure, or the budget ran out): the delivery is
    /// answered `503` so Event Streams sends it again.
    pub unfinished: usize,
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
    /// Verifies, reads and enforces one delivery. `Err` is a refusal: nothing was done.
    pub async fn events(&self, inbound: EventsInbound<'_>) -> Result<Settled, Refusal> {
        let (verified, loaded) = tokio::join!(self.verify_delivery(&inbound), self.rules.current());
        verified?;
        let read = match &inbound.delivery {
            // A form is one event: if it cannot be read, the delivery is refused.
            Delivery::Form(params) => vec![Ok(events::from_form(params)?)],
            Delivery::Json(body) => events::from_cloud_events(body).map_err(Refusal::Events)?,
        };
        // A delivery with an event for another account is refused whole, as a callback is.
        if let Some(account) = &self.settings.account_sid {
            let other = |event: &Result<Delivered, EventError>| match event {
                Ok(Delivered::Task(event)) => event.account_sid.as_deref() != Some(account),
                _ => false,
            };
            if read.iter().any(other) {
                return Err(Refusal::OtherAccount);
            }
        }
        let mut settled = Settled::default();
        let Some(enforcer) = &self.settings.enforcement else {
            // ENFORCEMENT=off: a signed delivery is acknowledged, and nothing else happens.
            settled.ignored = read.len();
            return Ok(settled);
        };
        let deadline = inbound.started + ENFORCEMENT_BUDGET;
        for event in read {
            let event = match event {
                Ok(Delivered::Task(event)) => event,
                Ok(Delivered::Ignored) => {
                    settled.ignored += 1;
                    continue;
                }
                Err(error) => {
                    tracing::warn!(error = %error, "event unreadable; the others are enforced");
                    settled.unreadable += 1;
                    continue;
                }
            };
            let queue_name = match &event.task_queue_name {
                Some(name) => Some(std::sync::Arc::from(name.as_str())),
                None => {
                    self.event_queue_name(&event, loaded.as_deref(), inbound.started)
                        .await
                }
            };
            let enforced = enforcer
                .enforce(
                    &event,
                    loaded.as_deref(),
                    queue_name.as_deref(),
                    self.settings.fail_policy,
                    deadline,
                    self.settings.ledger.as_ref(),
                )
                .await;
            match record(&event, &enforced, inbound.request_id, inbound.started) {
                Outcome::NotACall => settled.ignored += 1,
                Outcome::Done => settled.enforced += 1,
                Outcome::Unfinished => {
                    settled.enforced += 1;
                    settled.unfinished += 1;
                }
            }
        }
        Ok(settled)
    }

    /// The queue's name from the queue directory, only when the rules name queues.
    async fn event_queue_name(
        &self,
        event: &TaskEvent,
        loaded: Option<&crate::ports::LoadedRules>,
        started: Instant,
    ) -> Option<std::sync::Arc<str>> {
        if !loaded.is_some_and(|l| l.rules.names_queues()) {
            return None;
        }
        let task = TaskRef {
            task_sid: &event.task_sid,
            account_sid: event.account_sid.as_deref(),
            workspace_sid: event.workspace_sid.as_deref(),
            queue_sid: event.task_queue_sid.as_deref(),
        };
        self.queue_name(task, started).await
    }

    /// The signature of either delivery, against `PUBLIC_EVENTS_URL` when it is set.
    async fn verify_delivery(&self, inbound: &EventsInbound<'_>) -> Result<(), Refusal> {
        let Signatures::Enforce { tokens, .. } = &self.settings.signatures else {
            return Ok(());
        };
        let signature = inbound.signature.ok_or(Refusal::SignatureMissing)?;
        let tokens = tokens.current().await.ok_or(Refusal::TokensUnavailable)?;
        let called = inbound.url.as_ref().ok();
        match &inbound.delivery {
            Delivery::Form(params) => {
                let url = match (&self.settings.public_events_url, called) {
                    (Some(url), _) => url.as_str(),
                    (None, Some(url)) => url.as_str(),
                    (None, None) => return Err(Refusal::SignatureInvalid),
                };
                if signature::is_valid(tokens.as_slice(), url, params, signature) {
                    Ok(())
                } else {
                    Err(Refusal::SignatureInvalid)
                }
            }
            Delivery::Json(body) => {
                let url = match (&self.settings.public_events_url, called) {
                    (Some(public), Some(called)) => with_body_hash(public, called),
                    (Some(_), None) => return Err(Refusal::SignatureInvalid),
                    (None, Some(called)) => Some(called.clone()),
                    (None, None) => return Err(Refusal::SignatureInvalid),
                };
                let Some(url) = url else {
                    return Err(Refusal::BodyUnsigned);
                };
                match signature::check_with_body(tokens.as_slice(), &url, body, signature) {
                    BodySignature::Valid => Ok(()),
                    BodySignature::NoBodyHash => Err(Refusal::BodyUnsigned),
                    BodySignature::BodyMismatch => Err(Refusal::BodyMismatch),
                    BodySignature::Invalid => Err(Refusal::SignatureInvalid),
                }
            }
        }
    }
}

/// `PUBLIC_EVENTS_URL` with the called URL's `bodySHA256` added (with `?`, or `&` when it
/// already has a query); `None` when the called URL has none.
fn with_body_hash(public: &str, called: &str) -> Option<String> {
    let query = called.split_once('?')?.1;
    let hash = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "bodySHA256")?
        .1;
    let joiner = if public.contains('?') { '&' } else { '?' };
    Some(format!("{public}{joiner}bodySHA256={hash}"))
}

/// How one event ended, for the delivery's answer.
enum Outcome {
    NotACall,
    Done,
    Unfinished,
}

/// Writes one `enforcement` line per action (none for an event with nothing to do).
fn record(
    event: &TaskEvent,
    enforced: &Enforced,
    request_id: Option<&str>,
    started: Instant,
) -> Outcome {
    let line = |action: &str,
                first: &str,
                now: &crate::rules::Decision,
                conference: Option<&str>,
                recording: Option<&str>,
                cause: Option<&str>,
                media: Option<&crate::enforcement::MediaDeleted>| {
        metrics::enforcement(&EnforcementRecord {
            task_sid: &event.task_sid,
            reservation_sid: event.reservation_sid.as_deref(),
            conference_sid: conference,
            recording_sid: recording,
            event_type: event.kind.as_str(),
            action,
            first,
            now: now.outcome(),
            rule: now.reason().rule().map(|r| r.to_string()),
            cause,
            bucket: media.map(|m| m.bucket.as_str()),
            key: media.map(|m| m.key.as_str()),
            versions: media.map(|m| m.versions),
            elapsed_ms: started.elapsed().as_millis() as u64,
            request_id,
        });
    };
    match enforced {
        Enforced::NotACall => Outcome::NotACall,
        Enforced::NoFirstDecision { now, cause } => {
            line("failed", "unknown", now, None, None, Some(cause), None);
            Outcome::Unfinished
        }
        Enforced::Call {
            first,
            now,
            actions,
            complete,
            task_gone,
        } => {
            // The audit shows a first decision that was never stamped.
            let unstamped = task_gone.then_some(TASK_GONE);
            for action in actions {
                line(
                    action.kind.as_str(),
                    record_outcome(*first),
                    now,
                    action.conference_sid.as_deref(),
                    action.recording_sid.as_deref(),
                    action.cause.as_deref().or(unstamped),
                    action.media.as_ref(),
                );
            }
            if *complete {
                Outcome::Done
            } else {
                Outcome::Unfinished
            }
        }
    }
}

impl From<EventError> for Refusal {
    fn from(error: EventError) -> Refusal {
        Refusal::Events(error)
    }
}

#[cfg(test)]
mod tests {
    use super::with_body_hash;

    #[test]
    fn the_public_events_url_takes_the_called_urls_body_hash() {
        let called = "https://abc.execute-api.example.com/events?bodySHA256=00ff&x=1";
        assert_eq!(
            with_body_hash("https://calls.example.com/events", called).as_deref(),
            Some("https://calls.example.com/events?bodySHA256=00ff")
        );
        assert_eq!(
            with_body_hash("https://calls.example.com/events?tenant=a", called).as_deref(),
            Some("https://calls.example.com/events?tenant=a&bodySHA256=00ff")
        );
        assert_eq!(
            with_body_hash("https://calls.example.com/events", "https://h/events"),
            None
        );
    }
}
