//! Publishing a rules document, the pure part: which SSM tier holds it, how sample tasks are
//! read, and which of them the new document decides differently from the one in force. The
//! files and SSM are read by the CLI and `sources::publishing`.

use std::fmt;

use serde_json::Value;

use crate::rules::{self, Arrival, Decision, FailPolicy, Rules, is_queue_sid};

/// An SSM parameter tier, by the largest value it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    Standard,
    Advanced,
}

impl Tier {
    /// The largest value, in bytes, a parameter of this tier holds (SSM's documented quotas).
    pub const fn limit(self) -> usize {
        match self {
            Tier::Standard => 4096,
            Tier::Advanced => 8192,
        }
    }

    /// SSM's own name for the tier, as `--tier` takes it (any case).
    pub fn parse(text: &str) -> Option<Tier> {
        match text.to_ascii_lowercase().as_str() {
            "standard" => Some(Tier::Standard),
            "advanced" => Some(Tier::Advanced),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Standard => "Standard",
            Tier::Advanced => "Advanced",
        }
    }

    /// The cheapest tier that holds `bytes`, if any does.
    pub fn smallest_for(bytes: usize) -> Option<Tier> {
        [Tier::Standard, Tier::Advanced]
            .into_iter()
            .find(|tier| bytes <= tier.limit())
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a document cannot be written at the tier it would get.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TierError {
    #[error("{bytes} bytes is over the {} bytes a {tier} parameter holds; {}", tier.limit(), advice(*bytes))]
    TooLarge { bytes: usize, tier: Tier },
    /// SSM cannot turn an Advanced parameter back into a Standard one.
    #[error(
        "the parameter is Advanced and SSM cannot lower it to Standard; leave out --tier, or delete the parameter and publish it again"
    )]
    Lowering,
}

fn advice(bytes: usize) -> String {
    match Tier::smallest_for(bytes) {
        Some(tier) => format!(
            "publish it with --tier {tier} (up to {} bytes)",
            tier.limit()
        ),
        None => format!(
            "no parameter tier holds it (Advanced holds {} bytes): make the document smaller",
            Tier::Advanced.limit()
        ),
    }
}

/// The tier a document of `bytes` is written at: the one asked for, else the parameter's
/// current tier (Standard for a new parameter); never lower than the current tier.
pub fn choose_tier(
    bytes: usize,
    asked: Option<Tier>,
    current: Option<Tier>,
) -> Result<Tier, TierError> {
    let tier = match (asked, current) {
        (Some(asked), Some(current)) if asked < current => return Err(TierError::Lowering),
        (Some(asked), _) => asked,
        (None, current) => current.unwrap_or(Tier::Standard),
    };
    if bytes > tier.limit() {
        return Err(TierError::TooLarge { bytes, tier });
    }
    Ok(tier)
}

/// What `check` says about a document's size, when a Standard parameter cannot hold it.
pub fn size_warning(bytes: usize) -> Option<String> {
    (bytes > Tier::Standard.limit()).then(|| {
        format!(
            "{bytes} bytes will not fit a Standard SSM parameter ({} bytes); {}",
            Tier::Standard.limit(),
            advice(bytes)
        )
    })
}

/// A task to replay against the rules: TaskAttributes, with the queue and channel a callback
/// would carry.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub attributes: Value,
    pub queue_sid: Option<String>,
    pub queue_name: Option<String>,
    pub channel: Option<String>,
}

/// Why a sample file cannot be replayed. It never quotes the text: samples hold caller data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    #[error("not UTF-8 text")]
    NotText,
    /// Where the JSON breaks, from [`json_fault`].
    #[error("not JSON ({0})")]
    NotJson(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("{key}: must be a string")]
    NotAString { key: &'static str },
    #[error("queue_sid: {sid:?} is not a TaskQueue SID (WQ followed by 32 lowercase hex digits)")]
    NotAQueueSid { sid: String },
}

/// The keys of a sample written as `{"attributes": {...}, "queue_sid": ...}`.
const SAMPLE_KEYS: [&str; 4] = ["attributes", "queue_sid", "queue_name", "channel"];

