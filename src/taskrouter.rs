//! TaskRouter's side of the protocol: the assignment callback we receive and the answer we
//! give. Pure: bytes in, types out.

use serde::Serialize;
use serde::ser::SerializeMap;
use serde_json::{Map, Value};

use crate::rules::{Decision, has_text};

/// The fields of an assignment callback we read (SPEC section 2). The signature is checked
/// on all parameters, documented or not, before these are taken out of them.
#[derive(Debug, Clone)]
pub struct AssignmentCallback {
    pub task_sid: String,
    pub reservation_sid: String,
    pub task_attributes: String,
    pub task_queue_sid: Option<String>,
    pub workspace_sid: Option<String>,
    pub account_sid: Option<String>,
    /// `TaskChannelUniqueName`: not among the documented parameters, but sent by TaskRouter
    /// with events and, where present, the surest sign of a call (`voice`).
    pub task_channel: Option<String>,
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

pub use crate::sid::is_sid;

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
        for name in ["TaskSid", "ReservationSid", "TaskAttributes"] {
            if single(&params, name)?.is_none() {
                return Err(CallbackError::Missing(name));
            }
        }
        single(&params, "TaskChannelUniqueName")?;
        // Each field appears at most once (the SID fields were checked in the first loop): its
        // value is moved, not copied.
        let mut callback = AssignmentCallback {
            task_sid: String::new(),
            reservation_sid: String::new(),
            task_attributes: String::new(),
            task_queue_sid: None,
            workspace_sid: None,
            account_sid: None,
            task_channel: None,
        };
        for (name, value) in params {
            match name.as_str() {
                "TaskSid" => callback.task_sid = value,
                "ReservationSid" => callback.reservation_sid = value,
                "TaskAttributes" => callback.task_attributes = value,
                "TaskQueueSid" => callback.task_queue_sid = Some(value),
                "WorkspaceSid" => callback.workspace_sid = Some(value),
                "AccountSid" => callback.account_sid = Some(value),
                "TaskChannelUniqueName" => callback.task_channel = Some(value),
                _ => {}
            }
        }
        Ok(callback)
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
        .or_else(|error| match without_lone_surrogates(text) {
            Some(repaired) => serde_json::from_str(&repaired),
            None => Err(error),
        })
        .ok()
        .filter(Value::is_object)
}

/// The JSON text with each escaped UTF-16 surrogate that has no partner (`"\ud83d"`, half an
/// emoji cut off by a length limit upstream) written as U+FFFD, or `None` when it has none.
/// JavaScript's `JSON.parse`, which Flex and TaskRouter's clients use, accepts such strings;
/// serde_json refuses the whole text, which would leave the call to the fail policy for one
/// damaged character the rules may not even look at.
pub(crate) fn without_lone_surrogates(text: &str) -> Option<String> {
    const REPLACEMENT: &str = "\\ufffd";
    let bytes = text.as_bytes();
    let unit = |at: usize| -> Option<u16> {
        let digits = bytes.get(at..at + 6)?;
        if digits[0] != b'\\' || digits[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&digits[2..]).ok()?, 16).ok()
    };
    let mut repaired: Option<String> = None;
    let mut copied = 0;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                let lone = match unit(i) {
                    Some(0xD800..=0xDBFF) => match unit(i + 6) {
                        Some(0xDC00..=0xDFFF) => {
                            i += 12;
                            continue;
                        }
                        _ => true,
                    },
                    Some(0xDC00..=0xDFFF) => true,
                    _ => false,
                };
                if lone {
                    let out = repaired.get_or_insert_with(|| String::with_capacity(text.len()));
                    out.push_str(&text[copied..i]);
                    out.push_str(REPLACEMENT);
                    copied = i + 6;
                    i += 6;
                } else {
                    // Any other escape: skip the character it escapes (a quote, say).
                    i += 2;
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let mut repaired = repaired?;
    repaired.push_str(&text[copied..]);
    Some(repaired)
}

/// The key a decision is stamped under in a task's attributes (annotate mode, enforcement).
pub const STAMP_KEY: &str = "conditional_recording";

/// The decision already stamped on a task (`conditional_recording.record`), if its
/// attributes hold one. Anything else under the key is no stamp.
pub fn stamped_record(attributes: &Value) -> Option<bool> {
    attributes.get(STAMP_KEY).and_then(stamp_record)
}

/// The decision a stamp (the value under [`STAMP_KEY`]) holds: its boolean `record`.
pub fn stamp_record(stamp: &Value) -> Option<bool> {
    stamp.get("record")?.as_bool()
}

/// Why a call is answered `{}` rather than with a `conference` instruction, which TaskRouter
/// would refuse or which would race the Flex UI (SPEC sections 2 and 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoInstruction {
    /// Not a call: there is nothing to bridge.
    NotACall,
    /// The task already has a conference (a transfer, an internal call): 40149/40151.
    ConferenceExists,
    /// No call waits in `<Enqueue>` (the Flex dialer, which accepts the reservation itself):
    /// an instruction would race it (40136).
    NoCallSid,
    /// `ANSWER_MODE=annotate`: the agent accepts in the Flex UI.
    AnnotateMode,
}

