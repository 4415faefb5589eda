//! TaskRouter events, as enforcement (SPEC section 8) receives them: a Workspace Event
//! Callback (one event as form parameters, like an assignment callback) or an Event Streams
//! webhook delivery: a JSON array of CloudEvents from a sink that batches, one CloudEvent
//! object from a sink that does not, each with its fields in `data.payload`.
//! Pure: parameters or bytes in, events out. Signatures are checked before any of this.

use serde_json::{Map, Value};

use crate::sid::is_sid;
use crate::taskrouter::{CallbackError, single};

/// The prefix of a TaskRouter CloudEvent's `type`.
const CLOUD_EVENT_PREFIX: &str = "com.twilio.taskrouter.";
/// The most events one Event Streams delivery may carry; more is refused whole.
pub const MAX_EVENTS_PER_DELIVERY: usize = 1_000;

/// The event types enforcement acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    ReservationAccepted,
    ReservationWrapup,
    ReservationCompleted,
    TaskUpdated,
    TaskTransferInitiated,
    TaskWrapup,
    TaskCompleted,
}

impl EventKind {
    const ALL: [EventKind; 7] = [
        EventKind::ReservationAccepted,
        EventKind::ReservationWrapup,
        EventKind::ReservationCompleted,
        EventKind::TaskUpdated,
        EventKind::TaskTransferInitiated,
        EventKind::TaskWrapup,
        EventKind::TaskCompleted,
    ];

    /// TaskRouter's name for it (`EventType`, and the end of the CloudEvent `type`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ReservationAccepted => "reservation.accepted",
            EventKind::ReservationWrapup => "reservation.wrapup",
            EventKind::ReservationCompleted => "reservation.completed",
            EventKind::TaskUpdated => "task.updated",
            EventKind::TaskTransferInitiated => "task.transfer-initiated",
            EventKind::TaskWrapup => "task.wrapup",
            EventKind::TaskCompleted => "task.completed",
        }
    }

    /// The enforced type of that name; `None` for any other event type.
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
    }
}

/// One event about a task, with the fields enforcement reads. SIDs are checked for shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEvent {
    pub kind: EventKind,
    pub task_sid: String,
    /// TaskAttributes as sent: a JSON string.
    pub task_attributes: String,
    pub account_sid: Option<String>,
    pub workspace_sid: Option<String>,
    pub reservation_sid: Option<String>,
    pub task_queue_sid: Option<String>,
    /// The queue's friendly name, which events often carry (callbacks never do).
    pub task_queue_name: Option<String>,
    /// `TaskChannelUniqueName` (`voice`, `chat`, `sms`...).
    pub task_channel: Option<String>,
}

/// What one delivered event is to enforcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// An enforced event type about a task.
    Task(TaskEvent),
    /// Another event type: acknowledged, nothing done.
    Ignored,
}