impl Sample {
    /// Reads a sample file's text: TaskAttributes as a JSON object, or an object whose only
    /// keys are `attributes` (an object), `queue_sid`, `queue_name` and `channel`.
    /// The error never quotes the text: samples hold caller data.
    pub fn parse(name: impl Into<String>, text: &str) -> Result<Sample, SampleError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| SampleError::NotJson(json_fault(&e)))?;
        let Value::Object(object) = value else {
            return Err(SampleError::NotAnObject);
        };
        let wrapped = object.get("attributes").is_some_and(Value::is_object)
            && object.keys().all(|key| SAMPLE_KEYS.contains(&key.as_str()));
        let mut sample = Sample {
            name: name.into(),
            attributes: Value::Null,
            queue_sid: None,
            queue_name: None,
            channel: None,
        };
        if !wrapped {
            sample.attributes = Value::Object(object);
            return Ok(sample);
        }
        let text_of = |key: &'static str| match object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(_) => Err(SampleError::NotAString { key }),
        };
        sample.queue_sid = text_of("queue_sid")?;
        sample.queue_name = text_of("queue_name")?;
        sample.channel = text_of("channel")?;
        if let Some(sid) = sample.queue_sid.as_deref().filter(|sid| !is_queue_sid(sid)) {
            return Err(SampleError::NotAQueueSid {
                sid: sid.to_owned(),
            });
        }
        sample.attributes = object.get("attributes").cloned().unwrap_or(Value::Null);
        Ok(sample)
    }

    /// The decision `rules` make for this sample (`None`: no rules, the fail policy).
    pub fn decide(&self, rules: Option<&Rules>, policy: FailPolicy) -> Decision {
        let arrival = Arrival {
            attributes: Some(&self.attributes),
            queue_sid: self.queue_sid.as_deref(),
            queue_name: self.queue_name.as_deref(),
            channel: self.channel.as_deref(),
        };
        rules::decide_arrival(rules, arrival, policy)
    }
}

/// What is wrong with a sample's JSON and where, without quoting what is there.
fn json_fault(error: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let what = match error.classify() {
        Category::Io => "cannot read",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected data",
        Category::Eof => "ends early",
    };
    format!("{what} at line {} column {}", error.line(), error.column())
}

/// A sample the new document decides differently from the one in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change<'a> {
    pub sample: &'a str,
    pub old: Decision,
    pub new: Decision,
}

impl fmt::Display for Change<'_> {
    /// `NAME: OLD (reason) -> NEW (reason)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} ({}) -> {} ({})",
            self.sample,
            self.old.outcome(),
            self.old.reason(),
            self.new.outcome(),
            self.new.reason()
        )
    }
}