impl NoInstruction {
    /// The `answer_reason` of the decision line.
    pub fn as_str(self) -> &'static str {
        match self {
            NoInstruction::NotACall => "not_a_call",
            NoInstruction::ConferenceExists => "conference_exists",
            NoInstruction::NoCallSid => "no_call_sid",
            NoInstruction::AnnotateMode => "annotate",
        }
    }
}

/// Why TaskRouter cannot bridge this call itself, judged from its TaskAttributes, or `None`
/// when a `conference` instruction is the right answer. Unreadable TaskAttributes (`None`)
/// say nothing either way, so such a call keeps its instruction and the fail policy.
pub fn unbridgeable(attributes: Option<&Value>) -> Option<NoInstruction> {
    let attributes = attributes?;
    if has_text(attributes, &["conference", "sid"]) {
        Some(NoInstruction::ConferenceExists)
    } else if !has_text(attributes, &["call_sid"]) {
        Some(NoInstruction::NoCallSid)
    } else {
        None
    }
}

/// The answer for a decision in `conference` mode: `{}` for a task that is not a call or a
/// call TaskRouter cannot bridge ([`unbridgeable`]), else a `conference` instruction with the
/// document's pass-through keys. Serialises straight to the body.
pub fn answer<'a>(
    decision: &Decision,
    attributes: Option<&Value>,
    pass_through: &'a Map<String, Value>,
) -> Answer<'a> {
    match decision {
        Decision::NotACall => Answer::Nothing(NoInstruction::NotACall),
        Decision::Conference { record, .. } => match unbridgeable(attributes) {
            Some(why) => Answer::Nothing(why),
            None => Answer::Conference {
                conference_record: decision.outcome(),
                pass_through,
                record: *record,
            },
        },
    }
}

/// An answer body, see [`answer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Answer<'a> {
    /// `{}`, and why.
    Nothing(NoInstruction),
    Conference {
        conference_record: &'static str,
        /// The document's pass-through keys. When the call is not to be recorded, `record`
        /// (which records the worker's leg) is dropped, so no pass-through can record an
        /// excluded call.
        pass_through: &'a Map<String, Value>,
        record: bool,
    },
}

impl Answer<'_> {
    /// The `answer` of the decision line: `conference` or `none`.
    pub fn kind(&self) -> &'static str {
        match self {
            Answer::Nothing(_) => "none",
            Answer::Conference { .. } => "conference",
        }
    }

    /// Why no instruction was given, for `{}`.
    pub fn no_instruction(&self) -> Option<NoInstruction> {
        match self {
            Answer::Nothing(why) => Some(*why),
            Answer::Conference { .. } => None,
        }
    }

    /// The body, as JSON text.
    pub fn to_json(&self) -> String {
        // Serialising strings and JSON values into a String cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

impl Serialize for Answer<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Answer::Conference {
            conference_record,
            pass_through,
            record,
        } = self
        {
            map.serialize_entry("instruction", "conference")?;
            map.serialize_entry("conference_record", conference_record)?;
            for (key, value) in *pass_through {
                if key == "record" && !record {
                    continue;
                }
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{parse_attributes, without_lone_surrogates};

    #[test]
    fn half_an_emoji_costs_that_character_not_the_task() {
        // What JSON.stringify writes for a name cut after the first half of "😀".
        let cut = r#"{"call_sid":"CA1","name":"Pat \ud83d","direction":"inbound"}"#;
        assert_eq!(
            parse_attributes(cut),
            Some(json!({"call_sid": "CA1", "name": "Pat \u{fffd}", "direction": "inbound"}))
        );
        let cases = [
            (r#"{"a":"\ud83d"}"#, Some(r#"{"a":"\ufffd"}"#)),
            (r#"{"a":"\ude00x"}"#, Some(r#"{"a":"\ufffdx"}"#)),
            (
                r#"{"a":"\ud83d\ud83d\ude00"}"#,
                Some(r#"{"a":"\ufffd\ud83d\ude00"}"#),
            ),
            (r#"{"a":"\ud83d\n"}"#, Some(r#"{"a":"\ufffd\n"}"#)),
            (r#"{"\udbff":1}"#, Some(r#"{"\ufffd":1}"#)),
            // Whole pairs, other escapes and escaped backslashes are left as they are.
            (r#"{"a":"\ud83d\ude00"}"#, None),
            (r#"{"a":"\\ud83d"}"#, None),
            (
                r#"{"a":"\"\ud83d\"\u00e9"}"#,
                Some(r#"{"a":"\"\ufffd\"\u00e9"}"#),
            ),
            (r#"{"a":"\u00e9\uD83D\uDE00"}"#, None),
            // Truncated escapes stay as they are, for the parser to refuse.
            (r#"{"a":"\ud83"#, None),
            (r#"{"a":"\ud83d\ude0"}"#, Some(r#"{"a":"\ufffd\ude0"}"#)),
        ];
        for (text, repaired) in cases {
            assert_eq!(without_lone_surrogates(text).as_deref(), repaired, "{text}");
        }
        assert_eq!(
            parse_attributes(r#"{"a":"\\ud83d"}"#),
            Some(json!({"a": "\\ud83d"}))
        );
        // Still refused: what is not JSON for any parser, or not an object.
        assert_eq!(parse_attributes(r#"{"a":"\ud83"}"#), None);
        assert_eq!(parse_attributes(r#"["\ud83d"]"#), None);
        assert_eq!(parse_attributes("{\"a\":\"\\ud83d"), None);
    }
}
