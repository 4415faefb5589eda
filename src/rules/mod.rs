//! Rules and the decision: a pure function of (rules, task). No clock, no network, no
//! globals, so it can be benchmarked, fuzzed and explained.

mod condition;
mod document;
mod index;
mod lint;

use std::fmt;

use serde_json::{Map, Value};

pub use condition::{AttributePath, Condition, Matcher, Scalar};
use index::Conditions;

/// The hash maps of compiled rules. Built once from a trusted document and only read after,
/// so a fast hash (the one serde_json and hashbrown already bring) is safe here.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
pub use document::{MAX_DOCUMENT_BYTES, PASS_THROUGH_KEYS, RulesError, is_queue_sid};
pub use lint::{Warning, lint};

/// The example document `serve` runs on when no rules source is configured.
pub const EXAMPLE_DOCUMENT: &str = r#"{
  "enabled": true,
  "exclude_queues": ["WQ00000000000000000000000000000000"],
  "exclude_attributes": [{"key": "direction", "value": "outbound"}]
}
"#;

/// A validated, compiled rules document.
#[derive(Debug)]
pub struct Rules {
    enabled: bool,
    exclude_queues: QueueRules,
    exclude_attributes: Conditions,
    include_queues: Option<QueueRules>,
    include_attributes: Option<Conditions>,
    instruction: Map<String, Value>,
    /// The document's own test for a call, replacing [`is_call_by_default`].
    voice_tasks: Option<Conditions>,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            enabled: false,
            exclude_queues: QueueRules::default(),
            exclude_attributes: Conditions::default(),
            include_queues: None,
            include_attributes: None,
            instruction: Map::new(),
            voice_tasks: None,
        }
    }
}

/// Queue entries split by kind: SIDs decide from the callback alone, names need a lookup.
/// Each maps to the index of its first entry in the document.
#[derive(Debug, Default)]
pub struct QueueRules {
    by_sid: HashMap<String, usize>,
    by_name: HashMap<String, usize>,
}

impl QueueRules {
    fn by_sid(&self, sid: Option<&str>) -> Option<usize> {
        sid.and_then(|sid| self.by_sid.get(sid).copied())
    }

    fn by_name(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    fn has_names(&self) -> bool {
        !self.by_name.is_empty()
    }
}

/// The lists of a document that a reason can point into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleList {
    ExcludeQueues,
    ExcludeAttributes,
    IncludeQueues,
    IncludeAttributes,
}

/// One entry of a document, by its JSON path: `exclude_attributes[1]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleRef {
    pub list: RuleList,
    pub index: usize,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.list.as_str(), self.index)
    }
}

/// What the decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Task<'a> {
    pub attributes: &'a Value,
    pub queue_sid: Option<&'a str>,
    /// The queue's friendly name, when it has been resolved.
    pub queue_name: Option<&'a str>,
    /// The task channel's unique name (`TaskChannelUniqueName`), when the callback or event
    /// carries it: it then decides alone whether the task is a call.
    pub channel: Option<&'a str>,
}

pub use crate::config::FailPolicy;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not a call (chat, SMS): TaskRouter gets `{}` and nothing is recorded by us.
    NotACall,
    /// A call, recorded or not: TaskRouter gets a `conference` instruction when it can
    /// bridge the call itself (see `taskrouter::answer`), else `{}`.
    Conference { record: bool, reason: Reason },
}

impl Decision {
    /// The decision when good rules cannot decide: the fail policy, with the cause.
    pub fn fail(policy: FailPolicy, reason: Reason) -> Decision {
        Decision::Conference {
            record: policy == FailPolicy::Record,
            reason,
        }
    }

    /// `record-from-start`, `do-not-record`, or `no-action` for a task that is not a call.
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::NotACall => "no-action",
            Decision::Conference { record, .. } => record_outcome(*record),
        }
    }

    pub fn reason(&self) -> Reason {
        match self {
            Decision::NotACall => Reason::NotACall,
            Decision::Conference { reason, .. } => *reason,
        }
    }
}

/// A call's outcome as `conference_record` says it.
pub fn record_outcome(record: bool) -> &'static str {
    if record {
        "record-from-start"
    } else {
        "do-not-record"
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotACall,
    Disabled,
    ExcludedByQueue(RuleRef),
    ExcludedByAttribute(RuleRef),
    Included(RuleRef),
    NotIncluded,
    NoExclusionMatched,
    RulesUnavailable,
    QueueNameUnresolved,
    AttributesUnparseable,
}