/// The samples whose outcome (record, do not record, not a call) differs between the
/// document in force (`None` when there is none) and the new one, in the samples' order.
pub fn changes<'a>(
    samples: &'a [Sample],
    in_force: Option<&Rules>,
    new: &Rules,
    policy: FailPolicy,
) -> Vec<Change<'a>> {
    samples
        .iter()
        .filter_map(|sample| {
            let old = sample.decide(in_force, policy);
            let new = sample.decide(Some(new), policy);
            (old.outcome() != new.outcome()).then_some(Change {
                sample: &sample.name,
                old,
                new,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tier_is_kept_or_raised_never_lowered() {
        use Tier::{Advanced, Standard};
        let cases = [
            // (bytes, --tier, current, result)
            (100, None, None, Ok(Standard)),
            (100, None, Some(Advanced), Ok(Advanced)),
            (100, Some(Advanced), Some(Standard), Ok(Advanced)),
            (4096, None, None, Ok(Standard)),
            (
                4097,
                None,
                Some(Standard),
                Err(TierError::TooLarge {
                    bytes: 4097,
                    tier: Standard,
                }),
            ),
            (4097, Some(Advanced), None, Ok(Advanced)),
            (8192, None, Some(Advanced), Ok(Advanced)),
            (
                8193,
                Some(Advanced),
                None,
                Err(TierError::TooLarge {
                    bytes: 8193,
                    tier: Advanced,
                }),
            ),
            (
                100,
                Some(Standard),
                Some(Advanced),
                Err(TierError::Lowering),
            ),
        ];
        for (bytes, asked, current, expected) in cases {
            assert_eq!(
                choose_tier(bytes, asked, current),
                expected,
                "{bytes} {asked:?} {current:?}"
            );
        }
    }

    #[test]
    fn a_refusal_names_the_tier_that_would_hold_the_document() {
        let standard = TierError::TooLarge {
            bytes: 5000,
            tier: Tier::Standard,
        };
        assert_eq!(
            standard.to_string(),
            "5000 bytes is over the 4096 bytes a Standard parameter holds; publish it with --tier Advanced (up to 8192 bytes)"
        );
        let none = TierError::TooLarge {
            bytes: 9000,
            tier: Tier::Advanced,
        };
        assert!(
            none.to_string().ends_with(
                "no parameter tier holds it (Advanced holds 8192 bytes): make the document smaller"
            ),
            "{none}"
        );
        assert_eq!(size_warning(4096), None);
        assert!(size_warning(4097).is_some_and(|w| w.contains("--tier Advanced")));
    }

    #[test]
    fn a_sample_is_task_attributes_or_a_task_with_its_queue() {
        let bare = Sample::parse("a.json", r#"{"call_sid": "CA1", "attributes": 3}"#);
        assert_eq!(
            bare.map(|s| (s.attributes["attributes"].clone(), s.queue_sid)),
            Ok((Value::from(3), None))
        );
        let sid = "WQ0123456789abcdef0123456789abcdef";
        let wrapped = Sample::parse(
            "b.json",
            &format!(
                r#"{{"attributes": {{"call_sid": "CA1"}}, "queue_sid": "{sid}", "queue_name": "Payments"}}"#
            ),
        );
        assert_eq!(
            wrapped.map(|s| (s.attributes["call_sid"].clone(), s.queue_sid, s.queue_name)),
            Ok((
                Value::from("CA1"),
                Some(sid.to_owned()),
                Some("Payments".to_owned())
            ))
        );
        // An object with other keys beside `attributes` is TaskAttributes itself.
        let other = Sample::parse("c.json", r#"{"attributes": {}, "call_sid": "CA1"}"#);
        assert_eq!(
            other.map(|s| s.attributes["call_sid"].clone()),
            Ok("CA1".into())
        );

        let refused = [
            ("[1]", "not a JSON object"),
            (
                r#"{"direction": "inbound""#,
                "not JSON (ends early at line 1 column 23)",
            ),
            (
                r#"{"attributes": {}, "queue_sid": "WQ1"}"#,
                "queue_sid: \"WQ1\" is not a TaskQueue SID (WQ followed by 32 lowercase hex digits)",
            ),
            (
                r#"{"attributes": {}, "queue_name": 7}"#,
                "queue_name: must be a string",
            ),
        ];
        for (text, error) in refused {
            let refusal = Sample::parse("d.json", text).map_err(|e| e.to_string());
            assert_eq!(refusal, Err(error.to_owned()), "{text}");
        }
    }

    #[test]
    fn only_samples_whose_outcome_changes_are_listed() {
        let old = Rules::from_json(r#"{"enabled": true}"#).expect("valid");
        let new = Rules::from_json(
            r#"{"enabled": true, "exclude_attributes": [{"key": "direction", "value": "outbound"}]}"#,
        )
        .expect("valid");
        let samples = [
            Sample::parse("in.json", r#"{"call_sid": "CA1", "direction": "inbound"}"#),
            Sample::parse(
                "out.json",
                r#"{"call_sid": "CA2", "direction": "outbound"}"#,
            ),
            Sample::parse(
                "chat.json",
                r#"{"channelType": "web", "direction": "outbound"}"#,
            ),
        ]
        .map(|s| s.expect("a sample"));
        let changed = changes(&samples, Some(&old), &new, FailPolicy::DoNotRecord);
        let lines: Vec<String> = changed.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "out.json: record-from-start (no exclusion matched) -> do-not-record (excluded by attribute (exclude_attributes[0]))"
            ]
        );
        // No document in force: calls were left to the fail policy.
        let changed = changes(&samples, None, &old, FailPolicy::DoNotRecord);
        assert_eq!(
            changed.iter().map(|c| c.sample).collect::<Vec<_>>(),
            ["in.json", "out.json"]
        );
        assert_eq!(changed[0].old.reason().kind(), "rules_unavailable");
    }
}