/// Why an event, or a whole delivery, cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error(transparent)]
    Form(#[from] CallbackError),
    #[error("the body is not JSON")]
    NotJson,
    #[error("the body is neither a CloudEvent (a JSON object) nor a JSON array of CloudEvents")]
    NotEvents,
    #[error("more than {MAX_EVENTS_PER_DELIVERY} events in one delivery")]
    TooManyEvents,
    #[error("an event is not a JSON object")]
    NotAnObject,
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{0} is not a string")]
    NotText(&'static str),
    #[error("{field} is not a {kind} SID ({prefix} followed by 32 lowercase hex digits)")]
    NotASid {
        field: &'static str,
        kind: &'static str,
        prefix: &'static str,
    },
}

/// A field of an event: its form name, its CloudEvent payload name, and the SID kind it
/// holds, if any.
struct Field {
    form: &'static str,
    payload: &'static str,
    sid: Option<(&'static str, &'static str)>,
}

const TASK_SID: Field = sid_field("TaskSid", "task_sid", "Task", "WT");
const TASK_ATTRIBUTES: Field = text_field("TaskAttributes", "task_attributes");
const ACCOUNT_SID: Field = sid_field("AccountSid", "account_sid", "Account", "AC");
const WORKSPACE_SID: Field = sid_field("WorkspaceSid", "workspace_sid", "Workspace", "WS");
const RESERVATION_SID: Field = sid_field("ReservationSid", "reservation_sid", "Reservation", "WR");
const TASK_QUEUE_SID: Field = sid_field("TaskQueueSid", "task_queue_sid", "TaskQueue", "WQ");
const TASK_QUEUE_NAME: Field = text_field("TaskQueueName", "task_queue_name");
const TASK_CHANNEL: Field = text_field("TaskChannelUniqueName", "task_channel_unique_name");

const fn sid_field(
    form: &'static str,
    payload: &'static str,
    kind: &'static str,
    prefix: &'static str,
) -> Field {
    Field {
        form,
        payload,
        sid: Some((kind, prefix)),
    }
}

const fn text_field(form: &'static str, payload: &'static str) -> Field {
    Field {
        form,
        payload,
        sid: None,
    }
}

impl Field {
    /// The value, checked when it is a SID.
    fn checked(
        &self,
        value: Option<&str>,
        name: &'static str,
    ) -> Result<Option<String>, EventError> {
        match (value, self.sid) {
            (Some(value), Some((kind, prefix))) if !is_sid(value, prefix) => {
                Err(EventError::NotASid {
                    field: name,
                    kind,
                    prefix,
                })
            }
            (value, _) => Ok(value.map(str::to_owned)),
        }
    }
}

/// A Workspace Event Callback's parameters, each documented field at most once.
pub fn from_form(params: &[(String, String)]) -> Result<Delivered, EventError> {
    let event_type = single(params, "EventType")?.ok_or(EventError::Missing("EventType"))?;
    let Some(kind) = EventKind::from_name(event_type) else {
        return Ok(Delivered::Ignored);
    };
    let field = |field: &Field| -> Result<Option<String>, EventError> {
        field.checked(single(params, field.form)?, field.form)
    };
    read(kind, field, |field| field.form)
}

/// An Event Streams delivery: a JSON array of CloudEvents (a sink that batches), or one
/// CloudEvent object (a sink that does not). The body as a whole must be readable; each event
/// is then read on its own, so one bad event leaves the others.
pub fn from_cloud_events(body: &[u8]) -> Result<Vec<Result<Delivered, EventError>>, EventError> {
    let events: Value = serde_json::from_slice(body).map_err(|_| EventError::NotJson)?;
    match events {
        Value::Array(events) if events.len() > MAX_EVENTS_PER_DELIVERY => {
            Err(EventError::TooManyEvents)
        }
        Value::Array(events) => Ok(events.iter().map(from_cloud_event).collect()),
        event @ Value::Object(_) => Ok(vec![from_cloud_event(&event)]),
        _ => Err(EventError::NotEvents),
    }
}

/// One CloudEvent.
pub fn from_cloud_event(event: &Value) -> Result<Delivered, EventError> {
    let event = event.as_object().ok_or(EventError::NotAnObject)?;
    let event_type = match event.get("type") {
        Some(Value::String(text)) => text,
        Some(_) => return Err(EventError::NotText("type")),
        None => return Err(EventError::Missing("type")),
    };
    let Some(kind) = event_type
        .strip_prefix(CLOUD_EVENT_PREFIX)
        .and_then(EventKind::from_name)
    else {
        return Ok(Delivered::Ignored);
    };
    let payload = event
        .get("data")
        .and_then(|data| data.get("payload"))
        .and_then(Value::as_object)
        .ok_or(EventError::Missing("data.payload"))?;
    let field = |field: &Field| -> Result<Option<String>, EventError> {
        field.checked(payload_text(payload, field.payload)?, field.payload)
    };
    read(kind, field, |field| field.payload)
}

/// A payload field that must be a string when present (`null` counts as absent).
fn payload_text<'a>(
    payload: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, EventError> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(EventError::NotText(name)),
    }
}

