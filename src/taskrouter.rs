//! TaskRouter's side of the protocol: the assignment callback we receive and the answer we
//! give. Pure: bytes in, types out.

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use crate::rules::Decision;

/// An assignment callback as TaskRouter posts it (SPEC section 2).
#[derive(Debug, Clone)]
pub struct AssignmentCallback {
    /// Every parameter as sent, in order, documented or not (the signature covers them all).
    pub params: Vec<(String, String)>,
    pub task_sid: String,
    pub reservation_sid: String,
    pub task_attributes: String,
    pub task_queue_sid: Option<String>,
    pub workspace_sid: Option<String>,
    pub account_sid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("the body is not UTF-8 form data")]
    NotUtf8,
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("{0} appears more than once")]
    Repeated(&'static str),
    #[error("{field} is not a {kind} SID ({prefix} followed by 32 lowercase hex digits)")]
    NotASid {
        field: &'static str,
        kind: &'static str,
        prefix: &'static str,
    },
}

/// The SID-valued parameters we read, with the prefix TaskRouter gives each kind.
const SID_FIELDS: &[(&str, &str, &str)] = &[
    ("TaskSid", "Task", "WT"),
    ("ReservationSid", "Reservation", "WR"),
    ("TaskQueueSid", "TaskQueue", "WQ"),
    ("WorkspaceSid", "Workspace", "WS"),
    ("AccountSid", "Account", "AC"),
    ("WorkflowSid", "Workflow", "WW"),
    ("WorkerSid", "Worker", "WK"),
];

/// Whether `s` is a SID: the two-letter prefix, then 32 lowercase hex digits.
pub fn is_sid(s: &str, prefix: &str) -> bool {
    s.len() == 34
        && s.starts_with(prefix)
        && s.bytes()
            .skip(2)
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Decodes a form body into its parameters, in order, repeats kept.
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, CallbackError> {
    std::str::from_utf8(body).map_err(|_| CallbackError::NotUtf8)?;
    Ok(form_urlencoded::parse(body).into_owned().collect())
}

impl AssignmentCallback {
    /// Parses a form body (see [`AssignmentCallback::from_params`]).
    pub fn from_form(body: &[u8]) -> Result<AssignmentCallback, CallbackError> {
        AssignmentCallback::from_params(parse_form(body)?)
    }

    /// Reads the callback's fields. Documented SIDs are checked for shape (so nothing forged
    /// reaches a log); each documented field may appear once.
    pub fn from_params(params: Vec<(String, String)>) -> Result<AssignmentCallback, CallbackError> {
        for &(field, kind, prefix) in SID_FIELDS {
            if let Some(value) = single(&params, field)?
                && !is_sid(value, prefix)
            {
                return Err(CallbackError::NotASid {
                    field,
                    kind,
                    prefix,
                });
            }
        }
        let required = |name| {
            single(&params, name)?
                .map(str::to_owned)
                .ok_or(CallbackError::Missing(name))
        };
        let optional = |name| single(&params, name).map(|v| v.map(str::to_owned));
        Ok(AssignmentCallback {
            task_sid: required("TaskSid")?,
            reservation_sid: required("ReservationSid")?,
            task_attributes: required("TaskAttributes")?,
            task_queue_sid: optional("TaskQueueSid")?,
            workspace_sid: optional("WorkspaceSid")?,
            account_sid: optional("AccountSid")?,
            params,
        })
    }
}

/// The value of a parameter that may appear at most once.
pub fn single<'p>(
    params: &'p [(String, String)],
    name: &'static str,
) -> Result<Option<&'p str>, CallbackError> {
    let mut values = params
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(CallbackError::Repeated(name));
    }
    Ok(first)
}

/// Parses TaskAttributes. Anything but a JSON object is unparseable: TaskRouter always
/// sends an object, so anything else cannot be judged.
pub fn parse_attributes(text: &str) -> Option<Value> {
    serde_json::from_str::<Value>(text)
        .ok()
        .filter(Value::is_object)
}

/// The answer body for a decision: `{}` for a task that is not a call, else a `conference`
/// instruction with the document's pass-through keys.
pub fn answer(decision: &Decision, pass_through: &Map<String, Value>) -> Value {
    match decision {
        Decision::NotACall => Value::Object(Map::new()),
        Decision::Conference { record, .. } => {
            let instruction = ConferenceInstruction {
                instruction: "conference",
                conference_record: decision.outcome(),
                pass_through: PassThrough {
                    keys: pass_through,
                    record: *record,
                },
            };
            serde_json::to_value(instruction).unwrap_or_else(|_| fallback(decision))
        }
    }
}

/// Serialising a map of JSON values cannot fail; this keeps the answer well-formed anyway.
fn fallback(decision: &Decision) -> Value {
    serde_json::json!({"instruction": "conference", "conference_record": decision.outcome()})
}

#[derive(Serialize)]
struct ConferenceInstruction<'a> {
    instruction: &'static str,
    conference_record: &'static str,
    #[serde(flatten)]
    pass_through: PassThrough<'a>,
}

/// Pass-through keys. When the call is not to be recorded, `record` (which records the
/// worker's leg) is dropped, so no pass-through can record an excluded call.
struct PassThrough<'a> {
    keys: &'a Map<String, Value>,
    record: bool,
}

impl Serialize for PassThrough<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.keys {
            if key == "record" && !self.record {
                continue;
            }
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}