impl Reason {
    /// A stable machine name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Reason::NotACall => "not_a_call",
            Reason::Disabled => "disabled",
            Reason::ExcludedByQueue(_) => "excluded_by_queue",
            Reason::ExcludedByAttribute(_) => "excluded_by_attribute",
            Reason::Included(_) => "included",
            Reason::NotIncluded => "not_included",
            Reason::NoExclusionMatched => "no_exclusion_matched",
            Reason::RulesUnavailable => "rules_unavailable",
            Reason::QueueNameUnresolved => "queue_name_unresolved",
            Reason::AttributesUnparseable => "task_attributes_unparseable",
        }
    }

    /// The rule that decided, when one did.
    pub fn rule(&self) -> Option<RuleRef> {
        match self {
            Reason::ExcludedByQueue(r) | Reason::ExcludedByAttribute(r) | Reason::Included(r) => {
                Some(*r)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Reason::NotACall => "not a call",
            Reason::Disabled => "rules disabled",
            Reason::ExcludedByQueue(_) => "excluded by queue",
            Reason::ExcludedByAttribute(_) => "excluded by attribute",
            Reason::Included(_) => "included",
            Reason::NotIncluded => "not included",
            Reason::NoExclusionMatched => "no exclusion matched",
            Reason::RulesUnavailable => "rules unavailable",
            Reason::QueueNameUnresolved => "queue name unresolved",
            Reason::AttributesUnparseable => "task attributes unparseable",
        };
        match self.rule() {
            Some(rule) => write!(f, "{text} ({rule})"),
            None => f.write_str(text),
        }
    }
}

/// The channel's word on whether a task is a call, when it has one: `voice` is a call, any
/// other channel is not. An empty name says nothing.
pub fn call_by_channel(channel: Option<&str>) -> Option<bool> {
    channel.filter(|c| !c.is_empty()).map(|c| c == "voice")
}

/// The default test for a call (SPEC section 3): a non-empty `call_sid` (inbound),
/// `outbound_to` (the Flex dialer) or `conference.sid` (an internal call, which has neither),
/// and no sign of Flex Conversations (a `conversationSid`, or a `channelType` other than
/// `voice`), whose agent-initiated SMS and WhatsApp tasks say `direction: outbound` too.
pub fn is_call_by_default(attributes: &Value) -> bool {
    let marked = has_text(attributes, &["call_sid"])
        || has_text(attributes, &["outbound_to"])
        || has_text(attributes, &["conference", "sid"]);
    let conversation = attributes
        .get("conversationSid")
        .is_some_and(|sid| !sid.is_null())
        || attributes
            .get("channelType")
            .is_some_and(|channel| !channel.is_null() && channel.as_str() != Some("voice"));
    marked && !conversation
}

/// Whether the TaskAttributes hold a non-empty string at this path of member names.
pub fn has_text(attributes: &Value, path: &[&str]) -> bool {
    path.iter()
        .try_fold(attributes, |value, name| value.get(name))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
}

/// Which tasks are calls, in SPEC section 3's order: the channel when the task carries one,
/// else the document's `voice_tasks` (when there is a document and it has them), else the
/// default test.
fn is_call(voice_tasks: Option<&Conditions>, task: &Task<'_>) -> bool {
    call_by_channel(task.channel).unwrap_or_else(|| match voice_tasks {
        Some(voice) => voice.first_match(task.attributes).is_some(),
        None => is_call_by_default(task.attributes),
    })
}

/// A task as a callback or event brings it: its TaskAttributes may be unreadable (`None`).
#[derive(Debug, Clone, Copy)]
pub struct Arrival<'a> {
    pub attributes: Option<&'a Value>,
    pub queue_sid: Option<&'a str>,
    pub queue_name: Option<&'a str>,
    pub channel: Option<&'a str>,
}

/// The decision for an arriving task. When its TaskAttributes are unreadable or good rules
/// are missing (`None`), a call follows the fail policy. A channel that is not `voice` makes
/// it no call before anything is read.
pub fn decide_arrival(rules: Option<&Rules>, arrival: Arrival<'_>, policy: FailPolicy) -> Decision {
    if call_by_channel(arrival.channel) == Some(false) {
        return Decision::NotACall;
    }
    let Some(attributes) = arrival.attributes else {
        return Decision::fail(policy, Reason::AttributesUnparseable);
    };
    let task = Task {
        attributes,
        queue_sid: arrival.queue_sid,
        queue_name: arrival.queue_name,
        channel: arrival.channel,
    };
    match rules {
        Some(rules) => rules.decide(&task, policy),
        None if is_call(None, &task) => Decision::fail(policy, Reason::RulesUnavailable),
        None => Decision::NotACall,
    }
}

impl Rules {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Keys merged into every `conference` instruction.
    pub fn instruction(&self) -> &Map<String, Value> {
        &self.instruction
    }