/// The event's fields, read through `field` and named in errors by `name`.
fn read(
    kind: EventKind,
    field: impl Fn(&Field) -> Result<Option<String>, EventError>,
    name: impl Fn(&Field) -> &'static str,
) -> Result<Delivered, EventError> {
    let required = |f: &Field| field(f)?.ok_or(EventError::Missing(name(f)));
    Ok(Delivered::Task(TaskEvent {
        kind,
        task_sid: required(&TASK_SID)?,
        task_attributes: required(&TASK_ATTRIBUTES)?,
        account_sid: field(&ACCOUNT_SID)?,
        workspace_sid: field(&WORKSPACE_SID)?,
        reservation_sid: field(&RESERVATION_SID)?,
        task_queue_sid: field(&TASK_QUEUE_SID)?,
        task_queue_name: field(&TASK_QUEUE_NAME)?,
        task_channel: field(&TASK_CHANNEL)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TASK: &str = "WT0123456789abcdef0123456789abcdef";
    const RESERVATION: &str = "WR0123456789abcdef0123456789abcdef";
    const QUEUE: &str = "WQ0123456789abcdef0123456789abcdef";
    const WORKSPACE: &str = "WS0123456789abcdef0123456789abcdef";
    const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
    const ATTRIBUTES: &str = r#"{"call_sid":"CA0123456789abcdef0123456789abcdef"}"#;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn accepted_form() -> Vec<(String, String)> {
        form(&[
            ("EventType", "reservation.accepted"),
            ("AccountSid", ACCOUNT),
            ("WorkspaceSid", WORKSPACE),
            ("ResourceType", "reservation"),
            ("ResourceSid", RESERVATION),
            ("TaskSid", TASK),
            ("ReservationSid", RESERVATION),
            ("TaskAttributes", ATTRIBUTES),
            ("TaskQueueSid", QUEUE),
            ("TaskQueueName", "Payments"),
            ("TaskChannelUniqueName", "voice"),
            ("WorkerSid", "WK0123456789abcdef0123456789abcdef"),
        ])
    }

    fn expected(kind: EventKind) -> Delivered {
        Delivered::Task(TaskEvent {
            kind,
            task_sid: TASK.into(),
            task_attributes: ATTRIBUTES.into(),
            account_sid: Some(ACCOUNT.into()),
            workspace_sid: Some(WORKSPACE.into()),
            reservation_sid: Some(RESERVATION.into()),
            task_queue_sid: Some(QUEUE.into()),
            task_queue_name: Some("Payments".into()),
            task_channel: Some("voice".into()),
        })
    }

    fn cloud_event(kind: &str) -> Value {
        json!({
            "specversion": "1.0",
            "type": format!("com.twilio.taskrouter.{kind}"),
            "source": format!("/v1/Workspaces/{WORKSPACE}/Tasks/{TASK}"),
            "id": "EZ0123456789abcdef0123456789abcdef",
            "datacontenttype": "application/json",
            "time": "2026-12-04T10:00:00.000Z",
            "data": {
                "name": kind,
                "payload": {
                    "account_sid": ACCOUNT,
                    "workspace_sid": WORKSPACE,
                    "task_sid": TASK,
                    "reservation_sid": RESERVATION,
                    "task_attributes": ATTRIBUTES,
                    "task_queue_sid": QUEUE,
                    "task_queue_name": "Payments",
                    "task_channel_unique_name": "voice",
                    "worker_sid": "WK0123456789abcdef0123456789abcdef",
                }
            }
        })
    }

    #[test]
    fn every_enforced_type_is_named_as_taskrouter_names_it() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_name(kind.as_str()), Some(kind));
        }
        for other in [
            "reservation.created",
            "task.created",
            "worker.activity.update",
            "",
        ] {
            assert_eq!(EventKind::from_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_workspace_event_callback_is_read_from_its_form() {
        assert_eq!(
            from_form(&accepted_form()),
            Ok(expected(EventKind::ReservationAccepted))
        );
        let mut other = accepted_form();
        other[0].1 = "reservation.created".into();
        assert_eq!(from_form(&other), Ok(Delivered::Ignored));
    }

    #[test]
    fn a_form_with_a_missing_repeated_or_forged_field_is_refused_without_echoing_it() {
        let without = |name: &str| {
            let mut params = accepted_form();
            params.retain(|(k, _)| k != name);
            from_form(&params)
        };
        for name in ["EventType", "TaskSid", "TaskAttributes"] {
            assert_eq!(without(name), Err(EventError::Missing(name)), "{name}");
        }
        // The other fields are optional.
        assert!(matches!(without("TaskQueueName"), Ok(Delivered::Task(_))));

        let mut twice = accepted_form();
        twice.push(("TaskSid".into(), TASK.into()));
        assert_eq!(
            from_form(&twice),
            Err(EventError::Form(CallbackError::Repeated("TaskSid")))
        );

        for (field, forged) in [
            ("TaskSid", "+14155550100"),
            ("ReservationSid", "WT0123456789abcdef0123456789abcdef"),
            ("TaskQueueSid", "Payments"),
            ("AccountSid", "AC1"),
        ] {
            let mut params = accepted_form();
            for (k, v) in &mut params {
                if k == field {
                    *v = forged.into();
                }
            }
            let error = from_form(&params).unwrap_err();
            assert!(
                matches!(error, EventError::NotASid { .. }),
                "{field}: {error}"
            );
            let text = error.to_string();
            assert!(text.contains(field) && !text.contains(forged), "{text}");
        }
    }

    #[test]
    fn an_event_streams_delivery_reads_each_event_on_its_own() {
        let mut no_payload = cloud_event("task.updated");
        no_payload["data"] = json!({"name": "task.updated"});
        let mut numeric = cloud_event("task.completed");
        numeric["data"]["payload"]["task_sid"] = json!(42);
        let mut nulls = cloud_event("task.wrapup");
        nulls["data"]["payload"]["task_queue_name"] = Value::Null;
        let body = json!([
            cloud_event("reservation.accepted"),
            cloud_event("worker.activity.update"),
            json!({"type": "com.twilio.studio.flow.execution.started"}),
            no_payload,
            numeric,
            "not an event",
            json!({"type": 7}),
            nulls,
        ])
        .to_string();
        let read = from_cloud_events(body.as_bytes()).unwrap();
        assert_eq!(read[0], Ok(expected(EventKind::ReservationAccepted)));
        assert_eq!(read[1], Ok(Delivered::Ignored));
        assert_eq!(read[2], Ok(Delivered::Ignored));
        assert_eq!(read[3], Err(EventError::Missing("data.payload")));
        assert_eq!(read[4], Err(EventError::NotText("task_sid")));
        assert_eq!(read[5], Err(EventError::NotAnObject));
        assert_eq!(read[6], Err(EventError::NotText("type")));
        let Ok(Delivered::Task(wrapup)) = &read[7] else {
            panic!("{:?}", read[7]);
        };
        assert_eq!(wrapup.kind, EventKind::TaskWrapup);
        assert_eq!(wrapup.task_queue_name, None);
    }

    #[test]
    fn a_sink_without_batching_delivers_one_event_as_an_object() {
        let one = cloud_event("reservation.accepted").to_string();
        assert_eq!(
            from_cloud_events(one.as_bytes()),
            Ok(vec![Ok(expected(EventKind::ReservationAccepted))])
        );
        let other = cloud_event("worker.activity.update").to_string();
        assert_eq!(
            from_cloud_events(other.as_bytes()),
            Ok(vec![Ok(Delivered::Ignored)])
        );
        // An object that is no CloudEvent is one unreadable event, as it is in an array.
        assert_eq!(
            from_cloud_events(b"{}"),
            Ok(vec![Err(EventError::Missing("type"))])
        );
    }

    #[test]
    fn a_delivery_that_is_neither_an_event_nor_an_array_of_events_is_refused_whole() {
        for other in [&b"\"an event\""[..], b"42", b"null", b"true"] {
            assert_eq!(from_cloud_events(other), Err(EventError::NotEvents));
        }
        for bad in [&b"["[..], b"", b"\xff\xfe", b"[1,]"] {
            assert_eq!(from_cloud_events(bad), Err(EventError::NotJson));
        }
        let many = format!("[{}]", vec!["{}"; MAX_EVENTS_PER_DELIVERY + 1].join(","));
        assert_eq!(
            from_cloud_events(many.as_bytes()),
            Err(EventError::TooManyEvents)
        );
        assert_eq!(from_cloud_events(b"[]"), Ok(Vec::new()));
    }
}