    /// Whether a decision may need the queue's friendly name.
    pub fn names_queues(&self) -> bool {
        self.enabled
            && (self.exclude_queues.has_names()
                || self
                    .include_queues
                    .as_ref()
                    .is_some_and(QueueRules::has_names))
    }

    /// Whether the task is a call under this document ([`is_call`]).
    pub fn is_call(&self, task: &Task<'_>) -> bool {
        is_call(self.voice_tasks.as_ref(), task)
    }

    /// The decision for one task. Exclusion always wins over inclusion; a queue name that is
    /// needed but unknown leaves the call to the fail policy.
    pub fn decide(&self, task: &Task<'_>, policy: FailPolicy) -> Decision {
        if !self.is_call(task) {
            return Decision::NotACall;
        }
        let reason = self.reason(task);
        match reason {
            Reason::QueueNameUnresolved => Decision::fail(policy, reason),
            Reason::Disabled | Reason::Included(_) | Reason::NoExclusionMatched => {
                Decision::Conference {
                    record: true,
                    reason,
                }
            }
            _ => Decision::Conference {
                record: false,
                reason,
            },
        }
    }

    fn reason(&self, task: &Task<'_>) -> Reason {
        use RuleList::*;
        if !self.enabled {
            return Reason::Disabled;
        }
        let at = |list, index| RuleRef { list, index };

        if let Some(i) = self.exclude_queues.by_sid(task.queue_sid) {
            return Reason::ExcludedByQueue(at(ExcludeQueues, i));
        }
        if let Some(i) = self.exclude_attributes.first_match(task.attributes) {
            return Reason::ExcludedByAttribute(at(ExcludeAttributes, i));
        }
        if self.exclude_queues.has_names() {
            match task.queue_name {
                None => return Reason::QueueNameUnresolved,
                Some(name) => {
                    if let Some(i) = self.exclude_queues.by_name(name) {
                        return Reason::ExcludedByQueue(at(ExcludeQueues, i));
                    }
                }
            }
        }

        if self.include_queues.is_none() && self.include_attributes.is_none() {
            return Reason::NoExclusionMatched;
        }
        let include_queues = self.include_queues.as_ref();
        if let Some(i) = include_queues.and_then(|q| q.by_sid(task.queue_sid)) {
            return Reason::Included(at(IncludeQueues, i));
        }
        let include_attributes = self.include_attributes.as_ref();
        if let Some(i) = include_attributes.and_then(|c| c.first_match(task.attributes)) {
            return Reason::Included(at(IncludeAttributes, i));
        }
        match (include_queues.filter(|q| q.has_names()), task.queue_name) {
            (Some(_), None) => Reason::QueueNameUnresolved,
            (Some(queues), Some(name)) => match queues.by_name(name) {
                Some(i) => Reason::Included(at(IncludeQueues, i)),
                None => Reason::NotIncluded,
            },
            (None, _) => Reason::NotIncluded,
        }
    }
}

impl Rules {
    /// Parses, validates and compiles a document, and lints it (for `check`).
    pub fn check(text: &str) -> Result<(Rules, Vec<Warning>), RulesError> {
        let document = document::parse(text)?;
        let rules = Rules::from_value(&document)?;
        Ok((rules, lint(&document)))
    }

    /// One line counting the rules by kind, for `check`.
    pub fn summary(&self) -> String {
        let queues =
            |q: &QueueRules| format!("{} SID(s), {} name(s)", q.by_sid.len(), q.by_name.len());
        let mut parts = vec![
            if self.enabled {
                "enabled"
            } else {
                "disabled: every call is recorded"
            }
            .to_owned(),
            format!("exclude_queues: {}", queues(&self.exclude_queues)),
            format!(
                "exclude_attributes: {}",
                condition_counts(self.exclude_attributes.as_slice())
            ),
        ];
        if let Some(q) = &self.include_queues {
            parts.push(format!("include_queues: {}", queues(q)));
        }
        if let Some(a) = &self.include_attributes {
            parts.push(format!(
                "include_attributes: {}",
                condition_counts(a.as_slice())
            ));
        }
        if !self.instruction.is_empty() {
            parts.push(format!("instruction keys: {}", self.instruction.len()));
        }
        parts.join("; ")
    }
}

/// `3 (value 2, regex 1)`: how many conditions, and of which kinds.
fn condition_counts(conditions: &[Condition]) -> String {
    let mut kinds: Vec<(&str, usize)> = Vec::new();
    for condition in conditions {
        let kind = condition.kind();
        match kinds.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    if kinds.is_empty() {
        return "0".into();
    }
    let detail: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!("{} ({})", conditions.len(), detail.join(", "))
}
